//! The Quick start's first hour, end to end with no provider keys: the real server on the shipped
//! routes.yaml, called through `semroute call route|complete|stream` (the binary, as a user types it) and
//! through a tonic client; completions are forwarded to the local `mock` provider.

mod common;

use std::process::Command;

use common::TestServer;
use semroute::grpc::pb::router_client::RouterClient;
use semroute::grpc::pb::{CompleteRequest, Message};

fn shipped_server() -> TestServer {
    let loaded = semroute::config::load_file(&common::repo().join("routes.yaml")).unwrap();
    TestServer::start(loaded)
}

fn call(server: &TestServer, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_semroute"))
        .arg("call")
        .args(["--addr", &server.endpoint()])
        .args(args)
        .env("SEMROUTE_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn call_subcommands_route_complete_and_stream_through_the_mock() {
    let server = shipped_server();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(server.wait_ready());

    let (ok, out, err) = call(
        &server,
        &[
            "route",
            "write a python function that reverses a linked list",
        ],
    );
    assert!(ok, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["route"], "code", "{out}");
    assert_eq!(v["matched"], true);

    let prompt = "write a haiku about routers";
    let (ok, out, err) = call(&server, &["complete", "--model", "mock-echo", prompt]);
    assert!(ok, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["content"], format!("[mock echo] {prompt}"));
    assert_eq!(v["served_by"]["model"], "mock-echo");
    assert_eq!(v["served_by"]["provider"], "mock");
    assert_eq!(v["attempts"][0]["outcome"], "ok");
    assert_eq!(v["usage"]["output_tokens"], 7);
    assert!(v["decision"]["route"]
        .as_str()
        .is_some_and(|r| !r.is_empty()));

    let (ok, out, err) = call(&server, &["stream", "--model", "mock-echo", prompt]);
    assert!(ok, "{out}{err}");
    let (text, summary) = out.split_once('\n').unwrap();
    assert_eq!(text, format!("[mock echo] {prompt}"));
    let v: serde_json::Value = serde_json::from_str(summary).unwrap();
    assert_eq!(v["served_by"]["model"], "mock-echo");
    assert_eq!(
        v["content"], "",
        "the final chunk carries everything but the content"
    );

    // Without keys, the real providers fail with a message naming what to set; nothing hangs.
    let (ok, _, err) = call(&server, &["complete", "--model", "gpt-4o-mini", "hi"]);
    if std::env::var("OPENAI_API_KEY").is_err() {
        assert!(!ok);
        assert!(
            err.contains("Unavailable") && err.contains("OPENAI_API_KEY"),
            "{err}"
        );
    }

    let (ok, _, err) = call(&server, &["complete", "--model", "no-such-model", "hi"]);
    assert!(!ok);
    assert!(
        err.contains("NotFound") && err.contains("no-such-model"),
        "{err}"
    );
}

/// The stream's deltas add up to the answer, and its final chunk carries no content (the proto's promise).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_mock_answer_arrives_word_by_word() {
    let server = shipped_server();
    server.wait_ready().await;
    let mut client = RouterClient::connect(server.endpoint()).await.unwrap();
    let req = CompleteRequest {
        messages: vec![Message {
            role: "user".into(),
            content: "one two three four".into(),
        }],
        model: Some("mock-echo".into()),
        max_tokens: Some(4),
        ..Default::default()
    };
    let mut stream = client.complete_stream(req).await.unwrap().into_inner();
    let (mut deltas, mut done) = (Vec::new(), None);
    while let Some(chunk) = stream.message().await.unwrap() {
        if !chunk.delta.is_empty() {
            deltas.push(chunk.delta);
        }
        if chunk.done.is_some() {
            done = chunk.done;
        }
    }
    assert_eq!(deltas, ["[mock", " echo]", " one", " two"]);
    let done = done.unwrap();
    assert_eq!(done.finish_reason, "length");
    assert!(done.content.is_empty());
    assert_eq!(done.usage.unwrap().output_tokens, 4);
}
