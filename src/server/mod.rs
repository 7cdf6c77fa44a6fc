//! The gRPC face: tonic services (Router, health, reflection), the translation between proto messages and
//! domain types, domain errors mapped to `tonic::Status` in one place, and graceful shutdown.

mod complete;
mod convert;
mod router_service;

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic_health::ServingStatus;

use crate::config::LoadedConfig;
use crate::router::{start_embedder, Router};
use crate::upstream::Forwarder;
pub use router_service::RouterService;

/// Generated protobuf and gRPC code for `semroute.v1`.
pub mod pb {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("semroute.v1");
    /// Encoded descriptors of `semroute.v1`, served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("semroute_descriptor");
}

/// Errors of the server layer.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The transport failed (bind, accept, HTTP/2).
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The reflection service could not be built.
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// Loading the model or building the index failed, so the service can never become ready.
    #[error("start-up failed: {0}")]
    Startup(String),
    /// A socket operation failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The fully-qualified service name health reports on.
pub const ROUTER_SERVICE_NAME: &str = "semroute.v1.Router";

/// How the service starts.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Threads for the model's forward pass.
    pub model_threads: usize,
    /// After a shutdown request, how long in-flight calls may take to finish before the server stops
    /// anyway (a client that never closes its connection must not hold the process forever).
    pub shutdown_grace: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            model_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// Serves on `listener` until `shutdown` resolves, then stops accepting and lets in-flight calls finish.
///
/// The listener accepts at once; health answers NOT_SERVING (and Route UNAVAILABLE) while the model loads
/// and the index builds off the runtime, then SERVING. A start-up failure ends the server with an error.
pub async fn serve(
    loaded: LoadedConfig,
    listener: TcpListener,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_service_status("", ServingStatus::NotServing)
        .await;
    health_reporter
        .set_service_status(ROUTER_SERVICE_NAME, ServingStatus::NotServing)
        .await;

    // Both reflection versions: grpcurl speaks v1, many clients (Python grpcio-reflection, older tools) still
    // speak only v1alpha.
    let reflection_builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection = reflection_builder().build_v1()?;
    let reflection_alpha = reflection_builder().build_v1alpha()?;

    let slot: Arc<OnceLock<Arc<Router>>> = Arc::new(OnceLock::new());
    let forwarder = Arc::new(Forwarder::new(loaded.base_dir()));
    // A missing key is a warning, not a start-up failure: other providers (a local model) may serve.
    forwarder.warn_missing_keys(&loaded.config);
    let router_service = RouterService::new(slot.clone(), forwarder);

    let (fail_tx, fail_rx) = tokio::sync::oneshot::channel::<String>();
    let loader_slot = slot.clone();
    let reporter = health_reporter.clone();
    tokio::spawn(async move {
        let started = std::time::Instant::now();
        let built = tokio::task::spawn_blocking(move || {
            let embedder =
                start_embedder(&loaded, options.model_threads).map_err(|e| e.to_string())?;
            Router::build(embedder, loaded.config).map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|e| Err(format!("loader panicked: {e}")));
        match built {
            Ok(router) => {
                let _ = loader_slot.set(Arc::new(router));
                reporter
                    .set_service_status("", ServingStatus::Serving)
                    .await;
                reporter
                    .set_service_status(ROUTER_SERVICE_NAME, ServingStatus::Serving)
                    .await;
                tracing::info!(
                    millis = started.elapsed().as_millis() as u64,
                    "ready: SERVING"
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "start-up failed");
                let _ = fail_tx.send(e);
            }
        }
    });

    let addr = listener.local_addr()?;
    tracing::info!(%addr, "listening (NOT_SERVING until the model and index are ready)");
    // `stop` ends accepting and starts the drain; `deadline` fires `shutdown_grace` later.
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (deadline_tx, deadline_rx) = tokio::sync::oneshot::channel::<()>();
    let failure = Arc::new(OnceLock::<String>::new());
    let failure_w = failure.clone();
    let grace = options.shutdown_grace;
    tokio::spawn(async move {
        tokio::select! {
            _ = shutdown => tracing::info!(?grace, "shutdown requested: draining in-flight calls"),
            Ok(e) = fail_rx => { let _ = failure_w.set(e); }
        }
        let _ = stop_tx.send(());
        tokio::time::sleep(grace).await;
        let _ = deadline_tx.send(());
    });

    let server = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(pb::router_server::RouterServer::new(router_service))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
            let _ = stop_rx.await;
        });
    tokio::select! {
        r = server => r?,
        _ = deadline_rx => tracing::warn!(?grace, "drain deadline passed; stopping with calls still open"),
    }
    match failure.get() {
        Some(e) => Err(ServerError::Startup(e.clone())),
        None => {
            tracing::info!("stopped");
            Ok(())
        }
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
