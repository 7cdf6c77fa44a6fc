//! proto <-> domain translation and the one place domain errors become gRPC statuses.

use tonic::Status;

use super::pb;
use crate::access::AccessError;
use crate::admin::AdminError;
use crate::embedding::EmbedError;
use crate::gateway::{CompleteOutcome, GatewayError};
use crate::message::{ChatMessage, ResponseFormat};
use crate::router::{Decision, RouteError, RouteQuery};
use crate::upstream::{Attempt, Completion, CompletionRequest, Outcome, UpstreamError};

/// A proto `float` as the decimal the caller wrote: `0.1f32` is `0.10000000149…` as an f64, and upstreams
/// should see `0.1`. The shortest text that reads back as the same f32 is that decimal.
fn decimal(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(f64::from(x))
}

fn messages(ms: Vec<pb::Message>) -> Vec<ChatMessage> {
    ms.into_iter()
        .map(|m| ChatMessage::text(m.role, m.content))
        .collect()
}

impl From<pb::CompleteRequest> for CompletionRequest {
    fn from(r: pb::CompleteRequest) -> Self {
        CompletionRequest {
            messages: messages(r.messages),
            max_tokens: r.max_tokens,
            temperature: r.temperature.map(decimal),
            top_p: r.top_p.map(decimal),
            stop: r.stop,
            response_format: if r.json {
                ResponseFormat::JsonObject
            } else {
                ResponseFormat::Text
            },
            metadata: r.metadata.into_iter().collect(),
            ..Default::default()
        }
    }
}

impl From<Attempt> for pb::Attempt {
    fn from(a: Attempt) -> Self {
        let outcome = match a.outcome {
            Outcome::Ok => pb::AttemptOutcome::Ok,
            Outcome::Failed => pb::AttemptOutcome::Failed,
            Outcome::Timeout => pb::AttemptOutcome::Timeout,
            Outcome::CircuitOpen => pb::AttemptOutcome::CircuitOpen,
            Outcome::Escalated => pb::AttemptOutcome::Escalated,
            Outcome::Skipped => pb::AttemptOutcome::Skipped,
        };
        pb::Attempt {
            target: a.target,
            provider: a.provider,
            outcome: outcome as i32,
            latency_ms: a.latency_ms,
            error: a.error,
            circuit: a.breaker.as_str().to_string(),
        }
    }
}

impl From<CompleteOutcome> for pb::CompleteResponse {
    fn from(o: CompleteOutcome) -> Self {
        let mut response = pb::CompleteResponse::from(o.completion);
        response.decision = Some(o.decision.into());
        response
    }
}

impl From<Completion> for pb::CompleteResponse {
    fn from(c: Completion) -> Self {
        pb::CompleteResponse {
            content: c.content,
            finish_reason: c.finish_reason,
            usage: Some(pb::Usage {
                input_tokens: c.usage.input_tokens,
                output_tokens: c.usage.output_tokens,
            }),
            cost_usd: c.cost_usd,
            served_by: Some(pb::ServedBy {
                model: c.served_by.model,
                provider: c.served_by.provider,
                upstream_model: c.served_by.upstream_model,
            }),
            attempts: c.attempts.into_iter().map(Into::into).collect(),
            decision: None,
        }
    }
}

impl From<GatewayError> for Status {
    fn from(e: GatewayError) -> Self {
        match e {
            GatewayError::Starting => Status::unavailable(e.to_string()),
            GatewayError::Route(e) => e.into(),
            GatewayError::Upstream(e) => e.into(),
            GatewayError::Access(e) => e.into(),
            GatewayError::Policy(e) => Status::permission_denied(e.to_string()),
        }
    }
}

impl From<AccessError> for Status {
    fn from(e: AccessError) -> Self {
        match &e {
            AccessError::Unauthenticated(_) => Status::unauthenticated(e.to_string()),
            AccessError::Forbidden(_) => Status::permission_denied(e.to_string()),
            AccessError::Limited(r) => {
                let mut s = Status::resource_exhausted(e.to_string());
                // The wait, in the header HTTP clients know; the message says it too.
                if let Ok(v) = r.retry_after.as_secs().max(1).to_string().parse() {
                    s.metadata_mut().insert("retry-after", v);
                }
                s
            }
            AccessError::Unavailable(_) => Status::unavailable(e.to_string()),
        }
    }
}

impl From<UpstreamError> for Status {
    fn from(e: UpstreamError) -> Self {
        match e {
            UpstreamError::InvalidRequest(m) => Status::invalid_argument(m),
            UpstreamError::Unsupported { field, reason } => {
                Status::invalid_argument(format!("{field}: {reason}"))
            }
            UpstreamError::UnknownRoute(_) | UpstreamError::UnknownModel(_) => {
                Status::not_found(e.to_string())
            }
            UpstreamError::NoTargets(m) => Status::failed_precondition(m),
            UpstreamError::AllFailed { .. } | UpstreamError::Interrupted { .. } => {
                Status::unavailable(e.to_string())
            }
            UpstreamError::DeadlineExceeded { .. } => Status::deadline_exceeded(e.to_string()),
            UpstreamError::Cancelled => Status::cancelled(e.to_string()),
        }
    }
}

impl From<pb::RouteRequest> for RouteQuery {
    fn from(r: pb::RouteRequest) -> Self {
        RouteQuery {
            text: r.text,
            messages: messages(r.messages),
            top_k: r.top_k.map(|k| k as usize),
            deadline: None,
        }
    }
}

impl From<Decision> for pb::RouteResponse {
    fn from(d: Decision) -> Self {
        pb::RouteResponse {
            route: d.route.unwrap_or_default(),
            score: d.score,
            matched: d.matched,
            candidates: d
                .candidates
                .into_iter()
                .map(|c| pb::RouteCandidate {
                    route: c.route,
                    score: c.score,
                })
                .collect(),
            neighbours: d
                .neighbours
                .into_iter()
                .map(|n| pb::Neighbour {
                    route: n.route,
                    utterance: n.utterance,
                    similarity: n.similarity,
                })
                .collect(),
            index_version: d.index_version,
            embed_micros: d.embed_micros,
            search_micros: d.search_micros,
            rule: d.rule.unwrap_or_default(),
            guard: d.guard,
            context_turns: u32::try_from(d.context_turns).unwrap_or(u32::MAX),
        }
    }
}

impl From<RouteError> for Status {
    fn from(e: RouteError) -> Self {
        match e {
            RouteError::InvalidInput(m) => Status::invalid_argument(m),
            RouteError::Embed(EmbedError::Overloaded { retry_after_ms, .. }) => {
                let mut s = Status::resource_exhausted(e.to_string());
                // The hint in milliseconds, and in whole seconds as HTTP's Retry-After has it.
                let md = s.metadata_mut();
                if let Ok(v) = retry_after_ms.to_string().parse() {
                    md.insert("retry-after-ms", v);
                }
                if let Ok(v) = retry_after_ms.div_ceil(1000).max(1).to_string().parse() {
                    md.insert("retry-after", v);
                }
                s
            }
            RouteError::Embed(EmbedError::DeadlineExceeded) => {
                Status::deadline_exceeded(e.to_string())
            }
            RouteError::Embed(EmbedError::Stopped | EmbedError::Restarting) => {
                Status::unavailable(e.to_string())
            }
            RouteError::Embed(EmbedError::Tokenize(_)) => Status::invalid_argument(e.to_string()),
            RouteError::Embed(_) | RouteError::Index(_) => Status::internal(e.to_string()),
        }
    }
}

impl From<AdminError> for Status {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::Invalid(_) | AdminError::BadRequest(_) => {
                Status::invalid_argument(e.to_string())
            }
            AdminError::NotFound(_) => Status::not_found(e.to_string()),
            AdminError::Persist { .. } => Status::internal(e.to_string()),
            AdminError::Conflict(_) => Status::aborted(e.to_string()),
            AdminError::Unavailable(_) => Status::unavailable(e.to_string()),
            AdminError::Build(inner) => inner.into(),
        }
    }
}
