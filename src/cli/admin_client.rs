//! `semroute admin …`: a small client for the Admin API that prints JSON.

use semroute::grpc::pb::admin_client::AdminClient;
use semroute::grpc::pb::{self, upsert_route_request};
use serde_json::json;
use tonic::metadata::MetadataValue;
use tonic::Request;

use crate::cli::{AdminCommand, AdminConn, KeysCommand};

fn change(r: pb::ChangeResponse) -> serde_json::Value {
    json!({
        "index_version": r.index_version,
        "affected": r.affected,
        "embedded": r.embedded,
        "routes": r.routes,
        "exemplars": r.exemplars,
    })
}

fn route(r: pb::RouteSpec) -> serde_json::Value {
    json!({
        "name": r.name,
        "description": r.description,
        "threshold": r.threshold,
        "utterances": r.utterances,
    })
}

/// A key as `semroute keys list` shows it (never a secret: the message has none).
fn key(k: pb::KeyInfo) -> serde_json::Value {
    let l = k.limits.unwrap_or_default();
    let attributes: std::collections::BTreeMap<_, _> = k.attributes.into_iter().collect();
    json!({
        "name": k.name, "hint": k.hint, "tenant": k.tenant, "routes": k.routes, "models": k.models,
        "limits": {
            "rpm": l.rpm, "tpm": l.tpm, "concurrency": l.concurrency,
            "daily_usd": l.daily_usd, "monthly_usd": l.monthly_usd,
        },
        "attributes": attributes, "expires_at": k.expires_at, "revoked": k.revoked,
    })
}

/// An issued key: its listing on stdout as JSON with the secret, which is shown only now.
fn issued(k: pb::IssuedKey) -> serde_json::Value {
    json!({
        "key": k.key.map(key),
        "secret": k.secret,
        "previous_valid_until": k.previous_valid_until,
    })
}

/// Runs one admin command against the server of `conn` and prints the result.
pub async fn run(conn: &AdminConn, token: &str, command: AdminCommand) -> anyhow::Result<()> {
    let addr = &conn.addr;
    let identity = conn.client_cert.as_deref().zip(conn.client_key.as_deref());
    let channel = super::connect::endpoint(addr, &conn.tls, identity)?
        .connect()
        .await
        .map_err(|e| anyhow::anyhow!("connecting to {addr}: {e}"))?;
    let mut bearer: MetadataValue<_> = format!("Bearer {token}").parse()?;
    // Marked sensitive: HTTP/2 never indexes it, and tracing of the request never shows it.
    bearer.set_sensitive(true);
    let mut client = AdminClient::with_interceptor(channel, move |mut req: Request<()>| {
        req.metadata_mut().insert("authorization", bearer.clone());
        Ok(req)
    });
    let status = |s: tonic::Status| anyhow::anyhow!("{:?}: {}", s.code(), s.message());
    let out = match command {
        AdminCommand::Rebuild => change(
            client
                .rebuild_index(pb::RebuildIndexRequest {})
                .await
                .map_err(status)?
                .into_inner(),
        ),
        AdminCommand::Info => {
            let i = client
                .get_index_info(pb::GetIndexInfoRequest {})
                .await
                .map_err(status)?
                .into_inner();
            json!({
                "index_version": i.index_version,
                "model": i.model,
                "model_identity": i.model_identity,
                "routes": i.routes,
                "exemplars": i.exemplars,
                "built_at_unix_ms": i.built_at_unix_ms,
                "build_millis": i.build_millis,
                "embedded_last_build": i.embedded_last_build,
                "search_mode": i.search_mode,
                "last_reload_error": i.last_reload_error,
                "cache_hits": i.cache_hits,
                "cache_misses": i.cache_misses,
            })
        }
        AdminCommand::List => {
            let l = client
                .list_routes(pb::ListRoutesRequest {})
                .await
                .map_err(status)?
                .into_inner();
            serde_json::Value::Array(l.routes.into_iter().map(route).collect())
        }
        AdminCommand::Get { name } => route(
            client
                .get_route(pb::GetRouteRequest { name })
                .await
                .map_err(status)?
                .into_inner(),
        ),
        AdminCommand::Upsert { file } => {
            let yaml = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(&file)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?
            };
            change(
                client
                    .upsert_route(pb::UpsertRouteRequest {
                        route: Some(upsert_route_request::Route::Yaml(yaml)),
                    })
                    .await
                    .map_err(status)?
                    .into_inner(),
            )
        }
        AdminCommand::Delete { name } => change(
            client
                .delete_route(pb::DeleteRouteRequest { name })
                .await
                .map_err(status)?
                .into_inner(),
        ),
        AdminCommand::AddUtterances { name, utterances } => change(
            client
                .add_utterances(pb::UtterancesRequest {
                    route: name,
                    utterances,
                })
                .await
                .map_err(status)?
                .into_inner(),
        ),
        AdminCommand::RemoveUtterances { name, utterances } => change(
            client
                .remove_utterances(pb::UtterancesRequest {
                    route: name,
                    utterances,
                })
                .await
                .map_err(status)?
                .into_inner(),
        ),
        AdminCommand::Keys { command } => match command {
            KeysCommand::Create(args) => {
                let spec = args.into_spec()?;
                let l = spec.limits;
                let k = client
                    .create_key(pb::CreateKeyRequest {
                        name: spec.name,
                        tenant: spec.tenant,
                        attributes: spec.attributes.into_iter().collect(),
                        routes: spec.routes,
                        models: spec.models,
                        limits: Some(pb::KeyLimits {
                            rpm: l.rpm,
                            tpm: l.tpm,
                            concurrency: l.concurrency,
                            daily_usd: l.daily_usd,
                            monthly_usd: l.monthly_usd,
                        }),
                        expires_at: spec.expires_at,
                    })
                    .await
                    .map_err(status)?
                    .into_inner();
                eprintln!("created; the secret is shown only now");
                issued(k)
            }
            KeysCommand::List => {
                let l = client
                    .list_keys(pb::ListKeysRequest {})
                    .await
                    .map_err(status)?
                    .into_inner();
                serde_json::Value::Array(l.keys.into_iter().map(key).collect())
            }
            KeysCommand::Revoke { name } => {
                let r = client
                    .revoke_key(pb::RevokeKeyRequest { name })
                    .await
                    .map_err(status)?
                    .into_inner();
                json!({ "revoked": r.revoked })
            }
            KeysCommand::Rotate { name, grace_s } => {
                let k = client
                    .rotate_key(pb::RotateKeyRequest {
                        name,
                        grace_seconds: Some(grace_s),
                    })
                    .await
                    .map_err(status)?
                    .into_inner();
                eprintln!("rotated; the new secret is shown only now");
                issued(k)
            }
        },
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
