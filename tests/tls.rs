//! TLS on every listener, end to end: the real server on 127.0.0.1:0 with certificates made in the test
//! (rcgen), called by real clients: tonic over TLS with the CA, reqwest (rustls) with the CA, and a bare
//! tokio-rustls handshake that shows which certificate the server presents. Plain-text clients are refused,
//! Admin wants a client certificate from its own CA, and a certificate replaced on disk is served without
//! a restart.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::TestServer;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use semroute::grpc::pb::admin_client::AdminClient;
use semroute::grpc::pb::router_client::RouterClient;
use semroute::grpc::pb::{self, RouteRequest};
use semroute::serve::AdminOptions;
use semroute::tls::TlsOptions;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic::{Code, Request};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

const TOKEN: &str = "tls-test-admin-token";

const ROUTES: &str = "matching:\n  threshold: 0.2\nroutes:\n  - name: weather\n    utterances: [will it rain tomorrow, how hot is it outside]\n  - name: music\n    utterances: [play some jazz, skip this song]\n";

/// A CA that signs the test's certificates.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Self { issuer }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A leaf certificate for `names` (DNS names or IP addresses), as PEM certificate and PEM key, and its
    /// DER.
    fn leaf(&self, cn: &str, names: &[&str], client: bool) -> Leaf {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }
}

struct Leaf {
    cert: String,
    key: String,
    der: Vec<u8>,
}

/// The test's PKI on disk: the server CA and certificate, and the Admin client CA.
struct Pki {
    dir: PathBuf,
    ca: Ca,
    client_ca: Ca,
    server: Leaf,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap().keep();
        let ca = Ca::new("semroute test CA");
        let client_ca = Ca::new("semroute admin clients CA");
        let server = ca.leaf("semroute test server 1", &["localhost", "127.0.0.1"], false);
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.join("client-ca.pem"), client_ca.pem()).unwrap();
        std::fs::write(dir.join("server.pem"), &server.cert).unwrap();
        std::fs::write(dir.join("server.key"), &server.key).unwrap();
        Self {
            dir,
            ca,
            client_ca,
            server,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn options(&self, admin_client_ca: bool) -> TlsOptions {
        TlsOptions {
            cert: self.path("server.pem"),
            key: self.path("server.key"),
            admin_client_ca: admin_client_ca.then(|| self.path("client-ca.pem")),
        }
    }
}

/// The server on `ROUTES` with TLS on every listener, and Admin on the main listener.
fn start(pki: &Pki, admin_client_ca: bool) -> TestServer {
    let dir = tempfile::tempdir().unwrap().keep();
    let path = dir.join("routes.yaml");
    std::fs::write(&path, ROUTES).unwrap();
    let tls = pki.options(admin_client_ca);
    TestServer::start_with(semroute::config::load_file(&path).unwrap(), move |o| {
        o.tls = Some(tls);
        o.data_dir = Some(dir.join("data"));
        o.admin = Some(AdminOptions {
            token: TOKEN.into(),
            listener: None,
        });
    })
}

/// A TLS channel to `addr` that trusts `ca`, presenting `identity` when given.
async fn tls_channel(
    addr: SocketAddr,
    ca: &str,
    identity: Option<&Leaf>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some(id) = identity {
        tls = tls.identity(Identity::from_pem(&id.cert, &id.key));
    }
    Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await
}

/// Waits until health, asked over TLS, reports SERVING (bounded).
async fn wait_ready_tls(addr: SocketAddr, ca: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(ch) = tls_channel(addr, ca, None).await {
            let r = HealthClient::new(ch)
                .check(HealthCheckRequest {
                    service: "semroute.v1.Router".into(),
                })
                .await;
            if r.is_ok_and(|r| r.into_inner().status == 1) {
                return;
            }
        }
        assert!(Instant::now() < deadline, "server did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An HTTPS client (reqwest, rustls) that trusts only `ca`.
fn https_client(ca: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn admin_request<T>(msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    r
}

/// The leaf certificate `addr` presents in a TLS handshake (trusting `ca`).
async fn presented_certificate(addr: SocketAddr, ca: &str) -> std::io::Result<Vec<u8>> {
    Ok(handshake(addr, ca, &[]).await?.0)
}

/// A TLS handshake with `addr` (trusting `ca`, offering the ALPN protocols `alpn`): the leaf certificate
/// presented and the protocol agreed.
async fn handshake(
    addr: SocketAddr,
    ca: &str,
    alpn: &[&str],
) -> std::io::Result<(Vec<u8>, Option<Vec<u8>>)> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(semroute::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut config = config;
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await?;
    let (_, session) = tls.get_ref();
    let leaf = session
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.as_ref().to_vec())
        .unwrap_or_default();
    Ok((leaf, session.alpn_protocol().map(<[u8]>::to_vec)))
}

use rustls::pki_types::pem::PemObject;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_http_and_metrics_speak_tls_and_refuse_plain_text() {
    let pki = Pki::new();
    let ca = pki.ca.pem();
    let server = start(&pki, false);
    wait_ready_tls(server.addr, &ca).await;

    // gRPC: a Route call over TLS, with the server checked against the CA.
    let mut router = RouterClient::new(tls_channel(server.addr, &ca, None).await.unwrap());
    let d = router
        .route(RouteRequest {
            text: "is it going to rain tomorrow?".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.route, "weather");

    // HTTP face and metrics: HTTPS with the CA.
    let client = https_client(&ca);
    let r = client
        .get(format!(
            "https://localhost:{}/healthz",
            server.http_addr.port()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client
        .post(format!(
            "https://127.0.0.1:{}/v1/route",
            server.http_addr.port()
        ))
        .json(&serde_json::json!({"text": "play some jazz please"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["route"], "music", "{body}");
    // ALPN: the HTTP face offers HTTP/2 and HTTP/1.1, gRPC HTTP/2.
    for (addr, offered, agreed) in [
        (server.http_addr, &["h2", "http/1.1"][..], "h2"),
        (server.http_addr, &["http/1.1"][..], "http/1.1"),
        (server.addr, &["h2"][..], "h2"),
    ] {
        let (_, alpn) = handshake(addr, &ca, offered).await.unwrap();
        assert_eq!(
            alpn.as_deref(),
            Some(agreed.as_bytes()),
            "{addr} {offered:?}"
        );
    }
    let r = client
        .get(format!(
            "https://localhost:{}/metrics",
            server.metrics_addr.port()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("semroute_"));

    // Plain text against the TLS listeners fails, on every face.
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    for port in [server.http_addr.port(), server.metrics_addr.port()] {
        let r = plain
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await;
        assert!(r.is_err(), "plain HTTP was answered: {r:?}");
    }
    let refused = match common::channel(&server.endpoint()).await {
        Err(_) => true,
        Ok(ch) => HealthClient::new(ch)
            .check(HealthCheckRequest::default())
            .await
            .is_err(),
    };
    assert!(refused, "plain-text gRPC was answered");

    // A client that does not trust the CA refuses the server.
    let untrusting = https_client(&Ca::new("some other CA").pem());
    let r = untrusting
        .get(format!(
            "https://localhost:{}/healthz",
            server.http_addr.port()
        ))
        .send()
        .await;
    assert!(r.is_err(), "a certificate from an unknown CA was accepted");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_needs_a_client_certificate_from_its_ca_and_other_services_do_not() {
    let pki = Pki::new();
    let ca = pki.ca.pem();
    let server = start(&pki, true);
    wait_ready_tls(server.addr, &ca).await;

    // Without a client certificate: Router works, Admin is refused even with the right token.
    let ch = tls_channel(server.addr, &ca, None).await.unwrap();
    RouterClient::new(ch.clone())
        .route(RouteRequest {
            text: "skip this song".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let e = AdminClient::new(ch)
        .get_index_info(admin_request(pb::GetIndexInfoRequest {}))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    assert!(e.message().contains("client certificate"), "{e:?}");

    // With a certificate from the Admin client CA: admitted; the token is still checked.
    let operator = pki.client_ca.leaf("operator", &["operator.example"], true);
    let ch = tls_channel(server.addr, &ca, Some(&operator))
        .await
        .unwrap();
    let mut admin = AdminClient::new(ch);
    let info = admin
        .get_index_info(admin_request(pb::GetIndexInfoRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.routes, 2);
    let e = admin
        .get_index_info(pb::GetIndexInfoRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "no token: {e:?}");

    // A certificate from another CA (here: the server CA) fails the handshake itself.
    let stranger = pki.ca.leaf("stranger", &["stranger.example"], true);
    let refused = match tls_channel(server.addr, &ca, Some(&stranger)).await {
        Err(_) => true,
        Ok(ch) => AdminClient::new(ch)
            .get_index_info(admin_request(pb::GetIndexInfoRequest {}))
            .await
            .is_err(),
    };
    assert!(
        refused,
        "a client certificate from a foreign CA was accepted"
    );

    // The command-line clients, against the same server: `https://` addresses with --tls-ca, and a client
    // certificate for Admin.
    let (cert_file, key_file) = (pki.path("operator.pem"), pki.path("operator.key"));
    std::fs::write(&cert_file, &operator.cert).unwrap();
    std::fs::write(&key_file, &operator.key).unwrap();
    let ca_file = pki.path("ca.pem").display().to_string();
    let grpc = format!("https://localhost:{}", server.addr.port());
    let ready = format!("https://localhost:{}/readyz", server.http_addr.port());
    let out = cli(&["probe", "--tls-ca", &ca_file, &ready]).await;
    assert!(out.status.success(), "{out:?}");
    let out = cli(&["probe", &ready]).await;
    assert!(
        !out.status.success(),
        "the web roots trusted a private CA: {out:?}"
    );
    let out = cli(&[
        "call",
        "--addr",
        &grpc,
        "--tls-ca",
        &ca_file,
        "route",
        "skip this song",
    ])
    .await;
    assert!(out.status.success(), "{out:?}");
    let decision: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(decision["route"], "music");
    let (cert_file, key_file) = (
        cert_file.display().to_string(),
        key_file.display().to_string(),
    );
    let admin = ["admin", "--addr", &grpc, "--tls-ca", &ca_file];
    let with_cert = [
        "--client-cert",
        &cert_file,
        "--client-key",
        &key_file,
        "info",
    ];
    let out = cli(&[&admin[..], &with_cert[..]].concat()).await;
    assert!(out.status.success(), "{out:?}");
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["routes"], 2);
    let out = cli(&[&admin[..], &["info"][..]].concat()).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("client certificate"), "{stderr}");
    server.shutdown().await.unwrap();
}

/// Runs the `semroute` binary with `args` (the admin token in its environment), off the async workers.
async fn cli(args: &[&str]) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_semroute"))
            .args(&args)
            .env("SEMROUTE_ADMIN_TOKEN", TOKEN)
            .env_remove("SEMROUTE_TLS_CA")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn replace(path: &Path, text: &str) {
    // Write-then-rename, as cert-manager and certbot do: a reader never sees half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_certificate_is_served_without_a_restart_and_a_broken_one_is_not() {
    let pki = Pki::new();
    let ca = pki.ca.pem();
    let server = start(&pki, false);
    let first = presented_certificate(server.addr, &ca).await.unwrap();
    assert_eq!(
        first, pki.server.der,
        "the configured certificate is served"
    );

    // A renewed certificate (new key, new name, new serial) replaces the files.
    let renewed = pki
        .ca
        .leaf("semroute test server 2", &["localhost", "127.0.0.1"], false);
    assert_ne!(renewed.der, pki.server.der);
    replace(&pki.path("server.key"), &renewed.key);
    replace(&pki.path("server.pem"), &renewed.cert);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let served = presented_certificate(server.addr, &ca).await.unwrap();
        if served == renewed.der {
            break;
        }
        assert_eq!(
            served, pki.server.der,
            "neither the old nor the new certificate"
        );
        assert!(
            Instant::now() < deadline,
            "the renewed certificate was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Every listener serves it.
    assert_eq!(
        presented_certificate(server.http_addr, &ca).await.unwrap(),
        renewed.der
    );

    // A broken pair (a certificate whose key is not the one on disk) is rejected: the renewed one stays.
    let other = pki.ca.leaf("semroute test server 3", &["localhost"], false);
    replace(&pki.path("server.pem"), &other.cert);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        presented_certificate(server.addr, &ca).await.unwrap(),
        renewed.der,
        "a certificate that does not match its key replaced a good one"
    );
    wait_ready_tls(server.addr, &ca).await;
    server.shutdown().await.unwrap();
}
