//! Gateway overhead: `Complete` over gRPC and `POST /v1/chat/completions` over HTTP, with the route given
//! (no classification), against a local upstream that answers at once, versus calling that upstream
//! directly.
//!
//! ```sh
//! cargo run --release --example overhead -- [RATE_PER_S] [REQUESTS]     # default 200 req/s, 3000 requests
//! cargo run --release --example overhead -- --open RATE[,RATE...] SECONDS
//! ```
//!
//! The first form sends one request at a time at a fixed rate. `--open` is open loop: requests start on
//! schedule whatever the answers do (a slow answer does not delay the next start, so queueing shows in the
//! latencies), for each rate in turn; latency counts from the scheduled start. A rate is sustained when
//! every request was answered, the achieved rate is within 2% of the target and p99 stays under 10 ms.
//! Prints p50/p90/p99 for each path and what each face adds over the direct call. Needs the model in `models/` (the server loads it even
//! though these requests skip classification).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::routing::post;
use semroute::config::{self, LoadedConfig};
use semroute::grpc::pb::router_client::RouterClient;
use semroute::grpc::pb::{CompleteRequest, Message};
use semroute::serve::{self, ServeOptions};

const ANSWER: &str = r#"{"choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#;

/// Requests that failed (error or non-2xx), since the last [`failures`].
static FAILED: AtomicUsize = AtomicUsize::new(0);

fn fail() {
    FAILED.fetch_add(1, Ordering::Relaxed);
}

fn failures() -> usize {
    FAILED.swap(0, Ordering::Relaxed)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn summary(name: &str, mut v: Vec<Duration>) -> [Duration; 3] {
    v.sort_unstable();
    let ps = [
        percentile(&v, 0.5),
        percentile(&v, 0.9),
        percentile(&v, 0.99),
    ];
    println!(
        "{name:<10} n={} p50={:>7.1} µs  p90={:>7.1} µs  p99={:>7.1} µs",
        v.len(),
        ps[0].as_secs_f64() * 1e6,
        ps[1].as_secs_f64() * 1e6,
        ps[2].as_secs_f64() * 1e6
    );
    ps
}

/// Runs `n` calls of `f` at `rate` per second (a call that overruns its slot delays the next one).
async fn paced<F, Fut>(rate: u64, n: usize, mut f: F) -> Vec<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        tick.tick().await;
        let t0 = Instant::now();
        f().await;
        out.push(t0.elapsed());
    }
    out
}

/// Starts `f()` every `1/rate` s for `secs` seconds without waiting for answers; returns each call's latency
/// from its actual start, the wall time from the first start to the last answer, and the p99 of how late
/// calls started. Latency counts from the actual start because tokio's timer wakes at millisecond
/// granularity: counting from the schedule would add up to 1 ms of timer lag to every path alike. A
/// generator that falls behind shows in the lag and in the achieved rate.
async fn open_loop<F, Fut>(rate: u64, secs: u64, f: F) -> (Vec<Duration>, Duration, Duration)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let n = (rate * secs) as usize;
    let period = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(n);
    let mut lag = Vec::with_capacity(n);
    for i in 0..n {
        let due = start + period * i as u32;
        tokio::time::sleep_until(due).await;
        let call = f();
        let t0 = Instant::now();
        lag.push(t0.saturating_duration_since(due.into_std()));
        tasks.push(tokio::spawn(async move {
            call.await;
            t0.elapsed()
        }));
    }
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await.expect("request task"));
    }
    lag.sort_unstable();
    (out, start.elapsed(), percentile(&lag, 0.99))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let open: Option<(Vec<u64>, u64)> = match args.get(1).map(String::as_str) {
        Some("--open") => {
            let rates = args
                .get(2)
                .ok_or("--open RATE[,RATE...] SECONDS")?
                .split(',')
                .map(str::parse)
                .collect::<Result<Vec<u64>, _>>()?;
            let secs = args.get(3).map_or(Ok(5), |s| s.parse())?;
            Some((rates, secs))
        }
        _ => None,
    };
    let rate: u64 = args
        .get(1)
        .filter(|_| open.is_none())
        .map_or(Ok(200), |s| s.parse())?;
    let n: usize = args
        .get(2)
        .filter(|_| open.is_none())
        .map_or(Ok(3000), |s| s.parse())?;

    // The upstream: an OpenAI-compatible endpoint that answers at once.
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        post(|| async { ([("content-type", "application/json")], ANSWER) }),
    );
    let up = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let up_addr = up.local_addr()?;
    tokio::spawn(async move { axum::serve(up, app).await });

    let yaml = format!(
        "providers:\n  - name: local\n    kind: openai\n    base_url: http://{up_addr}/v1\nmodels:\n  - name: m\n    provider: local\n    id: m\nroutes:\n  - name: chat\n    utterances: [hello]\n    targets:\n      - model: m\n"
    );
    let loaded = LoadedConfig {
        config: config::parse_str(&yaml, "<overhead>")?,
        path: None,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let http_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let http_addr = http_listener.local_addr()?;
    tokio::spawn(serve::serve(
        loaded,
        Some(listener),
        ServeOptions {
            http: Some(http_listener),
            ..ServeOptions::default()
        },
        std::future::pending(),
    ));
    let mut client = loop {
        if let Ok(c) = RouterClient::connect(format!("http://{addr}")).await {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let request = CompleteRequest {
        messages: vec![Message {
            role: "user".into(),
            content: "hello".into(),
        }],
        route: Some("chat".into()),
        ..Default::default()
    };
    // Wait for the model and index (Complete answers UNAVAILABLE until then).
    let deadline = Instant::now() + Duration::from_secs(120);
    while client.complete(request.clone()).await.is_err() {
        assert!(Instant::now() < deadline, "server did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let http = reqwest::Client::builder().tcp_nodelay(true).build()?;
    let url = format!("http://{up_addr}/v1/chat/completions");
    let body = serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hello"}], "stream": false});
    let direct = || {
        let req = http.post(&url).json(&body);
        async move {
            match req.send().await {
                Ok(r) if r.status().is_success() => drop(r.bytes().await),
                _ => fail(),
            }
        }
    };
    let gateway = || {
        let mut c = client.clone();
        let req = request.clone();
        async move {
            if c.complete(req).await.is_err() {
                fail();
            }
        }
    };
    let face_url = format!("http://{http_addr}/v1/chat/completions");
    let face_body =
        serde_json::json!({"model": "chat", "messages": [{"role": "user", "content": "hello"}]});
    let http_face = || {
        let req = http.post(&face_url).json(&face_body);
        async move {
            match req.send().await {
                Ok(r) if r.status().is_success() => drop(r.bytes().await),
                _ => fail(),
            }
        }
    };
    if let Some((rates, secs)) = open {
        // Warm every path first (connections, allocator, branch predictors).
        paced(500, 500, direct).await;
        paced(500, 500, gateway).await;
        paced(500, 500, http_face).await;
        for rate in rates {
            println!("open loop at {rate}/s for {secs} s per path");
            let mut ps = Vec::new();
            for (name, run) in [
                ("direct", open_loop(rate, secs, direct).await),
                ("grpc", open_loop(rate, secs, gateway).await),
                ("http", open_loop(rate, secs, http_face).await),
            ] {
                let (lat, wall, lag) = run;
                let failed = failures();
                let achieved = lat.len() as f64 / wall.as_secs_f64();
                let p = summary(name, lat);
                let sustained = failed == 0
                    && achieved >= rate as f64 * 0.98
                    && p[2] < Duration::from_millis(10);
                println!(
                    "{:<10} achieved {achieved:.0}/s, {failed} failed, start lag p99 {:.1} ms: {}",
                    "",
                    lag.as_secs_f64() * 1e3,
                    if sustained {
                        "sustained"
                    } else {
                        "NOT sustained"
                    }
                );
                ps.push(p);
            }
            let us = |a: Duration, b: Duration| (a.as_secs_f64() - b.as_secs_f64()) * 1e6;
            for (name, x) in [("grpc", ps[1]), ("http", ps[2])] {
                println!(
                    "{name} adds  p50={:>7.1} µs  p90={:>7.1} µs  p99={:>7.1} µs",
                    us(x[0], ps[0][0]),
                    us(x[1], ps[0][1]),
                    us(x[2], ps[0][2])
                );
            }
        }
        return Ok(());
    }

    // Warm every path (connections, allocator, branch predictors).
    paced(rate, n / 10, direct).await;
    paced(rate, n / 10, gateway).await;
    paced(rate, n / 10, http_face).await;

    failures();
    println!("{n} requests at {rate}/s, one at a time");
    let d = summary("direct", paced(rate, n, direct).await);
    let g = summary("grpc", paced(rate, n, gateway).await);
    let h = summary("http", paced(rate, n, http_face).await);
    let failed = failures();
    if failed > 0 {
        println!("{failed} requests failed");
    }
    let us = |a: Duration, b: Duration| (a.as_secs_f64() - b.as_secs_f64()) * 1e6;
    for (name, x) in [("grpc", g), ("http", h)] {
        println!(
            "{name} adds  p50={:>7.1} µs  p90={:>7.1} µs  p99={:>7.1} µs",
            us(x[0], d[0]),
            us(x[1], d[1]),
            us(x[2], d[2])
        );
    }
    Ok(())
}
