//! The shared route set: one Redis hash `<prefix>:routes` with fields `epoch`, `version` and `yaml`, and
//! the channel `<prefix>:routes:changed`.
//!
//! `yaml` is routes.yaml as the admin API writes it, without the `cluster:` section (that one is each
//! replica's own and may name a password). `version` counts commits; `epoch` is drawn when an empty Redis
//! is seeded, so a Redis that lost its data and was seeded again never passes for the set a replica
//! already serves even when the versions happen to match.
//!
//! Which one wins: Redis, whenever it holds a set. The local routes.yaml only seeds an empty Redis (the
//! first replica to reach it wins the seeding, by the same compare-and-set as any change).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use super::{Cluster, ClusterError, CONTROL_TIMEOUT};
use crate::admin::ControlPlane;
use crate::config::{self, Config, ConfigError, LoadedConfig};

/// Which shared set a replica serves: the seeding's epoch and the commit count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    /// Drawn when an empty Redis was seeded.
    pub epoch: String,
    /// Commits since then (the seeding is 1).
    pub version: u64,
}

impl std::fmt::Display for Stamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.epoch, self.version)
    }
}

/// A shared route set as Redis holds it.
#[derive(Debug, Clone)]
pub struct RouteSet {
    /// Which one.
    pub stamp: Stamp,
    /// routes.yaml without `cluster:`.
    pub yaml: String,
}

/// The result of a compare-and-set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Commit {
    /// The set is stored under this stamp and announced.
    Committed(Stamp),
    /// Redis holds another set than the one expected (`None`: it holds none); nothing was written.
    Conflict(Option<Stamp>),
}

/// Compare-and-set of the route set, then the announcement, in one atomic step. KEYS[1]: the hash.
/// ARGV: expected epoch ('' for none), expected version (0 for none), yaml, a fresh epoch for seeding,
/// the channel.
const COMMIT: &str = r#"
local cur = redis.call('HMGET', KEYS[1], 'epoch', 'version')
local epoch = cur[1] or ''
local version = tonumber(cur[2] or '0')
if epoch ~= ARGV[1] or version ~= tonumber(ARGV[2]) then
  return {0, epoch, version}
end
if epoch == '' then epoch = ARGV[4] end
local v = version + 1
redis.call('HSET', KEYS[1], 'epoch', epoch, 'version', v, 'yaml', ARGV[3])
redis.call('PUBLISH', ARGV[5], epoch .. '/' .. v)
return {1, epoch, v}
"#;

fn stamp_of(epoch: Option<String>, version: Option<u64>) -> Option<Stamp> {
    match (epoch, version) {
        (Some(epoch), Some(version)) if !epoch.is_empty() && version > 0 => {
            Some(Stamp { epoch, version })
        }
        _ => None,
    }
}

impl Cluster {
    fn routes_key(&self) -> String {
        self.key("routes")
    }

    fn routes_channel(&self) -> String {
        self.key("routes:changed")
    }

    /// The stamp of the shared set (`None`: Redis holds none). Cheap: the set itself is not read.
    pub async fn route_stamp(&self) -> Result<Option<Stamp>, ClusterError> {
        let mut conn = self.conn();
        let key = self.routes_key();
        let (epoch, version): (Option<String>, Option<u64>) = self
            .timed("routes_stamp", CONTROL_TIMEOUT, async move {
                redis::cmd("HMGET")
                    .arg(&key)
                    .arg("epoch")
                    .arg("version")
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        Ok(stamp_of(epoch, version))
    }

    /// The shared set (`None`: Redis holds none).
    pub async fn load_routes(&self) -> Result<Option<RouteSet>, ClusterError> {
        let mut conn = self.conn();
        let key = self.routes_key();
        let (epoch, version, yaml): (Option<String>, Option<u64>, Option<String>) = self
            .timed("routes_load", CONTROL_TIMEOUT, async move {
                redis::cmd("HMGET")
                    .arg(&key)
                    .arg("epoch")
                    .arg("version")
                    .arg("yaml")
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        match (stamp_of(epoch, version), yaml) {
            (Some(stamp), Some(yaml)) => Ok(Some(RouteSet { stamp, yaml })),
            (None, None) => Ok(None),
            _ => Err(ClusterError::Data(format!(
                "{} is incomplete (epoch, version and yaml must all be set)",
                self.routes_key()
            ))),
        }
    }

    /// Stores `yaml` as the shared set if Redis still holds `expected` (`None`: holds none), and announces
    /// it to every replica.
    pub async fn commit_routes(
        &self,
        expected: Option<&Stamp>,
        yaml: &str,
    ) -> Result<Commit, ClusterError> {
        let mut conn = self.conn();
        let script = redis::Script::new(COMMIT);
        let mut call = script.key(self.routes_key());
        call.arg(expected.map_or("", |s| s.epoch.as_str()))
            .arg(expected.map_or(0, |s| s.version))
            .arg(yaml)
            .arg(format!("{:016x}", fastrand::u64(..)))
            .arg(self.routes_channel());
        let (won, epoch, version): (i64, String, u64) = self
            .timed("routes_commit", CONTROL_TIMEOUT, async move {
                call.invoke_async(&mut conn).await
            })
            .await?;
        let stamp = stamp_of(Some(epoch), Some(version));
        Ok(match (won, stamp) {
            (1, Some(s)) => Commit::Committed(s),
            (_, s) => Commit::Conflict(s),
        })
    }
}

/// The text a config is shared as: routes.yaml without the replica's own `cluster:` section.
pub fn shared_yaml(config: &Config) -> String {
    let mut shared = config.clone();
    shared.cluster = None;
    format!(
        "# The semroute cluster's shared route set (written by the admin API or seeded from a replica's \
         routes.yaml)\n{}",
        config::to_yaml(&shared)
    )
}

/// The config a shared set describes, with this replica's own `cluster:` section.
pub fn config_from_shared(set: &RouteSet, local: &Config) -> Result<Config, ConfigError> {
    let file = format!("redis routes {}", set.stamp);
    let mut config = config::parse_str(&set.yaml, &file)?;
    config.cluster = local.cluster.clone();
    Ok(config)
}

/// The routes a replica starts with: the shared set when Redis holds one (it wins over the local file),
/// else the local file, which then seeds Redis. A Redis that cannot be reached or holds a set this
/// replica cannot read leaves the local file in force; the version poll catches up later.
pub async fn initial_routes(
    cluster: Option<&Cluster>,
    mut loaded: LoadedConfig,
) -> (LoadedConfig, Option<Stamp>) {
    let Some(cluster) = cluster else {
        return (loaded, None);
    };
    for _ in 0..2 {
        match cluster.load_routes().await {
            Ok(Some(set)) => match config_from_shared(&set, &loaded.config) {
                Ok(config) => {
                    tracing::info!(stamp = %set.stamp, routes = config.routes.len(), "routes loaded from the cluster's Redis (they win over the local file)");
                    cluster.metrics.route_sync("installed");
                    loaded.config = config;
                    return (loaded, Some(set.stamp));
                }
                Err(e) => {
                    tracing::error!(stamp = %set.stamp, error = %e, "the cluster's route set is invalid; starting with the local file");
                    cluster.metrics.route_sync("rejected");
                    return (loaded, None);
                }
            },
            Ok(None) => match cluster
                .commit_routes(None, &shared_yaml(&loaded.config))
                .await
            {
                Ok(Commit::Committed(stamp)) => {
                    tracing::info!(%stamp, "the cluster's Redis held no routes: seeded it with the local file");
                    cluster.metrics.route_sync("seeded");
                    return (loaded, Some(stamp));
                }
                // Another replica seeded it meanwhile: load theirs.
                Ok(Commit::Conflict(_)) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot seed the cluster's Redis; starting with the local file");
                    return (loaded, None);
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "the cluster's Redis is unreachable; starting with the local routes file and catching up when it answers");
                return (loaded, None);
            }
        }
    }
    (loaded, None)
}

/// Keeps `plane` on the shared set for as long as the task runs: a subscription to the change channel
/// (re-established with backoff) triggers a sync at once, and a poll every `cluster.poll_ms` catches a
/// missed message, a reconnect or a Redis that came back empty (which this replica then seeds).
pub async fn follow(plane: Arc<ControlPlane>, cluster: Arc<Cluster>) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
    let subscriber = tokio::spawn(subscribe(cluster.clone(), tx));
    let _stop_subscriber = AbortOnDrop(subscriber);
    let mut tick = tokio::time::interval(Duration::from_millis(cluster.config.poll_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_error: Option<String> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            Some(()) = rx.recv() => {}
        }
        let models: Vec<String> = plane
            .router()
            .snapshot()
            .config
            .models
            .iter()
            .map(|m| m.name.clone())
            .collect();
        let synced = match plane.sync_cluster().await {
            Ok(changed) => {
                let health = async {
                    cluster.sync_circuits(&models).await?;
                    cluster.sync_latency(&models).await
                };
                health
                    .await
                    .map(|()| changed)
                    .map_err(|e| crate::admin::AdminError::Unavailable(e.to_string()))
            }
            Err(e) => Err(e),
        };
        match synced {
            Ok(_) => {
                if last_error.take().is_some() {
                    tracing::info!("the cluster's Redis answers again: routes in sync");
                }
            }
            Err(e) => {
                // Once per distinct error, not once per poll.
                let text = e.to_string();
                if last_error.as_deref() != Some(&text) {
                    tracing::warn!(error = %text, "cannot sync routes with the cluster's Redis; still serving the last routes");
                    last_error = Some(text);
                }
            }
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Subscribes to the route change channel and pokes `tx` on every message and after every
/// (re)subscription (messages sent while unsubscribed are lost, so a fresh subscription means "look
/// now"); circuit announcements on the same connection go to [`Cluster::apply_circuit`].
async fn subscribe(cluster: Arc<Cluster>, tx: tokio::sync::mpsc::Sender<()>) {
    let channels = [cluster.routes_channel(), cluster.circuit_channel()];
    let mut backoff = Duration::from_millis(100);
    loop {
        let client = cluster.client.clone();
        let chs = channels.clone();
        let subscribed = cluster
            .timed("subscribe", CONTROL_TIMEOUT, async move {
                let mut pubsub = client.get_async_pubsub().await?;
                for ch in &chs {
                    pubsub.subscribe(ch).await?;
                }
                Ok(pubsub)
            })
            .await;
        match subscribed {
            Ok(pubsub) => {
                backoff = Duration::from_millis(100);
                let _ = tx.try_send(());
                let mut messages = pubsub.into_on_message();
                while let Some(msg) = messages.next().await {
                    if msg.get_channel_name() == channels[1] {
                        if let Ok(payload) = msg.get_payload::<String>() {
                            cluster.apply_circuit(&payload);
                        }
                        continue;
                    }
                    // A full channel already holds a poke: the sync it causes reads the newest set.
                    let _ = tx.try_send(());
                }
                tracing::debug!("route change subscription ended; resubscribing");
            }
            Err(e) => tracing::debug!(error = %e, "cannot subscribe to route changes"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str =
        "cluster:\n  redis_url: redis://:s3cret-pass@10.0.0.1:6379\n  timeout_ms: 20\n\
                        routes:\n  - name: a\n    utterances: [hello]\n";

    #[test]
    fn the_shared_set_never_carries_the_cluster_section() {
        let local = config::parse_str(FILE, "routes.yaml").unwrap();
        let yaml = shared_yaml(&local);
        assert!(!yaml.contains("s3cret"), "{yaml}");
        assert!(!yaml.contains("cluster:"), "{yaml}");
        assert!(!yaml.contains("redis_url"), "{yaml}");
        // Loaded back on another replica, the set keeps that replica's own cluster section.
        let mut other = local.clone();
        other.cluster.as_mut().unwrap().timeout_ms = 99;
        let set = RouteSet {
            stamp: Stamp {
                epoch: "e".into(),
                version: 3,
            },
            yaml,
        };
        let loaded = config_from_shared(&set, &other).unwrap();
        assert_eq!(loaded.cluster.unwrap().timeout_ms, 99);
        assert_eq!(loaded.routes, local.routes);
    }

    #[test]
    fn an_invalid_shared_set_names_its_stamp() {
        let local = config::parse_str(FILE, "routes.yaml").unwrap();
        let set = RouteSet {
            stamp: Stamp {
                epoch: "abc".into(),
                version: 7,
            },
            yaml: "routes: []\ncolour: red\n".into(),
        };
        let e = config_from_shared(&set, &local).unwrap_err().to_string();
        assert!(e.contains("abc/7"), "{e}");
    }

    #[test]
    fn the_url_is_redacted_and_validated_without_echoing_it() {
        let c = config::parse_str(FILE, "routes.yaml").unwrap();
        let printed = format!("{:?}", c.cluster);
        assert!(!printed.contains("s3cret"), "{printed}");
        assert!(printed.contains("<redacted>"));
        for (yaml, field) in [
            (
                "cluster:\n  redis_url: rediss://u:s3cret@h:1\n",
                "cluster.redis_url",
            ),
            (
                "cluster:\n  redis_url: redis://h\n  redis_url_env: X\n",
                "cluster.redis_url",
            ),
            ("cluster:\n  timeout_ms: 5\n", "cluster"),
            (
                "cluster:\n  redis_url: redis://h\n  timeout_ms: 0\n",
                "cluster.timeout_ms",
            ),
            (
                "cluster:\n  redis_url: redis://h\n  poll_ms: 10\n",
                "cluster.poll_ms",
            ),
            (
                "cluster:\n  redis_url: redis://h\n  limits_on_redis_error: maybe\n",
                "limits_on_redis_error",
            ),
        ] {
            let text = format!("{yaml}routes:\n  - name: a\n    utterances: [hello]\n");
            let e = config::parse_str(&text, "routes.yaml")
                .unwrap_err()
                .to_string();
            assert!(e.contains(field), "{yaml}: {e}");
            assert!(!e.contains("s3cret"), "{e}");
        }
    }
}
