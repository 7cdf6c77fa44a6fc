//! Per-user and per-tenant rules: an ordered list in the config, evaluated once the route is decided and
//! the guard has screened the prompt. The first rule whose `when` holds fires: it pins a route, restricts
//! and reorders the targets, overrides the strategy, or refuses the request. The rule that fired is part of
//! the decision's evidence (response field and header, metrics, span).
//!
//! First match rather than "every matching rule applies": an operator reads the list top to bottom like a
//! firewall's, and two rules can never combine into a routing nobody wrote down.

use std::collections::{BTreeMap, HashMap};

use crate::access::KeyEntry;
use crate::config::{OneOrMany, RuleConfig, RuleWhen};
use crate::guard::Screening;

/// What a rule's conditions are tested against.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// The request's metadata, as the caller sent it.
    pub metadata: &'a HashMap<String, String>,
    /// The caller's key (`None` when the service runs open or the call carried none).
    pub key: Option<&'a KeyEntry>,
    /// The decided route (`""` for none).
    pub route: &'a str,
    /// What the guard found.
    pub screening: &'a Screening,
    /// The prompt's size in tokens (estimated, as limits estimate it).
    pub tokens: u64,
}

/// The first rule of `rules` whose conditions hold for `facts`.
pub fn first_match<'c>(rules: &'c [RuleConfig], facts: &Facts<'_>) -> Option<&'c RuleConfig> {
    rules.iter().find(|r| holds(&r.when, facts))
}

fn all_in(conds: &BTreeMap<String, OneOrMany>, lookup: impl Fn(&str) -> Option<String>) -> bool {
    conds
        .iter()
        .all(|(k, want)| lookup(k).is_some_and(|v| want.contains(&v)))
}

fn holds(w: &RuleWhen, f: &Facts<'_>) -> bool {
    let metadata = all_in(&w.metadata, |k| f.metadata.get(k).cloned());
    let key = w.key.is_empty()
        || f.key
            .is_some_and(|k| all_in(&w.key, |name| k.attributes.get(name).cloned()));
    let tenant = w.tenant.as_ref().is_none_or(|t| {
        f.key
            .and_then(|k| k.tenant.as_deref())
            .is_some_and(|v| t.contains(v))
    });
    let route = w.route.as_ref().is_none_or(|r| r.contains(f.route));
    let sensitive = w.sensitive.is_none_or(|s| s == f.screening.sensitive());
    let detectors = w.detectors.is_empty() || w.detectors.iter().any(|d| f.screening.found(d));
    let size = w.min_tokens.is_none_or(|lo| f.tokens >= lo)
        && w.max_tokens.is_none_or(|hi| f.tokens <= hi);
    metadata && key && tenant && route && sensitive && detectors && size
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GuardAction;
    use crate::guard::Hit;

    fn rules(yaml: &str) -> Vec<RuleConfig> {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn first_matching_rule_fires() {
        let rs = rules(
            r#"
- name: eu-pii
  when: { key: { region: eu }, sensitive: true }
  targets: [eu-model]
- name: free
  when: { key: { tier: [free, trial] } }
  targets: [cheap]
- name: big
  when: { min_tokens: 1000 }
  refuse: too long
- name: beta
  when: { metadata: { cohort: beta }, route: code }
  route: code-beta
"#,
        );
        let mut key: KeyEntry = serde_yaml::from_str("name: k\nhash: h\nhint: x\n").unwrap();
        key.attributes.insert("tier".into(), "trial".into());
        let meta = HashMap::from([("cohort".to_string(), "beta".to_string())]);
        let clean = Screening::default();
        let mut f = Facts {
            metadata: &meta,
            key: Some(&key),
            route: "code",
            screening: &clean,
            tokens: 10,
        };
        assert_eq!(first_match(&rs, &f).unwrap().name, "free");
        f.key = None;
        assert_eq!(first_match(&rs, &f).unwrap().name, "beta");
        f.route = "chat";
        assert!(first_match(&rs, &f).is_none());
        f.tokens = 1000;
        assert_eq!(first_match(&rs, &f).unwrap().name, "big");
        let mut eu = key.clone();
        eu.attributes.insert("region".into(), "eu".into());
        let pii = Screening {
            hits: vec![Hit {
                detector: "email".into(),
                action: GuardAction::Detect,
                count: 1,
            }],
            redacted: None,
        };
        f.key = Some(&eu);
        f.screening = &pii;
        assert_eq!(first_match(&rs, &f).unwrap().name, "eu-pii");
    }
}
