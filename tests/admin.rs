//! The Admin API over real gRPC: live rebuilds under load, validated and persisted mutations, the
//! embedding store, --watch, tokens, and a kill -9 restart of the real binary.

mod common;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::TestServer;
use semroute::grpc::pb::admin_client::AdminClient;
use semroute::grpc::pb::router_client::RouterClient;
use semroute::grpc::pb::{self, upsert_route_request::Route as Upsert, RouteRequest};
use semroute::serve::AdminOptions;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

const TOKEN: &str = "test-token-123";

const WEATHER: &str = "[what's the weather tomorrow, will it rain today, how hot is it outside, is it going to snow this weekend]";
const MUSIC: &str =
    "[play some jazz, put on my workout playlist, skip this song, turn the music up]";

/// Two route sets with the same names and swapped meanings: a weather question routes to `alpha` under
/// set A and to `beta` under set B, so every answer tells which set decided it.
fn set(a: bool) -> String {
    let (x, y) = if a {
        (WEATHER, MUSIC)
    } else {
        (MUSIC, WEATHER)
    };
    format!(
        "matching:\n  threshold: 0.2\nroutes:\n  - name: alpha\n    utterances: {x}\n  - name: beta\n    utterances: {y}\n"
    )
}

type AddToken = Box<dyn FnMut(Request<()>) -> Result<Request<()>, Status> + Send>;
type Admin = AdminClient<InterceptedService<Channel, AddToken>>;

async fn admin(endpoint: &str, token: Option<&str>) -> Admin {
    let ch = common::channel(endpoint).await.unwrap();
    let bearer = token.map(|t| {
        format!("Bearer {t}")
            .parse::<tonic::metadata::MetadataValue<_>>()
            .unwrap()
    });
    let f: AddToken = Box::new(move |mut r: Request<()>| {
        if let Some(b) = &bearer {
            r.metadata_mut().insert("authorization", b.clone());
        }
        Ok(r)
    });
    AdminClient::with_interceptor(ch, f)
}

/// A routes file in a fresh temp dir, served with Admin on the main listener.
fn start_admin_server(yaml: &str, watch: Option<Duration>) -> (TestServer, PathBuf) {
    let dir = tempfile::tempdir().unwrap().keep();
    let path = dir.join("routes.yaml");
    std::fs::write(&path, yaml).unwrap();
    let loaded = semroute::config::load_file(&path).unwrap();
    let data = dir.join("data");
    let server = TestServer::start_with(loaded, move |o| {
        o.data_dir = Some(data);
        o.watch = watch;
        o.admin = Some(AdminOptions {
            token: TOKEN.into(),
            listener: None,
        });
    });
    (server, path)
}

fn text(t: &str) -> RouteRequest {
    RouteRequest {
        text: t.into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_rebuilds_under_load_fail_no_call() {
    let (server, path) = start_admin_server(&set(true), None);
    server.wait_ready().await;
    let mut adm = admin(&server.endpoint(), Some(TOKEN)).await;

    // version -> which set it was built from; version 1 is the initial set A.
    let versions: Arc<Mutex<std::collections::HashMap<u64, bool>>> =
        Arc::new(Mutex::new([(1, true)].into()));
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let newest_seen = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut loaders = Vec::new();
    for _ in 0..4 {
        let mut c = RouterClient::connect(server.endpoint()).await.unwrap();
        let (stop, failures, newest_seen) = (stop.clone(), failures.clone(), newest_seen.clone());
        loaders.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(120);
            // Bounded by count and time; stops when the rebuilds are done.
            for _ in 0..20_000 {
                if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                    break;
                }
                match c.route(text("will it rain tomorrow?")).await {
                    Ok(r) => {
                        let r = r.into_inner();
                        newest_seen.fetch_max(r.index_version, Ordering::Relaxed);
                        seen.push((r.index_version, r.route));
                    }
                    Err(s) => {
                        eprintln!("route failed: {s:?}");
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            seen
        }));
    }
    for i in 0..50 {
        let a = i % 2 == 1; // alternate B, A, B, ...
        std::fs::write(&path, set(a)).unwrap();
        let r = adm
            .rebuild_index(pb::RebuildIndexRequest {})
            .await
            .unwrap()
            .into_inner();
        versions.lock().unwrap().insert(r.index_version, a);
        // Let the load reach each version before the next swap, so answers span all of them (bounded).
        let wait_until = Instant::now() + Duration::from_secs(10);
        while newest_seen.load(Ordering::Relaxed) < r.index_version && Instant::now() < wait_until {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut calls = 0;
    let mut versions_seen = std::collections::HashSet::new();
    let versions = versions.lock().unwrap().clone();
    assert_eq!(versions.len(), 51);
    for l in loaders {
        for (v, route) in l.await.unwrap() {
            calls += 1;
            versions_seen.insert(v);
            let a = *versions
                .get(&v)
                .unwrap_or_else(|| panic!("answer from unknown version {v}"));
            assert_eq!(
                route,
                if a { "alpha" } else { "beta" },
                "version {v} answered inconsistently"
            );
        }
    }
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "failed Route calls during rebuilds"
    );
    assert!(calls >= 50, "too little load: {calls} calls");
    assert!(
        versions_seen.len() >= 50,
        "answers spanned only {} versions",
        versions_seen.len()
    );
    eprintln!(
        "{calls} Route calls over {} versions, 0 failed",
        versions_seen.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_rebuild_embeds_nothing_and_changes_embed_only_new_text() {
    let (server, _path) = start_admin_server(&set(true), None);
    server.wait_ready().await;
    let mut adm = admin(&server.endpoint(), Some(TOKEN)).await;
    let info = adm
        .get_index_info(pb::GetIndexInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.exemplars, 8);
    assert_eq!(info.embedded_last_build, 8);
    assert_eq!(info.search_mode, "exact");
    assert!(!info.model_identity.is_empty());

    let r = adm
        .rebuild_index(pb::RebuildIndexRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.embedded, 0);
    let info = adm
        .get_index_info(pb::GetIndexInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.embedded_last_build, 0);
    assert_eq!(info.index_version, r.index_version);

    let r = adm
        .add_utterances(pb::UtterancesRequest {
            route: "alpha".into(),
            utterances: vec![
                "do I need an umbrella".into(),
                "will it rain today".into(),
                "is it windy".into(),
            ],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.affected, 2, "the existing utterance is skipped");
    assert_eq!(r.embedded, 2, "only the new utterances are embedded");
    assert_eq!(r.exemplars, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutations_are_validated_persisted_and_applied() {
    let (server, path) = start_admin_server(&format!("default_route: beta\n{}", set(true)), None);
    server.wait_ready().await;
    let mut adm = admin(&server.endpoint(), Some(TOKEN)).await;
    let mut router = RouterClient::connect(server.endpoint()).await.unwrap();

    // Upsert a new route (typed): persisted with a backup, then live.
    let r = adm
        .upsert_route(pb::UpsertRouteRequest {
            route: Some(Upsert::Spec(pb::RouteSpec {
                name: "cooking".into(),
                description: "recipes".into(),
                threshold: Some(0.3),
                utterances: vec![
                    "how long do I boil an egg".into(),
                    "give me a pasta recipe".into(),
                    "how do I bake bread".into(),
                ],
                yaml: String::new(),
            })),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.routes, 3);
    let on_disk = semroute::config::load_file(&path).unwrap().config;
    assert!(on_disk
        .routes
        .iter()
        .any(|r| r.name == "cooking" && r.threshold == Some(0.3)));
    assert!(path.with_file_name("routes.yaml.bak").exists());
    let d = router
        .route(text("what's a good recipe for lasagna?"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.route, "cooking");
    assert_eq!(d.index_version, r.index_version);

    // Invalid changes touch neither disk nor memory.
    let before = std::fs::read(&path).unwrap();
    let version = adm
        .get_index_info(pb::GetIndexInfoRequest {})
        .await
        .unwrap()
        .into_inner()
        .index_version;
    let bad = adm
        .add_utterances(pb::UtterancesRequest {
            route: "alpha".into(),
            utterances: vec!["   ".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(
        bad.message().contains("blank utterance"),
        "{}",
        bad.message()
    );
    let bad = adm
        .upsert_route(pb::UpsertRouteRequest {
            route: Some(Upsert::Yaml(
                "name: x\nutterances: [a]\ncolour: red\n".into(),
            )),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(
        bad.message().starts_with("route.yaml:3:1:"),
        "{}",
        bad.message()
    );
    let bad = adm
        .delete_route(pb::DeleteRouteRequest {
            name: "beta".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        bad.code(),
        Code::InvalidArgument,
        "beta is the default route"
    );
    assert!(bad.message().contains("default_route"), "{}", bad.message());
    let missing = adm
        .delete_route(pb::DeleteRouteRequest {
            name: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let missing = adm
        .get_route(pb::GetRouteRequest {
            name: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "a refused change must not touch the file"
    );
    let after = adm
        .get_index_info(pb::GetIndexInfoRequest {})
        .await
        .unwrap()
        .into_inner()
        .index_version;
    assert_eq!(
        after, version,
        "a refused change must not install a snapshot"
    );

    // YAML upsert replaces; remove and delete work; list and get reflect it.
    adm.upsert_route(pb::UpsertRouteRequest {
        route: Some(Upsert::Yaml(
            "name: cooking\nutterances: [how do I bake bread, knead dough]\n".into(),
        )),
    })
    .await
    .unwrap();
    let got = adm
        .get_route(pb::GetRouteRequest {
            name: "cooking".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.utterances, vec!["how do I bake bread", "knead dough"]);
    assert_eq!(got.threshold, None);
    let r = adm
        .remove_utterances(pb::UtterancesRequest {
            route: "cooking".into(),
            utterances: vec!["knead dough".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.affected, 1);
    adm.delete_route(pb::DeleteRouteRequest {
        name: "cooking".into(),
    })
    .await
    .unwrap();
    let list = adm
        .list_routes(pb::ListRoutesRequest {})
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = list.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["alpha", "beta"]);
    let on_disk = semroute::config::load_file(&path).unwrap().config;
    assert_eq!(on_disk.routes.len(), 2);
}

/// The model is loaded once: a reload whose `encoder:` differs is refused with its position, and the live
/// routes keep serving (it used to be accepted and stored while the old model went on serving).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_changes_the_encoder_is_refused() {
    let (server, path) = start_admin_server(&set(true), None);
    server.wait_ready().await;
    let mut adm = admin(&server.endpoint(), Some(TOKEN)).await;
    let changed = format!("encoder:\n  max_tokens: 64\n{}", set(true));
    std::fs::write(&path, changed).unwrap();
    let e = adm
        .rebuild_index(pb::RebuildIndexRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message()
            .contains("routes.yaml:2:3: encoder: the encoder section changed")
            && e.message().contains("restart"),
        "{}",
        e.message()
    );
    let info = adm
        .get_index_info(pb::GetIndexInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.index_version, 1, "the live snapshot stays");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_file_keeps_old_routes_and_says_where() {
    let (server, path) = start_admin_server(&set(true), None);
    server.wait_ready().await;
    let mut adm = admin(&server.endpoint(), Some(TOKEN)).await;
    let mut router = RouterClient::connect(server.endpoint()).await.unwrap();
    std::fs::write(
        &path,
        "routes:\n  - name: alpha\n    utterances: [x]\n  - name: alpha\n    utterances: [y]\n",
    )
    .unwrap();
    let e = adm
        .rebuild_index(pb::RebuildIndexRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message()
            .contains("routes.yaml:4:11: routes[1].name: duplicate route name"),
        "{}",
        e.message()
    );
    let d = router
        .route(text("is it going to rain?"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (d.route.as_str(), d.index_version),
        ("alpha", 1),
        "old routes keep serving"
    );
    let info = adm
        .get_index_info(pb::GetIndexInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        info.last_reload_error.contains(":4:11:"),
        "{}",
        info.last_reload_error
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_reloads_changes_and_ignores_broken_files() {
    let (server, path) = start_admin_server(&set(true), Some(Duration::from_millis(100)));
    server.wait_ready().await;
    let mut adm = admin(&server.endpoint(), Some(TOKEN)).await;
    let mut router = RouterClient::connect(server.endpoint()).await.unwrap();

    std::fs::write(&path, set(false)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let d = router
            .route(text("is it going to rain?"))
            .await
            .unwrap()
            .into_inner();
        if d.route == "beta" {
            assert!(d.index_version > 1);
            break;
        }
        assert!(Instant::now() < deadline, "--watch did not reload");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    std::fs::write(
        &path,
        "routes:\n  - name: alpha\n    utterances: [\"  \"]\n",
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let info = adm
            .get_index_info(pb::GetIndexInfoRequest {})
            .await
            .unwrap()
            .into_inner();
        if !info.last_reload_error.is_empty() {
            assert!(
                info.last_reload_error
                    .contains("routes.yaml:3:18: routes[0].utterances[0]"),
                "{}",
                info.last_reload_error
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "--watch did not report the broken file"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let d = router
        .route(text("is it going to rain?"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.route, "beta", "the last good routes keep serving");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_needs_a_valid_token_and_is_off_the_main_listener_by_default() {
    let (server, _path) = start_admin_server(&set(true), None);
    server.wait_ready().await;
    for token in [None, Some("wrong")] {
        let mut adm = admin(&server.endpoint(), token).await;
        let e = adm.list_routes(pb::ListRoutesRequest {}).await.unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{token:?}");
        let e = adm
            .upsert_route(pb::UpsertRouteRequest {
                route: Some(Upsert::Yaml("name: z\nutterances: [a]\n".into())),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated);
    }
    drop(server);

    // Without admin options the client-facing listener does not expose Admin at all.
    let plain = TestServer::start_yaml(&set(true));
    plain.wait_ready().await;
    let mut adm = admin(&plain.endpoint(), Some(TOKEN)).await;
    let e = adm.list_routes(pb::ListRoutesRequest {}).await.unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented);
}

/// The child's stderr lines, read on a thread until the pipe closes. The thread keeps reading after the
/// receiver is gone, so the child never blocks on a full pipe.
fn stderr_lines(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().expect("stderr is piped");
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    rx
}

/// The real binary, its stderr drained on a thread; addresses parsed from its start-up log.
struct Proc {
    child: Child,
    main: String,
    admin: String,
}

/// `semroute serve` on `config` with its store in `data`, on an ephemeral port, logging at info to a piped
/// stderr; callers add their own flags.
fn serve_command(config: &Path, data: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_semroute"));
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--http-listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
    ])
    .arg("--config")
    .arg(config)
    .arg("--data-dir")
    .arg(data)
    .env("SEMROUTE_MODELS_DIR", common::repo().join("models"))
    .env("SEMROUTE_LOG", "info")
    .stderr(Stdio::piped())
    .stdout(Stdio::null());
    cmd
}

fn spawn_binary(config: &Path, data: &Path) -> Proc {
    let mut child = serve_command(config, data)
        .args(["--admin-listen", "127.0.0.1:0", "--model-threads", "2"])
        .env("SEMROUTE_ADMIN_TOKEN", TOKEN)
        .spawn()
        .unwrap();
    let lines = stderr_lines(&mut child);
    let (mut main, mut admin) = (None, None);
    while main.is_none() || admin.is_none() {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .expect("server announced its addresses");
        let Some(a) = line.split("addr=").nth(1) else {
            continue;
        };
        let a = format!("http://{}", a.split_whitespace().next().unwrap_or(""));
        if line.contains("admin listening") {
            admin = Some(a);
        } else if line.contains("gRPC listening") {
            main = Some(a);
        }
    }
    Proc {
        child,
        main: main.unwrap(),
        admin: admin.unwrap(),
    }
}

async fn wait_serving(endpoint: &str) {
    use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(ch) = common::channel(endpoint).await {
            if let Ok(r) = HealthClient::new(ch)
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
            {
                if r.into_inner().status == 1 {
                    return;
                }
            }
        }
        assert!(Instant::now() < deadline, "binary did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_upsert_survives_kill_9_and_restart_embeds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("routes.yaml");
    let data = dir.path().join("data");
    std::fs::write(&config, set(true)).unwrap();

    let mut p = spawn_binary(&config, &data);
    wait_serving(&p.main).await;
    let mut adm = admin(&p.admin, Some(TOKEN)).await;
    // Admin is on its own listener only.
    let e = admin(&p.main, Some(TOKEN))
        .await
        .list_routes(pb::ListRoutesRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented);
    adm.upsert_route(pb::UpsertRouteRequest {
        route: Some(Upsert::Yaml("name: cooking\nutterances: [how long do I boil an egg, give me a pasta recipe, how do I bake bread]\n".into())),
    })
    .await
    .unwrap();
    p.child.kill().unwrap(); // SIGKILL: no chance to flush anything
    p.child.wait().unwrap();

    let mut p = spawn_binary(&config, &data);
    wait_serving(&p.main).await;
    let mut adm = admin(&p.admin, Some(TOKEN)).await;
    let got = adm
        .get_route(pb::GetRouteRequest {
            name: "cooking".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.utterances.len(), 3);
    let info = adm
        .get_index_info(pb::GetIndexInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        info.embedded_last_build, 0,
        "restart with unchanged routes must embed nothing"
    );
    assert_eq!(info.exemplars, 11);
    let mut router = RouterClient::new(common::channel(&p.main).await.unwrap());
    let d = router
        .route(text("what's a good recipe for lasagna?"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.route, "cooking");
    p.child.kill().unwrap();
    p.child.wait().unwrap();
}

/// SIGTERM while the first index build is still embedding thousands of exemplars: the process exits in
/// seconds instead of waiting for the build (which would be redone on the next start anyway).
#[test]
fn sigterm_during_the_first_index_build_exits_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let mut yaml = String::from("routes:\n  - name: many\n    utterances:\n");
    for i in 0..8_000 {
        yaml.push_str(&format!(
            "      - please help me with request number {i} about topic {} today\n",
            i % 97
        ));
    }
    let config = dir.path().join("routes.yaml");
    std::fs::write(&config, yaml).unwrap();
    let mut child = serve_command(&config, &dir.path().join("data"))
        .spawn()
        .unwrap();
    let rx = stderr_lines(&mut child);
    // Wait until the build is under way (the first progress line), then ask the process to stop.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the build reported progress");
        assert!(
            !line.contains("index built"),
            "the build finished too early to test: {line}"
        );
        if line.contains("embedding utterances") {
            break;
        }
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let signalled = Instant::now();
    let exited = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if signalled.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            panic!("still running 15 s after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = signalled.elapsed();
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(exited.success(), "exit status {exited:?}: {rest:?}");
    // The build had not finished when the process exited: it did not wait for it.
    assert!(
        !rest.iter().any(|l| l.contains("index built")),
        "the process waited for the build ({took:?})"
    );
    assert!(took < Duration::from_secs(8), "exit took {took:?}");
}
