//! Per-target health shared by all requests: the circuit breaker and the learned latency (EWMA of time to
//! first token and of tokens per second).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::breaker::{Admission, Breaker, BreakerState};

/// Weight of a new sample in the moving averages: recent traffic dominates after about ten requests.
const EWMA_ALPHA: f64 = 0.2;

/// Output tokens assumed when comparing targets by speed: a short answer, where both the time to the
/// first token and the generation rate matter.
const REFERENCE_OUTPUT_TOKENS: f64 = 100.0;

/// An exponentially weighted moving average; empty until its first sample.
#[derive(Debug, Default, Clone, Copy)]
pub struct Ewma(Option<f64>);

impl Ewma {
    /// Adds a sample.
    pub fn add(&mut self, x: f64) {
        if !x.is_finite() {
            return;
        }
        self.0 = Some(match self.0 {
            None => x,
            Some(m) => m + EWMA_ALPHA * (x - m),
        });
    }

    /// The average, if any sample was seen.
    pub fn get(&self) -> Option<f64> {
        self.0
    }

    /// An average that starts at `x` (a value learned elsewhere).
    pub fn of(x: Option<f64>) -> Self {
        Self(x.filter(|v| v.is_finite()))
    }
}

/// The latency learned for one target.
#[derive(Debug, Default, Clone, Copy)]
pub struct Latency {
    /// Milliseconds to the first token.
    pub ttft_ms: Ewma,
    /// Output tokens per second after the first token.
    pub tokens_per_s: Ewma,
}

impl Latency {
    /// Expected milliseconds for a reference answer; `None` until the target has served a request, so
    /// that the `fastest` strategy tries unmeasured targets first.
    pub fn expected_ms(&self) -> Option<f64> {
        let ttft = self.ttft_ms.get()?;
        let gen = match self.tokens_per_s.get() {
            Some(tps) if tps > 0.0 => REFERENCE_OUTPUT_TOKENS / tps * 1000.0,
            _ => 0.0,
        };
        Some(ttft + gen)
    }
}

/// One target's health.
#[derive(Debug, Default)]
pub struct TargetHealth {
    breaker: Mutex<Breaker>,
    latency: Mutex<Latency>,
    /// Cluster mode: the other replicas' estimates (their mean), used while this replica has none.
    shared: Mutex<Option<Latency>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded data is plain numbers that a panic cannot leave inconsistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl TargetHealth {
    /// The breaker state now.
    pub fn state(&self) -> BreakerState {
        lock(&self.breaker).state(Instant::now())
    }

    /// Asks to send one request.
    pub fn admit(&self) -> Admission {
        lock(&self.breaker).admit(Instant::now())
    }

    /// Records a success; returns the breaker state before it.
    pub fn success(&self) -> BreakerState {
        lock(&self.breaker).on_success(Instant::now())
    }

    /// Records a failure; returns the breaker state after it.
    pub fn failure(&self, threshold: u32, cool_down: Duration) -> BreakerState {
        lock(&self.breaker).on_failure(Instant::now(), threshold, cool_down)
    }

    /// Another replica opened this target's circuit for `cool_down` (cluster mode).
    pub fn open_shared(&self, cool_down: Duration) {
        lock(&self.breaker).open_until(Instant::now() + cool_down)
    }

    /// Another replica's probe of this target succeeded (cluster mode).
    pub fn close_shared(&self) {
        lock(&self.breaker).close_shared()
    }

    /// Frees a half-open probe slot without a verdict.
    pub fn release_probe(&self) {
        lock(&self.breaker).release_probe()
    }

    /// Learns from one served request.
    pub fn observe(&self, ttft: Duration, total: Duration, output_tokens: u64) {
        let mut l = lock(&self.latency);
        l.ttft_ms.add(ttft.as_secs_f64() * 1000.0);
        let gen = total.saturating_sub(ttft).as_secs_f64();
        // A non-streamed answer arrives whole (ttft == total): it says nothing about the rate.
        if output_tokens > 0 && gen > 0.001 {
            l.tokens_per_s.add(output_tokens as f64 / gen);
        }
    }

    /// The learned latency: this replica's own once it has served a request through the target, until
    /// then the other replicas' (cluster mode), so a new replica does not have to fail or wait on a slow
    /// target to learn what its peers know.
    pub fn latency(&self) -> Latency {
        let own = *lock(&self.latency);
        if own.ttft_ms.get().is_some() {
            return own;
        }
        lock(&self.shared).unwrap_or(own)
    }

    /// This replica's own estimate only (what it shares with the others).
    pub fn own_latency(&self) -> Latency {
        *lock(&self.latency)
    }

    /// Sets the other replicas' estimate (`None`: they have none).
    pub fn set_shared_latency(&self, shared: Option<Latency>) {
        *lock(&self.shared) = shared;
    }
}

/// Health of every target seen, by model name. Survives config rebuilds, so a model keeps its history.
#[derive(Debug, Default)]
pub struct HealthBook {
    targets: Mutex<HashMap<String, Arc<TargetHealth>>>,
}

impl HealthBook {
    /// The health of model `name`, created on first use.
    pub fn get(&self, name: &str) -> Arc<TargetHealth> {
        let mut m = lock(&self.targets);
        if let Some(h) = m.get(name) {
            return h.clone();
        }
        let h = Arc::new(TargetHealth::default());
        m.insert(name.to_string(), h.clone());
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ewma_follows_recent_samples() {
        let mut e = Ewma::default();
        assert_eq!(e.get(), None);
        e.add(100.0);
        assert_eq!(e.get(), Some(100.0));
        e.add(200.0);
        assert!((e.get().unwrap() - 120.0).abs() < 1e-9);
        e.add(f64::NAN);
        assert!((e.get().unwrap() - 120.0).abs() < 1e-9);
    }

    #[test]
    fn own_latency_wins_over_the_shared_one() {
        let h = TargetHealth::default();
        let peers = Latency {
            ttft_ms: Ewma::of(Some(400.0)),
            tokens_per_s: Ewma::of(None),
        };
        h.set_shared_latency(Some(peers));
        assert_eq!(h.latency().expected_ms(), Some(400.0));
        h.observe(Duration::from_millis(20), Duration::from_millis(20), 0);
        assert_eq!(h.latency().expected_ms(), Some(20.0));
        assert_eq!(h.own_latency().expected_ms(), Some(20.0));
    }

    #[test]
    fn expected_latency_combines_ttft_and_rate() {
        let h = TargetHealth::default();
        assert!(h.latency().expected_ms().is_none());
        // 50 ms to the first token, then 100 tokens in 1 s.
        h.observe(Duration::from_millis(50), Duration::from_millis(1050), 100);
        let ms = h.latency().expected_ms().unwrap();
        assert!((ms - 1050.0).abs() < 1.0, "{ms}");
    }
}
