//! Shared circuit state: when a replica's circuit breaker opens on a target, it publishes the target and
//! the cool-down on `<prefix>:circuits`, and every other replica opens its own breaker for that target
//! for as long, so their requests skip the target without failing on it first. A probe that closes a
//! circuit is published too, and closes the others. Latency estimates are shared at every sync
//! ([`Cluster::sync_latency`]).
//!
//! Announcements are fire-and-forget (a spawned `PUBLISH`, never on the request's path). Each open
//! circuit is also stored as `<prefix>:circuit:<model>`, expiring with its cool-down, so a replica that
//! starts or reconnects during a cool-down learns of it at its next sync ([`Cluster::sync_circuits`])
//! instead of finding the target down by itself.

use std::sync::Arc;
use std::time::Duration;

use super::{Cluster, CONTROL_TIMEOUT};
use crate::upstream::Forwarder;

impl Cluster {
    /// The channel circuit changes are published on.
    pub(crate) fn circuit_channel(&self) -> String {
        self.key("circuits")
    }

    /// Makes `forwarder` announce its circuit changes and apply the other replicas'.
    pub(crate) fn share_circuits(self: &Arc<Self>, forwarder: &Arc<Forwarder>) {
        let _ = self.forwarder.set(forwarder.clone());
        // Weak: the forwarder must not keep the cluster alive (the cluster holds the forwarder).
        let cluster = Arc::downgrade(self);
        forwarder.on_circuit_change(Box::new(move |model, open_for| {
            if let Some(c) = cluster.upgrade() {
                c.announce_circuit(model, open_for);
            }
        }));
    }

    /// Publishes a circuit change found here: `<replica>\t<cool-down ms, 0 for closed>\t<model>`.
    fn announce_circuit(self: &Arc<Self>, model: &str, open_for: Option<Duration>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let ms = open_for.map_or(0, |d| d.as_millis().max(1) as u64);
        let payload = format!("{}\t{ms}\t{model}", self.replica);
        let stored = self.circuit_key(model);
        let cluster = self.clone();
        runtime.spawn(async move {
            let mut conn = cluster.conn();
            let channel = cluster.circuit_channel();
            // The announcement and the stored state in one round trip: an open circuit is kept for its
            // cool-down, a closed one is forgotten.
            let mut pipe = redis::pipe();
            pipe.cmd("PUBLISH").arg(channel).arg(payload).ignore();
            if ms == 0 {
                pipe.cmd("DEL").arg(stored).ignore();
            } else {
                pipe.cmd("SET")
                    .arg(stored)
                    .arg(&cluster.replica)
                    .arg("PX")
                    .arg(ms)
                    .ignore();
            }
            let result: Result<(), _> = cluster
                .timed("circuit_publish", CONTROL_TIMEOUT, async move {
                    pipe.query_async(&mut conn).await
                })
                .await;
            if let Err(e) = result {
                tracing::debug!(error = %e, "cannot share a circuit change");
            }
        });
    }

    /// Where an open circuit on `model` is kept while it cools down.
    fn circuit_key(&self, model: &str) -> String {
        self.key(&format!("circuit:{model}"))
    }

    /// Opens, for what is left of their cool-down, the circuits other replicas stored as open on any of
    /// `models`: how a replica that was not subscribed when a circuit opened (starting, reconnecting)
    /// catches up. One pipelined round trip; called with every route sync.
    pub(crate) async fn sync_circuits(&self, models: &[String]) -> Result<(), super::ClusterError> {
        let Some(forwarder) = self.forwarder.get() else {
            return Ok(());
        };
        if models.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for m in models {
            let key = self.circuit_key(m);
            pipe.cmd("GET").arg(&key).cmd("PTTL").arg(&key);
        }
        let mut conn = self.conn();
        let answers: Vec<(Option<String>, i64)> = self
            .timed("circuit_sync", CONTROL_TIMEOUT, async move {
                // The replies come flat (GET, PTTL, GET, PTTL, ...): read in pairs.
                pipe.query_async(&mut conn).await
            })
            .await?;
        for (model, (owner, ttl_ms)) in models.iter().zip(answers) {
            let Some(owner) = owner else { continue };
            // This replica's own circuit is already open here; a negative TTL means no expiry or gone.
            if owner == self.replica || ttl_ms <= 0 {
                continue;
            }
            let health = forwarder.health(model);
            if health.state() != crate::upstream::breaker::BreakerState::Open {
                health.open_shared(Duration::from_millis(ttl_ms as u64));
                tracing::warn!(target = %model, cool_down_ms = ttl_ms, "circuit opened: stored open by another replica");
                self.metrics.circuit_shared("opened");
            }
        }
        Ok(())
    }

    /// Shares latency estimates: writes this replica's own estimate of every target it has used into
    /// `<prefix>:latency:<model>` (one field per replica, the key expiring after ten polls), and reads
    /// the others', whose mean becomes each target's shared estimate (used while this replica has none
    /// of its own). One pipelined round trip; called with every route sync.
    pub(crate) async fn sync_latency(&self, models: &[String]) -> Result<(), super::ClusterError> {
        let Some(forwarder) = self.forwarder.get() else {
            return Ok(());
        };
        if models.is_empty() {
            return Ok(());
        }
        let now_ms = unix_ms();
        let keep_ms = self.config().poll_ms.saturating_mul(10);
        let mut pipe = redis::pipe();
        for m in models {
            let key = self.latency_key(m);
            let own = forwarder.health(m).own_latency();
            if let Some(ttft) = own.ttft_ms.get() {
                let tps = own.tokens_per_s.get().unwrap_or(0.0);
                pipe.cmd("HSET")
                    .arg(&key)
                    .arg(&self.replica)
                    .arg(format!("{ttft:.3} {tps:.3} {now_ms}"))
                    .ignore();
                pipe.cmd("PEXPIRE").arg(&key).arg(keep_ms).ignore();
            }
            pipe.cmd("HGETALL").arg(&key);
        }
        let mut conn = self.conn();
        let tables: Vec<std::collections::HashMap<String, String>> = self
            .timed("latency_sync", CONTROL_TIMEOUT, async move {
                pipe.query_async(&mut conn).await
            })
            .await?;
        for (model, table) in models.iter().zip(tables) {
            let peers: Vec<(f64, f64)> = table
                .iter()
                .filter(|(replica, _)| **replica != self.replica)
                .filter_map(|(_, v)| parse_latency(v, now_ms, keep_ms))
                .collect();
            let shared = (!peers.is_empty()).then(|| {
                let n = peers.len() as f64;
                let ttft = peers.iter().map(|p| p.0).sum::<f64>() / n;
                let rated: Vec<f64> = peers.iter().map(|p| p.1).filter(|&t| t > 0.0).collect();
                let tps =
                    (!rated.is_empty()).then(|| rated.iter().sum::<f64>() / rated.len() as f64);
                crate::upstream::health::Latency {
                    ttft_ms: crate::upstream::health::Ewma::of(Some(ttft)),
                    tokens_per_s: crate::upstream::health::Ewma::of(tps),
                }
            });
            forwarder.health(model).set_shared_latency(shared);
        }
        Ok(())
    }

    fn latency_key(&self, model: &str) -> String {
        self.key(&format!("latency:{model}"))
    }

    /// Applies another replica's announcement; ignores this replica's own and malformed ones.
    pub(crate) fn apply_circuit(&self, payload: &str) {
        let mut parts = payload.splitn(3, '\t');
        let (Some(replica), Some(ms), Some(model)) = (parts.next(), parts.next(), parts.next())
        else {
            return;
        };
        let (Ok(ms), Some(forwarder)) = (ms.parse::<u64>(), self.forwarder.get()) else {
            return;
        };
        if replica == self.replica {
            return;
        }
        let health = forwarder.health(model);
        if ms == 0 {
            health.close_shared();
            tracing::info!(target = %model, "circuit closed by another replica's probe");
        } else {
            health.open_shared(Duration::from_millis(ms));
            tracing::warn!(target = %model, cool_down_ms = ms, "circuit opened: another replica found the target down");
        }
        self.metrics
            .circuit_shared(if ms == 0 { "closed" } else { "opened" });
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `"<ttft ms> <tokens/s> <written at, unix ms>"`, if well formed and written within `keep_ms`.
fn parse_latency(v: &str, now_ms: u64, keep_ms: u64) -> Option<(f64, f64)> {
    let mut parts = v.split(' ');
    let ttft: f64 = parts.next()?.parse().ok()?;
    let tps: f64 = parts.next()?.parse().ok()?;
    let at: u64 = parts.next()?.parse().ok()?;
    let fresh = now_ms.saturating_sub(at) <= keep_ms;
    (fresh && ttft.is_finite() && ttft >= 0.0 && tps.is_finite()).then_some((ttft, tps))
}

#[cfg(test)]
mod tests {
    use super::parse_latency;

    #[test]
    fn latency_entries_are_checked_and_expire() {
        assert_eq!(
            parse_latency("12.5 40.0 1000", 1500, 1000),
            Some((12.5, 40.0))
        );
        assert_eq!(parse_latency("12.5 40.0 1000", 2500, 1000), None, "stale");
        assert_eq!(parse_latency("x 40.0 1000", 1500, 1000), None);
        assert_eq!(parse_latency("NaN 1 1000", 1500, 1000), None);
    }
}
