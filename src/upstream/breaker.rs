//! A circuit breaker per target: it opens after N consecutive failures, lets one probe through after a
//! cool-down (half-open), and closes when that probe succeeds.

use std::time::{Duration, Instant};

/// The state of a target's circuit, as reported in attempts and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Requests flow.
    Closed,
    /// Requests are refused until the cool-down ends.
    Open,
    /// One probe request is in flight or allowed; its outcome decides.
    HalfOpen,
}

impl BreakerState {
    /// Lower-case name, for logs and attempts.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug)]
enum Inner {
    Closed,
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// The breaker's state machine. Not synchronised: the owner wraps it in a mutex.
#[derive(Debug)]
pub struct Breaker {
    inner: Inner,
    consecutive_failures: u32,
}

/// Whether a request may go to the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The circuit is closed.
    Allowed,
    /// The circuit is half-open and this request is its one probe.
    Probe,
    /// The circuit is open (or half-open with its probe in flight).
    Refused,
}

impl Default for Breaker {
    fn default() -> Self {
        Self {
            inner: Inner::Closed,
            consecutive_failures: 0,
        }
    }
}

impl Breaker {
    /// The state as of `now` (an open circuit whose cool-down ended reads as half-open).
    pub fn state(&self, now: Instant) -> BreakerState {
        match self.inner {
            Inner::Closed => BreakerState::Closed,
            Inner::Open { until } if now >= until => BreakerState::HalfOpen,
            Inner::Open { .. } => BreakerState::Open,
            Inner::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Asks to send one request at `now`.
    pub fn admit(&mut self, now: Instant) -> Admission {
        match self.inner {
            Inner::Closed => Admission::Allowed,
            Inner::Open { until } if now >= until => {
                self.inner = Inner::HalfOpen { probing: true };
                Admission::Probe
            }
            Inner::Open { .. } | Inner::HalfOpen { probing: true } => Admission::Refused,
            Inner::HalfOpen { probing: false } => {
                self.inner = Inner::HalfOpen { probing: true };
                Admission::Probe
            }
        }
    }

    /// A request succeeded: the circuit closes. Returns the state before.
    pub fn on_success(&mut self, now: Instant) -> BreakerState {
        let before = self.state(now);
        self.inner = Inner::Closed;
        self.consecutive_failures = 0;
        before
    }

    /// A request failed in a way that says the target is unhealthy. A failed probe reopens the circuit;
    /// `threshold` consecutive failures open a closed one. Returns the state after.
    pub fn on_failure(
        &mut self,
        now: Instant,
        threshold: u32,
        cool_down: Duration,
    ) -> BreakerState {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let open = match self.inner {
            Inner::HalfOpen { .. } => true,
            Inner::Closed => self.consecutive_failures >= threshold,
            // A request admitted before the circuit opened failed late: keep the current cool-down.
            Inner::Open { .. } => false,
        };
        if open {
            self.inner = Inner::Open {
                until: now + cool_down,
            };
        }
        self.state(now)
    }

    /// Another replica found the target down (cluster mode): open until `until`, as if the failures had
    /// happened here. A probe in flight is left to decide, and a longer cool-down is kept.
    pub fn open_until(&mut self, until: Instant) {
        match self.inner {
            Inner::HalfOpen { probing: true } => {}
            Inner::Open { until: u } if u >= until => {}
            _ => self.inner = Inner::Open { until },
        }
    }

    /// Another replica's probe succeeded (cluster mode): an open or half-open circuit closes, unless a
    /// probe of our own is in flight (its outcome decides).
    pub fn close_shared(&mut self) {
        if !matches!(self.inner, Inner::HalfOpen { probing: true }) {
            self.inner = Inner::Closed;
            self.consecutive_failures = 0;
        }
    }

    /// A probe ended without telling anything about the target's health (the caller cancelled, the
    /// request was refused as invalid): let the next request probe instead.
    pub fn release_probe(&mut self) {
        if let Inner::HalfOpen { probing: true } = self.inner {
            self.inner = Inner::HalfOpen { probing: false };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_half_opens_and_closes() {
        let t0 = Instant::now();
        let cool = Duration::from_millis(100);
        let mut b = Breaker::default();
        assert_eq!(b.on_failure(t0, 3, cool), BreakerState::Closed);
        assert_eq!(b.on_failure(t0, 3, cool), BreakerState::Closed);
        assert_eq!(b.on_failure(t0, 3, cool), BreakerState::Open);
        assert_eq!(b.admit(t0), Admission::Refused);
        let later = t0 + cool;
        assert_eq!(b.state(later), BreakerState::HalfOpen);
        assert_eq!(b.admit(later), Admission::Probe);
        // Only one probe at a time.
        assert_eq!(b.admit(later), Admission::Refused);
        // A failed probe reopens at once.
        assert_eq!(b.on_failure(later, 3, cool), BreakerState::Open);
        let again = later + cool;
        assert_eq!(b.admit(again), Admission::Probe);
        assert_eq!(b.on_success(again), BreakerState::HalfOpen);
        assert_eq!(b.state(again), BreakerState::Closed);
        assert_eq!(b.admit(again), Admission::Allowed);
    }

    #[test]
    fn success_resets_the_count_and_released_probes_are_reissued() {
        let t0 = Instant::now();
        let cool = Duration::from_millis(10);
        let mut b = Breaker::default();
        b.on_failure(t0, 2, cool);
        b.on_success(t0);
        assert_eq!(b.on_failure(t0, 2, cool), BreakerState::Closed);
        assert_eq!(b.on_failure(t0, 2, cool), BreakerState::Open);
        let later = t0 + cool;
        assert_eq!(b.admit(later), Admission::Probe);
        b.release_probe();
        assert_eq!(b.admit(later), Admission::Probe);
    }

    #[test]
    fn shared_verdicts_open_and_close_without_overriding_a_probe() {
        let t0 = Instant::now();
        let mut b = Breaker::default();
        b.open_until(t0 + Duration::from_secs(30));
        assert_eq!(b.admit(t0), Admission::Refused);
        // A shorter remote cool-down does not shorten ours.
        b.open_until(t0 + Duration::from_secs(1));
        assert_eq!(b.state(t0 + Duration::from_secs(2)), BreakerState::Open);
        b.close_shared();
        assert_eq!(b.admit(t0), Admission::Allowed);
        // Our own probe in flight decides, whatever others say.
        b.open_until(t0 + Duration::from_millis(1));
        let later = t0 + Duration::from_secs(1);
        assert_eq!(b.admit(later), Admission::Probe);
        b.open_until(later + Duration::from_secs(30));
        b.close_shared();
        assert_eq!(b.state(later), BreakerState::HalfOpen);
    }
}
