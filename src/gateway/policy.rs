//! The gateway's policy step, between the decision and forwarding: the sensitive-data guard screens the
//! conversation, the rules pick up the route, the caller and what the guard found, and together they
//! decide where the call may go ([`Steer`]) or refuse it.

use crate::access::Caller;
use crate::config::{Config, GuardAction};
use crate::guard::{Guard, Screening};
use crate::metrics::Metrics;
use crate::rules::{self, Facts};
use crate::upstream::{self, CompletionRequest, Steer};

/// Why the policy refused a call. Every variant maps to PERMISSION_DENIED / 403, and no message carries a
/// matched value: only detector and rule names.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A rule with `refuse` fired.
    #[error("refused by rule `{rule}`: {message}")]
    Refused {
        /// The rule.
        rule: String,
        /// Its message.
        message: String,
    },
    /// A `block` detector found something.
    #[error(
        "refused: the prompt contains sensitive data ({detector}) that this service does not forward; \
         remove it and retry"
    )]
    Blocked {
        /// The detector.
        detector: String,
    },
    /// The prompt may go only to private targets, and there is none to send it to.
    #[error(
        "refused: the guard found {detectors}, which may go only to `private: true` models, and {what}; \
         mark a model or provider that may receive it `private: true`"
    )]
    NoPrivateTarget {
        /// The detectors that required private targets.
        detectors: String,
        /// What was not private (the model, or the route's targets).
        what: String,
    },
}

/// The policy's verdict on a call that may proceed.
#[derive(Debug, Default)]
pub struct Verdict {
    /// The route to forward on: the decision's, or a rule's pin.
    pub route: String,
    /// The rule that fired.
    pub rule: Option<String>,
    /// Where the call may go and what non-private targets receive.
    pub steer: Steer,
    /// What the guard found (names and counts).
    pub screening: Screening,
}

/// Screens `request`, applies the first matching rule, and restricts the targets to private ones when
/// the guard asks for it.
pub fn apply(
    config: &Config,
    guard: &Guard,
    route: &str,
    model: Option<&str>,
    request: &CompletionRequest,
    caller: Option<&Caller>,
    metrics: &Metrics,
) -> Result<Verdict, PolicyError> {
    let screening = guard.scan(&request.messages);
    for h in &screening.hits {
        metrics.guard_finding(&h.detector, h.action, h.count);
    }
    if let Some(d) = screening.blocked_by() {
        metrics.policy_refused("blocked");
        return Err(PolicyError::Blocked {
            detector: d.to_string(),
        });
    }
    let mut verdict = Verdict {
        route: route.to_string(),
        ..Default::default()
    };
    if !config.rules.is_empty() {
        let facts = Facts {
            metadata: &request.metadata,
            key: caller.map(|c| &c.key.entry),
            route,
            screening: &screening,
            tokens: upstream::estimate_tokens(request),
        };
        if let Some(rule) = rules::first_match(&config.rules, &facts) {
            verdict.rule = Some(rule.name.clone());
            metrics.rule_fired(&rule.name);
            if let Some(message) = &rule.refuse {
                metrics.policy_refused("rule");
                return Err(PolicyError::Refused {
                    rule: rule.name.clone(),
                    message: message.clone(),
                });
            }
            if let Some(r) = &rule.route {
                verdict.route = r.clone();
            }
            verdict.steer.targets = rule.targets.clone();
            verdict.steer.strategy = rule.strategy;
        }
    }
    let route_cfg = config.routes.iter().find(|r| r.name == verdict.route);
    let mut private_for: Vec<&str> = screening.private_detectors();
    if private_for.is_empty()
        && screening.sensitive()
        && route_cfg.is_some_and(|r| r.private_on_sensitive)
    {
        private_for = screening.hits.iter().map(|h| h.detector.as_str()).collect();
    }
    if !private_for.is_empty() {
        let detectors = private_for.join(", ");
        match model {
            Some(m) => {
                if !upstream::is_private(config, m) {
                    metrics.policy_refused("no_private_target");
                    return Err(PolicyError::NoPrivateTarget {
                        detectors,
                        what: format!("the model `{m}` is not private"),
                    });
                }
            }
            None => {
                let listed: Vec<String> = match (&verdict.steer.targets, route_cfg) {
                    (Some(ts), _) => ts.clone(),
                    (None, Some(r)) => r.targets.iter().map(|t| t.model.clone()).collect(),
                    (None, None) => Vec::new(),
                };
                let private: Vec<String> = listed
                    .into_iter()
                    .filter(|m| upstream::is_private(config, m))
                    .collect();
                if private.is_empty() {
                    metrics.policy_refused("no_private_target");
                    return Err(PolicyError::NoPrivateTarget {
                        detectors,
                        what: format!("the route `{}` has no private target", verdict.route),
                    });
                }
                verdict.steer.targets = Some(private);
            }
        }
    }
    // Redaction matters only for targets that are not private; they are the ones that get this copy.
    if screening
        .hits
        .iter()
        .any(|h| h.action == GuardAction::Redact)
    {
        verdict.steer.redacted = screening.redacted.clone();
    }
    verdict.screening = Screening {
        hits: screening.hits,
        redacted: None,
    };
    Ok(verdict)
}
