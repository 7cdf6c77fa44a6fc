//! Shared circuit state: when a replica's circuit breaker opens on a target, it publishes the target and
//! the cool-down on `<prefix>:circuits`, and every other replica opens its own breaker for that target
//! for as long, so their requests skip the target without failing on it first. A probe that closes a
//! circuit is published too, and closes the others. Latency estimates stay per replica.
//!
//! Announcements are fire-and-forget (a spawned `PUBLISH`, never on the request's path), and only
//! replicas subscribed at that moment hear them: a replica that starts or reconnects during a cool-down
//! finds the target down by itself. Circuits open for seconds, so nothing is stored.

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
        let cluster = self.clone();
        runtime.spawn(async move {
            let mut conn = cluster.conn();
            let channel = cluster.circuit_channel();
            let result: Result<i64, _> = cluster
                .timed("circuit_publish", CONTROL_TIMEOUT, async move {
                    redis::cmd("PUBLISH")
                        .arg(channel)
                        .arg(payload)
                        .query_async(&mut conn)
                        .await
                })
                .await;
            if let Err(e) = result {
                tracing::debug!(error = %e, "cannot share a circuit change");
            }
        });
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
