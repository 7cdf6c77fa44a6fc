//! Cluster mode: several replicas acting as one through Redis (or Valkey), switched on by `cluster:` in
//! routes.yaml. Without it nothing here runs and every replica keeps its own state.
//!
//! What is shared, and how (docs/cluster.md has the operator's view):
//!
//! - **Routes** ([`routes`]): the route set (routes.yaml without its `cluster:` section) lives in one
//!   Redis hash with an epoch and a version. An admin change on any replica is validated and built off
//!   the request path, then committed with a compare-and-set on (epoch, version) in one Lua script that
//!   also publishes the new version; a replica that lost the race answers ABORTED and installs nothing.
//!   Every replica follows the channel, and polls the version as a safety net, then rebuilds from the
//!   shared set (the embedding store means unchanged utterances are not embedded again).
//! - **Limits and budgets** ([`limits`]): one Lua script per request checks and reserves requests per
//!   minute, tokens per minute and the daily and monthly budgets of the key and its tenant atomically;
//!   a second one settles after the call, off the request path. Concurrency limits stay per replica.
//! - **Circuit state** (`health`): a circuit that opens on one replica is announced and stored for its
//!   cool-down, and the others open theirs for as long (at once when subscribed, at their next sync
//!   otherwise), so they skip the target without failing on it first; latency estimates are shared at
//!   every sync, and a replica uses the others' for a target it has not measured itself.
//!
//! Every call a request waits on is bounded by `cluster.timeout_ms`; the connection manager reconnects
//! with backoff; the version poll re-synchronises routes when Redis comes back.

mod health;
pub mod limits;
mod metrics;
pub mod routes;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{ClusterConfig, FailMode};

pub use metrics::ClusterMetrics;
pub use routes::{follow, initial_routes, Stamp};

/// How long control-plane calls (loading or committing a route set) may take: they carry the whole
/// set and nobody's request waits on them, so they get more than the request-path budget.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(2);

/// Errors of the cluster layer.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Redis answered with an error, or the connection failed.
    #[error("redis {op}: {message}")]
    Redis {
        /// The operation.
        op: &'static str,
        /// What went wrong (never the URL: it may carry a password).
        message: String,
    },
    /// Redis did not answer within the budget.
    #[error("redis {op}: no answer within {millis} ms")]
    Timeout {
        /// The operation.
        op: &'static str,
        /// The budget.
        millis: u64,
    },
    /// The cluster section cannot be used (the URL's variable is unset, the URL does not parse).
    #[error("cluster: {0}")]
    Config(String),
    /// What Redis holds is not what this version of semroute writes.
    #[error("cluster: {0}")]
    Data(String),
}

/// Cluster mode for a server: connects (lazily) when the config has a `cluster:` section, registers the
/// metrics in the gateway's registry and hands the shared limits to its access layer. `Ok(None)` without
/// one. The error is a message for the operator.
pub fn start(
    loaded: &crate::config::LoadedConfig,
    gateway: &crate::gateway::Gateway,
) -> Result<Option<Arc<Cluster>>, String> {
    let Some(config) = &loaded.config.cluster else {
        return Ok(None);
    };
    if loaded.path.is_none() {
        return Err("cluster mode needs a config file (routes.yaml)".into());
    }
    let cluster =
        Cluster::connect(config, gateway.metrics().registry()).map_err(|e| e.to_string())?;
    gateway.access().attach_cluster(cluster.clone());
    cluster.share_circuits(gateway.forwarder());
    tracing::info!(
        prefix = %config.key_prefix,
        timeout_ms = config.timeout_ms,
        limits_on_redis_error = ?config.limits_on_redis_error,
        "cluster mode: routes, limits, budgets and circuit state shared through Redis"
    );
    Ok(Some(cluster))
}

/// A connection to the shared Redis, with the settings and metrics of the cluster section.
pub struct Cluster {
    conn: redis::aio::ConnectionManager,
    client: redis::Client,
    config: ClusterConfig,
    metrics: ClusterMetrics,
    /// This process among the replicas (drawn at start), so it ignores its own announcements.
    replica: String,
    /// The forwarder whose circuits are shared.
    forwarder: std::sync::OnceLock<Arc<crate::upstream::Forwarder>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `ClusterConfig`'s Debug redacts the URL.
        f.debug_struct("Cluster")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Prepares the connection (lazily: nothing is dialled until the first call, so a replica starts
    /// even when Redis is down) and registers the cluster metrics in `registry`.
    pub fn connect(
        config: &ClusterConfig,
        registry: &prometheus::Registry,
    ) -> Result<Arc<Self>, ClusterError> {
        let url = match (&config.redis_url, &config.redis_url_env) {
            (Some(u), _) => u.clone(),
            (None, Some(var)) => std::env::var(var).map_err(|_| {
                ClusterError::Config(format!(
                    "cluster.redis_url_env names `{var}`, which is not set"
                ))
            })?,
            (None, None) => return Err(ClusterError::Config("no redis_url".into())),
        };
        // The parser's message can quote the URL: report only that it is malformed.
        let client = redis::Client::open(url.as_str()).map_err(|e| {
            ClusterError::Config(format!("the Redis URL does not parse ({:?})", e.kind()))
        })?;
        let timeout = Duration::from_millis(config.timeout_ms);
        // Reconnect with exponential backoff between 50 ms and 2 s, indefinitely; each call is bounded by
        // our own timeouts, so no response timeout here (the control plane needs longer than requests).
        let manager_config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout.max(Duration::from_millis(500))))
            .set_response_timeout(None)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(2))
            .set_number_of_retries(usize::MAX);
        let conn =
            redis::aio::ConnectionManager::new_lazy_with_config(client.clone(), manager_config)
                .map_err(|e| ClusterError::Config(format!("connection manager: {:?}", e.kind())))?;
        let metrics = ClusterMetrics::new(registry)
            .map_err(|e| ClusterError::Config(format!("metrics: {e}")))?;
        Ok(Arc::new(Self {
            conn,
            client,
            config: config.clone(),
            metrics,
            replica: format!("{:016x}", fastrand::u64(..)),
            forwarder: std::sync::OnceLock::new(),
        }))
    }

    /// The cluster section this replica started with.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// The metrics.
    pub fn metrics(&self) -> &ClusterMetrics {
        &self.metrics
    }

    /// What limits do when Redis cannot answer.
    pub fn fail_mode(&self) -> FailMode {
        self.config.limits_on_redis_error
    }

    /// The budget of a call on the request path.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.config.timeout_ms)
    }

    /// `<prefix>:<rest>`.
    fn key(&self, rest: &str) -> String {
        format!("{}:{rest}", self.config.key_prefix)
    }

    /// A clone of the multiplexed, reconnecting connection.
    fn conn(&self) -> redis::aio::ConnectionManager {
        self.conn.clone()
    }

    /// Runs one Redis call under `budget`, recording its latency and outcome.
    async fn timed<T>(
        &self,
        op: &'static str,
        budget: Duration,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, ClusterError> {
        let started = Instant::now();
        let result = match tokio::time::timeout(budget, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(ClusterError::Redis {
                op,
                message: redis_message(&e),
            }),
            Err(_) => Err(ClusterError::Timeout {
                op,
                millis: budget.as_millis() as u64,
            }),
        };
        let outcome = match &result {
            Ok(_) => "ok",
            Err(ClusterError::Timeout { .. }) => "timeout",
            Err(_) => "error",
        };
        self.metrics.call(op, outcome, started.elapsed());
        result
    }
}

/// A Redis error as text without anything that could hold the URL or a password: its kind, its code and
/// the server's detail (server errors never echo credentials).
fn redis_message(e: &redis::RedisError) -> String {
    match (e.code(), e.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        (Some(code), None) => code.to_string(),
        _ => format!("{:?}", e.kind()),
    }
}
