//! `semroute.v1.Router`: translation only — proto requests into gateway calls, gateway results and errors
//! back into proto messages and statuses.

use std::pin::Pin;
use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use super::pb;
use crate::access::Caller;
use crate::edge::Deadline;
use crate::gateway::{CompleteCall, Gateway, StreamEvent};
use crate::metrics::{grpc_code_name, Face, RequestGuard};
use crate::upstream::Delta;

/// The `method` labels of the Router's RPCs (their gRPC paths).
const ROUTE: &str = "/semroute.v1.Router/Route";
const COMPLETE: &str = "/semroute.v1.Router/Complete";
const COMPLETE_STREAM: &str = "/semroute.v1.Router/CompleteStream";

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

    /// Starts counting and timing one call of `method`; a call whose future is dropped (the client
    /// cancelled) counts as `Canceled`.
    fn track(&self, method: &'static str) -> RequestGuard {
        self.gateway.metrics().start_request(Face::Grpc, method)
    }
}

/// Records `result`'s code on `guard` and passes it on.
fn finish<T>(guard: RequestGuard, result: Result<T, Status>) -> Result<T, Status> {
    let code = match &result {
        Ok(_) => tonic::Code::Ok,
        Err(s) => s.code(),
    };
    guard.finish(grpc_code_name(code));
    result
}

/// The gateway call for a request, with the caller [`authenticate`] admitted.
fn complete_call(request: Request<pb::CompleteRequest>) -> CompleteCall {
    let caller = request.extensions().get::<Arc<Caller>>().cloned();
    let deadline = deadline_of(&request);
    let req = request.into_inner();
    CompleteCall {
        route: req.route.clone(),
        model: req.model.clone(),
        request: req.into(),
        caller,
        deadline,
    }
}

/// The caller's deadline, from `grpc-timeout` (put there by the door layer).
fn deadline_of<T>(request: &Request<T>) -> Option<std::time::Instant> {
    request.extensions().get::<Deadline>().map(|d| d.0)
}

/// A tonic interceptor for the Router service: checks the caller's key when keys are configured and
/// hands the admitted caller to the handler (its request slot lives as long as the call).
pub fn authenticate(gateway: Arc<Gateway>) -> impl tonic::service::Interceptor + Clone {
    move |mut req: Request<()>| -> Result<Request<()>, Status> {
        let header = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if let Some(caller) = gateway.access().authenticate(header)? {
            req.extensions_mut().insert(caller);
        }
        Ok(req)
    }
}

#[tonic::async_trait]
impl pb::router_server::Router for RouterService {
    async fn route(
        &self,
        request: Request<pb::RouteRequest>,
    ) -> Result<Response<pb::RouteResponse>, Status> {
        let guard = self.track(ROUTE);
        // Cluster mode: a Route call counts against the shared request limits here (no reservation).
        if let Some(caller) = request.extensions().get::<Arc<Caller>>() {
            if let Err(e) = caller.count_request().await {
                return finish(guard, Err(e.into()));
            }
        }
        let deadline = deadline_of(&request);
        let req = request.into_inner();
        if !req.metadata.is_empty() {
            tracing::debug!(metadata = ?req.metadata, "route request metadata");
        }
        let mut query: crate::router::RouteQuery = req.into();
        query.deadline = deadline;
        let result = self.gateway.route(query).await;
        finish(
            guard,
            result.map(|d| Response::new(d.into())).map_err(Into::into),
        )
    }

    async fn complete(
        &self,
        request: Request<pb::CompleteRequest>,
    ) -> Result<Response<pb::CompleteResponse>, Status> {
        let guard = self.track(COMPLETE);
        // If the caller cancels, tonic drops this future, and with it the upstream request.
        let result = self.gateway.complete(complete_call(request)).await;
        finish(
            guard,
            result.map(|o| Response::new(o.into())).map_err(Into::into),
        )
    }

    type CompleteStreamStream =
        Pin<Box<dyn Stream<Item = Result<pb::CompleteChunk, Status>> + Send + 'static>>;

    async fn complete_stream(
        &self,
        request: Request<pb::CompleteRequest>,
    ) -> Result<Response<Self::CompleteStreamStream>, Status> {
        let guard = self.track(COMPLETE_STREAM);
        let events = match self.gateway.complete_stream(complete_call(request)).await {
            Ok(events) => events,
            Err(e) => return finish(guard, Err(e.into())),
        };
        // The call counts when its final status is known: the last chunk, or an error in the stream. The
        // proto carries text only: a gRPC request cannot offer tools, so no tool-call deltas come.
        let mut guard = Some(guard);
        let chunks = events.filter_map(move |event| {
            futures_util::future::ready(match event {
                StreamEvent::Delta(Delta::Text(delta)) => {
                    Some(Ok(pb::CompleteChunk { delta, done: None }))
                }
                StreamEvent::Delta(Delta::ToolCall(_)) => None,
                StreamEvent::Done(outcome) => {
                    // The proto's final chunk carries everything but the content, which the deltas delivered.
                    let mut done = pb::CompleteResponse::from(*outcome);
                    done.content.clear();
                    let chunk = Ok(pb::CompleteChunk {
                        delta: String::new(),
                        done: Some(done),
                    });
                    Some(match guard.take() {
                        Some(g) => finish(g, chunk),
                        None => chunk,
                    })
                }
                StreamEvent::Error(e) => {
                    let status = Err(e.into());
                    Some(match guard.take() {
                        Some(g) => finish(g, status),
                        None => status,
                    })
                }
            })
        });
        Ok(Response::new(Box::pin(chunks)))
    }
}
