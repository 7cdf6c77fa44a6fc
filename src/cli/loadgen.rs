//! `semroute bench`: a bounded load generator over either face (gRPC Route or HTTP `POST /v1/route`).
//!
//! Closed loop (default): each of `concurrency` workers sends its next call as soon as the previous one
//! returns. Open loop (`--rate R`): calls start at R per second whatever the answers do — the way real
//! traffic arrives — so an overloaded server shows what it does with the excess: every call is counted as
//! served, refused (RESOURCE_EXHAUSTED / 429), past its deadline (DEADLINE_EXCEEDED / 504 / the client's
//! own timeout) or failed, with latency percentiles of served calls and of refusals.

use std::sync::Arc;
use std::time::{Duration, Instant};

use semroute::grpc::pb::router_client::RouterClient;
use semroute::grpc::pb::RouteRequest;
use serde_json::{json, Value};
use tonic::transport::Channel;

/// Longest run accepted, so a typo can't start an endless load.
const MAX_DURATION: Duration = Duration::from_secs(600);

/// Most calls open at once in open-loop mode: beyond it the generator itself is the bottleneck, and
/// further calls are counted as `not_sent` instead of piling up without bound.
const MAX_OPEN: usize = 50_000;

/// Which face to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchFace {
    /// gRPC `semroute.v1.Router/Route`.
    Grpc,
    /// HTTP `POST /v1/route`.
    Http,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchPlan {
    /// The server: `http://host:port` (or `https://…`) of the chosen face.
    pub addr: String,
    /// The face.
    pub face: BenchFace,
    /// Closed-loop workers (ignored with `rate`).
    pub concurrency: usize,
    /// Open loop: calls started per second.
    pub rate: Option<f64>,
    /// Measured time.
    pub duration: Duration,
    /// Unmeasured warm-up before it.
    pub warmup: Duration,
    /// The deadline sent with each call (`grpc-timeout` / `x-request-timeout`).
    pub timeout: Duration,
    /// Prompts, cycled.
    pub texts: Vec<String>,
    /// Print JSON.
    pub json: bool,
    /// A client key sent with every call.
    pub api_key: Option<super::args::ApiKey>,
    /// How `https://` servers are checked.
    pub tls: super::ClientTlsArgs,
}

/// How one call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Served,
    Refused,
    Deadline,
    Failed,
}

#[derive(Clone)]
enum Client {
    Grpc(
        RouterClient<Channel>,
        Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    ),
    Http {
        client: reqwest::Client,
        url: Arc<str>,
    },
}

impl Client {
    async fn call(&mut self, text: &str, timeout: Duration) -> Outcome {
        match self {
            Client::Grpc(c, auth) => {
                let mut req = tonic::Request::new(RouteRequest {
                    text: text.to_string(),
                    ..Default::default()
                });
                req.set_timeout(timeout);
                if let Some(v) = auth {
                    req.metadata_mut().insert("authorization", v.clone());
                }
                match c.route(req).await {
                    Ok(_) => Outcome::Served,
                    Err(s) => match s.code() {
                        tonic::Code::ResourceExhausted => Outcome::Refused,
                        // tonic reports its own expired timeout as Cancelled.
                        tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => Outcome::Deadline,
                        _ => Outcome::Failed,
                    },
                }
            }
            Client::Http { client, url } => {
                let r = client
                    .post(&**url)
                    .header("x-request-timeout", format!("{:.3}", timeout.as_secs_f64()))
                    .timeout(timeout)
                    .json(&json!({ "text": text }))
                    .send()
                    .await;
                match r {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        // Read the body, so the connection is reused.
                        let _ = resp.bytes().await;
                        match status {
                            200 => Outcome::Served,
                            429 => Outcome::Refused,
                            504 => Outcome::Deadline,
                            _ => Outcome::Failed,
                        }
                    }
                    Err(e) if e.is_timeout() => Outcome::Deadline,
                    Err(_) => Outcome::Failed,
                }
            }
        }
    }
}

async fn clients(plan: &BenchPlan, n: usize) -> anyhow::Result<Vec<Client>> {
    let addr = plan.addr.trim_end_matches('/');
    let bearer = plan.api_key.as_ref().map(|k| format!("Bearer {}", k.0));
    match plan.face {
        BenchFace::Grpc => {
            let auth = match &bearer {
                Some(b) => {
                    let mut v: tonic::metadata::MetadataValue<tonic::metadata::Ascii> =
                        b.parse().map_err(|_| {
                            anyhow::anyhow!("--api-key is not a valid header value")
                        })?;
                    v.set_sensitive(true);
                    Some(v)
                }
                None => None,
            };
            // A few HTTP/2 connections shared by the workers, as a pooled client would.
            let mut out = Vec::new();
            for _ in 0..n.clamp(1, 8) {
                let ch = super::connect::endpoint(addr, &plan.tls, None)?
                    .tcp_nodelay(true)
                    .connect()
                    .await
                    .map_err(|e| anyhow::anyhow!("connecting to {addr}: {e}"))?;
                out.push(Client::Grpc(RouterClient::new(ch), auth.clone()));
            }
            Ok(out)
        }
        BenchFace::Http => {
            let mut headers = reqwest::header::HeaderMap::new();
            if let Some(b) = &bearer {
                let mut v = reqwest::header::HeaderValue::from_str(b)
                    .map_err(|_| anyhow::anyhow!("--api-key is not a valid header value"))?;
                v.set_sensitive(true);
                headers.insert(reqwest::header::AUTHORIZATION, v);
            }
            let client = super::connect::http(reqwest::Client::builder(), &plan.tls)?
                .default_headers(headers)
                .tcp_nodelay(true)
                .pool_max_idle_per_host(1024)
                .build()?;
            Ok(vec![Client::Http {
                client,
                url: format!("{addr}/v1/route").into(),
            }])
        }
    }
}

/// Calls of one outcome: their latencies in microseconds.
#[derive(Default)]
struct Tally {
    served: Vec<u64>,
    refused: Vec<u64>,
    deadline: Vec<u64>,
    failed: u64,
}

impl Tally {
    fn add(&mut self, outcome: Outcome, micros: u64) {
        match outcome {
            Outcome::Served => self.served.push(micros),
            Outcome::Refused => self.refused.push(micros),
            Outcome::Deadline => self.deadline.push(micros),
            Outcome::Failed => self.failed += 1,
        }
    }

    fn merge(&mut self, other: Tally) {
        self.served.extend(other.served);
        self.refused.extend(other.refused);
        self.deadline.extend(other.deadline);
        self.failed += other.failed;
    }

    fn total(&self) -> u64 {
        (self.served.len() + self.refused.len() + self.deadline.len()) as u64 + self.failed
    }
}

/// p50/p90/p99/max of `micros`, in milliseconds.
fn percentiles(micros: &mut [u64]) -> Value {
    micros.sort_unstable();
    let pct = |p: f64| -> f64 {
        if micros.is_empty() {
            return 0.0;
        }
        let i = ((micros.len() as f64 * p).ceil() as usize).clamp(1, micros.len()) - 1;
        micros[i] as f64 / 1000.0
    };
    json!({
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "max_ms": micros.last().map_or(0.0, |m| *m as f64 / 1000.0),
    })
}

/// Runs the load and prints the summary.
pub async fn run(plan: BenchPlan) -> anyhow::Result<()> {
    anyhow::ensure!(!plan.texts.is_empty(), "no prompts to send");
    anyhow::ensure!(
        plan.duration <= MAX_DURATION,
        "--duration is capped at {MAX_DURATION:?}"
    );
    let (mut tally, not_sent, lag_p99_ms) = match plan.rate {
        None => {
            anyhow::ensure!(
                (1..=1024).contains(&plan.concurrency),
                "--concurrency must be 1..=1024"
            );
            (closed_loop(&plan).await?, 0, None)
        }
        Some(rate) => {
            anyhow::ensure!(
                rate > 0.0 && rate <= 100_000.0,
                "--rate must be in (0, 100000] calls per second"
            );
            let (t, n, lag) = open_loop(&plan, rate).await?;
            (t, n, Some(lag))
        }
    };
    let secs = plan.duration.as_secs_f64();
    let served = tally.served.len();
    let mut summary = json!({
        "addr": plan.addr,
        "face": match plan.face { BenchFace::Grpc => "grpc", BenchFace::Http => "http" },
        "mode": if plan.rate.is_some() { "open" } else { "closed" },
        "duration_s": secs,
        "timeout_ms": plan.timeout.as_millis() as u64,
        "calls": tally.total(),
        "served": served,
        "refused": tally.refused.len(),
        "deadline_exceeded": tally.deadline.len(),
        "failed": tally.failed,
        "served_per_s": served as f64 / secs,
        "served_latency": percentiles(&mut tally.served),
        "refused_latency": percentiles(&mut tally.refused),
    });
    match plan.rate {
        Some(rate) => {
            summary["rate"] = json!(rate);
            summary["not_sent"] = json!(not_sent);
            summary["start_lag_p99_ms"] = json!(lag_p99_ms.unwrap_or(0.0));
        }
        None => summary["concurrency"] = json!(plan.concurrency),
    }
    if plan.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        let s = &summary["served_latency"];
        let r = &summary["refused_latency"];
        let load = match plan.rate {
            Some(rate) => format!("open loop at {rate}/s"),
            None => format!("concurrency {}", plan.concurrency),
        };
        println!(
            "{} calls in {secs:.1}s, {load}: {served} served ({:.0}/s; p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms), {} refused (p99 {:.2} ms), {} past deadline, {} failed{}",
            tally.total(),
            served as f64 / secs,
            s["p50_ms"].as_f64().unwrap_or(0.0),
            s["p90_ms"].as_f64().unwrap_or(0.0),
            s["p99_ms"].as_f64().unwrap_or(0.0),
            s["max_ms"].as_f64().unwrap_or(0.0),
            summary["refused"],
            r["p99_ms"].as_f64().unwrap_or(0.0),
            summary["deadline_exceeded"],
            tally.failed,
            if not_sent > 0 { format!(", {not_sent} not sent (generator saturated)") } else { String::new() },
        );
    }
    anyhow::ensure!(served > 0, "no call was served");
    Ok(())
}

async fn closed_loop(plan: &BenchPlan) -> anyhow::Result<Tally> {
    let pool = clients(plan, plan.concurrency).await?;
    let start = Instant::now();
    let measure_from = start + plan.warmup;
    let stop_at = measure_from + plan.duration;
    let mut workers = Vec::new();
    for i in 0..plan.concurrency {
        let mut client = pool[i % pool.len()].clone();
        // Each worker walks the prompts from its own offset, so concurrent calls carry different prompts.
        let texts = plan.texts.clone();
        let timeout = plan.timeout;
        let mut next = i * texts.len() / plan.concurrency;
        workers.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            loop {
                let text = &texts[next % texts.len()];
                next += 1;
                let t0 = Instant::now();
                if t0 >= stop_at {
                    break;
                }
                let outcome = client.call(text, timeout).await;
                if t0 >= measure_from {
                    tally.add(outcome, t0.elapsed().as_micros() as u64);
                }
            }
            tally
        }));
    }
    let mut tally = Tally::default();
    for w in workers {
        tally.merge(w.await?);
    }
    Ok(tally)
}

/// Starts calls at `rate` per second for the warm-up and the measured time; a call belongs to the
/// measurement when it was due inside it. Latency counts from when the call was due, so a generator that
/// falls behind shows as latency (and as start lag), not as a lower rate.
async fn open_loop(plan: &BenchPlan, rate: f64) -> anyhow::Result<(Tally, u64, f64)> {
    let pool = clients(plan, 8).await?;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now() + Duration::from_millis(10);
    let measure_from = start + plan.warmup;
    let stop_at = measure_from + plan.duration;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Outcome, u64)>();
    let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut not_sent = 0u64;
    let mut lags = Vec::new();
    let mut k: u64 = 0;
    loop {
        let due = start + interval.mul_f64(k as f64);
        if due >= stop_at {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        let measured = due >= measure_from;
        if measured {
            lags.push(due.elapsed().as_micros() as u64);
        }
        if open.load(std::sync::atomic::Ordering::Relaxed) >= MAX_OPEN {
            not_sent += u64::from(measured);
        } else {
            open.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut client = pool[(k as usize) % pool.len()].clone();
            let text = plan.texts[(k as usize) % plan.texts.len()].clone();
            let (tx, open, timeout) = (tx.clone(), open.clone(), plan.timeout);
            tokio::spawn(async move {
                let outcome = client.call(&text, timeout).await;
                open.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                if measured {
                    let _ = tx.send((outcome, due.elapsed().as_micros() as u64));
                }
            });
        }
        k += 1;
    }
    drop(tx);
    let mut tally = Tally::default();
    // Every call ends by its timeout; the extra second covers the client's own bookkeeping.
    let drain_until = Instant::now() + plan.timeout + Duration::from_secs(1);
    loop {
        match tokio::time::timeout_at(drain_until.into(), rx.recv()).await {
            Ok(Some((o, micros))) => tally.add(o, micros),
            Ok(None) => break,
            Err(_) => break,
        }
    }
    lags.sort_unstable();
    let lag_p99 = lags
        .get(((lags.len() as f64 * 0.99) as usize).min(lags.len().saturating_sub(1)))
        .map_or(0.0, |m| *m as f64 / 1000.0);
    Ok((tally, not_sent, lag_p99))
}
