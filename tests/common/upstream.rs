//! Fake providers for the forwarding tests: a real HTTP server on 127.0.0.1:0 that speaks the OpenAI
//! (`/v1/chat/completions`) and Anthropic (`/v1/messages`) wire formats, JSON and SSE, and injects faults
//! on demand.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};

/// Token counts every answer reports.
pub const INPUT_TOKENS: u64 = 10;
/// Token counts every answer reports.
pub const OUTPUT_TOKENS: u64 = 5;

/// What the next request gets.
#[derive(Debug, Clone)]
pub enum Fault {
    /// The server's default answer.
    Ok,
    /// A given answer and finish reason (`stop` / `length`).
    Reply(String, &'static str),
    /// An HTTP error with a JSON body.
    Status(u16),
    /// 429 with `Retry-After: secs`.
    RateLimited(u64),
    /// No answer for a minute.
    Hang,
    /// 200 with a body that is not JSON (or, streamed, an event that is not JSON).
    Malformed,
    /// Streamed: two deltas, then the connection breaks.
    CutStream,
    /// Headers at once, the answer (or first delta) after this long.
    SlowFirstToken(Duration),
    /// Headers at once, then a body that never ends (whitespace or deltas every 20 ms); counts in
    /// [`FakeUpstream::cancelled`] when the client goes away.
    Trickle,
}

struct Inner {
    content: String,
    default: Mutex<Fault>,
    script: Mutex<VecDeque<Fault>>,
    requests: AtomicUsize,
    cancelled: AtomicUsize,
    bodies: Mutex<Vec<Value>>,
    headers: Mutex<Vec<HeaderMap>>,
}

/// A running fake provider.
#[derive(Clone)]
pub struct FakeUpstream {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
}

impl FakeUpstream {
    /// Starts a server whose default answer is `content`.
    pub async fn start(content: &str) -> Self {
        let inner = Arc::new(Inner {
            content: content.to_string(),
            default: Mutex::new(Fault::Ok),
            script: Mutex::new(VecDeque::new()),
            requests: AtomicUsize::new(0),
            cancelled: AtomicUsize::new(0),
            bodies: Mutex::new(Vec::new()),
            headers: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .route("/v1/chat/completions", post(openai))
            .route("/v1/messages", post(anthropic))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { addr, inner }
    }

    /// The `base_url` for either format.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Queues a fault for the next request.
    pub fn push(&self, f: Fault) {
        self.inner.script.lock().unwrap().push_back(f);
    }

    /// What requests get when nothing is queued.
    pub fn set_default(&self, f: Fault) {
        *self.inner.default.lock().unwrap() = f;
    }

    /// Requests received.
    pub fn requests(&self) -> usize {
        self.inner.requests.load(Ordering::SeqCst)
    }

    /// Never-ending bodies abandoned by the client.
    pub fn cancelled(&self) -> usize {
        self.inner.cancelled.load(Ordering::SeqCst)
    }

    /// The last request body.
    pub fn last_body(&self) -> Value {
        self.inner.bodies.lock().unwrap().last().cloned().unwrap()
    }

    /// Every request body received, in order.
    pub fn bodies(&self) -> Vec<Value> {
        self.inner.bodies.lock().unwrap().clone()
    }

    /// The last request's headers.
    pub fn last_headers(&self) -> HeaderMap {
        self.inner.headers.lock().unwrap().last().cloned().unwrap()
    }
}

/// A loopback address where nothing listens.
pub async fn refused_addr() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

#[derive(Clone, Copy, PartialEq)]
enum Format {
    OpenAi,
    Anthropic,
}

async fn openai(State(s): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    handle(s, Format::OpenAi, headers, body).await
}

async fn anthropic(State(s): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    handle(s, Format::Anthropic, headers, body).await
}

/// Counts a never-ending body dropped by the server because the client went away.
struct DropGuard(Arc<Inner>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.cancelled.fetch_add(1, Ordering::SeqCst);
    }
}

async fn handle(s: Arc<Inner>, format: Format, headers: HeaderMap, body: Bytes) -> Response {
    s.requests.fetch_add(1, Ordering::SeqCst);
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let streamed = req["stream"].as_bool().unwrap_or(false);
    s.bodies.lock().unwrap().push(req.clone());
    s.headers.lock().unwrap().push(headers);
    let fault = s
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| s.default.lock().unwrap().clone());
    let (mut content, finish) = match &fault {
        Fault::Reply(c, f) => (c.clone(), *f),
        _ => (s.content.clone(), "stop"),
    };
    // With tools on offer, the fake behaves like a model that uses them: it calls the first tool, and
    // answers in text once the conversation holds the tool's result.
    let call = match (&fault, tool_plan(format, &req, &content)) {
        (Fault::Ok, Plan::Call(name, args)) => Some((name, args)),
        (Fault::Ok, Plan::Answer(result)) => {
            content = format!("the tool said: {result}");
            None
        }
        _ => None,
    };
    if let Some((name, args)) = call {
        return tool_answer(format, streamed, &name, &args);
    }
    match fault {
        Fault::Status(code) => {
            return json_response(
                StatusCode::from_u16(code).unwrap(),
                json!({"error": {"message": format!("injected {code}")}}).to_string(),
            )
        }
        Fault::RateLimited(secs) => {
            let mut r = json_response(
                StatusCode::TOO_MANY_REQUESTS,
                json!({"error": {"message": "slow down"}}).to_string(),
            );
            r.headers_mut()
                .insert("retry-after", secs.to_string().parse().unwrap());
            return r;
        }
        Fault::Hang => {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        Fault::Malformed if !streamed => {
            return json_response(StatusCode::OK, "{\"choices\": [".into());
        }
        Fault::Trickle => {
            let guard = DropGuard(s.clone());
            let chunk: Bytes = if streamed {
                Bytes::from(event(format, &json_delta(format, "tick ")))
            } else {
                Bytes::from_static(b" ")
            };
            let body = stream::unfold((guard, chunk), |(g, c)| async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Some((Ok::<_, std::io::Error>(c.clone()), (g, c)))
            });
            return sse_or_json(streamed, Body::from_stream(body));
        }
        _ => {}
    }
    let delay = match fault {
        Fault::SlowFirstToken(d) => d,
        _ => Duration::ZERO,
    };
    if !streamed {
        tokio::time::sleep(delay).await;
        return json_response(StatusCode::OK, whole(format, &content, finish).to_string());
    }
    let mut events: Vec<String> = Vec::new();
    if format == Format::Anthropic {
        events.push(event(
            format,
            &json!({"type": "message_start", "message": {"usage": {"input_tokens": INPUT_TOKENS, "output_tokens": 1}}}),
        ));
    }
    for piece in content.split_inclusive(' ') {
        events.push(event(format, &json_delta(format, piece)));
    }
    let cut = matches!(fault, Fault::CutStream);
    let malformed = matches!(fault, Fault::Malformed);
    match format {
        Format::OpenAi => {
            events.push(event(
                format,
                &json!({"choices": [{"delta": {}, "finish_reason": finish}]}),
            ));
            events.push(event(
                format,
                &json!({"choices": [], "usage": {"prompt_tokens": INPUT_TOKENS, "completion_tokens": OUTPUT_TOKENS}}),
            ));
            events.push("data: [DONE]\n\n".into());
        }
        Format::Anthropic => {
            let reason = if finish == "length" {
                "max_tokens"
            } else {
                "end_turn"
            };
            events.push(event(
                format,
                &json!({"type": "message_delta", "delta": {"stop_reason": reason}, "usage": {"output_tokens": OUTPUT_TOKENS}}),
            ));
            events.push(event(format, &json!({"type": "message_stop"})));
        }
    }
    let items: Vec<Result<Bytes, std::io::Error>> = if cut {
        let mut v: Vec<_> = events
            .into_iter()
            .take(3)
            .map(|e| Ok(Bytes::from(e)))
            .collect();
        v.push(Err(std::io::Error::other("injected cut")));
        v
    } else if malformed {
        vec![Ok(Bytes::from_static(b"data: {not json\n\n"))]
    } else {
        events.into_iter().map(|e| Ok(Bytes::from(e))).collect()
    };
    // Only the first delta waits: that is the time to first token.
    let first_delta = usize::from(format == Format::Anthropic);
    let body = stream::iter(items.into_iter().enumerate()).then(move |(i, item)| async move {
        if i == first_delta {
            tokio::time::sleep(delay).await;
        }
        if item.is_err() {
            // Let the deltas before the cut reach the client first.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        item
    });
    sse_or_json(true, Body::from_stream(body))
}

fn sse_or_json(streamed: bool, body: Body) -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .header(
            "content-type",
            if streamed {
                "text/event-stream"
            } else {
                "application/json"
            },
        )
        .body(body)
        .unwrap()
}

fn json_response(status: StatusCode, body: String) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap()
}

fn event(format: Format, v: &Value) -> String {
    match format {
        Format::OpenAi => format!("data: {v}\n\n"),
        Format::Anthropic => format!("event: {}\ndata: {v}\n\n", v["type"].as_str().unwrap_or("")),
    }
}

fn json_delta(format: Format, text: &str) -> Value {
    match format {
        Format::OpenAi => json!({"choices": [{"delta": {"content": text}, "finish_reason": null}]}),
        Format::Anthropic => {
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}})
        }
    }
}

fn whole(format: Format, content: &str, finish: &str) -> Value {
    match format {
        Format::OpenAi => json!({
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}],
            "usage": {"prompt_tokens": INPUT_TOKENS, "completion_tokens": OUTPUT_TOKENS, "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS}
        }),
        Format::Anthropic => json!({
            "id": "msg_test",
            "type": "message",
            "role": "assistant",
            "content": [{"type": "text", "text": content}],
            "stop_reason": if finish == "length" { "max_tokens" } else { "end_turn" },
            "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": OUTPUT_TOKENS}
        }),
    }
}

/// What a fake model does with the tools it is offered.
enum Plan {
    /// No tools: the usual answer.
    Plain,
    /// Call this tool with these arguments (a JSON object).
    Call(String, Value),
    /// The last turn is a tool's result: answer with it.
    Answer(String),
}

fn tool_plan(format: Format, req: &Value, content: &str) -> Plan {
    let Some(tools) = req["tools"].as_array().filter(|t| !t.is_empty()) else {
        return Plan::Plain;
    };
    let last = req["messages"]
        .as_array()
        .and_then(|m| m.last())
        .cloned()
        .unwrap_or(Value::Null);
    let result = match format {
        Format::OpenAi => {
            (last["role"] == "tool").then(|| last["content"].as_str().unwrap_or("").to_string())
        }
        Format::Anthropic => last["content"].as_array().and_then(|blocks| {
            blocks
                .iter()
                .rev()
                .find(|b| b["type"] == "tool_result")
                .map(|b| b["content"].as_str().unwrap_or("").to_string())
        }),
    };
    if let Some(r) = result {
        return Plan::Answer(r);
    }
    let forced = match format {
        Format::OpenAi => req["tool_choice"]["function"]["name"].as_str(),
        Format::Anthropic => req["tool_choice"]["name"].as_str(),
    };
    let name = forced
        .map(String::from)
        .or_else(|| match format {
            Format::OpenAi => tools[0]["function"]["name"].as_str().map(String::from),
            Format::Anthropic => tools[0]["name"].as_str().map(String::from),
        })
        .unwrap_or_default();
    // A server whose answer is a JSON object calls with it (Anthropic JSON mode is a forced tool call).
    if let Ok(v @ Value::Object(_)) = serde_json::from_str::<Value>(content) {
        return Plan::Call(name, v);
    }
    let asked = req["messages"]
        .as_array()
        .and_then(|m| m.last())
        .map(|m| match &m["content"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .unwrap_or_default();
    Plan::Call(name, json!({"city": "Paris", "asked": asked}))
}

/// An answer that calls `name`: whole, or streamed as the provider streams tool calls (the arguments in
/// two fragments; Anthropic after a text block, so the call is content block 1).
fn tool_answer(format: Format, streamed: bool, name: &str, args: &Value) -> Response {
    let text = args.to_string();
    let (a, b) = text.split_at(text.len() / 2);
    if !streamed {
        let v = match format {
            Format::OpenAi => json!({
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": null,
                    "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": name, "arguments": text}}]},
                    "finish_reason": "tool_calls"}],
                "usage": {"prompt_tokens": INPUT_TOKENS, "completion_tokens": OUTPUT_TOKENS}
            }),
            Format::Anthropic => json!({
                "id": "msg_test", "type": "message", "role": "assistant",
                "content": [{"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "toolu_1", "name": name, "input": args}],
                "stop_reason": "tool_use",
                "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": OUTPUT_TOKENS}
            }),
        };
        return json_response(StatusCode::OK, v.to_string());
    }
    let events: Vec<Value> = match format {
        Format::OpenAi => vec![
            json!({"choices": [{"delta": {"role": "assistant", "content": null, "tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": name, "arguments": ""}}]}, "finish_reason": null}]}),
            json!({"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": a}}]}, "finish_reason": null}]}),
            json!({"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": b}}]}, "finish_reason": null}]}),
            json!({"choices": [{"delta": {}, "finish_reason": "tool_calls"}]}),
            json!({"choices": [], "usage": {"prompt_tokens": INPUT_TOKENS, "completion_tokens": OUTPUT_TOKENS}}),
        ],
        Format::Anthropic => vec![
            json!({"type": "message_start", "message": {"usage": {"input_tokens": INPUT_TOKENS, "output_tokens": 1}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Let me check."}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_1", "name": name, "input": {}}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": a}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": b}}),
            json!({"type": "content_block_stop", "index": 1}),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": OUTPUT_TOKENS}}),
            json!({"type": "message_stop"}),
        ],
    };
    let mut body: String = events.iter().map(|e| event(format, e)).collect();
    if format == Format::OpenAi {
        body.push_str("data: [DONE]\n\n");
    }
    sse_or_json(true, Body::from(body))
}
