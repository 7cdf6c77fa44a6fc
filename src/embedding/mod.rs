//! Embeddings: model discovery, the candle sentence-transformer, and the model thread that serves it.

pub mod admission;
mod bert;
mod calibration;
mod device;
mod encoder;
mod faults;
mod source;
mod worker;

pub use admission::{QueueLimits, Refusal};
pub use bert::Backend;
pub use device::DeviceSpec;
pub(crate) use encoder::{batch_tokenizer, max_tokens_for, read_json};
pub use encoder::{Pooling, SentenceEncoder, TokenEmbedding};
pub use faults::FAULT_INJECTION_VAR;
pub use source::{resolve_model_dir, FETCH_HINT};
pub use worker::{EmbedObserver, Embedder, ModelInfo, QueueOptions, Reload};

use std::path::PathBuf;

/// Errors of the embedding layer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EmbedError {
    /// No model folder was found anywhere it was looked for.
    #[error(
        "model `{spec}` not found (looked in: {tried}; hugging face hub: {hub_error}). \
         Fetch the default model with `{hint}`, or set encoder.model to a model folder"
    )]
    ModelNotFound {
        /// What the config asked for.
        spec: String,
        /// The folders that were tried.
        tried: String,
        /// Why the hub could not provide it.
        hub_error: String,
        /// The fetch command.
        hint: &'static str,
    },
    /// A model folder lacks a required file.
    #[error("model folder {dir} is incomplete: {missing} is missing (re-run `{hint}`)")]
    IncompleteModel {
        /// The folder.
        dir: PathBuf,
        /// The missing file.
        missing: String,
        /// The fetch command.
        hint: &'static str,
    },
    /// A model file could not be read or parsed.
    #[error("loading {what}: {reason}")]
    Load {
        /// Which file or part.
        what: String,
        /// Why.
        reason: String,
    },
    /// The tokenizer rejected the input.
    #[error("tokenizer: {0}")]
    Tokenize(String),
    /// The tensor engine failed.
    #[error("candle: {0}")]
    Candle(String),
    /// Refused at the door: the model could not start this request in time (see [`admission`]).
    #[error("overloaded: {detail}; retry in {retry_after_ms} ms")]
    Overloaded {
        /// Which bound refused it.
        reason: Refusal,
        /// The bound and the figures, for a person.
        detail: String,
        /// When the work ahead should be done.
        retry_after_ms: u64,
    },
    /// The request's deadline passed before the model finished it.
    #[error("the request's deadline passed while it waited for the model")]
    DeadlineExceeded,
    /// The model thread failed and the model is being loaded again; the service is NOT_SERVING meanwhile.
    #[error("the model is restarting after a failure; retry shortly")]
    Restarting,
    /// The model thread has stopped.
    #[error("the model thread has stopped")]
    Stopped,
    /// A forward pass panicked. Its batch fails with this; the model thread goes on serving.
    #[error("the model failed on this batch (internal error: {0}); the service goes on")]
    Panicked(String),
}

impl From<candle_core::Error> for EmbedError {
    fn from(e: candle_core::Error) -> Self {
        Self::Candle(e.to_string())
    }
}

impl From<crate::config::Precision> for semroute_kernels::Precision {
    fn from(p: crate::config::Precision) -> Self {
        match p {
            crate::config::Precision::F32 => Self::F32,
            crate::config::Precision::Int8 => Self::Int8,
            crate::config::Precision::Int8Fast => Self::Int8Fast,
            crate::config::Precision::Bf16 => Self::Bf16,
        }
    }
}
