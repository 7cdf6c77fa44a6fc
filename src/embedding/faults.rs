//! Fault injection for the supervision tests: `SEMROUTE_FAULT_INJECTION` names marker texts that make the
//! model thread fail on purpose, so a test can drive the real server into the failures the supervisor
//! must survive. Unset (always, outside tests), nothing here does anything.
//!
//! Format: `forward-panic=<marker>` (a forward pass holding the exact text `<marker>` panics: its batch
//! fails, the thread goes on) and `thread-panic=<marker>` (the model thread itself panics: the supervisor
//! marks the service NOT_SERVING, reloads the model and serves again), separated by `;`.

/// The variable the markers are read from at model start.
pub const FAULT_INJECTION_VAR: &str = "SEMROUTE_FAULT_INJECTION";

/// Marker texts that trigger injected failures.
#[derive(Debug, Clone, Default)]
pub(super) struct Faults {
    forward_panic: Option<String>,
    thread_panic: Option<String>,
}

impl Faults {
    /// The faults `SEMROUTE_FAULT_INJECTION` asks for (none when unset).
    pub fn from_env() -> Self {
        let Ok(spec) = std::env::var(FAULT_INJECTION_VAR) else {
            return Self::default();
        };
        let f = Self::parse(&spec);
        if f.forward_panic.is_some() || f.thread_panic.is_some() {
            tracing::warn!("{FAULT_INJECTION_VAR} is set: the model fails on purpose on marker texts (a test setting)");
        }
        f
    }

    fn parse(spec: &str) -> Self {
        let mut f = Self::default();
        for part in spec.split(';') {
            match part.split_once('=') {
                Some(("forward-panic", m)) if !m.is_empty() => f.forward_panic = Some(m.into()),
                Some(("thread-panic", m)) if !m.is_empty() => f.thread_panic = Some(m.into()),
                _ => {}
            }
        }
        f
    }

    fn hit<'a>(marker: &Option<String>, mut texts: impl Iterator<Item = &'a str>) -> bool {
        marker.as_deref().is_some_and(|m| texts.any(|t| t == m))
    }

    /// Panics inside the forward pass when `texts` holds the forward-panic marker.
    pub fn in_forward<'a>(&self, texts: impl Iterator<Item = &'a str>) {
        if Self::hit(&self.forward_panic, texts) {
            panic!("injected fault: forward pass");
        }
    }

    /// Panics on the model thread, outside any forward pass, when `texts` holds the thread-panic marker.
    pub fn on_thread<'a>(&self, texts: impl Iterator<Item = &'a str>) {
        if Self::hit(&self.thread_panic, texts) {
            panic!("injected fault: model thread");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_parse_and_match_exactly() {
        let f = Faults::parse("forward-panic=boom;thread-panic=die;junk");
        let hit = |m: &Option<String>, texts: &[&str]| Faults::hit(m, texts.iter().copied());
        assert!(hit(&f.forward_panic, &["x", "boom"]));
        assert!(!hit(&f.forward_panic, &["boom!"]));
        assert!(hit(&f.thread_panic, &["die"]));
        assert!(!hit(&Faults::default().thread_panic, &["die"]));
    }
}
