//! The sensitive-data guard and per-user rules end to end: the real server on 127.0.0.1:0, called over
//! HTTP (reqwest) and gRPC (tonic), forwarding to two fake OpenAI servers that record every request body —
//! one behind a `private: true` provider, one public. Logs are captured (debug level, JSON) and searched
//! for every sensitive value sent. Also measures each detector's precision and recall on the labelled set
//! `tests/data/guard/labelled.jsonl` (`cargo test --release --test guard -- --nocapture labelled`).
//!
//! One server per test binary would not isolate the rules; the subscriber is process-wide, so logs are
//! captured once for all tests here.

mod common;

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use common::upstream::FakeUpstream;
use common::{Lines, TestServer};
use semroute::access::keys::{self, KeysFile};
use semroute::config::{GuardAction, GuardConfig};
use semroute::grpc::pb::router_client::RouterClient;
use semroute::grpc::pb::{CompleteRequest, Message};
use semroute::guard::{Builtin, Guard};
use semroute::telemetry::{self, LogFormat};
use serde_json::{json, Value};

/// Every log line the process wrote since the first call.
fn logs() -> &'static Lines {
    static LINES: OnceLock<Lines> = OnceLock::new();
    LINES.get_or_init(|| {
        let lines = Lines::default();
        let guard = telemetry::init("debug", LogFormat::Json, None, lines.clone()).unwrap();
        // The process lives as long as the tests; the guard only flushes exporters, of which there are none.
        std::mem::forget(guard);
        lines
    })
}

const CARD: &str = "4539 1488 0343 6467";
const EMAIL: &str = "dana.whitfield@example.org";
const AWS_KEY: &str = "AKIAZ7Q2MVX3KD8PLW4N";

fn yaml(private: &str, public: &str) -> String {
    format!(
        r#"providers:
  - {{name: vault, kind: openai, base_url: "{private}", private: true}}
  - {{name: cloud, kind: openai, base_url: "{public}"}}
models:
  - {{name: onprem, provider: vault, id: onprem-1}}
  - {{name: gpt, provider: cloud, id: gpt-x, input_price: 1, output_price: 2}}
  - {{name: gpt-mini, provider: cloud, id: gpt-mini, input_price: 0.1, output_price: 0.2}}
guard:
  detectors:
    card: private
    iban: private
    email: redact
    phone: redact
    secret: block
    ssn: detect
custom:
routes:
  - name: billing
    utterances: [I was charged twice on my card, refund my payment, my invoice is wrong]
    targets: [{{model: gpt}}, {{model: onprem}}]
  - name: support
    utterances: [my account is locked, reset my password, the app keeps crashing]
    targets: [{{model: gpt}}]
  - name: writing
    utterances: [write a poem about the sea, draft a blog post, summarise this article]
    targets: [{{model: gpt}}, {{model: gpt-mini}}]
    private_on_sensitive: true
rules:
  - name: banned-region
    when: {{ metadata: {{ region: [xx, yy] }} }}
    refuse: "this service is not offered in your region"
  - name: free-tier
    when: {{ key: {{ tier: free }} }}
    targets: [gpt-mini]
  - name: vip-pin
    when: {{ metadata: {{ cohort: vip }} }}
    route: support
"#
    )
    .replace("custom:\n", "")
}

struct Setup {
    server: TestServer,
    private: FakeUpstream,
    public: FakeUpstream,
    free_key: String,
    pro_key: String,
}

async fn setup() -> Setup {
    logs();
    let private = FakeUpstream::start("private answer").await;
    let public = FakeUpstream::start("public answer").await;
    let dir = tempfile::tempdir().unwrap().keep();
    let routes = dir.join("routes.yaml");
    std::fs::write(&routes, yaml(&private.base_url(), &public.base_url())).unwrap();
    let mut file = KeysFile {
        required: true,
        ..Default::default()
    };
    let (mut free, free_key) = keys::new_entry("free-user").unwrap();
    free.attributes.insert("tier".into(), "free".into());
    let (pro, pro_key) = keys::new_entry("pro-user").unwrap();
    file.keys.push(free);
    file.keys.push(pro);
    let keys_path = dir.join("keys.yaml");
    file.save(&keys_path).unwrap();
    let server = TestServer::start_with(semroute::config::load_file(&routes).unwrap(), move |o| {
        o.keys = Some(keys_path)
    });
    server.wait_ready().await;
    Setup {
        server,
        private,
        public,
        free_key,
        pro_key,
    }
}

async fn chat(s: &Setup, key: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", s.server.http_endpoint()))
        .timeout(Duration::from_secs(30))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn ask(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 5})
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// Every body `u` received, as text.
fn received(u: &FakeUpstream) -> String {
    u.bodies()
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_keeps_sensitive_data_where_it_may_go_and_rules_steer_calls() {
    let s = setup().await;

    // A card number may go only to the private target: the route lists the public one first.
    let text = format!("I was charged twice on my card {CARD}, please refund the payment");
    let r = chat(&s, &s.pro_key, ask("auto", &text)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-semroute-route"), "billing");
    assert_eq!(header(&r, "x-semroute-model"), "onprem");
    assert_eq!(header(&r, "x-semroute-guard"), "card");
    assert_eq!(
        s.public.requests(),
        0,
        "the public upstream never saw the card"
    );
    assert!(s.private.last_body().to_string().contains(CARD));

    // An e-mail address is redacted for the public target, with a typed placeholder.
    let text = format!("Reset my password: my account {EMAIL} is locked, write to {EMAIL}");
    let r = chat(&s, &s.pro_key, ask("auto", &text)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-semroute-model"), "gpt");
    let body = s.public.last_body().to_string();
    assert!(body.contains("[EMAIL_1]"), "{body}");
    assert!(!body.contains(EMAIL), "{body}");

    // Over gRPC, the same: the e-mail in a system turn is redacted too, and the decision carries the guard.
    let mut client = RouterClient::new(common::channel(&s.server.endpoint()).await.unwrap());
    let msg = |role: &str, content: &str| Message {
        role: role.into(),
        content: content.into(),
    };
    let resp = client
        .complete(CompleteRequest {
            messages: vec![
                msg("system", &format!("The customer is {EMAIL}.")),
                msg("user", "my account is locked, reset my password"),
            ],
            ..Default::default()
        })
        .await;
    // The gRPC face needs the key too.
    let status = resp.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    let mut req = tonic::Request::new(CompleteRequest {
        messages: vec![
            msg("system", &format!("The customer is {EMAIL}.")),
            msg("user", "my account is locked, reset my password"),
        ],
        ..Default::default()
    });
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", s.pro_key).parse().unwrap(),
    );
    let done = client.complete(req).await.unwrap().into_inner();
    let d = done.decision.unwrap();
    assert_eq!(d.guard, ["email"]);
    assert!(!s.public.last_body().to_string().contains(EMAIL));

    // A secret is refused with 403 naming the detector, never the value.
    let r = chat(
        &s,
        &s.pro_key,
        ask("auto", &format!("why does {AWS_KEY} fail?")),
    )
    .await;
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    let m = v["error"]["message"].as_str().unwrap();
    assert!(m.contains("secret") && !m.contains(AWS_KEY), "{m}");
    assert_eq!(v["error"]["code"], "sensitive_data_blocked");

    // A route that requires private targets when anything is found, and has none: 403.
    let r = chat(
        &s,
        &s.pro_key,
        ask(
            "writing",
            "Write a poem about the sea; social security 536-90-4399",
        ),
    )
    .await;
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "no_private_target");
    assert!(!v.to_string().contains("536-90-4399"));

    // A named model that is not private cannot take a card number.
    let r = chat(&s, &s.pro_key, ask("gpt", &format!("card {CARD}"))).await;
    assert_eq!(r.status(), 403);

    // Rules: a refusing rule (metadata), with the rule named.
    let mut body = ask("auto", "refund my payment");
    body["metadata"] = json!({"region": "yy"});
    let r = chat(&s, &s.pro_key, body).await;
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "refused_by_rule");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("banned-region"));

    // The free tier (a key attribute) is restricted to the cheap model, even on a route that lacks it.
    let before = s.public.requests();
    let r = chat(
        &s,
        &s.free_key,
        ask("auto", "draft a blog post about gardening"),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-semroute-rule"), "free-tier");
    assert_eq!(header(&r, "x-semroute-model"), "gpt-mini");
    assert_eq!(s.public.requests(), before + 1);
    assert_eq!(s.public.last_body()["model"], "gpt-mini");

    // A pin: the VIP cohort goes to `support` whatever the prompt says.
    let mut body = ask("auto", "write a poem about the sea");
    body["metadata"] = json!({"cohort": "vip"});
    let r = chat(&s, &s.pro_key, body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-semroute-route"), "support");
    assert_eq!(header(&r, "x-semroute-rule"), "vip-pin");

    // Metrics count findings and rules by name; never values.
    let scrape = reqwest::get(s.server.metrics_url())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for want in [
        r#"semroute_guard_findings_total{action="private",detector="card"}"#,
        r#"semroute_guard_findings_total{action="redact",detector="email"}"#,
        r#"semroute_guard_findings_total{action="block",detector="secret"}"#,
        r#"semroute_rules_fired_total{rule="free-tier"} 1"#,
        r#"semroute_policy_refused_total{reason="blocked"} 1"#,
        r#"semroute_policy_refused_total{reason="no_private_target"} 2"#,
        r#"semroute_policy_refused_total{reason="rule"} 1"#,
    ] {
        assert!(scrape.contains(want), "missing {want} in\n{scrape}");
    }
    for secret in [CARD, EMAIL, AWS_KEY, "536-90-4399"] {
        assert!(!scrape.contains(secret));
    }

    // Nothing sensitive in any log line, at debug level.
    let logged = String::from_utf8(logs().0.lock().unwrap().clone()).unwrap();
    assert!(logged.contains("completed"), "logs were captured");
    for secret in [CARD, EMAIL, AWS_KEY, "536-90-4399", "4539148803436467"] {
        assert!(!logged.contains(secret), "`{secret}` was logged");
    }
    for key in [&s.free_key, &s.pro_key] {
        assert!(!logged.contains(key.as_str()), "a client key was logged");
    }
    // And the public upstream never received any card number, first to last.
    assert!(!received(&s.public).contains(CARD));
}

/// One labelled prompt.
#[derive(serde::Deserialize)]
struct Labelled {
    id: String,
    text: String,
    findings: Vec<Finding>,
}

#[derive(serde::Deserialize, PartialEq, Eq, Hash, Clone, Debug)]
struct Finding {
    detector: String,
    value: String,
}

/// Precision and recall per detector on `file`, printed as a Markdown table; returns the lowest precision
/// and the lowest recall.
fn measure(file: &str) -> (f64, f64) {
    let path = common::repo().join("tests/data/guard").join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let config = GuardConfig {
        detectors: Builtin::ALL
            .iter()
            .map(|b| (b.name().to_string(), GuardAction::Detect))
            .collect(),
        custom: Vec::new(),
    };
    let guard = Guard::new(&config).unwrap();
    // The guard's detectors are the built-ins in `Builtin::ALL` order when all are on.
    let name = |i: usize| Builtin::ALL[i].name().to_string();
    // detector -> (true positives, false positives, false negatives)
    let mut counts: HashMap<String, (usize, usize, usize)> = HashMap::new();
    let mut prompts = 0;
    let mut mistakes = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let l: Labelled = serde_json::from_str(line).unwrap();
        prompts += 1;
        let mut want: Vec<Finding> = l.findings.clone();
        for (s, e, i) in guard.findings(&l.text) {
            let f = Finding {
                detector: name(i),
                value: l.text[s..e].to_string(),
            };
            let c = counts.entry(f.detector.clone()).or_default();
            if let Some(p) = want.iter().position(|w| *w == f) {
                want.remove(p);
                c.0 += 1;
            } else {
                c.1 += 1;
                mistakes.push(format!("{}: false {} `{}`", l.id, f.detector, f.value));
            }
        }
        for w in want {
            counts.entry(w.detector.clone()).or_default().2 += 1;
            mistakes.push(format!("{}: missed {} `{}`", l.id, w.detector, w.value));
        }
    }
    println!("{file}: {prompts} prompts");
    println!("| detector | found right | false alarms | missed | precision | recall |");
    println!("|---|---|---|---|---|---|");
    let mut worst = (1.0f64, 1.0f64);
    for b in Builtin::ALL {
        let (tp, fp, fn_) = counts.get(b.name()).copied().unwrap_or_default();
        let p = tp as f64 / (tp + fp).max(1) as f64;
        let r = tp as f64 / (tp + fn_).max(1) as f64;
        println!("| {} | {tp} | {fp} | {fn_} | {p:.3} | {r:.3} |", b.name());
        assert!(tp >= 15, "{}: too few labelled findings ({tp})", b.name());
        worst = (worst.0.min(p), worst.1.min(r));
    }
    for m in &mistakes {
        println!("  {m}");
    }
    worst
}

/// The development set: the detectors were written and fixed against it.
#[test]
fn labelled_set_precision_and_recall_per_detector() {
    let (p, r) = measure("labelled.jsonl");
    // Floors under the measured figures (docs/security.md): a change that loses accuracy fails here.
    assert!(p >= 0.95, "a detector's precision fell to {p:.3}");
    assert!(r >= 0.95, "a detector's recall fell to {r:.3}");
}

/// The held-out set, written separately after the detectors were done and never used to change them.
#[test]
fn heldout_set_precision_and_recall_per_detector() {
    let (p, r) = measure("heldout.jsonl");
    // Floors under the measured figures (docs/security.md).
    assert!(p >= 0.95, "a detector's precision fell to {p:.3}");
    assert!(r >= 0.9, "a detector's recall fell to {r:.3}");
}
