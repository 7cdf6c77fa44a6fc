//! Putting a streamed answer together: text and tool-call pieces in, the deltas the caller sees out, and
//! the whole answer at the end. Tool calls are numbered 0, 1, … in order of appearance whatever index the
//! provider gives them (Anthropic numbers content blocks, text included), and JSON mode's forced tool call
//! (Anthropic) comes out as text.

use super::wire::Answer;
use super::{Delta, ToolCallDelta, Usage};
use crate::message::ToolCall;

/// One streamed answer being assembled.
#[derive(Debug, Default)]
pub struct Assembler {
    json_tool: Option<&'static str>,
    content: String,
    calls: Vec<ToolCall>,
    /// The provider's index of each call in `calls`.
    provider_index: Vec<u32>,
    /// The provider's index of JSON mode's forced call, once seen.
    json_index: Option<u32>,
}

impl Assembler {
    /// An assembler; with `json_tool`, calls to that tool are the answer's text.
    pub fn new(json_tool: Option<&'static str>) -> Self {
        Self {
            json_tool,
            ..Self::default()
        }
    }

    /// Text the provider sent. In JSON mode only the forced call's arguments are the answer, as in a
    /// whole answer, so text beside it is dropped.
    pub fn provider_text(&mut self, t: String) -> Option<Delta> {
        if self.json_tool.is_some() {
            return None;
        }
        Some(self.text(t))
    }

    fn text(&mut self, t: String) -> Delta {
        self.content.push_str(&t);
        Delta::Text(t)
    }

    /// Part of a tool call; returns what the caller should see, if anything.
    pub fn tool_call(
        &mut self,
        index: u32,
        id: Option<String>,
        name: Option<String>,
        arguments: String,
    ) -> Option<Delta> {
        if self.json_index == Some(index) {
            return (!arguments.is_empty()).then(|| self.text(arguments));
        }
        match self.provider_index.iter().position(|&i| i == index) {
            Some(n) => {
                let call = &mut self.calls[n];
                let id = id.filter(|_| call.id.is_empty());
                let name = name.filter(|_| call.name.is_empty());
                if let Some(v) = &id {
                    call.id.clone_from(v);
                }
                if let Some(v) = &name {
                    call.name.clone_from(v);
                }
                call.arguments.push_str(&arguments);
                (id.is_some() || name.is_some() || !arguments.is_empty()).then_some(
                    Delta::ToolCall(ToolCallDelta {
                        index: n as u32,
                        id,
                        name,
                        arguments,
                    }),
                )
            }
            None => {
                if self.json_tool.is_some() && name.as_deref() == self.json_tool {
                    self.json_index = Some(index);
                    return (!arguments.is_empty()).then(|| self.text(arguments));
                }
                let n = self.calls.len() as u32;
                self.provider_index.push(index);
                self.calls.push(ToolCall {
                    id: id.clone().unwrap_or_default(),
                    name: name.clone().unwrap_or_default(),
                    arguments: arguments.clone(),
                });
                Some(Delta::ToolCall(ToolCallDelta {
                    index: n,
                    id,
                    name,
                    arguments,
                }))
            }
        }
    }

    /// The whole answer.
    pub fn finish(self, finish_reason: Option<String>, usage: Usage) -> Answer {
        let mut finish_reason = finish_reason.unwrap_or_else(|| "stop".into());
        if self.json_index.is_some() && self.calls.is_empty() && finish_reason == "tool_calls" {
            finish_reason = "stop".into();
        }
        Answer {
            content: self.content,
            tool_calls: self.calls,
            finish_reason,
            usage,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_calls_densely_and_joins_arguments() {
        let mut a = Assembler::new(None);
        a.provider_text("Let me check.".into());
        let first = a.tool_call(1, Some("t1".into()), Some("w".into()), String::new());
        assert_eq!(
            first,
            Some(Delta::ToolCall(ToolCallDelta {
                index: 0,
                id: Some("t1".into()),
                name: Some("w".into()),
                arguments: String::new()
            }))
        );
        a.tool_call(1, None, None, "{\"c\":".into());
        a.tool_call(1, None, None, "1}".into());
        assert_eq!(a.tool_call(1, None, None, String::new()), None);
        a.tool_call(2, Some("t2".into()), Some("w".into()), "{}".into());
        let ans = a.finish(Some("tool_calls".into()), Usage::default());
        assert_eq!(ans.content, "Let me check.");
        assert_eq!(ans.tool_calls.len(), 2);
        assert_eq!(ans.tool_calls[0].arguments, "{\"c\":1}");
        assert_eq!(ans.finish_reason, "tool_calls");
    }

    #[test]
    fn json_mode_call_becomes_text() {
        let mut a = Assembler::new(Some("json_answer"));
        assert_eq!(a.provider_text("Sure.".into()), None);
        assert_eq!(
            a.tool_call(
                0,
                Some("x".into()),
                Some("json_answer".into()),
                String::new()
            ),
            None
        );
        assert_eq!(
            a.tool_call(0, None, None, "{\"a\"".into()),
            Some(Delta::Text("{\"a\"".into()))
        );
        a.tool_call(0, None, None, ":1}".into());
        let ans = a.finish(Some("tool_calls".into()), Usage::default());
        assert_eq!(
            (ans.content.as_str(), ans.finish_reason.as_str()),
            ("{\"a\":1}", "stop")
        );
        assert!(ans.tool_calls.is_empty());
    }
}
