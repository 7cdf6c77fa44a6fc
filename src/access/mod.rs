//! Who may call and how much: client keys (hashed, from a keys file reloaded on change), the routes and
//! models each key may use, and per-key and per-tenant rate limits and budgets. Both faces authenticate
//! through [`Access::authenticate`] at the door; the gateway checks routes, models, tokens and money once
//! it knows the decision, and settles from the provider's reported usage.
//!
//! In cluster mode ([`Access::attach_cluster`]) requests per minute, tokens per minute and budgets are
//! checked in Redis ([`crate::cluster::limits`]), once per request, where the request is first handled
//! asynchronously; concurrency limits stay per replica.

pub mod keys;
pub mod limiter;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use arc_swap::ArcSwap;

use crate::cluster::limits::SharedReservation;
use crate::cluster::Cluster;
use crate::config::FailMode;
pub use keys::{ClientKey, KeyEntry, KeyRing, KeysError, KeysFile, Limits};
use limiter::{Holders, Limiter, RequestSlot};
pub use limiter::{LimitKind, Refusal};

/// Why a call was refused at the door or by its key's rights and limits.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// No key, or one that is unknown, revoked or expired.
    #[error("{0}")]
    Unauthenticated(String),
    /// The key may not use this route or model.
    #[error("{0}")]
    Forbidden(String),
    /// A rate limit or budget is reached.
    #[error("{} limit of {} reached ({}){}", .0.kind.as_str(), .0.holder, limit_value(.0), retry_text(.0))]
    Limited(Refusal),
    /// Cluster mode with `limits_on_redis_error: closed`: the shared limits could not be checked.
    #[error("the shared rate limits could not be checked ({0}); retry shortly")]
    Unavailable(String),
}

fn limit_value(r: &Refusal) -> String {
    match r.kind {
        LimitKind::Requests => format!("{} requests per minute", r.limit),
        LimitKind::Tokens => format!("{} tokens per minute", r.limit),
        LimitKind::Concurrency => format!("{} requests at once", r.limit),
        LimitKind::DailyBudget => format!("{} USD per UTC day", r.limit),
        LimitKind::MonthlyBudget => format!("{} USD per UTC month", r.limit),
    }
}

fn retry_text(r: &Refusal) -> String {
    format!("; retry in {} s", r.retry_after.as_secs().max(1))
}

/// An authenticated caller: its key, and the request slot it holds (released when the last clone of the
/// caller is dropped, which for a stream is when the stream ends).
#[derive(Debug)]
pub struct Caller {
    /// The key.
    pub key: Arc<ClientKey>,
    slot: RequestSlot,
    shared: Option<SharedLimits>,
}

/// Cluster mode: the caller's limits as checked in Redis.
#[derive(Debug)]
struct SharedLimits {
    cluster: Arc<Cluster>,
    holders: Holders,
    /// Whether the request was already counted against the requests-per-minute limits.
    counted: AtomicBool,
}

/// Tokens and money reserved for one completion, settled from what the provider reported. Dropped
/// unsettled (the call failed or was cancelled), it gives everything back: nothing was served.
#[derive(Debug)]
pub struct Reservation(Reserved);

#[derive(Debug)]
enum Reserved {
    Local(limiter::Reservation),
    Shared(SharedReservation),
    /// Cluster mode, Redis unreachable, `limits_on_redis_error: open`: nothing was reserved.
    Unchecked,
}

impl Reservation {
    /// Replaces the estimate with what was used.
    pub fn settle(self, tokens: u64, cost: f64) {
        match self.0 {
            Reserved::Local(r) => r.settle(tokens, cost),
            Reserved::Shared(r) => r.settle(tokens, cost),
            Reserved::Unchecked => {}
        }
    }
}

impl Caller {
    /// The key's name (never the key).
    pub fn name(&self) -> &str {
        &self.key.entry.name
    }

    /// Refuses a route the key may not use.
    pub fn check_route(&self, route: &str) -> Result<(), AccessError> {
        let allowed = &self.key.entry.routes;
        if allowed.is_empty() || allowed.iter().any(|r| r == route) {
            return Ok(());
        }
        Err(AccessError::Forbidden(format!(
            "the key `{}` may not use the route `{route}` (allowed: {})",
            self.name(),
            allowed.join(", ")
        )))
    }

    /// Refuses a model the key may not use.
    pub fn check_model(&self, model: &str) -> Result<(), AccessError> {
        let allowed = &self.key.entry.models;
        if allowed.is_empty() || allowed.iter().any(|m| m == model) {
            return Ok(());
        }
        Err(AccessError::Forbidden(format!(
            "the key `{}` may not use the model `{model}` (allowed: {})",
            self.name(),
            allowed.join(", ")
        )))
    }

    /// Reserves an estimate of tokens and cost for a completion against the key's and tenant's limits.
    /// In cluster mode this is the request's one round trip to Redis: it also counts the request against
    /// the requests-per-minute limits.
    pub async fn reserve(&self, tokens: u64, cost_usd: f64) -> Result<Reservation, AccessError> {
        let Some(shared) = &self.shared else {
            return self
                .slot
                .limiter()
                .reserve(self.slot.holders(), tokens, cost_usd)
                .map(|r| Reservation(Reserved::Local(r)))
                .map_err(AccessError::Limited);
        };
        let count = !shared.counted.swap(true, Ordering::SeqCst);
        match shared
            .cluster
            .reserve(&shared.holders, count, tokens, cost_usd)
            .await
        {
            Ok(Ok(r)) => Ok(Reservation(Reserved::Shared(r))),
            Ok(Err(refusal)) => Err(AccessError::Limited(refusal)),
            Err(e) => shared
                .unchecked(e)
                .map(|()| Reservation(Reserved::Unchecked)),
        }
    }

    /// Counts the request against the shared requests-per-minute limits, once (cluster mode; a no-op
    /// otherwise, where the door counted it, and after [`Caller::reserve`], which counts it itself). For
    /// calls that reserve no tokens: Route, embeddings, the model list, and completions refused before
    /// their reservation.
    pub async fn count_request(&self) -> Result<(), AccessError> {
        let Some(shared) = &self.shared else {
            return Ok(());
        };
        if shared.counted.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        match shared.cluster.reserve(&shared.holders, true, 0, 0.0).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(refusal)) => Err(AccessError::Limited(refusal)),
            Err(e) => shared.unchecked(e),
        }
    }
}

impl SharedLimits {
    /// Redis did not answer: admit or refuse per `cluster.limits_on_redis_error`.
    fn unchecked(&self, e: crate::cluster::ClusterError) -> Result<(), AccessError> {
        match self.cluster.fail_mode() {
            FailMode::Open => {
                self.cluster.metrics().limits_unchecked("admitted");
                tracing::debug!(error = %e, "shared limits unchecked (Redis did not answer): admitted");
                Ok(())
            }
            FailMode::Closed => {
                self.cluster.metrics().limits_unchecked("refused");
                Err(AccessError::Unavailable(e.to_string()))
            }
        }
    }
}

/// The keys in force and every holder's counters.
pub struct Access {
    ring: ArcSwap<KeyRing>,
    limiter: Arc<Limiter>,
    cluster: OnceLock<Arc<Cluster>>,
    file: Option<PathBuf>,
    seen: Mutex<Option<SystemTime>>,
    /// Held across read-change-write of the keys file, so two concurrent Admin changes cannot lose one
    /// another.
    writer: Mutex<()>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("file", &self.file)
            .field("keys", &self.ring.load().len())
            .finish_non_exhaustive()
    }
}

impl Access {
    /// No keys: every call is admitted, without limits.
    pub fn open() -> Self {
        Self {
            ring: ArcSwap::from_pointee(KeyRing::default()),
            limiter: Arc::new(Limiter::default()),
            cluster: OnceLock::new(),
            file: None,
            seen: Mutex::new(None),
            writer: Mutex::new(()),
        }
    }

    /// The keys of `path`, which [`Access::reload_if_changed`] re-reads when it changes.
    pub fn from_file(path: &Path) -> Result<Self, KeysError> {
        let file = KeysFile::load(path)?;
        Ok(Self {
            ring: ArcSwap::from_pointee(KeyRing::from_file(file)),
            limiter: Arc::new(Limiter::default()),
            cluster: OnceLock::new(),
            file: Some(path.to_path_buf()),
            seen: Mutex::new(mtime(path)),
            writer: Mutex::new(()),
        })
    }

    /// Cluster mode: requests per minute, tokens per minute and budgets are checked in `cluster` from
    /// now on (concurrency stays local). Set once, at start.
    pub fn attach_cluster(&self, cluster: Arc<Cluster>) {
        let _ = self.cluster.set(cluster);
    }

    /// The keys file, if any.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// The ring in force.
    pub fn ring(&self) -> Arc<KeyRing> {
        self.ring.load_full()
    }

    /// Re-reads the keys file when its modification time changed. A file that fails to load leaves the
    /// keys in force as they were. Returns whether new keys were installed.
    pub fn reload_if_changed(&self) -> Result<bool, KeysError> {
        let Some(path) = &self.file else {
            return Ok(false);
        };
        let now = mtime(path);
        {
            let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            if *seen == now {
                return Ok(false);
            }
        }
        self.install(path, now)?;
        Ok(true)
    }

    fn install(&self, path: &Path, stamp: Option<SystemTime>) -> Result<(), KeysError> {
        let file = KeysFile::load(path)?;
        self.ring.store(Arc::new(KeyRing::from_file(file)));
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = stamp;
        Ok(())
    }

    /// The keys file in force, read from disk (blocking: call it off the async workers).
    /// [`KeysError::NotConfigured`] when the server runs without a keys file.
    pub fn read_file(&self) -> Result<KeysFile, KeysError> {
        let path = self.file.as_deref().ok_or(KeysError::NotConfigured)?;
        KeysFile::load(path)
    }

    /// Changes the keys file in force with [`keys::edit_file`] and installs the result at once, so a new
    /// key works, and a revoked one is refused, from the next request on. Blocking file I/O: call it off
    /// the async workers. [`KeysError::NotConfigured`] when the server runs without a keys file.
    pub fn edit<T>(
        &self,
        change: impl FnOnce(&mut KeysFile) -> Result<T, KeysError>,
    ) -> Result<T, KeysError> {
        let Some(path) = &self.file else {
            return Err(KeysError::NotConfigured);
        };
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let out = keys::edit_file(path, change)?;
        // The stamp is taken before the read: a change landing in between is seen by the next poll.
        self.install(path, mtime(path))?;
        Ok(out)
    }

    /// Checks the `authorization` header's value and takes a request slot for the key: `Ok(None)` when the
    /// service runs open (no keys file, or keys not required and none presented).
    pub fn authenticate(
        &self,
        authorization: Option<&str>,
    ) -> Result<Option<Arc<Caller>>, AccessError> {
        let ring = self.ring.load();
        if !ring.configured {
            return Ok(None);
        }
        let presented = authorization.and_then(bearer);
        let Some(presented) = presented else {
            if ring.required {
                return Err(AccessError::Unauthenticated(
                    "this server needs an API key: send `authorization: Bearer sr_...`".into(),
                ));
            }
            return Ok(None);
        };
        // The message never repeats what was presented: it may be a real secret sent to the wrong place.
        let Some(key) = ring.find(presented) else {
            return Err(AccessError::Unauthenticated("invalid API key".into()));
        };
        let name = &key.entry.name;
        if key.entry.revoked {
            return Err(AccessError::Unauthenticated(format!(
                "the API key `{name}` was revoked"
            )));
        }
        if let Some(at) = key.expires_at {
            if at <= jiff::Timestamp::now() {
                return Err(AccessError::Unauthenticated(format!(
                    "the API key `{name}` expired at {at}"
                )));
            }
        }
        let tenant = key
            .entry
            .tenant
            .as_ref()
            .map(|t| (t.clone(), ring.tenants.get(t).cloned().unwrap_or_default()));
        // A rotated-out key (`name@hint`, valid for its grace period) shares its successor's counters.
        let holder = name.split_once('@').map_or(name.as_str(), |(n, _)| n);
        let holders = Holders {
            key: (holder.to_string(), key.entry.limits.clone()),
            tenant,
        };
        // Cluster mode: the door takes only the local concurrency slot; the rest is counted in Redis when
        // the request is first handled asynchronously (one round trip, see `Caller::reserve`).
        let (local, shared) = match self.cluster.get() {
            Some(cluster) => (
                holders.concurrency_only(),
                Some(SharedLimits {
                    cluster: cluster.clone(),
                    holders,
                    counted: AtomicBool::new(false),
                }),
            ),
            None => (holders, None),
        };
        let slot = self.limiter.admit(local).map_err(AccessError::Limited)?;
        Ok(Some(Arc::new(Caller {
            key: key.clone(),
            slot,
            shared,
        })))
    }
}

/// The token of an `authorization: Bearer <token>` value.
pub fn bearer(value: &str) -> Option<&str> {
    let v = value.trim();
    v.strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}
