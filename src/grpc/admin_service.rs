//! `semroute.v1.Admin`.

use std::sync::{Arc, OnceLock};

use tonic::{Request, Response, Status};

use super::pb;
use crate::admin::{AdminError, ChangeReport, ControlPlane};
use crate::config::{self, RouteConfig};
use crate::index::SearchMode;

/// The Admin gRPC service. Answers UNAVAILABLE until the router is ready.
#[derive(Clone)]
pub struct AdminService {
    slot: Arc<OnceLock<Arc<ControlPlane>>>,
}

impl AdminService {
    /// A service over a control plane that will be placed in `slot` once the router is built.
    pub fn new(slot: Arc<OnceLock<Arc<ControlPlane>>>) -> Self {
        Self { slot }
    }

    fn plane(&self) -> Result<&Arc<ControlPlane>, Status> {
        super::ready(&self.slot)
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
}
