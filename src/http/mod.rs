//! The HTTP face: an OpenAI-compatible API (axum) over the same gateway as the gRPC face. Translation only:
//! wire JSON into gateway calls, results and [`crate::gateway::GatewayError`] back into OpenAI's shapes
//! and statuses ([`error`]).
//!
//! - `POST /v1/chat/completions` ([`chat`]): JSON and SSE; `model` = alias / route / model.
//! - `POST /v1/embeddings`: the router's encoder, through the same model queue.
//! - `GET /v1/models`: the alias, the routes and the models.
//! - `POST /v1/route`: the routing decision with its evidence.
//! - `GET /healthz` (alive), `GET /readyz` (model and index ready), `GET /openapi.json`.

pub mod chat;
pub mod error;

use std::future::Future;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json};
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::access::Caller;
use crate::edge::door::hold_until_end;
use crate::edge::{deadline, Deadline, Door};
use crate::gateway::Gateway;
use crate::message::ChatMessage;
use crate::metrics::{Face, Metrics};
use crate::router::RouteQuery;
use error::ApiError;

/// Largest request body accepted (413 above it). Prompts themselves are bounded by
/// `limits.max_input_bytes`; this bounds what is read before that check.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// The request's id: the client's `x-request-id` when it sent a usable one, else a fresh one. Echoed in
/// the response's `x-request-id` and used in completion ids.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

const REQUEST_ID: &str = "x-request-id";

/// Gives the request its id and its span (see [`crate::telemetry::span::request`]); the handler, and any
/// stream it starts, run inside the span.
async fn request_id(mut req: Request, next: Next) -> Response {
    let id = crate::edge::door::request_id(req.headers());
    req.extensions_mut().insert(RequestId(id.clone()));
    let method = req.extensions().get::<MatchedPath>().map_or_else(
        || UNMATCHED.to_string(),
        |p| format!("{} {}", req.method(), p.as_str()),
    );
    // The API only: probes and scrapes would fill traces with noise.
    let span = if req.uri().path().starts_with("/v1/") {
        crate::telemetry::span::request("http", &method, &id, req.headers())
    } else {
        tracing::Span::none()
    };
    let mut resp = tracing::Instrument::instrument(next.run(req), span).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    resp
}

/// The `method` label of a request no route matched (a 404): the raw path would let any client create
/// series without bound.
const UNMATCHED: &str = "unmatched";

/// Counts and times every request by its matched route path (not the raw URI, which is unbounded) and
/// status. Outermost, so panics' 500s and refusals by inner layers count too. An SSE response counts when
/// its head is sent.
async fn track(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let path = req.extensions().get::<MatchedPath>().cloned();
    let resp = next.run(req).await;
    let method = path.as_ref().map_or(UNMATCHED, MatchedPath::as_str);
    metrics.request(
        Face::Http,
        method,
        resp.status().as_str(),
        started.elapsed(),
    );
    resp
}

/// Parses a JSON body, naming the field at fault (`messages[0].role: invalid type ...`).
fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::invalid(format!("the body is not valid JSON: {inner}"));
        }
        let mut why = inner.to_string();
        if let Some(cut) = why.rfind(" at line ") {
            why.truncate(cut);
        }
        // Untagged enums say only "did not match any variant": say what would have.
        if why.contains("untagged enum Content") {
            why = "expected a string or an array of content parts".into();
        } else if why.contains("untagged enum EmbeddingInput") {
            why =
                "expected a string or an array of strings (token-id arrays are not accepted: the \
                   router embeds text; LangChain: check_embedding_ctx_length=False)"
                    .into();
        } else if why.contains("did not match any variant of untagged enum") {
            why = "expected a string or an array of strings".into();
        }
        let message = format!("{path}: {why}");
        if path == "." {
            ApiError::invalid(message)
        } else {
            ApiError::invalid_param(path, message)
        }
    })
}

/// The body, or the error for one that was too large or broke off.
fn body_or_error(
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(MAX_BODY_BYTES)
        } else {
            ApiError::invalid(format!("could not read the body: {e}"))
        }
    })
}

/// Checks the caller's key (when keys are configured) and hands the caller to the handler; a refusal
/// (401, or 429 over the key's request limits) ends the request here.
async fn authenticate(
    State(gateway): State<Arc<Gateway>>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let header = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match gateway.access().authenticate(header) {
        Ok(caller) => {
            if let Some(c) = caller {
                // Cluster mode: calls without a token reservation count against the shared request
                // limits here; completions count in their reservation (one Redis round trip each).
                if req.uri().path() != "/v1/chat/completions" {
                    if let Err(e) = c.count_request().await {
                        return ApiError::from(e).into_response();
                    }
                }
                req.extensions_mut().insert(c);
            }
            next.run(req).await
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn chat_completions(
    State(gateway): State<Arc<Gateway>>,
    Extension(id): Extension<RequestId>,
    caller: Option<Extension<Arc<Caller>>>,
    deadline: Option<Extension<Deadline>>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let parsed = body_or_error(body).and_then(|b| parse::<chat::ChatRequest>(&b));
    match parsed {
        Ok(req) => {
            let caller = caller.map(|Extension(c)| c);
            let deadline = deadline.map(|Extension(d)| d.0);
            chat::completions(gateway, id, caller, deadline, req).await
        }
        Err(e) => e.into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct EmbeddingsRequest {
    model: String,
    input: EmbeddingInput,
    #[serde(default)]
    encoding_format: Option<String>,
    #[serde(default)]
    dimensions: Option<u32>,
    #[serde(default)]
    #[allow(dead_code)]
    user: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum EmbeddingInput {
    One(String),
    Many(Vec<String>),
}

async fn embeddings(
    State(gateway): State<Arc<Gateway>>,
    deadline: Option<Extension<Deadline>>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let req: EmbeddingsRequest = parse(&body_or_error(body)?)?;
    let name = gateway.encoder_name()?;
    let alias = gateway.router()?.snapshot().config.http.model_alias.clone();
    if req.model != name && req.model != alias {
        return Err(ApiError::not_found(format!(
            "the embedding model `{}` does not exist here: use `{name}` (the router's encoder) or `{alias}`",
            req.model
        )));
    }
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::invalid_param(
                "encoding_format",
                format!("`{other}`: expected float or base64"),
            ))
        }
    };
    let texts = match req.input {
        EmbeddingInput::One(t) => vec![t],
        EmbeddingInput::Many(v) => v,
    };
    let out = gateway
        .embed(texts, deadline.map(|Extension(d)| d.0))
        .await?;
    let dim = out.vectors.first().map_or(0, Vec::len);
    if let Some(d) = req.dimensions {
        if d as usize != dim {
            return Err(ApiError::invalid_param(
                "dimensions",
                format!("the encoder gives {dim} dimensions; it cannot shorten them"),
            ));
        }
    }
    let data: Vec<Value> = out
        .vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let tokens: usize = out.tokens.iter().sum();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": name,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }))
    .into_response())
}

async fn models(State(gateway): State<Arc<Gateway>>) -> Result<Response, ApiError> {
    let snapshot = gateway.router()?.snapshot();
    let c = &snapshot.config;
    let entry = |id: &str, kind: &str| json!({"id": id, "object": "model", "created": 0, "owned_by": "semroute", "semroute_kind": kind});
    let mut data = vec![entry(&c.http.model_alias, "alias")];
    data.extend(c.routes.iter().map(|r| entry(&r.name, "route")));
    data.extend(c.models.iter().map(|m| entry(&m.name, "model")));
    Ok(Json(json!({"object": "list", "data": data})).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteBody {
    #[serde(default)]
    text: String,
    #[serde(default)]
    messages: Vec<RouteMessage>,
    #[serde(default)]
    top_k: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteMessage {
    role: String,
    content: String,
}

async fn route(
    State(gateway): State<Arc<Gateway>>,
    deadline: Option<Extension<Deadline>>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let req: RouteBody = parse(&body_or_error(body)?)?;
    let query = RouteQuery {
        text: req.text,
        messages: req
            .messages
            .into_iter()
            .map(|m| ChatMessage::text(m.role, m.content))
            .collect(),
        top_k: req.top_k,
        deadline: deadline.map(|Extension(d)| d.0),
    };
    let decision = gateway.route(query).await?;
    Ok(Json(decision).into_response())
}

/// The OpenAPI document of this face, checked in beside the code it describes.
const OPENAPI: &str = include_str!("openapi.json");

async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
        .into_response()
}

async fn healthz() -> Response {
    Json(json!({"status": "alive"})).into_response()
}

async fn readyz(State(gateway): State<Arc<Gateway>>) -> Response {
    if gateway.is_ready() {
        Json(json!({"status": "ready"})).into_response()
    } else if gateway.router().is_ok() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "restarting", "message": "the model failed and is being loaded again"})),
        )
            .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "starting", "message": "the model and route index are loading"})),
        )
            .into_response()
    }
}

async fn not_found() -> ApiError {
    ApiError {
        code: Some("unknown_url"),
        param: None,
        ..ApiError::not_found(
            "no such endpoint: POST /v1/chat/completions, POST /v1/embeddings, GET /v1/models, \
             POST /v1/route, GET /healthz, GET /readyz, GET /openapi.json",
        )
    }
}

async fn method_not_allowed() -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        code: Some("method_not_allowed"),
        param: None,
        ..ApiError::invalid("this endpoint does not take that method (see GET /openapi.json)")
    }
}

/// A handler panic becomes a 500 in OpenAI's shape instead of a dropped connection; the process serves on.
fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("an HTTP handler panicked");
    ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        message: "internal error".into(),
        kind: "server_error",
        param: None,
        code: None,
        retry_after: None,
        headers: Box::default(),
    }
    .into_response()
}

/// The door of the API routes: the listener's concurrency limit (a full listener answers 429 at once;
/// a slot is held until the response body ends, streams included) and the caller's deadline from
/// `x-request-timeout` / `x-stainless-timeout` (a malformed value is a 400 naming the header).
async fn door(State(door): State<Door>, mut req: Request, next: Next) -> Response {
    let permit = match door.enter() {
        Ok(p) => p,
        Err(full) => return ApiError::overloaded(full.to_string()).into_response(),
    };
    match deadline::http_timeout(req.headers()) {
        Ok(Some(t)) => {
            req.extensions_mut()
                .insert(Deadline(std::time::Instant::now() + t));
        }
        Ok(None) => {}
        Err(m) => return ApiError::invalid(m).into_response(),
    }
    next.run(req)
        .await
        .map(|b| axum::body::Body::new(hold_until_end(b, permit)))
}

/// Concurrent API requests the HTTP face serves by default (`serve --http-max-concurrent`).
pub const DEFAULT_MAX_CONCURRENT: usize = 4096;

/// The HTTP face's routes over `gateway`, with the default concurrency limit.
pub fn app(gateway: Arc<Gateway>) -> axum::Router {
    app_with_limit(gateway, DEFAULT_MAX_CONCURRENT)
}

/// The HTTP face's routes over `gateway`, serving at most `max_concurrent` API requests at once.
pub fn app_with_limit(gateway: Arc<Gateway>, max_concurrent: usize) -> axum::Router {
    let metrics = gateway.metrics().clone();
    let door_state = Door::new(max_concurrent, Face::Http, metrics.clone());
    // The API needs a key when keys are configured; health and the document do not.
    let api = axum::Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/models", get(models))
        .route("/v1/route", post(route))
        .route_layer(axum::middleware::from_fn_with_state(
            gateway.clone(),
            authenticate,
        ))
        // Outside authentication: a full listener refuses before any work, keys included.
        .route_layer(axum::middleware::from_fn_with_state(door_state, door));
    axum::Router::new()
        .merge(api)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // Inside the request-id layer, so even a panic's 500 carries the id.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
        .layer(axum::middleware::from_fn(request_id))
        .layer(axum::middleware::from_fn_with_state(metrics, track))
        .with_state(gateway)
}

/// Serves the HTTP face on `listener` (plain TCP, or [`crate::tls::TlsIncoming`]) until `shutdown`
/// resolves, then lets in-flight requests finish.
pub async fn serve<L>(
    listener: L,
    gateway: Arc<Gateway>,
    max_concurrent: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    axum::serve(listener, app_with_limit(gateway, max_concurrent))
        .with_graceful_shutdown(shutdown)
        .await
}
