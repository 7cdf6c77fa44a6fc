//! `kind: mock`: a provider that answers locally, with no network and no key. It echoes the last user turn
//! as `[mock <model id>] <text>` (or answers with the provider's fixed `reply`), word by word when
//! streamed. Usage counts whitespace-separated words; `max_tokens` cuts the answer with finish reason
//! `length`, so cascades and clients can be exercised too. It is labelled in every answer: never a model.

use super::wire::Answer;
use super::{CompletionRequest, Usage};
use crate::config::{ModelConfig, ProviderConfig};

/// The whole answer the mock gives to `req`.
pub fn answer(provider: &ProviderConfig, model: &ModelConfig, req: &CompletionRequest) -> Answer {
    let text = match &provider.reply {
        Some(r) => r.clone(),
        None => {
            let last = req
                .messages
                .iter()
                .rev()
                .find(|m| m.role == "user")
                .map_or("", |m| m.content.as_str());
            format!("[mock {}] {last}", model.id)
        }
    };
    let words: Vec<&str> = text.split_whitespace().collect();
    let limit = req.max_tokens.map_or(usize::MAX, |m| m as usize);
    let (content, finish_reason) = if words.len() > limit {
        (words[..limit].join(" "), "length")
    } else {
        (words.join(" "), "stop")
    };
    let input_tokens = req
        .messages
        .iter()
        .map(|m| m.content.split_whitespace().count() as u64)
        .sum();
    Answer {
        usage: Usage {
            input_tokens,
            output_tokens: words.len().min(limit) as u64,
        },
        content,
        tool_calls: Vec::new(),
        finish_reason: finish_reason.into(),
    }
}

/// The answer cut into the deltas a stream delivers: one word each, with the space that precedes it.
pub fn deltas(content: &str) -> Vec<String> {
    content
        .split(' ')
        .enumerate()
        .map(|(i, w)| {
            if i == 0 {
                w.to_string()
            } else {
                format!(" {w}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::ChatMessage;

    fn provider(reply: Option<&str>) -> ProviderConfig {
        let mut p: ProviderConfig = serde_yaml::from_str("name: m\nkind: mock\n").unwrap();
        p.reply = reply.map(String::from);
        p
    }

    fn model() -> ModelConfig {
        serde_yaml::from_str("name: mock-echo\nprovider: m\nid: echo\n").unwrap()
    }

    fn ask(text: &str, max_tokens: Option<u32>) -> CompletionRequest {
        CompletionRequest {
            messages: vec![
                ChatMessage::text("user", "first"),
                ChatMessage::text("user", text),
            ],
            max_tokens,
            ..Default::default()
        }
    }

    #[test]
    fn echoes_the_last_user_turn_labelled_and_counts_words() {
        let a = answer(&provider(None), &model(), &ask("hello  router world", None));
        assert_eq!(a.content, "[mock echo] hello router world");
        assert_eq!(a.finish_reason, "stop");
        assert_eq!(a.usage.input_tokens, 4);
        assert_eq!(a.usage.output_tokens, 5);
        assert_eq!(deltas(&a.content).concat(), a.content);
    }

    #[test]
    fn fixed_reply_and_max_tokens() {
        let a = answer(
            &provider(Some("one two three")),
            &model(),
            &ask("x", Some(2)),
        );
        assert_eq!(a.content, "one two");
        assert_eq!(a.finish_reason, "length");
        assert_eq!(a.usage.output_tokens, 2);
    }
}
