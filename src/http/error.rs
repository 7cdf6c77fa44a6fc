//! The one place domain errors become HTTP statuses, in OpenAI's error object
//! (`{"error": {"message", "type", "param", "code"}}`), with the statuses the OpenAI SDKs map to their
//! exception classes.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::access::{AccessError, LimitKind};
use crate::embedding::EmbedError;
use crate::gateway::GatewayError;
use crate::router::RouteError;
use crate::upstream::UpstreamError;

/// Seconds a client is asked to wait after an overload refusal.
const OVERLOAD_RETRY_AFTER_S: u64 = 1;

/// An error answer of the HTTP face.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong, for a person.
    pub message: String,
    /// OpenAI's error `type`.
    pub kind: &'static str,
    /// The request field at fault, when one is.
    pub param: Option<String>,
    /// A machine-readable code.
    pub code: Option<&'static str>,
    /// `Retry-After`, in seconds.
    pub retry_after: Option<u64>,
    /// Further headers (`x-ratelimit-*` on a limit refusal). Boxed: errors travel in `Result`s, so they
    /// stay small.
    pub headers: Box<[(&'static str, String)]>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
            retry_after: None,
            headers: Box::default(),
        }
    }

    /// 400: the request is malformed.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    /// 400 about one field.
    pub fn invalid_param(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            param: Some(param.into()),
            ..Self::invalid(message)
        }
    }

    /// 404: no such model, route or path.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            code: Some("model_not_found"),
            param: Some("model".into()),
            ..Self::new(StatusCode::NOT_FOUND, "invalid_request_error", message)
        }
    }

    /// 429 `overloaded`: refused at the door; retry shortly.
    pub fn overloaded(message: impl Into<String>) -> Self {
        Self {
            code: Some("overloaded"),
            retry_after: Some(OVERLOAD_RETRY_AFTER_S),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", message)
        }
    }

    /// 413: the body is over the limit.
    pub fn too_large(limit: usize) -> Self {
        Self {
            code: Some("request_too_large"),
            ..Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                format!("the request body is over the limit of {limit} bytes"),
            )
        }
    }

    /// The JSON object the body carries (also sent as an SSE event when a stream fails mid-way).
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(self.body())).into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        for (name, value) in self.headers.into_vec() {
            if let Ok(v) = HeaderValue::from_str(&value) {
                r.headers_mut().insert(name, v);
            }
        }
        r
    }
}

impl From<RouteError> for ApiError {
    fn from(e: RouteError) -> Self {
        match e {
            RouteError::InvalidInput(m) => Self::invalid(m),
            RouteError::Embed(EmbedError::Overloaded { retry_after_ms, .. }) => Self {
                code: Some("overloaded"),
                retry_after: Some(retry_after_ms.div_ceil(1000).max(OVERLOAD_RETRY_AFTER_S)),
                // The OpenAI SDKs prefer the millisecond hint when present.
                headers: Box::new([("retry-after-ms", retry_after_ms.to_string())]),
                ..Self::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limit_error",
                    e.to_string(),
                )
            },
            RouteError::Embed(EmbedError::DeadlineExceeded) => Self {
                code: Some("deadline_exceeded"),
                ..Self::new(StatusCode::GATEWAY_TIMEOUT, "server_error", e.to_string())
            },
            RouteError::Embed(EmbedError::Stopped | EmbedError::Restarting) => Self {
                code: Some("unavailable"),
                retry_after: Some(OVERLOAD_RETRY_AFTER_S),
                ..Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server_error",
                    e.to_string(),
                )
            },
            RouteError::Embed(EmbedError::Tokenize(_)) => Self::invalid(e.to_string()),
            RouteError::Embed(_) | RouteError::Index(_) => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                e.to_string(),
            ),
        }
    }
}

impl From<UpstreamError> for ApiError {
    fn from(e: UpstreamError) -> Self {
        match e {
            UpstreamError::InvalidRequest(m) => match param_of(&m) {
                Some(p) => Self::invalid_param(p, m),
                None => Self::invalid(m),
            },
            UpstreamError::Unsupported { field, reason } => Self::invalid_param(field, reason),
            UpstreamError::UnknownRoute(_) | UpstreamError::UnknownModel(_) => {
                Self::not_found(e.to_string())
            }
            UpstreamError::NoTargets(m) => Self {
                code: Some("no_route"),
                ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request_error", m)
            },
            UpstreamError::AllFailed { .. } => Self {
                code: Some("all_targets_failed"),
                ..Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server_error",
                    e.to_string(),
                )
            },
            UpstreamError::Interrupted { .. } => Self {
                code: Some("upstream_interrupted"),
                ..Self::new(StatusCode::BAD_GATEWAY, "server_error", e.to_string())
            },
            UpstreamError::DeadlineExceeded { .. } => Self {
                code: Some("deadline_exceeded"),
                ..Self::new(StatusCode::GATEWAY_TIMEOUT, "server_error", e.to_string())
            },
            // Nobody reads it: the client is gone.
            UpstreamError::Cancelled => Self::new(
                StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
                "invalid_request_error",
                e.to_string(),
            ),
        }
    }
}

/// The request field a forwarding-layer message starts with (`temperature must be ...`,
/// `messages[2].role ...`), so the error's `param` names it.
fn param_of(message: &str) -> Option<String> {
    let first = message.split_whitespace().next()?;
    let field = first.split(['[', '.']).next()?;
    matches!(field, "messages" | "temperature" | "top_p" | "max_tokens").then(|| first.to_string())
}

impl From<GatewayError> for ApiError {
    fn from(e: GatewayError) -> Self {
        match e {
            GatewayError::Starting => Self {
                code: Some("starting"),
                retry_after: Some(OVERLOAD_RETRY_AFTER_S),
                ..Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server_error",
                    e.to_string(),
                )
            },
            GatewayError::Route(e) => e.into(),
            GatewayError::Upstream(e) => e.into(),
            GatewayError::Access(e) => e.into(),
            GatewayError::Policy(e) => Self {
                code: Some(match &e {
                    crate::gateway::PolicyError::Refused { .. } => "refused_by_rule",
                    crate::gateway::PolicyError::Blocked { .. } => "sensitive_data_blocked",
                    crate::gateway::PolicyError::NoPrivateTarget { .. } => "no_private_target",
                }),
                ..Self::new(
                    StatusCode::FORBIDDEN,
                    "invalid_request_error",
                    e.to_string(),
                )
            },
        }
    }
}

impl From<AccessError> for ApiError {
    fn from(e: AccessError) -> Self {
        match &e {
            AccessError::Unauthenticated(_) => Self {
                code: Some("invalid_api_key"),
                ..Self::new(
                    StatusCode::UNAUTHORIZED,
                    "invalid_request_error",
                    e.to_string(),
                )
            },
            AccessError::Forbidden(_) => Self {
                code: Some("permission_denied"),
                ..Self::new(
                    StatusCode::FORBIDDEN,
                    "invalid_request_error",
                    e.to_string(),
                )
            },
            AccessError::Limited(r) => {
                let secs = r.retry_after.as_secs().max(1);
                // OpenAI's header names, for the limits that have them.
                let mut headers = Vec::new();
                let family = match r.kind {
                    LimitKind::Requests => Some("requests"),
                    LimitKind::Tokens => Some("tokens"),
                    _ => None,
                };
                if let Some(f) = family {
                    let (limit, remaining, reset) = match f {
                        "requests" => (
                            "x-ratelimit-limit-requests",
                            "x-ratelimit-remaining-requests",
                            "x-ratelimit-reset-requests",
                        ),
                        _ => (
                            "x-ratelimit-limit-tokens",
                            "x-ratelimit-remaining-tokens",
                            "x-ratelimit-reset-tokens",
                        ),
                    };
                    headers.push((limit, format!("{}", r.limit)));
                    headers.push((remaining, "0".to_string()));
                    headers.push((reset, format!("{secs}s")));
                }
                Self {
                    code: Some(if r.kind.is_budget() {
                        "budget_exceeded"
                    } else {
                        "rate_limit_exceeded"
                    }),
                    retry_after: Some(secs),
                    headers: headers.into_boxed_slice(),
                    ..Self::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "rate_limit_error",
                        e.to_string(),
                    )
                }
            }
            AccessError::Unavailable(_) => Self {
                code: Some("unavailable"),
                retry_after: Some(1),
                ..Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server_error",
                    e.to_string(),
                )
            },
        }
    }
}
