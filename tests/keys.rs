//! Client keys, limits and budgets end to end: the real server on 127.0.0.1:0 with a keys file, called
//! over HTTP (reqwest) and gRPC (tonic); completions go to the fake OpenAI server of `common::upstream`,
//! whose reported usage (10 input + 5 output tokens) settles token limits and budgets. Keys are made by
//! the `semroute keys` CLI and the library that backs it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::upstream::FakeUpstream;
use common::TestServer;
use semroute::access::keys::{self, KeysFile, Limits};
use semroute::grpc::pb::router_client::RouterClient;
use semroute::grpc::pb::{CompleteRequest, Message};
use serde_json::{json, Value};

fn yaml(openai: &str) -> String {
    format!(
        "providers:
  - {{name: oa, kind: openai, base_url: {openai}}}
  - {{name: local, kind: mock}}
models:
  - {{name: oa-model, provider: oa, id: oa-v1, input_price: 1000, output_price: 1000}}
  - {{name: mock-echo, provider: local, id: echo}}
routes:
  - name: chat
    utterances: [hello there, how are you today]
    targets: [{{model: oa-model}}]
  - name: math
    utterances: [what is two plus two, solve this equation]
    targets: [{{model: mock-echo}}]
"
    )
}

/// Adds a key to `file` and returns it.
fn add_key(file: &mut KeysFile, name: &str, edit: impl FnOnce(&mut keys::KeyEntry)) -> String {
    let (mut entry, key) = keys::new_entry(name).unwrap();
    edit(&mut entry);
    file.keys.push(entry);
    key
}

struct Setup {
    server: TestServer,
    keys_path: PathBuf,
    file: KeysFile,
    key: std::collections::HashMap<&'static str, String>,
    _oa: FakeUpstream,
}

async fn setup() -> Setup {
    let oa = FakeUpstream::start("answer").await;
    let dir = tempfile::tempdir().unwrap().keep();
    let routes = dir.join("routes.yaml");
    std::fs::write(&routes, yaml(&oa.base_url())).unwrap();
    let mut file = KeysFile {
        required: true,
        ..Default::default()
    };
    file.tenants.insert(
        "team".into(),
        Limits {
            rpm: Some(3),
            ..Default::default()
        },
    );
    let mut key = std::collections::HashMap::new();
    key.insert("pro", add_key(&mut file, "pro", |_| {}));
    key.insert(
        "free",
        add_key(&mut file, "free", |e| {
            e.routes = vec!["math".into()];
            e.limits.rpm = Some(5);
        }),
    );
    key.insert(
        "tokens",
        add_key(&mut file, "tokens", |e| e.limits.tpm = Some(40)),
    );
    key.insert(
        "budget",
        add_key(&mut file, "budget", |e| e.limits.daily_usd = Some(0.04)),
    );
    key.insert(
        "burst",
        add_key(&mut file, "burst", |e| e.limits.rpm = Some(20)),
    );
    key.insert(
        "revoked",
        add_key(&mut file, "revoked", |e| e.revoked = true),
    );
    key.insert(
        "expired",
        add_key(&mut file, "expired", |e| {
            e.expires_at = Some("2020-01-01T00:00:00Z".into())
        }),
    );
    key.insert(
        "t1",
        add_key(&mut file, "t1", |e| e.tenant = Some("team".into())),
    );
    key.insert(
        "t2",
        add_key(&mut file, "t2", |e| e.tenant = Some("team".into())),
    );
    let keys_path = dir.join("keys.yaml");
    file.save(&keys_path).unwrap();
    let kp = keys_path.clone();
    let server = TestServer::start_with(semroute::config::load_file(&routes).unwrap(), move |o| {
        o.keys = Some(kp)
    });
    server.wait_ready().await;
    Setup {
        server,
        keys_path,
        file,
        key,
        _oa: oa,
    }
}

async fn chat(s: &TestServer, key: Option<&str>, body: Value) -> reqwest::Response {
    let mut r = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", s.http_endpoint()))
        .timeout(Duration::from_secs(30))
        .json(&body);
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    r.send().await.unwrap()
}

fn ask(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5})
}

async fn error(r: reqwest::Response, status: u16) -> (String, Value, reqwest::header::HeaderMap) {
    assert_eq!(r.status().as_u16(), status);
    let headers = r.headers().clone();
    let v: Value = r.json().await.unwrap();
    (
        v["error"]["message"].as_str().unwrap().to_string(),
        v["error"]["code"].clone(),
        headers,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rights_limits_and_budgets_over_http_and_grpc() {
    let s = setup().await;
    let k = |n: &str| s.key[n].clone();

    // No key, a wrong key, a revoked and an expired one: 401, never echoing what was sent.
    let (m, code, _) = error(chat(&s.server, None, ask("chat")).await, 401).await;
    assert!(m.contains("API key"), "{m}");
    assert_eq!(code, "invalid_api_key");
    let wrong = "sr_thisisnotarealkeybutlookslikeone0000000";
    let (m, _, _) = error(chat(&s.server, Some(wrong), ask("chat")).await, 401).await;
    assert!(!m.contains(wrong), "{m}");
    for name in ["revoked", "expired"] {
        let (m, _, _) = error(chat(&s.server, Some(&k(name)), ask("chat")).await, 401).await;
        assert!(m.contains(name) && !m.contains(&k(name)), "{m}");
    }
    // Health and the document need no key.
    let r = reqwest::get(format!("{}/healthz", s.server.http_endpoint()))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // A valid key is served; a key limited to `math` may not use `chat` (403 naming the route).
    assert_eq!(
        chat(&s.server, Some(&k("pro")), ask("chat")).await.status(),
        200
    );
    let (m, code, _) = error(chat(&s.server, Some(&k("free")), ask("chat")).await, 403).await;
    assert!(m.contains("`chat`") && m.contains("math"), "{m}");
    assert_eq!(code, "permission_denied");

    // gRPC: the same keys in `authorization` metadata.
    let mut c = RouterClient::new(common::channel(&s.server.endpoint()).await.unwrap());
    let complete = |key: Option<String>, route: &str| {
        let mut r = tonic::Request::new(CompleteRequest {
            messages: vec![Message {
                role: "user".into(),
                content: "hi".into(),
            }],
            route: Some(route.into()),
            ..Default::default()
        });
        if let Some(k) = key {
            r.metadata_mut()
                .insert("authorization", format!("Bearer {k}").parse().unwrap());
        }
        r
    };
    let e = c.complete(complete(None, "chat")).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    assert!(c.complete(complete(Some(k("pro")), "chat")).await.is_ok());
    let e = c
        .complete(complete(Some(k("free")), "chat"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");

    // Requests per minute: `free` (5/min) has used 2 (refused calls count: they were admitted at the
    // door); 3 more pass, the 6th is refused with a wait, and another key proceeds meanwhile.
    for _ in 0..3 {
        assert_eq!(
            chat(&s.server, Some(&k("free")), ask("math"))
                .await
                .status(),
            200
        );
    }
    let (m, code, h) = error(chat(&s.server, Some(&k("free")), ask("math")).await, 429).await;
    assert_eq!(code, "rate_limit_exceeded", "{m}");
    assert_eq!(h["x-ratelimit-limit-requests"], "5");
    let wait: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(
        chat(&s.server, Some(&k("pro")), ask("math")).await.status(),
        200
    );

    // Tokens per minute (40): each call reserves its estimate and settles at the fake's 15 tokens, so the
    // fourth no longer fits.
    for i in 0..3 {
        assert_eq!(
            chat(&s.server, Some(&k("tokens")), ask("chat"))
                .await
                .status(),
            200,
            "call {i}"
        );
    }
    let (m, code, h) = error(chat(&s.server, Some(&k("tokens")), ask("chat")).await, 429).await;
    assert_eq!(code, "rate_limit_exceeded", "{m}");
    assert_eq!(h["x-ratelimit-limit-tokens"], "40");

    // A daily budget of 0.04 USD at 0.015 USD a call: three calls, then `budget_exceeded` until tomorrow.
    for _ in 0..3 {
        assert_eq!(
            chat(&s.server, Some(&k("budget")), ask("chat"))
                .await
                .status(),
            200
        );
    }
    let (m, code, h) = error(chat(&s.server, Some(&k("budget")), ask("chat")).await, 429).await;
    assert_eq!(code, "budget_exceeded", "{m}");
    assert!(h.contains_key("retry-after"));

    // A tenant's limit (3/min) counts its keys together.
    assert_eq!(
        chat(&s.server, Some(&k("t1")), ask("math")).await.status(),
        200
    );
    assert_eq!(
        chat(&s.server, Some(&k("t1")), ask("math")).await.status(),
        200
    );
    assert_eq!(
        chat(&s.server, Some(&k("t2")), ask("math")).await.status(),
        200
    );
    let (m, _, _) = error(chat(&s.server, Some(&k("t2")), ask("math")).await, 429).await;
    assert!(m.contains("tenant team"), "{m}");

    let e = c
        .complete(complete(Some(k("t1")), "math"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
    assert!(e.metadata().get("retry-after").is_some());

    // Many tasks hammering one limit (20/min) never get more than the limit admitted.
    let url = format!("{}/v1/route", s.server.http_endpoint());
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for i in 0..60 {
        let (client, url, key) = (client.clone(), url.clone(), k("burst"));
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(key)
                .json(&json!({"text": format!("what is {i} plus two")}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(t.await.unwrap());
    }
    let admitted = codes.iter().filter(|&&c| c == 200).count();
    let refused = codes.iter().filter(|&&c| c == 429).count();
    assert_eq!((admitted, refused), (20, 40), "{codes:?}");

    // A revocation in the file takes effect without a restart.
    let mut file = s.file.clone();
    file.keys
        .iter_mut()
        .find(|e| e.name == "pro")
        .unwrap()
        .revoked = true;
    file.save(&s.keys_path).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = chat(&s.server, Some(&k("pro")), ask("math")).await.status();
        if status == 401 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the revocation was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn cli(file: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_semroute"))
        .arg("keys")
        .arg("--file")
        .arg(file)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_creates_lists_and_rotates_keys_with_a_grace_period() {
    let oa = FakeUpstream::start("answer").await;
    let dir = tempfile::tempdir().unwrap().keep();
    let routes = dir.join("routes.yaml");
    std::fs::write(&routes, yaml(&oa.base_url())).unwrap();
    let keys_path = dir.join("keys.yaml");
    let key = cli(
        &keys_path,
        &["create", "svc", "--routes", "math", "--rpm", "100"],
    );
    let key = key.trim().to_string();
    assert!(key.starts_with("sr_"), "{key}");
    let text = std::fs::read_to_string(&keys_path).unwrap();
    assert!(!text.contains(&key[3..]), "the file holds only the hash");
    let listed: Value = serde_json::from_str(&cli(&keys_path, &["list"])).unwrap();
    assert_eq!(listed[0]["name"], "svc");
    assert_eq!(listed[0]["limits"]["rpm"], 100);
    assert!(!listed.to_string().contains(&key[3..]));

    let kp = keys_path.clone();
    let server = TestServer::start_with(semroute::config::load_file(&routes).unwrap(), move |o| {
        o.keys = Some(kp)
    });
    server.wait_ready().await;
    assert_eq!(chat(&server, Some(&key), ask("math")).await.status(), 200);

    // Rotation: the new key works at once and the old one until its grace period ends.
    let fresh = cli(&keys_path, &["rotate", "svc", "--grace-s", "3"]);
    let fresh = fresh.trim().to_string();
    assert_ne!(fresh, key);
    let deadline = Instant::now() + Duration::from_secs(10);
    while chat(&server, Some(&fresh), ask("math")).await.status() != 200 {
        assert!(Instant::now() < deadline, "the new key was not picked up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(chat(&server, Some(&key), ask("math")).await.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    while chat(&server, Some(&key), ask("math")).await.status() != 401 {
        assert!(
            Instant::now() < deadline,
            "the old key outlived its grace period"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(chat(&server, Some(&fresh), ask("math")).await.status(), 200);
    // Revocation through the CLI.
    cli(&keys_path, &["revoke", "svc"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while chat(&server, Some(&fresh), ask("math")).await.status() != 401 {
        assert!(
            Instant::now() < deadline,
            "the revocation was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
