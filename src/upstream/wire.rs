//! What the provider formats have in common: a parsed answer and the pieces of a stream.

use super::Usage;

/// A whole (non-streamed) answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The text.
    pub content: String,
    /// Normalised: `stop`, `length`, or the provider's own word.
    pub finish_reason: String,
    /// Token counts.
    pub usage: Usage,
}

/// What one stream event carried.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    /// Text to append.
    Delta(String),
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
