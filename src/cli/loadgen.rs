//! `semroute bench`: a bounded load generator over real gRPC. Closed loop: each of `concurrency` workers
//! sends its next Route call as soon as the previous one returns, for `duration` after a warm-up.

use std::time::{Duration, Instant};

use semroute::grpc::pb::router_client::RouterClient;
use semroute::grpc::pb::RouteRequest;
use serde_json::json;

/// Longest run accepted, so a typo can't start an endless load.
const MAX_DURATION: Duration = Duration::from_secs(600);

/// Runs the load and prints the summary.
pub async fn run(
    addr: &str,
    concurrency: usize,
    duration: Duration,
    warmup: Duration,
    texts: &[String],
    as_json: bool,
) -> anyhow::Result<()> {
    anyhow::ensure!(!texts.is_empty(), "no prompts to send");
    anyhow::ensure!(
        (1..=1024).contains(&concurrency),
        "--concurrency must be 1..=1024"
    );
    anyhow::ensure!(
        duration <= MAX_DURATION,
        "--duration is capped at {MAX_DURATION:?}"
    );
    // A few HTTP/2 connections shared by the workers, as a pooled client would.
    let mut channels = Vec::new();
    for _ in 0..concurrency.min(8) {
        channels.push(
            tonic::transport::Endpoint::from_shared(addr.to_string())?
                .tcp_nodelay(true)
                .connect()
                .await
                .map_err(|e| anyhow::anyhow!("connecting to {addr}: {e}"))?,
        );
    }
    let start = Instant::now();
    let measure_from = start + warmup;
    let stop_at = measure_from + duration;
    let mut workers = Vec::new();
    for i in 0..concurrency {
        let mut client = RouterClient::new(channels[i % channels.len()].clone());
        // Each worker walks the prompts from its own offset, so concurrent calls carry different prompts.
        let texts = texts.to_vec();
        let mut next = i * texts.len() / concurrency;
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            loop {
                let text = &texts[next % texts.len()];
                next += 1;
                let t0 = Instant::now();
                if t0 >= stop_at {
                    break;
                }
                let r = client
                    .route(RouteRequest {
                        text: text.clone(),
                        ..Default::default()
                    })
                    .await;
                if t0 >= measure_from {
                    match r {
                        Ok(_) => lat.push(t0.elapsed().as_micros() as u64),
                        Err(_) => errors += 1,
                    }
                }
            }
            (lat, errors)
        }));
    }
    let mut lat = Vec::new();
    let mut errors = 0;
    for w in workers {
        let (l, e) = w.await?;
        lat.extend(l);
        errors += e;
    }
    lat.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return 0.0;
        }
        let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
        lat[i] as f64 / 1000.0
    };
    let secs = duration.as_secs_f64();
    let summary = json!({
        "addr": addr,
        "concurrency": concurrency,
        "duration_s": secs,
        "requests": lat.len(),
        "errors": errors,
        "rps": lat.len() as f64 / secs,
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "max_ms": lat.last().map_or(0.0, |m| *m as f64 / 1000.0),
    });
    if as_json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "{} requests in {secs:.1}s at concurrency {concurrency}: {:.0} routes/s, p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {errors} errors",
            lat.len(),
            lat.len() as f64 / secs,
            pct(0.5),
            pct(0.9),
            pct(0.99),
            summary["max_ms"].as_f64().unwrap_or(0.0),
        );
    }
    anyhow::ensure!(!lat.is_empty(), "no request succeeded");
    Ok(())
}
