//! Cluster mode against a real `redis-server` (Debian's package) that this file starts on a free loopback
//! port, with no persistence, and kills at the end: several real servers (each on its own runtime, as in
//! production each replica is its own process) share routes and limits through it.
//!
//! When `redis-server` is absent the tests print why and skip, unless `SEMROUTE_REQUIRE_REDIS` is set (CI
//! sets it, and `.ci/run` installs the package), which makes absence a failure.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::upstream::{FakeUpstream, Fault};
use common::TestServer;
use semroute::access::keys::{self, KeysFile};
use semroute::grpc::pb::admin_client::AdminClient;
use semroute::grpc::pb::router_client::RouterClient;
use semroute::grpc::pb::{self, upsert_route_request::Route as Upsert, RouteRequest};
use semroute::serve::AdminOptions;
use serde_json::{json, Value};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

const TOKEN: &str = "cluster-admin-token";

/// The `redis-server` binary, or `None` (skip) when it is absent and not required.
fn redis_server() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("redis-server"))
            .find(|p| p.is_file())
    });
    if found.is_some() {
        return found;
    }
    let why = "redis-server not found (install Debian's `redis-server` package)";
    if std::env::var_os("SEMROUTE_REQUIRE_REDIS").is_some() {
        panic!("{why}; SEMROUTE_REQUIRE_REDIS makes this a failure");
    }
    eprintln!("SKIPPED: {why}");
    None
}

/// A `redis-server` on 127.0.0.1:`port` with a temporary directory and no persistence; killed on drop.
struct Redis {
    bin: PathBuf,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Redis {
    /// Starts one on a free port (bind :0, read the port, release it, hand it to redis-server: it has no
    /// `--port 0`).
    fn start(bin: &Path) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut r = Self {
            bin: bin.to_path_buf(),
            port,
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        r.restart();
        r
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// (Re)starts the server on its port, empty (nothing was persisted), and waits until it answers PING.
    fn restart(&mut self) {
        let child = Command::new(&self.bin)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.pings() {
            assert!(Instant::now() < deadline, "redis-server did not answer");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn pings(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    /// Kills the server (SIGKILL: no goodbye to the clients) and waits for it.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

const WEATHER: &str = "[what's the weather tomorrow, will it rain today, how hot is it outside]";
const MUSIC: &str = "[play some jazz, put on my workout playlist, skip this song]";

/// A replica's routes.yaml: two routes plus a `cluster:` section pointing at `redis` (with `cluster_extra`
/// lines in it), and `top` (providers, models) before the routes, whose targets are `targets`.
fn routes(redis: &str, cluster_extra: &str, top: &str, targets: &str) -> String {
    format!(
        "matching:\n  threshold: 0.3\n\
         cluster:\n  redis_url: {redis}\n  poll_ms: 200\n  timeout_ms: 200\n{cluster_extra}{top}\
         routes:\n  - name: weather\n    utterances: {WEATHER}\n{targets}\
         \x20 - name: music\n    utterances: {MUSIC}\n{targets}"
    )
}

/// A replica with Admin on its main listener and its own data dir.
/// A config with providers `first` and `second` (name, base URL), a model `<name>-model` on each, and
/// the test route's targets in that order under `strategy`; `top` goes first (e.g. `upstream:`).
fn two_targets(
    redis: &str,
    top: &str,
    strategy: &str,
    first: (&str, &str),
    second: (&str, &str),
) -> String {
    let ((a, a_url), (b, b_url)) = (first, second);
    let top = format!(
        "{top}providers:\n  - {{name: {a}, kind: openai, base_url: {a_url}}}\n  - {{name: {b}, kind: openai, base_url: {b_url}}}\n\
         models:\n  - {{name: {a}-model, provider: {a}, id: {a}}}\n  - {{name: {b}-model, provider: {b}, id: {b}}}\n"
    );
    let targets = format!(
        "    strategy: {strategy}\n    targets: [{{model: {a}-model}}, {{model: {b}-model}}]\n"
    );
    routes(redis, "", &top, &targets)
}

fn replica(yaml: &str, keys: Option<PathBuf>) -> TestServer {
    let dir = tempfile::tempdir().unwrap().keep();
    let path = dir.join("routes.yaml");
    std::fs::write(&path, yaml).unwrap();
    let loaded = semroute::config::load_file(&path).unwrap();
    TestServer::start_with(loaded, move |o| {
        o.data_dir = Some(dir.join("data"));
        o.keys = keys;
        o.admin = Some(AdminOptions {
            token: TOKEN.into(),
            listener: None,
        });
    })
}

type AddToken = Box<dyn FnMut(Request<()>) -> Result<Request<()>, Status> + Send>;
type Admin = AdminClient<InterceptedService<Channel, AddToken>>;

async fn admin(s: &TestServer) -> Admin {
    let ch = common::channel(&s.endpoint()).await.unwrap();
    let bearer: tonic::metadata::MetadataValue<_> = format!("Bearer {TOKEN}").parse().unwrap();
    let f: AddToken = Box::new(move |mut r: Request<()>| {
        r.metadata_mut().insert("authorization", bearer.clone());
        Ok(r)
    });
    AdminClient::with_interceptor(ch, f)
}

fn upsert(name: &str, utterances: &[&str]) -> pb::UpsertRouteRequest {
    pb::UpsertRouteRequest {
        route: Some(Upsert::Spec(pb::RouteSpec {
            name: name.into(),
            description: String::new(),
            threshold: None,
            utterances: utterances.iter().map(|u| u.to_string()).collect(),
            ..Default::default()
        })),
    }
}

/// The route `text` goes to on `s` (gRPC Route), `""` for none.
async fn route_of(s: &TestServer, text: &str) -> Result<String, Status> {
    let mut c = RouterClient::new(common::channel(&s.endpoint()).await.unwrap());
    let r = c
        .route(RouteRequest {
            text: text.into(),
            ..Default::default()
        })
        .await?;
    Ok(r.into_inner().route)
}

/// Waits (bounded) until `text` routes to `want` on `s`; returns how long it took.
async fn converges(s: &TestServer, text: &str, want: &str, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let got = route_of(s, text).await.unwrap();
        if got == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "`{text}` still routes to `{got}`, not `{want}`, after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

const BREAD: &str = "how do I bake sourdough bread";
const SPORTS: &str = "who won the football match last night";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_are_shared_converge_and_survive_redis_outages() {
    let Some(bin) = redis_server() else { return };
    let mut redis = Redis::start(&bin);
    let yaml = routes(&redis.url(), "", "", "");
    let a = replica(&yaml, None);
    let b = replica(&yaml, None);
    let c = replica(&yaml, None);
    a.wait_ready().await;
    b.wait_ready().await;
    c.wait_ready().await;
    assert_eq!(route_of(&b, "will it rain today").await.unwrap(), "weather");

    // An admin change on A is served by B: measured from A's acknowledgement.
    let mut adm_a = admin(&a).await;
    let mut adm_b = admin(&b).await;
    adm_a
        .upsert_route(upsert(
            "cooking",
            &[
                "how do I bake bread",
                "give me a pasta recipe",
                "how long do I boil an egg",
            ],
        ))
        .await
        .unwrap();
    assert_eq!(route_of(&a, BREAD).await.unwrap(), "cooking");
    let took = converges(&b, BREAD, "cooking", Duration::from_secs(3)).await;
    eprintln!("convergence: an admin change on A served by B after {took:?}");
    assert!(took < Duration::from_secs(1), "converged after {took:?}");
    let took = converges(&c, BREAD, "cooking", Duration::from_secs(3)).await;
    eprintln!("convergence: ... and by C after {took:?}");
    assert!(took < Duration::from_secs(1), "C converged after {took:?}");

    // Two concurrent writes on the two replicas: exactly one wins, the other is ABORTED and installs
    // nothing; retried, it lands too, and nothing is lost. Each change brings 30 new utterances, so its
    // build (and the other replica's sync of the winner) takes tens of milliseconds: a write that starts
    // within that window of the other is a real race, however the machine schedules the two calls.
    let many = |base: &[&str], theme: &str| -> Vec<String> {
        base.iter()
            .map(|s| s.to_string())
            .chain((1..=27).map(|i| format!("{theme} question number {i}")))
            .collect()
    };
    let spec = |name: &str, utterances: Vec<String>| pb::UpsertRouteRequest {
        route: Some(Upsert::Spec(pb::RouteSpec {
            name: name.into(),
            utterances,
            ..Default::default()
        })),
    };
    let sports = spec(
        "sports",
        many(
            &[
                "who won the football match",
                "basketball scores tonight",
                "tennis results",
            ],
            "a sports results",
        ),
    );
    let travel = spec(
        "travel",
        many(
            &[
                "book a flight to paris",
                "find me a hotel in rome",
                "train tickets to berlin",
            ],
            "a travel booking",
        ),
    );
    let (ra, rb) = tokio::join!(
        adm_a.upsert_route(sports.clone()),
        adm_b.upsert_route(travel.clone())
    );
    let codes = [
        ra.as_ref().err().map(Status::code),
        rb.as_ref().err().map(Status::code),
    ];
    assert!(
        codes == [None, Some(Code::Aborted)] || codes == [Some(Code::Aborted), None],
        "exactly one write wins, the other is ABORTED: {codes:?} {ra:?} {rb:?}"
    );
    let loser_on_a = ra.is_err();
    let flight = "book a flight to paris";
    let (winner_text, winner) = if loser_on_a {
        (flight, "travel")
    } else {
        (SPORTS, "sports")
    };
    converges(&a, winner_text, winner, Duration::from_secs(3)).await;
    converges(&b, winner_text, winner, Duration::from_secs(3)).await;
    // The loser installed nothing, on its replica or elsewhere.
    let (loser_text, loser) = if loser_on_a {
        (SPORTS, "sports")
    } else {
        (flight, "travel")
    };
    assert_ne!(route_of(&a, loser_text).await.unwrap(), loser);
    assert_ne!(route_of(&b, loser_text).await.unwrap(), loser);
    // Retried (after its replica caught up), the losing change lands and both are kept.
    let retry = if loser_on_a { sports } else { travel };
    let retried = if loser_on_a {
        adm_a.upsert_route(retry).await
    } else {
        adm_b.upsert_route(retry).await
    };
    retried.unwrap();
    for s in [&a, &b] {
        converges(s, loser_text, loser, Duration::from_secs(3)).await;
        converges(s, winner_text, winner, Duration::from_secs(3)).await;
    }

    // A replica started later, from the original file, serves the shared set at once.
    let c = replica(&yaml, None);
    c.wait_ready().await;
    assert_eq!(route_of(&c, BREAD).await.unwrap(), "cooking");
    assert_eq!(route_of(&c, SPORTS).await.unwrap(), "sports");
    drop(c);

    // Redis killed: both replicas keep routing on their last routes; changes are refused (UNAVAILABLE)
    // and install nothing.
    redis.kill();
    for s in [&a, &b] {
        for _ in 0..5 {
            assert_eq!(route_of(s, BREAD).await.unwrap(), "cooking");
        }
    }
    let refused = adm_a
        .upsert_route(upsert("gardening", &["when do I plant tomatoes"]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert_ne!(
        route_of(&a, "when should I plant tomatoes").await.unwrap(),
        "gardening"
    );

    // Redis back, empty (no persistence): a replica seeds it with the routes it serves, and changes
    // converge again.
    redis.restart();
    let started = Instant::now();
    let change = loop {
        match adm_b
            .upsert_route(upsert(
                "gardening",
                &["when do I plant tomatoes", "how often to water roses"],
            ))
            .await
        {
            Ok(r) => break r,
            Err(e) => {
                assert!(
                    matches!(e.code(), Code::Unavailable | Code::Aborted),
                    "{e:?}"
                );
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "changes still refused after Redis came back: {e:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    drop(change);
    eprintln!(
        "after the Redis restart, an admin change was accepted after {:?}",
        started.elapsed()
    );
    converges(
        &a,
        "when should I plant tomatoes",
        "gardening",
        Duration::from_secs(3),
    )
    .await;
    // Everything from before the outage is still served everywhere.
    for s in [&a, &b] {
        assert_eq!(route_of(s, BREAD).await.unwrap(), "cooking");
        assert_eq!(route_of(s, SPORTS).await.unwrap(), "sports");
    }
    let metrics = scrape(&a).await;
    assert!(
        metrics.contains("semroute_cluster_route_version"),
        "{metrics}"
    );
    assert!(
        metrics.contains("semroute_cluster_redis_calls_total{op=\"routes_commit\",outcome=\"ok\"}"),
        "{metrics}"
    );
    assert!(
        !metrics.contains(&redis.url()),
        "the Redis URL never reaches the metrics"
    );
}

fn add_key(file: &mut KeysFile, name: &str, edit: impl FnOnce(&mut keys::KeyEntry)) -> String {
    let (mut entry, key) = keys::new_entry(name).unwrap();
    edit(&mut entry);
    file.keys.push(entry);
    key
}

/// The server's `/metrics` text.
async fn scrape(s: &TestServer) -> String {
    reqwest::get(s.metrics_url())
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn post(s: &TestServer, path: &str, key: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}{path}", s.http_endpoint()))
        .timeout(Duration::from_secs(30))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_and_budgets_hold_across_replicas_and_follow_the_fail_mode() {
    let Some(bin) = redis_server() else { return };
    let mut redis = Redis::start(&bin);
    let oa = FakeUpstream::start("answer").await;
    let providers = format!(
        "providers:\n  - {{name: oa, kind: openai, base_url: {}}}\n\
         models:\n  - {{name: oa-model, provider: oa, id: oa-v1, input_price: 1000, output_price: 1000}}\n",
        oa.base_url()
    );
    let dir = tempfile::tempdir().unwrap();
    let mut file = KeysFile {
        required: true,
        ..Default::default()
    };
    let rpm = add_key(&mut file, "rpm", |e| e.limits.rpm = Some(10));
    let chat = add_key(&mut file, "chat", |e| e.limits.rpm = Some(4));
    let budget = add_key(&mut file, "budget", |e| e.limits.daily_usd = Some(0.04));
    let keys_path = dir.path().join("keys.yaml");
    file.save(&keys_path).unwrap();
    // A refuses when Redis cannot answer, B admits: the fail mode is each replica's own setting.
    let targets = "    targets: [{model: oa-model}]\n";
    let closed = "  limits_on_redis_error: closed\n";
    let yaml_a = routes(&redis.url(), closed, &providers, targets);
    let yaml_b = routes(&redis.url(), "", &providers, targets);
    let a = replica(&yaml_a, Some(keys_path.clone()));
    let b = replica(&yaml_b, Some(keys_path.clone()));
    let c = replica(&yaml_b, Some(keys_path.clone()));
    a.wait_ready().await;
    b.wait_ready().await;
    c.wait_ready().await;

    // 30 Route calls at once, spread over three replicas, with a key limited to 10 a minute: exactly 10
    // admitted (no slack: one script checks and reserves atomically in Redis).
    let mut admitted = 0;
    let mut refused = 0;
    let replicas = [&a, &b, &c];
    let calls = (0..30).map(|i| {
        post(
            replicas[i % 3],
            "/v1/route",
            &rpm,
            json!({"text": "will it rain today"}),
        )
    });
    for r in futures_util::future::join_all(calls).await {
        match r.status().as_u16() {
            200 => admitted += 1,
            429 => {
                let v: Value = r.json().await.unwrap();
                assert_eq!(v["error"]["code"], "rate_limit_exceeded", "{v}");
                refused += 1;
            }
            s => panic!("unexpected status {s}"),
        }
    }
    assert_eq!((admitted, refused), (10, 20));

    // Completions count too, in the same round trip as their token reservation.
    let ask = json!({"model": "weather", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5});
    let mut ok = 0;
    for i in 0..10 {
        let s = if i % 2 == 0 { &b } else { &a };
        if post(s, "/v1/chat/completions", &chat, ask.clone())
            .await
            .status()
            == 200
        {
            ok += 1;
        }
    }
    assert_eq!(ok, 4, "4 completions a minute across both replicas");

    // A daily budget of 0.04 USD at 0.015 USD a call, spent across both replicas: three calls, then
    // `budget_exceeded` on either. (Settlement runs after the answer, off the request path: a short
    // pause lets it land, as real traffic's spacing would.)
    for i in 0..3 {
        let s = if i % 2 == 0 { &a } else { &b };
        let r = post(s, "/v1/chat/completions", &budget, ask.clone()).await;
        assert_eq!(r.status(), 200, "{:?}", r.text().await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for s in [&a, &b] {
        let r = post(s, "/v1/chat/completions", &budget, ask.clone()).await;
        assert_eq!(r.status(), 429);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "budget_exceeded", "{v}");
    }

    // The request path's Redis cost: one limits_reserve per request with a key.
    let metrics = scrape(&b).await;
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} not in the metrics"))
    };
    let count = value("semroute_cluster_redis_duration_seconds_count{op=\"limits_reserve\"}");
    let sum = value("semroute_cluster_redis_duration_seconds_sum{op=\"limits_reserve\"}");
    assert!(count >= 15.0, "{count} limit checks on B");
    eprintln!(
        "limits_reserve: {count} round trips on B, mean {:.0} us",
        sum / count * 1e6
    );

    // Redis killed: A (closed) refuses with 503 within its budget, B (open) admits (the key's window is
    // spent, but it cannot be checked).
    redis.kill();
    let fresh = |s: &TestServer| {
        let k = rpm.clone();
        let url = format!("{}/v1/route", s.http_endpoint());
        async move {
            let started = Instant::now();
            let r = reqwest::Client::new()
                .post(url)
                .bearer_auth(k)
                .json(&json!({"text": "play some jazz"}))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), started.elapsed())
        }
    };
    let (status_a, took_a) = fresh(&a).await;
    assert_eq!(status_a, 503, "fail closed");
    assert!(took_a < Duration::from_secs(2), "waited {took_a:?}");
    let (status_b, took_b) = fresh(&b).await;
    assert_eq!(status_b, 200, "fail open");
    assert!(took_b < Duration::from_secs(2), "waited {took_b:?}");
    let metrics = scrape(&b).await;
    assert!(
        metrics.contains("semroute_cluster_limits_unchecked_total{outcome=\"admitted\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("semroute_cluster_redis_up 0"), "{metrics}");

    // Redis back (empty): limits are checked again.
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if fresh(&a).await.0 == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "A still refuses after Redis came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_found_down_by_one_replica_is_skipped_by_the_others() {
    let Some(bin) = redis_server() else { return };
    let redis = Redis::start(&bin);
    let bad = FakeUpstream::start("bad").await;
    bad.set_default(Fault::Status(500));
    let good = FakeUpstream::start("good").await;
    let yaml = two_targets(
        &redis.url(),
        "upstream:\n  max_retries: 0\n  breaker_failures: 2\n  breaker_cool_down_ms: 30000\n",
        "fallback",
        ("bad", &bad.base_url()),
        ("good", &good.base_url()),
    );
    let a = replica(&yaml, None);
    let b = replica(&yaml, None);
    a.wait_ready().await;
    b.wait_ready().await;
    let ask = json!({"model": "weather", "messages": [{"role": "user", "content": "hi"}]});

    // Two failures through A open its circuit on bad-model (each call falls back to good-model).
    for _ in 0..2 {
        let r = post(&a, "/v1/chat/completions", "unused", ask.clone()).await;
        assert_eq!(r.status(), 200);
    }
    assert_eq!(bad.requests(), 2);

    // B hears of it and skips bad-model without a failed attempt of its own.
    let started = Instant::now();
    while !scrape(&b)
        .await
        .contains("semroute_cluster_circuits_shared_total{change=\"opened\"} 1")
    {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "B never heard of A's open circuit"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "circuit shared: B had opened its breaker {:?} after A answered",
        started.elapsed()
    );
    for _ in 0..3 {
        let r = post(&b, "/v1/chat/completions", "unused", ask.clone()).await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "good", "{v}");
    }
    assert_eq!(
        bad.requests(),
        2,
        "B sent nothing to the target A found down"
    );
    assert_eq!(good.requests(), 5);

    // C starts during the cool-down, after the announcement: it reads the stored circuit at its first
    // sync and skips bad-model too.
    let c = replica(&yaml, None);
    c.wait_ready().await;
    let started = Instant::now();
    while !scrape(&c)
        .await
        .contains("semroute_cluster_circuits_shared_total{change=\"opened\"} 1")
    {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "C never learnt of the circuit A stored"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for _ in 0..3 {
        let r = post(&c, "/v1/chat/completions", "unused", ask.clone()).await;
        assert_eq!(r.status(), 200);
    }
    assert_eq!(
        bad.requests(),
        2,
        "C sent nothing to the target A found down"
    );
    assert_eq!(good.requests(), 8);
    // A's own announcement did not echo back as a shared change.
    assert!(!scrape(&a)
        .await
        .contains("semroute_cluster_circuits_shared_total{change="));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_learnt_by_one_replica_guides_the_others() {
    let Some(bin) = redis_server() else { return };
    let redis = Redis::start(&bin);
    let slow = FakeUpstream::start("slow").await;
    slow.set_default(Fault::SlowFirstToken(Duration::from_millis(300)));
    let fast = FakeUpstream::start("fast").await;
    // `fastest` tries targets it has never measured first, in the listed order: slow-model first.
    let yaml = two_targets(
        &redis.url(),
        "",
        "fastest",
        ("slow", &slow.base_url()),
        ("fast", &fast.base_url()),
    );
    let a = replica(&yaml, None);
    let b = replica(&yaml, None);
    a.wait_ready().await;
    b.wait_ready().await;
    let ask = json!({"model": "weather", "messages": [{"role": "user", "content": "hi"}]});
    let answer = |v: Value| {
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_string()
    };

    // A measures both targets: the slow one first (listed first), then the one still unmeasured.
    let first = post(&a, "/v1/chat/completions", "unused", ask.clone()).await;
    assert_eq!(answer(first.json().await.unwrap()), "slow");
    let second = post(&a, "/v1/chat/completions", "unused", ask.clone()).await;
    assert_eq!(answer(second.json().await.unwrap()), "fast");
    assert_eq!(slow.requests(), 1);

    // Several polls (200 ms each) later, B has A's estimates and goes to the fast target at once, where
    // on its own it would first try the slow one it has never measured.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for _ in 0..3 {
        let r = post(&b, "/v1/chat/completions", "unused", ask.clone()).await;
        assert_eq!(answer(r.json().await.unwrap()), "fast");
    }
    assert_eq!(
        slow.requests(),
        1,
        "B sent nothing to the target A found slow"
    );
}
