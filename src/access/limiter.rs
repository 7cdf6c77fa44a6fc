//! Rate limits and budgets, exact under concurrency: every check and the reservation it leads to happen
//! under one lock, for the key and its tenant together, so two requests can never both take the last
//! slot. Windows slide over the last 60 seconds (a log of admissions, not fixed minute buckets, so a burst
//! across a minute boundary cannot double the rate).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::keys::Limits;

const WINDOW: Duration = Duration::from_secs(60);

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// Requests per minute.
    Requests,
    /// Tokens per minute.
    Tokens,
    /// Requests in flight.
    Concurrency,
    /// USD per UTC day.
    DailyBudget,
    /// USD per UTC month.
    MonthlyBudget,
}

impl LimitKind {
    /// Lower-case name, for messages and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requests => "requests",
            Self::Tokens => "tokens",
            Self::Concurrency => "concurrency",
            Self::DailyBudget => "daily_budget",
            Self::MonthlyBudget => "monthly_budget",
        }
    }

    /// Whether it is a budget (its error code is `budget_exceeded`).
    pub fn is_budget(self) -> bool {
        matches!(self, Self::DailyBudget | Self::MonthlyBudget)
    }
}

/// A refusal: which limit, of whom, and when to retry.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// The limit.
    pub kind: LimitKind,
    /// `key <name>` or `tenant <name>`.
    pub holder: String,
    /// The limit's value.
    pub limit: f64,
    /// When a retry can succeed (for budgets: the next UTC day or month).
    pub retry_after: Duration,
}

/// The UTC day and month now, as numbers that change when a budget period does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    /// Days since 1970-01-01.
    pub day: i64,
    /// `year * 12 + month`.
    pub month: i64,
    /// Until the next UTC day.
    pub to_next_day: Duration,
    /// Until the next UTC month.
    pub to_next_month: Duration,
}

impl Period {
    /// Now.
    pub fn now() -> Self {
        let now = jiff::Timestamp::now();
        let z = now.to_zoned(jiff::tz::TimeZone::UTC);
        let secs = now.as_second();
        let day = secs.div_euclid(86_400);
        let next_month = z
            .first_of_month()
            .ok()
            .and_then(|m| m.start_of_day().ok())
            .and_then(|m| m.checked_add(jiff::Span::new().months(1)).ok())
            .map_or(86_400, |m| (m.timestamp().as_second() - secs).max(1));
        Self {
            day,
            month: i64::from(z.year()) * 12 + i64::from(z.month()),
            to_next_day: Duration::from_secs((86_400 - secs.rem_euclid(86_400)) as u64),
            to_next_month: Duration::from_secs(next_month as u64),
        }
    }
}

/// What one check asks for: a new request (a request-window and a concurrency slot), or tokens and money
/// for a completion.
#[derive(Debug, Clone, Copy)]
struct Ask {
    tokens: u64,
    cost: f64,
    new_request: bool,
}

impl Ask {
    const REQUEST: Ask = Ask {
        tokens: 0,
        cost: 0.0,
        new_request: true,
    };
}

#[derive(Debug, Default)]
struct Counters {
    requests: VecDeque<Instant>,
    /// (reservation id, when, tokens): settled in place when the call ends.
    tokens: VecDeque<(u64, Instant, u64)>,
    in_flight: u32,
    day: (i64, f64),
    month: (i64, f64),
}

impl Counters {
    fn expire(&mut self, now: Instant) {
        while self
            .requests
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            self.requests.pop_front();
        }
        while self
            .tokens
            .front()
            .is_some_and(|(_, t, _)| now.duration_since(*t) >= WINDOW)
        {
            self.tokens.pop_front();
        }
    }

    fn tokens_used(&self) -> u64 {
        self.tokens.iter().map(|(_, _, n)| n).sum()
    }

    fn spent(&mut self, p: Period) -> (f64, f64) {
        if self.day.0 != p.day {
            self.day = (p.day, 0.0);
        }
        if self.month.0 != p.month {
            self.month = (p.month, 0.0);
        }
        (self.day.1, self.month.1)
    }

    /// Why this holder cannot take `ask`, if it cannot.
    fn check(
        &mut self,
        l: &Limits,
        holder: &str,
        now: Instant,
        p: Period,
        ask: Ask,
    ) -> Option<Refusal> {
        let Ask {
            tokens,
            cost,
            new_request,
        } = ask;
        self.expire(now);
        let refuse = |kind, limit: f64, retry_after| {
            Some(Refusal {
                kind,
                holder: holder.to_string(),
                limit,
                retry_after,
            })
        };
        if new_request {
            if let Some(rpm) = l.rpm {
                if self.requests.len() >= rpm as usize {
                    let oldest = self.requests[self.requests.len() - rpm as usize];
                    return refuse(
                        LimitKind::Requests,
                        f64::from(rpm),
                        WINDOW.saturating_sub(now.duration_since(oldest)),
                    );
                }
            }
            if let Some(c) = l.concurrency {
                if self.in_flight >= c {
                    return refuse(LimitKind::Concurrency, f64::from(c), Duration::from_secs(1));
                }
            }
        }
        if let Some(tpm) = l.tpm {
            let used = self.tokens_used();
            if tokens > 0 && used + tokens > tpm {
                // The wait until enough of the window has expired to fit this request.
                let mut freed = 0;
                let mut wait = WINDOW;
                for (_, t, n) in &self.tokens {
                    freed += n;
                    if used - freed + tokens <= tpm {
                        wait = WINDOW.saturating_sub(now.duration_since(*t));
                        break;
                    }
                }
                return refuse(LimitKind::Tokens, tpm as f64, wait);
            }
        }
        let (day, month) = self.spent(p);
        if let Some(d) = l.daily_usd {
            if day >= d || day + cost > d {
                return refuse(LimitKind::DailyBudget, d, p.to_next_day);
            }
        }
        if let Some(m) = l.monthly_usd {
            if month >= m || month + cost > m {
                return refuse(LimitKind::MonthlyBudget, m, p.to_next_month);
            }
        }
        None
    }
}

/// Who a reservation counts against.
#[derive(Debug, Clone)]
pub struct Holders {
    /// The key's name and limits.
    pub key: (String, Limits),
    /// The tenant's name and limits, if the key has a tenant with limits.
    pub tenant: Option<(String, Limits)>,
}

impl Holders {
    /// Each holder as `key <name>` / `tenant <name>`, with its limits.
    pub fn each(&self) -> impl Iterator<Item = (String, &Limits)> {
        std::iter::once((format!("key {}", self.key.0), &self.key.1))
            .chain(self.tenant.iter().map(|(n, l)| (format!("tenant {n}"), l)))
    }

    /// The same holders with only their concurrency limits (cluster mode: the rest is shared).
    pub fn concurrency_only(&self) -> Holders {
        let keep = |l: &Limits| Limits {
            concurrency: l.concurrency,
            ..Default::default()
        };
        Holders {
            key: (self.key.0.clone(), keep(&self.key.1)),
            tenant: self.tenant.as_ref().map(|(n, l)| (n.clone(), keep(l))),
        }
    }
}

/// Every holder's counters.
#[derive(Debug, Default)]
pub struct Limiter {
    state: Mutex<HashMap<String, Counters>>,
    next_id: std::sync::atomic::AtomicU64,
}

impl Limiter {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Counters>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits one request for `holders`: counts it in the request window and takes a concurrency slot,
    /// or refuses without counting anything.
    pub fn admit(self: &Arc<Self>, holders: Holders) -> Result<RequestSlot, Refusal> {
        let now = Instant::now();
        let p = Period::now();
        let mut state = self.lock();
        for (holder, l) in holders.each() {
            let c = state.entry(holder.clone()).or_default();
            if let Some(r) = c.check(l, &holder, now, p, Ask::REQUEST) {
                return Err(r);
            }
        }
        for (holder, _) in holders.each() {
            let c = state.entry(holder).or_default();
            c.requests.push_back(now);
            c.in_flight += 1;
        }
        Ok(RequestSlot {
            limiter: self.clone(),
            holders,
        })
    }

    /// Reserves `tokens` (an estimate) and `cost` (USD) for a completion, or refuses without reserving.
    pub fn reserve(
        self: &Arc<Self>,
        holders: &Holders,
        tokens: u64,
        cost: f64,
    ) -> Result<Reservation, Refusal> {
        let now = Instant::now();
        let p = Period::now();
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut state = self.lock();
        for (holder, l) in holders.each() {
            let c = state.entry(holder.clone()).or_default();
            let ask = Ask {
                tokens,
                cost,
                new_request: false,
            };
            if let Some(r) = c.check(l, &holder, now, p, ask) {
                return Err(r);
            }
        }
        for (holder, _) in holders.each() {
            let c = state.entry(holder).or_default();
            c.tokens.push_back((id, now, tokens));
            c.day.1 += cost;
            c.month.1 += cost;
        }
        Ok(Reservation {
            limiter: self.clone(),
            holders: holders.clone(),
            id,
            cost,
            period: p,
            settled: false,
        })
    }
}

/// A request's concurrency slot: released when dropped (the request's end, streams included).
#[derive(Debug)]
pub struct RequestSlot {
    limiter: Arc<Limiter>,
    holders: Holders,
}

impl RequestSlot {
    /// Who the request counts against.
    pub fn holders(&self) -> &Holders {
        &self.holders
    }

    /// The limiter.
    pub fn limiter(&self) -> &Arc<Limiter> {
        &self.limiter
    }
}

impl Drop for RequestSlot {
    fn drop(&mut self) {
        let mut state = self.limiter.lock();
        for (holder, _) in self.holders.each() {
            if let Some(c) = state.get_mut(&holder) {
                c.in_flight = c.in_flight.saturating_sub(1);
            }
        }
    }
}

/// Tokens and money reserved for one completion, settled from what the provider reported. Dropped
/// unsettled (the call failed or was cancelled), it gives everything back: nothing was served.
#[derive(Debug)]
pub struct Reservation {
    limiter: Arc<Limiter>,
    holders: Holders,
    id: u64,
    cost: f64,
    period: Period,
    settled: bool,
}

impl Reservation {
    /// Replaces the estimate with what was used.
    pub fn settle(mut self, tokens: u64, cost: f64) {
        self.apply(tokens, cost);
        self.settled = true;
    }

    fn apply(&self, tokens: u64, cost: f64) {
        let mut state = self.limiter.lock();
        for (holder, _) in self.holders.each() {
            if let Some(c) = state.get_mut(&holder) {
                if let Some(e) = c.tokens.iter_mut().find(|(id, _, _)| *id == self.id) {
                    e.2 = tokens;
                }
                // The reservation counts in the period it was made in; a new period started from zero.
                if c.day.0 == self.period.day {
                    c.day.1 = (c.day.1 - self.cost + cost).max(0.0);
                }
                if c.month.0 == self.period.month {
                    c.month.1 = (c.month.1 - self.cost + cost).max(0.0);
                }
            }
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.settled {
            self.apply(0, 0.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holders(l: Limits) -> Holders {
        Holders {
            key: ("k".into(), l),
            tenant: None,
        }
    }

    #[test]
    fn rpm_and_concurrency_are_exact_under_threads() {
        let limiter = Arc::new(Limiter::default());
        let h = holders(Limits {
            rpm: Some(50),
            ..Default::default()
        });
        let admitted = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..40 {
                        if limiter.admit(h.clone()).is_ok() {
                            admitted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        assert_eq!(admitted.into_inner(), 50);
        let r = limiter.admit(h).unwrap_err();
        assert_eq!(r.kind, LimitKind::Requests);
        assert!(r.retry_after <= WINDOW && r.retry_after > Duration::from_secs(50));

        let c = holders(Limits {
            concurrency: Some(2),
            ..Default::default()
        });
        let a = limiter.admit(c.clone()).unwrap();
        let _b = limiter.admit(c.clone()).unwrap();
        assert_eq!(
            limiter.admit(c.clone()).unwrap_err().kind,
            LimitKind::Concurrency
        );
        drop(a);
        assert!(limiter.admit(c).is_ok());
    }

    #[test]
    fn tokens_and_budgets_reserve_then_settle() {
        let limiter = Arc::new(Limiter::default());
        let h = holders(Limits {
            tpm: Some(100),
            daily_usd: Some(1.0),
            ..Default::default()
        });
        let r = limiter.reserve(&h, 60, 0.4).unwrap();
        assert_eq!(
            limiter.reserve(&h, 60, 0.1).unwrap_err().kind,
            LimitKind::Tokens
        );
        r.settle(30, 0.5);
        let r2 = limiter.reserve(&h, 60, 0.4).unwrap();
        r2.settle(60, 0.5);
        // 90 tokens and 1.0 USD used: the budget is spent.
        let e = limiter.reserve(&h, 5, 0.01).unwrap_err();
        assert_eq!(e.kind, LimitKind::DailyBudget);
        // A failed call gives its reservation back.
        let h2 = Holders {
            key: (
                "other".into(),
                Limits {
                    tpm: Some(10),
                    ..Default::default()
                },
            ),
            tenant: None,
        };
        drop(limiter.reserve(&h2, 10, 0.0).unwrap());
        assert!(limiter.reserve(&h2, 10, 0.0).is_ok());
    }
}
