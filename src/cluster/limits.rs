//! Requests per minute, tokens per minute and the daily and monthly budgets, shared by every replica.
//!
//! One Lua script per request checks every limit of the key and of its tenant and, only if all of them
//! allow it, records the request and reserves its estimated tokens and cost — atomically, so two replicas
//! can never both take the last slot. A second script settles the reservation from the provider's usage
//! after the call, off the request path (a spawned task).
//!
//! The windows are **sliding logs**, as in the single-replica limiter: a sorted set per holder and kind,
//! scored by the Redis server's clock (`TIME`, so replica clocks do not matter), trimmed to the last 60 s.
//! That is exact (no burst across a minute boundary, unlike fixed windows) at the cost of one set entry per
//! request or reservation in the window, and a scan of the token log per check: fine up to thousands of
//! requests per minute per key; a token bucket would be O(1) but approximate and cannot give back a
//! reservation's unused tokens at the time they were reserved. Budgets are a float per holder and UTC
//! day / month (the key names the period, so a new period starts from zero), expiring after it.
//!
//! Each check is one round trip (`EVALSHA`; after a Redis restart the script is loaded again once).
//! Concurrency limits are not here: they stay per replica, in the local limiter.

use std::sync::Arc;
use std::time::Duration;

use super::{Cluster, ClusterError};
use crate::access::limiter::{Holders, LimitKind, Period, Refusal};
use crate::access::Limits;

/// The window of the per-minute limits.
const WINDOW_MS: u64 = 60_000;
/// Budget counters outlive their period by a day, for reading after the fact.
const DAY_TTL_S: u64 = 2 * 86_400;
const MONTH_TTL_S: u64 = 32 * 86_400;

/// Checks then reserves. KEYS, four per holder: request log, token log, day spend, month spend.
/// ARGV: holders, count the request (0/1), tokens, cost, reservation id, window ms, day ttl, month ttl,
/// then per holder: rpm, tpm, daily, monthly (-1: no limit).
/// Returns {-1, 0, 0} when admitted, else {holder index, kind (1 requests, 2 tokens, 4 day, 5 month),
/// retry after ms}.
const RESERVE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = tonumber(ARGV[1])
local count = ARGV[2] == '1'
local tokens = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local id = ARGV[5]
local window = tonumber(ARGV[6])
local cutoff = now - window
local function used_tokens(entries)
  local sum = 0
  for i = 1, #entries, 2 do sum = sum + tonumber(string.match(entries[i], ':(%d+)$')) end
  return sum
end
for h = 0, n - 1 do
  local rk, tk, dk, mk = KEYS[h*4+1], KEYS[h*4+2], KEYS[h*4+3], KEYS[h*4+4]
  local rpm, tpm = tonumber(ARGV[9+h*4]), tonumber(ARGV[10+h*4])
  local daily, monthly = tonumber(ARGV[11+h*4]), tonumber(ARGV[12+h*4])
  if count and rpm >= 0 then
    redis.call('ZREMRANGEBYSCORE', rk, '-inf', cutoff)
    local used = redis.call('ZCARD', rk)
    if used >= rpm then
      local retry = window
      if rpm > 0 then
        local oldest = redis.call('ZRANGE', rk, used - rpm, used - rpm, 'WITHSCORES')
        if oldest[2] then retry = tonumber(oldest[2]) + window - now end
      end
      return {h, 1, retry}
    end
  end
  if tpm >= 0 and tokens > 0 then
    redis.call('ZREMRANGEBYSCORE', tk, '-inf', cutoff)
    local entries = redis.call('ZRANGE', tk, 0, -1, 'WITHSCORES')
    local used = used_tokens(entries)
    if used + tokens > tpm then
      local freed, retry = 0, window
      for i = 1, #entries, 2 do
        freed = freed + tonumber(string.match(entries[i], ':(%d+)$'))
        if used - freed + tokens <= tpm then
          retry = tonumber(entries[i+1]) + window - now
          break
        end
      end
      return {h, 2, retry}
    end
  end
  if daily >= 0 then
    local spent = tonumber(redis.call('GET', dk) or '0')
    if spent >= daily or spent + cost > daily then return {h, 4, 0} end
  end
  if monthly >= 0 then
    local spent = tonumber(redis.call('GET', mk) or '0')
    if spent >= monthly or spent + cost > monthly then return {h, 5, 0} end
  end
end
for h = 0, n - 1 do
  local rk, tk, dk, mk = KEYS[h*4+1], KEYS[h*4+2], KEYS[h*4+3], KEYS[h*4+4]
  if count and tonumber(ARGV[9+h*4]) >= 0 then
    redis.call('ZADD', rk, now, id)
    redis.call('PEXPIRE', rk, window)
  end
  if tokens > 0 and tonumber(ARGV[10+h*4]) >= 0 then
    redis.call('ZADD', tk, now, id .. ':' .. tokens)
    redis.call('PEXPIRE', tk, window)
  end
  -- The budget counter is created even for a zero estimate, so the settlement finds it.
  if tonumber(ARGV[11+h*4]) >= 0 then
    redis.call('INCRBYFLOAT', dk, ARGV[4])
    redis.call('EXPIRE', dk, ARGV[7])
  end
  if tonumber(ARGV[12+h*4]) >= 0 then
    redis.call('INCRBYFLOAT', mk, ARGV[4])
    redis.call('EXPIRE', mk, ARGV[8])
  end
end
return {-1, 0, 0}
"#;

/// Replaces a reservation's estimate with the usage. KEYS as for [`RESERVE`]; ARGV: holders, id,
/// estimated tokens, used tokens, cost delta (used - estimated).
const SETTLE: &str = r#"
local n = tonumber(ARGV[1])
local old = ARGV[2] .. ':' .. ARGV[3]
local new = ARGV[2] .. ':' .. ARGV[4]
local used = tonumber(ARGV[4])
local delta = tonumber(ARGV[5])
for h = 0, n - 1 do
  local tk, dk, mk = KEYS[h*4+2], KEYS[h*4+3], KEYS[h*4+4]
  local score = redis.call('ZSCORE', tk, old)
  if score then
    redis.call('ZREM', tk, old)
    if used > 0 then redis.call('ZADD', tk, score, new) end
  end
  if delta ~= 0 then
    for _, k in ipairs({dk, mk}) do
      if redis.call('EXISTS', k) == 1 then
        local v = tonumber(redis.call('INCRBYFLOAT', k, ARGV[5]))
        if v < 0 then redis.call('SET', k, '0', 'KEEPTTL') end
      end
    end
  end
end
return 1
"#;

/// `-1` for no limit, else the value, as the script's argument.
fn limit_arg<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-1".to_string(), |v| v.to_string())
}

/// Whether any limit this layer enforces is set for any holder.
fn has_shared_limits(holders: &Holders) -> bool {
    holders.each().any(|(_, l)| {
        l.rpm.is_some() || l.tpm.is_some() || l.daily_usd.is_some() || l.monthly_usd.is_some()
    })
}

impl Cluster {
    /// The four keys of every holder, for `period`.
    fn limit_keys(&self, holders: &Holders, period: Period) -> Vec<String> {
        holders
            .each()
            .flat_map(|(h, _)| {
                [
                    self.key(&format!("lim:{h}:req")),
                    self.key(&format!("lim:{h}:tok")),
                    self.key(&format!("lim:{h}:usd:day:{}", period.day)),
                    self.key(&format!("lim:{h}:usd:month:{}", period.month)),
                ]
            })
            .collect()
    }

    /// Checks every shared limit of `holders` and, if none refuses, counts the request (when
    /// `count_request`) and reserves `tokens` and `cost` (USD), in one atomic round trip bounded by
    /// `cluster.timeout_ms`. The outer error is Redis failing; the inner one a limit refusing.
    pub async fn reserve(
        self: &Arc<Self>,
        holders: &Holders,
        count_request: bool,
        tokens: u64,
        cost: f64,
    ) -> Result<Result<SharedReservation, Refusal>, ClusterError> {
        let period = Period::now();
        let id = format!("{:016x}", fastrand::u64(..));
        let reservation = |keys: Vec<String>, holders: usize, id: String| SharedReservation {
            cluster: self.clone(),
            // Nothing reserved (no keys): nothing to settle.
            settled: keys.is_empty(),
            keys,
            holders,
            id,
            tokens,
            cost,
        };
        if !has_shared_limits(holders) || (!count_request && tokens == 0 && cost == 0.0) {
            return Ok(Ok(reservation(Vec::new(), 0, id)));
        }
        let keys = self.limit_keys(holders, period);
        let script = redis::Script::new(RESERVE);
        let mut call = script.prepare_invoke();
        for k in &keys {
            call.key(k);
        }
        let n = holders.each().count();
        call.arg(n)
            .arg(if count_request { "1" } else { "0" })
            .arg(tokens)
            .arg(cost.max(0.0).to_string())
            .arg(&id)
            .arg(WINDOW_MS)
            .arg(DAY_TTL_S)
            .arg(MONTH_TTL_S);
        for (_, l) in holders.each() {
            call.arg(limit_arg(l.rpm))
                .arg(limit_arg(l.tpm))
                .arg(limit_arg(l.daily_usd))
                .arg(limit_arg(l.monthly_usd));
        }
        let mut conn = self.conn();
        let (holder, kind, retry_ms): (i64, i64, i64) = self
            .timed("limits_reserve", self.request_timeout(), async move {
                call.invoke_async(&mut conn).await
            })
            .await?;
        if holder < 0 {
            return Ok(Ok(reservation(keys, n, id)));
        }
        let (name, limits) = holders
            .each()
            .nth(holder as usize)
            .ok_or_else(|| ClusterError::Data(format!("limits script named holder {holder}")))?;
        Ok(Err(refusal(name, limits, kind, retry_ms, period)?))
    }
}

fn refusal(
    holder: String,
    l: &Limits,
    kind: i64,
    retry_ms: i64,
    period: Period,
) -> Result<Refusal, ClusterError> {
    let retry = Duration::from_millis(retry_ms.max(1) as u64);
    let (kind, limit, retry_after) = match kind {
        1 => (LimitKind::Requests, f64::from(l.rpm.unwrap_or(0)), retry),
        2 => (LimitKind::Tokens, l.tpm.unwrap_or(0) as f64, retry),
        4 => (
            LimitKind::DailyBudget,
            l.daily_usd.unwrap_or(0.0),
            period.to_next_day,
        ),
        5 => (
            LimitKind::MonthlyBudget,
            l.monthly_usd.unwrap_or(0.0),
            period.to_next_month,
        ),
        k => {
            return Err(ClusterError::Data(format!(
                "limits script returned kind {k}"
            )))
        }
    };
    Ok(Refusal {
        kind,
        holder,
        limit,
        retry_after,
    })
}

/// Tokens and money reserved in Redis for one call. Settled from the usage (or, dropped unsettled, given
/// back) by a spawned task: the caller never waits for it.
#[derive(Debug)]
pub struct SharedReservation {
    cluster: Arc<Cluster>,
    keys: Vec<String>,
    holders: usize,
    id: String,
    tokens: u64,
    cost: f64,
    settled: bool,
}

impl SharedReservation {
    /// Replaces the estimate with what was used.
    pub fn settle(mut self, tokens: u64, cost: f64) {
        self.spawn_settle(tokens, cost);
        self.settled = true;
    }

    fn spawn_settle(&self, tokens: u64, cost: f64) {
        if self.settled || self.keys.is_empty() || (tokens == self.tokens && cost == self.cost) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (cluster, keys, holders, id) = (
            self.cluster.clone(),
            self.keys.clone(),
            self.holders,
            self.id.clone(),
        );
        let (estimate, delta) = (self.tokens, cost - self.cost);
        runtime.spawn(async move {
            let script = redis::Script::new(SETTLE);
            let mut call = script.prepare_invoke();
            for k in &keys {
                call.key(k);
            }
            call.arg(holders)
                .arg(&id)
                .arg(estimate)
                .arg(tokens)
                .arg(delta.to_string());
            let mut conn = cluster.conn();
            let budget = cluster.request_timeout() * 4;
            let result: Result<i64, _> = cluster
                .timed("limits_settle", budget, async move {
                    call.invoke_async(&mut conn).await
                })
                .await;
            if let Err(e) = result {
                // The estimate stays counted: the window and the budget err on the strict side.
                tracing::debug!(error = %e, "cannot settle a shared reservation; its estimate stays counted");
            }
        });
    }
}

impl Drop for SharedReservation {
    fn drop(&mut self) {
        // Unsettled: the call failed or was cancelled, nothing was served, everything goes back.
        if !self.settled {
            self.spawn_settle(0, 0.0);
            self.settled = true;
        }
    }
}
