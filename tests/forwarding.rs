//! Forwarding end to end: the real server on 127.0.0.1:0, fake OpenAI and Anthropic providers started by the
//! tests (tests/common/upstream.rs) with faults injected on demand.

mod common;

use std::time::{Duration, Instant};

use common::upstream::{refused_addr, FakeUpstream, Fault, INPUT_TOKENS, OUTPUT_TOKENS};
use common::TestServer;
use semroute::grpc::pb::router_client::RouterClient;
use semroute::grpc::pb::{AttemptOutcome, CompleteRequest, CompleteResponse, Message};
use tonic::transport::Channel;
use tonic::Code;

type Client = RouterClient<Channel>;

/// Fast fault handling so that every test stays within seconds.
const UPSTREAM: &str = "upstream:
  max_retries: 1
  backoff_ms: 10
  max_backoff_ms: 40
  retry_after_max_ms: 500
  breaker_failures: 100
  breaker_cool_down_ms: 300
";

const UTTERANCES: &str = "    utterances: [hello there, how are you today]\n";

fn provider(name: &str, kind: &str, base_url: &str) -> String {
    format!(
        "  - name: {name}\n    kind: {kind}\n    base_url: {base_url}\n    timeouts: {{connect_ms: 300, first_token_ms: 300, total_ms: 500}}\n"
    )
}

fn model(name: &str, provider: &str, input_price: f64, output_price: f64) -> String {
    format!("  - name: {name}\n    provider: {provider}\n    id: {name}-v1\n    input_price: {input_price}\n    output_price: {output_price}\n")
}

fn targets(models: &[&str]) -> String {
    let mut s = "    targets:\n".to_string();
    for m in models {
        s.push_str(&format!("      - model: {m}\n"));
    }
    s
}

async fn serve(yaml: &str) -> (TestServer, Client) {
    let server = TestServer::start_yaml(yaml);
    server.wait_ready().await;
    let client = RouterClient::connect(server.endpoint()).await.unwrap();
    (server, client)
}

fn ask(route: &str, text: &str) -> CompleteRequest {
    CompleteRequest {
        messages: vec![Message {
            role: "user".into(),
            content: text.into(),
        }],
        route: Some(route.into()),
        ..Default::default()
    }
}

fn outcomes(r: &CompleteResponse) -> Vec<(String, AttemptOutcome)> {
    r.attempts
        .iter()
        .map(|a| (a.target.clone(), a.outcome()))
        .collect()
}

fn served(r: &CompleteResponse) -> &str {
    &r.served_by.as_ref().unwrap().model
}

async fn complete(c: &mut Client, req: CompleteRequest) -> CompleteResponse {
    c.complete(req).await.unwrap().into_inner()
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_retries_usage_and_cost() {
    let a = FakeUpstream::start("from a").await;
    let b = FakeUpstream::start("from b").await;
    let yaml = format!(
        "{UPSTREAM}providers:\n{}{}models:\n{}{}routes:\n  - name: chat\n{UTTERANCES}{}",
        provider("pa", "openai", &a.base_url()),
        provider("pb", "anthropic", &b.base_url()),
        model("small", "pa", 1.0, 2.0),
        model("large", "pb", 3.0, 15.0),
        targets(&["small", "large"]),
    );
    let (_server, mut c) = serve(&yaml).await;

    // Healthy first target: served by it, usage and cost from its prices.
    let r = complete(&mut c, ask("chat", "hi")).await;
    assert_eq!(r.content, "from a");
    assert_eq!(served(&r), "small");
    let u = r.usage.unwrap();
    assert_eq!(
        (u.input_tokens, u.output_tokens),
        (INPUT_TOKENS, OUTPUT_TOKENS)
    );
    let want = (INPUT_TOKENS as f64 * 1.0 + OUTPUT_TOKENS as f64 * 2.0) / 1e6;
    assert!(
        (r.cost_usd - want).abs() < 1e-12,
        "{} vs {want}",
        r.cost_usd
    );
    assert_eq!(r.decision.as_ref().unwrap().route, "chat");
    assert_eq!(a.last_body()["model"], "small-v1");

    // 500 twice (one retry), then the next target in order, in the Anthropic format.
    a.push(Fault::Status(500));
    a.push(Fault::Status(500));
    let before = a.requests();
    let r = complete(&mut c, ask("chat", "hi")).await;
    assert_eq!(
        outcomes(&r),
        vec![
            ("small".into(), AttemptOutcome::Failed),
            ("small".into(), AttemptOutcome::Failed),
            ("large".into(), AttemptOutcome::Ok)
        ]
    );
    assert!(r.attempts[0].error.contains("HTTP 500"), "{:?}", r.attempts);
    assert_eq!(a.requests() - before, 2);
    assert_eq!(r.content, "from b");
    assert_eq!(r.served_by.as_ref().unwrap().provider, "pb");
    let want = (INPUT_TOKENS as f64 * 3.0 + OUTPUT_TOKENS as f64 * 15.0) / 1e6;
    assert!((r.cost_usd - want).abs() < 1e-12);
    assert_eq!(b.last_body()["model"], "large-v1");
    assert_eq!(b.last_headers()["anthropic-version"], "2023-06-01");

    // Other 4xx: no retry.
    a.push(Fault::Status(400));
    let before = a.requests();
    let r = complete(&mut c, ask("chat", "hi")).await;
    assert_eq!(a.requests() - before, 1);
    assert_eq!(served(&r), "large");

    // 429 with a Retry-After inside the budget: waited for, then retried on the same target.
    a.push(Fault::RateLimited(0));
    let r = complete(&mut c, ask("chat", "hi")).await;
    assert_eq!(
        outcomes(&r),
        vec![
            ("small".into(), AttemptOutcome::Failed),
            ("small".into(), AttemptOutcome::Ok)
        ]
    );
    // Retry-After past the budget (500 ms): straight to the next target, without waiting.
    a.push(Fault::RateLimited(30));
    let before = a.requests();
    let t0 = Instant::now();
    let r = complete(&mut c, ask("chat", "hi")).await;
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_eq!(a.requests() - before, 1);
    assert_eq!(served(&r), "large");
    assert!(r.attempts[0].error.contains("429"));

    // `model` skips target choice.
    let mut req = ask("chat", "hi");
    req.model = Some("large".into());
    let r = complete(&mut c, req).await;
    assert_eq!(outcomes(&r), vec![("large".into(), AttemptOutcome::Ok)]);
    // Unknown model and route: NOT_FOUND.
    let mut req = ask("chat", "hi");
    req.model = Some("nope".into());
    assert_eq!(c.complete(req).await.unwrap_err().code(), Code::NotFound);
    assert_eq!(
        c.complete(ask("nope", "hi")).await.unwrap_err().code(),
        Code::NotFound
    );
    // Bad input: INVALID_ARGUMENT.
    let mut req = ask("chat", "hi");
    req.messages.clear();
    assert_eq!(
        c.complete(req).await.unwrap_err().code(),
        Code::InvalidArgument
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_refusals_malformed_answers_and_all_failing() {
    let hang = FakeUpstream::start("never").await;
    hang.set_default(Fault::Hang);
    let bad = FakeUpstream::start("bad").await;
    bad.set_default(Fault::Malformed);
    let refused = format!("http://{}/v1", refused_addr().await);
    let yaml = format!(
        "{UPSTREAM}providers:\n{}{}{}models:\n{}{}{}routes:\n  - name: chat\n{UTTERANCES}{}",
        provider("down", "openai", &refused),
        provider("slow", "openai", &hang.base_url()),
        provider("junk", "anthropic", &bad.base_url()),
        model("m-down", "down", 0.0, 0.0),
        model("m-slow", "slow", 0.0, 0.0),
        model("m-junk", "junk", 0.0, 0.0),
        targets(&["m-down", "m-slow", "m-junk"]),
    );
    let (_server, mut c) = serve(&yaml).await;
    let t0 = Instant::now();
    let e = c.complete(ask("chat", "hi")).await.unwrap_err();
    // Two attempts on the hanging target at 500 ms total each, plus backoff: bounded.
    assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    let m = e.message();
    assert!(m.contains("all targets failed for route `chat`"), "{m}");
    assert!(
        m.contains("m-down (down): failed") && m.contains("connect"),
        "{m}"
    );
    assert!(
        m.contains("m-slow (slow): timeout") && m.contains("total timeout after 500 ms"),
        "{m}"
    );
    assert!(
        m.contains("m-junk (junk): failed") && m.contains("malformed"),
        "{m}"
    );
    // Connect errors and timeouts were retried once; malformed answers are not retried.
    assert_eq!(m.matches("m-down (down)").count(), 2, "{m}");
    assert_eq!(m.matches("m-slow (slow)").count(), 2, "{m}");
    assert_eq!(bad.requests(), 1, "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_opens_half_opens_and_closes() {
    let a = FakeUpstream::start("from a").await;
    a.set_default(Fault::Status(503));
    let b = FakeUpstream::start("from b").await;
    let yaml = format!(
        "upstream:\n  max_retries: 0\n  breaker_failures: 2\n  breaker_cool_down_ms: 300\nproviders:\n{}{}models:\n{}{}routes:\n  - name: chat\n{UTTERANCES}{}",
        provider("pa", "openai", &a.base_url()),
        provider("pb", "openai", &b.base_url()),
        model("a", "pa", 0.0, 0.0),
        model("b", "pb", 0.0, 0.0),
        targets(&["a", "b"]),
    );
    let (_server, mut c) = serve(&yaml).await;
    let circuit = |r: &CompleteResponse| r.attempts[0].circuit.clone();

    let r = complete(&mut c, ask("chat", "hi")).await;
    assert_eq!(outcomes(&r)[0].1, AttemptOutcome::Failed);
    assert_eq!(circuit(&r), "closed");
    let r = complete(&mut c, ask("chat", "hi")).await;
    assert_eq!(circuit(&r), "open", "second consecutive failure opens");
    assert_eq!(served(&r), "b");
    // Open: skipped without a request.
    let r = complete(&mut c, ask("chat", "hi")).await;
    assert_eq!(
        outcomes(&r),
        vec![
            ("a".into(), AttemptOutcome::CircuitOpen),
            ("b".into(), AttemptOutcome::Ok)
        ]
    );
    assert_eq!(a.requests(), 2);
    // After the cool-down one probe goes through; it fails, so the circuit reopens at once.
    tokio::time::sleep(Duration::from_millis(350)).await;
    let r = complete(&mut c, ask("chat", "hi")).await;
    assert_eq!(outcomes(&r)[0].1, AttemptOutcome::Failed);
    assert_eq!(circuit(&r), "open");
    assert_eq!(a.requests(), 3);
    let r = complete(&mut c, ask("chat", "hi")).await;
    assert_eq!(outcomes(&r)[0].1, AttemptOutcome::CircuitOpen);
    // Healthy again: the next probe succeeds and the circuit closes.
    a.set_default(Fault::Ok);
    tokio::time::sleep(Duration::from_millis(350)).await;
    let r = complete(&mut c, ask("chat", "hi")).await;
    assert_eq!(outcomes(&r), vec![("a".into(), AttemptOutcome::Ok)]);
    assert_eq!(circuit(&r), "closed");
    let r = complete(&mut c, ask("chat", "hi")).await;
    assert_eq!(served(&r), "a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_split_is_accurate_and_sticky() {
    let a = FakeUpstream::start("a").await;
    let yaml = format!(
        "{UPSTREAM}providers:\n{}models:\n{}{}{}routes:\n  - name: ab\n{UTTERANCES}    strategy: weighted\n    sticky_key: user_id\n    targets:\n      - {{model: control, weight: 70}}\n      - {{model: treatment, weight: 20}}\n      - {{model: other, weight: 10}}\n",
        provider("p", "openai", &a.base_url()),
        model("control", "p", 0.0, 0.0),
        model("treatment", "p", 0.0, 0.0),
        model("other", "p", 0.0, 0.0),
    );
    let (_server, c) = serve(&yaml).await;
    let with_user = |u: String| {
        let mut r = ask("ab", "hi");
        r.metadata.insert("user_id".into(), u);
        r
    };
    // 1,000 users, 1,000 decisions.
    let mut counts = std::collections::HashMap::<String, usize>::new();
    let mut first_pick = std::collections::HashMap::new();
    for chunk in (0..1000).collect::<Vec<_>>().chunks(50) {
        let calls = chunk.iter().map(|&i| {
            let mut c = c.clone();
            let req = with_user(format!("user-{i}"));
            async move { (i, complete(&mut c, req).await) }
        });
        for (i, r) in futures_util::future::join_all(calls).await {
            *counts.entry(served(&r).to_string()).or_default() += 1;
            first_pick.insert(i, served(&r).to_string());
        }
    }
    for (m, w) in [("control", 700), ("treatment", 200), ("other", 100)] {
        let n = counts.get(m).copied().unwrap_or(0);
        assert!(
            (n as i64 - w).abs() <= 30,
            "{m}: {n} of 1000, want {w} ± 30: {counts:?}"
        );
    }
    // Sticky: the same user always lands on the same arm.
    let mut c = c.clone();
    for i in [3, 77, 512] {
        for _ in 0..5 {
            let r = complete(&mut c, with_user(format!("user-{i}"))).await;
            assert_eq!(served(&r), first_pick[&i]);
        }
    }
    // Without the key, each request draws: every arm is reached.
    let mut seen = std::collections::HashSet::new();
    for _ in 0..200 {
        seen.insert(served(&complete(&mut c, ask("ab", "hi")).await).to_string());
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cheapest_and_fastest() {
    let fast = FakeUpstream::start("fast").await;
    let slow = FakeUpstream::start("slow").await;
    slow.set_default(Fault::SlowFirstToken(Duration::from_millis(120)));
    let yaml = format!(
        "{UPSTREAM}providers:\n{}{}models:\n{}{}{}routes:\n  - name: cheap\n{UTTERANCES}    strategy: cheapest\n{}  - name: quick\n    utterances: [go fast]\n    strategy: fastest\n{}",
        provider("pf", "openai", &fast.base_url()),
        provider("ps", "anthropic", &slow.base_url()),
        model("pricey", "pf", 5.0, 20.0),
        model("bargain", "pf", 0.1, 0.4),
        model("sluggish", "ps", 0.0, 0.0),
        targets(&["pricey", "bargain"]),
        targets(&["sluggish", "pricey"]),
    );
    let (_server, mut c) = serve(&yaml).await;
    let r = complete(&mut c, ask("cheap", "hi")).await;
    assert_eq!(outcomes(&r), vec![("bargain".into(), AttemptOutcome::Ok)]);

    // Unmeasured targets are tried first, in order; then the fastest learned one wins.
    let first = complete(&mut c, ask("quick", "hi")).await;
    assert_eq!(served(&first), "sluggish");
    let second = complete(&mut c, ask("quick", "hi")).await;
    assert_eq!(served(&second), "pricey");
    for _ in 0..5 {
        let r = complete(&mut c, ask("quick", "hi")).await;
        assert_eq!(served(&r), "pricey");
    }
    // The fast one starts failing: fastest still falls back to the slow one.
    fast.set_default(Fault::Status(500));
    let r = complete(&mut c, ask("quick", "hi")).await;
    assert_eq!(served(&r), "sluggish");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cascade_escalates_exactly_when_its_check_fails() {
    let small = FakeUpstream::start("small answer").await;
    let big = FakeUpstream::start("{\"big\": true}").await;
    let yaml = format!(
        "{UPSTREAM}providers:\n{}{}models:\n{}{}routes:\n  - name: tiered\n{UTTERANCES}    strategy: cascade\n    cascade:\n      refusal_patterns: [\"I can't help\"]\n{}",
        provider("ps", "openai", &small.base_url()),
        provider("pb", "anthropic", &big.base_url()),
        model("big", "pb", 3.0, 15.0),
        model("small", "ps", 0.1, 0.2),
        targets(&["big", "small"]),
    );
    let (_server, mut c) = serve(&yaml).await;
    let cases: Vec<(Fault, bool, bool)> = vec![
        (Fault::Reply("   ".into(), "stop"), false, true),
        (Fault::Reply("half an ans".into(), "length"), false, true),
        (
            Fault::Reply("Sorry, I CAN'T HELP with that.".into(), "stop"),
            false,
            true,
        ),
        (Fault::Reply("not json at all".into(), "stop"), true, true),
        (Fault::Reply("{\"ok\": 1}".into(), "stop"), true, false),
        (Fault::Reply("a fine answer".into(), "stop"), false, false),
        (
            Fault::Reply("a length-limited answer".into(), "stop"),
            false,
            false,
        ),
    ];
    for (fault, json, escalate) in cases {
        let label = format!("{fault:?} json={json}");
        small.push(fault);
        let big_before = big.requests();
        let mut req = ask("tiered", "hi");
        req.json = json;
        let r = complete(&mut c, req).await;
        if json {
            assert_eq!(small.last_body()["response_format"]["type"], "json_object");
        }
        if escalate {
            assert_eq!(
                outcomes(&r),
                vec![
                    ("small".into(), AttemptOutcome::Escalated),
                    ("big".into(), AttemptOutcome::Ok)
                ],
                "{label}"
            );
            assert!(!r.attempts[0].error.is_empty());
            assert_eq!(big.requests(), big_before + 1, "{label}");
            // (Anthropic's JSON mode re-serialises the answer: compare values, not text.)
            let content: serde_json::Value = serde_json::from_str(&r.content).unwrap();
            assert_eq!(content, serde_json::json!({"big": true}), "{label}");
        } else {
            assert_eq!(
                outcomes(&r),
                vec![("small".into(), AttemptOutcome::Ok)],
                "{label}"
            );
            assert_eq!(big.requests(), big_before, "{label}");
        }
    }
}

async fn collect(
    c: &mut Client,
    req: CompleteRequest,
) -> (
    String,
    Option<CompleteResponse>,
    Option<tonic::Status>,
    usize,
) {
    let mut s = c.complete_stream(req).await.unwrap().into_inner();
    let mut text = String::new();
    let mut deltas = 0;
    loop {
        match s.message().await {
            Ok(Some(ch)) => {
                if let Some(done) = ch.done {
                    return (text, Some(done), None, deltas);
                }
                deltas += 1;
                text.push_str(&ch.delta);
            }
            Ok(None) => return (text, None, None, deltas),
            Err(e) => return (text, None, Some(e), deltas),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_fail_over_only_before_the_first_delta() {
    let a = FakeUpstream::start("one two three four five").await;
    let b = FakeUpstream::start("alpha beta gamma").await;
    let yaml = format!(
        "{UPSTREAM}providers:\n{}{}models:\n{}{}routes:\n  - name: chat\n{UTTERANCES}{}",
        provider("pa", "openai", &a.base_url()),
        provider("pb", "anthropic", &b.base_url()),
        model("oa", "pa", 1.0, 1.0),
        model("an", "pb", 1.0, 1.0),
        targets(&["oa", "an"]),
    );
    let (_server, mut c) = serve(&yaml).await;

    // OpenAI SSE: several deltas, then a final chunk with usage, served_by and attempts.
    let (text, done, err, deltas) = collect(&mut c, ask("chat", "hi")).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(text, "one two three four five");
    assert!(deltas >= 5, "{deltas}");
    let done = done.unwrap();
    assert_eq!(served(&done), "oa");
    assert_eq!(done.usage.unwrap().output_tokens, OUTPUT_TOKENS);
    assert_eq!(a.last_body()["stream"], true);

    // Anthropic SSE via `model`.
    let mut req = ask("chat", "hi");
    req.model = Some("an".into());
    let (text, done, _, _) = collect(&mut c, req).await;
    assert_eq!(text, "alpha beta gamma");
    let done = done.unwrap();
    assert_eq!(done.usage.unwrap().input_tokens, INPUT_TOKENS);

    // A slow first token (past first_token_ms = 300) fails over before anything reached the client.
    a.push(Fault::SlowFirstToken(Duration::from_millis(800)));
    a.push(Fault::SlowFirstToken(Duration::from_millis(800)));
    let (text, done, err, _) = collect(&mut c, ask("chat", "hi")).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(text, "alpha beta gamma");
    let done = done.unwrap();
    assert_eq!(done.attempts[0].outcome(), AttemptOutcome::Timeout);
    assert!(
        done.attempts[0]
            .error
            .contains("first token timeout after 300 ms"),
        "{:?}",
        done.attempts
    );
    assert_eq!(served(&done), "an");

    // Malformed events fail over too (without a retry).
    a.push(Fault::Malformed);
    let (text, _, err, _) = collect(&mut c, ask("chat", "hi")).await;
    assert!(err.is_none());
    assert_eq!(text, "alpha beta gamma");

    // Cut after deltas reached the client: no failover, the error arrives in the stream.
    let b_before = b.requests();
    a.push(Fault::CutStream);
    let (text, done, err, _) = collect(&mut c, ask("chat", "hi")).await;
    assert!(done.is_none(), "{text:?} {done:?}");
    let err = err.expect("in-stream error");
    assert_eq!(err.code(), Code::Unavailable);
    assert!(err.message().contains("broke off"), "{}", err.message());
    assert!(text.starts_with("one "), "{text}");
    assert_eq!(b.requests(), b_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_the_call_cancels_the_upstream_request() {
    let a = FakeUpstream::start("x").await;
    a.set_default(Fault::Trickle);
    let yaml = format!(
        "{UPSTREAM}providers:\n  - name: p\n    kind: openai\n    base_url: {}\n    timeouts: {{total_ms: 30000, first_token_ms: 30000}}\nmodels:\n{}routes:\n  - name: chat\n{UTTERANCES}{}",
        a.base_url(),
        model("m", "p", 0.0, 0.0),
        targets(&["m"]),
    );
    let (_server, mut c) = serve(&yaml).await;
    // Streamed: read one delta, then drop the stream.
    let mut s = c
        .complete_stream(ask("chat", "hi"))
        .await
        .unwrap()
        .into_inner();
    let first = s.message().await.unwrap().unwrap();
    assert_eq!(first.delta, "tick ");
    drop(s);
    eventually("the upstream stream to be dropped", || a.cancelled() == 1).await;
    // Unary: the caller gives up after 300 ms.
    let call = c.complete(ask("chat", "hi"));
    assert!(tokio::time::timeout(Duration::from_millis(300), call)
        .await
        .is_err());
    eventually("the upstream request to be dropped", || a.cancelled() == 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_classification_and_routes_without_targets() {
    let a = FakeUpstream::start("answer").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("key.txt"), "sk-test-123\n").unwrap();
    let key_file = dir.path().join("key.txt");
    let yaml = format!(
        "default_route: chat\nproviders:\n  - name: filed\n    kind: openai\n    base_url: {0}\n    api_key_file: {1}\n    headers: {{X-Team: routing}}\n  - name: anth\n    kind: anthropic\n    base_url: {0}\n    api_key_file: {1}\n  - name: nokey\n    kind: openai\n    base_url: {0}\n    api_key_env: SEMROUTE_TEST_UNSET_KEY_VARIABLE\nmodels:\n{2}{3}{4}routes:\n  - name: chat\n{UTTERANCES}{5}  - name: code\n    utterances: [write a python function that sorts a list, implement quicksort in rust]\n    targets:\n      - model: anthropic-m\n  - name: empty\n    utterances: [nothing to see]\n",
        a.base_url(),
        key_file.display(),
        model("keyed", "filed", 0.0, 0.0),
        model("locked", "nokey", 0.0, 0.0),
        model("anthropic-m", "anth", 0.0, 0.0),
        targets(&["locked", "keyed"]),
    );
    let (_server, mut c) = serve(&yaml).await;
    // The missing variable did not stop the server; the call says which variable, then falls back.
    let r = complete(&mut c, ask("chat", "hi")).await;
    assert_eq!(outcomes(&r)[0], ("locked".into(), AttemptOutcome::Failed));
    assert!(r.attempts[0]
        .error
        .contains("SEMROUTE_TEST_UNSET_KEY_VARIABLE is not set"));
    assert_eq!(served(&r), "keyed");
    let h = a.last_headers();
    assert_eq!(h["authorization"], "Bearer sk-test-123");
    assert_eq!(h["x-team"], "routing");
    // Only the keyless target: UNAVAILABLE that names the variable.
    let mut req = ask("chat", "hi");
    req.model = Some("locked".into());
    let e = c.complete(req).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    assert!(
        e.message().contains("SEMROUTE_TEST_UNSET_KEY_VARIABLE"),
        "{}",
        e.message()
    );
    assert!(!e.message().contains("sk-test"));

    // Without `route`, the prompt is classified and the decided route's targets serve it.
    let mut req = ask(
        "chat",
        "write a python function that sorts a list of numbers",
    );
    req.route = None;
    let r = complete(&mut c, req).await;
    let d = r.decision.as_ref().unwrap();
    assert_eq!(d.route, "code");
    assert!(d.matched && !d.candidates.is_empty());
    assert_eq!(served(&r), "anthropic-m");
    assert_eq!(a.last_headers()["x-api-key"], "sk-test-123");

    // A route without targets: FAILED_PRECONDITION.
    let e = c.complete(ask("empty", "hi")).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
}

#[test]
fn config_errors_point_at_the_field() {
    let err = |y: &str| {
        semroute::config::parse_str(y, "r.yaml")
            .unwrap_err()
            .to_string()
    };
    let base = "providers:\n  - name: p\n    kind: openai\n    base_url: http://127.0.0.1:9/v1\nmodels:\n  - name: m\n    provider: p\n    id: m1\n";
    let e = err(&format!(
        "{base}routes:\n  - name: a\n    utterances: [x]\n    targets:\n      - model: m\n      - model: ghost\n"
    ));
    assert_eq!(
        e,
        "r.yaml:14:16: routes[0].targets[1].model: unknown model `ghost` (declared: m)"
    );
    let e = err("providers: []\nmodels:\n  - name: m\n    provider: nope\n    id: x\nroutes:\n  - name: a\n    utterances: [x]\n");
    assert_eq!(
        e,
        "r.yaml:4:15: models[0].provider: unknown provider `nope` (none are declared)"
    );
    let e = err(&format!(
        "{base}routes:\n  - name: a\n    utterances: [x]\n    strategy: weighted\n    targets:\n      - {{model: m, weight: 0}}\n"
    ));
    assert!(e.starts_with("r.yaml:14:"), "{e}");
    assert!(
        e.contains("routes[0].targets[0].weight: weight 0 must be > 0"),
        "{e}"
    );
    let e = err("providers:\n  - name: p\n    kind: openai\n    base_url: http://x\n    headers:\n      Authorization: Bearer sk-1\nroutes:\n  - name: a\n    utterances: [x]\n");
    assert!(e.starts_with("r.yaml:6:22: providers[0].headers.Authorization: credentials must not sit in the config"), "{e}");
    assert!(!e.contains("sk-1"));
    let e = err("providers:\n  - name: p\n    kind: grpc\n    base_url: http://x\nroutes:\n  - name: a\n    utterances: [x]\n");
    assert!(
        e.starts_with("r.yaml:3:11: providers[0].kind: unknown variant `grpc`"),
        "{e}"
    );
}

#[test]
fn shipped_routes_yaml_forwards_every_route() {
    use semroute::config::Strategy;
    let c = semroute::config::load_file(&common::repo().join("routes.yaml"))
        .unwrap()
        .config;
    for r in &c.routes {
        assert!(!r.targets.is_empty(), "route {} has no targets", r.name);
    }
    assert!(c
        .routes
        .iter()
        .any(|r| r.strategy == Strategy::Weighted && r.sticky_key.is_some()));
    // Keys come from the environment; the private route never leaves loopback.
    for p in &c.providers {
        assert!(p.api_key_file.is_none(), "{}", p.name);
    }
    let medical = c
        .routes
        .iter()
        .find(|r| r.name == "sensitive_medical")
        .unwrap();
    for t in &medical.targets {
        let m = c.models.iter().find(|m| m.name == t.model).unwrap();
        let p = c.providers.iter().find(|p| p.name == m.provider).unwrap();
        assert!(p.base_url.starts_with("http://127.0.0.1"), "{}", p.base_url);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_bodies_are_size_bounded() {
    let a = FakeUpstream::start("short").await;
    let b = FakeUpstream::start("fallback").await;
    let yaml = format!(
        "upstream:\n  max_retries: 0\n  max_body_bytes: 2048\nproviders:\n{}{}models:\n{}{}routes:\n  - name: chat\n{UTTERANCES}{}",
        provider("pa", "openai", &a.base_url()),
        provider("pb", "openai", &b.base_url()),
        model("big", "pa", 0.0, 0.0),
        model("ok", "pb", 0.0, 0.0),
        targets(&["big", "ok"]),
    );
    let (_server, mut c) = serve(&yaml).await;
    let long = "word ".repeat(1000);
    a.push(Fault::Reply(long.clone(), "stop"));
    let r = complete(&mut c, ask("chat", "hi")).await;
    assert_eq!(outcomes(&r)[0].1, AttemptOutcome::Failed);
    assert!(
        r.attempts[0].error.contains("larger than 2048 bytes"),
        "{:?}",
        r.attempts
    );
    assert_eq!(r.content, "fallback");
    // Streamed: the whole stream is bounded too. Deltas flow until the bound is hit, so the stream ends
    // with an in-stream error after partial output.
    a.push(Fault::Reply(long, "stop"));
    let (text, done, err, _) = collect(&mut c, ask("chat", "hi")).await;
    assert!(done.is_none());
    assert!(text.len() < 2048, "{}", text.len());
    let err = err.expect("in-stream error");
    assert!(
        err.message().contains("larger than 2048 bytes"),
        "{}",
        err.message()
    );
}
