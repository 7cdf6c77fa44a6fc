//! Prometheus metrics: one [`Metrics`] per gateway, holding its own registry (no process-wide global, so
//! several servers in one process, as in the tests, keep separate counts), the families below, and the
//! recording hooks the faces and the gateway call. [`exposition`] serves them as `GET /metrics` on a
//! listener of its own.
//!
//! Label values come only from bounded sets: configured route, model and provider names, route paths,
//! status codes and fixed outcome names. No prompt text, client key or secret ever becomes a label.
//!
//! Cost on the request path: label handles are looked up in a small map per update (`with_label_values` on
//! a read lock of the family), counters and histograms are atomics; the stage histograms are resolved once.

pub mod exposition;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::{
    CounterVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

use crate::embedding::{EmbedObserver, Refusal};
use crate::router::Decision;
use crate::upstream::breaker::BreakerState;
use crate::upstream::{Attempt, Completion, UpstreamError};

/// Errors of the metrics layer.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// A family could not be created or registered, or the exposition could not be encoded (a bug).
    #[error("metrics: {0}")]
    Prometheus(#[from] prometheus::Error),
    /// The metrics listener failed.
    #[error("metrics listener: {0}")]
    Io(#[from] std::io::Error),
}

/// Which face a request came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Face {
    /// The gRPC face.
    Grpc,
    /// The HTTP face (OpenAI-compatible API).
    Http,
}

impl Face {
    fn as_str(self) -> &'static str {
        match self {
            Face::Grpc => "grpc",
            Face::Http => "http",
        }
    }
}

/// A stage of a request, for `semroute_stage_duration_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Waiting in the model queue before the forward pass began.
    Queue,
    /// The forward pass that embedded the prompt.
    Embed,
    /// Index search and aggregation into the decision.
    Search,
    /// A streamed completion's first delta, from the start of forwarding.
    UpstreamTtft,
    /// Forwarding: every attempt, retries and fallbacks included.
    UpstreamTotal,
    /// The gateway operation from its start to its result (a decision, or a served answer).
    EndToEnd,
}

impl Stage {
    const ALL: [Stage; 6] = [
        Stage::Queue,
        Stage::Embed,
        Stage::Search,
        Stage::UpstreamTtft,
        Stage::UpstreamTotal,
        Stage::EndToEnd,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Stage::Queue => "queue",
            Stage::Embed => "embed",
            Stage::Search => "search",
            Stage::UpstreamTtft => "upstream_ttft",
            Stage::UpstreamTotal => "upstream_total",
            Stage::EndToEnd => "end_to_end",
        }
    }
}

/// Latency buckets in seconds, from 100 µs (a cached decision's search) to 2 minutes (a long completion).
const SECONDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0, 120.0,
];

/// Cosine scores live in [−1, 1]; thresholds sit between 0.3 and 0.9, so the buckets are finer there.
const SCORES: &[f64] = &[
    -1.0, -0.5, -0.25, 0.0, 0.1, 0.2, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8,
    0.85, 0.9, 0.95, 1.0,
];

/// The gap between the two best routes, in [0, 1]; small gaps are the ambiguous decisions.
const MARGINS: &[f64] = &[
    0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0,
];

/// Texts per forward pass (`encoder.max_batch` bounds it).
const BATCH: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// The service's metrics: the registry and every family in it. Cheap to share (`Arc`).
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    request_duration: HistogramVec,
    decisions: IntCounterVec,
    decision_score: HistogramVec,
    decision_margin: HistogramVec,
    /// One histogram per [`Stage`], resolved at creation, in [`Stage::ALL`]'s order.
    stages: Vec<Histogram>,
    embed_batch: Histogram,
    embed_queue_depth: IntGauge,
    /// Refusals at the door by reason: the model queue's bounds and the listeners' concurrency limits.
    admission_refused: IntCounterVec,
    embed_expired: IntCounter,
    model_restarts: IntCounter,
    cache_hits: IntCounter,
    cache_misses: IntCounter,
    upstream_attempts: IntCounterVec,
    circuit_state: IntGaugeVec,
    tokens: IntCounterVec,
    cost: CounterVec,
    index_version: IntGauge,
    index_utterances: IntGauge,
    guard_findings: IntCounterVec,
    rules_fired: IntCounterVec,
    policy_refused: IntCounterVec,
    /// The prompt cache's counts already added to the counters, so a scrape adds only what is new.
    /// Touched only by scrapes, never on the request path.
    scrape: Mutex<(u64, u64)>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn register<C: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    c: C,
) -> Result<C, MetricsError> {
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

fn histogram_opts(name: &str, help: &str, buckets: &[f64]) -> HistogramOpts {
    HistogramOpts::new(name, help).buckets(buckets.to_vec())
}

impl Metrics {
    /// A registry with every family registered and `semroute_build_info` set.
    pub fn new() -> Result<Self, MetricsError> {
        let r = Registry::new();
        let stage = register(
            &r,
            HistogramVec::new(
                histogram_opts(
                    "semroute_stage_duration_seconds",
                    "Time spent in each stage of a request: queue (model queue wait), embed (forward \
                     pass), search (index search and decision), upstream_ttft (first streamed delta), \
                     upstream_total (all attempts), end_to_end (gateway operation).",
                    SECONDS,
                ),
                &["stage"],
            )?,
        )?;
        let build_info = register(
            &r,
            IntGaugeVec::new(
                Opts::new(
                    "semroute_build_info",
                    "Always 1; the version label names the running build.",
                ),
                &["version"],
            )?,
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        Ok(Self {
            requests: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "semroute_requests_total",
                        "Requests answered, by face, method (gRPC method path or HTTP route path) and \
                         code (gRPC code name or HTTP status).",
                    ),
                    &["face", "method", "code"],
                )?,
            )?,
            request_duration: register(
                &r,
                HistogramVec::new(
                    histogram_opts(
                        "semroute_request_duration_seconds",
                        "Request duration by face and method: to the response head over HTTP (an SSE \
                         stream's first event), to the final status over gRPC.",
                        SECONDS,
                    ),
                    &["face", "method"],
                )?,
            )?,
            decisions: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "semroute_decisions_total",
                        "Routing decisions by chosen route (\"\" for none) and outcome: matched (cleared \
                         its threshold), default (the default route), none (no route).",
                    ),
                    &["route", "outcome"],
                )?,
            )?,
            decision_score: register(
                &r,
                HistogramVec::new(
                    histogram_opts(
                        "semroute_decision_score",
                        "The best route's score per decision, by that route (whether or not it cleared \
                         its threshold).",
                        SCORES,
                    ),
                    &["route"],
                )?,
            )?,
            decision_margin: register(
                &r,
                HistogramVec::new(
                    histogram_opts(
                        "semroute_decision_margin",
                        "The gap between the best and the second-best route's score, by the best route \
                         (decisions with at least two candidates).",
                        MARGINS,
                    ),
                    &["route"],
                )?,
            )?,
            stages: Stage::ALL
                .iter()
                .map(|s| stage.with_label_values(&[s.as_str()]))
                .collect(),
            embed_batch: register(
                &r,
                Histogram::with_opts(histogram_opts(
                    "semroute_embed_batch_size",
                    "Texts per forward pass of the model thread.",
                    BATCH,
                ))?,
            )?,
            embed_queue_depth: register(
                &r,
                IntGauge::new(
                    "semroute_embed_queue_depth",
                    "Requests admitted to the model queue and not yet answered (at scrape time).",
                )?,
            )?,
            admission_refused: {
                let c = register(
                    &r,
                    IntCounterVec::new(
                        Opts::new(
                            "semroute_admission_refused_total",
                            "Requests refused at the door, by reason: queue_full (encoder.queue_capacity \
                             or queue_tokens), queue_wait (encoder.max_queue_ms), deadline (the model \
                             could not start it before its deadline), concurrency (the listener's limit).",
                        ),
                        &["reason"],
                    )?,
                )?;
                for reason in Refusal::ALL.iter().map(|r| r.as_str()).chain(["concurrency"]) {
                    c.with_label_values(&[reason]);
                }
                c
            },
            guard_findings: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "semroute_guard_findings_total",
                        "Sensitive values the guard found in prompts, by detector and its action \
                         (detect, redact, private, block). Counts only: values are never recorded.",
                    ),
                    &["detector", "action"],
                )?,
            )?,
            rules_fired: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "semroute_rules_fired_total",
                        "Completions on which a rule fired, by rule name.",
                    ),
                    &["rule"],
                )?,
            )?,
            policy_refused: {
                let c = register(
                    &r,
                    IntCounterVec::new(
                        Opts::new(
                            "semroute_policy_refused_total",
                            "Completions the policy refused (403), by reason: rule (a rule's refuse), \
                             blocked (a block detector found something), no_private_target (the prompt \
                             may go only to private models and none could take it).",
                        ),
                        &["reason"],
                    )?,
                )?;
                for reason in ["rule", "blocked", "no_private_target"] {
                    c.with_label_values(&[reason]);
                }
                c
            },
            embed_expired: register(
                &r,
                IntCounter::new(
                    "semroute_embed_expired_total",
                    "Requests dropped from the model queue unanswered because their deadline passed \
                     before the model reached them.",
                )?,
            )?,
            model_restarts: register(
                &r,
                IntCounter::new(
                    "semroute_model_restarts_total",
                    "Times the model thread failed and the model was loaded again.",
                )?,
            )?,
            cache_hits: register(
                &r,
                IntCounter::new(
                    "semroute_prompt_cache_hits_total",
                    "Prompts whose vectors came from the prompt cache.",
                )?,
            )?,
            cache_misses: register(
                &r,
                IntCounter::new(
                    "semroute_prompt_cache_misses_total",
                    "Prompts that needed the model (with the prompt cache on).",
                )?,
            )?,
            upstream_attempts: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "semroute_upstream_attempts_total",
                        "Attempts on upstream targets by target (model name), provider and outcome \
                         (ok, failed, timeout, circuit_open, escalated).",
                    ),
                    &["target", "provider", "outcome"],
                )?,
            )?,
            circuit_state: register(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "semroute_upstream_circuit_state",
                        "Each configured model's circuit breaker: 0 closed, 1 half-open, 2 open.",
                    ),
                    &["target"],
                )?,
            )?,
            tokens: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "semroute_tokens_total",
                        "Tokens of served completions as the provider reported them, by serving model \
                         and direction (input, output).",
                    ),
                    &["model", "direction"],
                )?,
            )?,
            cost: register(
                &r,
                CounterVec::new(
                    Opts::new(
                        "semroute_cost_usd_total",
                        "Estimated cost of served completions in US dollars, from the serving model's \
                         prices.",
                    ),
                    &["model"],
                )?,
            )?,
            index_version: register(
                &r,
                IntGauge::new(
                    "semroute_index_version",
                    "The live route snapshot's version.",
                )?,
            )?,
            index_utterances: register(
                &r,
                IntGauge::new(
                    "semroute_index_utterances",
                    "Exemplar utterances in the live route index.",
                )?,
            )?,
            registry: r,
            scrape: Mutex::new((0, 0)),
        })
    }

    /// The registry, for callers that add families of their own.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Records one answered request. `method` must come from a bounded set (a route path, an RPC path).
    pub fn request(&self, face: Face, method: &str, code: &str, elapsed: Duration) {
        let face = face.as_str();
        self.requests.with_label_values(&[face, method, code]).inc();
        self.request_duration
            .with_label_values(&[face, method])
            .observe(elapsed.as_secs_f64());
    }

    /// Starts timing a request whose code is known only at its end; see [`RequestGuard`].
    pub fn start_request(self: &Arc<Self>, face: Face, method: &'static str) -> RequestGuard {
        RequestGuard {
            metrics: self.clone(),
            face,
            method,
            started: Instant::now(),
            done: false,
        }
    }

    /// Records one stage's duration.
    pub fn stage(&self, stage: Stage, elapsed: Duration) {
        // `ALL` lists the stages in declaration order, so a stage's discriminant is its index.
        self.stages[stage as usize].observe(elapsed.as_secs_f64());
    }

    /// Records a routing decision: its outcome, the best route's score and margin, and the search stage.
    /// Route labels are the snapshot's route names (the index is built from the config).
    pub fn decision(&self, d: &Decision) {
        let outcome = match (&d.route, d.matched) {
            (None, _) => "none",
            (Some(_), true) => "matched",
            (Some(_), false) => "default",
        };
        self.decisions
            .with_label_values(&[d.route.as_deref().unwrap_or(""), outcome])
            .inc();
        if let Some(best) = d.candidates.first() {
            self.decision_score
                .with_label_values(&[best.route.as_str()])
                .observe(f64::from(best.score));
            if let Some(second) = d.candidates.get(1) {
                self.decision_margin
                    .with_label_values(&[best.route.as_str()])
                    .observe(f64::from(best.score - second.score).clamp(0.0, 1.0));
            }
        }
        self.stage(Stage::Search, Duration::from_micros(d.search_micros));
    }

    /// Records the result of forwarding: every attempt, and for a served answer its tokens and cost, and
    /// the upstream stage. `ttft` is the first streamed delta's time, when the call streamed.
    pub fn forwarded(
        &self,
        result: &Result<Completion, UpstreamError>,
        elapsed: Duration,
        ttft: Option<Duration>,
    ) {
        let attempts: &[Attempt] = match result {
            Ok(c) => &c.attempts,
            Err(UpstreamError::AllFailed { attempts, .. })
            | Err(UpstreamError::Interrupted { attempts })
            | Err(UpstreamError::DeadlineExceeded { attempts, .. }) => attempts,
            // Refused before any attempt (bad request, unknown route or model) or cancelled.
            Err(_) => return,
        };
        for a in attempts {
            self.upstream_attempts
                .with_label_values(&[a.target.as_str(), a.provider.as_str(), a.outcome.as_str()])
                .inc();
        }
        self.stage(Stage::UpstreamTotal, elapsed);
        if let Some(t) = ttft {
            self.stage(Stage::UpstreamTtft, t);
        }
        if let Ok(c) = result {
            let model = c.served_by.model.as_str();
            self.tokens
                .with_label_values(&[model, "input"])
                .inc_by(c.usage.input_tokens);
            self.tokens
                .with_label_values(&[model, "output"])
                .inc_by(c.usage.output_tokens);
            if c.cost_usd.is_finite() && c.cost_usd >= 0.0 {
                self.cost.with_label_values(&[model]).inc_by(c.cost_usd);
            }
        }
    }

    /// `count` values found by the guard's `detector` (a configured name), whose action is `action`.
    pub fn guard_finding(&self, detector: &str, action: crate::config::GuardAction, count: usize) {
        let action = match action {
            crate::config::GuardAction::Off => "off",
            crate::config::GuardAction::Detect => "detect",
            crate::config::GuardAction::Redact => "redact",
            crate::config::GuardAction::Private => "private",
            crate::config::GuardAction::Block => "block",
        };
        self.guard_findings
            .with_label_values(&[detector, action])
            .inc_by(count as u64);
    }

    /// The rule `name` (a configured name) fired.
    pub fn rule_fired(&self, name: &str) {
        self.rules_fired.with_label_values(&[name]).inc();
    }

    /// The policy refused a completion for `reason` (`rule`, `blocked`, `no_private_target`).
    pub fn policy_refused(&self, reason: &'static str) {
        self.policy_refused.with_label_values(&[reason]).inc();
    }

    /// A request refused at a listener's door (its concurrency limit).
    pub fn refused_at_door(&self) {
        self.admission_refused
            .with_label_values(&["concurrency"])
            .inc();
    }

    /// Renders the registry in the Prometheus text format (0.0.4).
    pub fn encode(&self) -> Result<String, MetricsError> {
        Ok(prometheus::TextEncoder::new().encode_to_string(&self.registry.gather())?)
    }

    /// Sets the values read at scrape time: the live snapshot, the prompt cache, the model queue and the
    /// circuit of every configured model.
    pub(crate) fn refresh(&self, state: &ScrapeState) {
        let mut seen = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
        self.embed_queue_depth.set(state.queue_depth as i64);
        self.index_version.set(state.index_version as i64);
        self.index_utterances.set(state.index_utterances as i64);
        self.cache_hits
            .inc_by(state.cache_hits.saturating_sub(seen.0));
        self.cache_misses
            .inc_by(state.cache_misses.saturating_sub(seen.1));
        *seen = (seen.0.max(state.cache_hits), seen.1.max(state.cache_misses));
        // Reset first, so a model removed from the config stops being reported.
        self.circuit_state.reset();
        for (target, s) in &state.circuits {
            let v = match s {
                BreakerState::Closed => 0,
                BreakerState::HalfOpen => 1,
                BreakerState::Open => 2,
            };
            self.circuit_state
                .with_label_values(&[target.as_str()])
                .set(v);
        }
    }
}

/// What a scrape reads from the live service (see [`Metrics::refresh`]).
#[derive(Debug, Default)]
pub(crate) struct ScrapeState {
    pub queue_depth: usize,
    pub index_version: u64,
    pub index_utterances: usize,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub circuits: Vec<(String, BreakerState)>,
}

impl EmbedObserver for Metrics {
    fn batch(&self, texts: usize) {
        self.embed_batch.observe(texts as f64);
    }

    fn request(&self, queued: Duration, forward: Duration) {
        self.stage(Stage::Queue, queued);
        self.stage(Stage::Embed, forward);
    }

    fn refused(&self, reason: Refusal) {
        self.admission_refused
            .with_label_values(&[reason.as_str()])
            .inc();
    }

    fn expired(&self) {
        self.embed_expired.inc();
    }

    fn restarted(&self) {
        self.model_restarts.inc();
    }
}

/// Times one request and records it once, with the code given to [`RequestGuard::finish`]; a guard
/// dropped unfinished (the caller went away and the request's future was dropped) records gRPC's
/// `Canceled`.
pub struct RequestGuard {
    metrics: Arc<Metrics>,
    face: Face,
    method: &'static str,
    started: Instant,
    done: bool,
}

impl RequestGuard {
    /// Records the request with `code`.
    pub fn finish(mut self, code: &str) {
        self.done = true;
        self.metrics
            .request(self.face, self.method, code, self.started.elapsed());
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        if !self.done {
            self.metrics.request(
                self.face,
                self.method,
                grpc_code_name(tonic::Code::Cancelled),
                self.started.elapsed(),
            );
        }
    }
}

/// A gRPC status code's canonical name, as the gRPC Prometheus middlewares of other languages report it
/// (`OK`, `InvalidArgument`, ...).
pub fn grpc_code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "Canceled",
        Unknown => "Unknown",
        InvalidArgument => "InvalidArgument",
        DeadlineExceeded => "DeadlineExceeded",
        NotFound => "NotFound",
        AlreadyExists => "AlreadyExists",
        PermissionDenied => "PermissionDenied",
        ResourceExhausted => "ResourceExhausted",
        FailedPrecondition => "FailedPrecondition",
        Aborted => "Aborted",
        OutOfRange => "OutOfRange",
        Unimplemented => "Unimplemented",
        Internal => "Internal",
        Unavailable => "Unavailable",
        DataLoss => "DataLoss",
        Unauthenticated => "Unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_exposed_with_build_info() {
        assert!(Stage::ALL.iter().enumerate().all(|(i, s)| *s as usize == i));
        let m = Metrics::new().unwrap();
        m.stage(Stage::EndToEnd, Duration::from_millis(3));
        let text = m.encode().unwrap();
        assert!(
            text.contains(&format!(
                "semroute_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            )),
            "{text}"
        );
        assert!(
            text.contains("semroute_stage_duration_seconds_count{stage=\"end_to_end\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn decisions_are_labelled_by_outcome_and_best_route() {
        let m = Metrics::new().unwrap();
        let cand = |route: &str, score| crate::router::Candidate {
            route: route.into(),
            score,
        };
        let mut d = Decision {
            route: Some("billing".into()),
            score: 0.75,
            matched: true,
            candidates: vec![cand("billing", 0.75), cand("chat", 0.5)],
            neighbours: Vec::new(),
            index_version: 1,
            embed_micros: 10,
            search_micros: 20,
            rule: None,
            guard: Vec::new(),
            context_turns: 0,
        };
        m.decision(&d);
        d.matched = false;
        d.route = Some("chat".into());
        m.decision(&d);
        d.route = None;
        m.decision(&d);
        let text = m.encode().unwrap();
        for line in [
            "semroute_decisions_total{outcome=\"matched\",route=\"billing\"} 1",
            "semroute_decisions_total{outcome=\"default\",route=\"chat\"} 1",
            "semroute_decisions_total{outcome=\"none\",route=\"\"} 1",
            "semroute_decision_score_count{route=\"billing\"} 3",
            "semroute_decision_margin_bucket{route=\"billing\",le=\"0.3\"} 3",
            "semroute_decision_margin_bucket{route=\"billing\",le=\"0.2\"} 0",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }

    #[test]
    fn cache_counters_add_only_what_is_new_and_circuits_follow_the_config() {
        let m = Metrics::new().unwrap();
        let mut s = ScrapeState {
            cache_hits: 5,
            cache_misses: 2,
            circuits: vec![("a".into(), BreakerState::Open)],
            ..Default::default()
        };
        m.refresh(&s);
        s.cache_hits = 7;
        s.circuits = vec![("b".into(), BreakerState::HalfOpen)];
        m.refresh(&s);
        let text = m.encode().unwrap();
        assert!(
            text.contains("semroute_prompt_cache_hits_total 7"),
            "{text}"
        );
        assert!(
            text.contains("semroute_prompt_cache_misses_total 2"),
            "{text}"
        );
        assert!(
            text.contains("semroute_upstream_circuit_state{target=\"b\"} 1"),
            "{text}"
        );
        assert!(!text.contains("target=\"a\""), "{text}");
    }

    #[test]
    fn grpc_code_names_are_canonical() {
        assert_eq!(grpc_code_name(tonic::Code::Ok), "OK");
        assert_eq!(
            grpc_code_name(tonic::Code::ResourceExhausted),
            "ResourceExhausted"
        );
    }
}
