//! `semroute call …`: the Router API of a running server from the command line, so every RPC can be tried
//! without writing a client. Prints JSON; `stream` prints each delta as it arrives.

use std::io::Write;

use semroute::grpc::pb::{self, router_client::RouterClient};
use serde_json::{json, Value};

use super::{CallCommand, CallConn, CompleteArgs};

fn decision(d: &pb::RouteResponse) -> Value {
    json!({
        "route": d.route,
        "score": d.score,
        "matched": d.matched,
        "candidates": d.candidates.iter().map(|c| json!({"route": c.route, "score": c.score})).collect::<Vec<_>>(),
        "neighbours": d.neighbours.iter().map(|n| json!({
            "route": n.route, "utterance": n.utterance, "similarity": n.similarity,
        })).collect::<Vec<_>>(),
        "index_version": d.index_version,
        "embed_micros": d.embed_micros,
        "search_micros": d.search_micros,
    })
}

fn completion(r: &pb::CompleteResponse) -> Value {
    let served = r.served_by.clone().unwrap_or_default();
    let usage = r.usage.unwrap_or_default();
    json!({
        "content": r.content,
        "finish_reason": r.finish_reason,
        "usage": {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens},
        "cost_usd": r.cost_usd,
        "served_by": {"model": served.model, "provider": served.provider, "upstream_model": served.upstream_model},
        "attempts": r.attempts.iter().map(|a| json!({
            "target": a.target,
            "provider": a.provider,
            "outcome": outcome(a.outcome()),
            "latency_ms": a.latency_ms,
            "error": a.error,
            "circuit": a.circuit,
        })).collect::<Vec<_>>(),
        "decision": r.decision.as_ref().map(decision),
    })
}

/// The outcome in the words the server's logs and errors use (`ok`, `failed`, `timeout`, ...).
fn outcome(o: pb::AttemptOutcome) -> String {
    o.as_str_name()
        .trim_start_matches("ATTEMPT_OUTCOME_")
        .to_ascii_lowercase()
}

fn request(a: CompleteArgs) -> pb::CompleteRequest {
    let mut messages = Vec::new();
    if let Some(s) = a.system {
        messages.push(pb::Message {
            role: "system".into(),
            content: s,
        });
    }
    messages.push(pb::Message {
        role: "user".into(),
        content: a.text,
    });
    pb::CompleteRequest {
        messages,
        max_tokens: a.max_tokens,
        route: a.route,
        model: a.model,
        ..Default::default()
    }
}

/// The status as the caller should read it: code and message.
fn status(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", s.code(), s.message())
}

fn print(v: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Runs one Router call against the server of `conn` and prints the result.
pub async fn run(conn: &CallConn, command: CallCommand) -> anyhow::Result<()> {
    let addr = &conn.addr;
    let channel = super::connect::endpoint(addr, &conn.tls, None)?
        .connect()
        .await
        .map_err(|e| anyhow::anyhow!("connecting to {addr}: {e} (is `semroute serve` running?)"))?;
    let mut client = RouterClient::new(channel);
    match command {
        CallCommand::Route { top_k, text } => {
            let d = client
                .route(pb::RouteRequest {
                    text,
                    top_k,
                    ..Default::default()
                })
                .await
                .map_err(status)?
                .into_inner();
            print(&decision(&d))
        }
        CallCommand::Complete(a) => {
            let r = client
                .complete(request(a))
                .await
                .map_err(status)?
                .into_inner();
            print(&completion(&r))
        }
        CallCommand::Stream(a) => {
            let mut stream = client
                .complete_stream(request(a))
                .await
                .map_err(status)?
                .into_inner();
            let mut out = std::io::stdout();
            while let Some(chunk) = stream.message().await.map_err(status)? {
                if !chunk.delta.is_empty() {
                    write!(out, "{}", chunk.delta)?;
                    out.flush()?;
                }
                if let Some(done) = chunk.done {
                    writeln!(out)?;
                    print(&completion(&done))?;
                }
            }
            Ok(())
        }
    }
}
