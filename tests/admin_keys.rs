//! Client keys managed through the Admin API, end to end: the real server on 127.0.0.1:0 with a keys file,
//! changed through the tonic Admin client (and the `semroute admin keys` CLI), with every change checked on
//! the Router API at once. The secret appears in the create/rotate responses and nowhere else: not in the
//! keys file, not in a listing, not in the server's log.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::TestServer;
use semroute::access::keys::KeysFile;
use semroute::grpc::pb::admin_client::AdminClient;
use semroute::grpc::pb::router_client::RouterClient;
use semroute::grpc::pb::{self, RouteRequest};
use semroute::serve::AdminOptions;
use tonic::transport::Channel;
use tonic::{Code, Request};

const TOKEN: &str = "keys-test-admin-token";

const ROUTES: &str = "routes:\n  - name: weather\n    utterances: [will it rain tomorrow, how hot is it outside]\n  - name: music\n    utterances: [play some jazz, skip this song]\n";

/// The server with Admin on the main listener, and with a keys file holding no key when `keys` is set.
fn start(keys: bool) -> (TestServer, Option<PathBuf>) {
    let dir = tempfile::tempdir().unwrap().keep();
    let routes = dir.join("routes.yaml");
    std::fs::write(&routes, ROUTES).unwrap();
    let keys_path = keys.then(|| {
        let p = dir.join("keys.yaml");
        KeysFile {
            required: true,
            ..Default::default()
        }
        .save(&p)
        .unwrap();
        p
    });
    let kp = keys_path.clone();
    let server = TestServer::start_with(semroute::config::load_file(&routes).unwrap(), move |o| {
        o.keys = kp;
        o.data_dir = Some(dir.join("data"));
        o.admin = Some(AdminOptions {
            token: TOKEN.into(),
            listener: None,
        });
    });
    (server, keys_path)
}

fn admin_req<T>(msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    r
}

async fn admin(server: &TestServer) -> AdminClient<Channel> {
    AdminClient::new(common::channel(&server.endpoint()).await.unwrap())
}

/// A Route call presenting `key`: its status code (`Ok` when served).
async fn route_with(server: &TestServer, key: Option<&str>) -> Code {
    let mut router = RouterClient::new(common::channel(&server.endpoint()).await.unwrap());
    let mut req = Request::new(RouteRequest {
        text: "play some jazz".into(),
        ..Default::default()
    });
    if let Some(k) = key {
        req.metadata_mut()
            .insert("authorization", format!("Bearer {k}").parse().unwrap());
    }
    match router.route(req).await {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    }
}

fn create(name: &str) -> pb::CreateKeyRequest {
    pb::CreateKeyRequest {
        name: name.into(),
        tenant: Some("team-a".into()),
        attributes: [("tier".to_string(), "free".to_string())].into(),
        routes: vec!["music".into()],
        limits: Some(pb::KeyLimits {
            rpm: Some(100),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_created_rotated_and_revoked_through_admin_take_effect_at_once() {
    let (server, keys_path) = start(true);
    server.wait_ready().await;
    let keys_path = keys_path.unwrap();
    let mut adm = admin(&server).await;
    assert_eq!(route_with(&server, None).await, Code::Unauthenticated);

    // Create: the secret comes back once and authenticates the very next call.
    let issued = adm
        .create_key(admin_req(create("svc")))
        .await
        .unwrap()
        .into_inner();
    let secret = issued.secret.clone();
    assert!(secret.starts_with("sr_") && secret.len() > 20, "{secret}");
    let info = issued.key.unwrap();
    assert_eq!(
        (info.name.as_str(), info.tenant.as_deref()),
        ("svc", Some("team-a"))
    );
    assert!(secret.starts_with(&info.hint));
    assert_eq!(route_with(&server, Some(&secret)).await, Code::Ok);
    assert_eq!(
        route_with(&server, Some("sr_not_a_key")).await,
        Code::Unauthenticated
    );

    // The file holds the hash, never the secret; the listing has no secret either.
    let on_disk = std::fs::read_to_string(&keys_path).unwrap();
    assert!(on_disk.contains("name: svc") && !on_disk.contains(&secret[3..]));
    let listed = adm
        .list_keys(admin_req(pb::ListKeysRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.keys.len(), 1);
    assert_eq!(listed.keys[0].name, "svc");
    assert_eq!(listed.keys[0].attributes["tier"], "free");
    assert_eq!(listed.keys[0].limits.unwrap().rpm, Some(100));
    assert!(!format!("{listed:?}").contains(&secret[3..]));

    // Names: taken, or reserved for rotation.
    let e = adm.create_key(admin_req(create("svc"))).await.unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    let e = adm
        .create_key(admin_req(create("svc@x")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let mut bad_expiry = create("later");
    bad_expiry.expires_at = Some("next tuesday".into());
    let e = adm.create_key(admin_req(bad_expiry)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("expires_at"), "{e:?}");

    // Rotate: the old and the new secret both work within the grace period.
    let rotated = adm
        .rotate_key(admin_req(pb::RotateKeyRequest {
            name: "svc".into(),
            grace_seconds: Some(600),
        }))
        .await
        .unwrap()
        .into_inner();
    let new_secret = rotated.secret.clone();
    assert_ne!(new_secret, secret);
    assert!(rotated.previous_valid_until.is_some());
    assert_eq!(route_with(&server, Some(&new_secret)).await, Code::Ok);
    assert_eq!(route_with(&server, Some(&secret)).await, Code::Ok);
    let names: Vec<String> = adm
        .list_keys(admin_req(pb::ListKeysRequest {}))
        .await
        .unwrap()
        .into_inner()
        .keys
        .into_iter()
        .map(|k| k.name)
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("svc@sr_")), "{names:?}");

    // A short grace period ends: the old secret is refused, the new one keeps working.
    let short = adm
        .rotate_key(admin_req(pb::RotateKeyRequest {
            name: "svc".into(),
            grace_seconds: Some(1),
        }))
        .await
        .unwrap()
        .into_inner()
        .secret;
    assert_eq!(route_with(&server, Some(&new_secret)).await, Code::Ok);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        route_with(&server, Some(&new_secret)).await,
        Code::Unauthenticated,
        "the grace period ended"
    );
    assert_eq!(route_with(&server, Some(&short)).await, Code::Ok);

    // Revoke: the key and the predecessor still in its grace period are refused at once.
    let revoked = adm
        .revoke_key(admin_req(pb::RevokeKeyRequest { name: "svc".into() }))
        .await
        .unwrap()
        .into_inner()
        .revoked;
    assert!(revoked.contains(&"svc".to_string()), "{revoked:?}");
    assert!(revoked.len() >= 2, "{revoked:?}");
    for s in [&secret, &new_secret, &short] {
        assert_eq!(route_with(&server, Some(s)).await, Code::Unauthenticated);
    }
    let e = adm
        .revoke_key(admin_req(pb::RevokeKeyRequest {
            name: "nobody".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    // Key calls need the admin token like every Admin call.
    let e = adm.list_keys(pb::ListKeysRequest {}).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_keys_file_key_calls_are_a_failed_precondition() {
    let (server, _) = start(false);
    server.wait_ready().await;
    let mut adm = admin(&server).await;
    let codes = [
        adm.create_key(admin_req(create("svc")))
            .await
            .map(|_| ())
            .unwrap_err(),
        adm.list_keys(admin_req(pb::ListKeysRequest {}))
            .await
            .map(|_| ())
            .unwrap_err(),
        adm.revoke_key(admin_req(pb::RevokeKeyRequest { name: "svc".into() }))
            .await
            .map(|_| ())
            .unwrap_err(),
        adm.rotate_key(admin_req(pb::RotateKeyRequest {
            name: "svc".into(),
            grace_seconds: None,
        }))
        .await
        .map(|_| ())
        .unwrap_err(),
    ];
    for e in codes {
        assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
        assert!(e.message().contains("--keys"), "{e:?}");
    }
    // The server still runs open.
    assert_eq!(route_with(&server, None).await, Code::Ok);
    server.shutdown().await.unwrap();
}

/// Runs `semroute admin --addr <endpoint> keys <args>`; returns stdout, panicking with stderr on failure.
fn cli(endpoint: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_semroute"))
        .args(["admin", "--addr", endpoint, "keys"])
        .args(args)
        .env("SEMROUTE_ADMIN_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "semroute admin keys {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_keys_cli_manages_keys_and_the_server_never_logs_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let routes = dir.path().join("routes.yaml");
    std::fs::write(&routes, ROUTES).unwrap();
    let keys = dir.path().join("keys.yaml");
    std::fs::write(&keys, "required: true\nkeys: []\n").unwrap();
    let log = dir.path().join("server.log");
    // The real binary, logging everything of ours at debug into a file that is searched afterwards.
    let mut child = Command::new(env!("CARGO_BIN_EXE_semroute"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "off",
            "--metrics-listen",
            "off",
            "--admin-on-main",
            "--model-threads",
            "2",
        ])
        .arg("--config")
        .arg(&routes)
        .arg("--keys")
        .arg(&keys)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("SEMROUTE_MODELS_DIR", common::repo().join("models"))
        .env("SEMROUTE_LOG", "debug")
        .env("SEMROUTE_ADMIN_TOKEN", TOKEN)
        .stderr(std::fs::File::create(&log).unwrap())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let endpoint = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("gRPC listening")) {
            let addr = line
                .split("addr=")
                .nth(1)
                .unwrap()
                .split_whitespace()
                .next();
            break format!("http://{}", addr.unwrap());
        }
        assert!(Instant::now() < deadline, "no listen line: {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let ch = common::channel(&endpoint).await;
        if let Ok(ch) = ch {
            let mut h = tonic_health::pb::health_client::HealthClient::new(ch);
            if h.check(tonic_health::pb::HealthCheckRequest::default())
                .await
                .is_ok_and(|r| r.into_inner().status == 1)
            {
                break;
            }
        }
        assert!(Instant::now() < deadline, "server not ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let created: serde_json::Value = serde_json::from_str(&cli(
        &endpoint,
        &["create", "cli-svc", "--rpm", "50", "--attr", "tier=pro"],
    ))
    .unwrap();
    let secret = created["secret"].as_str().unwrap().to_string();
    assert_eq!(created["key"]["name"], "cli-svc");
    assert_eq!(created["key"]["attributes"]["tier"], "pro");
    let mut router = RouterClient::new(common::channel(&endpoint).await.unwrap());
    let mut req = Request::new(RouteRequest {
        text: "skip this song".into(),
        ..Default::default()
    });
    req.metadata_mut()
        .insert("authorization", format!("Bearer {secret}").parse().unwrap());
    router.route(req).await.unwrap();

    let listed = cli(&endpoint, &["list"]);
    assert!(
        listed.contains("cli-svc") && !listed.contains(&secret[3..]),
        "{listed}"
    );
    let rotated: serde_json::Value =
        serde_json::from_str(&cli(&endpoint, &["rotate", "cli-svc", "--grace-s", "60"])).unwrap();
    let new_secret = rotated["secret"].as_str().unwrap().to_string();
    assert!(rotated["previous_valid_until"].is_string());
    let revoked: serde_json::Value =
        serde_json::from_str(&cli(&endpoint, &["revoke", "cli-svc"])).unwrap();
    assert_eq!(revoked["revoked"].as_array().unwrap().len(), 2, "{revoked}");

    let _ = child.kill();
    let _ = child.wait();
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("client key created"), "{logged}");
    for s in [&secret, &new_secret] {
        // Not the whole key, nor its random part, nor anything beyond the prefix's first characters.
        assert!(!logged.contains(&s[3..12]), "a secret reached the log");
    }
}
