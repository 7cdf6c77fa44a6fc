//! `Complete` and `CompleteStream`: decide the route (unless given), then hand the request to the
//! forwarder with the targets of the same snapshot that decided.

use std::sync::Arc;

use tokio::sync::mpsc;
use tonic::Status;

use super::pb;
use crate::router::{Decision, RouteQuery, Router, Snapshot};
use crate::upstream::{self, CompletionRequest, Forwarder, UpstreamError};

/// A request ready to forward: the pinned snapshot, the decision and the domain request.
pub(super) struct Prepared {
    snapshot: Arc<Snapshot>,
    decision: Decision,
    route: String,
    model: Option<String>,
    request: CompletionRequest,
}

/// Validates, pins the live snapshot and decides the route.
pub(super) async fn prepare(router: &Router, req: pb::CompleteRequest) -> Result<Prepared, Status> {
    let snapshot = router.snapshot();
    let route = req.route.clone().filter(|r| !r.is_empty());
    let model = req.model.clone().filter(|m| !m.is_empty());
    let request = CompletionRequest::from(req);
    upstream::validate(&snapshot.config, &request)?;
    let decision = match route {
        Some(r) => {
            if !snapshot.config.routes.iter().any(|x| x.name == r) {
                return Err(UpstreamError::UnknownRoute(r).into());
            }
            Decision {
                route: Some(r),
                score: 0.0,
                matched: true,
                candidates: Vec::new(),
                neighbours: Vec::new(),
                index_version: snapshot.version,
                embed_micros: 0,
                search_micros: 0,
            }
        }
        None => {
            let query = RouteQuery {
                messages: request.messages.clone(),
                ..Default::default()
            };
            router.route_on(&snapshot, query).await?
        }
    };
    let route = decision.route.clone().ok_or_else(|| {
        Status::from(UpstreamError::NoTargets(
            "no route cleared its threshold and there is no default_route".into(),
        ))
    })?;
    Ok(Prepared {
        snapshot,
        decision,
        route,
        model,
        request,
    })
}

impl Prepared {
    /// Forwards, streaming deltas into `deltas` when given.
    pub(super) async fn forward(
        self,
        forwarder: &Forwarder,
        deltas: Option<&mpsc::Sender<String>>,
    ) -> Result<pb::CompleteResponse, UpstreamError> {
        let dest = upstream::Destination {
            route: &self.route,
            model: self.model.as_deref(),
        };
        let completion = forwarder
            .complete(&self.snapshot.config, dest, &self.request, deltas)
            .await?;
        tracing::info!(
            route = %self.route,
            model = %completion.served_by.model,
            attempts = completion.attempts.len(),
            input_tokens = completion.usage.input_tokens,
            output_tokens = completion.usage.output_tokens,
            "completed"
        );
        let mut response = pb::CompleteResponse::from(completion);
        response.decision = Some(self.decision.into());
        Ok(response)
    }
}

/// Drives one streamed completion into `out`. When the caller goes away, `out` closes and the forwarding
/// future is dropped, which closes the upstream connection.
pub(super) async fn run_stream(
    prepared: Prepared,
    forwarder: Arc<Forwarder>,
    out: mpsc::Sender<Result<pb::CompleteChunk, Status>>,
) {
    let (dtx, mut drx) = mpsc::channel::<String>(32);
    let forward = prepared.forward(&forwarder, Some(&dtx));
    tokio::pin!(forward);
    let delta = |d: String| {
        Ok(pb::CompleteChunk {
            delta: d,
            done: None,
        })
    };
    let result = loop {
        tokio::select! {
            biased;
            _ = out.closed() => {
                tracing::debug!("stream cancelled by the caller");
                return;
            }
            Some(d) = drx.recv() => {
                if out.send(delta(d)).await.is_err() {
                    return;
                }
            }
            r = &mut forward => break r,
        }
    };
    while let Ok(d) = drx.try_recv() {
        if out.send(delta(d)).await.is_err() {
            return;
        }
    }
    let last = result.map_err(Status::from).map(|r| pb::CompleteChunk {
        delta: String::new(),
        done: Some(r),
    });
    let _ = out.send(last).await;
}
