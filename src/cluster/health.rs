//! Shared circuit state: when a replica's circuit breaker opens on a target, it publishes the target and
//! the cool-down on `<prefix>:circuits`, and every other replica opens its own breaker for that target
//! for as long, so their requests skip the target without failing on it first. A probe that closes a
//! circuit is published too, and closes the others. Latency estimates stay per replica.
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
