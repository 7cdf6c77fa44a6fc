//! The cluster's Prometheus families, registered in the gateway's registry beside the others. Labels come
//! from fixed sets (operation and outcome names).

use std::time::Duration;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

/// Redis round trips are sub-millisecond on a LAN; the budget is tens of milliseconds.
const REDIS_SECONDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// The cluster families.
#[derive(Clone)]
pub struct ClusterMetrics {
    calls: IntCounterVec,
    latency: HistogramVec,
    up: IntGauge,
    route_version: IntGauge,
    route_syncs: IntCounterVec,
    limits_unchecked: IntCounterVec,
    circuits_shared: IntCounterVec,
}

impl ClusterMetrics {
    /// Registers the families in `r`.
    pub fn new(r: &Registry) -> Result<Self, prometheus::Error> {
        fn reg<C: prometheus::core::Collector + Clone + 'static>(
            r: &Registry,
            c: C,
        ) -> Result<C, prometheus::Error> {
            r.register(Box::new(c.clone()))?;
            Ok(c)
        }
        Ok(Self {
            calls: reg(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "semroute_cluster_redis_calls_total",
                        "Calls to the cluster's Redis by operation (limits_reserve, limits_settle, \
                         routes_stamp, routes_load, routes_commit, subscribe, circuit_publish) and \
                         outcome (ok, error, timeout).",
                    ),
                    &["op", "outcome"],
                )?,
            )?,
            latency: reg(
                r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "semroute_cluster_redis_duration_seconds",
                        "Duration of calls to the cluster's Redis by operation, timeouts included.",
                    )
                    .buckets(REDIS_SECONDS.to_vec()),
                    &["op"],
                )?,
            )?,
            up: reg(
                r,
                IntGauge::new(
                    "semroute_cluster_redis_up",
                    "1 when the last call to the cluster's Redis succeeded, 0 when it failed.",
                )?,
            )?,
            route_version: reg(
                r,
                IntGauge::new(
                    "semroute_cluster_route_version",
                    "The version of the shared route set this replica serves (0: none from Redis yet).",
                )?,
            )?,
            route_syncs: reg(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "semroute_cluster_route_syncs_total",
                        "Route sets handled by outcome: installed (loaded from Redis and swapped in), \
                         committed (an admin change won the compare-and-set), conflict (it lost), \
                         seeded (an empty Redis took this replica's set), rejected (a shared set this \
                         replica cannot serve; it keeps its routes).",
                    ),
                    &["outcome"],
                )?,
            )?,
            limits_unchecked: reg(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "semroute_cluster_limits_unchecked_total",
                        "Limit checks Redis could not answer in time, by what followed (admitted: \
                         limits_on_redis_error open; refused: closed).",
                    ),
                    &["outcome"],
                )?,
            )?,
            circuits_shared: reg(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "semroute_cluster_circuits_shared_total",
                        "Circuit changes announced by other replicas and applied here, by change \
                         (opened, closed).",
                    ),
                    &["change"],
                )?,
            )?,
        })
    }

    /// One Redis call.
    pub(crate) fn call(&self, op: &'static str, outcome: &'static str, elapsed: Duration) {
        self.calls.with_label_values(&[op, outcome]).inc();
        self.latency
            .with_label_values(&[op])
            .observe(elapsed.as_secs_f64());
        self.up.set(i64::from(outcome == "ok"));
    }

    /// The route version now served.
    pub(crate) fn route_version(&self, v: u64) {
        self.route_version.set(v as i64);
    }

    /// A route set handled.
    pub(crate) fn route_sync(&self, outcome: &'static str) {
        self.route_syncs.with_label_values(&[outcome]).inc();
    }

    /// Another replica's circuit change applied here.
    pub(crate) fn circuit_shared(&self, change: &'static str) {
        self.circuits_shared.with_label_values(&[change]).inc();
    }

    /// A limit check Redis could not answer.
    pub(crate) fn limits_unchecked(&self, outcome: &'static str) {
        self.limits_unchecked.with_label_values(&[outcome]).inc();
    }
}
