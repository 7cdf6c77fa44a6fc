//! The input rules: which text of a query is routed, and what is refused.

use super::{RouteError, RouteQuery};

/// Picks the text to embed and enforces the input rules.
pub(super) fn extract_text(q: &RouteQuery, max_bytes: usize) -> Result<String, RouteError> {
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
