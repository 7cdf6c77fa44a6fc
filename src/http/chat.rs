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
use crate::access::Caller;
use crate::gateway::{CompleteCall, CompleteOutcome, Gateway, StreamEvent};
use crate::message::{
    ChatMessage, ContentPart, ImagePart, ResponseFormat, ToolCall, ToolChoice, ToolSpec,
};
use crate::router::Decision;
use crate::upstream::{openai_tool_call, Completion, CompletionRequest, Delta};

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
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
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
    #[serde(default)]
    tools: Option<Vec<WireTool>>,
    #[serde(default)]
    tool_choice: Option<Value>,
    #[serde(default)]
    parallel_tool_calls: Option<bool>,
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
    tool_calls: Option<Vec<WireToolCall>>,
    #[serde(default)]
    tool_call_id: Option<String>,
    // `name` (a participant's name) and `refusal` (echoed back by SDKs) are accepted and not forwarded.
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
    #[serde(default)]
    image_url: Option<ImageUrl>,
}

#[derive(Debug, Deserialize)]
struct ImageUrl {
    url: String,
    #[serde(default)]
    detail: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WireToolCall {
    id: String,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    function: WireFunctionCall,
}

#[derive(Debug, Deserialize)]
struct WireFunctionCall {
    name: String,
    #[serde(default)]
    arguments: String,
}

#[derive(Debug, Deserialize)]
struct WireTool {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    function: Option<WireFunction>,
}

#[derive(Debug, Deserialize)]
struct WireFunction {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<Value>,
    #[serde(default)]
    strict: Option<bool>,
}

/// Fields that change what the router does and that it does not support: refused by name rather than
/// forwarded, so a client never gets an answer that silently ignored them.
const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "functions",
        "the deprecated `functions` API is not supported: use `tools`",
    ),
    (
        "function_call",
        "the deprecated `function_call` is not supported: use `tool_choice`",
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
        let tool_calls = match m.tool_calls {
            Some(calls) if !calls.is_empty() => {
                if role != "assistant" {
                    return Err(ApiError::invalid_param(
                        at("tool_calls"),
                        "only assistant messages carry tool_calls",
                    ));
                }
                let mut out = Vec::with_capacity(calls.len());
                for (j, c) in calls.into_iter().enumerate() {
                    if c.kind.as_deref().is_some_and(|k| k != "function") {
                        return Err(ApiError::invalid_param(
                            format!("messages[{i}].tool_calls[{j}].type"),
                            "only `function` tool calls are supported",
                        ));
                    }
                    out.push(ToolCall {
                        id: c.id,
                        name: c.function.name,
                        arguments: c.function.arguments,
                    });
                }
                out
            }
            _ => Vec::new(),
        };
        match (role, &m.tool_call_id) {
            ("tool", None) => {
                return Err(ApiError::invalid_param(
                    at("tool_call_id"),
                    "a tool message needs the tool_call_id of the call it answers",
                ))
            }
            (r, Some(_)) if r != "tool" => {
                return Err(ApiError::invalid_param(
                    at("tool_call_id"),
                    "only tool messages carry tool_call_id",
                ))
            }
            _ => {}
        }
        let (content, parts) = match m.content {
            None => (String::new(), Vec::new()),
            Some(Content::Text(t)) => (t, Vec::new()),
            Some(Content::Parts(wire_parts)) => {
                let mut parts = Vec::with_capacity(wire_parts.len());
                for (j, p) in wire_parts.into_iter().enumerate() {
                    let field = |f: &str| format!("messages[{i}].content[{j}].{f}");
                    match p.kind.as_str() {
                        "text" => match p.text {
                            Some(t) => parts.push(ContentPart::Text(t)),
                            None => {
                                return Err(ApiError::invalid_param(
                                    field("text"),
                                    "a text part needs `text`",
                                ))
                            }
                        },
                        "image_url" if role == "user" => match p.image_url {
                            Some(img) => parts.push(ContentPart::Image(ImagePart {
                                url: img.url,
                                detail: img.detail,
                            })),
                            None => {
                                return Err(ApiError::invalid_param(
                                    field("image_url"),
                                    "an image_url part needs `image_url.url`",
                                ))
                            }
                        },
                        "image_url" => {
                            return Err(ApiError::invalid_param(
                                field("type"),
                                "only user messages carry images",
                            ))
                        }
                        kind => {
                            return Err(ApiError::invalid_param(
                                field("type"),
                                format!(
                                    "content parts of type `{kind}` are not supported (text and image_url)"
                                ),
                            ))
                        }
                    }
                }
                let text = parts
                    .iter()
                    .filter_map(|p| match p {
                        ContentPart::Text(t) => Some(t.as_str()),
                        ContentPart::Image(_) => None,
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                // Text-only parts are plain text to every layer below; the order only matters with images.
                let has_image = parts.iter().any(|p| matches!(p, ContentPart::Image(_)));
                (text, if has_image { parts } else { Vec::new() })
            }
        };
        out.push(ChatMessage {
            role: role.into(),
            content,
            parts,
            tool_calls,
            tool_call_id: m.tool_call_id,
        });
    }
    Ok(out)
}

/// The tools offered and the choice among them.
fn tools(
    wire: Option<Vec<WireTool>>,
    choice: Option<Value>,
) -> Result<(Vec<ToolSpec>, Option<ToolChoice>), ApiError> {
    let mut specs = Vec::new();
    for (i, t) in wire.unwrap_or_default().into_iter().enumerate() {
        if t.kind != "function" {
            return Err(ApiError::invalid_param(
                format!("tools[{i}].type"),
                format!(
                    "tools of type `{}` are not supported (function only)",
                    t.kind
                ),
            ));
        }
        let Some(f) = t.function else {
            return Err(ApiError::invalid_param(
                format!("tools[{i}].function"),
                "a function tool needs `function`",
            ));
        };
        if f.parameters.as_ref().is_some_and(|p| !p.is_object()) {
            return Err(ApiError::invalid_param(
                format!("tools[{i}].function.parameters"),
                "parameters must be a JSON Schema object",
            ));
        }
        specs.push(ToolSpec {
            name: f.name,
            description: f.description,
            parameters: f.parameters,
            strict: f.strict,
        });
    }
    let choice = match choice {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match s.as_str() {
            "none" => Some(ToolChoice::None),
            "auto" => Some(ToolChoice::Auto),
            "required" => Some(ToolChoice::Required),
            _ => {
                return Err(ApiError::invalid_param(
                    "tool_choice",
                    "expected none, auto, required or {\"type\": \"function\", \"function\": {\"name\": ...}}",
                ))
            }
        },
        Some(v) => match v.pointer("/function/name").and_then(Value::as_str) {
            Some(name) if v.get("type").and_then(Value::as_str) == Some("function") => {
                if !specs.iter().any(|t| t.name == name) {
                    return Err(ApiError::invalid_param(
                        "tool_choice.function.name",
                        format!("`{name}` is not one of the tools"),
                    ));
                }
                Some(ToolChoice::Function(name.to_string()))
            }
            _ => {
                return Err(ApiError::invalid_param(
                    "tool_choice",
                    "expected none, auto, required or {\"type\": \"function\", \"function\": {\"name\": ...}}",
                ))
            }
        },
    };
    if specs.is_empty() && matches!(choice, Some(ToolChoice::Required)) {
        return Err(ApiError::invalid_param(
            "tool_choice",
            "tool_choice `required` needs tools",
        ));
    }
    Ok((specs, choice))
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
    let response_format = match &r.response_format {
        None | Some(Value::Null) => ResponseFormat::Text,
        Some(f) => match f.get("type").and_then(Value::as_str) {
            Some("text") => ResponseFormat::Text,
            Some("json_object") => ResponseFormat::JsonObject,
            Some("json_schema") => match f.get("json_schema") {
                Some(s) if s.get("schema").is_none_or(Value::is_object) && s.is_object() => {
                    ResponseFormat::JsonSchema(s.clone())
                }
                _ => {
                    return Err(ApiError::invalid_param(
                        "response_format.json_schema",
                        "json_schema needs an object with `name` and a `schema` object",
                    ))
                }
            },
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
    let (tools, tool_choice) = tools(r.tools, r.tool_choice)?;
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
        response_format,
        tools,
        tool_choice,
        parallel_tool_calls: r.parallel_tool_calls,
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
            caller: None,
            deadline: None,
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
    if let Some(r) = &d.rule {
        set(headers, "x-semroute-rule", r);
    }
    if !d.guard.is_empty() {
        set(headers, "x-semroute-guard", &d.guard.join(","));
    }
    if d.context_turns > 0 {
        set(
            headers,
            "x-semroute-context-turns",
            &d.context_turns.to_string(),
        );
    }
}

/// The answer as OpenAI's `choices[0].message`: `content` is `null` when the model only called tools.
fn message(c: &Completion) -> Value {
    let mut m = json!({
        "role": "assistant",
        "content": if c.content.is_empty() && !c.tool_calls.is_empty() {
            Value::Null
        } else {
            json!(c.content)
        },
        "refusal": null,
    });
    if !c.tool_calls.is_empty() {
        m["tool_calls"] = c.tool_calls.iter().map(openai_tool_call).collect();
    }
    m
}

/// A streamed delta in OpenAI's chunk shape.
fn delta(d: Delta) -> Value {
    match d {
        Delta::Text(t) => json!({"content": t}),
        Delta::ToolCall(c) => {
            let mut call = json!({"index": c.index, "function": {"arguments": c.arguments}});
            if let Some(id) = c.id {
                call["id"] = json!(id);
                call["type"] = json!("function");
            }
            if let Some(name) = c.name {
                call["function"]["name"] = json!(name);
            }
            json!({"tool_calls": [call]})
        }
    }
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
    caller: Option<std::sync::Arc<Caller>>,
    deadline: Option<std::time::Instant>,
    body: ChatRequest,
) -> Response {
    // Stream chunks before the answer carry the name the client asked for; the last ones, the upstream's.
    let requested = body.model.clone();
    let (mut call, stream, include_usage) = match translate(&gateway, body) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    call.caller = caller;
    call.deadline = deadline;
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
                        "message": message(&o.completion),
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
            StreamEvent::Delta(d) => vec![chunk(&requested, delta(d), None).to_string()],
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
