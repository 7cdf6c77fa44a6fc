//! The OpenAI Chat Completions wire format (`POST {base_url}/chat/completions`), spoken by OpenAI and by
//! most self-hosted servers (vLLM, Ollama, llama.cpp, LiteLLM).

use serde_json::{json, Map, Value};

use super::wire::{u64_at, Answer, Piece};
use super::{CompletionRequest, Usage};
use crate::message::{ChatMessage, ContentPart, ResponseFormat, ToolCall, ToolChoice, ToolSpec};

/// The endpoint under `base_url`.
pub fn url(base_url: &str) -> String {
    format!("{}/chat/completions", base_url.trim_end_matches('/'))
}

fn message(m: &ChatMessage) -> Value {
    let content = if m.parts.is_empty() {
        // An assistant turn that only called tools has no content; OpenAI wants `null` there.
        if m.content.is_empty() && !m.tool_calls.is_empty() {
            Value::Null
        } else {
            json!(m.content)
        }
    } else {
        Value::Array(
            m.parts
                .iter()
                .map(|p| match p {
                    ContentPart::Text(t) => json!({"type": "text", "text": t}),
                    ContentPart::Image(i) => {
                        let mut image = json!({"url": i.url});
                        if let Some(d) = &i.detail {
                            image["detail"] = json!(d);
                        }
                        json!({"type": "image_url", "image_url": image})
                    }
                })
                .collect(),
        )
    };
    let mut o = Map::new();
    o.insert("role".into(), json!(m.role));
    o.insert("content".into(), content);
    if !m.tool_calls.is_empty() {
        o.insert(
            "tool_calls".into(),
            m.tool_calls.iter().map(tool_call).collect(),
        );
    }
    if let Some(id) = &m.tool_call_id {
        o.insert("tool_call_id".into(), json!(id));
    }
    Value::Object(o)
}

/// A tool call in OpenAI's shape (responses use the same one).
pub fn tool_call(c: &ToolCall) -> Value {
    json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}})
}

fn tool(t: &ToolSpec) -> Value {
    let mut f = json!({"name": t.name});
    if let Some(d) = &t.description {
        f["description"] = json!(d);
    }
    if let Some(p) = &t.parameters {
        f["parameters"] = p.clone();
    }
    if let Some(s) = t.strict {
        f["strict"] = json!(s);
    }
    json!({"type": "function", "function": f})
}

fn tool_choice(c: &ToolChoice) -> Value {
    match c {
        ToolChoice::None => json!("none"),
        ToolChoice::Auto => json!("auto"),
        ToolChoice::Required => json!("required"),
        ToolChoice::Function(name) => json!({"type": "function", "function": {"name": name}}),
    }
}

/// The request body.
pub fn body(model_id: &str, req: &CompletionRequest, stream: bool) -> Value {
    let messages: Vec<Value> = req.messages.iter().map(message).collect();
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
    match &req.response_format {
        ResponseFormat::Text => {}
        ResponseFormat::JsonObject => {
            o.insert("response_format".into(), json!({"type": "json_object"}));
        }
        ResponseFormat::JsonSchema(s) => {
            o.insert(
                "response_format".into(),
                json!({"type": "json_schema", "json_schema": s}),
            );
        }
    }
    if !req.tools.is_empty() {
        o.insert("tools".into(), req.tools.iter().map(tool).collect());
    }
    if let Some(c) = &req.tool_choice {
        o.insert("tool_choice".into(), tool_choice(c));
    }
    if let Some(p) = req.parallel_tool_calls {
        o.insert("parallel_tool_calls".into(), json!(p));
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

fn parse_tool_calls(v: Option<&Value>) -> Result<Vec<ToolCall>, String> {
    let Some(Value::Array(calls)) = v else {
        return Ok(Vec::new());
    };
    calls
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let s = |p: &str| c.pointer(p).and_then(Value::as_str);
            Ok(ToolCall {
                id: s("/id").unwrap_or_default().to_string(),
                name: s("/function/name")
                    .ok_or_else(|| format!("tool_calls[{i}] has no function.name"))?
                    .to_string(),
                arguments: s("/function/arguments").unwrap_or("{}").to_string(),
            })
        })
        .collect()
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
        tool_calls: parse_tool_calls(choice.pointer("/message/tool_calls"))?,
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
        if let Some(Value::Array(calls)) = choice.pointer("/delta/tool_calls") {
            for (i, c) in calls.iter().enumerate() {
                let s = |p: &str| c.pointer(p).and_then(Value::as_str).map(String::from);
                out.push(Piece::ToolCall {
                    index: c
                        .get("index")
                        .and_then(Value::as_u64)
                        .map_or(i as u32, |n| n.min(u64::from(u32::MAX)) as u32),
                    id: s("/id"),
                    name: s("/function/name"),
                    arguments: s("/function/arguments").unwrap_or_default(),
                });
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
    use crate::message::ImagePart;

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

    #[test]
    fn tool_calls_and_images_round_trip() {
        let req = CompletionRequest {
            messages: vec![
                ChatMessage {
                    role: "user".into(),
                    content: "what is this".into(),
                    parts: vec![
                        ContentPart::Text("what is this".into()),
                        ContentPart::Image(ImagePart {
                            url: "https://x/y.png".into(),
                            detail: Some("low".into()),
                        }),
                    ],
                    ..Default::default()
                },
                ChatMessage {
                    role: "assistant".into(),
                    tool_calls: vec![ToolCall {
                        id: "c1".into(),
                        name: "look".into(),
                        arguments: "{\"q\":1}".into(),
                    }],
                    ..Default::default()
                },
                ChatMessage {
                    role: "tool".into(),
                    content: "a cat".into(),
                    tool_call_id: Some("c1".into()),
                    ..Default::default()
                },
            ],
            tools: vec![ToolSpec {
                name: "look".into(),
                description: None,
                parameters: Some(json!({"type": "object"})),
                strict: None,
            }],
            tool_choice: Some(ToolChoice::Function("look".into())),
            ..Default::default()
        };
        let b = body("gpt", &req, false);
        assert_eq!(b["messages"][0]["content"][1]["image_url"]["detail"], "low");
        assert_eq!(b["messages"][1]["content"], Value::Null);
        assert_eq!(
            b["messages"][1]["tool_calls"][0]["function"]["arguments"],
            "{\"q\":1}"
        );
        assert_eq!(b["messages"][2]["tool_call_id"], "c1");
        assert_eq!(b["tools"][0]["function"]["parameters"]["type"], "object");
        assert_eq!(b["tool_choice"]["function"]["name"], "look");

        let v: Value = serde_json::from_str(
            r#"{"choices":[{"message":{"role":"assistant","content":null,
                "tool_calls":[{"id":"c2","type":"function","function":{"name":"look","arguments":"{}"}}]},
                "finish_reason":"tool_calls"}]}"#,
        )
        .unwrap();
        let a = parse_answer(&v).unwrap();
        assert_eq!(a.tool_calls[0].id, "c2");
        assert_eq!(a.finish_reason, "tool_calls");
        assert_eq!(
            parse_event(
                r#"{"choices":[{"delta":{"tool_calls":[{"index":1,"function":{"arguments":"{\"a"}}]}}]}"#
            )
            .unwrap(),
            vec![Piece::ToolCall {
                index: 1,
                id: None,
                name: None,
                arguments: "{\"a".into()
            }]
        );
    }
}
