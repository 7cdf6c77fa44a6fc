//! The OpenAI Chat Completions wire format (`POST {base_url}/chat/completions`), spoken by OpenAI and by
//! most self-hosted servers (vLLM, Ollama, llama.cpp, LiteLLM).

use serde_json::{json, Value};

use super::wire::{u64_at, Answer, Piece};
use super::{CompletionRequest, Usage};

/// The endpoint under `base_url`.
pub fn url(base_url: &str) -> String {
    format!("{}/chat/completions", base_url.trim_end_matches('/'))
}

/// The request body.
pub fn body(model_id: &str, req: &CompletionRequest, stream: bool) -> Value {
    let messages: Vec<Value> = req
        .messages
        .iter()
        .map(|m| json!({"role": m.role, "content": m.content}))
        .collect();
    let mut b = json!({"model": model_id, "messages": messages, "stream": stream});
    let o = b.as_object_mut().expect("object literal");
    if let Some(t) = req.max_tokens {
        o.insert("max_tokens".into(), json!(t));
    }
    if let Some(t) = req.temperature {
        o.insert("temperature".into(), json!(t));
    }
    if let Some(p) = req.top_p {
        o.insert("top_p".into(), json!(p));
    }
    if !req.stop.is_empty() {
        o.insert("stop".into(), json!(req.stop));
    }
    if req.json && !req.extra.contains_key("response_format") {
        o.insert("response_format".into(), json!({"type": "json_object"}));
    }
    // What the router does not interpret goes on unchanged; the fields it sets itself win.
    for (k, v) in &req.extra {
        o.entry(k.clone()).or_insert_with(|| v.clone());
    }
    if stream {
        // Without this, streamed answers carry no token counts.
        o.insert("stream_options".into(), json!({"include_usage": true}));
    }
    b
}

/// Parses a non-streamed response body.
pub fn parse_answer(v: &Value) -> Result<Answer, String> {
    let choice = v
        .pointer("/choices/0")
        .ok_or("response has no choices[0]")?;
    let content = match choice.pointer("/message/content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(_) => return Err("choices[0].message.content is not a string".into()),
    };
    let finish_reason = choice
        .get("finish_reason")
        .and_then(Value::as_str)
        .unwrap_or("stop")
        .to_string();
    Ok(Answer {
        content,
        finish_reason,
        usage: Usage {
            input_tokens: u64_at(v, "/usage/prompt_tokens").unwrap_or(0),
            output_tokens: u64_at(v, "/usage/completion_tokens").unwrap_or(0),
        },
    })
}

/// Parses one stream event's data.
pub fn parse_event(data: &str) -> Result<Vec<Piece>, String> {
    if data.trim() == "[DONE]" {
        return Ok(vec![Piece::Done]);
    }
    let v: Value =
        serde_json::from_str(data).map_err(|e| format!("malformed stream event: {e}"))?;
    if let Some(msg) = v.pointer("/error/message").and_then(Value::as_str) {
        return Ok(vec![Piece::Error(msg.to_string())]);
    }
    let mut out = Vec::new();
    if let Some(choice) = v.pointer("/choices/0") {
        if let Some(d) = choice.pointer("/delta/content").and_then(Value::as_str) {
            if !d.is_empty() {
                out.push(Piece::Delta(d.to_string()));
            }
        }
        if let Some(r) = choice.get("finish_reason").and_then(Value::as_str) {
            out.push(Piece::Finish(r.to_string()));
        }
    }
    if let Some(n) = u64_at(&v, "/usage/prompt_tokens") {
        out.push(Piece::InputTokens(n));
    }
    if let Some(n) = u64_at(&v, "/usage/completion_tokens") {
        out.push(Piece::OutputTokens(n));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_answer_and_events() {
        let v: Value = serde_json::from_str(
            r#"{"choices":[{"message":{"role":"assistant","content":"hi"},"finish_reason":"length"}],
                "usage":{"prompt_tokens":7,"completion_tokens":3}}"#,
        )
        .unwrap();
        let a = parse_answer(&v).unwrap();
        assert_eq!(a.content, "hi");
        assert_eq!(a.finish_reason, "length");
        assert_eq!(a.usage.input_tokens, 7);
        assert_eq!(a.usage.output_tokens, 3);
        assert_eq!(
            parse_event(r#"{"choices":[{"delta":{"content":"x"},"finish_reason":null}]}"#).unwrap(),
            vec![Piece::Delta("x".into())]
        );
        assert_eq!(parse_event("[DONE]").unwrap(), vec![Piece::Done]);
        assert!(parse_event("{nope").is_err());
    }
}
