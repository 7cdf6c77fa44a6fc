//! Anthropic's Messages API (`POST {base_url}/messages`).

use serde_json::{json, Value};

use super::wire::{u64_at, Answer, Piece};
use super::{CompletionRequest, Usage};

/// The API version sent in `anthropic-version`.
pub const API_VERSION: &str = "2023-06-01";

/// `max_tokens` is required by the Messages API; used when the caller sets none.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// The endpoint under `base_url`.
pub fn url(base_url: &str) -> String {
    format!("{}/messages", base_url.trim_end_matches('/'))
}

/// The request body. System turns move to the top-level `system` field, as the API requires.
pub fn body(model_id: &str, req: &CompletionRequest, stream: bool) -> Value {
    let system: Vec<&str> = req
        .messages
        .iter()
        .filter(|m| m.role == "system")
        .map(|m| m.content.as_str())
        .collect();
    let messages: Vec<Value> = req
        .messages
        .iter()
        .filter(|m| m.role != "system")
        .map(|m| json!({"role": m.role, "content": m.content}))
        .collect();
    let mut b = json!({
        "model": model_id,
        "messages": messages,
        "max_tokens": req.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
        "stream": stream,
    });
    let o = b.as_object_mut().expect("object literal");
    if !system.is_empty() {
        o.insert("system".into(), json!(system.join("\n\n")));
    }
    if let Some(t) = req.temperature {
        o.insert("temperature".into(), json!(t));
    }
    if let Some(p) = req.top_p {
        o.insert("top_p".into(), json!(p));
    }
    if !req.stop.is_empty() {
        o.insert("stop_sequences".into(), json!(req.stop));
    }
    if let Some(serde_json::Value::String(user)) = req.extra.get("user") {
        o.insert("metadata".into(), json!({"user_id": user}));
    }
    b
}

/// Request fields this format carries from [`CompletionRequest::extra`] (translated above); any other
/// extra field makes a target of this kind skip the request.
pub const TRANSLATED_EXTRA: &[&str] = &["user"];

/// Maps Anthropic's `stop_reason` onto the OpenAI words callers see.
fn finish(stop_reason: &str) -> String {
    match stop_reason {
        "end_turn" | "stop_sequence" => "stop".into(),
        "max_tokens" => "length".into(),
        other => other.into(),
    }
}

/// Parses a non-streamed response body.
pub fn parse_answer(v: &Value) -> Result<Answer, String> {
    let blocks = v
        .get("content")
        .and_then(Value::as_array)
        .ok_or("response has no content array")?;
    let content: String = blocks
        .iter()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .collect();
    Ok(Answer {
        content,
        finish_reason: finish(
            v.get("stop_reason")
                .and_then(Value::as_str)
                .unwrap_or("end_turn"),
        ),
        usage: Usage {
            input_tokens: u64_at(v, "/usage/input_tokens").unwrap_or(0),
            output_tokens: u64_at(v, "/usage/output_tokens").unwrap_or(0),
        },
    })
}

/// Parses one stream event's data.
pub fn parse_event(data: &str) -> Result<Vec<Piece>, String> {
    let v: Value =
        serde_json::from_str(data).map_err(|e| format!("malformed stream event: {e}"))?;
    let mut out = Vec::new();
    match v.get("type").and_then(Value::as_str).unwrap_or("") {
        "message_start" => {
            if let Some(n) = u64_at(&v, "/message/usage/input_tokens") {
                out.push(Piece::InputTokens(n));
            }
        }
        "content_block_delta" => {
            if let Some(t) = v.pointer("/delta/text").and_then(Value::as_str) {
                if !t.is_empty() {
                    out.push(Piece::Delta(t.to_string()));
                }
            }
        }
        "message_delta" => {
            if let Some(r) = v.pointer("/delta/stop_reason").and_then(Value::as_str) {
                out.push(Piece::Finish(finish(r)));
            }
            if let Some(n) = u64_at(&v, "/usage/output_tokens") {
                out.push(Piece::OutputTokens(n));
            }
        }
        "message_stop" => out.push(Piece::Done),
        "error" => out.push(Piece::Error(
            v.pointer("/error/message")
                .and_then(Value::as_str)
                .unwrap_or("unknown error")
                .to_string(),
        )),
        _ => {} // ping, content_block_start/stop
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::ChatMessage;

    #[test]
    fn system_turns_move_up_and_answers_parse() {
        let req = CompletionRequest {
            messages: vec![
                ChatMessage {
                    role: "system".into(),
                    content: "be brief".into(),
                },
                ChatMessage {
                    role: "user".into(),
                    content: "hi".into(),
                },
            ],
            ..Default::default()
        };
        let b = body("claude", &req, false);
        assert_eq!(b["system"], "be brief");
        assert_eq!(b["messages"].as_array().unwrap().len(), 1);
        assert_eq!(b["max_tokens"], DEFAULT_MAX_TOKENS);
        let v: Value = serde_json::from_str(
            r#"{"content":[{"type":"text","text":"a"},{"type":"text","text":"b"}],
                "stop_reason":"max_tokens","usage":{"input_tokens":5,"output_tokens":2}}"#,
        )
        .unwrap();
        let a = parse_answer(&v).unwrap();
        assert_eq!(
            (a.content.as_str(), a.finish_reason.as_str()),
            ("ab", "length")
        );
        assert_eq!(a.usage.output_tokens, 2);
    }
}
