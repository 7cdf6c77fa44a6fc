//! Start-up and shutdown wiring: loads the model and builds the index off the runtime, then serves the gRPC
//! face and the HTTP face over one gateway until shutdown, draining in-flight calls. Neither face holds
//! routing or forwarding logic: both call [`crate::gateway::Gateway`].

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::service::interceptor::InterceptedService;
use tonic_health::ServingStatus;

use crate::access::Access;
use crate::admin::ControlPlane;
use crate::config::LoadedConfig;
use crate::edge::{Door, DoorLayer};
use crate::gateway::Gateway;
use crate::grpc::{self, pb, AdminService, BearerAuth, RouterService, ROUTER_SERVICE_NAME};
use crate::metrics::Face;
use crate::router::{start_embedder, Router};
use crate::state::EmbeddingStore;
use crate::tls::{self, ServerTls, TlsOptions};
use crate::upstream::Forwarder;

/// Concurrent requests each listener serves unless told otherwise.
pub const DEFAULT_MAX_CONCURRENT: usize = crate::http::DEFAULT_MAX_CONCURRENT;

/// How often the client keys file is checked for changes.
const KEYS_POLL: Duration = Duration::from_secs(2);

/// How often the TLS certificate and key files are checked for changes.
pub const CERT_POLL: Duration = Duration::from_secs(2);

/// Errors of the server layer.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The transport failed (bind, accept, HTTP/2).
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The reflection service could not be built.
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The metrics listener failed.
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
    /// Loading the model or building the index failed, so the service can never become ready.
    #[error("start-up failed: {0}")]
    Startup(String),
    /// A socket operation failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The TLS certificate, key or client CA is unusable.
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
}

/// Where and how the Admin service is exposed.
pub struct AdminOptions {
    /// Bearer token every admin call must present.
    pub token: String,
    /// A listener of its own for Admin; `None` serves Admin on the main listener.
    pub listener: Option<TcpListener>,
}

impl std::fmt::Debug for AdminOptions {
    /// The token never reaches a log line, however the options are printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminOptions")
            .field("token", &"<redacted>")
            .field("listener", &self.listener)
            .finish()
    }
}

/// How the service starts.
#[derive(Debug)]
pub struct ServeOptions {
    /// Threads for the model's forward pass.
    pub model_threads: usize,
    /// After a shutdown request, how long in-flight calls may take to finish before the server stops
    /// anyway (a client that never closes its connection must not hold the process forever).
    pub shutdown_grace: Duration,
    /// Where exemplar embeddings persist between runs; `None` keeps them in memory only.
    pub data_dir: Option<PathBuf>,
    /// Poll routes.yaml at this interval and reload on change (`serve --watch`).
    pub watch: Option<Duration>,
    /// The Admin service; `None` leaves it off.
    pub admin: Option<AdminOptions>,
    /// The HTTP face (OpenAI-compatible API); `None` leaves it off.
    pub http: Option<TcpListener>,
    /// The Prometheus metrics listener (`GET /metrics`); `None` leaves it off (the metrics are still
    /// counted, only not served).
    pub metrics: Option<TcpListener>,
    /// The client keys file (`serve --keys`); `None` runs open: every caller is admitted.
    pub keys: Option<PathBuf>,
    /// Router calls the gRPC listener serves at once; more are refused with RESOURCE_EXHAUSTED.
    pub grpc_max_concurrent: usize,
    /// API requests the HTTP listener serves at once; more are refused with 429.
    pub http_max_concurrent: usize,
    /// TLS on every listener (`serve --tls-cert --tls-key`); `None` serves plain TCP.
    pub tls: Option<TlsOptions>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            model_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            shutdown_grace: Duration::from_secs(30),
            data_dir: None,
            watch: None,
            admin: None,
            http: None,
            metrics: None,
            keys: None,
            grpc_max_concurrent: DEFAULT_MAX_CONCURRENT,
            http_max_concurrent: DEFAULT_MAX_CONCURRENT,
            tls: None,
        }
    }
}

/// Serves gRPC on `listener` (when given), HTTP on `options.http`, metrics on `options.metrics` and Admin
/// on its listener (when given) until `shutdown` resolves, then stops accepting and lets in-flight calls finish.
///
/// The listeners accept at once; health answers NOT_SERVING (and Route UNAVAILABLE) while the model loads
/// and the index builds off the runtime, then SERVING. A start-up failure ends the server with an error.
pub async fn serve(
    loaded: LoadedConfig,
    listener: Option<TcpListener>,
    mut options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let http_listener = options.http.take();
    let metrics_listener = options.metrics.take();
    if listener.is_none() && http_listener.is_none() {
        return Err(ServerError::Startup(
            "both faces are off: give a gRPC or an HTTP listen address".into(),
        ));
    }
    if options.admin.is_some() && loaded.path.is_none() {
        return Err(ServerError::Startup(
            "the admin API needs a config file to persist changes to".into(),
        ));
    }
    let tls = match &options.tls {
        Some(t) => {
            let server_tls = ServerTls::load(t)?;
            tracing::info!(
                cert = %t.cert.display(),
                sha256 = %server_tls.certs().fingerprint(),
                admin_client_ca = ?t.admin_client_ca,
                "TLS on every listener"
            );
            // A renewed certificate is served from the next handshake on, without a restart.
            tokio::spawn(server_tls.certs().clone().watch(CERT_POLL));
            Some(server_tls)
        }
        None => None,
    };
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_service_status("", ServingStatus::NotServing)
        .await;
    health_reporter
        .set_service_status(ROUTER_SERVICE_NAME, ServingStatus::NotServing)
        .await;

    // Both reflection versions: grpcurl speaks v1, many clients (Python grpcio-reflection, older tools) still
    // speak only v1alpha.
    let reflection_builder = grpc::reflection;

    let control_slot: Arc<OnceLock<Arc<ControlPlane>>> = Arc::new(OnceLock::new());
    let forwarder = Arc::new(Forwarder::new(loaded.base_dir()));
    // A missing key is a warning, not a start-up failure: other providers (a local model) may serve.
    forwarder.warn_missing_keys(&loaded.config);
    let access = match &options.keys {
        Some(path) => {
            let access =
                Access::from_file(path).map_err(|e| ServerError::Startup(e.to_string()))?;
            let ring = access.ring();
            tracing::info!(
                file = %path.display(),
                keys = ring.len(),
                required = ring.required,
                "client keys loaded"
            );
            if !ring.required {
                tracing::warn!("client keys are optional (`required: false`): calls without a key are admitted without limits");
            }
            Arc::new(access)
        }
        None => {
            tracing::warn!(
                "no client keys file (serve --keys): every caller is admitted, without limits"
            );
            Arc::new(Access::open())
        }
    };
    if access.file().is_some() {
        // Revocations and new keys take effect without a restart; a broken file keeps the old keys.
        let watched = access.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(KEYS_POLL);
            loop {
                tick.tick().await;
                match watched.reload_if_changed() {
                    Ok(true) => tracing::info!(keys = watched.ring().len(), "client keys reloaded"),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::error!(error = %e, "client keys file rejected; the previous keys stay in force")
                    }
                }
            }
        });
    }
    let gateway = Arc::new(Gateway::new(forwarder).with_access(access.clone()));
    let cluster = crate::cluster::start(&loaded, &gateway).map_err(ServerError::Startup)?;
    let router_service = RouterService::new(gateway.clone());

    let (fail_tx, fail_rx) = tokio::sync::oneshot::channel::<String>();
    let reporter = health_reporter.clone();
    let (model_threads, data_dir, watch) = (
        options.model_threads,
        options.data_dir.clone(),
        options.watch,
    );
    let config_path = loaded.path.clone();
    let (loader_gateway, loader_control) = (gateway.clone(), control_slot.clone());
    let loader_cluster = cluster.clone();
    let loader = tokio::spawn(async move {
        let started = std::time::Instant::now();
        // Cluster mode: the shared routes win over the local file (which seeds an empty Redis).
        let (loaded, stamp) =
            crate::cluster::initial_routes(loader_cluster.as_deref(), loaded).await;
        let built = tokio::task::spawn_blocking(move || {
            let embedder = start_embedder(&loaded, model_threads).map_err(|e| e.to_string())?;
            let info = embedder.info().clone();
            let store = match &data_dir {
                Some(d) => EmbeddingStore::open(d, &info.identity, info.dim),
                None => EmbeddingStore::in_memory(&info.identity, info.dim),
            };
            Router::build_with_store(embedder, loaded.config, store).map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|e| Err(format!("loader panicked: {e}")));
        match built {
            Ok(router) => {
                let router = Arc::new(router);
                let router_alive = router.embedder().alive_changes();
                loader_gateway.install_router(router.clone());
                if let Some(path) = config_path {
                    let plane = ControlPlane::new(router, &path);
                    let plane = Arc::new(match &loader_cluster {
                        Some(c) => plane.with_cluster(c.clone(), stamp),
                        None => plane,
                    });
                    let _ = loader_control.set(plane.clone());
                    if let Some(c) = loader_cluster {
                        tokio::spawn(crate::cluster::follow(plane.clone(), c));
                        if watch.is_some() {
                            tracing::warn!("--watch is ignored in cluster mode: change routes through the Admin API (RebuildIndex shares this replica's file with the cluster)");
                        }
                    } else if let Some(interval) = watch {
                        tracing::info!(path = %path.display(), ?interval, "watching the routes file");
                        tokio::spawn(plane.watch(interval));
                    }
                }
                reporter
                    .set_service_status("", ServingStatus::Serving)
                    .await;
                reporter
                    .set_service_status(ROUTER_SERVICE_NAME, ServingStatus::Serving)
                    .await;
                // Health follows the model thread's supervisor: NOT_SERVING while a failed model is
                // loaded again, SERVING once it is back.
                let mut alive = router_alive;
                let watcher = reporter.clone();
                tokio::spawn(async move {
                    while alive.changed().await.is_ok() {
                        let status = if *alive.borrow_and_update() {
                            ServingStatus::Serving
                        } else {
                            ServingStatus::NotServing
                        };
                        watcher.set_service_status("", status).await;
                        watcher
                            .set_service_status(ROUTER_SERVICE_NAME, status)
                            .await;
                    }
                });
                tracing::info!(
                    millis = started.elapsed().as_millis() as u64,
                    "ready: SERVING"
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "start-up failed");
                let _ = fail_tx.send(e);
            }
        }
    });

    // `stop` ends accepting on every listener and starts the drain; `deadline` fires `shutdown_grace` later.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (deadline_tx, deadline_rx) = tokio::sync::oneshot::channel::<()>();
    let failure = Arc::new(OnceLock::<String>::new());
    let failure_w = failure.clone();
    let grace = options.shutdown_grace;
    tokio::spawn(async move {
        tokio::select! {
            _ = shutdown => tracing::info!(?grace, "shutdown requested: draining in-flight calls"),
            Ok(e) = fail_rx => { let _ = failure_w.set(e); }
        }
        let _ = stop_tx.send(true);
        tokio::time::sleep(grace).await;
        let _ = deadline_tx.send(());
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    let (admin_on_main, admin_listener) = match options.admin {
        Some(a) => {
            let client_cert = tls.as_ref().is_some_and(ServerTls::admin_needs_client_cert);
            let svc = InterceptedService::new(
                pb::admin_server::AdminServer::new(AdminService::new(
                    control_slot.clone(),
                    access.clone(),
                )),
                BearerAuth::new(&a.token).with_client_cert(client_cert),
            );
            match a.listener {
                Some(l) => (None, Some((svc, l))),
                None => (Some(svc), None),
            }
        }
        None => (None, None),
    };

    if listener.is_none() && admin_on_main.is_some() {
        return Err(ServerError::Startup(
            "the admin API is set to share the gRPC listener, which is off: give it a listener of its own"
                .into(),
        ));
    }
    let main = async {
        let Some(listener) = listener else {
            return Ok::<(), ServerError>(());
        };
        let addr = listener.local_addr()?;
        let admin_here = admin_on_main.is_some();
        tracing::info!(%addr, admin = admin_here, tls = tls.is_some(), "gRPC listening (NOT_SERVING until the model and index are ready)");
        let door = Door::new(
            options.grpc_max_concurrent,
            Face::Grpc,
            gateway.metrics().clone(),
        );
        let services = tonic::transport::Server::builder()
            .layer(DoorLayer::new(door))
            .add_service(health_service)
            .add_service(reflection_builder().build_v1()?)
            .add_service(reflection_builder().build_v1alpha()?)
            .add_service(pb::router_server::RouterServer::with_interceptor(
                router_service,
                grpc::authenticate(gateway.clone()),
            ))
            .add_optional_service(admin_on_main);
        match &tls {
            None => {
                services
                    .serve_with_incoming_shutdown(
                        grpc::incoming(listener),
                        stopped(stop_rx.clone()),
                    )
                    .await?
            }
            Some(t) => {
                let incoming = tls::accept(listener, t.acceptor(tls::ALPN_GRPC, admin_here)?)?;
                services
                    .serve_with_incoming_shutdown(incoming, stopped(stop_rx.clone()))
                    .await?
            }
        }
        Ok(())
    };
    let http = async {
        let Some(l) = http_listener else {
            return Ok::<(), ServerError>(());
        };
        tracing::info!(addr = %l.local_addr()?, tls = tls.is_some(), "HTTP listening (OpenAI-compatible API)");
        let limit = options.http_max_concurrent;
        let stop = stopped(stop_rx.clone());
        match &tls {
            // Plain TCP keeps axum's own listener: no extra hop on the fast path.
            None => crate::http::serve(l, gateway.clone(), limit, stop).await?,
            Some(t) => {
                let incoming = tls::accept(l, t.acceptor(tls::ALPN_HTTP, false)?)?;
                crate::http::serve(incoming, gateway.clone(), limit, stop).await?
            }
        }
        Ok(())
    };
    let metrics = async {
        let Some(l) = metrics_listener else {
            return Ok::<(), ServerError>(());
        };
        tracing::info!(addr = %l.local_addr()?, tls = tls.is_some(), "metrics listening (GET /metrics)");
        let stop = stopped(stop_rx.clone());
        match &tls {
            None => crate::metrics::exposition::serve(l, gateway.clone(), stop).await?,
            Some(t) => {
                let incoming = tls::accept(l, t.acceptor(tls::ALPN_HTTP, false)?)?;
                crate::metrics::exposition::serve(incoming, gateway.clone(), stop).await?
            }
        }
        Ok(())
    };
    let admin = async {
        match admin_listener {
            Some((svc, l)) => {
                tracing::info!(addr = %l.local_addr()?, tls = tls.is_some(), "admin listening");
                let services = tonic::transport::Server::builder()
                    .add_service(reflection_builder().build_v1()?)
                    .add_service(svc);
                let stop = stopped(stop_rx.clone());
                match &tls {
                    None => {
                        services
                            .serve_with_incoming_shutdown(grpc::incoming(l), stop)
                            .await?
                    }
                    Some(t) => {
                        let incoming = tls::accept(l, t.acceptor(tls::ALPN_GRPC, true)?)?;
                        services
                            .serve_with_incoming_shutdown(incoming, stop)
                            .await?
                    }
                }
                Ok::<(), ServerError>(())
            }
            None => Ok(()),
        }
    };
    let both = async {
        let (m, h, x, a) = tokio::join!(main, http, metrics, admin);
        m?;
        h?;
        x?;
        a
    };
    tokio::select! {
        r = both => r?,
        _ = deadline_rx => tracing::warn!(?grace, "drain deadline passed; stopping with calls still open"),
    }
    loader.abort();
    match failure.get() {
        Some(e) => Err(ServerError::Startup(e.clone())),
        None => {
            tracing::info!("stopped");
            Ok(())
        }
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_options_never_print_the_token() {
        let admin = || AdminOptions {
            token: "s3cret-admin-token".into(),
            listener: None,
        };
        let options = ServeOptions {
            admin: Some(admin()),
            ..ServeOptions::default()
        };
        let printed = format!("{:?} {options:?}", admin());
        assert!(!printed.contains("s3cret"), "{printed}");
        assert!(printed.contains("<redacted>"));
    }
}
