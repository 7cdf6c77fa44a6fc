//! Tool calls, images and JSON mode through the HTTP face, end to end: the real server on 127.0.0.1:0,
//! a real HTTP client, and the fake OpenAI and Anthropic servers of `common::upstream`, which call the
//! first tool they are offered and answer in text once they see its result. Both provider kinds, JSON
//! and SSE: what the client sees is OpenAI's shape whichever provider answered.

mod common;

use std::time::Duration;

use common::upstream::FakeUpstream;
use common::TestServer;
use serde_json::{json, Value};

fn yaml(openai: &str, anthropic: &str) -> String {
    format!(
        "upstream: {{max_retries: 0, backoff_ms: 10, max_backoff_ms: 20, breaker_failures: 100}}
providers:
  - {{name: oa, kind: openai, base_url: {openai}}}
  - {{name: an, kind: anthropic, base_url: {anthropic}}}
models:
  - {{name: oa-model, provider: oa, id: oa-v1, vision: true}}
  - {{name: an-model, provider: an, id: an-v1, vision: true}}
  - {{name: oa-text, provider: oa, id: oa-text-v1}}
routes:
  - name: chat
    utterances: [hello there, how are you today]
    targets: [{{model: oa-text}}, {{model: oa-model}}]
  - name: claude-first
    utterances: [please be careful with this]
    targets: [{{model: an-model}}, {{model: oa-model}}]
"
    )
}

struct Setup {
    server: TestServer,
    oa: FakeUpstream,
    an: FakeUpstream,
}

async fn setup() -> Setup {
    let oa = FakeUpstream::start("from openai").await;
    let an = FakeUpstream::start("from anthropic").await;
    let server = TestServer::start_yaml(&yaml(&oa.base_url(), &an.base_url()));
    server.wait_ready().await;
    Setup { server, oa, an }
}

async fn chat(server: &TestServer, body: Value) -> reqwest::Response {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
        .post(format!("{}/v1/chat/completions", server.http_endpoint()))
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn ok_json(r: reqwest::Response) -> Value {
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{v}");
    v
}

/// The chunks of an SSE answer (without `[DONE]`, which must end it).
async fn chunks(r: reqwest::Response) -> Vec<Value> {
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    let data: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(data.last(), Some(&"[DONE]"), "{body}");
    data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

fn weather_tool() -> Value {
    json!([{"type": "function", "function": {
        "name": "weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }}])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_calls_round_trip_through_openai_and_anthropic_targets() {
    let s = setup().await;
    for (model, upstream) in [("oa-model", &s.oa), ("an-model", &s.an)] {
        let ask = json!([{"role": "user", "content": "What is the weather in Paris?"}]);
        let v = ok_json(
            chat(
                &s.server,
                json!({"model": model, "messages": ask, "tools": weather_tool(), "tool_choice": "auto"}),
            )
            .await,
        )
        .await;
        let choice = &v["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls", "{model}: {v}");
        let call = &choice["message"]["tool_calls"][0];
        assert_eq!(call["type"], "function");
        assert_eq!(call["function"]["name"], "weather");
        let args: Value =
            serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(args["city"], "Paris", "{model}");
        let id = call["id"].as_str().unwrap().to_string();
        assert!(!id.is_empty());
        let sent = upstream.last_body();
        if model == "an-model" {
            // Anthropic's shape: name + input_schema, and its text block before the call reaches the client.
            assert_eq!(sent["tools"][0]["name"], "weather");
            assert_eq!(
                sent["tools"][0]["input_schema"]["required"],
                json!(["city"])
            );
            assert_eq!(sent["tool_choice"], json!({"type": "auto"}));
            assert_eq!(choice["message"]["content"], "Let me check.");
        } else {
            assert_eq!(sent["tools"], weather_tool());
            assert_eq!(choice["message"]["content"], Value::Null);
        }

        // The client runs the tool and sends the result back, as the SDKs do.
        let mut history = ask.as_array().unwrap().clone();
        history.push(choice["message"].clone());
        history.push(json!({"role": "tool", "tool_call_id": id, "content": "18 C and sunny"}));
        let v = ok_json(
            chat(
                &s.server,
                json!({"model": model, "messages": history, "tools": weather_tool()}),
            )
            .await,
        )
        .await;
        assert_eq!(
            v["choices"][0]["message"]["content"], "the tool said: 18 C and sunny",
            "{model}"
        );
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        let sent = upstream.last_body();
        if model == "an-model" {
            let m = sent["messages"].as_array().unwrap();
            assert_eq!(m[1]["role"], "assistant");
            let tool_use = m[1]["content"]
                .as_array()
                .unwrap()
                .iter()
                .find(|b| b["type"] == "tool_use")
                .unwrap();
            assert_eq!(
                (tool_use["id"].as_str(), tool_use["input"]["city"].as_str()),
                (Some(id.as_str()), Some("Paris"))
            );
            assert_eq!(m[2]["role"], "user");
            assert_eq!(m[2]["content"][0]["type"], "tool_result");
            assert_eq!(m[2]["content"][0]["tool_use_id"], id.as_str());
        } else {
            assert_eq!(sent["messages"][1]["tool_calls"][0]["id"], id.as_str());
            assert_eq!(sent["messages"][2]["tool_call_id"], id.as_str());
        }

        // Streamed: the call arrives as tool-call deltas (id and name first, then argument fragments).
        let cs = chunks(
            chat(
                &s.server,
                json!({"model": model, "messages": ask, "tools": weather_tool(), "stream": true}),
            )
            .await,
        )
        .await;
        let deltas: Vec<&Value> = cs
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array())
            .flatten()
            .collect();
        assert!(deltas.len() >= 2, "{model}: {cs:?}");
        assert_eq!(deltas[0]["index"], 0);
        assert_eq!(deltas[0]["type"], "function");
        assert_eq!(deltas[0]["function"]["name"], "weather");
        assert!(deltas[0]["id"].as_str().is_some_and(|i| !i.is_empty()));
        assert!(deltas[1..]
            .iter()
            .all(|d| d["index"] == 0 && d.get("id").is_none()));
        let args: String = deltas
            .iter()
            .filter_map(|d| d["function"]["arguments"].as_str())
            .collect();
        let args: Value = serde_json::from_str(&args).unwrap();
        assert_eq!(args["city"], "Paris", "{model}");
        let finish = cs
            .iter()
            .find_map(|c| c["choices"][0]["finish_reason"].as_str())
            .unwrap();
        assert_eq!(finish, "tool_calls", "{model}");
    }

    // tool_choice naming a function and parallel calls off, in Anthropic's words.
    ok_json(
        chat(
            &s.server,
            json!({"model": "an-model", "messages": [{"role": "user", "content": "weather?"}],
                "tools": weather_tool(), "tool_choice": {"type": "function", "function": {"name": "weather"}},
                "parallel_tool_calls": false}),
        )
        .await,
    )
    .await;
    assert_eq!(
        s.an.last_body()["tool_choice"],
        json!({"type": "tool", "name": "weather", "disable_parallel_tool_use": true})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_go_to_models_that_take_them_and_are_refused_otherwise() {
    let s = setup().await;
    let with_image = |url: &str| {
        json!([{"role": "user", "content": [
            {"type": "text", "text": "hello there, what is in this picture?"},
            {"type": "image_url", "image_url": {"url": url, "detail": "low"}},
        ]}])
    };
    // An OpenAI-compatible model with vision: the parts go on as given.
    ok_json(
        chat(
            &s.server,
            json!({"model": "oa-model", "messages": with_image("https://example.com/cat.png")}),
        )
        .await,
    )
    .await;
    let sent = s.oa.last_body();
    assert_eq!(
        sent["messages"][0]["content"][1],
        json!({"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "low"}})
    );
    // Anthropic: URL and base64 data-URL sources.
    ok_json(
        chat(
            &s.server,
            json!({"model": "an-model", "messages": with_image("https://example.com/cat.png")}),
        )
        .await,
    )
    .await;
    assert_eq!(
        s.an.last_body()["messages"][0]["content"][1],
        json!({"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}})
    );
    ok_json(chat(&s.server, json!({"model": "an-model", "messages": with_image("data:image/png;base64,iVBORw0KGgo=")})).await).await;
    assert_eq!(
        s.an.last_body()["messages"][0]["content"][1]["source"],
        json!({"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="})
    );
    // A model without vision: 400 naming the part; nothing is sent.
    let before = s.oa.requests();
    let r = chat(
        &s.server,
        json!({"model": "oa-text", "messages": with_image("https://example.com/cat.png")}),
    )
    .await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["param"], "messages[0].content[1]", "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("vision"));
    assert_eq!(s.oa.requests(), before);
    // A route whose first target lacks vision: skipped, the next one serves.
    let r = chat(
        &s.server,
        json!({"model": "chat", "messages": with_image("https://example.com/cat.png")}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-semroute-model"], "oa-model");
    assert_eq!(r.headers()["x-semroute-attempts"], "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_mode_on_anthropic_is_a_forced_tool_and_unfit_requests_get_400() {
    let s = setup().await;
    let ask = json!([{"role": "user", "content": "Give me the city as JSON"}]);
    for format in [
        json!({"type": "json_object"}),
        json!({"type": "json_schema", "json_schema": {"name": "place", "schema": {"type": "object", "properties": {"city": {"type": "string"}}}}}),
    ] {
        let v = ok_json(
            chat(
                &s.server,
                json!({"model": "an-model", "messages": ask, "response_format": format}),
            )
            .await,
        )
        .await;
        let content = v["choices"][0]["message"]["content"].as_str().unwrap();
        let parsed: Value = serde_json::from_str(content).unwrap();
        assert_eq!(parsed["city"], "Paris", "{content}");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert!(v["choices"][0]["message"].get("tool_calls").is_none());
        let sent = s.an.last_body();
        assert_eq!(sent["tool_choice"]["type"], "tool");
        assert_eq!(sent["tools"][0]["name"], sent["tool_choice"]["name"]);
        // Streamed: the JSON arrives as text deltas, and the text beside the forced call is dropped.
        let cs = chunks(
            chat(
                &s.server,
                json!({"model": "an-model", "messages": ask, "response_format": format, "stream": true}),
            )
            .await,
        )
        .await;
        let text: String = cs
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        let parsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["city"], "Paris", "{text}");
    }
    // OpenAI-compatible targets get json_schema as given.
    let schema = json!({"name": "place", "strict": true, "schema": {"type": "array"}});
    ok_json(
        chat(
            &s.server,
            json!({"model": "oa-model", "messages": ask, "response_format": {"type": "json_schema", "json_schema": schema}}),
        )
        .await,
    )
    .await;
    assert_eq!(
        s.oa.last_body()["response_format"],
        json!({"type": "json_schema", "json_schema": schema})
    );
    // Anthropic can only be asked for an object, and has no `seed`: 400 naming the field when no target
    // of the choice can carry the request.
    for (body, param) in [
        (
            json!({"model": "an-model", "messages": ask, "response_format": {"type": "json_schema", "json_schema": schema}}),
            "response_format.json_schema.schema",
        ),
        (
            json!({"model": "an-model", "messages": ask, "seed": 3}),
            "seed",
        ),
    ] {
        let r = chat(&s.server, body).await;
        assert_eq!(r.status(), 400);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["param"], param, "{v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("an-model"));
    }
    // ... and a route with another target skips the Anthropic one.
    let r = chat(
        &s.server,
        json!({"model": "claude-first", "messages": ask, "seed": 3}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-semroute-model"], "oa-model");
}
