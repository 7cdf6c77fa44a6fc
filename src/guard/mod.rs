//! The sensitive-data guard: detectors run over every message's text (content, text parts and tool-call
//! arguments) and each finding gets its detector's action — counted, redacted with a typed placeholder
//! before the prompt leaves for a target that is not private, kept to private targets, or refused.
//!
//! What the guard reports about a prompt ([`Screening`]) holds detector names and counts only: no matched
//! value is ever kept outside the redacted copy of the request, so none can reach a log, a trace, a metric
//! label or an error text.

pub mod detectors;

use std::collections::{BTreeMap, HashMap};

use regex::Regex;

use crate::config::{GuardAction, GuardConfig};
use crate::message::{ChatMessage, ContentPart};
pub use detectors::Builtin;

/// The largest compiled program a custom pattern may take: patterns are operator input, and the regex
/// crate's matching is linear in the text, so the size of the program is what bounds the work.
const CUSTOM_SIZE_LIMIT: usize = 1 << 20;

/// Compiles a custom detector's pattern, or says why it cannot be used.
pub fn compile_custom(pattern: &str) -> Result<Regex, String> {
    if pattern.is_empty() {
        return Err("must not be empty".into());
    }
    let re = regex::RegexBuilder::new(pattern)
        .size_limit(CUSTOM_SIZE_LIMIT)
        .build()
        .map_err(|e| format!("does not compile: {e}"))?;
    if re.is_match("") {
        return Err("matches the empty string, so it would flag every prompt".into());
    }
    Ok(re)
}

/// Errors building a guard from its configuration (validation catches these first).
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// A detector's name is not a built-in one.
    #[error("guard.detectors: unknown detector `{0}`")]
    UnknownDetector(String),
    /// A custom pattern does not compile.
    #[error("guard.custom `{name}`: {reason}")]
    BadPattern {
        /// The detector.
        name: String,
        /// Why.
        reason: String,
    },
}

enum Kind {
    Builtin(Builtin),
    Custom(Regex),
}

struct Detector {
    name: String,
    placeholder: String,
    kind: Kind,
    action: GuardAction,
}

/// The detectors that are on, compiled once per configuration.
#[derive(Default)]
pub struct Guard {
    detectors: Vec<Detector>,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.detectors.iter().map(|d| d.name.as_str()).collect();
        f.debug_struct("Guard").field("detectors", &names).finish()
    }
}

/// One detector that found something in a prompt: its name, action and how many matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// The detector's name.
    pub detector: String,
    /// Its action.
    pub action: GuardAction,
    /// Matches found.
    pub count: usize,
}

/// What the guard found in one request, and the request as non-private targets may see it.
#[derive(Debug, Clone, Default)]
pub struct Screening {
    /// Detectors that found something, in the guard's order (names and counts only).
    pub hits: Vec<Hit>,
    /// The messages with every `redact` finding replaced by its placeholder, when there was one.
    pub redacted: Option<Vec<ChatMessage>>,
}

impl Screening {
    /// True when any detector found anything.
    pub fn sensitive(&self) -> bool {
        !self.hits.is_empty()
    }

    /// The first detector whose action is `block`, if one found something.
    pub fn blocked_by(&self) -> Option<&str> {
        self.hits
            .iter()
            .find(|h| h.action == GuardAction::Block)
            .map(|h| h.detector.as_str())
    }

    /// Detectors whose action is `private` that found something.
    pub fn private_detectors(&self) -> Vec<&str> {
        self.hits
            .iter()
            .filter(|h| h.action == GuardAction::Private)
            .map(|h| h.detector.as_str())
            .collect()
    }

    /// True when `name` found something.
    pub fn found(&self, name: &str) -> bool {
        self.hits.iter().any(|h| h.detector == name)
    }

    /// The detectors that found something, comma-separated (for headers and span attributes).
    pub fn names(&self) -> String {
        self.hits
            .iter()
            .map(|h| h.detector.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Guard {
    /// The guard `config` describes (detectors that are off are left out).
    pub fn new(config: &GuardConfig) -> Result<Self, GuardError> {
        let mut detectors = Vec::new();
        let mut builtins: Vec<(Builtin, GuardAction)> = Vec::new();
        for (name, &action) in &config.detectors {
            let b = Builtin::from_name(name)
                .ok_or_else(|| GuardError::UnknownDetector(name.to_string()))?;
            if action != GuardAction::Off {
                builtins.push((b, action));
            }
        }
        // Overlaps are resolved by order: the built-ins in their precedence, then custom detectors.
        builtins.sort_by_key(|(b, _)| Builtin::ALL.iter().position(|x| x == b));
        for (b, action) in builtins {
            detectors.push(Detector {
                name: b.name().to_string(),
                placeholder: b.name().to_ascii_uppercase(),
                kind: Kind::Builtin(b),
                action,
            });
        }
        for c in &config.custom {
            if c.action == GuardAction::Off {
                continue;
            }
            let re = compile_custom(&c.pattern).map_err(|reason| GuardError::BadPattern {
                name: c.name.clone(),
                reason,
            })?;
            detectors.push(Detector {
                name: c.name.clone(),
                placeholder: c.name.to_ascii_uppercase(),
                kind: Kind::Custom(re),
                action: c.action,
            });
        }
        Ok(Self { detectors })
    }

    /// True when no detector is on (scanning is skipped).
    pub fn is_off(&self) -> bool {
        self.detectors.is_empty()
    }

    /// The findings in `text`: non-overlapping `(start, end, detector index)`, in text order.
    pub fn findings(&self, text: &str) -> Vec<(usize, usize, usize)> {
        let mut kept: Vec<(usize, usize, usize)> = Vec::new();
        let mut spans = Vec::new();
        for (i, d) in self.detectors.iter().enumerate() {
            spans.clear();
            match &d.kind {
                Kind::Builtin(b) => b.find(text, &mut spans),
                Kind::Custom(re) => spans.extend(re.find_iter(text).map(|m| (m.start(), m.end()))),
            }
            for &(s, e) in &spans {
                // An earlier detector's finding takes the text (a card number is not also a phone).
                if s < e && !kept.iter().any(|&(ks, ke, _)| s < ke && ks < e) {
                    kept.push((s, e, i));
                }
            }
        }
        kept.sort_unstable();
        kept
    }

    /// Scans every message. The redacted copy is made only when a `redact` detector found something.
    pub fn scan(&self, messages: &[ChatMessage]) -> Screening {
        if self.is_off() {
            return Screening::default();
        }
        // Findings per message: its content's, then each tool call's arguments' (kept for redaction, so
        // the text is scanned once). `content` already holds the text parts, joined: they are not counted
        // twice.
        let found: Vec<(Spans, Vec<Spans>)> = messages
            .iter()
            .map(|m| {
                let args = m.tool_calls.iter().map(|c| self.findings(&c.arguments));
                (self.findings(&m.content), args.collect())
            })
            .collect();
        let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
        for (content, args) in &found {
            for &(_, _, i) in content.iter().chain(args.iter().flatten()) {
                *counts.entry(i).or_default() += 1;
            }
        }
        let redact = counts
            .keys()
            .any(|&i| self.detectors[i].action == GuardAction::Redact);
        let hits = counts
            .into_iter()
            .map(|(i, count)| Hit {
                detector: self.detectors[i].name.clone(),
                action: self.detectors[i].action,
                count,
            })
            .collect();
        let redacted = redact.then(|| self.redact(messages, &found));
        Screening { hits, redacted }
    }

    /// The messages with every `redact` finding replaced by `[NAME_n]`; one value keeps one placeholder
    /// throughout the conversation, so the model can still tell two addresses apart and refer to them.
    fn redact(&self, messages: &[ChatMessage], found: &[(Spans, Vec<Spans>)]) -> Vec<ChatMessage> {
        let mut names: HashMap<(usize, String), String> = HashMap::new();
        let mut next: HashMap<usize, usize> = HashMap::new();
        let mut one = |text: &str, spans: &Spans| -> String {
            let mut out = String::with_capacity(text.len());
            let mut at = 0;
            for &(s, e, i) in spans {
                let d = &self.detectors[i];
                if d.action != GuardAction::Redact {
                    continue;
                }
                out.push_str(&text[at..s]);
                let key = (i, text[s..e].to_string());
                let p = names.entry(key).or_insert_with(|| {
                    let n = next.entry(i).or_insert(0);
                    *n += 1;
                    format!("[{}_{}]", d.placeholder, n)
                });
                out.push_str(p);
                at = e;
            }
            out.push_str(&text[at..]);
            out
        };
        messages
            .iter()
            .zip(found)
            .map(|(m, (content, args))| {
                let mut m = m.clone();
                m.content = one(&m.content, content);
                // Text parts are what providers receive when a turn has parts (images beside text).
                for p in &mut m.parts {
                    if let ContentPart::Text(t) = p {
                        let spans = self.findings(t);
                        *t = one(t, &spans);
                    }
                }
                for (c, spans) in m.tool_calls.iter_mut().zip(args) {
                    c.arguments = one(&c.arguments, spans);
                }
                m
            })
            .collect()
    }
}

/// Findings in one text: `(start, end, detector index)`, in text order.
type Spans = Vec<(usize, usize, usize)>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CustomDetectorConfig;

    fn guard(pairs: &[(&str, GuardAction)]) -> Guard {
        let config = GuardConfig {
            detectors: pairs.iter().map(|(n, a)| (n.to_string(), *a)).collect(),
            custom: vec![CustomDetectorConfig {
                name: "employee_id".into(),
                pattern: r"\bEMP-[0-9]{6}\b".into(),
                action: GuardAction::Redact,
            }],
        };
        Guard::new(&config).unwrap()
    }

    #[test]
    fn redacts_with_stable_typed_placeholders() {
        let g = guard(&[
            ("email", GuardAction::Redact),
            ("card", GuardAction::Private),
        ]);
        let msgs = vec![
            ChatMessage::text(
                "user",
                "Mail a@x.io and b@y.io, then a@x.io again. EMP-123456.",
            ),
            ChatMessage::text("user", "Card 4111 1111 1111 1111; cc a@x.io"),
        ];
        let s = g.scan(&msgs);
        let names: Vec<_> = s
            .hits
            .iter()
            .map(|h| (h.detector.as_str(), h.count))
            .collect();
        assert_eq!(names, [("card", 1), ("email", 4), ("employee_id", 1)]);
        let r = s.redacted.clone().unwrap();
        assert_eq!(
            r[0].content,
            "Mail [EMAIL_1] and [EMAIL_2], then [EMAIL_1] again. [EMPLOYEE_ID_1]."
        );
        // `private` findings are not redacted: they decide where the prompt may go instead.
        assert_eq!(r[1].content, "Card 4111 1111 1111 1111; cc [EMAIL_1]");
        assert_eq!(s.private_detectors(), ["card"]);
        assert!(s.blocked_by().is_none());
    }

    #[test]
    fn off_detectors_do_not_scan_and_block_is_reported() {
        let g = guard(&[("email", GuardAction::Off), ("secret", GuardAction::Block)]);
        let s = g.scan(&[ChatMessage::text("user", "a@x.io key AKIAIOSFODNN7EXAMPLE")]);
        assert_eq!(s.blocked_by(), Some("secret"));
        assert!(!s.found("email"));
        assert!(s.redacted.is_none());
    }

    #[test]
    fn custom_patterns_are_checked() {
        assert!(compile_custom("(").is_err());
        assert!(compile_custom("a*").is_err());
        assert!(compile_custom(r"\bX[0-9]+").is_ok());
    }
}
