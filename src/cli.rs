//! Command line: `serve`, `route`, `check`, `eval`, `calibrate`, `dataset`. Every flag has an
//! environment-variable fallback.

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
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
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
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the gRPC API (Router, health, reflection) until SIGINT/SIGTERM.
    Serve {
        #[command(flatten)]
        config: ConfigArg,
        /// Address to listen on.
        #[arg(long, env = "SEMROUTE_LISTEN", default_value = "127.0.0.1:50051")]
        listen: SocketAddr,
        /// Threads for the model's forward pass (default: all cores).
        #[arg(long, env = "SEMROUTE_MODEL_THREADS")]
        model_threads: Option<usize>,
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
    /// Choose thresholds (and, with --tune-rule, the rule's weights) on labelled dev data and write them
    /// into the config (in place, comments kept; the old file is kept as <config>.bak).
    Calibrate {
        #[command(flatten)]
        config: ConfigArg,
        /// The labelled dev queries (never the test set).
        #[arg(long, env = "SEMROUTE_CALIBRATE_DATA")]
        data: PathBuf,
        /// balanced (mean of in-scope accuracy and OOS recall) | accuracy | min-oos-recall=X.
        #[arg(long, env = "SEMROUTE_CALIBRATE_OBJECTIVE", default_value = "balanced")]
        objective: String,
        /// Also search the rule's weights: hybrid_weight, hybrid_neighbours (hybrid), margin_weight.
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
    /// Write a benchmark as routes.yaml + val.jsonl + test.jsonl.
    Dataset {
        /// Which data set.
        #[arg(value_enum)]
        name: DatasetName,
        /// The data file (CLINC150: data_full.json).
        #[arg(long, env = "SEMROUTE_DATASET_DATA")]
        data: PathBuf,
        /// Exemplars per route: a number, or `all`.
        #[arg(long, env = "SEMROUTE_DATASET_K", default_value = "10")]
        k: String,
        /// Output directory.
        #[arg(long, env = "SEMROUTE_DATASET_OUT")]
        out: PathBuf,
    },
}
