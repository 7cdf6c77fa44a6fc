//! Forwarding prompts to downstream models: provider clients (OpenAI-compatible, Anthropic), target choice
//! (fallback, weighted, cheapest, fastest, cascade), per-target health (circuit breaker, learned latency),
//! retries with backoff, and the fallback chain. Knows nothing of gRPC.

mod anthropic;
mod assemble;
pub mod breaker;
mod call;
pub mod health;
pub mod keys;
mod mock;
mod openai;
pub mod policy;
pub mod sse;
pub mod strategy;
pub mod wire;

pub use openai::tool_call as openai_tool_call;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::config::{Config, ModelConfig, ProviderConfig, RouteConfig, Strategy};
use crate::message::{ChatMessage, ResponseFormat, ToolCall, ToolChoice, ToolSpec};
use breaker::{Admission, BreakerState};
use call::{AttemptError, DeltaSink, Target};
use health::{HealthBook, TargetHealth};
use strategy::RequestShape;

/// Output tokens assumed for price estimates when the caller sets no `max_tokens`.
const TYPICAL_OUTPUT_TOKENS: u64 = 256;

/// Errors of the forwarding layer.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The request is malformed (no messages, too long, parameters out of range).
    #[error("{0}")]
    InvalidRequest(String),
    /// The route named by the caller does not exist.
    #[error("unknown route `{0}`")]
    UnknownRoute(String),
    /// The model named by the caller does not exist.
    #[error("unknown model `{0}`")]
    UnknownModel(String),
    /// No target of the route can carry the request as given (a field its format lacks, images to a
    /// model without vision).
    #[error("{reason}")]
    Unsupported {
        /// The request field, as the caller wrote it (`messages[1].content[0]`, `seed`).
        field: String,
        /// Why, naming the target.
        reason: String,
    },
    /// No route was decided (nothing matched and there is no default route), or the route has no targets.
    #[error("{0}")]
    NoTargets(String),
    /// Every target failed or was skipped.
    #[error("all targets failed for route `{route}`: {}", describe(.attempts))]
    AllFailed {
        /// The route.
        route: String,
        /// Every attempt, in order.
        attempts: Vec<Attempt>,
    },
    /// A stream broke after part of the answer reached the caller, so it could not fail over.
    #[error("the answer broke off after it had started: {}", describe(.attempts))]
    Interrupted {
        /// Every attempt, in order.
        attempts: Vec<Attempt>,
    },
    /// The request's budget (`upstream.request_timeout_ms`, capped by the caller's deadline) ran out.
    #[error("the request's budget of {budget_ms} ms ran out: {}", describe(.attempts))]
    DeadlineExceeded {
        /// The budget the call had.
        budget_ms: u64,
        /// Every attempt made, in order.
        attempts: Vec<Attempt>,
    },
    /// The caller went away.
    #[error("cancelled by the caller")]
    Cancelled,
}

impl UpstreamError {
    /// The attempts made before the error (none for errors raised before forwarding).
    pub fn attempts(&self) -> &[Attempt] {
        match self {
            Self::AllFailed { attempts, .. }
            | Self::Interrupted { attempts }
            | Self::DeadlineExceeded { attempts, .. } => attempts,
            _ => &[],
        }
    }

    /// A short, fixed name of the error's kind (a span attribute; never carries request data).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::UnknownRoute(_) => "unknown_route",
            Self::UnknownModel(_) => "unknown_model",
            Self::Unsupported { .. } => "unsupported",
            Self::NoTargets(_) => "no_targets",
            Self::AllFailed { .. } => "all_targets_failed",
            Self::Interrupted { .. } => "interrupted",
            Self::DeadlineExceeded { .. } => "deadline_exceeded",
            Self::Cancelled => "cancelled",
        }
    }
}

fn describe(attempts: &[Attempt]) -> String {
    if attempts.is_empty() {
        return "no target was tried".into();
    }
    attempts
        .iter()
        .map(|a| {
            format!(
                "{} ({}): {} after {} ms{} [circuit {}]",
                a.target,
                a.provider,
                a.outcome.as_str(),
                a.latency_ms,
                if a.error.is_empty() {
                    String::new()
                } else {
                    format!(", {}", a.error)
                },
                a.breaker.as_str()
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A completion request in domain terms.
#[derive(Debug, Clone, Default)]
pub struct CompletionRequest {
    /// The conversation.
    pub messages: Vec<ChatMessage>,
    /// Most tokens to generate.
    pub max_tokens: Option<u32>,
    /// Sampling temperature.
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    pub top_p: Option<f64>,
    /// Stop sequences.
    pub stop: Vec<String>,
    /// The answer's shape (JSON mode is also checked by cascades).
    pub response_format: ResponseFormat,
    /// Functions the model may call.
    pub tools: Vec<ToolSpec>,
    /// Whether and which tool the model must call.
    pub tool_choice: Option<ToolChoice>,
    /// Whether the model may make several calls in one turn.
    pub parallel_tool_calls: Option<bool>,
    /// Caller metadata (sticky keys for A/B splits).
    pub metadata: HashMap<String, String>,
    /// Request fields the router does not interpret (the HTTP face's `seed`, `user`, penalties, ...): sent
    /// unchanged to OpenAI-compatible upstreams; a target whose format cannot carry them is skipped with an
    /// attempt that names the field.
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// Token counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Generated tokens.
    pub output_tokens: u64,
}

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It served the answer.
    Ok,
    /// It failed (connect error, HTTP error, malformed or broken answer, missing key).
    Failed,
    /// A deadline passed.
    Timeout,
    /// Not sent: the target's circuit is open.
    CircuitOpen,
    /// It answered, but the cascade check failed, so the next target was asked.
    Escalated,
    /// Not sent: the request's budget could not cover it.
    Skipped,
}

impl Outcome {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failed => "failed",
            Self::Timeout => "timeout",
            Self::CircuitOpen => "circuit_open",
            Self::Escalated => "escalated",
            Self::Skipped => "skipped",
        }
    }
}

/// One attempt on one target.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    /// The model name (from `models`).
    pub target: String,
    /// The provider name.
    pub provider: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Wall time of the attempt.
    pub latency_ms: u64,
    /// What went wrong (empty on success).
    pub error: String,
    /// The target's circuit after the attempt.
    pub breaker: BreakerState,
}

/// Who served an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedBy {
    /// The model name (from `models`).
    pub model: String,
    /// The provider name.
    pub provider: String,
    /// The provider's id for the model.
    pub upstream_model: String,
}

/// A piece of a streamed answer, as the caller sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Delta {
    /// Text to append.
    Text(String),
    /// Part of a tool call.
    ToolCall(ToolCallDelta),
}

/// Part of a tool call in a stream: the first piece of call `index` carries its id and name, later ones
/// the next fragments of its arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCallDelta {
    /// The call's position in the answer's calls: 0, 1, …
    pub index: u32,
    /// The call's id (first piece only).
    pub id: Option<String>,
    /// The function's name (first piece only).
    pub name: Option<String>,
    /// The next fragment of the arguments' JSON text.
    pub arguments: String,
}

/// A served completion.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The answer.
    pub content: String,
    /// The tool calls the model made.
    pub tool_calls: Vec<ToolCall>,
    /// `stop`, `length`, ...
    pub finish_reason: String,
    /// Token counts reported by the provider.
    pub usage: Usage,
    /// Estimated cost in USD from the serving model's prices.
    pub cost_usd: f64,
    /// The serving attempt's time to its first token (to the whole answer, when not streamed).
    pub ttft: Duration,
    /// Who served it.
    pub served_by: ServedBy,
    /// Every attempt, in order, the serving one last.
    pub attempts: Vec<Attempt>,
}

/// Which route and, optionally, which model.
#[derive(Debug, Clone, Copy)]
pub struct Destination<'a> {
    /// The route whose targets are used.
    pub route: &'a str,
    /// A model that skips target choice.
    pub model: Option<&'a str>,
    /// What rules and the guard changed about where the call may go (`None`: nothing).
    pub steer: Option<&'a Steer>,
}

/// What the gateway's policy — a rule that fired, the sensitive-data guard — changes about where a call
/// goes and what each target receives.
#[derive(Debug, Clone, Default)]
pub struct Steer {
    /// Use only these models, in this order, instead of the route's targets (then the strategy orders
    /// them).
    pub targets: Option<Vec<String>>,
    /// Override the route's strategy.
    pub strategy: Option<Strategy>,
    /// The conversation as targets that are not `private` receive it (the guard's redaction); private
    /// targets get the request as written.
    pub redacted: Option<Vec<crate::message::ChatMessage>>,
}

/// True when `model` may receive prompts the guard flagged: it, or its provider, is `private`.
pub fn is_private(config: &Config, model: &str) -> bool {
    lookup(config, model).is_ok_and(|(m, p)| m.private || p.private)
}

/// Hears of circuits opening (`Some(cool_down)`) and closing (`None`), by model name.
pub type CircuitListener = Box<dyn Fn(&str, Option<Duration>) + Send + Sync>;

/// Sends completions to targets; holds the HTTP clients and every target's health.
pub struct Forwarder {
    base_dir: PathBuf,
    keys: keys::KeyCache,
    health: HealthBook,
    /// Cluster mode: told when a circuit opens (with its cool-down) or closes here.
    circuit_events: std::sync::OnceLock<CircuitListener>,
    clients: Mutex<HashMap<String, (ProviderConfig, reqwest::Client)>>,
}

impl Forwarder {
    /// A forwarder resolving `api_key_file` paths against `base_dir` (the config file's directory).
    pub fn new(base_dir: PathBuf) -> Self {
        Self {
            base_dir,
            keys: keys::KeyCache::default(),
            health: HealthBook::default(),
            circuit_events: std::sync::OnceLock::new(),
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Cluster mode: `listener` hears of every circuit this forwarder opens (`Some(cool_down)`) or closes
    /// (`None`), by model name, so other replicas can skip a target found down here. Set once.
    pub fn on_circuit_change(&self, listener: CircuitListener) {
        let _ = self.circuit_events.set(listener);
    }

    fn circuit_changed(&self, model: &str, open_for: Option<Duration>) {
        if let Some(l) = self.circuit_events.get() {
            l(model, open_for);
        }
    }

    /// Logs a warning for every provider whose key is missing: the server still starts, and calls to that
    /// provider fail with a clear message. Returns the messages.
    pub fn warn_missing_keys(&self, config: &Config) -> Vec<String> {
        let missing = keys::missing(config, &self.base_dir);
        for m in &missing {
            tracing::warn!("{m}: its targets will fail until it is set");
        }
        missing
    }

    /// The health of target `model`.
    pub fn health(&self, model: &str) -> Arc<TargetHealth> {
        self.health.get(model)
    }

    fn client(&self, p: &ProviderConfig) -> Result<reqwest::Client, String> {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((cfg, c)) = clients.get(&p.name) {
            if cfg == p {
                return Ok(c.clone());
            }
        }
        let mut headers = reqwest::header::HeaderMap::new();
        for (k, v) in &p.headers {
            // Validation checked both; a failure here would be a bug, reported as the attempt's error.
            let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| format!("header {k}: {e}"))?;
            let value = reqwest::header::HeaderValue::from_str(v)
                .map_err(|e| format!("header {k}: {e}"))?;
            headers.insert(name, value);
        }
        let c = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(p.timeouts.connect_ms))
            .default_headers(headers)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| format!("HTTP client for provider `{}`: {e}", p.name))?;
        clients.insert(p.name.clone(), (p.clone(), c.clone()));
        Ok(c)
    }

    /// Forwards `req` to the targets of `dest` under `config`. With `deltas`, the answer is streamed: each
    /// delta is sent as it arrives, and the request fails over to the next target only while nothing has
    /// been sent. Dropping the returned future cancels the upstream request.
    ///
    /// Every attempt, retry and backoff shares one budget: `upstream.request_timeout_ms`, ending no later
    /// than `deadline` (the caller's). An attempt is not started when the target's usual time to its
    /// first token is longer than what is left; when the budget runs out the call ends with
    /// [`UpstreamError::DeadlineExceeded`] listing the attempts made.
    pub async fn complete(
        &self,
        config: &Config,
        dest: Destination<'_>,
        req: &CompletionRequest,
        deltas: Option<&mpsc::Sender<Delta>>,
        deadline: Option<Instant>,
    ) -> Result<Completion, UpstreamError> {
        validate(config, req)?;
        let begun = Instant::now();
        let budget_end = {
            let own = begun + Duration::from_millis(config.upstream.request_timeout_ms);
            deadline.map_or(own, |d| d.min(own))
        };
        let budget_ms = budget_end.saturating_duration_since(begun).as_millis() as u64;
        // A call that names a model needs no route: its decision is only reported.
        let found = match dest.model {
            Some(_) if dest.route.is_empty() => None,
            _ => Some(
                config
                    .routes
                    .iter()
                    .find(|r| r.name == dest.route)
                    .ok_or_else(|| UpstreamError::UnknownRoute(dest.route.to_string()))?,
            ),
        };
        // A rule's targets and strategy apply to a copy of the route; the config stays as loaded.
        let steered: Option<RouteConfig> = match (found, dest.steer) {
            (Some(r), Some(s)) if s.targets.is_some() || s.strategy.is_some() => {
                let mut r = r.clone();
                if let Some(ts) = &s.targets {
                    // A target the route lists keeps its weight, so a weighted split stays one.
                    let weight = |m: &str| {
                        r.targets
                            .iter()
                            .find(|t| t.model == m)
                            .and_then(|t| t.weight)
                    };
                    r.targets = ts
                        .iter()
                        .map(|m| crate::config::TargetConfig {
                            model: m.clone(),
                            weight: weight(m),
                        })
                        .collect();
                }
                if let Some(st) = s.strategy {
                    r.strategy = st;
                }
                Some(r)
            }
            _ => None,
        };
        let route = steered.as_ref().or(found);
        let redacted = dest
            .steer
            .and_then(|s| s.redacted.as_ref())
            .map(|m| CompletionRequest {
                messages: m.clone(),
                ..req.clone()
            });
        // What target `name` receives: the redacted conversation unless it is private.
        let request_for = |name: &str| match &redacted {
            Some(r) if !is_private(config, name) => r,
            _ => req,
        };
        let order = self.order(config, route, dest.model, req)?;
        // A request no target can carry is the caller's to fix: refused before anything is sent.
        let unfit: Vec<Option<(String, String)>> = order
            .iter()
            .map(|name| lookup(config, name).map(|(m, p)| cannot_carry(p, m, request_for(name))))
            .collect::<Result<_, _>>()?;
        if unfit.iter().all(Option::is_some) {
            if let Some(Some((field, reason))) = unfit.first() {
                return Err(UpstreamError::Unsupported {
                    field: field.clone(),
                    reason: reason.clone(),
                });
            }
        }
        let cascade =
            dest.model.is_none() && route.is_some_and(|r| r.strategy == Strategy::Cascade);
        let u = &config.upstream;
        let mut attempts = Vec::new();
        let mut delivered = false;

        for (i, name) in order.iter().enumerate() {
            let (model, provider) = lookup(config, name)?;
            let req = request_for(name);
            let health = self.health.get(name);
            let record = |outcome, started: Instant, error: String, breaker| Attempt {
                target: name.clone(),
                provider: provider.name.clone(),
                outcome,
                latency_ms: started.elapsed().as_millis() as u64,
                error,
                breaker,
            };
            if let Some((_, reason)) = &unfit[i] {
                let m = format!("skipped: {reason}");
                attempts.push(record(Outcome::Failed, Instant::now(), m, health.state()));
                continue;
            }
            let key = match self.keys.get(provider, &self.base_dir).await {
                Ok(k) => k,
                Err(m) => {
                    attempts.push(record(Outcome::Failed, Instant::now(), m, health.state()));
                    continue;
                }
            };
            let client = match self.client(provider) {
                Ok(c) => c,
                Err(m) => {
                    attempts.push(record(Outcome::Failed, Instant::now(), m, health.state()));
                    continue;
                }
            };
            let target = Target {
                client: &client,
                provider,
                model,
                key: key.as_ref(),
                max_body_bytes: u.max_body_bytes,
            };
            // A cascade checks an answer before the caller sees any of it, except the last one's.
            let hold = cascade && i + 1 < order.len();
            let mut retry = 0u32;
            loop {
                let left = budget_end.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(UpstreamError::DeadlineExceeded {
                        budget_ms,
                        attempts,
                    });
                }
                // An attempt that could not even begin answering within what is left is not sent.
                if let Some(ttft) = health.latency().ttft_ms.get() {
                    if Duration::from_secs_f64(ttft / 1000.0) > left {
                        let m = format!(
                            "not sent: its time to first token is ~{ttft:.0} ms and the request's budget \
                             has {} ms left",
                            left.as_millis()
                        );
                        attempts.push(record(Outcome::Skipped, Instant::now(), m, health.state()));
                        break;
                    }
                }
                let admission = health.admit();
                if admission == Admission::Refused {
                    tracing::debug!(target = %name, "circuit open: skipped");
                    attempts.push(record(
                        Outcome::CircuitOpen,
                        Instant::now(),
                        String::new(),
                        BreakerState::Open,
                    ));
                    break;
                }
                if admission == Admission::Probe {
                    tracing::info!(target = %name, "circuit half-open: sending a probe");
                }
                let probe = ProbeGuard {
                    health: &health,
                    armed: admission == Admission::Probe,
                };
                let started = Instant::now();
                let attempt = async {
                    match (deltas, hold) {
                        (Some(tx), false) => {
                            let sink = DeltaSink {
                                tx,
                                delivered: &mut delivered,
                            };
                            call::stream(&target, req, Some(sink)).await
                        }
                        (Some(_), true) => call::stream(&target, req, None).await,
                        (None, _) => call::complete(&target, req).await,
                    }
                };
                let span = tracing::info_span!(
                    target: "semroute::upstream",
                    "upstream_attempt",
                    target = %name,
                    provider = %provider.name,
                    model = %model.id,
                    retry,
                    outcome = tracing::field::Empty,
                );
                let attempt = tracing::Instrument::instrument(attempt, span.clone());
                let timed = tokio::time::timeout_at(budget_end.into(), attempt).await;
                span.record(
                    "outcome",
                    match &timed {
                        Ok(Ok(_)) => "ok",
                        Ok(Err(e)) if e.is_timeout() => "timeout",
                        Ok(Err(AttemptError::Cancelled)) => "cancelled",
                        Ok(Err(_)) => "failed",
                        Err(_) => "abandoned",
                    },
                );
                let Ok(result) = timed else {
                    // The budget ran out mid-attempt: the attempt is abandoned (its request dropped).
                    drop(probe);
                    let m = format!("abandoned: the request's budget of {budget_ms} ms ran out");
                    attempts.push(record(Outcome::Timeout, started, m, health.state()));
                    return Err(UpstreamError::DeadlineExceeded {
                        budget_ms,
                        attempts,
                    });
                };
                let elapsed = started.elapsed();
                let served = match result {
                    Ok(s) => s,
                    Err(AttemptError::Cancelled) => return Err(UpstreamError::Cancelled),
                    Err(e) => {
                        let state = if e.unhealthy() {
                            let before = health.state();
                            let after = health.failure(
                                u.breaker_failures,
                                Duration::from_millis(u.breaker_cool_down_ms),
                            );
                            if after == BreakerState::Open && before != BreakerState::Open {
                                tracing::warn!(target = %name, error = %e, "circuit opened");
                                let cool_down = Duration::from_millis(u.breaker_cool_down_ms);
                                self.circuit_changed(name, Some(cool_down));
                            }
                            after
                        } else {
                            health.release_probe();
                            health.state()
                        };
                        probe.disarm();
                        let outcome = if e.is_timeout() {
                            Outcome::Timeout
                        } else {
                            Outcome::Failed
                        };
                        tracing::info!(target = %name, error = %e, circuit = state.as_str(), "attempt failed");
                        attempts.push(record(outcome, started, e.to_string(), state));
                        if delivered {
                            return Err(UpstreamError::Interrupted { attempts });
                        }
                        if e.retryable() && retry < u.max_retries && state != BreakerState::Open {
                            let mut wait = policy::backoff(u, retry);
                            if let Some(ra) = e.retry_after() {
                                if ra > Duration::from_millis(u.retry_after_max_ms) {
                                    // Waiting that long would hold the caller: another target may answer now.
                                    break;
                                }
                                wait = wait.max(ra);
                            }
                            if Instant::now() + wait >= budget_end {
                                // The retry could not start before the budget ends.
                                return Err(UpstreamError::DeadlineExceeded {
                                    budget_ms,
                                    attempts,
                                });
                            }
                            tokio::time::sleep(wait).await;
                            retry += 1;
                            continue;
                        }
                        break;
                    }
                };
                let before = health.success();
                probe.disarm();
                if before != BreakerState::Closed {
                    tracing::info!(target = %name, "circuit closed");
                    self.circuit_changed(name, None);
                }
                health.observe(served.ttft, elapsed, served.answer.usage.output_tokens);
                if let Some(route) = route.filter(|_| hold) {
                    if let Some(reason) = policy::cascade_check(
                        &route.cascade,
                        req.response_format.is_json(),
                        &served.answer,
                    ) {
                        tracing::debug!(target = %name, %reason, "cascade escalates");
                        attempts.push(record(
                            Outcome::Escalated,
                            started,
                            reason,
                            BreakerState::Closed,
                        ));
                        break;
                    }
                    if let Some(tx) = deltas {
                        if !served.answer.content.is_empty()
                            && tx
                                .send(Delta::Text(served.answer.content.clone()))
                                .await
                                .is_err()
                        {
                            return Err(UpstreamError::Cancelled);
                        }
                        for (n, c) in served.answer.tool_calls.iter().enumerate() {
                            let d = Delta::ToolCall(ToolCallDelta {
                                index: n as u32,
                                id: Some(c.id.clone()),
                                name: Some(c.name.clone()),
                                arguments: c.arguments.clone(),
                            });
                            if tx.send(d).await.is_err() {
                                return Err(UpstreamError::Cancelled);
                            }
                        }
                    }
                }
                attempts.push(record(
                    Outcome::Ok,
                    started,
                    String::new(),
                    BreakerState::Closed,
                ));
                let usage = served.answer.usage;
                return Ok(Completion {
                    content: served.answer.content,
                    tool_calls: served.answer.tool_calls,
                    finish_reason: served.answer.finish_reason,
                    usage,
                    cost_usd: strategy::estimated_cost(
                        config,
                        name,
                        usage.input_tokens,
                        usage.output_tokens,
                    ),
                    ttft: served.ttft,
                    served_by: ServedBy {
                        model: name.clone(),
                        provider: provider.name.clone(),
                        upstream_model: model.id.clone(),
                    },
                    attempts,
                });
            }
        }
        let label = route.map_or(dest.model.unwrap_or_default(), |r| r.name.as_str());
        tracing::warn!(route = %label, attempts = attempts.len(), "all targets failed");
        Err(UpstreamError::AllFailed {
            route: label.to_string(),
            attempts,
        })
    }

    /// The targets to try, in order.
    fn order(
        &self,
        config: &Config,
        route: Option<&RouteConfig>,
        model: Option<&str>,
        req: &CompletionRequest,
    ) -> Result<Vec<String>, UpstreamError> {
        if let Some(m) = model {
            if !config.models.iter().any(|x| x.name == m) {
                return Err(UpstreamError::UnknownModel(m.to_string()));
            }
            return Ok(vec![m.to_string()]);
        }
        let Some(route) = route else {
            return Err(UpstreamError::NoTargets("no route was decided".into()));
        };
        if route.targets.is_empty() {
            return Err(UpstreamError::NoTargets(format!(
                "route `{}` has no targets: add `targets` to it in the config",
                route.name
            )));
        }
        let shape = RequestShape {
            metadata: &req.metadata,
            input_tokens: estimate_tokens(req),
            output_tokens: req.max_tokens.map_or(TYPICAL_OUTPUT_TOKENS, u64::from),
        };
        let latency = |m: &str| self.health.get(m).latency().expected_ms();
        Ok(strategy::order(config, route, shape, &latency))
    }
}

/// Releases a half-open probe slot when an attempt ends without a verdict (its future was dropped).
struct ProbeGuard<'a> {
    health: &'a TargetHealth,
    armed: bool,
}

impl ProbeGuard<'_> {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.health.release_probe();
        }
    }
}

fn lookup<'c>(
    config: &'c Config,
    name: &str,
) -> Result<(&'c ModelConfig, &'c ProviderConfig), UpstreamError> {
    let model = config
        .models
        .iter()
        .find(|m| m.name == name)
        .ok_or_else(|| UpstreamError::UnknownModel(name.to_string()))?;
    let provider = config
        .providers
        .iter()
        .find(|p| p.name == model.provider)
        .ok_or_else(|| UpstreamError::UnknownModel(name.to_string()))?;
    Ok((model, provider))
}

/// What a call may use before the provider says what it used: tokens (the input's rough count plus
/// `max_tokens`, or a typical answer's length) and the cost of that on the dearest model it may reach (the
/// named model, or any of the route's targets). Limits reserve this and settle from the real usage.
pub fn usage_estimate(
    config: &Config,
    route: &str,
    model: Option<&str>,
    req: &CompletionRequest,
) -> (u64, f64) {
    let input = estimate_tokens(req);
    let output = req.max_tokens.map_or(TYPICAL_OUTPUT_TOKENS, u64::from);
    let cost = |m: &str| strategy::estimated_cost(config, m, input, output);
    let dearest = match model {
        Some(m) => cost(m),
        None => config
            .routes
            .iter()
            .find(|r| r.name == route)
            .map_or(0.0, |r| {
                r.targets.iter().map(|t| cost(&t.model)).fold(0.0, f64::max)
            }),
    };
    (input + output, dearest)
}

/// A rough token count (four bytes a token) for price estimates before the provider counts.
pub fn estimate_tokens(req: &CompletionRequest) -> u64 {
    let bytes: usize = req.messages.iter().map(ChatMessage::size).sum();
    (bytes as u64).div_ceil(4)
}

/// Why a target cannot carry `req` without dropping part of it: the request field and the reason.
fn cannot_carry(
    provider: &ProviderConfig,
    model: &ModelConfig,
    req: &CompletionRequest,
) -> Option<(String, String)> {
    if !model.vision {
        for (i, m) in req.messages.iter().enumerate() {
            if let Some(j) = m
                .parts
                .iter()
                .position(|p| matches!(p, crate::message::ContentPart::Image(_)))
            {
                return Some((
                    format!("messages[{i}].content[{j}]"),
                    format!(
                        "model `{}` does not take images (set `vision: true` on it in the config if it does)",
                        model.name
                    ),
                ));
            }
        }
    }
    match provider.kind {
        crate::config::ProviderKind::Anthropic => anthropic::cannot_carry(req)
            .map(|(f, why)| (f, format!("{why} (model `{}`)", model.name))),
        _ => None,
    }
}

/// Checks a request against the limits of `config` (also done by [`Forwarder::complete`]).
pub fn validate(config: &Config, req: &CompletionRequest) -> Result<(), UpstreamError> {
    let bad = |m: String| Err(UpstreamError::InvalidRequest(m));
    if req.messages.is_empty() {
        return bad("messages is empty".into());
    }
    for (i, m) in req.messages.iter().enumerate() {
        if !matches!(m.role.as_str(), "system" | "user" | "assistant" | "tool") {
            return bad(format!(
                "messages[{i}].role `{}` is not system, user, assistant or tool",
                m.role
            ));
        }
    }
    let bytes: usize = req.messages.iter().map(ChatMessage::size).sum();
    let max = config.limits.max_input_bytes;
    if bytes > max {
        return bad(format!(
            "messages hold {bytes} bytes; the limit is {max} bytes (limits.max_input_bytes)"
        ));
    }
    if req.max_tokens == Some(0) {
        return bad("max_tokens must be at least 1".into());
    }
    if req
        .temperature
        .is_some_and(|t| !t.is_finite() || !(0.0..=2.0).contains(&t))
    {
        return bad("temperature must be in [0, 2]".into());
    }
    if req
        .top_p
        .is_some_and(|p| !p.is_finite() || p <= 0.0 || p > 1.0)
    {
        return bad("top_p must be in (0, 1]".into());
    }
    Ok(())
}
