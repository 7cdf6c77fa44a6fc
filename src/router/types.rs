//! The routing layer's domain types: what to route, the decision and its evidence, and the layer's error.

use serde::Serialize;

use crate::embedding::EmbedError;
use crate::index::IndexError;
use crate::message::ChatMessage;

/// Most neighbours a caller may ask for as evidence.
pub const MAX_EVIDENCE: usize = 100;

/// Errors of the routing layer.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// The request is malformed (blank text, too long, no user turn, ...).
    #[error("{0}")]
    InvalidInput(String),
    /// The embedding layer failed or is overloaded.
    #[error(transparent)]
    Embed(#[from] EmbedError),
    /// The index could not be built.
    #[error(transparent)]
    Index(#[from] IndexError),
}

/// What to route: plain text or a conversation.
#[derive(Debug, Clone, Default)]
pub struct RouteQuery {
    /// The prompt; mutually exclusive with `messages`.
    pub text: String,
    /// A conversation; its last user turn is routed, with the user turns before it when the last one does
    /// not clear a threshold alone (`matching.context_turns`).
    pub messages: Vec<ChatMessage>,
    /// Neighbours to return as evidence (default: `matching.top_k`).
    pub top_k: Option<usize>,
    /// Refused at once if the model could not start it by then; abandoned once it passes.
    pub deadline: Option<std::time::Instant>,
}

/// A route and its aggregated score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    /// Route name.
    pub route: String,
    /// Aggregated score.
    pub score: f32,
}

/// An exemplar near the prompt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Neighbour {
    /// The exemplar's route.
    pub route: String,
    /// The exemplar's text.
    pub utterance: String,
    /// Cosine similarity to the prompt.
    pub similarity: f32,
}

/// The decision for one prompt, with its evidence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// The chosen route; `None` when nothing cleared its threshold and there is no default route.
    pub route: Option<String>,
    /// The best candidate's score.
    pub score: f32,
    /// Whether the best candidate cleared its threshold (false when the default route was used).
    pub matched: bool,
    /// Route scores, best first.
    pub candidates: Vec<Candidate>,
    /// Nearest exemplars, most similar first.
    pub neighbours: Vec<Neighbour>,
    /// The snapshot version that decided.
    pub index_version: u64,
    /// Microseconds spent embedding (queueing included).
    pub embed_micros: u64,
    /// Microseconds spent searching and aggregating.
    pub search_micros: u64,
    /// The rule that fired (completions only; `None` when no rule matched or none are configured). A rule
    /// that pins a route has also replaced `route`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The sensitive-data detectors that found something in the prompt (completions only; names only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub guard: Vec<String>,
    /// Earlier user turns of the conversation that joined the last one in the decision
    /// (`matching.context_turns`); 0 when the last turn decided alone.
    #[serde(skip_serializing_if = "is_zero")]
    pub context_turns: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}
