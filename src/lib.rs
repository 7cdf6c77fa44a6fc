//! semroute: a semantic LLM router.
//!
//! A prompt is embedded by a local sentence-transformer ([`embedding`]), compared with labelled example
//! utterances in an index ([`index`]), and the best route that clears its threshold wins ([`router`]).
//! [`upstream`] forwards prompts to the route's downstream models. [`gateway`] is the transport-free core
//! both faces call (route, complete, stream); [`grpc`] is the tonic face and only translates. [`config`]
//! reads `routes.yaml`; [`admin`] changes it live; [`cluster`] shares routes and limits between replicas
//! through Redis; [`state`] keeps the embedding store; [`metrics`] counts
//! and times it all for Prometheus; [`eval`] and
//! [`tune`] are the offline quality tools. The SIMD kernels live in the `semroute-kernels` crate, the only
//! place with `unsafe` code.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod access;
pub mod admin;
pub mod cluster;
pub mod config;
pub mod edge;
pub mod embedding;
pub mod eval;
pub mod gateway;
pub mod grpc;
pub mod guard;
pub mod http;
pub mod index;
pub mod message;
pub mod metrics;
pub mod router;
pub mod rules;
pub mod serve;
pub mod state;
pub mod telemetry;
pub mod tls;
pub mod tune;
pub mod upstream;
