//! `semroute admin …`: a small client for the Admin API that prints JSON.

use semroute::grpc::pb::admin_client::AdminClient;
use semroute::grpc::pb::{self, upsert_route_request};
use serde_json::json;
use tonic::metadata::MetadataValue;
use tonic::Request;

use crate::cli::AdminCommand;

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

/// Runs one admin command against `addr` and prints the result.
pub async fn run(addr: &str, token: &str, command: AdminCommand) -> anyhow::Result<()> {
    let channel = tonic::transport::Endpoint::from_shared(addr.to_string())?
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
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
