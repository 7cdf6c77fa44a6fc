//! What the provider formats have in common: a parsed answer and the pieces of a stream.

use super::Usage;
use crate::message::ToolCall;

/// A whole (non-streamed) answer.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Answer {
    /// The text.
    pub content: String,
    /// The tool calls the model made, in order.
    pub tool_calls: Vec<ToolCall>,
    /// Normalised to OpenAI's words: `stop`, `length`, `tool_calls`, `content_filter`, or the provider's
    /// own word.
    pub finish_reason: String,
    /// Token counts.
    pub usage: Usage,
}

/// What one stream event carried.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    /// Text to append.
    Delta(String),
    /// Part of a tool call. `index` is the provider's (OpenAI: the call's index; Anthropic: the content
    /// block's); the first piece of a call carries its id and name.
    ToolCall {
        /// The provider's index for the call.
        index: u32,
        /// The call's id (first piece only).
        id: Option<String>,
        /// The function's name (first piece only).
        name: Option<String>,
        /// The next fragment of the arguments' JSON text.
        arguments: String,
    },
    /// Why generation ended.
    Finish(String),
    /// Input tokens, when reported.
    InputTokens(u64),
    /// Output tokens, when reported.
    OutputTokens(u64),
    /// The stream is complete.
    Done,
    /// The provider reported an error inside the stream.
    Error(String),
}

/// A JSON number field as u64 (absent or malformed: `None`).
pub fn u64_at(v: &serde_json::Value, pointer: &str) -> Option<u64> {
    v.pointer(pointer).and_then(serde_json::Value::as_u64)
}
