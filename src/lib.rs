//! semroute: a semantic LLM router.
//!
//! A prompt is embedded by a local sentence-transformer ([`embedding`]), compared with labelled example
//! utterances in an index ([`index`]), and the best route that clears its threshold wins ([`router`]).
//! [`upstream`] forwards prompts to the route's downstream models. [`config`] reads `routes.yaml`; [`server`] is
//! the tonic gRPC face. The core layers know nothing of gRPC.
#![warn(missing_docs)]

pub mod config;
pub mod control;
pub mod embedding;
pub mod eval;
pub mod index;
pub mod kernels;
pub mod persist;
pub mod router;
pub mod server;
pub mod store;
pub mod tune;
pub mod upstream;
