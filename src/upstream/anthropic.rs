//! Anthropic's Messages API (`POST {base_url}/messages`), translated from and to the OpenAI shapes the
//! rest of the router speaks: system turns move to `system`, tool calls become `tool_use` blocks and tool
//! turns `tool_result` blocks, images become `image` blocks, stop words map onto OpenAI's finish reasons,
//! and JSON mode is a forced call to one tool whose input schema is the requested schema (the Messages API
//! has no `response_format`), whose input becomes the answer's text.

use serde_json::{json, Value};

use super::wire::{u64_at, Answer, Piece};
use super::{CompletionRequest, Usage};
use crate::message::{ChatMessage, ContentPart, ImagePart, ResponseFormat, ToolCall, ToolChoice};

/// The API version sent in `anthropic-version`.
pub const API_VERSION: &str = "2023-06-01";

/// `max_tokens` is required by the Messages API; used when the caller sets none.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// The tool JSON mode forces; its input is the answer.
pub const JSON_TOOL: &str = "json_answer";

/// Request fields this format carries from [`CompletionRequest::extra`] (translated in [`body`]); any
/// other extra field makes a target of this kind skip the request.
pub const TRANSLATED_EXTRA: &[&str] = &["user"];

/// The endpoint under `base_url`.
pub fn url(base_url: &str) -> String {
    format!("{}/messages", base_url.trim_end_matches('/'))
}

/// Why a request cannot be written in this format without losing part of it: the field and the reason.
/// Checked before a target of this kind is tried.
pub fn cannot_carry(req: &CompletionRequest) -> Option<(String, String)> {
    if let Some(field) = req
        .extra
        .keys()
        .find(|k| !TRANSLATED_EXTRA.contains(&k.as_str()))
    {
        return Some((
            field.clone(),
            format!("the Anthropic format has no `{field}`"),
        ));
    }
    if req.response_format.is_json() && !req.tools.is_empty() {
        return Some((
            "response_format".into(),
            "JSON mode together with tools cannot be expressed in the Anthropic format".into(),
        ));
    }
    if let ResponseFormat::JsonSchema(s) = &req.response_format {
        if s.pointer("/schema/type").and_then(Value::as_str) != Some("object") {
            return Some((
                "response_format.json_schema.schema".into(),
                "the Anthropic format can only be asked for a JSON object (schema `type: object`)"
                    .into(),
            ));
        }
    }
    for (i, m) in req.messages.iter().enumerate() {
        for (j, c) in m.tool_calls.iter().enumerate() {
            if !arguments(c).is_object() {
                return Some((
                    format!("messages[{i}].tool_calls[{j}].function.arguments"),
                    "the Anthropic format needs tool-call arguments that are a JSON object".into(),
                ));
            }
        }
        if m.role == "tool" && m.tool_call_id.is_none() {
            return Some((
                format!("messages[{i}].tool_call_id"),
                "a tool turn needs the id of the call it answers".into(),
            ));
        }
        for (j, p) in m.parts.iter().enumerate() {
            if let ContentPart::Image(img) = p {
                if image_source(img).is_none() {
                    return Some((
                        format!("messages[{i}].content[{j}].image_url.url"),
                        "the Anthropic format takes images as https URLs or base64 data URLs"
                            .into(),
                    ));
                }
            }
        }
    }
    None
}

/// The call's arguments as JSON (an empty text is an empty object; text that is not JSON is `null`).
fn arguments(c: &ToolCall) -> Value {
    if c.arguments.trim().is_empty() {
        return json!({});
    }
    serde_json::from_str(&c.arguments).unwrap_or(Value::Null)
}

fn image_source(img: &ImagePart) -> Option<Value> {
    if let Some(rest) = img.url.strip_prefix("data:") {
        let (media_type, data) = rest.split_once(";base64,")?;
        return Some(json!({"type": "base64", "media_type": media_type, "data": data}));
    }
    (img.url.starts_with("https://") || img.url.starts_with("http://"))
        .then(|| json!({"type": "url", "url": img.url}))
}

/// The content blocks of one turn.
fn blocks(m: &ChatMessage) -> Vec<Value> {
    let mut out = Vec::new();
    if m.role == "tool" {
        out.push(json!({
            "type": "tool_result",
            "tool_use_id": m.tool_call_id.as_deref().unwrap_or_default(),
            "content": m.content,
        }));
        return out;
    }
    if m.parts.is_empty() {
        // The API refuses empty text blocks.
        if !m.content.is_empty() {
            out.push(json!({"type": "text", "text": m.content}));
        }
    } else {
        for p in &m.parts {
            match p {
                ContentPart::Text(t) if !t.is_empty() => {
                    out.push(json!({"type": "text", "text": t}))
                }
                ContentPart::Text(_) => {}
                ContentPart::Image(img) => {
                    if let Some(source) = image_source(img) {
                        out.push(json!({"type": "image", "source": source}));
                    }
                }
            }
        }
    }
    for c in &m.tool_calls {
        out.push(json!({"type": "tool_use", "id": c.id, "name": c.name, "input": arguments(c)}));
    }
    out
}

/// The conversation without system turns. Tool turns are user turns holding `tool_result` blocks, and
/// consecutive turns of one role merge, as the API wants results of parallel calls in one user turn.
fn messages(req: &CompletionRequest) -> Vec<Value> {
    let mut turns: Vec<(&str, Vec<Value>)> = Vec::new();
    for m in req.messages.iter().filter(|m| m.role != "system") {
        let role = if m.role == "assistant" {
            "assistant"
        } else {
            "user"
        };
        let b = blocks(m);
        match turns.last_mut() {
            Some((r, prev)) if *r == role => prev.extend(b),
            _ => turns.push((role, b)),
        }
    }
    turns
        .into_iter()
        .map(|(role, b)| {
            // One text block is written as a plain string, the form most examples and servers use.
            let content = match b.as_slice() {
                [] => json!(""),
                [one] if one["type"] == "text" => one["text"].clone(),
                _ => Value::Array(b),
            };
            json!({"role": role, "content": content})
        })
        .collect()
}

/// The request body.
pub fn body(model_id: &str, req: &CompletionRequest, stream: bool) -> Value {
    let system: Vec<&str> = req
        .messages
        .iter()
        .filter(|m| m.role == "system")
        .map(|m| m.content.as_str())
        .collect();
    let mut b = json!({
        "model": model_id,
        "messages": messages(req),
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
    if let Some(Value::String(user)) = req.extra.get("user") {
        o.insert("metadata".into(), json!({"user_id": user}));
    }
    let json_schema = match &req.response_format {
        ResponseFormat::Text => None,
        ResponseFormat::JsonObject => Some(json!({"type": "object"})),
        ResponseFormat::JsonSchema(s) => Some(
            s.get("schema")
                .cloned()
                .unwrap_or_else(|| json!({"type": "object"})),
        ),
    };
    if let Some(schema) = json_schema {
        o.insert(
            "tools".into(),
            json!([{
                "name": JSON_TOOL,
                "description": "Give the answer as a JSON object.",
                "input_schema": schema,
            }]),
        );
        o.insert(
            "tool_choice".into(),
            json!({"type": "tool", "name": JSON_TOOL}),
        );
        return b;
    }
    if !req.tools.is_empty() {
        let tools: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                let mut v = json!({
                    "name": t.name,
                    "input_schema": t.parameters.clone().unwrap_or_else(|| json!({"type": "object"})),
                });
                if let Some(d) = &t.description {
                    v["description"] = json!(d);
                }
                v
            })
            .collect();
        o.insert("tools".into(), Value::Array(tools));
        let mut choice = match &req.tool_choice {
            None | Some(ToolChoice::Auto) => json!({"type": "auto"}),
            Some(ToolChoice::None) => json!({"type": "none"}),
            Some(ToolChoice::Required) => json!({"type": "any"}),
            Some(ToolChoice::Function(name)) => json!({"type": "tool", "name": name}),
        };
        if req.parallel_tool_calls == Some(false) && choice["type"] != "none" {
            choice["disable_parallel_tool_use"] = json!(true);
        }
        if req.tool_choice.is_some() || req.parallel_tool_calls == Some(false) {
            o.insert("tool_choice".into(), choice);
        }
    }
    b
}

/// Maps Anthropic's `stop_reason` onto the OpenAI words callers see.
pub fn finish(stop_reason: &str) -> String {
    match stop_reason {
        "end_turn" | "stop_sequence" | "pause_turn" => "stop".into(),
        "max_tokens" => "length".into(),
        "tool_use" => "tool_calls".into(),
        "refusal" => "content_filter".into(),
        other => other.into(),
    }
}

/// Parses a non-streamed response body. In JSON mode the forced tool's input is the answer's text.
pub fn parse_answer(v: &Value, json_mode: bool) -> Result<Answer, String> {
    let blocks = v
        .get("content")
        .and_then(Value::as_array)
        .ok_or("response has no content array")?;
    let mut content = String::new();
    let mut tool_calls = Vec::new();
    for b in blocks {
        match b.get("type").and_then(Value::as_str) {
            Some("text") => content.push_str(b.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("tool_use") => {
                let name = b.get("name").and_then(Value::as_str).unwrap_or_default();
                let input = b.get("input").cloned().unwrap_or_else(|| json!({}));
                if json_mode && name == JSON_TOOL {
                    content = input.to_string();
                    continue;
                }
                tool_calls.push(ToolCall {
                    id: b
                        .get("id")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .into(),
                    name: name.into(),
                    arguments: input.to_string(),
                });
            }
            _ => {}
        }
    }
    let mut finish_reason = finish(
        v.get("stop_reason")
            .and_then(Value::as_str)
            .unwrap_or("end_turn"),
    );
    if json_mode && tool_calls.is_empty() && finish_reason == "tool_calls" {
        finish_reason = "stop".into();
    }
    Ok(Answer {
        content,
        tool_calls,
        finish_reason,
        usage: Usage {
            input_tokens: u64_at(v, "/usage/input_tokens").unwrap_or(0),
            output_tokens: u64_at(v, "/usage/output_tokens").unwrap_or(0),
        },
    })
}

/// Parses one stream event's data. Tool calls come out with the content block's index; the stream
/// assembler numbers them and turns JSON mode's forced call into text.
pub fn parse_event(data: &str) -> Result<Vec<Piece>, String> {
    let v: Value =
        serde_json::from_str(data).map_err(|e| format!("malformed stream event: {e}"))?;
    let mut out = Vec::new();
    let index = || {
        v.get("index")
            .and_then(Value::as_u64)
            .map_or(0, |n| n.min(u64::from(u32::MAX)) as u32)
    };
    match v.get("type").and_then(Value::as_str).unwrap_or("") {
        "message_start" => {
            if let Some(n) = u64_at(&v, "/message/usage/input_tokens") {
                out.push(Piece::InputTokens(n));
            }
        }
        "content_block_start" => {
            if let Some(b) = v
                .get("content_block")
                .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_use"))
            {
                let s = |k: &str| b.get(k).and_then(Value::as_str).map(String::from);
                // The start block's `input` is `{}`; the arguments follow as `input_json_delta`s.
                out.push(Piece::ToolCall {
                    index: index(),
                    id: s("id"),
                    name: s("name"),
                    arguments: String::new(),
                });
            }
        }
        "content_block_delta" => match v.pointer("/delta/type").and_then(Value::as_str) {
            Some("input_json_delta") => {
                let part = v
                    .pointer("/delta/partial_json")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                out.push(Piece::ToolCall {
                    index: index(),
                    id: None,
                    name: None,
                    arguments: part.to_string(),
                });
            }
            _ => {
                if let Some(t) = v.pointer("/delta/text").and_then(Value::as_str) {
                    if !t.is_empty() {
                        out.push(Piece::Delta(t.to_string()));
                    }
                }
            }
        },
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
        _ => {} // ping, content_block_stop
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::ToolSpec;

    #[test]
    fn system_turns_move_up_and_answers_parse() {
        let req = CompletionRequest {
            messages: vec![
                ChatMessage::text("system", "be brief"),
                ChatMessage::text("user", "hi"),
            ],
            ..Default::default()
        };
        let b = body("claude", &req, false);
        assert_eq!(b["system"], "be brief");
        assert_eq!(b["messages"], json!([{"role": "user", "content": "hi"}]));
        assert_eq!(b["max_tokens"], DEFAULT_MAX_TOKENS);
        let v: Value = serde_json::from_str(
            r#"{"content":[{"type":"text","text":"a"},{"type":"text","text":"b"}],
                "stop_reason":"max_tokens","usage":{"input_tokens":5,"output_tokens":2}}"#,
        )
        .unwrap();
        let a = parse_answer(&v, false).unwrap();
        assert_eq!(
            (a.content.as_str(), a.finish_reason.as_str()),
            ("ab", "length")
        );
        assert_eq!(a.usage.output_tokens, 2);
    }

    #[test]
    fn tool_turns_translate_both_ways() {
        let req = CompletionRequest {
            messages: vec![
                ChatMessage::text("user", "weather in Paris and Rome?"),
                ChatMessage {
                    role: "assistant".into(),
                    tool_calls: vec![
                        ToolCall {
                            id: "t1".into(),
                            name: "weather".into(),
                            arguments: "{\"city\":\"Paris\"}".into(),
                        },
                        ToolCall {
                            id: "t2".into(),
                            name: "weather".into(),
                            arguments: "{\"city\":\"Rome\"}".into(),
                        },
                    ],
                    ..Default::default()
                },
                ChatMessage {
                    role: "tool".into(),
                    content: "sunny".into(),
                    tool_call_id: Some("t1".into()),
                    ..Default::default()
                },
                ChatMessage {
                    role: "tool".into(),
                    content: "rain".into(),
                    tool_call_id: Some("t2".into()),
                    ..Default::default()
                },
            ],
            tools: vec![ToolSpec {
                name: "weather".into(),
                description: Some("Weather by city".into()),
                parameters: Some(
                    json!({"type": "object", "properties": {"city": {"type": "string"}}}),
                ),
                strict: None,
            }],
            tool_choice: Some(ToolChoice::Required),
            parallel_tool_calls: Some(false),
            ..Default::default()
        };
        assert_eq!(cannot_carry(&req), None);
        let b = body("claude", &req, false);
        let m = b["messages"].as_array().unwrap();
        assert_eq!(m.len(), 3, "{b}");
        assert_eq!(m[1]["content"][1]["input"]["city"], "Rome");
        assert_eq!(m[2]["role"], "user");
        assert_eq!(m[2]["content"][1]["tool_use_id"], "t2");
        assert_eq!(
            b["tools"][0]["input_schema"]["properties"]["city"]["type"],
            "string"
        );
        assert_eq!(
            b["tool_choice"],
            json!({"type": "any", "disable_parallel_tool_use": true})
        );

        let v = json!({"content": [{"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "t3", "name": "weather", "input": {"city": "Oslo"}}],
            "stop_reason": "tool_use"});
        let a = parse_answer(&v, false).unwrap();
        assert_eq!(a.finish_reason, "tool_calls");
        assert_eq!(a.tool_calls[0].arguments, "{\"city\":\"Oslo\"}");
        assert_eq!(
            parse_event(r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"t3","name":"weather","input":{}}}"#)
                .unwrap(),
            vec![Piece::ToolCall { index: 1, id: Some("t3".into()), name: Some("weather".into()), arguments: String::new() }]
        );
    }

    #[test]
    fn json_mode_is_a_forced_tool_and_unfit_requests_are_named() {
        let mut req = CompletionRequest {
            messages: vec![ChatMessage::text("user", "list")],
            response_format: ResponseFormat::JsonObject,
            ..Default::default()
        };
        let b = body("claude", &req, false);
        assert_eq!(b["tool_choice"]["name"], JSON_TOOL);
        let v = json!({"content": [{"type": "tool_use", "id": "x", "name": JSON_TOOL, "input": {"a": 1}}],
            "stop_reason": "tool_use"});
        let a = parse_answer(&v, true).unwrap();
        assert_eq!(
            (a.content.as_str(), a.finish_reason.as_str()),
            ("{\"a\":1}", "stop")
        );
        req.response_format =
            ResponseFormat::JsonSchema(json!({"name": "n", "schema": {"type": "array"}}));
        assert_eq!(
            cannot_carry(&req).unwrap().0,
            "response_format.json_schema.schema"
        );
        req.response_format = ResponseFormat::Text;
        req.extra.insert("seed".into(), json!(1));
        assert_eq!(cannot_carry(&req).unwrap().0, "seed");
    }
}
