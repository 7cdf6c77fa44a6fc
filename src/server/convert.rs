//! proto <-> domain translation and the one place domain errors become gRPC statuses.

use tonic::Status;

use super::pb;
use crate::control::AdminError;
use crate::embedding::EmbedError;
use crate::router::{ChatMessage, Decision, RouteError, RouteQuery};

impl From<pb::RouteRequest> for RouteQuery {
    fn from(r: pb::RouteRequest) -> Self {
        RouteQuery {
            text: r.text,
            messages: r
                .messages
                .into_iter()
                .map(|m| ChatMessage {
                    role: m.role,
                    content: m.content,
                })
                .collect(),
            top_k: r.top_k.map(|k| k as usize),
        }
    }
}

impl From<Decision> for pb::RouteResponse {
    fn from(d: Decision) -> Self {
        pb::RouteResponse {
            route: d.route.unwrap_or_default(),
            score: d.score,
            matched: d.matched,
            candidates: d
                .candidates
                .into_iter()
                .map(|c| pb::RouteCandidate {
                    route: c.route,
                    score: c.score,
                })
                .collect(),
            neighbours: d
                .neighbours
                .into_iter()
                .map(|n| pb::Neighbour {
                    route: n.route,
                    utterance: n.utterance,
                    similarity: n.similarity,
                })
                .collect(),
            index_version: d.index_version,
            embed_micros: d.embed_micros,
            search_micros: d.search_micros,
        }
    }
}

impl From<RouteError> for Status {
    fn from(e: RouteError) -> Self {
        match e {
            RouteError::InvalidInput(m) => Status::invalid_argument(m),
            RouteError::Embed(EmbedError::Overloaded { .. }) => {
                Status::resource_exhausted(e.to_string())
            }
            RouteError::Embed(EmbedError::Stopped) => Status::unavailable(e.to_string()),
            RouteError::Embed(EmbedError::Tokenize(_)) => Status::invalid_argument(e.to_string()),
            RouteError::Embed(_) | RouteError::Index(_) => Status::internal(e.to_string()),
        }
    }
}

impl From<AdminError> for Status {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::Invalid(_) | AdminError::BadRequest(_) => {
                Status::invalid_argument(e.to_string())
            }
            AdminError::NotFound(_) => Status::not_found(e.to_string()),
            AdminError::Persist { .. } => Status::internal(e.to_string()),
            AdminError::Build(inner) => inner.into(),
        }
    }
}
