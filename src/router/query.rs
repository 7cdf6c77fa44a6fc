//! The input rules: which text of a query is routed, and what is refused.

use super::{RouteError, RouteQuery};

/// What a query routes on: its prompt and, for a conversation, the user turns before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Prompt {
    /// The prompt (a conversation's last user turn).
    pub text: String,
    /// Earlier user turns, newest first, at most `context_turns - 1`; blank ones left out, each cut to the
    /// byte limit (the encoder reads only its first `max_tokens` anyway).
    pub context: Vec<String>,
}

/// Picks the texts to embed and enforces the input rules: the prompt and up to `context_turns - 1` user
/// turns before it.
pub(super) fn extract_prompt(
    q: &RouteQuery,
    max_bytes: usize,
    context_turns: usize,
) -> Result<Prompt, RouteError> {
    let text = extract_text(q, max_bytes)?;
    let context = q
        .messages
        .iter()
        .rev()
        .filter(|m| m.role.eq_ignore_ascii_case("user"))
        .skip(1)
        .filter(|m| !m.content.trim().is_empty())
        .take(context_turns.saturating_sub(1))
        .map(|m| cut_to(&m.content, max_bytes).to_string())
        .collect();
    Ok(Prompt { text, context })
}

/// `s` cut to at most `max` bytes, at a character boundary.
fn cut_to(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Picks the text to embed and enforces the input rules.
fn extract_text(q: &RouteQuery, max_bytes: usize) -> Result<String, RouteError> {
    let has_text = !q.text.is_empty();
    let text = match (has_text, q.messages.is_empty()) {
        (true, false) => {
            return Err(RouteError::InvalidInput(
                "set either `text` or `messages`, not both".into(),
            ))
        }
        (true, true) => q.text.as_str(),
        (false, false) => q
            .messages
            .iter()
            .rev()
            .find(|m| m.role.eq_ignore_ascii_case("user"))
            .map(|m| m.content.as_str())
            .ok_or_else(|| {
                RouteError::InvalidInput("`messages` has no message with role \"user\"".into())
            })?,
        (false, true) => {
            return Err(RouteError::InvalidInput(
                "`text` is empty (set `text` or `messages`)".into(),
            ))
        }
    };
    if text.len() > max_bytes {
        return Err(RouteError::InvalidInput(format!(
            "prompt is {} bytes; the limit is {max_bytes} bytes (limits.max_input_bytes)",
            text.len()
        )));
    }
    if text.trim().is_empty() {
        return Err(RouteError::InvalidInput(
            "prompt is blank (only whitespace)".into(),
        ));
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::ChatMessage;

    fn msg(role: &str, content: &str) -> ChatMessage {
        ChatMessage::text(role, content)
    }

    #[test]
    fn picks_last_user_message() {
        let q = RouteQuery {
            messages: vec![
                msg("user", "first"),
                msg("assistant", "x"),
                msg("user", "last"),
                msg("assistant", "y"),
            ],
            ..Default::default()
        };
        assert_eq!(extract_text(&q, 100).unwrap(), "last");
    }

    #[test]
    fn context_is_the_user_turns_before_the_last_newest_first() {
        let q = RouteQuery {
            messages: vec![
                msg("system", "be brief"),
                msg("user", "one"),
                msg("assistant", "x"),
                msg("user", "  "),
                msg("user", "two"),
                msg("assistant", "y"),
                msg("user", "thrée"),
                msg("user", "last"),
            ],
            ..Default::default()
        };
        let p = extract_prompt(&q, 100, 3).unwrap();
        assert_eq!(p.text, "last");
        assert_eq!(p.context, ["thrée", "two"]);
        assert!(extract_prompt(&q, 100, 1).unwrap().context.is_empty());
        assert_eq!(
            extract_prompt(&q, 100, 16).unwrap().context,
            ["thrée", "two", "one"]
        );
        // A long earlier turn is cut at a character boundary, not refused.
        assert_eq!(extract_prompt(&q, 4, 2).unwrap().context, ["thr"]);
        let text = RouteQuery {
            text: "plain".into(),
            ..Default::default()
        };
        assert!(extract_prompt(&text, 100, 3).unwrap().context.is_empty());
    }

    #[test]
    fn input_rules() {
        let blank = RouteQuery {
            text: "  \n\t ".into(),
            ..Default::default()
        };
        assert!(extract_text(&blank, 100)
            .unwrap_err()
            .to_string()
            .contains("blank"));
        let long = RouteQuery {
            text: "x".repeat(101),
            ..Default::default()
        };
        assert!(extract_text(&long, 100)
            .unwrap_err()
            .to_string()
            .contains("limit is 100 bytes"));
        let no_user = RouteQuery {
            messages: vec![msg("system", "be nice")],
            ..Default::default()
        };
        assert!(extract_text(&no_user, 100).is_err());
        let both = RouteQuery {
            text: "a".into(),
            messages: vec![msg("user", "b")],
            ..Default::default()
        };
        assert!(extract_text(&both, 100).is_err());
        assert!(extract_text(&RouteQuery::default(), 100).is_err());
    }
}
