//! Domain types every layer shares: a chat turn. Both faces translate their wire messages into these, the
//! router reads the turn it routes from them, and the upstream clients send them on.

use serde::Serialize;

/// One chat turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    /// `user`, `assistant`, `system`, `tool`.
    pub role: String,
    /// The text.
    pub content: String,
}
