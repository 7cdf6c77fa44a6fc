//! The gateway core: the operations both faces call — [`Gateway::route`], [`Gateway::complete`] and
//! [`Gateway::complete_stream`] — on domain requests, with one error type ([`GatewayError`]). A face only
//! translates its wire types into these and [`GatewayError`] into its status codes; nothing here knows
//! gRPC or HTTP.
//!
//! A completion pins the live snapshot first, so the decision and the route's targets come from the same
//! version even when an admin change lands mid-request.

mod policy;
mod stream;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::access::{Access, AccessError, Caller, Reservation};
use crate::metrics::{Metrics, Stage};
use crate::router::{Decision, RouteError, RouteQuery, Router, Snapshot};
use crate::upstream::{
    self, Completion, CompletionRequest, Destination, Forwarder, Steer, UpstreamError,
};
pub use policy::PolicyError;
pub use stream::{CompletionStream, StreamEvent};

/// Errors of the gateway: whatever a layer below refused, or the service still starting.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The model is loading and the route index building; the service is not ready yet.
    #[error("starting: the model and route index are loading")]
    Starting,
    /// Routing refused or failed (bad input, overload, embedding failure).
    #[error(transparent)]
    Route(#[from] RouteError),
    /// Forwarding refused or failed (bad request, unknown route or model, every target failed).
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The caller's key is missing or invalid, may not use this route or model, or is over a limit.
    #[error(transparent)]
    Access(#[from] AccessError),
    /// A rule or the sensitive-data guard refused the call.
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

/// A completion to run: the domain request plus what the caller forced.
#[derive(Debug, Clone, Default)]
pub struct CompleteCall {
    /// The conversation and generation parameters.
    pub request: CompletionRequest,
    /// Skip classification and use this route's targets.
    pub route: Option<String>,
    /// Skip target choice and send to this model (a name from `models`): retries, no fallback.
    pub model: Option<String>,
    /// Who is calling (`None` when the service runs open): its key's routes, models, limits and budgets
    /// apply.
    pub caller: Option<Arc<Caller>>,
    /// The caller's deadline (`None`: `limits.default_deadline_ms` from now). Routing is refused at once
    /// if the model could not start it in time, and forwarding's budget ends no later.
    pub deadline: Option<Instant>,
}

/// A served completion with the decision that chose its route.
#[derive(Debug, Clone)]
pub struct CompleteOutcome {
    /// The answer, who served it, and every attempt.
    pub completion: Completion,
    /// The routing decision (for a forced route: that route, matched, no evidence).
    pub decision: Decision,
}

/// Most texts one embeddings call may carry (OpenAI's own limit).
pub const MAX_EMBED_INPUTS: usize = 2048;

/// Vectors from [`Gateway::embed`].
#[derive(Debug, Clone)]
pub struct Embeddings {
    /// One unit vector per text, in order.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens each text was embedded from.
    pub tokens: Vec<usize>,
}

/// The transport-free core: the router (once start-up has built it) and the forwarder.
pub struct Gateway {
    router: OnceLock<Arc<Router>>,
    forwarder: Arc<Forwarder>,
    metrics: Arc<Metrics>,
    access: Arc<Access>,
}

/// A call decided and ready to forward: the pinned snapshot, the decision and the request.
struct Prepared {
    snapshot: Arc<Snapshot>,
    decision: Decision,
    route: String,
    model: Option<String>,
    request: CompletionRequest,
    /// Where rules and the guard let the call go, and what non-private targets receive.
    steer: Steer,
    /// When the gateway took the call (its end-to-end time starts here).
    started: Instant,
    /// When the caller stops waiting.
    deadline: Instant,
    /// The caller's tokens and money reserved for this call, settled when it is served.
    reservation: Option<Reservation>,
    /// Held until the call ends, so the caller's concurrency slot covers a whole stream.
    _caller: Option<Arc<Caller>>,
}

impl Gateway {
    /// A gateway that answers [`GatewayError::Starting`] until [`Self::install_router`] is called.
    pub fn new(forwarder: Arc<Forwarder>) -> Self {
        Self {
            router: OnceLock::new(),
            forwarder,
            // Creating the families fails only on a bug (a bad name or a duplicate), never at run time.
            metrics: Arc::new(Metrics::new().expect("the metric families are valid")),
            access: Arc::new(Access::open()),
        }
    }

    /// The same gateway checking callers against `access` (client keys, limits, budgets).
    pub fn with_access(mut self, access: Arc<Access>) -> Self {
        self.access = access;
        self
    }

    /// Client keys, limits and budgets: both faces authenticate callers through it.
    pub fn access(&self) -> &Arc<Access> {
        &self.access
    }

    /// A ready gateway over `router`.
    pub fn with_router(router: Arc<Router>, forwarder: Arc<Forwarder>) -> Self {
        let g = Self::new(forwarder);
        g.install_router(router);
        g
    }

    /// Makes the gateway ready. Only the first call has an effect: the router swaps snapshots itself.
    pub fn install_router(&self, router: Arc<Router>) {
        router.embedder().set_observer(self.metrics.clone());
        let _ = self.router.set(router);
    }

    /// The router, or [`GatewayError::Starting`] while start-up is still building it.
    pub fn router(&self) -> Result<&Arc<Router>, GatewayError> {
        self.router.get().ok_or(GatewayError::Starting)
    }

    /// True once the router is built and while its model serves (not while a failed model is loaded
    /// again).
    pub fn is_ready(&self) -> bool {
        self.router.get().is_some_and(|r| r.embedder().is_alive())
    }

    /// The forwarder (upstream clients and every target's health).
    pub fn forwarder(&self) -> &Arc<Forwarder> {
        &self.forwarder
    }

    /// The service's metrics (served by [`crate::metrics::exposition`]).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Decides the route of one prompt, with its evidence.
    pub async fn route(&self, mut query: RouteQuery) -> Result<Decision, GatewayError> {
        let started = Instant::now();
        let router = self.router()?;
        let snapshot = router.snapshot();
        query.deadline = Some(deadline_or_default(query.deadline, &snapshot, started));
        let decision = router.route_on(&snapshot, query).await?;
        self.metrics.decision(&decision);
        record_decision(&decision);
        self.metrics.stage(Stage::EndToEnd, started.elapsed());
        tracing::debug!(
            route = decision.route.as_deref().unwrap_or(""),
            score = decision.score,
            matched = decision.matched,
            "routed"
        );
        Ok(decision)
    }

    /// Decides (unless the caller forced a route) and forwards, with retries and fallbacks. Dropping the
    /// future cancels the upstream request.
    pub async fn complete(&self, call: CompleteCall) -> Result<CompleteOutcome, GatewayError> {
        let prepared = self.prepare_counted(call).await?;
        Ok(self.forward(prepared, None).await?)
    }

    /// Like [`Self::complete`], with the answer streamed as [`StreamEvent`]s. Everything that can be refused
    /// before the first byte (bad input, no route, unknown model) is refused here, as an error; once the
    /// stream exists, failures arrive as its last event. Dropping the stream cancels the upstream request.
    pub async fn complete_stream(
        self: &Arc<Self>,
        call: CompleteCall,
    ) -> Result<CompletionStream, GatewayError> {
        let prepared = self.prepare_counted(call).await?;
        Ok(stream::spawn(self.clone(), prepared))
    }

    /// Embeds `texts` with the router's encoder through the same model queue as routing (so an embedding
    /// burst is refused with overload like any other), with each text's token count. `deadline` as for
    /// [`CompleteCall::deadline`].
    pub async fn embed(
        &self,
        texts: Vec<String>,
        deadline: Option<Instant>,
    ) -> Result<Embeddings, GatewayError> {
        let router = self.router()?;
        let snapshot = router.snapshot();
        let deadline = deadline_or_default(deadline, &snapshot, Instant::now());
        let max = snapshot.config.limits.max_input_bytes;
        if texts.is_empty() {
            return Err(RouteError::InvalidInput(
                "`input` is empty: give at least one text".into(),
            )
            .into());
        }
        if texts.len() > MAX_EMBED_INPUTS {
            return Err(RouteError::InvalidInput(format!(
                "`input` holds {} texts; the limit is {MAX_EMBED_INPUTS}",
                texts.len()
            ))
            .into());
        }
        for (i, t) in texts.iter().enumerate() {
            if t.trim().is_empty() {
                return Err(RouteError::InvalidInput(format!("input[{i}] is blank")).into());
            }
            if t.len() > max {
                return Err(RouteError::InvalidInput(format!(
                    "input[{i}] is {} bytes; the limit is {max} bytes (limits.max_input_bytes)",
                    t.len()
                ))
                .into());
            }
        }
        let embedder = router.embedder();
        let tokens = embedder.count_tokens(&texts).map_err(RouteError::from)?;
        let vectors = embedder
            .embed_by(texts, Some(deadline))
            .await
            .map_err(RouteError::from)?;
        Ok(Embeddings { vectors, tokens })
    }

    /// The encoder's name (its folder's name), as the embeddings API reports it.
    pub fn encoder_name(&self) -> Result<String, GatewayError> {
        let info = self.router()?.embedder().info();
        Ok(info
            .dir
            .file_name()
            .map_or_else(|| "encoder".into(), |n| n.to_string_lossy().into_owned()))
    }

    /// [`Self::prepare`], and a call refused before its reservation still counts against the caller's
    /// shared requests-per-minute limits (cluster mode; the reservation counts the others).
    async fn prepare_counted(&self, call: CompleteCall) -> Result<Prepared, GatewayError> {
        let caller = call.caller.clone();
        let prepared = self.prepare(call).await;
        if let (Err(_), Some(caller)) = (&prepared, caller) {
            // The refusal already answers the call; a limit reached here changes nothing for it.
            let _ = caller.count_request().await;
        }
        prepared
    }

    /// Validates, pins the live snapshot and decides the route.
    async fn prepare(&self, call: CompleteCall) -> Result<Prepared, GatewayError> {
        let started = Instant::now();
        let router = self.router()?;
        let snapshot = router.snapshot();
        let deadline = deadline_or_default(call.deadline, &snapshot, started);
        let route = call.route.filter(|r| !r.is_empty());
        let model = call.model.filter(|m| !m.is_empty());
        let request = call.request;
        upstream::validate(&snapshot.config, &request)?;
        let decision = match route {
            Some(r) => {
                if !snapshot.config.routes.iter().any(|x| x.name == r) {
                    return Err(UpstreamError::UnknownRoute(r).into());
                }
                Decision {
                    route: Some(r),
                    score: 0.0,
                    matched: true,
                    candidates: Vec::new(),
                    neighbours: Vec::new(),
                    index_version: snapshot.version,
                    embed_micros: 0,
                    search_micros: 0,
                    rule: None,
                    guard: Vec::new(),
                    context_turns: 0,
                }
            }
            None => {
                let query = RouteQuery {
                    messages: request.messages.clone(),
                    deadline: Some(deadline),
                    ..Default::default()
                };
                router.route_on(&snapshot, query).await?
            }
        };
        self.metrics.decision(&decision);
        let mut decision = decision;
        // The guard and the rules see the decided route; a rule may pin another (or one where none was
        // decided).
        let verdict = policy::apply(
            &snapshot.config,
            &snapshot.guard,
            decision.route.as_deref().unwrap_or(""),
            model.as_deref(),
            &request,
            call.caller.as_deref(),
            &self.metrics,
        )?;
        crate::telemetry::span::record_policy(verdict.rule.as_deref(), &verdict.screening.names());
        if verdict.rule.is_some() {
            decision.rule = verdict.rule.clone();
            if !verdict.route.is_empty() && decision.route.as_deref() != Some(&verdict.route) {
                decision.route = Some(verdict.route.clone());
            }
        }
        decision.guard = verdict
            .screening
            .hits
            .iter()
            .map(|h| h.detector.clone())
            .collect();
        record_decision(&decision);
        // A call naming a model goes to it whatever the decision; otherwise the decision must name a route.
        let route = match (&decision.route, &model) {
            (Some(r), _) => r.clone(),
            (None, Some(_)) => String::new(),
            (None, None) => {
                return Err(UpstreamError::NoTargets(
                    "no route cleared its threshold and there is no default_route".into(),
                )
                .into())
            }
        };
        // The key's rights first, then its limits: a forbidden call must not use up any allowance.
        let reservation = match &call.caller {
            Some(caller) => {
                if !route.is_empty() {
                    caller.check_route(&route)?;
                }
                if let Some(m) = &model {
                    caller.check_model(m)?;
                }
                let (tokens, cost) =
                    upstream::usage_estimate(&snapshot.config, &route, model.as_deref(), &request);
                Some(caller.reserve(tokens, cost).await?)
            }
            None => None,
        };
        Ok(Prepared {
            snapshot,
            decision,
            route,
            model,
            request,
            steer: verdict.steer,
            started,
            deadline,
            reservation,
            _caller: call.caller,
        })
    }

    /// Forwards a prepared call, streaming deltas into `deltas` when given.
    async fn forward(
        &self,
        p: Prepared,
        deltas: Option<&tokio::sync::mpsc::Sender<crate::upstream::Delta>>,
    ) -> Result<CompleteOutcome, UpstreamError> {
        let dest = Destination {
            route: &p.route,
            model: p.model.as_deref(),
            steer: Some(&p.steer),
        };
        let started = Instant::now();
        let result = self
            .forwarder
            .complete(
                &p.snapshot.config,
                dest,
                &p.request,
                deltas,
                Some(p.deadline),
            )
            .await;
        // Time to first token means something only when the answer streams.
        let ttft = result
            .as_ref()
            .ok()
            .filter(|_| deltas.is_some())
            .map(|c| c.ttft);
        self.metrics.forwarded(&result, started.elapsed(), ttft);
        record_forwarding(&result);
        let completion = result?;
        if let Some(r) = p.reservation {
            let u = completion.usage;
            r.settle(u.input_tokens + u.output_tokens, completion.cost_usd);
        }
        self.metrics.stage(Stage::EndToEnd, p.started.elapsed());
        tracing::info!(
            route = %p.route,
            model = %completion.served_by.model,
            attempts = completion.attempts.len(),
            input_tokens = completion.usage.input_tokens,
            output_tokens = completion.usage.output_tokens,
            "completed"
        );
        Ok(CompleteOutcome {
            completion,
            decision: p.decision,
        })
    }
}

/// The decision as attributes of the request's span.
fn record_decision(d: &Decision) {
    crate::telemetry::span::record_decision(
        d.route.as_deref(),
        d.score,
        d.matched,
        d.index_version,
    );
}

/// How forwarding ended, as attributes of the request's span: the serving model, each attempt as
/// `model:outcome`, and `ok` or the error's kind.
fn record_forwarding(result: &Result<crate::upstream::Completion, UpstreamError>) {
    let list = |a: &[crate::upstream::Attempt]| {
        a.iter()
            .map(|a| format!("{}:{}", a.target, a.outcome.as_str()))
            .collect::<Vec<_>>()
            .join(",")
    };
    match result {
        Ok(c) => crate::telemetry::span::record_forwarding(
            Some(&c.served_by.model),
            &list(&c.attempts),
            "ok",
        ),
        Err(e) => crate::telemetry::span::record_forwarding(None, &list(e.attempts()), e.kind()),
    }
}

/// The caller's deadline, or the configured default from `now`.
fn deadline_or_default(deadline: Option<Instant>, snapshot: &Snapshot, now: Instant) -> Instant {
    deadline
        .unwrap_or_else(|| now + Duration::from_millis(snapshot.config.limits.default_deadline_ms))
}
