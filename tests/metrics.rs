//! The Prometheus metrics end to end: the real server on 127.0.0.1:0 with its metrics listener, real
//! traffic on both faces (routes, completions through the built-in `mock` provider behind a target that
//! refuses connections, a stream, a 404, a gRPC error), then a scrape of `GET /metrics`, parsed and checked
//! family by family, and checked by Prometheus' own `promtool check metrics`.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::TestServer;
use semroute::grpc::pb::{self, router_client::RouterClient};
use serde_json::{json, Value};

/// A word no label value may carry: it appears only in prompts.
const MARKER: &str = "zebracrossing";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Two routes over the mock provider; `billing` tries a target that refuses connections first, and one
/// failure opens that target's circuit.
fn yaml(dead: std::net::SocketAddr) -> String {
    format!(
        "upstream: {{max_retries: 0, backoff_ms: 10, max_backoff_ms: 20, breaker_failures: 1}}
providers:
  - {{name: dead, kind: openai, base_url: http://{dead}/v1, timeouts: {{connect_ms: 300, first_token_ms: 2000, total_ms: 5000}}}}
  - {{name: mock, kind: mock}}
models:
  - {{name: dead-model, provider: dead, id: gone}}
  - {{name: mock-echo, provider: mock, id: echo, input_price: 1.0, output_price: 2.0}}
default_route: chat
routes:
  - name: billing
    utterances: [I want a refund for my invoice, why was my card charged twice, cancel my subscription]
    targets: [{{model: dead-model}}, {{model: mock-echo}}]
  - name: chat
    utterances: [hello there, how are you today, tell me a joke]
    targets: [{{model: mock-echo}}]
"
    )
}

/// One sample of the exposition.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the Prometheus text format's sample lines (comments skipped), with escaped label values.
fn parse(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name_end = line.find(['{', ' ']).expect("a sample line has a name");
        let name = line[..name_end].to_string();
        let mut labels = BTreeMap::new();
        let mut rest = &line[name_end..];
        if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices();
            let mut key = String::new();
            loop {
                let (i, c) = chars.next().expect("labels end with }");
                match c {
                    '}' => {
                        rest = &body[i + 1..];
                        break;
                    }
                    ',' => {}
                    '=' => {
                        assert_eq!(chars.next().map(|x| x.1), Some('"'), "{line}");
                        let mut value = String::new();
                        loop {
                            match chars.next().expect("a closed label value").1 {
                                '"' => break,
                                '\\' => match chars.next().unwrap().1 {
                                    'n' => value.push('\n'),
                                    other => value.push(other),
                                },
                                other => value.push(other),
                            }
                        }
                        labels.insert(std::mem::take(&mut key), value);
                    }
                    other => key.push(other),
                }
            }
        }
        let value = rest.split_whitespace().next().expect("a value");
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|e| panic!("{line}: {e}")),
        };
        out.push(Sample {
            name,
            labels,
            value,
        });
    }
    out
}

/// The sum of `name`'s samples whose labels include `want`; `None` when no sample matches.
fn sum(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<f64> = samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            want.iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .collect();
    (!matching.is_empty()).then(|| matching.iter().sum())
}

fn at_least(samples: &[Sample], name: &str, want: &[(&str, &str)], min: f64) {
    let got =
        sum(samples, name, want).unwrap_or_else(|| panic!("no sample of {name} with {want:?}"));
    assert!(
        got >= min,
        "{name} {want:?} = {got}, expected at least {min}"
    );
}

async fn scrape(server: &TestServer) -> String {
    let r = client().get(server.metrics_url()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    r.text().await.unwrap()
}

/// An address nothing listens on: bound, then released.
async fn closed_addr() -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_traffic_shows_in_every_family_and_promtool_accepts_the_exposition() {
    let server = TestServer::start_yaml(&yaml(closed_addr().await));
    server.wait_ready().await;
    let http = server.http_endpoint();
    let c = client();

    // gRPC: the same prompt twice (the second from the prompt cache), and a refused one.
    let mut grpc = RouterClient::connect(server.endpoint()).await.unwrap();
    let prompt = format!("{MARKER}: please refund the invoice I was charged twice for");
    for _ in 0..2 {
        let d = grpc
            .route(pb::RouteRequest {
                text: prompt.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(d.route, "billing");
    }
    let refused = grpc.route(pb::RouteRequest::default()).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);

    // HTTP: a decision, a completion that fails over to the mock, a stream, and a 404.
    let r = c
        .post(format!("{http}/v1/route"))
        .json(&json!({"text": format!("{MARKER} hello there, how are you")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .post(format!("{http}/v1/chat/completions"))
        .json(&json!({"model": "auto", "messages": [{"role": "user", "content": prompt}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .contains(MARKER));
    let r = c
        .post(format!("{http}/v1/chat/completions"))
        .json(&json!({"model": "auto", "stream": true,
            "messages": [{"role": "user", "content": format!("{MARKER} tell me a joke about cats")}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("[DONE]"));
    let r = c
        .get(format!("{http}/no/such/{MARKER}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    let text = scrape(&server).await;
    assert!(
        !text.contains(MARKER),
        "prompt text leaked into the exposition:\n{text}"
    );
    let s = parse(&text);
    for sample in &s {
        for v in sample.labels.values() {
            assert!(
                v.len() <= 64,
                "an unbounded-looking label value: {sample:?}"
            );
        }
    }

    // Requests, by face, method and code.
    let (grpc_route, requests) = ("/semroute.v1.Router/Route", "semroute_requests_total");
    at_least(
        &s,
        requests,
        &[("face", "grpc"), ("method", grpc_route), ("code", "OK")],
        2.0,
    );
    at_least(
        &s,
        requests,
        &[
            ("face", "grpc"),
            ("method", grpc_route),
            ("code", "InvalidArgument"),
        ],
        1.0,
    );
    at_least(
        &s,
        requests,
        &[("face", "http"), ("method", "/v1/route"), ("code", "200")],
        1.0,
    );
    at_least(
        &s,
        requests,
        &[
            ("face", "http"),
            ("method", "/v1/chat/completions"),
            ("code", "200"),
        ],
        2.0,
    );
    assert_eq!(
        sum(
            &s,
            requests,
            &[("face", "http"), ("method", "unmatched"), ("code", "404")]
        ),
        Some(1.0),
        "the 404 counts under one bounded label, not its path"
    );
    at_least(
        &s,
        "semroute_request_duration_seconds_count",
        &[("face", "grpc")],
        3.0,
    );
    at_least(
        &s,
        "semroute_request_duration_seconds_count",
        &[("face", "http")],
        4.0,
    );

    // Decisions: 2 gRPC + 1 /v1/route + 2 completions with `model: auto`.
    at_least(&s, "semroute_decisions_total", &[], 5.0);
    at_least(
        &s,
        "semroute_decisions_total",
        &[("route", "billing"), ("outcome", "matched")],
        3.0,
    );
    at_least(
        &s,
        "semroute_decision_score_count",
        &[("route", "billing")],
        3.0,
    );
    at_least(&s, "semroute_decision_margin_count", &[], 5.0);
    let scores = sum(&s, "semroute_decision_score_count", &[("route", "billing")]).unwrap();
    let score_sum = sum(&s, "semroute_decision_score_sum", &[("route", "billing")]).unwrap();
    assert!(
        score_sum > 0.0 && score_sum <= scores * 1.0001,
        "cosine scores average in (0, 1]: {score_sum} over {scores}"
    );

    // Stages.
    let stage = "semroute_stage_duration_seconds_count";
    for (name, min) in [
        ("queue", 1.0),
        ("embed", 1.0),
        ("search", 5.0),
        ("upstream_total", 2.0),
        ("upstream_ttft", 1.0),
        ("end_to_end", 5.0),
    ] {
        at_least(&s, stage, &[("stage", name)], min);
    }

    // The model queue and the prompt cache.
    at_least(&s, "semroute_embed_batch_size_count", &[], 1.0);
    assert_eq!(sum(&s, "semroute_embed_queue_depth", &[]), Some(0.0));
    assert_eq!(sum(&s, "semroute_admission_refused_total", &[]), Some(0.0));
    at_least(&s, "semroute_prompt_cache_hits_total", &[], 1.0);
    at_least(&s, "semroute_prompt_cache_misses_total", &[], 1.0);

    // Upstream: the dead target failed once and its circuit opened; the mock served both completions.
    at_least(
        &s,
        "semroute_upstream_attempts_total",
        &[
            ("target", "dead-model"),
            ("provider", "dead"),
            ("outcome", "failed"),
        ],
        1.0,
    );
    at_least(
        &s,
        "semroute_upstream_attempts_total",
        &[
            ("target", "mock-echo"),
            ("provider", "mock"),
            ("outcome", "ok"),
        ],
        2.0,
    );
    assert_eq!(
        sum(
            &s,
            "semroute_upstream_circuit_state",
            &[("target", "dead-model")]
        ),
        Some(2.0)
    );
    assert_eq!(
        sum(
            &s,
            "semroute_upstream_circuit_state",
            &[("target", "mock-echo")]
        ),
        Some(0.0)
    );
    for direction in ["input", "output"] {
        at_least(
            &s,
            "semroute_tokens_total",
            &[("model", "mock-echo"), ("direction", direction)],
            2.0,
        );
    }
    let cost = sum(&s, "semroute_cost_usd_total", &[("model", "mock-echo")]).unwrap();
    assert!(cost > 0.0, "{cost}");

    // The snapshot and the build.
    assert_eq!(sum(&s, "semroute_index_version", &[]), Some(1.0));
    assert_eq!(sum(&s, "semroute_index_utterances", &[]), Some(6.0));
    assert_eq!(
        sum(
            &s,
            "semroute_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );

    // Counters only grow: a second scrape after more traffic shows more.
    let before = sum(&s, requests, &[("face", "http"), ("method", "/v1/route")]).unwrap();
    c.post(format!("{http}/v1/route"))
        .json(&json!({"text": "tell me a joke"}))
        .send()
        .await
        .unwrap();
    let again = parse(&scrape(&server).await);
    let after = sum(
        &again,
        requests,
        &[("face", "http"), ("method", "/v1/route")],
    )
    .unwrap();
    assert_eq!(after, before + 1.0);
    assert_eq!(
        sum(&again, "semroute_prompt_cache_hits_total", &[]),
        sum(&s, "semroute_prompt_cache_hits_total", &[]),
        "a scrape does not count cache hits twice"
    );

    // The listener serves /metrics only.
    let r = c
        .get(format!("http://{}/other", server.metrics_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    promtool_check(&text);
}

/// `promtool check metrics` reads the exposition on stdin and fails on format errors and on lint problems
/// (naming conventions: `_total` counters, base units, help text).
fn promtool_check(text: &str) {
    let Some(promtool) = common::promtool() else {
        return;
    };
    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", promtool.display()));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- exposition ---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A burst against a one-place model queue: every refusal is counted once as an admission refusal and
/// once as a `ResourceExhausted` request, and the queue depth is back to 0 afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_at_a_full_model_queue_are_counted() {
    let yaml = "encoder:\n  queue_capacity: 1\n  max_batch: 1\n  cache_size: 0\nroutes:\n  - name: a\n    utterances: [hello there, good morning]\n";
    let server = TestServer::start_yaml(yaml);
    server.wait_ready().await;
    let client = RouterClient::connect(server.endpoint()).await.unwrap();
    let calls: Vec<_> = (0..48)
        .map(|i| {
            let mut c = client.clone();
            tokio::spawn(async move {
                c.route(pb::RouteRequest {
                    text: format!("{MARKER} prompt number {i}, long enough to keep the model busy"),
                    ..Default::default()
                })
                .await
            })
        })
        .collect();
    let mut exhausted = 0.0;
    for c in calls {
        if let Err(s) = c.await.unwrap() {
            assert_eq!(s.code(), tonic::Code::ResourceExhausted, "{s:?}");
            exhausted += 1.0;
        }
    }
    assert!(
        exhausted >= 1.0,
        "the burst should overflow a one-place queue"
    );
    let text = scrape(&server).await;
    assert!(!text.contains(MARKER));
    let s = parse(&text);
    assert_eq!(
        sum(&s, "semroute_admission_refused_total", &[]),
        Some(exhausted)
    );
    assert_eq!(
        sum(
            &s,
            "semroute_requests_total",
            &[("face", "grpc"), ("code", "ResourceExhausted")]
        ),
        Some(exhausted)
    );
    assert_eq!(
        sum(&s, "semroute_requests_total", &[("face", "grpc")]),
        Some(48.0)
    );
    assert_eq!(sum(&s, "semroute_embed_queue_depth", &[]), Some(0.0));
    // Without a prompt cache nothing is a hit; without `models` there are no circuits to report.
    assert_eq!(sum(&s, "semroute_prompt_cache_hits_total", &[]), Some(0.0));
    assert_eq!(sum(&s, "semroute_upstream_circuit_state", &[]), None);
}
