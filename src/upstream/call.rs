//! One HTTP attempt against one target: build the request in the provider's format, enforce the timeouts
//! and the body limit, and parse the answer (whole or streamed).

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::header::{HeaderValue, RETRY_AFTER};
use tokio::sync::mpsc;
use tokio::time::{timeout_at, Instant};

use super::assemble::Assembler;
use super::keys::ApiKey;
use super::sse::SseParser;
use super::wire::{Answer, Piece};
use super::{anthropic, mock, openai, CompletionRequest, Delta, Usage};
use crate::config::{ModelConfig, ProviderConfig, ProviderKind};

/// Most bytes of an error body quoted in an attempt's error.
const ERROR_BODY_QUOTE: usize = 300;

/// Why one attempt failed.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptError {
    /// The connection could not be made (refused, DNS, TLS, connect timeout).
    Connect(String),
    /// A deadline passed: `connect`, `first token` or `total`.
    Timeout(&'static str, Duration),
    /// The provider answered with an HTTP error.
    Status {
        /// The HTTP status.
        code: u16,
        /// Its `Retry-After`, if any.
        retry_after: Option<Duration>,
        /// The start of the body.
        message: String,
    },
    /// The body is not what the format promises.
    Malformed(String),
    /// The body exceeded `upstream.max_body_bytes`.
    TooLarge(usize),
    /// The connection broke or the provider reported an error mid-answer.
    Broken(String),
    /// The caller went away.
    Cancelled,
}

impl AttemptError {
    /// Worth retrying on the same target.
    pub fn retryable(&self) -> bool {
        match self {
            Self::Connect(_) | Self::Timeout(..) | Self::Broken(_) => true,
            Self::Status { code, .. } => matches!(code, 408 | 429 | 500..=599),
            _ => false,
        }
    }

    /// Says the target is unhealthy (counts towards opening its circuit). Client errors (4xx other than
    /// 408/429) are the request's fault, not the target's.
    pub fn unhealthy(&self) -> bool {
        match self {
            Self::Status { code, .. } => matches!(code, 408 | 429 | 500..=599),
            Self::Cancelled => false,
            _ => true,
        }
    }

    /// The delay the provider asked for.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether the attempt ended on a deadline.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout(..))
    }
}

impl std::fmt::Display for AttemptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connect(m) => write!(f, "connect: {m}"),
            Self::Timeout(what, d) => write!(f, "{what} timeout after {} ms", d.as_millis()),
            Self::Status { code, message, .. } => write!(f, "HTTP {code}: {message}"),
            Self::Malformed(m) => write!(f, "malformed response: {m}"),
            Self::TooLarge(n) => write!(f, "response larger than {n} bytes"),
            Self::Broken(m) => write!(f, "stream broken: {m}"),
            Self::Cancelled => f.write_str("cancelled by the caller"),
        }
    }
}

/// A served attempt.
#[derive(Debug)]
pub struct Served {
    /// The answer.
    pub answer: Answer,
    /// Time to the first token (the whole answer, when not streamed).
    pub ttft: Duration,
}

/// Where streamed deltas go, and whether any reached it.
pub struct DeltaSink<'a> {
    /// The channel to the caller.
    pub tx: &'a mpsc::Sender<Delta>,
    /// Set once a delta was handed over: from then on the request may not fail over.
    pub delivered: &'a mut bool,
}

/// Everything one attempt needs.
pub struct Target<'a> {
    /// The HTTP client for the provider (connect timeout and extra headers built in).
    pub client: &'a reqwest::Client,
    /// The provider.
    pub provider: &'a ProviderConfig,
    /// The model.
    pub model: &'a ModelConfig,
    /// The key, if the provider needs one.
    pub key: Option<&'a ApiKey>,
    /// Body limit.
    pub max_body_bytes: usize,
}

fn request(t: &Target<'_>, req: &CompletionRequest, stream: bool) -> reqwest::RequestBuilder {
    let p = t.provider;
    let (url, body) = match p.kind {
        ProviderKind::Openai => (
            openai::url(&p.base_url),
            openai::body(&t.model.id, req, stream),
        ),
        ProviderKind::Anthropic => (
            anthropic::url(&p.base_url),
            anthropic::body(&t.model.id, req, stream),
        ),
        ProviderKind::Mock => unreachable!("mock providers answer in `complete` and `stream`"),
    };
    let mut trace = reqwest::header::HeaderMap::new();
    crate::telemetry::span::inject(&mut trace);
    let mut b = t.client.post(url).json(&body).headers(trace);
    if p.kind == ProviderKind::Anthropic {
        b = b.header("anthropic-version", anthropic::API_VERSION);
    }
    if let Some(key) = t.key {
        let (name, value) = match p.kind {
            ProviderKind::Anthropic => ("x-api-key", key.expose().to_string()),
            _ => ("authorization", format!("Bearer {}", key.expose())),
        };
        // A key with bytes a header cannot carry is sent without it; the provider's 401 says the rest.
        if let Ok(mut v) = HeaderValue::from_str(&value) {
            v.set_sensitive(true);
            b = b.header(name, v);
        }
    }
    b
}

fn send_error(e: reqwest::Error, connect_limit: Duration) -> AttemptError {
    if e.is_connect() {
        if e.is_timeout() {
            return AttemptError::Timeout("connect", connect_limit);
        }
        // The innermost cause ("Connection refused") is the useful part.
        let mut cause: &dyn std::error::Error = &e;
        while let Some(next) = cause.source() {
            cause = next;
        }
        return AttemptError::Connect(cause.to_string());
    }
    if e.is_timeout() {
        return AttemptError::Timeout("connect", connect_limit);
    }
    AttemptError::Broken(e.without_url().to_string())
}

async fn send(
    t: &Target<'_>,
    req: &CompletionRequest,
    stream: bool,
    deadline: Instant,
    what: &'static str,
    limit: Duration,
) -> Result<reqwest::Response, AttemptError> {
    let connect_limit = Duration::from_millis(t.provider.timeouts.connect_ms);
    let resp = timeout_at(deadline, request(t, req, stream).send())
        .await
        .map_err(|_| AttemptError::Timeout(what, limit))?
        .map_err(|e| send_error(e, connect_limit))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let retry_after = resp
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(super::policy::parse_retry_after);
    let body = timeout_at(deadline, read_bounded(resp, ERROR_BODY_QUOTE * 4))
        .await
        .unwrap_or(Ok(Vec::new()))
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body);
    Err(AttemptError::Status {
        code: status.as_u16(),
        retry_after,
        message: text.chars().take(ERROR_BODY_QUOTE).collect(),
    })
}

/// Reads a body of at most `max` bytes.
async fn read_bounded(resp: reqwest::Response, max: usize) -> Result<Vec<u8>, AttemptError> {
    let mut body = Vec::new();
    let mut s = resp.bytes_stream();
    while let Some(chunk) = s.next().await {
        let chunk = chunk.map_err(|e| AttemptError::Broken(e.without_url().to_string()))?;
        if body.len() + chunk.len() > max {
            return Err(AttemptError::TooLarge(max));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A non-streamed attempt, bounded by the total timeout.
pub async fn complete(t: &Target<'_>, req: &CompletionRequest) -> Result<Served, AttemptError> {
    let started = Instant::now();
    if t.provider.kind == ProviderKind::Mock {
        return Ok(Served {
            answer: mock::answer(t.provider, t.model, req),
            ttft: started.elapsed(),
        });
    }
    let total = Duration::from_millis(t.provider.timeouts.total_ms);
    let deadline = started + total;
    let resp = send(t, req, false, deadline, "total", total).await?;
    let body = timeout_at(deadline, read_bounded(resp, t.max_body_bytes))
        .await
        .map_err(|_| AttemptError::Timeout("total", total))??;
    let v: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| AttemptError::Malformed(format!("not JSON: {e}")))?;
    let answer = match t.provider.kind {
        ProviderKind::Anthropic => anthropic::parse_answer(&v, req.response_format.is_json()),
        _ => openai::parse_answer(&v),
    }
    .map_err(AttemptError::Malformed)?;
    Ok(Served {
        answer,
        ttft: started.elapsed(),
    })
}

/// A streamed attempt: deltas go to `sink` as they arrive (or are only collected when `sink` is `None`).
/// The first-token timeout bounds the wait for the first delta, the total timeout the whole stream.
pub async fn stream(
    t: &Target<'_>,
    req: &CompletionRequest,
    mut sink: Option<DeltaSink<'_>>,
) -> Result<Served, AttemptError> {
    let started = Instant::now();
    if t.provider.kind == ProviderKind::Mock {
        let answer = mock::answer(t.provider, t.model, req);
        if let Some(s) = sink.as_mut() {
            for d in mock::deltas(&answer.content) {
                if s.tx.send(Delta::Text(d)).await.is_err() {
                    return Err(AttemptError::Cancelled);
                }
                *s.delivered = true;
            }
        }
        return Ok(Served {
            answer,
            ttft: started.elapsed(),
        });
    }
    let to = &t.provider.timeouts;
    let total = Duration::from_millis(to.total_ms);
    let first = Duration::from_millis(to.first_token_ms);
    let total_deadline = started + total;
    let first_deadline = (started + first).min(total_deadline);
    let limit_for = |got_first: bool| {
        if got_first || first >= total {
            (total_deadline, "total", total)
        } else {
            (first_deadline, "first token", first)
        }
    };

    let (deadline, what, limit) = limit_for(false);
    let resp = send(t, req, true, deadline, what, limit).await?;
    let mut bytes = resp.bytes_stream();
    let mut parser = SseParser::new(t.max_body_bytes);
    let mut read = 0usize;
    // Anthropic's JSON mode is a forced tool call whose arguments are the answer.
    let json_tool = (t.provider.kind == ProviderKind::Anthropic && req.response_format.is_json())
        .then_some(anthropic::JSON_TOOL);
    let mut assembler = Assembler::new(json_tool);
    let mut finish_reason = None;
    let mut usage = Usage::default();
    let mut ttft = None;
    let mut done = false;
    while !done {
        let (deadline, what, limit) = limit_for(ttft.is_some());
        let chunk = match timeout_at(deadline, bytes.next()).await {
            Err(_) => return Err(AttemptError::Timeout(what, limit)),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(AttemptError::Broken(e.without_url().to_string())),
            Ok(Some(Ok(c))) => c,
        };
        read += chunk.len();
        if read > t.max_body_bytes {
            return Err(AttemptError::TooLarge(t.max_body_bytes));
        }
        for ev in parser.push(&chunk).map_err(AttemptError::Malformed)? {
            let pieces = match t.provider.kind {
                ProviderKind::Anthropic => anthropic::parse_event(&ev.data),
                _ => openai::parse_event(&ev.data),
            }
            .map_err(AttemptError::Malformed)?;
            for piece in pieces {
                let delta = match piece {
                    Piece::Delta(d) => assembler.provider_text(d),
                    Piece::ToolCall {
                        index,
                        id,
                        name,
                        arguments,
                    } => assembler.tool_call(index, id, name, arguments),
                    Piece::Finish(r) => {
                        finish_reason = Some(r);
                        None
                    }
                    Piece::InputTokens(n) => {
                        usage.input_tokens = n;
                        None
                    }
                    Piece::OutputTokens(n) => {
                        usage.output_tokens = n;
                        None
                    }
                    Piece::Error(m) => return Err(AttemptError::Broken(m)),
                    Piece::Done => {
                        done = true;
                        None
                    }
                };
                if let Some(d) = delta {
                    ttft.get_or_insert_with(|| started.elapsed());
                    if let Some(s) = sink.as_mut() {
                        if s.tx.send(d).await.is_err() {
                            return Err(AttemptError::Cancelled);
                        }
                        *s.delivered = true;
                    }
                }
            }
        }
    }
    if !done {
        return Err(AttemptError::Broken(
            "the connection closed before the end of the answer".into(),
        ));
    }
    Ok(Served {
        answer: assembler.finish(finish_reason, usage),
        ttft: ttft.unwrap_or_else(|| started.elapsed()),
    })
}
