//! The spans of one request: the request span both faces open at their door, the decision recorded on it,
//! the model's queue and forward pass as children, and W3C trace context in and out.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime};

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::{TraceContextExt, Tracer as _};
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Tells the span helpers whether spans are exported (set once by [`super::init`]).
pub(super) fn set_exporting(on: bool) {
    EXPORTING.store(on, Ordering::Relaxed);
}

/// True when spans are exported over OTLP.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// The span every request runs in: its request id and trace id (the caller's `traceparent` trace when it
/// sent one; a fresh one otherwise) are on every log line it causes, and the decision and outcome are
/// recorded on it. Its parent is the caller's span when spans are exported.
pub fn request(
    face: &'static str,
    method: &str,
    request_id: &str,
    headers: &http::HeaderMap,
) -> tracing::Span {
    let span = tracing::info_span!(
        target: "semroute::request",
        "request",
        otel.name = %format!("{face} {method}"),
        otel.kind = "server",
        face,
        method = %method,
        request_id = %request_id,
        trace_id = Empty,
        route = Empty,
        score = Empty,
        matched = Empty,
        index_version = Empty,
        rule = Empty,
        guard = Empty,
        target = Empty,
        attempts = Empty,
        outcome = Empty,
    );
    let mut trace_id = None;
    if exporting() {
        let parent =
            opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(headers)));
        let _ = span.set_parent(parent);
        let id = span.context().span().span_context().trace_id();
        if id != opentelemetry::trace::TraceId::INVALID {
            trace_id = Some(id.to_string());
        }
    }
    let trace_id = trace_id
        .or_else(|| caller_trace_id(headers))
        .unwrap_or_else(fresh_trace_id);
    span.record("trace_id", trace_id.as_str());
    span
}

/// The trace id of a well-formed `traceparent` header (version 00: `00-<32 hex>-<16 hex>-<2 hex>`).
pub fn caller_trace_id(headers: &http::HeaderMap) -> Option<String> {
    let v = headers.get("traceparent")?.to_str().ok()?;
    let mut parts = v.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let ok = hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && trace.bytes().any(|b| b != b'0')
        && hex(span, 16)
        && span.bytes().any(|b| b != b'0')
        && hex(flags, 2);
    ok.then(|| trace.to_string())
}

fn fresh_trace_id() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(1..))
}

/// Records the route decision on the current span (the request span).
pub fn record_decision(route: Option<&str>, score: f32, matched: bool, index_version: u64) {
    let span = tracing::Span::current();
    span.record("route", route.unwrap_or(""));
    span.record("score", f64::from(score));
    span.record("matched", matched);
    span.record("index_version", index_version);
}

/// Records the policy's part of the decision on the current span: the rule that fired and the guard's
/// detectors that found something (names only, never values).
pub fn record_policy(rule: Option<&str>, detectors: &str) {
    let span = tracing::Span::current();
    if let Some(r) = rule {
        span.record("rule", r);
    }
    if !detectors.is_empty() {
        span.record("guard", detectors);
    }
}

/// Records how forwarding ended on the current span: the serving target (if any), each attempt as
/// `target:outcome`, and the outcome (`ok` or the error kind).
pub fn record_forwarding(target: Option<&str>, attempts: &str, outcome: &str) {
    let span = tracing::Span::current();
    if let Some(t) = target {
        span.record("target", t);
    }
    span.record("attempts", attempts);
    span.record("outcome", outcome);
}

/// Adds the model's queue wait and forward pass as children of the current span, with their real start
/// and end times (they happen on the model thread, outside any span).
pub fn record_model_times(queued_at: Instant, started: Instant, ended: Instant, texts: usize) {
    if !exporting() {
        return;
    }
    let parent = tracing::Span::current().context();
    let tracer = opentelemetry::global::tracer("semroute");
    let (now_i, now_s) = (Instant::now(), SystemTime::now());
    let at = |i: Instant| now_s - now_i.saturating_duration_since(i);
    for (name, from, to) in [("queue", queued_at, started), ("forward", started, ended)] {
        let mut s = tracer
            .span_builder(name)
            .with_start_time(at(from))
            .with_attributes([opentelemetry::KeyValue::new("texts", texts as i64)])
            .start_with_context(&tracer, &parent);
        opentelemetry::trace::Span::end_with_timestamp(&mut s, at(to));
    }
}

/// Adds the current trace context (`traceparent`, `tracestate`) to an upstream request's headers.
pub fn inject(headers: &mut http::HeaderMap) {
    if !exporting() {
        return;
    }
    let cx = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut HeadersMut(headers))
    });
}

struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

struct HeadersMut<'a>(&'a mut http::HeaderMap);

impl Injector for HeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(k, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_is_parsed_strictly() {
        let mut h = http::HeaderMap::new();
        assert_eq!(caller_trace_id(&h), None);
        h.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        assert_eq!(
            caller_trace_id(&h).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            h.insert("traceparent", bad.parse().unwrap());
            assert_eq!(caller_trace_id(&h), None, "{bad}");
        }
        assert_eq!(fresh_trace_id().len(), 32);
    }
}
