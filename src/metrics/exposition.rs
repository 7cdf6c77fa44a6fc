//! The metrics listener: `GET /metrics` in the Prometheus text exposition format, on a listener of its own
//! (`serve --metrics-listen`), so scrapes never share a port, a connection limit or an exposure with client
//! traffic. Values that are state rather than events (the live snapshot, circuits, the model queue) are read
//! from the gateway at scrape time.

use std::future::Future;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::{MetricsError, ScrapeState};
use crate::gateway::Gateway;

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Reads the scrape-time values from `gateway` (nothing but defaults while the service is starting).
fn scrape_state(gateway: &Gateway) -> ScrapeState {
    let Ok(router) = gateway.router() else {
        return ScrapeState::default();
    };
    let snapshot = router.snapshot();
    let cache = router.cache_stats();
    ScrapeState {
        queue_depth: router.embedder().queue_depth(),
        index_version: snapshot.version,
        index_utterances: snapshot.index.len(),
        cache_hits: cache.hits,
        cache_misses: cache.misses,
        circuits: snapshot
            .config
            .models
            .iter()
            .map(|m| (m.name.clone(), gateway.forwarder().health(&m.name).state()))
            .collect(),
    }
}

/// The exposition of `gateway`'s metrics, with the scrape-time values refreshed first.
pub fn render(gateway: &Gateway) -> Result<String, MetricsError> {
    let metrics = gateway.metrics();
    metrics.refresh(&scrape_state(gateway));
    metrics.encode()
}

async fn metrics(State(gateway): State<Arc<Gateway>>) -> Response {
    match render(&gateway) {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode the metrics");
            (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
        }
    }
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        "not found: this listener serves GET /metrics only\n",
    )
        .into_response()
}

/// The metrics listener's routes over `gateway`.
pub fn app(gateway: Arc<Gateway>) -> axum::Router {
    axum::Router::new()
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .with_state(gateway)
}

/// Serves `GET /metrics` on `listener` (plain TCP, or [`crate::tls::TlsIncoming`]) until `shutdown`
/// resolves.
pub async fn serve<L>(
    listener: L,
    gateway: Arc<Gateway>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), MetricsError>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    axum::serve(listener, app(gateway))
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}
