//! The per-listener concurrency limit, tried at the door: a request that finds the listener full is
//! refused at once (RESOURCE_EXHAUSTED / 429) instead of waiting for a slot, and an admitted one holds its
//! slot until its response body ends, so a long stream counts for as long as it runs. The gRPC face gets
//! it as a tower layer ([`DoorLayer`], which also fixes the request's [`Deadline`]); the HTTP face as an
//! axum middleware over the same [`Door`].
//!
//! Our own small layer rather than tower's `ConcurrencyLimit` + `LoadShed`: those release the slot when the
//! response head is returned, so streams would escape the limit.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::deadline::{self, Deadline};
use crate::metrics::{Face, Metrics};

/// Requests one listener serves at once.
#[derive(Clone)]
pub struct Door {
    slots: Arc<Semaphore>,
    limit: usize,
    face: Face,
    metrics: Arc<Metrics>,
}

/// Refused at the door: the listener is at its limit.
#[derive(Debug, Clone, thiserror::Error)]
#[error("overloaded: the {face} listener is serving its limit of {limit} concurrent requests ({flag}); retry shortly")]
pub struct Full {
    /// The face's name.
    pub face: &'static str,
    /// The limit.
    pub limit: usize,
    /// The setting that sets it.
    pub flag: &'static str,
}

impl Door {
    /// A door letting `limit` requests of `face` in at once.
    pub fn new(limit: usize, face: Face, metrics: Arc<Metrics>) -> Self {
        let limit = limit.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            slots: Arc::new(Semaphore::new(limit)),
            limit,
            face,
            metrics,
        }
    }

    /// A slot, or [`Full`] at once.
    pub fn enter(&self) -> Result<OwnedSemaphorePermit, Full> {
        self.slots.clone().try_acquire_owned().map_err(|_| {
            self.metrics.refused_at_door();
            let (face, flag) = match self.face {
                Face::Grpc => ("gRPC", "serve --grpc-max-concurrent"),
                Face::Http => ("HTTP", "serve --http-max-concurrent"),
            };
            Full {
                face,
                limit: self.limit,
                flag,
            }
        })
    }

    /// Requests being served now.
    pub fn in_flight(&self) -> usize {
        self.limit - self.slots.available_permits()
    }
}

/// Keeps `permit` until `body` ends or is dropped.
pub fn hold_until_end<B>(
    body: B,
    permit: OwnedSemaphorePermit,
) -> impl http_body::Body<Data = Bytes, Error = B::Error> + Send + 'static
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
{
    body.map_frame(move |f| {
        let _held = &permit;
        f
    })
}

/// The gRPC face's door: limits the Router service's calls (health, reflection and Admin pass freely, so
/// an overloaded replica still answers its probes) and puts each request's [`Deadline`] from
/// `grpc-timeout` in its extensions.
#[derive(Clone)]
pub struct DoorLayer {
    door: Door,
}

impl DoorLayer {
    /// A layer over `door`.
    pub fn new(door: Door) -> Self {
        Self { door }
    }
}

impl<S> tower::Layer<S> for DoorLayer {
    type Service = DoorService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DoorService {
            inner,
            door: self.door.clone(),
        }
    }
}

/// The service [`DoorLayer`] makes.
#[derive(Clone)]
pub struct DoorService<S> {
    inner: S,
    door: Door,
}

/// Only these calls are limited.
const LIMITED_PREFIX: &str = "/semroute.v1.Router/";

/// These calls get a request span (health checks and reflection do not).
const TRACED_PREFIX: &str = "/semroute.v1.";

/// The caller's `x-request-id` when usable (printable ASCII, at most 128 bytes), else a fresh one.
pub fn request_id(headers: &http::HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| format!("{:016x}", fastrand::u64(..)), str::to_string)
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for DoorService<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<ReqBody>) -> Self::Future {
        let permit = if req.uri().path().starts_with(LIMITED_PREFIX) {
            match self.door.enter() {
                Ok(p) => Some(p),
                Err(full) => {
                    let mut status = tonic::Status::resource_exhausted(full.to_string());
                    if let Ok(v) = "1".parse() {
                        status.metadata_mut().insert("retry-after", v);
                    }
                    if let Ok(v) = "1000".parse() {
                        status.metadata_mut().insert("retry-after-ms", v);
                    }
                    return Box::pin(std::future::ready(Ok(status.into_http())));
                }
            }
        } else {
            None
        };
        if let Some(t) = deadline::grpc_timeout(req.headers()) {
            req.extensions_mut().insert(Deadline(Instant::now() + t));
        }
        let path = req.uri().path();
        let span = if path.starts_with(TRACED_PREFIX) {
            let method = path.rsplit('/').next().unwrap_or_default().to_string();
            let id = request_id(req.headers());
            crate::telemetry::span::request("grpc", &method, &id, req.headers())
        } else {
            tracing::Span::none()
        };
        let call = span.in_scope(|| self.inner.call(req));
        let call = tracing::Instrument::instrument(call, span);
        Box::pin(async move {
            let resp = call.await?;
            Ok(match permit {
                Some(p) => resp.map(|b| tonic::body::Body::new(hold_until_end(b, p))),
                None => resp.map(tonic::body::Body::new),
            })
        })
    }
}
