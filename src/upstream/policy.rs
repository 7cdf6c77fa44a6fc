//! Small decisions of the forwarding loop: how long to back off, how to read `Retry-After`, and whether a
//! cascade answer is good enough.

use std::time::Duration;

use crate::config::{CascadeConfig, UpstreamConfig};

use super::wire::Answer;

/// The wait before retry number `retry` (0-based): exponential, capped, with equal jitter (half fixed, half
/// random) so that clients that failed together do not retry together.
pub fn backoff(u: &UpstreamConfig, retry: u32) -> Duration {
    let exp = u
        .backoff_ms
        .saturating_mul(1u64 << retry.min(20))
        .min(u.max_backoff_ms);
    let half = exp / 2;
    Duration::from_millis(half + fastrand::u64(0..=exp - half))
}

/// A `Retry-After` header in delay-seconds (HTTP dates are not used by LLM providers and are ignored).
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let secs: f64 = v.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

/// Why a cascade answer fails its checks, or `None` when it passes.
pub fn cascade_check(c: &CascadeConfig, json_requested: bool, a: &Answer) -> Option<String> {
    if c.on_empty && a.content.trim().is_empty() && a.tool_calls.is_empty() {
        return Some("empty answer".into());
    }
    if c.on_length && a.finish_reason == "length" {
        return Some("answer cut off (finish_reason length)".into());
    }
    let lower = a.content.to_lowercase();
    if let Some(p) = c
        .refusal_patterns
        .iter()
        .find(|p| lower.contains(&p.to_lowercase()))
    {
        return Some(format!("refusal (matched `{p}`)"));
    }
    if c.on_invalid_json
        && json_requested
        && serde_json::from_str::<serde_json::Value>(&a.content).is_err()
    {
        return Some("JSON was asked for and the answer is not valid JSON".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(content: &str, finish: &str) -> Answer {
        Answer {
            content: content.into(),
            finish_reason: finish.into(),
            ..Answer::default()
        }
    }

    #[test]
    fn backoff_grows_within_bounds() {
        let u = UpstreamConfig {
            backoff_ms: 100,
            max_backoff_ms: 1000,
            ..Default::default()
        };
        for _ in 0..100 {
            let b0 = backoff(&u, 0).as_millis();
            assert!((50..=100).contains(&b0), "{b0}");
            let b2 = backoff(&u, 2).as_millis();
            assert!((200..=400).contains(&b2), "{b2}");
            let b9 = backoff(&u, 9).as_millis();
            assert!((500..=1000).contains(&b9), "{b9}");
        }
    }

    #[test]
    fn retry_after_and_cascade_checks() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(" 0.5"), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        let c = CascadeConfig {
            refusal_patterns: vec!["I can't help".into()],
            ..Default::default()
        };
        assert!(cascade_check(&c, false, &answer("  ", "stop")).is_some());
        assert!(cascade_check(&c, false, &answer("abc", "length")).is_some());
        assert!(
            cascade_check(&c, false, &answer("Sorry, i CAN'T HELP with that", "stop")).is_some()
        );
        assert!(cascade_check(&c, true, &answer("{\"a\":", "stop")).is_some());
        assert!(cascade_check(&c, true, &answer("{\"a\":1}", "stop")).is_none());
        assert!(cascade_check(&c, false, &answer("fine", "stop")).is_none());
    }
}
