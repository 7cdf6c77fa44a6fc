//! Command line: `serve`, `route`, `check`. Every flag has an environment-variable fallback.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

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
}
