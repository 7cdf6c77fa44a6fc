//! `semroute.v1.Admin`.

use std::sync::{Arc, OnceLock};

use tonic::{Request, Response, Status};

use super::pb;
use crate::access::keys::{self, KeyEntry, KeySpec, KeysError, KeysFile};
use crate::access::{Access, Limits};
use crate::admin::{AdminError, ChangeReport, ControlPlane};
use crate::config::{self, RouteConfig};
use crate::index::SearchMode;

/// The Admin gRPC service. Route calls answer UNAVAILABLE until the router is ready; key calls work at
/// once.
#[derive(Clone)]
pub struct AdminService {
    slot: Arc<OnceLock<Arc<ControlPlane>>>,
    access: Arc<Access>,
}

impl AdminService {
    /// A service over a control plane that will be placed in `slot` once the router is built, and over the
    /// client keys in force (`access`).
    pub fn new(slot: Arc<OnceLock<Arc<ControlPlane>>>, access: Arc<Access>) -> Self {
        Self { slot, access }
    }

    fn plane(&self) -> Result<&Arc<ControlPlane>, Status> {
        super::ready(&self.slot)
    }

    /// Applies `change` to the keys file off the async workers (file I/O) and installs the result.
    async fn edit_keys<T: Send + 'static>(
        &self,
        change: impl FnOnce(&mut KeysFile) -> Result<T, KeysError> + Send + 'static,
    ) -> Result<T, Status> {
        let access = self.access.clone();
        tokio::task::spawn_blocking(move || access.edit(change))
            .await
            .map_err(|e| Status::internal(format!("the key change did not finish: {e}")))?
            .map_err(keys_status)
    }
}

/// The status of a key change that failed. Messages carry names and paths, never a secret (no error of
/// the keys layer holds one).
fn keys_status(e: KeysError) -> Status {
    match e {
        KeysError::NotConfigured => Status::failed_precondition(e.to_string()),
        KeysError::UnknownKey(_) => Status::not_found(e.to_string()),
        KeysError::Exists(_) => Status::already_exists(e.to_string()),
        KeysError::BadName(_) | KeysError::BadGrace(_) | KeysError::Invalid { .. } => {
            Status::invalid_argument(e.to_string())
        }
        KeysError::Io { .. } | KeysError::Random(_) => Status::internal(e.to_string()),
    }
}

fn key_limits(l: &Limits) -> pb::KeyLimits {
    pb::KeyLimits {
        rpm: l.rpm,
        tpm: l.tpm,
        concurrency: l.concurrency,
        daily_usd: l.daily_usd,
        monthly_usd: l.monthly_usd,
    }
}

fn key_info(k: &KeyEntry) -> pb::KeyInfo {
    pb::KeyInfo {
        name: k.name.clone(),
        hint: k.hint.clone(),
        tenant: k.tenant.clone(),
        attributes: k
            .attributes
            .iter()
            .map(|(a, v)| (a.clone(), v.clone()))
            .collect(),
        routes: k.routes.clone(),
        models: k.models.clone(),
        limits: Some(key_limits(&k.limits)),
        expires_at: k.expires_at.clone(),
        revoked: k.revoked,
    }
}

fn key_spec(r: pb::CreateKeyRequest) -> KeySpec {
    let l = r.limits.unwrap_or_default();
    KeySpec {
        name: r.name,
        tenant: r.tenant,
        attributes: r.attributes.into_iter().collect(),
        routes: r.routes,
        models: r.models,
        limits: Limits {
            rpm: l.rpm,
            tpm: l.tpm,
            concurrency: l.concurrency,
            daily_usd: l.daily_usd,
            monthly_usd: l.monthly_usd,
        },
        expires_at: r.expires_at,
    }
}

fn spec(r: &RouteConfig) -> pb::RouteSpec {
    pb::RouteSpec {
        name: r.name.clone(),
        description: r.description.clone(),
        threshold: r.threshold,
        utterances: r.utterances.clone(),
        yaml: serde_yaml::to_string(r).unwrap_or_default(),
    }
}

fn change(r: ChangeReport) -> pb::ChangeResponse {
    pb::ChangeResponse {
        index_version: r.snapshot.version,
        affected: r.affected as u32,
        embedded: r.snapshot.embedded as u32,
        routes: r.snapshot.config.routes.len() as u32,
        exemplars: r.snapshot.index.len() as u32,
    }
}

/// Builds the route for a typed upsert: the typed fields over the existing route of that name, so fields the
/// typed message does not model (e.g. targets) survive.
fn route_from_spec(
    s: pb::RouteSpec,
    existing: Option<&RouteConfig>,
) -> Result<RouteConfig, AdminError> {
    let mut value = match existing {
        Some(r) => serde_yaml::to_value(r).map_err(|e| AdminError::BadRequest(e.to_string()))?,
        None => serde_yaml::Value::Mapping(Default::default()),
    };
    let map = value
        .as_mapping_mut()
        .ok_or_else(|| AdminError::BadRequest("route is not a mapping".into()))?;
    map.insert("name".into(), s.name.into());
    map.insert("description".into(), s.description.into());
    match s.threshold {
        Some(t) => map.insert("threshold".into(), f64::from(t).into()),
        None => map.remove("threshold"),
    };
    map.insert(
        "utterances".into(),
        serde_yaml::Value::Sequence(s.utterances.into_iter().map(Into::into).collect()),
    );
    serde_yaml::from_value(value).map_err(|e| AdminError::BadRequest(format!("route: {e}")))
}

#[tonic::async_trait]
impl pb::admin_server::Admin for AdminService {
    async fn rebuild_index(
        &self,
        _: Request<pb::RebuildIndexRequest>,
    ) -> Result<Response<pb::ChangeResponse>, Status> {
        let r = self.plane()?.rebuild_from_disk().await?;
        Ok(Response::new(change(r)))
    }

    async fn list_routes(
        &self,
        _: Request<pb::ListRoutesRequest>,
    ) -> Result<Response<pb::ListRoutesResponse>, Status> {
        let snap = self.plane()?.router().snapshot();
        Ok(Response::new(pb::ListRoutesResponse {
            routes: snap.config.routes.iter().map(spec).collect(),
        }))
    }

    async fn get_route(
        &self,
        req: Request<pb::GetRouteRequest>,
    ) -> Result<Response<pb::RouteSpec>, Status> {
        let name = req.into_inner().name;
        let snap = self.plane()?.router().snapshot();
        let route = snap
            .config
            .routes
            .iter()
            .find(|r| r.name == name)
            .ok_or(AdminError::NotFound(name))?;
        Ok(Response::new(spec(route)))
    }

    async fn upsert_route(
        &self,
        req: Request<pb::UpsertRouteRequest>,
    ) -> Result<Response<pb::ChangeResponse>, Status> {
        let plane = self.plane()?;
        let route = match req.into_inner().route {
            Some(pb::upsert_route_request::Route::Yaml(y)) => {
                config::parse_fragment::<RouteConfig>(&y, "route.yaml").map_err(AdminError::from)?
            }
            Some(pb::upsert_route_request::Route::Spec(s)) => {
                let snap = plane.router().snapshot();
                let existing = snap.config.routes.iter().find(|r| r.name == s.name);
                route_from_spec(s, existing)?
            }
            None => return Err(Status::invalid_argument("set `spec` or `yaml`")),
        };
        Ok(Response::new(change(plane.upsert_route(route).await?)))
    }

    async fn delete_route(
        &self,
        req: Request<pb::DeleteRouteRequest>,
    ) -> Result<Response<pb::ChangeResponse>, Status> {
        let r = self.plane()?.delete_route(&req.into_inner().name).await?;
        Ok(Response::new(change(r)))
    }

    async fn add_utterances(
        &self,
        req: Request<pb::UtterancesRequest>,
    ) -> Result<Response<pb::ChangeResponse>, Status> {
        let req = req.into_inner();
        let r = self
            .plane()?
            .add_utterances(&req.route, req.utterances)
            .await?;
        Ok(Response::new(change(r)))
    }

    async fn remove_utterances(
        &self,
        req: Request<pb::UtterancesRequest>,
    ) -> Result<Response<pb::ChangeResponse>, Status> {
        let req = req.into_inner();
        let r = self
            .plane()?
            .remove_utterances(&req.route, req.utterances)
            .await?;
        Ok(Response::new(change(r)))
    }

    async fn get_index_info(
        &self,
        _: Request<pb::GetIndexInfoRequest>,
    ) -> Result<Response<pb::IndexInfo>, Status> {
        let plane = self.plane()?;
        let snap = plane.router().snapshot();
        let info = plane.router().embedder().info();
        Ok(Response::new(pb::IndexInfo {
            index_version: snap.version,
            model: info.dir.display().to_string(),
            model_identity: info.identity.clone(),
            routes: snap.config.routes.len() as u32,
            exemplars: snap.index.len() as u32,
            built_at_unix_ms: snap
                .built_at
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            build_millis: snap.build_duration.as_millis() as u64,
            embedded_last_build: snap.embedded as u32,
            search_mode: match snap.index.mode() {
                SearchMode::Exact => "exact".into(),
                SearchMode::Hnsw => "hnsw".into(),
            },
            last_reload_error: plane.last_error().unwrap_or_default(),
            cache_hits: plane.router().cache_stats().hits,
            cache_misses: plane.router().cache_stats().misses,
        }))
    }

    async fn create_key(
        &self,
        req: Request<pb::CreateKeyRequest>,
    ) -> Result<Response<pb::IssuedKey>, Status> {
        let spec = key_spec(req.into_inner());
        let issued = self.edit_keys(move |f| f.create(spec)).await?;
        tracing::info!(key = %issued.entry.name, "client key created");
        Ok(Response::new(pb::IssuedKey {
            key: Some(key_info(&issued.entry)),
            secret: issued.secret,
            previous_valid_until: None,
        }))
    }

    async fn list_keys(
        &self,
        _: Request<pb::ListKeysRequest>,
    ) -> Result<Response<pb::ListKeysResponse>, Status> {
        let access = self.access.clone();
        let file = tokio::task::spawn_blocking(move || access.read_file())
            .await
            .map_err(|e| Status::internal(format!("reading the keys did not finish: {e}")))?
            .map_err(keys_status)?;
        let keys = file.keys.iter().map(key_info).collect();
        Ok(Response::new(pb::ListKeysResponse { keys }))
    }

    async fn revoke_key(
        &self,
        req: Request<pb::RevokeKeyRequest>,
    ) -> Result<Response<pb::RevokeKeyResponse>, Status> {
        let name = req.into_inner().name;
        let revoked = self.edit_keys(move |f| f.revoke(&name)).await?;
        tracing::info!(keys = ?revoked, "client keys revoked");
        Ok(Response::new(pb::RevokeKeyResponse { revoked }))
    }

    async fn rotate_key(
        &self,
        req: Request<pb::RotateKeyRequest>,
    ) -> Result<Response<pb::IssuedKey>, Status> {
        let req = req.into_inner();
        let grace = req.grace_seconds.unwrap_or(keys::DEFAULT_GRACE_SECS);
        let name = req.name;
        let (issued, until) = self.edit_keys(move |f| f.rotate(&name, grace)).await?;
        tracing::info!(key = %issued.entry.name, previous_valid_until = %until, "client key rotated");
        Ok(Response::new(pb::IssuedKey {
            key: Some(key_info(&issued.entry)),
            secret: issued.secret,
            previous_valid_until: Some(until.to_string()),
        }))
    }
}
