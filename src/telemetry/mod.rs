//! Logs and traces: the process-wide `tracing` subscriber (text or JSON lines on stderr), and OpenTelemetry
//! export over OTLP/gRPC when the standard `OTEL_*` variables ask for it (off otherwise). The exporter runs
//! on its own one-thread runtime, so a slow collector never takes time from requests.
//!
//! Every request runs inside one span (see [`span`]) that carries its request id and trace id, so every log
//! line a request causes names both; the decision and each upstream attempt are recorded on spans as
//! attributes. With OTLP on, the caller's W3C `traceparent` becomes the span's parent and is sent on to
//! upstreams.

pub mod span;

use std::io::Write;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (coloured on a terminal).
    #[default]
    Text,
    /// One JSON object per line, with the request's span fields (request id, trace id) on each.
    Json,
}

/// Where traces go.
#[derive(Debug, Clone, Default)]
pub struct Otlp {
    /// The collector's OTLP/gRPC address (e.g. `http://127.0.0.1:4317`); `None` lets the exporter read
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `OTEL_EXPORTER_OTLP_ENDPOINT` itself.
    pub endpoint: Option<String>,
}

impl Otlp {
    /// OTLP export as the standard variables configure it: on when `OTEL_EXPORTER_OTLP_ENDPOINT` or
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set, unless `OTEL_SDK_DISABLED=true` or
    /// `OTEL_TRACES_EXPORTER=none`.
    pub fn from_env() -> Option<Self> {
        let set = |k: &str| std::env::var(k).is_ok_and(|v| !v.trim().is_empty());
        let is =
            |k: &str, v: &str| std::env::var(k).is_ok_and(|x| x.trim().eq_ignore_ascii_case(v));
        let wanted =
            set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
        (wanted && !is("OTEL_SDK_DISABLED", "true") && !is("OTEL_TRACES_EXPORTER", "none"))
            .then(Self::default)
    }
}

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The log filter does not parse.
    #[error("log filter `{filter}`: {reason}")]
    Filter {
        /// The filter given.
        filter: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The OTLP exporter could not be built (a malformed endpoint, say).
    #[error("OTLP trace exporter: {0}")]
    Exporter(String),
    /// A subscriber was set already.
    #[error("logging was set up twice")]
    AlreadySet,
}

/// Keeps trace export running; dropping it flushes the spans still buffered and stops the exporter.
#[must_use = "dropping the guard stops trace export"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
    /// The exporter's gRPC channel lives on this runtime; dropped after the provider has flushed.
    runtime: Option<tokio::runtime::Runtime>,
}

impl TelemetryGuard {
    /// True when spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Sends the spans buffered so far now (the exporter otherwise sends every few seconds).
    pub fn flush(&self) {
        if let Some(p) = &self.provider {
            if let Err(e) = p.force_flush() {
                tracing::warn!(error = %e, "flushing traces failed");
            }
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            if let Err(e) = p.shutdown() {
                // The subscriber may be gone already: stderr directly.
                let _ = writeln!(std::io::stderr(), "semroute: stopping trace export: {e}");
            }
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Installs the process's subscriber: `filter` (EnvFilter syntax) over log lines in `format` written to
/// `writer`, and span export to `otlp` when given.
pub fn init<W>(
    filter: &str,
    format: LogFormat,
    otlp: Option<Otlp>,
    writer: W,
) -> Result<TelemetryGuard, TelemetryError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let env_filter = EnvFilter::try_new(filter).map_err(|e| TelemetryError::Filter {
        filter: filter.to_string(),
        reason: e.to_string(),
    })?;
    let fmt = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(writer)
            .with_current_span(true)
            .with_span_list(true)
            .boxed(),
    };
    let (provider, runtime) = match otlp {
        Some(o) => {
            let (p, rt) = tracer_provider(o)?;
            (Some(p), Some(rt))
        }
        None => (None, None),
    };
    let otel = provider.as_ref().map(|p| {
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        opentelemetry::global::set_tracer_provider(p.clone());
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("semroute"))
            // Only our own spans: the libraries' (h2, hyper, tower) would swamp a trace.
            .with_filter(tracing_subscriber::filter::filter_fn(|m| {
                m.target().starts_with("semroute")
            }))
    });
    tracing_subscriber::registry()
        .with(fmt.with_filter(env_filter))
        .with(otel)
        .try_init()
        .map_err(|_| TelemetryError::AlreadySet)?;
    span::set_exporting(provider.is_some());
    Ok(TelemetryGuard { provider, runtime })
}

fn tracer_provider(
    otlp: Otlp,
) -> Result<(SdkTracerProvider, tokio::runtime::Runtime), TelemetryError> {
    use opentelemetry_otlp::WithExportConfig;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("semroute-otlp")
        .enable_all()
        .build()
        .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
    // The exporter's channel binds to the runtime it is built in.
    let _entered = runtime.enter();
    let mut builder = opentelemetry_otlp::SpanExporter::builder().with_tonic();
    if let Some(endpoint) = otlp.endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    let exporter = builder
        .build()
        .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
    let mut resource = opentelemetry_sdk::Resource::builder().with_attribute(
        opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
    );
    // OTEL_SERVICE_NAME, when set, names the service (the resource builder reads it).
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("semroute");
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    drop(_entered);
    Ok((provider, runtime))
}
