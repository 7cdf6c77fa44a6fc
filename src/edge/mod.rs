//! Edge layers both faces share, ahead of the gateway core: the request's deadline, read from what the
//! caller sent, and the per-listener concurrency limit that refuses work at the door instead of queueing
//! it.

pub mod deadline;
pub mod door;

pub use deadline::Deadline;
pub use door::{Door, DoorLayer};
