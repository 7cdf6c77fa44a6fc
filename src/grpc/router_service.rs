//! `semroute.v1.Router`: translation only — proto requests into gateway calls, gateway results and errors
//! back into proto messages and statuses.

use std::pin::Pin;
use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use super::pb;
use crate::gateway::{CompleteCall, Gateway, StreamEvent};
use crate::upstream::Delta;

/// The Router gRPC service over the gateway. Answers UNAVAILABLE until the gateway is ready.
#[derive(Clone)]
pub struct RouterService {
    gateway: Arc<Gateway>,
}

impl RouterService {
    /// A service over `gateway`.
    pub fn new(gateway: Arc<Gateway>) -> Self {
        Self { gateway }
    }
}

fn complete_call(req: pb::CompleteRequest) -> CompleteCall {
    CompleteCall {
        route: req.route.clone(),
        model: req.model.clone(),
        request: req.into(),
    }
}

#[tonic::async_trait]
impl pb::router_server::Router for RouterService {
    async fn route(
        &self,
        request: Request<pb::RouteRequest>,
    ) -> Result<Response<pb::RouteResponse>, Status> {
        let req = request.into_inner();
        if !req.metadata.is_empty() {
            tracing::debug!(metadata = ?req.metadata, "route request metadata");
        }
        let decision = self.gateway.route(req.into()).await?;
        Ok(Response::new(decision.into()))
    }

    async fn complete(
        &self,
        request: Request<pb::CompleteRequest>,
    ) -> Result<Response<pb::CompleteResponse>, Status> {
        // If the caller cancels, tonic drops this future, and with it the upstream request.
        let outcome = self
            .gateway
            .complete(complete_call(request.into_inner()))
            .await?;
        Ok(Response::new(outcome.into()))
    }

    type CompleteStreamStream =
        Pin<Box<dyn Stream<Item = Result<pb::CompleteChunk, Status>> + Send + 'static>>;

    async fn complete_stream(
        &self,
        request: Request<pb::CompleteRequest>,
    ) -> Result<Response<Self::CompleteStreamStream>, Status> {
        let events = self
            .gateway
            .complete_stream(complete_call(request.into_inner()))
            .await?;
        // The proto carries text only: a gRPC request cannot offer tools, so no tool-call deltas come.
        let chunks = events.filter_map(|event| {
            futures_util::future::ready(match event {
                StreamEvent::Delta(Delta::Text(delta)) => {
                    Some(Ok(pb::CompleteChunk { delta, done: None }))
                }
                StreamEvent::Delta(Delta::ToolCall(_)) => None,
                StreamEvent::Done(outcome) => {
                    // The proto's final chunk carries everything but the content, which the deltas delivered.
                    let mut done = pb::CompleteResponse::from(*outcome);
                    done.content.clear();
                    Some(Ok(pb::CompleteChunk {
                        delta: String::new(),
                        done: Some(done),
                    }))
                }
                StreamEvent::Error(e) => Some(Err(e.into())),
            })
        });
        Ok(Response::new(Box::pin(chunks)))
    }
}
