//! The command line's arguments. Every flag has an environment-variable fallback.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// semroute: a semantic LLM router over gRPC.
#[derive(Debug, Parser)]
#[command(name = "semroute", version, about)]
pub struct Cli {
    /// Log filter (tracing EnvFilter syntax, e.g. `info`, `semroute=debug`). Logs go to stderr.
    #[arg(long, env = "SEMROUTE_LOG", default_value = "info", global = true)]
    pub log: String,
    /// Log line format: `text`, or `json` (one object per line, with the request id and trace id of the
    /// request that caused it).
    #[arg(
        long,
        env = "SEMROUTE_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormatArg,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// A listen address, or `off` for a face that should not be served.
#[derive(Debug, Clone, Copy)]
pub struct Listen(pub Option<SocketAddr>);

impl std::str::FromStr for Listen {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("off") {
            return Ok(Self(None));
        }
        s.parse()
            .map(|a| Self(Some(a)))
            .map_err(|e| format!("`{s}`: {e} (expected host:port or `off`)"))
    }
}

/// The config file flag shared by every command.
#[derive(Debug, Args)]
pub struct ConfigArg {
    /// Path to routes.yaml.
    #[arg(long, env = "SEMROUTE_CONFIG", default_value = "routes.yaml")]
    pub config: PathBuf,
}

/// Data sets `semroute dataset` can write.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DatasetName {
    /// CLINC150 (data_full.json) with the recipe of ../shared/data/clinc150/README.md.
    Clinc150,
    /// Banking77 (a folder holding the public train.csv and test.csv, columns text,category).
    Banking77,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the gRPC API (Router, health, reflection) and the OpenAI-compatible HTTP API until
    /// SIGINT/SIGTERM.
    Serve {
        #[command(flatten)]
        config: ConfigArg,
        /// Address of the gRPC face, or `off`.
        #[arg(long, env = "SEMROUTE_LISTEN", default_value = "127.0.0.1:50051")]
        listen: Listen,
        /// Address of the HTTP face (OpenAI-compatible API), or `off`.
        #[arg(long, env = "SEMROUTE_HTTP_LISTEN", default_value = "127.0.0.1:8080")]
        http_listen: Listen,
        /// Address of the Prometheus metrics listener (`GET /metrics`), or `off`.
        #[arg(
            long,
            env = "SEMROUTE_METRICS_LISTEN",
            default_value = "127.0.0.1:9090"
        )]
        metrics_listen: Listen,
        /// Threads for the model's forward pass (default: all cores).
        #[arg(long, env = "SEMROUTE_MODEL_THREADS")]
        model_threads: Option<usize>,
        /// Where exemplar embeddings persist between runs (default: `.semroute/` next to the config).
        #[arg(long, env = "SEMROUTE_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Reload routes.yaml when it changes (polled every 500 ms, debounced).
        #[arg(long, env = "SEMROUTE_WATCH")]
        watch: bool,
        /// Client keys file (`semroute keys create` writes it; reloaded on change). Without it every
        /// caller is admitted, without limits.
        #[arg(long, env = "SEMROUTE_KEYS_FILE")]
        keys: Option<PathBuf>,
        /// Router calls the gRPC listener serves at once; more are refused at once with
        /// RESOURCE_EXHAUSTED (health, reflection and Admin are never limited).
        #[arg(long, env = "SEMROUTE_GRPC_MAX_CONCURRENT", default_value_t = semroute::serve::DEFAULT_MAX_CONCURRENT, value_parser = positive_count)]
        grpc_max_concurrent: usize,
        /// API requests the HTTP listener serves at once (streams count until they end); more are
        /// refused at once with 429.
        #[arg(long, env = "SEMROUTE_HTTP_MAX_CONCURRENT", default_value_t = semroute::serve::DEFAULT_MAX_CONCURRENT, value_parser = positive_count)]
        http_max_concurrent: usize,
        #[command(flatten)]
        admin: AdminServeArgs,
        #[command(flatten)]
        tls: TlsServeArgs,
    },
    /// Manage the client keys file: create (the key is printed once), list, revoke, rotate. A running
    /// server picks the change up within seconds.
    Keys {
        /// The keys file.
        #[arg(long, env = "SEMROUTE_KEYS_FILE", default_value = "keys.yaml")]
        file: PathBuf,
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Load a running server with Route calls over gRPC and report throughput and latency percentiles.
    Bench {
        /// Server endpoint (`https://…` for a server with TLS).
        #[arg(
            long,
            env = "SEMROUTE_BENCH_ADDR",
            default_value = "http://127.0.0.1:50051"
        )]
        addr: String,
        /// Which face `--addr` is: gRPC Route, or the HTTP face's `POST /v1/route`.
        #[arg(long, value_enum, env = "SEMROUTE_BENCH_FACE", default_value = "grpc")]
        face: super::loadgen::BenchFace,
        /// Concurrent closed-loop clients (1..=1024).
        #[arg(long, env = "SEMROUTE_BENCH_CONCURRENCY", default_value_t = 1)]
        concurrency: usize,
        /// Open loop: start this many calls per second whatever the answers do (instead of closed-loop
        /// clients); reports served, refused and past-deadline calls.
        #[arg(long, env = "SEMROUTE_BENCH_RATE")]
        rate: Option<f64>,
        /// The deadline each call carries (`grpc-timeout` / `x-request-timeout`), in milliseconds.
        #[arg(long, env = "SEMROUTE_BENCH_TIMEOUT_MS", default_value_t = 10_000)]
        timeout_ms: u64,
        /// Measured seconds (at most 600).
        #[arg(long, env = "SEMROUTE_BENCH_DURATION", default_value_t = 10.0)]
        duration: f64,
        /// Unmeasured warm-up seconds before the measurement.
        #[arg(long, env = "SEMROUTE_BENCH_WARMUP", default_value_t = 1.0)]
        warmup: f64,
        /// The prompt sent (default: the PEERS.md protocol query, 13 tokens).
        #[arg(
            long,
            env = "SEMROUTE_BENCH_TEXT",
            default_value = "can you tell me how to say fly in italian please"
        )]
        text: String,
        /// Send these prompts instead of `--text`: a file with one prompt per line, cycled (distinct prompts
        /// measure the model path even with the prompt cache on).
        #[arg(long, env = "SEMROUTE_BENCH_PROMPTS")]
        prompts: Option<std::path::PathBuf>,
        /// Print the summary as JSON.
        #[arg(long, env = "SEMROUTE_BENCH_JSON")]
        json: bool,
        /// A client key, sent as `authorization: Bearer …` with every call (for a server with `--keys`).
        #[arg(long, env = "SEMROUTE_API_KEY", hide_env_values = true)]
        api_key: Option<ApiKey>,
        #[command(flatten)]
        tls: ClientTlsArgs,
    },
    /// GET an HTTP endpoint of a running server and exit 0 on a 2xx answer, non-zero otherwise: the
    /// container image's health check (it has no shell and no curl).
    Probe {
        /// The URL to GET.
        #[arg(
            env = "SEMROUTE_PROBE_URL",
            default_value = "http://127.0.0.1:8080/readyz"
        )]
        url: String,
        /// Give up after this many milliseconds (connect and answer together).
        #[arg(long, env = "SEMROUTE_PROBE_TIMEOUT_MS", default_value_t = 2000)]
        timeout_ms: u64,
        #[command(flatten)]
        tls: ClientTlsArgs,
    },
    /// Call the Router API of a running server (route, complete, stream) and print JSON.
    Call {
        #[command(flatten)]
        conn: CallConn,
        #[command(subcommand)]
        command: CallCommand,
    },
    /// Call the Admin API of a running server.
    Admin {
        #[command(flatten)]
        conn: AdminConn,
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Route one prompt and print the decision as JSON.
    Route {
        #[command(flatten)]
        config: ConfigArg,
        /// Neighbours to include as evidence (default: matching.top_k).
        #[arg(long, env = "SEMROUTE_TOP_K")]
        top_k: Option<usize>,
        /// The prompt.
        text: String,
    },
    /// Validate the config; exits non-zero with file:line:column on the first error.
    Check {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Score the config on labelled queries (JSONL of {"text", "label"}, label null = out of scope).
    Eval {
        #[command(flatten)]
        config: ConfigArg,
        /// The labelled queries.
        #[arg(long, env = "SEMROUTE_EVAL_DATA")]
        data: PathBuf,
        /// Print the whole report (figures, per-route, confusions, every error) as JSON.
        #[arg(long, env = "SEMROUTE_EVAL_JSON")]
        json: bool,
        /// Exit non-zero when in-scope accuracy is below this.
        #[arg(long, env = "SEMROUTE_MIN_ACCURACY")]
        min_accuracy: Option<f64>,
        /// Errors printed with their neighbours (text output; JSON has them all).
        #[arg(long, env = "SEMROUTE_EVAL_ERRORS", default_value_t = 15)]
        errors: usize,
        /// Queries also routed one at a time end to end (embed + decide) for the latency figures.
        #[arg(long, env = "SEMROUTE_EVAL_LATENCY_SAMPLES", default_value_t = 100)]
        latency_samples: usize,
    },
    /// Choose thresholds (and, with --tune-rule, the rule's weights) on labelled dev data, or on the
    /// config's own examples without --data, and write them into the config (in place, comments kept;
    /// the old file is kept as <config>.bak).
    Calibrate {
        #[command(flatten)]
        config: ConfigArg,
        /// The labelled dev queries (never the test set). Without it, the config's own examples are the
        /// data: each exemplar left out of the index in turn, and the `out_of_scope` examples.
        #[arg(long, env = "SEMROUTE_CALIBRATE_DATA")]
        data: Option<PathBuf>,
        /// balanced (mean of in-scope accuracy and OOS recall) | accuracy | min-oos-recall=X.
        #[arg(long, env = "SEMROUTE_CALIBRATE_OBJECTIVE", default_value = "balanced")]
        objective: String,
        /// Also search the rule's weights: hybrid_weight, hybrid_neighbours (hybrid), late_weight (late),
        /// margin_weight.
        #[arg(long, env = "SEMROUTE_CALIBRATE_TUNE_RULE")]
        tune_rule: bool,
        /// Also set per-route thresholds within the global one ± this (prone to over-fit small dev sets).
        /// Without it, per-route thresholds are removed.
        #[arg(long, env = "SEMROUTE_CALIBRATE_PER_ROUTE")]
        per_route: Option<f32>,
        /// Print what would change; write nothing.
        #[arg(long, env = "SEMROUTE_CALIBRATE_DRY_RUN")]
        dry_run: bool,
    },
    /// Fine-tune the encoder on the config's route utterances and write the tuned model folder (see
    /// docs/quality.md). Re-run `calibrate` afterwards: scores move.
    Tune {
        #[command(flatten)]
        config: ConfigArg,
        /// The folder to write (replaced if it holds an earlier tuning; any other folder is refused).
        #[arg(long, env = "SEMROUTE_TUNE_OUT")]
        out: PathBuf,
        /// Point `encoder.model` in the config at the new folder (in place; old file kept as .bak).
        #[arg(long, env = "SEMROUTE_TUNE_SET_MODEL")]
        set_model: bool,
        /// Transformer layers trained, from the top.
        #[arg(long, env = "SEMROUTE_TUNE_LAYERS", default_value_t = 4)]
        layers: usize,
        /// Passes over the utterances.
        #[arg(long, env = "SEMROUTE_TUNE_EPOCHS", default_value_t = 3)]
        epochs: usize,
        /// Learning rate of the transformer layers (AdamW).
        #[arg(long, env = "SEMROUTE_TUNE_LR", default_value_t = 1e-4)]
        lr: f64,
        /// Seed of the utterance order.
        #[arg(long, env = "SEMROUTE_TUNE_SEED", default_value_t = 0)]
        seed: u64,
        /// Weight of the cross-lingual term: Spanish, French and German sentences (shipped with semroute,
        /// general-purpose) are pulled onto their English translations while the routes are trained, so
        /// prompts in those languages land near the English exemplars. 0 turns it off.
        #[arg(long, env = "SEMROUTE_TUNE_CROSS_LINGUAL", default_value_t = semroute::tune::TuneOptions::default().cross_lingual)]
        cross_lingual: f64,
    },
    /// Write a benchmark as routes.yaml + val.jsonl + test.jsonl.
    Dataset {
        /// Which data set.
        #[arg(value_enum)]
        name: DatasetName,
        /// The data: CLINC150's data_full.json, or the folder holding Banking77's train.csv and test.csv.
        #[arg(long, visible_alias = "path", env = "SEMROUTE_DATASET_DATA")]
        data: PathBuf,
        /// Exemplars per route: a number, or `all`.
        #[arg(long, env = "SEMROUTE_DATASET_K", default_value = "10")]
        k: String,
        /// Output directory.
        #[arg(long, env = "SEMROUTE_DATASET_OUT")]
        out: PathBuf,
        /// `matching.aggregation` written into routes.yaml (max, mean, centroid, hybrid or late).
        #[arg(long, env = "SEMROUTE_DATASET_AGGREGATION", default_value = "hybrid")]
        aggregation: semroute::config::Aggregation,
        /// Also write the training split's out-of-scope utterances (CLINC150: the 100 of oos_train) as
        /// `out_of_scope:` negative exemplars.
        #[arg(long, env = "SEMROUTE_DATASET_OOS_NEGATIVES")]
        oos_negatives: bool,
    },
}

/// How `serve` exposes the Admin API.
#[derive(Debug, Args)]
pub struct AdminServeArgs {
    /// Serve Admin on its own address (recommended: keep it off the client-facing listener).
    #[arg(long, env = "SEMROUTE_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// Serve Admin on the main listener too.
    #[arg(long, env = "SEMROUTE_ADMIN_ON_MAIN")]
    pub admin_on_main: bool,
    /// The admin bearer token. Prefer the environment variable or a file over a flag (flags show in `ps`).
    #[arg(long, env = "SEMROUTE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Read the admin bearer token from this file (surrounding whitespace ignored).
    #[arg(long, env = "SEMROUTE_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
}

/// TLS on every listener of `serve`.
#[derive(Debug, Args)]
pub struct TlsServeArgs {
    /// Serve every listener (gRPC, HTTP, metrics, Admin) over TLS with this certificate chain (PEM, leaf
    /// first). Re-read when the file changes (polled every 2 s); a broken file keeps the old certificate.
    #[arg(long, env = "SEMROUTE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1), re-read with it.
    #[arg(long, env = "SEMROUTE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Admin calls must present a TLS client certificate signed by one of these CAs (PEM bundle); other
    /// services keep admitting clients without one. Needs --tls-cert.
    #[arg(long, env = "SEMROUTE_ADMIN_CLIENT_CA", requires = "tls_cert")]
    pub admin_client_ca: Option<PathBuf>,
}

/// How a client checks a server reached at an `https://` address.
#[derive(Debug, Clone, Args)]
pub struct ClientTlsArgs {
    /// For `https://` addresses: trust only the CAs of this PEM file (a private CA), instead of the
    /// public web roots.
    #[arg(long, env = "SEMROUTE_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
}

/// Where the Admin API is and how to authenticate.
#[derive(Debug, Args)]
pub struct AdminConn {
    /// Admin endpoint (`https://…` for a server with TLS).
    #[arg(
        long,
        env = "SEMROUTE_ADMIN_ADDR",
        default_value = "http://127.0.0.1:50052"
    )]
    pub addr: String,
    /// Bearer token.
    #[arg(long, env = "SEMROUTE_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Read the bearer token from this file.
    #[arg(long, env = "SEMROUTE_ADMIN_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    #[command(flatten)]
    pub tls: ClientTlsArgs,
    /// The client certificate (PEM) to present, for a server started with --admin-client-ca.
    #[arg(long, env = "SEMROUTE_ADMIN_CLIENT_CERT", requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// The private key of --client-cert (PEM).
    #[arg(long, env = "SEMROUTE_ADMIN_CLIENT_KEY", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
}

/// Client key operations.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print it (once: only its hash is stored).
    Create(CreateKeyArgs),
    /// List the keys (names, hints, tenants, limits; never the keys).
    List,
    /// Revoke a key, and the old secrets a rotation left in their grace period: refused from the next
    /// check on.
    Revoke {
        /// The key's name.
        name: String,
    },
    /// Issue a new key for `name` and keep the old one valid for a grace period.
    Rotate {
        /// The key's name.
        name: String,
        /// How long the old key keeps working, in seconds.
        #[arg(long, default_value_t = semroute::access::keys::DEFAULT_GRACE_SECS)]
        grace_s: u64,
    },
}

/// A new key: its name, rights and limits.
#[derive(Debug, Args)]
pub struct CreateKeyArgs {
    /// A unique name for the key (the service or person using it; no `@`).
    pub name: String,
    /// The tenant whose limits it also counts against.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Routes it may use (repeat or comma-separate; default: all).
    #[arg(long, value_delimiter = ',')]
    pub routes: Vec<String>,
    /// Models it may name (default: all).
    #[arg(long, value_delimiter = ',')]
    pub models: Vec<String>,
    /// Requests per minute.
    #[arg(long)]
    pub rpm: Option<u32>,
    /// Tokens per minute (input + output).
    #[arg(long)]
    pub tpm: Option<u64>,
    /// Requests in flight at once.
    #[arg(long)]
    pub concurrency: Option<u32>,
    /// USD per UTC day.
    #[arg(long)]
    pub daily_usd: Option<f64>,
    /// USD per UTC month.
    #[arg(long)]
    pub monthly_usd: Option<f64>,
    /// When it stops working (RFC 3339).
    #[arg(long)]
    pub expires_at: Option<String>,
    /// An attribute, `name=value` (repeatable).
    #[arg(long = "attr")]
    pub attributes: Vec<String>,
}

/// Admin operations.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Re-read routes.yaml on the server and rebuild the index.
    Rebuild,
    /// Index version, model, sizes, last build.
    Info,
    /// List routes.
    List,
    /// Show one route.
    Get {
        /// Route name.
        name: String,
    },
    /// Create or replace a route from a YAML file holding one route mapping (`-` for stdin).
    Upsert {
        /// The route file.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// Delete a route.
    Delete {
        /// Route name.
        name: String,
    },
    /// Add utterances to a route.
    AddUtterances {
        /// Route name.
        name: String,
        /// Utterances to add.
        #[arg(required = true)]
        utterances: Vec<String>,
    },
    /// Remove utterances from a route.
    RemoveUtterances {
        /// Route name.
        name: String,
        /// Utterances to remove.
        #[arg(required = true)]
        utterances: Vec<String>,
    },
    /// Manage the server's client keys (its `serve --keys` file): create (the key is printed once), list,
    /// revoke, rotate. In force from the next request.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

/// Where `semroute call` connects.
#[derive(Debug, Args)]
pub struct CallConn {
    /// The server's gRPC address (`https://…` for a server with TLS).
    #[arg(long, env = "SEMROUTE_ADDR", default_value = "http://127.0.0.1:50051")]
    pub addr: String,
    #[command(flatten)]
    pub tls: ClientTlsArgs,
}

/// Router API calls.
#[derive(Debug, Subcommand)]
pub enum CallCommand {
    /// `Route`: the decision for one prompt, with its evidence.
    Route {
        /// Neighbours to include as evidence (default: matching.top_k).
        #[arg(long)]
        top_k: Option<u32>,
        /// The prompt.
        text: String,
    },
    /// `Complete`: route the prompt, forward it, print the answer with who served it and every attempt.
    Complete(CompleteArgs),
    /// `CompleteStream`: like `complete`, printing each piece of the answer as it arrives, then a summary.
    Stream(CompleteArgs),
}

/// The request of `semroute call complete` and `semroute call stream`.
#[derive(Debug, Args)]
pub struct CompleteArgs {
    /// The user turn.
    pub text: String,
    /// A system prompt sent before the user turn.
    #[arg(long)]
    pub system: Option<String>,
    /// Skip classification and use this route's targets.
    #[arg(long)]
    pub route: Option<String>,
    /// Skip target choice and send to this model (a name from `models`, e.g. `mock-echo`).
    #[arg(long)]
    pub model: Option<String>,
    /// Most tokens to generate.
    #[arg(long)]
    pub max_tokens: Option<u32>,
}

/// A count of at least 1 (a listener limit of 0 would refuse everything).
fn positive_count(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormatArg {
    /// Human-readable lines.
    Text,
    /// JSON lines.
    Json,
}

/// A client key given on the command line. Its `Debug` form never shows it.
#[derive(Clone)]
pub struct ApiKey(pub String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl std::str::FromStr for ApiKey {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.trim().to_string()))
    }
}
