//! Shared test fixtures: the real model (loaded once per test binary) and a real server on 127.0.0.1:0.
#![allow(dead_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub mod upstream;

use semroute::config::{self, LoadedConfig};
use semroute::embedding::{DeviceSpec, Embedder, SentenceEncoder};
use semroute::serve::{self, ServeOptions};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The default model's folder; fetched by `./models/fetch.sh` (the test command runs it first).
pub fn model_dir() -> PathBuf {
    let dir = repo().join("models/all-MiniLM-L6-v2");
    assert!(
        dir.join("model.safetensors").is_file(),
        "model missing at {}: run ./models/fetch.sh (scripts/test.sh does it for you)",
        dir.display()
    );
    dir
}

/// One embedder per test binary: loading the model once keeps the suite fast.
pub fn embedder() -> &'static Embedder {
    static E: OnceLock<Embedder> = OnceLock::new();
    E.get_or_init(|| {
        let enc = SentenceEncoder::load(&model_dir(), DeviceSpec::Cpu, None).expect("load model");
        Embedder::start(enc, 32, 1024, 2).expect("start model thread")
    })
}

/// The directory of shared evaluation data (`../shared` next to the repository, or `$SEMROUTE_SHARED_DIR`).
pub fn shared_dir() -> PathBuf {
    std::env::var("SEMROUTE_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo().join("../shared"))
}

/// CLINC150's `data_full.json`, which the repository does not ship (2.4 MB, CC BY 3.0). When it is absent
/// the calling test prints why and skips (returns `None`), so the suite passes on a clone of the
/// repository alone; with `SEMROUTE_REQUIRE_DATA=1` (CI sets it) absence fails the test instead.
pub fn clinc150() -> Option<PathBuf> {
    let path = shared_dir().join("data/clinc150/data_full.json");
    if path.is_file() {
        return Some(path);
    }
    let why = format!(
        "CLINC150 not found at {} (set SEMROUTE_SHARED_DIR to the folder holding data/clinc150)",
        path.display()
    );
    if std::env::var("SEMROUTE_REQUIRE_DATA").is_ok_and(|v| v == "1") {
        panic!("{why}; SEMROUTE_REQUIRE_DATA=1 makes this a failure");
    }
    eprintln!("SKIPPED: {why}");
    None
}

/// Prometheus' `promtool` (Debian package `prometheus`): `$SEMROUTE_PROMTOOL`, else the first `promtool` on
/// PATH. When it is absent the calling test prints why and skips (returns `None`); with
/// `SEMROUTE_REQUIRE_DATA=1` (CI sets it, and `.ci/run` installs the package) absence fails the test.
pub fn promtool() -> Option<PathBuf> {
    let found = match std::env::var_os("SEMROUTE_PROMTOOL") {
        Some(p) => Some(PathBuf::from(p)).filter(|p| p.is_file()),
        None => std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join("promtool"))
                .find(|p| p.is_file())
        }),
    };
    if found.is_some() {
        return found;
    }
    let why =
        "promtool not found (install Debian's `prometheus` package, or set SEMROUTE_PROMTOOL)";
    if std::env::var("SEMROUTE_REQUIRE_DATA").is_ok_and(|v| v == "1") {
        panic!("{why}; SEMROUTE_REQUIRE_DATA=1 makes this a failure");
    }
    eprintln!("SKIPPED: {why}");
    None
}

/// A server running on its own runtime thread; dropping it triggers graceful shutdown.
pub struct TestServer {
    /// The gRPC face.
    pub addr: SocketAddr,
    /// The HTTP face (OpenAI-compatible API).
    pub http_addr: SocketAddr,
    /// The Prometheus metrics listener (`GET /metrics`).
    pub metrics_addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
}

impl TestServer {
    /// Starts the real server for `loaded` on an ephemeral loopback port.
    pub fn start(loaded: LoadedConfig) -> Self {
        Self::start_with(loaded, |_| {})
    }

    /// Like [`Self::start`], letting the caller adjust the options (admin, watch, data dir).
    pub fn start_with(
        loaded: LoadedConfig,
        configure: impl FnOnce(&mut ServeOptions) + Send + 'static,
    ) -> Self {
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx
                    .send((
                        listener.local_addr().unwrap(),
                        http.local_addr().unwrap(),
                        metrics.local_addr().unwrap(),
                    ))
                    .unwrap();
                let mut opts = ServeOptions {
                    model_threads: 2,
                    shutdown_grace: Duration::from_secs(10),
                    http: Some(http),
                    metrics: Some(metrics),
                    ..ServeOptions::default()
                };
                configure(&mut opts);
                serve::serve(loaded, Some(listener), opts, async {
                    let _ = stop_rx.await;
                })
                .await
                .map_err(|e| e.to_string())
            })
        });
        let (addr, http_addr, metrics_addr) = addr_rx.recv().expect("server thread bound");
        Self {
            addr,
            http_addr,
            metrics_addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Starts a server on the YAML text `yaml`, with models resolved from the repository.
    pub fn start_yaml(yaml: &str) -> Self {
        let dir = tempfile::tempdir().unwrap().keep();
        let path = dir.join("routes.yaml");
        std::fs::write(&path, yaml).unwrap();
        Self::start(config::load_file(&path).unwrap())
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The HTTP face's root, e.g. `http://127.0.0.1:PORT`.
    pub fn http_endpoint(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// The metrics listener's scrape URL, `http://127.0.0.1:PORT/metrics`.
    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.metrics_addr)
    }

    /// Waits until health reports SERVING (bounded).
    pub async fn wait_ready(&self) {
        use tonic_health::pb::health_client::HealthClient;
        use tonic_health::pb::HealthCheckRequest;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(ch) = channel(&self.endpoint()).await {
                let mut c = HealthClient::new(ch);
                let r = c
                    .check(HealthCheckRequest {
                        service: "semroute.v1.Router".into(),
                    })
                    .await;
                if let Ok(r) = r {
                    if r.into_inner().status == 1 {
                        return;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "server did not become ready in time"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for `serve` to end by itself (no shutdown sent) and returns how it ended.
    pub fn wait_exit(mut self) -> Result<(), String> {
        self.thread.take().unwrap().join().unwrap()
    }

    /// Stops the server gracefully and returns how `serve` ended. Blocking: from async code, run it on a
    /// blocking thread so the caller's runtime keeps driving its client connections while the server drains.
    pub fn stop(mut self) -> Result<(), String> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.thread.take().unwrap().join().unwrap()
    }

    /// [`Self::stop`] from async code.
    pub async fn shutdown(self) -> Result<(), String> {
        tokio::task::spawn_blocking(move || self.stop())
            .await
            .unwrap()
    }
}

impl Drop for TestServer {
    /// Asks the server to stop without waiting: joining here could block the runtime that drives the test's
    /// own client connections, which the server's drain waits on.
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Reads a JSONL file of {"text", "label"} lines.
pub fn read_labelled(path: &std::path::Path) -> Vec<(String, Option<String>)> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["text"].as_str().unwrap().to_string(),
                v["label"].as_str().map(str::to_string),
            )
        })
        .collect()
}

/// A tonic channel to `endpoint`.
pub async fn channel(endpoint: &str) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    tonic::transport::Channel::from_shared(endpoint.to_string())
        .expect("valid uri")
        .connect()
        .await
}

/// Log lines, captured: a writer for `telemetry::init` that keeps every line in memory, for tests that
/// search what the server logged.
#[derive(Clone, Default)]
pub struct Lines(pub Arc<Mutex<Vec<u8>>>);

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Lines {
    type Writer = Lines;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
