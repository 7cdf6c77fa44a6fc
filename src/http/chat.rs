//! `POST /v1/chat/completions`: OpenAI's Chat Completions wire format, JSON and SSE, translated into one
//! gateway call. `model` chooses what happens: the alias (`auto`) routes semantically, a route's name uses
//! that route's targets, a model's name goes to that model.

use std::convert::Infallible;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::error::ApiError;
use super::RequestId;
use crate::gateway::{CompleteCall, CompleteOutcome, Gateway, StreamEvent};
use crate::message::ChatMessage;
use crate::router::Decision;
use crate::upstream::CompletionRequest;

/// The request body. Fields we do not interpret land in `extra` and go to OpenAI-compatible upstreams
/// unchanged.
#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    model: String,
    messages: Vec<WireMessage>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    max_completion_tokens: Option<u32>,
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    top_p: Option<f32>,
    #[serde(default)]
    stop: Option<Stop>,
    #[serde(default)]
    n: Option<u32>,
    #[serde(default)]
    response_format: Option<Value>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    metadata: Option<std::collections::HashMap<String, String>>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct WireMessage {
    role: String,
    #[serde(default)]
    content: Option<Content>,
    #[serde(default)]
    tool_calls: Option<Value>,
    #[serde(default)]
    tool_call_id: Option<String>,
    // `name` (a participant's name) is accepted and not forwarded.
    #[serde(default)]
    #[allow(dead_code)]
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Deserialize)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

/// Fields that change what the router does and that it does not support yet: refused by name rather than
/// forwarded, so a client never gets an answer that silently ignored them.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("tools", "tool calling is not supported by semroute yet"),
    (
        "tool_choice",
        "tool calling is not supported by semroute yet",
    ),
    (
        "functions",
        "function calling is not supported by semroute yet",
    ),
    (
        "function_call",
        "function calling is not supported by semroute yet",
    ),
    ("logprobs", "logprobs are not supported by semroute yet"),
    ("audio", "audio output is not supported by semroute"),
    ("modalities", "only text output is supported"),
];

/// Whether a field's value asks for a feature: `null`, `false`, `[]` and `["text"]` (the default modality)
/// are what clients send when they want nothing special.
fn asks_for_something(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => false,
        Value::Array(a) => !(a.is_empty() || a == &[Value::String("text".into())]),
        _ => true,
    }
}

/// What `model` asked for.
enum Selection {
    Auto,
    Route(String),
    Model(String),
}

fn select(gateway: &Gateway, model: &str) -> Result<Selection, ApiError> {
    let snapshot = gateway.router()?.snapshot();
    let c = &snapshot.config;
    if model == c.http.model_alias {
        return Ok(Selection::Auto);
    }
    if c.routes.iter().any(|r| r.name == model) {
        return Ok(Selection::Route(model.to_string()));
    }
    if c.models.iter().any(|m| m.name == model) {
        return Ok(Selection::Model(model.to_string()));
    }
    Err(ApiError::not_found(format!(
        "the model `{model}` does not exist: use `{}` (route by meaning), a route name or a model name \
         (GET /v1/models lists them)",
        c.http.model_alias
    )))
}

fn messages(wire: Vec<WireMessage>) -> Result<Vec<ChatMessage>, ApiError> {
    let mut out = Vec::with_capacity(wire.len());
    for (i, m) in wire.into_iter().enumerate() {
        let at = |f: &str| format!("messages[{i}].{f}");
        let role = match m.role.as_str() {
            "system" | "developer" => "system",
            "user" => "user",
            "assistant" => "assistant",
            "tool" => "tool",
            other => {
                return Err(ApiError::invalid_param(
                    at("role"),
                    format!(
                    "unknown role `{other}`: expected system, developer, user, assistant or tool"
                ),
                ))
            }
        };
        if m.tool_calls.as_ref().is_some_and(|t| !t.is_null()) || m.tool_call_id.is_some() {
            return Err(ApiError::invalid_param(
                at(if m.tool_call_id.is_some() {
                    "tool_call_id"
                } else {
                    "tool_calls"
                }),
                "tool calling is not supported by semroute yet",
            ));
        }
        let content = match m.content {
            None => String::new(),
            Some(Content::Text(t)) => t,
            Some(Content::Parts(parts)) => {
                let mut text = Vec::with_capacity(parts.len());
                for (j, p) in parts.into_iter().enumerate() {
                    match (p.kind.as_str(), p.text) {
                        ("text", Some(t)) => text.push(t),
                        ("text", None) => {
                            return Err(ApiError::invalid_param(
                                format!("messages[{i}].content[{j}].text"),
                                "a text part needs `text`",
                            ))
                        }
                        (kind, _) => {
                            return Err(ApiError::invalid_param(
                                format!("messages[{i}].content[{j}].type"),
                                format!(
                                "content parts of type `{kind}` are not supported yet (text only)"
                            ),
                            ))
                        }
                    }
                }
                text.join("\n")
            }
        };
        out.push(ChatMessage {
            role: role.into(),
            content,
        });
    }
    Ok(out)
}

/// Translates the wire request into a gateway call; refuses what it cannot honour, naming the field.
fn translate(gateway: &Gateway, r: ChatRequest) -> Result<(CompleteCall, bool, bool), ApiError> {
    if let Some(n) = r.n {
        if n != 1 {
            return Err(ApiError::invalid_param("n", "only n = 1 is supported"));
        }
    }
    for (field, why) in UNSUPPORTED {
        if r.extra.get(*field).is_some_and(asks_for_something) {
            return Err(ApiError::invalid_param(*field, *why));
        }
    }
    if r.max_tokens.is_some() && r.max_completion_tokens.is_some() {
        return Err(ApiError::invalid_param(
            "max_completion_tokens",
            "set max_tokens or max_completion_tokens, not both",
        ));
    }
    let mut extra = r.extra;
    extra.retain(|k, v| !v.is_null() && !UNSUPPORTED.iter().any(|(f, _)| f == k));
    let json = match &r.response_format {
        None | Some(Value::Null) => false,
        Some(f) => match f.get("type").and_then(Value::as_str) {
            Some("text") => false,
            Some("json_object") => true,
            Some("json_schema") => {
                // Forwarded as given to OpenAI-compatible upstreams; also checked by cascades.
                extra.insert("response_format".into(), f.clone());
                true
            }
            _ => {
                return Err(ApiError::invalid_param(
                    "response_format.type",
                    "expected text, json_object or json_schema",
                ))
            }
        },
    };
    let stream = r.stream.unwrap_or(false);
    let include_usage = r
        .stream_options
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
    let selection = select(gateway, &r.model)?;
    let mut metadata = r.metadata.unwrap_or_default();
    if let Some(Value::String(u)) = extra.get("user") {
        // A weighted route's sticky key may name it.
        metadata.entry("user".into()).or_insert_with(|| u.clone());
    }
    let request = CompletionRequest {
        messages: messages(r.messages)?,
        max_tokens: r.max_completion_tokens.or(r.max_tokens),
        temperature: r.temperature,
        top_p: r.top_p,
        stop: match r.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s],
            Some(Stop::Many(v)) => v,
        },
        json,
        metadata,
        extra,
    };
    let (route, model) = match selection {
        Selection::Auto => (None, None),
        Selection::Route(r) => (Some(r), None),
        Selection::Model(m) => (None, Some(m)),
    };
    Ok((
        CompleteCall {
            request,
            route,
            model,
        },
        stream,
        include_usage,
    ))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn set(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), v);
    }
}

/// The decision's headers: which route, whether it matched, its score.
fn decision_headers(headers: &mut HeaderMap, d: &Decision) {
    set(
        headers,
        "x-semroute-route",
        d.route.as_deref().unwrap_or(""),
    );
    set(headers, "x-semroute-matched", &d.matched.to_string());
    set(headers, "x-semroute-score", &format!("{:.4}", d.score));
}

fn usage(o: &CompleteOutcome) -> Value {
    let u = o.completion.usage;
    json!({
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
    })
}

/// The handler.
pub async fn completions(
    gateway: std::sync::Arc<Gateway>,
    id: RequestId,
    body: ChatRequest,
) -> Response {
    // Stream chunks before the answer carry the name the client asked for; the last ones, the upstream's.
    let requested = body.model.clone();
    let (call, stream, include_usage) = match translate(&gateway, body) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let completion_id = format!("chatcmpl-{}", id.0);
    if !stream {
        // Dropping this future (the client went away) drops the upstream request.
        return match gateway.complete(call).await {
            Ok(o) => {
                let body = json!({
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": now(),
                    "model": o.completion.served_by.upstream_model,
                    "choices": [{
                        "index": 0,
                        "message": {"role": "assistant", "content": o.completion.content, "refusal": null},
                        "finish_reason": o.completion.finish_reason,
                        "logprobs": null,
                    }],
                    "usage": usage(&o),
                });
                let mut r = axum::Json(body).into_response();
                decision_headers(r.headers_mut(), &o.decision);
                set(
                    r.headers_mut(),
                    "x-semroute-model",
                    &o.completion.served_by.model,
                );
                set(
                    r.headers_mut(),
                    "x-semroute-attempts",
                    &o.completion.attempts.len().to_string(),
                );
                r
            }
            Err(e) => ApiError::from(e).into_response(),
        };
    }
    let mut events = match gateway.complete_stream(call).await {
        Ok(s) => s,
        Err(e) => return ApiError::from(e).into_response(),
    };
    // Until the first event, nothing is sent: a stream whose every target fails before answering gets a
    // real error status, as a non-streamed call would.
    let first = match events.next().await {
        Some(StreamEvent::Error(e)) => return ApiError::from(e).into_response(),
        Some(ev) => ev,
        None => {
            return ApiError::from(crate::upstream::UpstreamError::Cancelled).into_response();
        }
    };
    let decision = events.decision().clone();
    let chunk = move |model: &str, delta: Value, finish: Option<&str>| {
        json!({
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": now(),
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": null}],
        })
    };
    let role = chunk(
        &requested,
        json!({"role": "assistant", "content": ""}),
        None,
    );
    let head = futures_util::stream::iter([first]);
    let body = head.chain(events).flat_map(move |ev| {
        let out: Vec<String> = match ev {
            StreamEvent::Delta(d) => {
                vec![chunk(&requested, json!({"content": d}), None).to_string()]
            }
            StreamEvent::Done(o) => {
                let model = o.completion.served_by.upstream_model.clone();
                let mut v =
                    vec![chunk(&model, json!({}), Some(&o.completion.finish_reason)).to_string()];
                if include_usage {
                    let mut u = chunk(&model, json!({}), None);
                    u["choices"] = json!([]);
                    u["usage"] = usage(&o);
                    v.push(u.to_string());
                }
                v.push("[DONE]".into());
                v
            }
            // After the first byte there is no status to change: the error goes as an event, as OpenAI
            // sends one, and the stream ends without [DONE].
            StreamEvent::Error(e) => vec![ApiError::from(e).body().to_string()],
        };
        futures_util::stream::iter(out)
    });
    let events = futures_util::stream::iter([role.to_string()])
        .chain(body)
        .map(|data| Ok::<_, Infallible>(Event::default().data(data)));
    let mut r = Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response();
    decision_headers(r.headers_mut(), &decision);
    r
}
