//! `semroute.v1.Router`.

use std::sync::{Arc, OnceLock};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::complete;
use super::pb;
use crate::router::Router;
use crate::upstream::Forwarder;

/// The Router gRPC service. Answers UNAVAILABLE until the router is ready.
#[derive(Clone)]
pub struct RouterService {
    slot: Arc<OnceLock<Arc<Router>>>,
    forwarder: Arc<Forwarder>,
}

impl RouterService {
    /// A service over a router that will be placed in `slot` once built, forwarding completions with
    /// `forwarder`.
    pub fn new(slot: Arc<OnceLock<Arc<Router>>>, forwarder: Arc<Forwarder>) -> Self {
        Self { slot, forwarder }
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

    async fn complete(
        &self,
        request: Request<pb::CompleteRequest>,
    ) -> Result<Response<pb::CompleteResponse>, Status> {
        let router = self.router()?;
        let prepared = complete::prepare(router, request.into_inner()).await?;
        // If the caller cancels, tonic drops this future, and with it the upstream request.
        let response = prepared.forward(&self.forwarder, None).await?;
        Ok(Response::new(response))
    }

    type CompleteStreamStream = ReceiverStream<Result<pb::CompleteChunk, Status>>;

    async fn complete_stream(
        &self,
        request: Request<pb::CompleteRequest>,
    ) -> Result<Response<Self::CompleteStreamStream>, Status> {
        let router = self.router()?;
        let prepared = complete::prepare(router, request.into_inner()).await?;
        let (tx, rx) = mpsc::channel(32);
        tokio::spawn(complete::run_stream(prepared, self.forwarder.clone(), tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
