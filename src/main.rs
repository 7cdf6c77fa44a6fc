//! The `semroute` binary.

mod cli;
mod quality;

use std::process::ExitCode;

use clap::Parser;
use semroute::config;
use semroute::router::{start_embedder, RouteQuery, Router};
use semroute::server::{self, ServeOptions};
use tracing_subscriber::EnvFilter;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&cli.log).unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Check { config } => {
            let loaded = config::load_file(&config.config)?;
            let c = &loaded.config;
            let utterances: usize = c.routes.iter().map(|r| r.utterances.len()).sum();
            println!(
                "{}: ok ({} routes, {} utterances)",
                config.config.display(),
                c.routes.len(),
                utterances
            );
            Ok(())
        }
        Command::Route {
            config,
            top_k,
            text,
        } => {
            let loaded = config::load_file(&config.config)?;
            let threads = ServeOptions::default().model_threads;
            let embedder = start_embedder(&loaded, threads)?;
            let router = Router::build(embedder, loaded.config)?;
            let decision = runtime()?.block_on(router.route(RouteQuery {
                text,
                top_k,
                ..Default::default()
            }))?;
            println!("{}", serde_json::to_string_pretty(&decision)?);
            Ok(())
        }
        Command::Eval {
            config,
            data,
            json,
            min_accuracy,
            errors,
            latency_samples,
        } => quality::eval(quality::EvalArgs {
            config: config.config,
            data,
            json,
            min_accuracy,
            errors,
            latency_samples,
        }),
        Command::Calibrate {
            config,
            data,
            objective,
            tune_rule,
            per_route,
            dry_run,
        } => quality::calibrate(quality::CalibrateArgs {
            config: config.config,
            data,
            objective: objective.parse().map_err(anyhow::Error::msg)?,
            tune_rule,
            per_route,
            dry_run,
        }),
        Command::Dataset { name, data, k, out } => quality::dataset(name, &data, &k, &out),
        Command::Serve {
            config,
            listen,
            model_threads,
        } => {
            // Validate before binding: a broken file is reported at once, with its position.
            let loaded = config::load_file(&config.config)?;
            let mut options = ServeOptions::default();
            if let Some(t) = model_threads {
                options.model_threads = t;
            }
            runtime()?.block_on(async move {
                let listener = tokio::net::TcpListener::bind(listen).await?;
                server::serve(loaded, listener, options, server::shutdown_signal()).await?;
                Ok(())
            })
        }
    }
}
