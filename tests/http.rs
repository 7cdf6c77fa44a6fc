//! The OpenAI-compatible HTTP face end to end: the real server on 127.0.0.1:0 (both faces over one
//! gateway), called with a real HTTP client; upstreams are the fake OpenAI and Anthropic servers of
//! `common::upstream` with injected faults.

mod common;

use std::time::{Duration, Instant};

use common::upstream::{FakeUpstream, Fault};
use common::TestServer;
use serde_json::{json, Value};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn shipped() -> TestServer {
    let loaded = semroute::config::load_file(&common::repo().join("routes.yaml")).unwrap();
    let server = TestServer::start(loaded);
    server.wait_ready().await;
    server
}

async fn post(server: &TestServer, path: &str, body: Value) -> reqwest::Response {
    client()
        .post(format!("{}{path}", server.http_endpoint()))
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

/// The error object's fields, after checking the status.
async fn error(r: reqwest::Response, status: u16) -> (String, Value, Value) {
    assert_eq!(r.status().as_u16(), status, "{:?}", r.headers());
    let v: Value = r.json().await.unwrap();
    let e = &v["error"];
    assert!(e["type"].is_string(), "{v}");
    (
        e["message"].as_str().unwrap().to_string(),
        e["param"].clone(),
        e["code"].clone(),
    )
}

/// Splits an SSE body into its `data:` payloads.
fn sse_data(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(String::from)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_models_route_and_embeddings() {
    let server = shipped().await;
    let c = client();
    let base = server.http_endpoint();
    let r = c.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = c.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    let v: Value = c
        .get(format!("{base}/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["object"], "list");
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids[0], "auto");
    assert!(ids.contains(&"code") && ids.contains(&"mock-echo") && ids.contains(&"gpt-4o-mini"));

    // /v1/route answers what gRPC Route answers.
    let prompt = "my program crashes with a null pointer exception on line 42, why?";
    let r = post(&server, "/v1/route", json!({"text": prompt, "top_k": 3})).await;
    assert_eq!(r.status(), 200);
    let d: Value = r.json().await.unwrap();
    assert_eq!(d["route"], "debugging");
    assert_eq!(d["matched"], true);
    assert_eq!(d["neighbours"].as_array().unwrap().len(), 3);
    let mut grpc = semroute::grpc::pb::router_client::RouterClient::connect(server.endpoint())
        .await
        .unwrap();
    let g = grpc
        .route(semroute::grpc::pb::RouteRequest {
            text: prompt.into(),
            top_k: Some(3),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d["route"], g.route);
    assert!((d["score"].as_f64().unwrap() - g.score as f64).abs() < 1e-6);
    let (m, _, _) = error(post(&server, "/v1/route", json!({"text": "  "})).await, 400).await;
    assert!(m.contains("blank"), "{m}");

    // Embeddings: the router's encoder, unit vectors, one per input, usage counted.
    let r = post(
        &server,
        "/v1/embeddings",
        json!({"model": "all-MiniLM-L6-v2", "input": ["how do I reverse a list", "hello"]}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let a: Vec<f32> = serde_json::from_value(v["data"][0]["embedding"].clone()).unwrap();
    assert_eq!(a.len(), 384);
    assert_eq!(
        v["usage"]["prompt_tokens"],
        8 + 3,
        "[CLS] + tokens + [SEP] each: {v}"
    );
    let reference = common::embedder()
        .embed(vec!["how do I reverse a list".into()])
        .await
        .unwrap();
    let cos = semroute::index::dot(&a, &reference[0]);
    assert!(cos > 0.99, "cosine to the F32 encoder {cos}");
    let r = post(
        &server,
        "/v1/embeddings",
        json!({"model": "auto", "input": "hello", "encoding_format": "base64"}),
    )
    .await;
    let v: Value = r.json().await.unwrap();
    assert!(v["data"][0]["embedding"].as_str().unwrap().len() == (384usize * 4).div_ceil(3) * 4);
    let (_, param, code) = error(
        post(
            &server,
            "/v1/embeddings",
            json!({"model": "text-embedding-3-small", "input": "x"}),
        )
        .await,
        404,
    )
    .await;
    assert_eq!((param, code), (json!("model"), json!("model_not_found")));
    let (_, param, _) = error(
        post(
            &server,
            "/v1/embeddings",
            json!({"model": "auto", "input": 7}),
        )
        .await,
        400,
    )
    .await;
    assert_eq!(param, "input");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_openai_errors_naming_the_field() {
    let server = shipped().await;
    let chat = |body: Value| post(&server, "/v1/chat/completions", body);

    let r = client()
        .post(format!("{}/v1/chat/completions", server.http_endpoint()))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let (m, _, _) = error(r, 400).await;
    assert!(m.contains("not valid JSON"), "{m}");

    let cases = [
        (
            json!({"model": "auto"}),
            "missing field `messages`",
            Value::Null,
        ),
        (
            json!({"model": "auto", "messages": [{"role": "wizard", "content": "x"}]}),
            "wizard",
            json!("messages[0].role"),
        ),
        (
            json!({"model": "auto", "messages": [{"role": "user", "content": 5}]}),
            "content parts",
            json!("messages[0].content"),
        ),
        (
            json!({"model": "auto", "messages": user("x"), "temperature": "hot"}),
            "invalid type",
            json!("temperature"),
        ),
        (
            json!({"model": "auto", "messages": user("x"), "n": 2}),
            "n = 1",
            json!("n"),
        ),
        (
            json!({"model": "auto", "messages": user("x"), "tools": [{"type": "function"}]}),
            "needs `function`",
            json!("tools[0].function"),
        ),
        (
            json!({"model": "auto", "messages": user("x"), "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "sometimes"}),
            "required",
            json!("tool_choice"),
        ),
        (
            json!({"model": "auto", "messages": user("x"), "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": {"type": "function", "function": {"name": "g"}}}),
            "`g` is not one of the tools",
            json!("tool_choice.function.name"),
        ),
        (
            json!({"model": "auto", "messages": [{"role": "user", "content": "x"}, {"role": "tool", "content": "42"}]}),
            "tool_call_id",
            json!("messages[1].tool_call_id"),
        ),
        (
            json!({"model": "auto", "messages": user("x"), "functions": [{"name": "f"}]}),
            "use `tools`",
            json!("functions"),
        ),
        (
            json!({"model": "auto", "messages": user("x"), "temperature": 3.5}),
            "temperature",
            json!("temperature"),
        ),
        (
            json!({"model": "auto", "messages": [{"role": "user", "content": [{"type": "text", "text": "what is this"}, {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]}),
            "does not take images",
            json!("messages[0].content[1]"),
        ),
        (
            json!({"model": "auto", "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]}),
            "input_audio",
            json!("messages[0].content[0].type"),
        ),
        (
            json!({"model": "auto", "messages": user("x"), "response_format": {"type": "yaml"}}),
            "json_object",
            json!("response_format.type"),
        ),
        (
            json!({"model": "auto", "messages": []}),
            "messages is empty",
            json!("messages"),
        ),
    ];
    for (body, want, param) in cases {
        let (m, p, _) = error(chat(body.clone()).await, 400).await;
        assert!(m.contains(want), "{body}: {m}");
        if !param.is_null() {
            assert_eq!(p, param, "{body}: {m}");
        }
    }

    let (m, param, code) = error(
        chat(json!({"model": "gpt-5-turbo", "messages": user("x")})).await,
        404,
    )
    .await;
    assert!(m.contains("gpt-5-turbo") && m.contains("auto"), "{m}");
    assert_eq!((param, code), (json!("model"), json!("model_not_found")));
    let r = client()
        .get(format!("{}/v2/nothing", server.http_endpoint()))
        .send()
        .await
        .unwrap();
    error(r, 404).await;

    // Over the body limit: 413, and the server goes on serving.
    let big = "x".repeat(semroute::http::MAX_BODY_BYTES + 1);
    let r = client()
        .post(format!("{}/v1/chat/completions", server.http_endpoint()))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await;
    if let Ok(r) = r {
        error(r, 413).await;
    }
    // Over the prompt limit (limits.max_input_bytes) but under the body limit: 400.
    let long = "word ".repeat(40_000);
    let (m, _, _) = error(
        chat(json!({"model": "auto", "messages": user(&long)})).await,
        400,
    )
    .await;
    assert!(m.contains("max_input_bytes"), "{m}");

    // No key for the real provider: 503, the message lists the attempts.
    if std::env::var("OPENAI_API_KEY").is_err() {
        let (m, _, code) = error(
            chat(json!({"model": "gpt-4o-mini", "messages": user("hi")})).await,
            503,
        )
        .await;
        assert!(m.contains("OPENAI_API_KEY"), "{m}");
        assert_eq!(code, "all_targets_failed");
    }
    let r = chat(json!({"model": "mock-echo", "messages": user("still fine")})).await;
    assert_eq!(r.status(), 200);
}

fn forwarding_yaml(openai: &str, anthropic: &str) -> String {
    format!(
        "upstream: {{max_retries: 0, backoff_ms: 10, max_backoff_ms: 20, breaker_failures: 100}}
providers:
  - {{name: oa, kind: openai, base_url: {openai}, timeouts: {{connect_ms: 300, first_token_ms: 2000, total_ms: 5000}}}}
  - {{name: an, kind: anthropic, base_url: {anthropic}, timeouts: {{connect_ms: 300, first_token_ms: 2000, total_ms: 5000}}}}
models:
  - {{name: oa-model, provider: oa, id: oa-v1}}
  - {{name: an-model, provider: an, id: an-v1}}
routes:
  - name: chat
    utterances: [hello there, how are you today]
    targets: [{{model: oa-model}}, {{model: an-model}}]
  - name: careful
    utterances: [please be careful with this]
    targets: [{{model: an-model}}, {{model: oa-model}}]
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_json_and_sse_with_failover_headers_and_passthrough() {
    let oa = FakeUpstream::start("from openai").await;
    let an = FakeUpstream::start("from anthropic").await;
    let server = TestServer::start_yaml(&forwarding_yaml(&oa.base_url(), &an.base_url()));
    server.wait_ready().await;
    let chat = |body: Value| post(&server, "/v1/chat/completions", body);

    // `model` = a route: its targets, in order. Unknown fields reach the OpenAI-compatible upstream.
    let r = client()
        .post(format!("{}/v1/chat/completions", server.http_endpoint()))
        .header("x-request-id", "req-42")
        .json(&json!({"model": "chat", "messages": user("hi"), "seed": 7, "user": "u-1", "max_tokens": 20, "stop": "END", "top_p": 0.1, "temperature": 0.7}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["x-request-id"], "req-42");
    assert_eq!(h["x-semroute-route"], "chat");
    assert_eq!(h["x-semroute-model"], "oa-model");
    assert_eq!(h["x-semroute-attempts"], "1");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["id"], "chatcmpl-req-42");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "oa-v1");
    assert_eq!(v["choices"][0]["message"]["content"], "from openai");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert!(v["usage"]["total_tokens"].as_u64().unwrap() > 0);
    let sent = oa.last_body();
    assert_eq!(
        (sent["seed"].clone(), sent["user"].clone()),
        (json!(7), json!("u-1"))
    );
    assert_eq!(sent["max_tokens"], 20);
    assert_eq!(sent["stop"], json!(["END"]));
    // Sampling parameters reach the upstream as the decimals the client wrote.
    assert_eq!(
        (sent["top_p"].clone(), sent["temperature"].clone()),
        (json!(0.1), json!(0.7))
    );

    // The Anthropic target cannot carry `seed`: its attempt says so and the next target answers.
    let r = chat(json!({"model": "careful", "messages": user("hi"), "seed": 7})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-semroute-model"], "oa-model");
    assert_eq!(r.headers()["x-semroute-attempts"], "2");
    // Without it, Anthropic serves (system prompt translated by the provider client).
    let r = chat(json!({"model": "careful", "messages": [{"role": "system", "content": "be kind"}, {"role": "user", "content": "hi"}]})).await;
    assert_eq!(r.headers()["x-semroute-model"], "an-model");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "from anthropic");
    assert_eq!(an.last_body()["system"], "be kind");

    // `model` = the alias: routed by meaning; = a model: that model only.
    let r = chat(json!({"model": "auto", "messages": user("hello there, how are you")})).await;
    assert_eq!(r.headers()["x-semroute-route"], "chat");
    assert_eq!(r.headers()["x-semroute-matched"], "true");
    let r = chat(json!({"model": "an-model", "messages": user("hi")})).await;
    assert_eq!(r.headers()["x-semroute-model"], "an-model");

    // SSE: role first, deltas, finish, usage (asked for), [DONE]; fail-over before the first delta.
    oa.push(Fault::Status(500));
    let r = chat(json!({"model": "chat", "messages": user("hi"), "stream": true, "stream_options": {"include_usage": true}})).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    assert_eq!(r.headers()["x-semroute-route"], "chat");
    let data = sse_data(&r.text().await.unwrap());
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "from anthropic", "the OpenAI target failed first");
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert!(usage["usage"]["completion_tokens"].as_u64().unwrap() > 0);

    // Every target fails before answering: a real status, not a 200 stream.
    oa.push(Fault::Status(500));
    an.push(Fault::Status(500));
    let (m, _, code) = error(
        chat(json!({"model": "chat", "messages": user("hi"), "stream": true})).await,
        503,
    )
    .await;
    assert!(m.contains("oa-model") && m.contains("an-model"), "{m}");
    assert_eq!(code, "all_targets_failed");

    // A break after the first delta: an error event, no [DONE].
    oa.push(Fault::CutStream);
    let r = chat(json!({"model": "chat", "messages": user("hi"), "stream": true})).await;
    assert_eq!(r.status(), 200);
    let data = sse_data(&r.text().await.unwrap());
    assert_ne!(data.last().unwrap(), "[DONE]");
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_interrupted", "{last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_cancels_the_upstream_request() {
    let oa = FakeUpstream::start("tick").await;
    let an = FakeUpstream::start("unused").await;
    let server = TestServer::start_yaml(&forwarding_yaml(&oa.base_url(), &an.base_url()));
    server.wait_ready().await;
    oa.set_default(Fault::Trickle);
    let mut r = post(
        &server,
        "/v1/chat/completions",
        json!({"model": "oa-model", "messages": user("hi"), "stream": true}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let first = r.chunk().await.unwrap();
    assert!(first.is_some());
    drop(r);
    let deadline = Instant::now() + Duration::from_secs(5);
    while oa.cancelled() == 0 {
        assert!(
            Instant::now() < deadline,
            "the upstream stream was not dropped"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Conversations route on the earlier user turns when the last one cannot decide alone, by the same rule
/// on both faces: a follow-up stays on the earlier route, a change of topic moves, an off-topic turn is
/// not pulled back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_follow_up_on_earlier_turns_on_both_faces() {
    let server = shipped().await;
    let mut grpc = semroute::grpc::pb::router_client::RouterClient::connect(server.endpoint())
        .await
        .unwrap();
    let earlier = "Write a Python function that checks whether a string is a palindrome.";
    let cases = [
        // (last turn, route, matched, earlier turns that joined)
        ("and now in Rust?", "code", true, 1),
        ("What is the derivative of x^3 * ln(x)?", "math", true, 0),
    ];
    for (last, route, matched, context_turns) in cases {
        let messages = json!([
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": earlier},
            {"role": "assistant", "content": "def is_palindrome(s): return s == s[::-1]"},
            {"role": "user", "content": last},
        ]);
        let d: Value = post(&server, "/v1/route", json!({"messages": messages}))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(d["route"], route, "{last}: {d}");
        assert_eq!(d["matched"], matched, "{last}: {d}");
        assert_eq!(
            d["context_turns"].as_u64().unwrap_or(0),
            context_turns,
            "{last}: {d}"
        );
        let m = |role: &str, content: &str| semroute::grpc::pb::Message {
            role: role.into(),
            content: content.into(),
        };
        let g = grpc
            .route(semroute::grpc::pb::RouteRequest {
                messages: vec![
                    m("system", "You are terse."),
                    m("user", earlier),
                    m("assistant", "def is_palindrome(s): return s == s[::-1]"),
                    m("user", last),
                ],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (g.route.as_str(), g.matched),
            (route, matched),
            "{last}: {g:?}"
        );
        assert_eq!(g.context_turns as u64, context_turns, "{last}: {g:?}");
        // The last turn alone does not reach the follow-up's route.
        if context_turns > 0 {
            let alone: Value = post(&server, "/v1/route", json!({"text": last}))
                .await
                .json()
                .await
                .unwrap();
            assert!(
                alone["route"] != route || alone["matched"] == false,
                "{alone}"
            );
        }
    }
    // An off-topic turn after a coding one is left unmatched (the default route), not pulled back.
    let messages = json!([
        {"role": "user", "content": earlier},
        {"role": "user", "content": "What's the weather going to be like in Lisbon on Saturday?"},
    ]);
    let d: Value = post(&server, "/v1/route", json!({"messages": messages}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(d["matched"], false, "{d}");
    assert!(d.get("context_turns").is_none(), "{d}");

    // Chat completions run under the same decision and say so in a header.
    let r = post(
        &server,
        "/v1/chat/completions",
        json!({"model": "mock-echo", "messages": [
            {"role": "user", "content": earlier},
            {"role": "assistant", "content": "def is_palindrome(s): return s == s[::-1]"},
            {"role": "user", "content": "and now in Rust?"},
        ]}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-semroute-route"], "code");
    assert_eq!(r.headers()["x-semroute-context-turns"], "1");
}
