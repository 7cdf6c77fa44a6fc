//! End to end over gRPC: the real server on 127.0.0.1:0 with the real model, called with a tonic client.

mod common;

use common::TestServer;
use semroute::grpc::pb::router_client::RouterClient;
use semroute::grpc::pb::{Message, RouteRequest};
use tonic::Code;

fn text(t: &str) -> RouteRequest {
    RouteRequest {
        text: t.into(),
        ..Default::default()
    }
}

async fn shipped() -> (TestServer, RouterClient<tonic::transport::Channel>) {
    let loaded = semroute::config::load_file(&common::repo().join("routes.yaml")).unwrap();
    let server = TestServer::start(loaded);
    server.wait_ready().await;
    let client = RouterClient::connect(server.endpoint()).await.unwrap();
    (server, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_prompts_with_evidence() {
    let (server, mut client) = shipped().await;
    let cases = [
        (
            "write a rust function that parses a csv file into structs",
            "code",
        ),
        (
            "my program crashes with a null pointer exception on line 42, why?",
            "debugging",
        ),
        ("what is the derivative of x^3 + 2x?", "math"),
        (
            "translate 'good morning, how are you' into japanese",
            "translation",
        ),
        (
            "I was billed twice this month, please refund me",
            "billing_support",
        ),
        ("hey! how's your day going?", "chitchat"),
    ];
    for (prompt, want) in cases {
        let r = client.route(text(prompt)).await.unwrap().into_inner();
        assert_eq!(r.route, want, "{prompt}: {r:?}");
        assert!(r.matched, "{prompt}: {r:?}");
        assert_eq!(r.candidates[0].route, want);
        assert!(r.candidates.windows(2).all(|w| w[0].score >= w[1].score));
        assert!((r.score - r.candidates[0].score).abs() < 1e-6);
        assert_eq!(r.neighbours.len(), 10, "default top_k evidence");
        assert!(r
            .neighbours
            .windows(2)
            .all(|w| w[0].similarity >= w[1].similarity));
        assert!(!r.neighbours[0].utterance.is_empty());
        assert_eq!(r.index_version, 1);
        assert!(r.embed_micros > 0);
    }
    // top_k asks for more or less evidence.
    let mut req = text("fix this segfault in my C code");
    req.top_k = Some(3);
    let r = client.route(req).await.unwrap().into_inner();
    assert_eq!(r.neighbours.len(), 3);
    assert!(r.candidates.len() <= 3);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_route_the_last_user_turn() {
    let (_server, mut client) = shipped().await;
    let m = |role: &str, content: &str| Message {
        role: role.into(),
        content: content.into(),
    };
    let req = RouteRequest {
        messages: vec![
            m("system", "You are a helpful assistant."),
            m("user", "hi there, how are you doing today?"),
            m("assistant", "Great! How can I help?"),
            m("user", "solve for x: 3x + 7 = 22"),
        ],
        ..Default::default()
    };
    let r = client.route(req).await.unwrap().into_inner();
    assert_eq!(r.route, "math", "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_match_without_default_is_empty_and_with_default_falls_back() {
    let yaml = "matching:\n  threshold: 0.5\nroutes:\n  - name: weather\n    utterances: [what's the weather tomorrow, will it rain today, how hot is it outside]\n  - name: music\n    utterances: [play some jazz, put on my workout playlist, skip this song]\n";
    let server = TestServer::start_yaml(yaml);
    server.wait_ready().await;
    let mut client = RouterClient::connect(server.endpoint()).await.unwrap();
    let r = client
        .route(text(
            "explain the tax implications of selling company stock options",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.route, "", "{r:?}");
    assert!(!r.matched);
    assert!(r.score < 0.5);
    assert!(!r.candidates.is_empty(), "evidence is still returned");
    let r = client
        .route(text("is it going to rain tomorrow?"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.route, "weather");
    server.shutdown().await.unwrap();

    let with_default = format!("default_route: music\n{yaml}");
    let server = TestServer::start_yaml(&with_default);
    server.wait_ready().await;
    let mut client = RouterClient::connect(server.endpoint()).await.unwrap();
    let r = client
        .route(text(
            "explain the tax implications of selling company stock options",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.route, "music");
    assert!(!r.matched, "a default-route answer is not a match");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_invalid_argument() {
    let (_server, mut client) = shipped().await;
    let code = |r: Result<tonic::Response<_>, tonic::Status>| {
        r.map(|_: tonic::Response<semroute::grpc::pb::RouteResponse>| ())
            .unwrap_err()
    };

    let s = code(client.route(text("")).await);
    assert_eq!(s.code(), Code::InvalidArgument);
    let s = code(client.route(text("   \n\t  ")).await);
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    assert!(s.message().contains("blank"));

    let s = code(client.route(text(&"a".repeat(64 * 1024 + 1))).await);
    assert_eq!(s.code(), Code::InvalidArgument);
    assert!(s.message().contains("65536 bytes"), "{}", s.message());

    // Long but allowed text is truncated to max_tokens, never refused.
    let long = "please help me refactor this python module. ".repeat(1000);
    assert!(long.len() < 64 * 1024);
    let r = client.route(text(&long)).await.unwrap().into_inner();
    assert!(!r.route.is_empty());

    let no_user = RouteRequest {
        messages: vec![Message {
            role: "system".into(),
            content: "x".into(),
        }],
        ..Default::default()
    };
    let s = code(client.route(no_user).await);
    assert_eq!(s.code(), Code::InvalidArgument);
    assert!(s.message().contains("user"));

    let both = RouteRequest {
        text: "a".into(),
        messages: vec![Message {
            role: "user".into(),
            content: "b".into(),
        }],
        ..Default::default()
    };
    assert_eq!(code(client.route(both).await).code(), Code::InvalidArgument);

    // Odd but valid input never panics the server: control characters, invalid-looking unicode, emoji.
    for t in ["\u{0}\u{1}\u{2}", "🤖🤖🤖", "\u{202e}reversed", "a"] {
        client.route(text(t)).await.unwrap();
    }
    // Huge top_k is capped.
    let mut req = text("hello");
    req.top_k = Some(u32::MAX);
    let r = client.route(req).await.unwrap().into_inner();
    assert!(r.neighbours.len() <= 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection() {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;

    let (server, _client) = shipped().await;
    let mut health = HealthClient::new(common::channel(&server.endpoint()).await.unwrap());
    for service in ["", "semroute.v1.Router"] {
        let s = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(s.status, 1, "SERVING for {service:?}");
    }

    let mut refl = ServerReflectionClient::new(common::channel(&server.endpoint()).await.unwrap());
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = refl
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let resp = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
        panic!("unexpected reflection response {resp:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"semroute.v1.Router".to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.health.v1.Health".to_string()),
        "{names:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_serving_until_ready_then_graceful_shutdown() {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;

    let loaded = semroute::config::load_file(&common::repo().join("routes.yaml")).unwrap();
    let server = TestServer::start(loaded);
    // The listener accepts at once; before the index is built health says NOT_SERVING (2) and Route is
    // UNAVAILABLE. Loading takes seconds, so the first answer is almost always from that window; accept
    // SERVING too in case this machine is very fast, but never anything else.
    let mut health = loop {
        if let Ok(ch) = common::channel(&server.endpoint()).await {
            break HealthClient::new(ch);
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    };
    let first = health
        .check(HealthCheckRequest {
            service: "semroute.v1.Router".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert!(first == 2 || first == 1, "status {first}");
    if first == 2 {
        let mut client = RouterClient::connect(server.endpoint()).await.unwrap();
        let r = client.route(text("hello")).await;
        if let Err(s) = r {
            assert_eq!(s.code(), Code::Unavailable);
        }
    }
    server.wait_ready().await;

    // In-flight calls finish during a graceful stop: start several, then stop while they run.
    let mut client = RouterClient::connect(server.endpoint()).await.unwrap();
    let mut calls = Vec::new();
    for i in 0..8 {
        let mut c = client.clone();
        calls.push(tokio::spawn(async move {
            c.route(text(&format!(
                "write a sorting algorithm in go, variant {i}"
            )))
            .await
        }));
    }
    client.route(text("warm")).await.unwrap();
    let stopper = std::thread::spawn(move || server.stop());
    for c in calls {
        let r = c.await.unwrap();
        assert!(r.is_ok(), "in-flight call failed during shutdown: {r:?}");
    }
    stopper.join().unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_failure_is_reported() {
    let yaml =
        "encoder:\n  model: definitely-missing-model\nroutes:\n  - name: a\n    utterances: [x]\n";
    let server = TestServer::start_yaml(yaml);
    // No shutdown is sent: serve() must end by itself with the start-up error.
    let err = tokio::task::spawn_blocking(move || server.wait_exit())
        .await
        .unwrap()
        .unwrap_err();
    assert!(err.contains("./models/fetch.sh"), "{err}");
    assert!(err.contains("definitely-missing-model"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_model_queue_is_resource_exhausted() {
    let yaml = "encoder:\n  queue_capacity: 1\n  max_batch: 1\n  cache_size: 0\nroutes:\n  - name: a\n    utterances: [hello there, good morning]\n";
    let server = TestServer::start_yaml(yaml);
    server.wait_ready().await;
    let client = RouterClient::connect(server.endpoint()).await.unwrap();
    let mut calls = Vec::new();
    for i in 0..48 {
        let mut c = client.clone();
        calls.push(tokio::spawn(async move {
            c.route(text(&format!(
                "a fairly long prompt number {i} so that the model takes a while on each one"
            )))
            .await
        }));
    }
    let (mut ok, mut exhausted) = (0, 0);
    for c in calls {
        match c.await.unwrap() {
            Ok(_) => ok += 1,
            Err(s) if s.code() == Code::ResourceExhausted => {
                assert!(s.message().contains("queue is full"), "{}", s.message());
                exhausted += 1;
            }
            Err(s) => panic!("unexpected status {s:?}"),
        }
    }
    assert!(ok >= 1 && exhausted >= 1, "ok {ok}, exhausted {exhausted}");
}
