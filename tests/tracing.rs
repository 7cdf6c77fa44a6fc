//! Traces and logs, end to end: the real server exports its spans over OTLP/gRPC to a real OTLP receiver
//! (tonic, the OpenTelemetry protocol's own messages) started by the test; the caller's W3C `traceparent`
//! becomes the parent of the request span and travels on to the upstream; the decision and the attempts
//! are span attributes; and every JSON log line a request causes carries its request id and trace id.
//!
//! One test per binary: the subscriber is process-wide.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::upstream::FakeUpstream;
use common::{Lines, TestServer};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use semroute::grpc::pb::router_client::RouterClient;
use semroute::grpc::pb::{CompleteRequest, Message};
use semroute::telemetry::{self, LogFormat, Otlp};

/// The OTLP receiver: keeps every span it is sent.
#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<Span>>>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.0.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            for ss in rs.scope_spans {
                spans.extend(ss.spans);
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn attrs(s: &Span) -> HashMap<String, String> {
    s.attributes
        .iter()
        .map(|kv| {
            let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(AnyValue::StringValue(s)) => s.clone(),
                Some(AnyValue::IntValue(i)) => i.to_string(),
                Some(AnyValue::DoubleValue(d)) => d.to_string(),
                Some(AnyValue::BoolValue(b)) => b.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), v)
        })
        .collect()
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_otlp_receiver_with_the_decision_and_the_callers_trace() {
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let otlp_addr = listener.local_addr().unwrap();
    let incoming = tokio_stream_from(listener);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(receiver.clone()))
            .serve_with_incoming(incoming),
    );
    let lines = Lines::default();
    let guard = telemetry::init(
        "info",
        LogFormat::Json,
        Some(Otlp {
            endpoint: Some(format!("http://{otlp_addr}")),
        }),
        lines.clone(),
    )
    .unwrap();
    assert!(guard.exporting());

    let upstream = FakeUpstream::start("the answer").await;
    let yaml = format!(
        "providers:\n  - name: p\n    kind: openai\n    base_url: {}\nmodels:\n  - name: small\n    provider: p\n    id: small-1\nroutes:\n  - name: chat\n    utterances: [hello there, good morning]\n    targets:\n      - model: small\n",
        upstream.base_url()
    );
    let server = TestServer::start_yaml(&yaml);
    server.wait_ready().await;

    // gRPC, with the caller's trace context and request id in metadata.
    let mut client = RouterClient::new(common::channel(&server.endpoint()).await.unwrap());
    let mut req = tonic::Request::new(CompleteRequest {
        messages: vec![Message {
            role: "user".into(),
            content: "hello there, how are you".into(),
        }],
        ..Default::default()
    });
    req.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE}-{CALLER_SPAN}-01").parse().unwrap(),
    );
    req.metadata_mut()
        .insert("x-request-id", "req-grpc-1".parse().unwrap());
    let answer = client.complete(req).await.unwrap().into_inner();
    assert_eq!(answer.content, "the answer");

    // The upstream got the same trace, with a span of ours as its parent.
    let sent = upstream.last_headers();
    let tp = sent
        .get("traceparent")
        .expect("traceparent sent upstream")
        .to_str()
        .unwrap()
        .to_string();
    assert!(tp.starts_with(&format!("00-{TRACE}-")), "{tp}");
    assert!(
        !tp.contains(CALLER_SPAN),
        "the upstream's parent is our attempt span: {tp}"
    );

    // HTTP, no trace context: a fresh trace, still with request id and trace id on its log lines.
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/v1/chat/completions", server.http_endpoint()))
        .header("x-request-id", "req-http-1")
        .json(&serde_json::json!({"model": "auto", "messages": [{"role": "user", "content": "good morning"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Spans arrive in batches: flush, then wait for the request spans of both calls.
    let deadline = Instant::now() + Duration::from_secs(20);
    let spans = loop {
        guard.flush();
        let spans = receiver.0.lock().unwrap().clone();
        let requests = spans
            .iter()
            .filter(|s| s.name.starts_with("grpc ") || s.name.starts_with("http "))
            .count();
        if requests >= 2 && spans.iter().any(|s| s.name == "upstream_attempt") {
            break spans;
        }
        assert!(
            Instant::now() < deadline,
            "spans received: {:?}",
            spans.iter().map(|s| &s.name).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let root = spans
        .iter()
        .find(|s| s.name == "grpc Complete")
        .unwrap_or_else(|| panic!("{:?}", spans.iter().map(|s| &s.name).collect::<Vec<_>>()));
    assert_eq!(hex(&root.trace_id), TRACE);
    assert_eq!(
        hex(&root.parent_span_id),
        CALLER_SPAN,
        "the caller's span is the parent"
    );
    let a = attrs(root);
    assert_eq!(a["route"], "chat", "{a:?}");
    assert_eq!(a["matched"], "true", "{a:?}");
    assert!(a["score"].parse::<f64>().unwrap() > 0.3, "{a:?}");
    assert!(a.contains_key("index_version"), "{a:?}");
    assert_eq!(a["target"], "small", "{a:?}");
    assert_eq!(a["attempts"], "small:ok", "{a:?}");
    assert_eq!(a["outcome"], "ok", "{a:?}");
    assert_eq!(a["request_id"], "req-grpc-1", "{a:?}");

    // Children in the same trace: the model's queue and forward pass, the search, the upstream attempt.
    let in_trace: Vec<&Span> = spans.iter().filter(|s| hex(&s.trace_id) == TRACE).collect();
    for name in ["embed", "queue", "forward", "search", "upstream_attempt"] {
        assert!(
            in_trace.iter().any(|s| s.name == name),
            "no `{name}` span in the trace: {:?}",
            in_trace.iter().map(|s| &s.name).collect::<Vec<_>>()
        );
    }
    let attempt = in_trace
        .iter()
        .find(|s| s.name == "upstream_attempt")
        .unwrap();
    let aa = attrs(attempt);
    assert_eq!(
        (aa["target"].as_str(), aa["outcome"].as_str()),
        ("small", "ok"),
        "{aa:?}"
    );
    // The upstream's parent is the attempt span.
    assert!(
        tp.contains(&hex(&attempt.span_id)),
        "{tp} vs attempt {}",
        hex(&attempt.span_id)
    );
    let queue = in_trace.iter().find(|s| s.name == "queue").unwrap();
    let forward = in_trace.iter().find(|s| s.name == "forward").unwrap();
    assert!(queue.end_time_unix_nano <= forward.start_time_unix_nano + 1_000);
    assert!(forward.end_time_unix_nano >= forward.start_time_unix_nano);

    // JSON logs: the completion line of each call names its request and trace.
    let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    let logged: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let completed: Vec<&serde_json::Value> = logged
        .iter()
        .filter(|v| v["fields"]["message"] == "completed")
        .collect();
    assert_eq!(completed.len(), 2, "{text}");
    let grpc_line = completed
        .iter()
        .find(|v| v["span"]["request_id"] == "req-grpc-1")
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(grpc_line["span"]["trace_id"], TRACE, "{grpc_line}");
    let http_line = completed
        .iter()
        .find(|v| v["span"]["request_id"] == "req-http-1")
        .unwrap_or_else(|| panic!("{text}"));
    let http_trace = http_line["span"]["trace_id"].as_str().unwrap();
    assert_eq!(http_trace.len(), 32);
    assert_ne!(http_trace, TRACE);
    // Nothing of the prompt in the logs.
    assert!(!text.contains("how are you"), "{text}");

    server.shutdown().await.unwrap();
    drop(guard);
}

/// The accepted connections of `listener`, as tonic's `serve_with_incoming` wants them.
fn tokio_stream_from(
    listener: tokio::net::TcpListener,
) -> impl futures_util::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures_util::stream::unfold(listener, |l| async move {
        let r = l.accept().await.map(|(s, _)| s);
        Some((r, l))
    })
}
