//! The gRPC face: tonic services (Router, Admin, health, reflection) and the translation between proto
//! messages and domain types, with domain errors mapped to `tonic::Status` in one place
//! ([`convert`]). [`crate::serve`] wires it to the listeners.

mod admin_service;
mod auth;
mod convert;
mod router_service;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

pub use admin_service::AdminService;
pub use auth::BearerAuth;
pub use router_service::{authenticate, RouterService};
/// Generated protobuf and gRPC code for `semroute.v1`.
pub mod pb {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("semroute.v1");
    /// Encoded descriptors of `semroute.v1`, served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("semroute_descriptor");
}

/// Accepted connections with TCP_NODELAY: small gRPC frames must not wait out Nagle + delayed ACK
/// (a constant ~40 ms per call on Linux), and keepalive so dead peers are noticed.
pub(crate) fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(Duration::from_secs(60)))
}

/// The value a service needs once start-up has built it; UNAVAILABLE until then.
fn ready<T>(slot: &OnceLock<Arc<T>>) -> Result<&Arc<T>, tonic::Status> {
    slot.get().ok_or_else(|| {
        tonic::Status::unavailable("starting: the model and route index are loading")
    })
}

/// The fully-qualified service name health reports on.
pub const ROUTER_SERVICE_NAME: &str = "semroute.v1.Router";

/// Server reflection over `semroute.v1` and health, for grpcurl and other tools.
pub(crate) fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}
