//! Domain types every layer shares: chat turns, their content parts, and tool calling. Both faces
//! translate their wire messages into these, the router reads the turn it routes from them, and the
//! upstream clients write them in each provider's format.

use serde::Serialize;
use serde_json::Value;

/// One chat turn.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    /// `user`, `assistant`, `system`, `tool`.
    pub role: String,
    /// The turn's text (its text parts joined with `\n` when it came as parts): what routing reads.
    pub content: String,
    /// The content in order, when it holds more than text (images). Empty: the content is `content`.
    pub parts: Vec<ContentPart>,
    /// The tool calls an assistant turn made.
    pub tool_calls: Vec<ToolCall>,
    /// The call a `tool` turn answers.
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    /// A plain text turn.
    pub fn text(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
            ..Self::default()
        }
    }

    /// The images this turn carries.
    pub fn images(&self) -> impl Iterator<Item = &ImagePart> {
        self.parts.iter().filter_map(|p| match p {
            ContentPart::Image(i) => Some(i),
            ContentPart::Text(_) => None,
        })
    }

    /// Bytes this turn sends upstream, for the input-size limit and rough token estimates.
    pub fn size(&self) -> usize {
        self.content.len()
            + self
                .tool_calls
                .iter()
                .map(|c| c.name.len() + c.arguments.len())
                .sum::<usize>()
    }
}

/// One piece of a turn's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum ContentPart {
    /// Text.
    Text(String),
    /// An image.
    Image(ImagePart),
}

/// An image given by URL: `https://…` or a `data:image/…;base64,…` URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImagePart {
    /// Where the image is, or the image itself as a data URL.
    pub url: String,
    /// OpenAI's `detail` (`auto`, `low`, `high`), passed on where the format has it.
    pub detail: Option<String>,
}

/// A call an assistant turn made to one of the caller's tools.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ToolCall {
    /// The provider's id for the call; the `tool` turn that answers it names it.
    pub id: String,
    /// The function's name.
    pub name: String,
    /// The arguments as the model wrote them: a JSON text (normally an object).
    pub arguments: String,
}

/// A function the model may call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolSpec {
    /// The function's name.
    pub name: String,
    /// What it does, for the model.
    pub description: Option<String>,
    /// Its parameters as a JSON Schema object.
    pub parameters: Option<Value>,
    /// OpenAI's strict schema adherence.
    pub strict: Option<bool>,
}

/// Whether and which tool the model must call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum ToolChoice {
    /// Never call a tool.
    None,
    /// The model decides.
    Auto,
    /// Call at least one tool.
    Required,
    /// Call this function.
    Function(String),
}

/// What shape the answer must have.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub enum ResponseFormat {
    /// Free text.
    #[default]
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON matching a schema: OpenAI's `json_schema` object (`name`, `schema`, `strict`), as given.
    JsonSchema(Value),
}

impl ResponseFormat {
    /// Whether the answer must be JSON (cascades check it).
    pub fn is_json(&self) -> bool {
        !matches!(self, Self::Text)
    }
}
