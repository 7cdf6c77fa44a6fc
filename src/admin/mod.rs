//! The control plane behind the Admin API: rebuilds from disk, route mutations, and `--watch`.
//!
//! Every change follows one path, serialised by a lock: validate → build the new snapshot off the request
//! path → persist routes.yaml atomically (previous version kept as `.bak`) → install. A change that fails
//! at any step changes neither disk nor memory; a change that was acknowledged is on disk, so a restart
//! serves exactly the routes last acknowledged.
//!
//! In cluster mode ([`crate::cluster`]) the shared route set in Redis replaces the file as the record:
//! validate → build → compare-and-set in Redis (a lost race is [`AdminError::Conflict`], and nothing is
//! installed) → install. Every replica follows the shared set through [`ControlPlane::sync_cluster`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use crate::cluster::routes::{config_from_shared, shared_yaml, Commit};
use crate::cluster::{Cluster, Stamp};
use crate::config::{self, Config, ConfigError, RouteConfig};
use crate::router::{RouteError, Router, Snapshot};
use crate::state::{keep_backup, write_atomically};

/// Errors of the control plane.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The change or the file is invalid; nothing was changed.
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    /// A request field is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The named route does not exist.
    #[error("route `{0}` not found")]
    NotFound(String),
    /// Writing routes.yaml failed; nothing was changed.
    #[error("persisting {path}: {reason}")]
    Persist {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Building the new snapshot failed; nothing was changed.
    #[error(transparent)]
    Build(#[from] RouteError),
    /// Cluster mode: another replica changed the shared routes first; nothing was changed. Retry (this
    /// replica follows the shared routes within moments).
    #[error("{0}")]
    Conflict(String),
    /// Cluster mode: the shared store cannot be reached; nothing was changed.
    #[error(
        "the cluster's route store is unavailable, so changes are refused until it answers: {0}"
    )]
    Unavailable(String),
}

/// What a successful change produced.
#[derive(Clone)]
pub struct ChangeReport {
    /// The snapshot now serving.
    pub snapshot: Arc<Snapshot>,
    /// Items the mutation affected (utterances added/removed; 1 for route upserts/deletes; 0 for rebuilds).
    pub affected: usize,
}

/// The route named `name`, or NOT_FOUND.
fn route_mut<'a>(c: &'a mut Config, name: &str) -> Result<&'a mut RouteConfig, AdminError> {
    c.routes
        .iter_mut()
        .find(|r| r.name == name)
        .ok_or_else(|| AdminError::NotFound(name.to_string()))
}

/// Shared state of the control plane.
struct State {
    /// The file content that the live snapshot was built from (or that we last wrote).
    applied: Vec<u8>,
    /// Cluster mode: the shared set the live snapshot was built from (`None`: none yet).
    stamp: Option<Stamp>,
    /// Cluster mode: a shared set this replica cannot serve (not retried until the set changes).
    rejected: Option<Stamp>,
}

/// Serialised, persistent changes to the live routes.
pub struct ControlPlane {
    router: Arc<Router>,
    path: PathBuf,
    state: tokio::sync::Mutex<State>,
    last_error: StdMutex<Option<String>>,
    cluster: Option<Arc<Cluster>>,
}

impl ControlPlane {
    /// A control plane over `router`, whose routes persist to `path` (the file the router was built from).
    pub fn new(router: Arc<Router>, path: &Path) -> Self {
        let applied = std::fs::read(path).unwrap_or_default();
        Self {
            router,
            path: path.to_path_buf(),
            state: tokio::sync::Mutex::new(State {
                applied,
                stamp: None,
                rejected: None,
            }),
            last_error: StdMutex::new(None),
            cluster: None,
        }
    }

    /// Cluster mode: changes are committed to the shared set in `cluster` instead of the file; the live
    /// snapshot was built from the shared set `stamp` (`None`: from the local file).
    pub fn with_cluster(mut self, cluster: Arc<Cluster>, stamp: Option<Stamp>) -> Self {
        cluster
            .metrics()
            .route_version(stamp.as_ref().map_or(0, |s| s.version));
        self.state.get_mut().stamp = stamp;
        self.cluster = Some(cluster);
        self
    }

    /// Commits `config` to the shared set if it still is the one this replica serves.
    async fn commit_shared(
        &self,
        cluster: &Cluster,
        state: &mut State,
        config: &Config,
    ) -> Result<Stamp, AdminError> {
        match cluster
            .commit_routes(state.stamp.as_ref(), &shared_yaml(config))
            .await
        {
            Ok(Commit::Committed(stamp)) => {
                cluster.metrics().route_sync("committed");
                cluster.metrics().route_version(stamp.version);
                Ok(stamp)
            }
            Ok(Commit::Conflict(now)) => {
                cluster.metrics().route_sync("conflict");
                let now = now.map_or_else(|| "none".to_string(), |s| s.to_string());
                Err(AdminError::Conflict(format!(
                    "the shared routes changed meanwhile (this replica serves version {}, the cluster \
                     holds {now}); nothing was changed: retry",
                    state
                        .stamp
                        .as_ref()
                        .map_or_else(|| "none".to_string(), |s| s.to_string())
                )))
            }
            Err(e) => Err(AdminError::Unavailable(e.to_string())),
        }
    }

    /// Cluster mode: brings the live routes to the shared set. Installs it when its stamp differs from
    /// the one served (built off the request path; the embedding store spares unchanged utterances), and
    /// seeds an empty Redis with the live routes. Returns whether anything changed. A shared set that
    /// cannot be served (invalid, or another encoder) is refused once and logged; the live routes stay.
    pub async fn sync_cluster(&self) -> Result<bool, AdminError> {
        let Some(cluster) = &self.cluster else {
            return Ok(false);
        };
        let unavailable = |e: crate::cluster::ClusterError| AdminError::Unavailable(e.to_string());
        let mut state = self.state.lock().await;
        let remote = cluster.route_stamp().await.map_err(unavailable)?;
        if remote.is_some() && (remote == state.stamp || remote == state.rejected) {
            return Ok(false);
        }
        let live = self.router.snapshot().config.clone();
        let Some(set) = cluster.load_routes().await.map_err(unavailable)? else {
            // Empty (new, flushed, or restarted without persistence): it gets the routes we serve.
            return match cluster.commit_routes(None, &shared_yaml(&live)).await {
                Ok(Commit::Committed(stamp)) => {
                    tracing::info!(%stamp, "the cluster's Redis held no routes: seeded it with the live routes");
                    cluster.metrics().route_sync("seeded");
                    cluster.metrics().route_version(stamp.version);
                    state.stamp = Some(stamp);
                    Ok(true)
                }
                // Another replica seeded it first: the next sync installs theirs.
                Ok(Commit::Conflict(_)) => Ok(false),
                Err(e) => Err(unavailable(e)),
            };
        };
        let config = match config_from_shared(&set, &live) {
            Ok(c) if c.encoder != live.encoder => Err(AdminError::BadRequest(
                "the shared routes name another encoder: the model is loaded at start, so this \
                 replica needs a restart to serve them"
                    .into(),
            )),
            Ok(c) => Ok(c),
            Err(e) => Err(e.into()),
        };
        let built = match config {
            Ok(c) => self.build(c).await,
            Err(e) => Err(e),
        };
        match built {
            Ok(snapshot) => {
                let snapshot = self.router.install(snapshot);
                tracing::info!(stamp = %set.stamp, version = snapshot.version, "installed the cluster's shared routes");
                cluster.metrics().route_sync("installed");
                cluster.metrics().route_version(set.stamp.version);
                state.stamp = Some(set.stamp);
                state.rejected = None;
                self.set_last_error(None);
                Ok(true)
            }
            Err(e) => {
                tracing::error!(stamp = %set.stamp, error = %e, "cannot serve the cluster's shared routes; still serving the last routes");
                cluster.metrics().route_sync("rejected");
                self.set_last_error(Some(e.to_string()));
                state.rejected = Some(set.stamp);
                Err(e)
            }
        }
    }

    /// The router this plane changes.
    pub fn router(&self) -> &Arc<Router> {
        &self.router
    }

    /// The routes file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The last failed reload's error, if the last reload attempt failed.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_last_error(&self, e: Option<String>) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = e;
    }

    /// Re-reads routes.yaml and swaps in a snapshot built from it. A broken file leaves the live routes
    /// serving and returns the error with its position.
    pub async fn rebuild_from_disk(&self) -> Result<ChangeReport, AdminError> {
        let mut state = self.state.lock().await;
        let result = self.rebuild_locked(&mut state).await;
        let err = result.as_ref().err().map(ToString::to_string);
        self.set_last_error(err);
        result
    }

    async fn rebuild_locked(&self, state: &mut State) -> Result<ChangeReport, AdminError> {
        let bytes = std::fs::read(&self.path).map_err(|source| ConfigError::Io {
            path: self.path.clone(),
            source,
        })?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let file = self.path.display().to_string();
        let config = config::parse_str(&text, &file)?;
        // The model is loaded once, at start: a changed `encoder:` would be stored while the old model
        // went on serving, so it is refused and the live routes stay.
        if config.encoder != self.router.snapshot().config.encoder {
            let pos = config::PositionMap::build(&text).find("encoder");
            return Err(ConfigError::Invalid {
                file,
                line: pos.line,
                column: pos.column,
                field: "encoder".into(),
                message:
                    "the encoder section changed: the model is loaded at start, so this change \
                          needs a restart (the running routes stay as they were)"
                        .into(),
            }
            .into());
        }
        let shared = self.cluster.as_ref().map(|_| config.clone());
        let snapshot = self.build(config).await?;
        // Cluster mode: the file becomes the shared set for every replica (compare-and-set as any change).
        if let (Some(cluster), Some(config)) = (&self.cluster, shared) {
            let stamp = self.commit_shared(cluster, state, &config).await?;
            state.stamp = Some(stamp);
        }
        let snapshot = self.router.install(snapshot);
        state.applied = bytes;
        Ok(ChangeReport {
            snapshot,
            affected: 0,
        })
    }

    async fn build(&self, config: Config) -> Result<Snapshot, AdminError> {
        let router = self.router.clone();
        tokio::task::spawn_blocking(move || router.prepare(config))
            .await
            .map_err(|e| AdminError::BadRequest(format!("build task failed: {e}")))?
            .map_err(AdminError::from)
    }

    /// Applies `change` to a copy of the live config, then validates, builds, persists and installs it.
    pub async fn mutate(
        &self,
        change: impl FnOnce(&mut Config) -> Result<usize, AdminError>,
    ) -> Result<ChangeReport, AdminError> {
        let mut state = self.state.lock().await;
        let mut config = (*self.router.snapshot().config).clone();
        let affected = change(&mut config)?;
        let yaml = format!(
            "# Written by the semroute admin API; the previous version is in {}.bak\n{}",
            self.path
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default(),
            config::to_yaml(&config)
        );
        config::validate_config(
            &config,
            &yaml,
            &format!("{} (proposed)", self.path.display()),
        )?;
        if let Some(cluster) = &self.cluster {
            let shared = config.clone();
            let snapshot = self.build(config).await?;
            // The shared set is the record in cluster mode: the local file is not written.
            let stamp = self.commit_shared(cluster, &mut state, &shared).await?;
            state.stamp = Some(stamp.clone());
            let snapshot = self.router.install(snapshot);
            self.set_last_error(None);
            tracing::info!(version = snapshot.version, %stamp, affected, "admin change committed to the cluster");
            return Ok(ChangeReport { snapshot, affected });
        }
        let snapshot = self.build(config).await?;
        let persist_err = |e: std::io::Error| AdminError::Persist {
            path: self.path.clone(),
            reason: e.to_string(),
        };
        // The backup copy and the fsyncs take milliseconds on a slow disk: off the async workers, so
        // requests on this runtime never wait behind an admin write.
        let (path, bytes) = (self.path.clone(), yaml.into_bytes());
        let bytes = tokio::task::spawn_blocking(move || {
            keep_backup(&path)?;
            write_atomically(&path, |f| std::io::Write::write_all(f, &bytes))?;
            Ok(bytes)
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())))
        .map_err(persist_err)?;
        let snapshot = self.router.install(snapshot);
        state.applied = bytes;
        self.set_last_error(None);
        tracing::info!(
            version = snapshot.version,
            affected,
            "admin change applied and persisted"
        );
        Ok(ChangeReport { snapshot, affected })
    }

    /// Creates or replaces the route named `route.name`.
    pub async fn upsert_route(&self, route: RouteConfig) -> Result<ChangeReport, AdminError> {
        self.mutate(move |c| {
            match c.routes.iter_mut().find(|r| r.name == route.name) {
                Some(existing) => *existing = route,
                None => c.routes.push(route),
            }
            Ok(1)
        })
        .await
    }

    /// Deletes a route.
    pub async fn delete_route(&self, name: &str) -> Result<ChangeReport, AdminError> {
        let name = name.to_string();
        self.mutate(move |c| {
            let before = c.routes.len();
            c.routes.retain(|r| r.name != name);
            if c.routes.len() == before {
                return Err(AdminError::NotFound(name));
            }
            Ok(1)
        })
        .await
    }

    /// Adds utterances to a route (ones it already has are skipped).
    pub async fn add_utterances(
        &self,
        name: &str,
        utterances: Vec<String>,
    ) -> Result<ChangeReport, AdminError> {
        let name = name.to_string();
        self.mutate(move |c| {
            let r = route_mut(c, &name)?;
            let mut added = 0;
            for u in utterances {
                if !r.utterances.contains(&u) {
                    r.utterances.push(u);
                    added += 1;
                }
            }
            Ok(added)
        })
        .await
    }

    /// Removes utterances from a route.
    pub async fn remove_utterances(
        &self,
        name: &str,
        utterances: Vec<String>,
    ) -> Result<ChangeReport, AdminError> {
        let name = name.to_string();
        self.mutate(move |c| {
            let r = route_mut(c, &name)?;
            let before = r.utterances.len();
            r.utterances.retain(|u| !utterances.contains(u));
            Ok(before - r.utterances.len())
        })
        .await
    }

    /// Polls routes.yaml every `interval` and rebuilds when its content changed and then stayed the same
    /// for one more poll (debounce: editors write files in several steps). Runs until the task is dropped.
    pub async fn watch(self: Arc<Self>, interval: Duration) {
        let mut pending: Option<Vec<u8>> = None;
        let mut rejected: Option<Vec<u8>> = None;
        loop {
            tokio::time::sleep(interval).await;
            let Ok(bytes) = std::fs::read(&self.path) else {
                continue; // mid-rename or deleted: look again next time
            };
            let applied = self.state.lock().await.applied == bytes;
            if applied || rejected.as_ref() == Some(&bytes) {
                pending = None;
                continue;
            }
            match &pending {
                Some(p) if *p == bytes => {
                    pending = None;
                    match self.rebuild_from_disk().await {
                        Ok(r) => {
                            rejected = None;
                            tracing::info!(
                                version = r.snapshot.version,
                                "routes file changed: reloaded"
                            );
                        }
                        Err(e) => {
                            // Keep serving the last good routes; don't retry the same broken content.
                            tracing::error!(error = %e, "routes file changed but is invalid; still serving the last good routes");
                            rejected = Some(bytes);
                        }
                    }
                }
                _ => pending = Some(bytes),
            }
        }
    }
}
