//! Finding and loading the encoder a config names.

use std::path::PathBuf;

use crate::config::{DeviceSpec, LoadedConfig};
use std::time::Duration;

use crate::embedding::{
    resolve_model_dir, EmbedError, Embedder, QueueLimits, QueueOptions, SentenceEncoder,
};

/// Folders searched for `models/<name>`: next to the config file, then the working directory, then
/// `$SEMROUTE_MODELS_DIR`.
pub fn model_search_dirs(loaded: &LoadedConfig) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(d) = std::env::var("SEMROUTE_MODELS_DIR") {
        dirs.push(PathBuf::from(d));
    }
    dirs.push(loaded.base_dir().join("models"));
    dirs.push(PathBuf::from("models"));
    dirs
}

/// The folder of the model `encoder.model` names: a relative folder path is taken against the config's own
/// folder first (where `semroute tune --set-model` writes it from), then as [`resolve_model_dir`] does.
pub fn model_dir(loaded: &LoadedConfig) -> Result<PathBuf, EmbedError> {
    let spec = &loaded.config.encoder.model;
    let beside = loaded.base_dir().join(spec);
    if std::path::Path::new(spec).is_relative() && beside.is_dir() {
        return resolve_model_dir(&beside.display().to_string(), &[]);
    }
    resolve_model_dir(spec, &model_search_dirs(loaded))
}

/// Loads the model named by `config.encoder` and starts its thread, supervised: should the thread fail,
/// the model is loaded again from the same folder. Blocking: call from a blocking context.
pub fn start_embedder(loaded: &LoadedConfig, threads: usize) -> Result<Embedder, EmbedError> {
    let enc = loaded.config.encoder.clone();
    let dir = model_dir(loaded)?;
    let device = DeviceSpec::parse(&enc.device).map_err(|reason| EmbedError::Load {
        what: "encoder.device".into(),
        reason,
    })?;
    let load = move || {
        SentenceEncoder::load_with_precision(&dir, device, enc.max_tokens, enc.precision.into())
    };
    let encoder = load()?;
    let enc = &loaded.config.encoder;
    let options = QueueOptions {
        max_batch: enc.max_batch,
        limits: QueueLimits {
            texts: enc.queue_capacity,
            tokens: enc.queue_tokens,
            max_wait: (enc.max_queue_ms > 0).then(|| Duration::from_millis(enc.max_queue_ms)),
        },
        threads,
    };
    Embedder::start_supervised(encoder, options, Some(Box::new(load)))
}
