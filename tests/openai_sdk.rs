//! The official openai Python SDK (pinned in tests/sdk/requirements.txt) against the real server's HTTP
//! face: chat, streaming with usage, tool calls through OpenAI and Anthropic targets, response_format, embeddings, the models list, the decision headers,
//! and the SDK's exception classes for 400/404/429/503 (tests/sdk/openai_sdk_check.py).
//!
//! `scripts/test.sh` installs the SDK into a venv outside the source tree and names its Python in
//! `SEMROUTE_SDK_PYTHON`. Run through plain `cargo test`, without it, the test prints why and skips;
//! `SEMROUTE_REQUIRE_DATA=1` (CI) turns that skip into a failure.

mod common;

use std::process::Command;

use common::upstream::FakeUpstream;
use common::TestServer;

/// The venv's Python, or `None` (the test prints why and skips) when the test command did not set it up.
fn sdk_python() -> Option<String> {
    if let Ok(python) = std::env::var("SEMROUTE_SDK_PYTHON") {
        return Some(python);
    }
    let why = "SEMROUTE_SDK_PYTHON is not set (./scripts/test.sh sets it up)";
    if std::env::var("SEMROUTE_REQUIRE_DATA").is_ok_and(|v| v == "1") {
        panic!("{why}; SEMROUTE_REQUIRE_DATA=1 makes this a failure");
    }
    eprintln!("SKIPPED: {why}");
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_openai_sdk_works_unmodified() {
    let Some(python) = sdk_python() else {
        return;
    };
    // The shipped routes with a model queue of one job, so that a burst of embeddings is refused (429),
    // and two fake providers (OpenAI and Anthropic formats) that call the tools they are offered.
    let oa = FakeUpstream::start("from openai").await;
    let an = FakeUpstream::start("from anthropic").await;
    let yaml = std::fs::read_to_string(common::repo().join("routes.yaml"))
        .unwrap()
        .replace(
            "encoder:\n",
            "encoder:\n  queue_capacity: 1\n  max_batch: 8\n",
        )
        .replace(
            "\nproviders:\n",
            &format!(
                "\nproviders:\n  - {{name: fake-oa, kind: openai, base_url: {}}}\n  - {{name: fake-an, kind: anthropic, base_url: {}}}\n",
                oa.base_url(),
                an.base_url()
            ),
        )
        .replace(
            "\nmodels:\n",
            "\nmodels:\n  - {name: tools-oa, provider: fake-oa, id: oa-tools}\n  - {name: tools-an, provider: fake-an, id: an-tools}\n",
        );
    let server = TestServer::start_yaml(&yaml);
    server.wait_ready().await;
    let base = format!("{}/v1", server.http_endpoint());
    let script = common::repo().join("tests/sdk/openai_sdk_check.py");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .env("SEMROUTE_BASE_URL", base)
            .env_remove("OPENAI_API_KEY")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    eprintln!("{stdout}");
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("all openai SDK checks passed"));
}

/// A bounded, deterministic schemathesis run (tests/sdk/schemathesis_check.sh) against the live server and
/// the checked-in OpenAPI document (src/http/openapi.json, also served at /openapi.json): no internal
/// error for any generated request, and every response matching the document.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_requests_match_the_openapi_document() {
    let Some(python) = sdk_python() else {
        return;
    };
    let bin = std::path::Path::new(&python)
        .parent()
        .unwrap()
        .to_path_buf();
    let loaded = semroute::config::load_file(&common::repo().join("routes.yaml")).unwrap();
    let server = TestServer::start(loaded);
    server.wait_ready().await;
    let served: serde_json::Value =
        reqwest::get(format!("{}/openapi.json", server.http_endpoint()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    let file: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(common::repo().join("src/http/openapi.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(served, file, "/openapi.json serves the checked-in document");
    let url = server.http_endpoint();
    let script = common::repo().join("tests/sdk/schemathesis_check.sh");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .arg(script)
            .arg(url)
            .env("SEMROUTE_SDK_BIN", bin)
            .env_remove("OPENAI_API_KEY")
            .env_remove("ANTHROPIC_API_KEY")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
}
