//! Admission to the model queue: what a request costs, how full the queue is, how fast the model drains
//! it, and the rule that refuses a request at the door instead of letting it wait past what it can use.
//!
//! The policy (chosen by measurement, see docs/architecture.md "Admission"): a request is admitted when
//! the queue has room for its texts and estimated tokens, and when the time the model needs for the work
//! already ahead of it — the queued tokens divided by the model's recent rate — is under both
//! `encoder.max_queue_ms` and what is left of the request's deadline. A request the model could not start
//! in time is refused at once, with that estimate as its retry hint, instead of joining a queue it would
//! only leave by timing out.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a request was refused at the door.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The queue holds `encoder.queue_capacity` texts or `encoder.queue_tokens` tokens already.
    QueueFull,
    /// The work ahead would take longer than `encoder.max_queue_ms`.
    QueueWait,
    /// The work ahead would take longer than what is left of the request's deadline.
    Deadline,
}

impl Refusal {
    /// The metric label of this reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::QueueFull => "queue_full",
            Self::QueueWait => "queue_wait",
            Self::Deadline => "deadline",
        }
    }

    /// Every reason, for pre-creating metric series.
    pub const ALL: [Refusal; 3] = [Self::QueueFull, Self::QueueWait, Self::Deadline];
}

/// The queue's bounds (`encoder.queue_capacity`, `encoder.queue_tokens`, `encoder.max_queue_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Most texts admitted and not yet answered.
    pub texts: usize,
    /// Most estimated tokens admitted and not yet answered.
    pub tokens: usize,
    /// Longest estimated wait a request is admitted into; `None`: bounded only by its deadline.
    pub max_wait: Option<Duration>,
}

impl QueueLimits {
    /// Bounded in texts only.
    pub fn texts(texts: usize) -> Self {
        Self {
            texts,
            tokens: usize::MAX,
            max_wait: None,
        }
    }
}

/// What one text costs the model, in estimated tokens: about four bytes of text per word piece, plus
/// [CLS] and [SEP], never more than the model keeps. Tokenising exactly would cost more than the forward
/// pass of a short text; the estimate only has to be the same unit at the door and on the model thread,
/// where the rate is measured in it.
pub fn cost(text: &str, max_tokens: usize) -> usize {
    (text.len() / 4 + 2).clamp(1, max_tokens.max(1))
}

/// Texts and estimated tokens admitted and not yet answered, and the model's recent rate.
#[derive(Debug, Default)]
pub struct Load {
    texts: AtomicUsize,
    tokens: AtomicUsize,
    /// Tokens per second (f64 bits); 0 until the first forward pass has been measured.
    rate: AtomicU64,
}

impl Load {
    /// Texts admitted and not yet answered.
    pub fn texts(&self) -> usize {
        self.texts.load(Ordering::Relaxed)
    }

    /// Estimated tokens admitted and not yet answered.
    pub fn tokens(&self) -> usize {
        self.tokens.load(Ordering::Relaxed)
    }

    /// The model's recent rate in estimated tokens per second, once measured.
    pub fn rate(&self) -> Option<f64> {
        let r = f64::from_bits(self.rate.load(Ordering::Relaxed));
        (r > 0.0).then_some(r)
    }

    /// Publishes a new rate (model thread only).
    pub(super) fn set_rate(&self, tokens_per_sec: f64) {
        if tokens_per_sec.is_finite() && tokens_per_sec > 0.0 {
            self.rate.store(tokens_per_sec.to_bits(), Ordering::Relaxed);
        }
    }

    /// How long the model needs for `tokens` of work, at its recent rate.
    pub fn time_for(&self, tokens: usize) -> Option<Duration> {
        self.rate()
            .map(|r| Duration::from_secs_f64(tokens as f64 / r))
    }

    /// Takes a place for `texts` texts of `tokens` estimated tokens, or says why not. The place is taken
    /// before it is checked (one atomic add per unit), so concurrent requests can never together exceed a
    /// bound; a refused request gives its place back when the returned error's slot drops. One job larger
    /// than a bound is admitted into an empty queue, so an oversized embeddings call is slow, not
    /// impossible.
    pub fn admit(
        self: &Arc<Self>,
        texts: usize,
        tokens: usize,
        limits: &QueueLimits,
        deadline: Option<Instant>,
    ) -> Result<Slot, Refused> {
        let before_texts = self.texts.fetch_add(texts, Ordering::AcqRel);
        let before_tokens = self.tokens.fetch_add(tokens, Ordering::AcqRel);
        let slot = Slot(Some((self.clone(), texts, tokens)));
        let estimate = self.time_for(before_tokens);
        let wait = estimate.unwrap_or_default();
        // A refusal returns before `slot` is, so the place is given back as the function returns.
        let refuse = |reason, detail| {
            Refused {
                reason,
                detail,
                // Before the first forward pass there is no rate: a short, fixed hint.
                retry_after: estimate
                    .unwrap_or(Duration::from_millis(100))
                    .max(Duration::from_millis(1)),
            }
        };
        if before_texts > 0
            && (before_texts + texts > limits.texts || before_tokens + tokens > limits.tokens)
        {
            let detail = format!(
                "the model queue is full ({before_texts} texts, ~{before_tokens} tokens waiting; \
                 encoder.queue_capacity {}, encoder.queue_tokens {})",
                limits.texts, limits.tokens
            );
            return Err(refuse(Refusal::QueueFull, detail));
        }
        if let Some(max) = limits.max_wait {
            if wait > max {
                let detail = format!(
                    "the model needs ~{} ms for the work ahead, over encoder.max_queue_ms ({} ms)",
                    wait.as_millis(),
                    max.as_millis()
                );
                return Err(refuse(Refusal::QueueWait, detail));
            }
        }
        if let Some(d) = deadline {
            let left = d.saturating_duration_since(Instant::now());
            if wait >= left {
                let detail = format!(
                    "the model needs ~{} ms for the work ahead and the request's deadline leaves {} ms",
                    wait.as_millis(),
                    left.as_millis()
                );
                return Err(refuse(Refusal::Deadline, detail));
            }
        }
        Ok(slot)
    }
}

/// A place in the queue, held until its job is answered, fails or is dropped (its caller left).
#[derive(Debug)]
pub struct Slot(Option<(Arc<Load>, usize, usize)>);

impl Slot {
    /// No place: the service's own jobs (index builds) wait instead of being admitted.
    pub fn none() -> Self {
        Self(None)
    }

    /// True for a request's place (not the service's own job).
    pub fn is_request(&self) -> bool {
        self.0.is_some()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some((load, texts, tokens)) = self.0.take() {
            load.texts.fetch_sub(texts, Ordering::AcqRel);
            load.tokens.fetch_sub(tokens, Ordering::AcqRel);
        }
    }
}

/// A refusal at the door.
#[derive(Debug, Clone)]
pub struct Refused {
    /// Which bound refused it.
    pub reason: Refusal,
    /// What a person reads: the bound and the figures.
    pub detail: String,
    /// When the work ahead should be done.
    pub retry_after: Duration,
}

/// The model's rate as decayed sums over forward passes, so the large batches that form under load weigh
/// most and a change of load shows within a few dozen passes.
#[derive(Debug, Default)]
pub(super) struct RateMeter {
    tokens: f64,
    secs: f64,
}

impl RateMeter {
    /// Weight kept by the history at each forward pass.
    const DECAY: f64 = 0.95;

    /// Records a forward pass of `tokens` estimated tokens that took `took`, and publishes the rate.
    pub fn record(&mut self, tokens: usize, took: Duration, load: &Load) {
        self.tokens = self.tokens * Self::DECAY + tokens as f64;
        self.secs = self.secs * Self::DECAY + took.as_secs_f64();
        if self.secs > 0.0 {
            load.set_rate(self.tokens / self.secs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_at(rate: f64) -> Arc<Load> {
        let l = Arc::new(Load::default());
        l.set_rate(rate);
        l
    }

    #[test]
    fn bounds_hold_and_places_come_back() {
        let load = Arc::new(Load::default());
        let limits = QueueLimits::texts(2);
        let a = load.admit(1, 10, &limits, None).unwrap();
        let _b = load.admit(1, 10, &limits, None).unwrap();
        let e = load.admit(1, 10, &limits, None).unwrap_err();
        assert_eq!(e.reason, Refusal::QueueFull);
        assert_eq!(load.texts(), 2, "a refusal gives its place back");
        drop(a);
        assert!(load.admit(1, 10, &limits, None).is_ok());
        // An oversized job enters an empty queue.
        let empty = Arc::new(Load::default());
        assert!(empty.admit(5, 50, &limits, None).is_ok());
    }

    #[test]
    fn the_wait_ahead_refuses_by_bound_and_by_deadline() {
        // 1,000 tokens/s: 100 tokens ahead is 100 ms of work.
        let load = load_at(1_000.0);
        let limits = QueueLimits {
            texts: 100,
            tokens: 10_000,
            max_wait: Some(Duration::from_millis(50)),
        };
        let _ahead = load.admit(10, 100, &QueueLimits::texts(100), None).unwrap();
        let e = load.admit(1, 10, &limits, None).unwrap_err();
        assert_eq!(e.reason, Refusal::QueueWait);
        assert!(e.retry_after >= Duration::from_millis(99), "{e:?}");
        let relaxed = QueueLimits {
            max_wait: None,
            ..limits
        };
        let soon = Some(Instant::now() + Duration::from_millis(20));
        assert_eq!(
            load.admit(1, 10, &relaxed, soon).unwrap_err().reason,
            Refusal::Deadline
        );
        let later = Some(Instant::now() + Duration::from_secs(5));
        assert!(load.admit(1, 10, &relaxed, later).is_ok());
    }

    #[test]
    fn token_bound_and_costs() {
        let load = Arc::new(Load::default());
        let limits = QueueLimits {
            texts: 100,
            tokens: 100,
            max_wait: None,
        };
        let _a = load.admit(1, 90, &limits, None).unwrap();
        assert_eq!(
            load.admit(1, 20, &limits, None).unwrap_err().reason,
            Refusal::QueueFull
        );
        assert_eq!(cost("", 256), 2);
        assert_eq!(cost(&"x".repeat(4000), 256), 256);
    }

    #[test]
    fn the_rate_follows_the_forward_passes() {
        let load = Load::default();
        let mut m = RateMeter::default();
        assert!(load.rate().is_none());
        for _ in 0..200 {
            m.record(500, Duration::from_millis(100), &load);
        }
        let r = load.rate().unwrap();
        assert!((r - 5_000.0).abs() < 1.0, "{r}");
    }
}
