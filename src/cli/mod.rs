//! The command line: `serve`, `route`, `check`, `call`, `bench`, `admin`, `eval`, `calibrate`, `tune`,
//! `dataset`, `probe`. [`args`] declares them (every flag has an environment-variable fallback); the other modules
//! hold what only the binary needs: the Router and Admin API clients, the load generator, the quality
//! commands.

mod admin_client;
mod args;
mod call;
mod connect;
mod keys;
mod loadgen;
mod probe;
mod quality;

use std::process::ExitCode;

use clap::Parser;
use semroute::config;
use semroute::router::{start_embedder, RouteQuery, Router};
use semroute::serve::{self, AdminOptions, ServeOptions};
use semroute::telemetry;
use semroute::tls::TlsOptions;

pub use args::*;

/// Parses the command line, sets up logging and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = match cli.log_format {
        LogFormatArg::Text => telemetry::LogFormat::Text,
        LogFormatArg::Json => telemetry::LogFormat::Json,
    };
    // Traces are exported only by `serve` (the other commands are short-lived tools).
    let otlp = matches!(cli.command, Command::Serve { .. })
        .then(telemetry::Otlp::from_env)
        .flatten();
    let _telemetry = match telemetry::init(&cli.log, format, otlp, std::io::stderr) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
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
        Command::Tune {
            config,
            out,
            set_model,
            layers,
            epochs,
            lr,
            seed,
            cross_lingual,
        } => quality::tune(quality::TuneArgs {
            config: config.config,
            out,
            set_model,
            options: semroute::tune::TuneOptions {
                layers,
                epochs,
                lr,
                seed,
                cross_lingual,
                ..Default::default()
            },
        }),
        Command::Dataset {
            name,
            data,
            k,
            out,
            aggregation,
            oos_negatives,
        } => quality::dataset(name, &data, &k, &out, aggregation, oos_negatives),
        Command::Serve {
            config,
            listen,
            http_listen,
            metrics_listen,
            model_threads,
            data_dir,
            watch,
            keys,
            grpc_max_concurrent,
            http_max_concurrent,
            admin,
            tls,
        } => {
            // Validate before binding: a broken file is reported at once, with its position.
            let loaded = config::load_file(&config.config)?;
            let token = read_token(admin.admin_token, admin.admin_token_file.as_deref())?;
            let enabled = admin.admin_listen.is_some() || admin.admin_on_main;
            if enabled && token.is_none() {
                anyhow::bail!(
                    "the admin API needs a token: set SEMROUTE_ADMIN_TOKEN or --admin-token-file"
                );
            }
            let mut options = ServeOptions {
                data_dir: Some(data_dir.unwrap_or_else(|| loaded.base_dir().join(".semroute"))),
                watch: watch.then(|| std::time::Duration::from_millis(500)),
                keys,
                grpc_max_concurrent,
                http_max_concurrent,
                tls: tls.tls_cert.zip(tls.tls_key).map(|(cert, key)| TlsOptions {
                    cert,
                    key,
                    admin_client_ca: tls.admin_client_ca,
                }),
                ..ServeOptions::default()
            };
            if let Some(t) = model_threads {
                options.model_threads = t;
            }
            let rt = runtime()?;
            let served = rt.block_on(async move {
                let listener = match listen.0 {
                    Some(a) => Some(bind(a, "--listen").await?),
                    None => None,
                };
                if let Some(a) = http_listen.0 {
                    options.http = Some(bind(a, "--http-listen").await?);
                }
                if let Some(a) = metrics_listen.0 {
                    options.metrics = Some(bind(a, "--metrics-listen").await?);
                }
                if enabled {
                    let admin_listener = match admin.admin_listen {
                        Some(a) => Some(bind(a, "--admin-listen").await?),
                        None => None,
                    };
                    options.admin = Some(AdminOptions {
                        token: token.unwrap_or_default(),
                        listener: admin_listener,
                    });
                }
                serve::serve(loaded, listener, options, serve::shutdown_signal()).await?;
                anyhow::Ok(())
            });
            // `serve` has drained the in-flight calls. What may still run is background work on blocking
            // threads, such as a first index build embedding thousands of exemplars: dropping the runtime
            // would wait for it (tens of seconds after a SIGTERM). Nothing is lost by not waiting: the
            // embedding store and admin changes are written atomically, and a build is redone on start.
            rt.shutdown_timeout(std::time::Duration::from_secs(2));
            served
        }
        Command::Bench {
            addr,
            face,
            concurrency,
            rate,
            duration,
            warmup,
            timeout_ms,
            text,
            prompts,
            json,
            api_key,
            tls,
        } => {
            anyhow::ensure!(
                duration > 0.0 && duration <= 600.0 && (0.0..=60.0).contains(&warmup),
                "--duration must be in (0, 600] and --warmup in [0, 60]"
            );
            let texts: Vec<String> = match prompts {
                Some(path) => std::fs::read_to_string(&path)
                    .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(String::from)
                    .collect(),
                None => vec![text],
            };
            anyhow::ensure!(
                (1..=600_000).contains(&timeout_ms),
                "--timeout-ms must be in [1, 600000]"
            );
            runtime()?.block_on(loadgen::run(loadgen::BenchPlan {
                addr,
                face,
                concurrency,
                rate,
                duration: std::time::Duration::from_secs_f64(duration),
                warmup: std::time::Duration::from_secs_f64(warmup.min(60.0)),
                timeout: std::time::Duration::from_millis(timeout_ms),
                texts,
                json,
                api_key,
                tls,
            }))
        }
        Command::Keys { file, command } => keys::run(&file, command),
        Command::Call { conn, command } => runtime()?.block_on(call::run(&conn, command)),
        Command::Probe {
            url,
            timeout_ms,
            tls,
        } => runtime()?.block_on(probe::run(
            &url,
            std::time::Duration::from_millis(timeout_ms),
            &tls,
        )),
        Command::Admin { conn, command } => {
            let token =
                read_token(conn.token.clone(), conn.token_file.as_deref())?.ok_or_else(|| {
                    anyhow::anyhow!("set --token, SEMROUTE_ADMIN_TOKEN or --token-file")
                })?;
            runtime()?.block_on(admin_client::run(&conn, &token, command))
        }
    }
}

/// Binds `addr`, saying which flag named it when that fails (a port in use is the usual reason).
async fn bind(addr: std::net::SocketAddr, flag: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("{flag} {addr}: {e}"))
}

/// The admin token from a flag/env value or a file.
fn read_token(
    value: Option<String>,
    file: Option<&std::path::Path>,
) -> anyhow::Result<Option<String>> {
    if let Some(f) = file {
        let t = std::fs::read_to_string(f)
            .map_err(|e| anyhow::anyhow!("admin token file {}: {e}", f.display()))?;
        let t = t.trim().to_string();
        anyhow::ensure!(!t.is_empty(), "admin token file {} is empty", f.display());
        return Ok(Some(t));
    }
    Ok(value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty()))
}
