//! What the service keeps between requests and across restarts: the embedding store (exemplar vectors
//! keyed by text and model identity) and crash-safe file replacement for everything it writes.

mod persist;
mod store;

pub use persist::{keep_backup, write_atomically};
pub use store::{EmbeddingStore, StoreError};
