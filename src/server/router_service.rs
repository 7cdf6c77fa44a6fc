//! `semroute.v1.Router`.

use std::sync::{Arc, OnceLock};

use tonic::{Request, Response, Status};

use super::pb;
use crate::router::Router;

/// The Router gRPC service. Answers UNAVAILABLE until the router is ready.
#[derive(Clone)]
pub struct RouterService {
    slot: Arc<OnceLock<Arc<Router>>>,
}

impl RouterService {
    /// A service over a router that will be placed in `slot` once built.
    pub fn new(slot: Arc<OnceLock<Arc<Router>>>) -> Self {
        Self { slot }
    }

    fn router(&self) -> Result<&Arc<Router>, Status> {
        super::ready(&self.slot)
    }
}

#[tonic::async_trait]
impl pb::router_server::Router for RouterService {
    async fn route(
        &self,
        request: Request<pb::RouteRequest>,
    ) -> Result<Response<pb::RouteResponse>, Status> {
        let router = self.router()?;
        let req = request.into_inner();
        if !req.metadata.is_empty() {
            tracing::debug!(metadata = ?req.metadata, "route request metadata");
        }
        let decision = router.route(req.into()).await?;
        tracing::debug!(
            route = decision.route.as_deref().unwrap_or(""),
            score = decision.score,
            matched = decision.matched,
            "routed"
        );
        Ok(Response::new(decision.into()))
    }
}
