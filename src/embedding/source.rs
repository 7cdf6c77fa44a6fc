//! Finding a model's files: an existing directory, then `models/<name>`, then the Hugging Face hub cache,
//! then a hub download.

use std::path::{Path, PathBuf};

use super::EmbedError;

/// Files a sentence-transformer folder must hold for us to load it.
const REQUIRED: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];
/// Files that refine loading when present (pooling, normalisation, max_seq_length).
const OPTIONAL: [&str; 3] = [
    "sentence_bert_config.json",
    "modules.json",
    "1_Pooling/config.json",
];

/// The command that fetches the default model on machines without hub access.
pub const FETCH_HINT: &str = "./models/fetch.sh";

/// Resolves `spec` to a directory holding the model's files.
///
/// Order: `spec` as an existing directory; `<dir>/<last path segment of spec>` for each of `search_dirs`
/// (the `models/` folders next to the config and in the working directory); the hf-hub cache; a hub
/// download (skipped when `HF_HUB_OFFLINE=1`).
pub fn resolve_model_dir(spec: &str, search_dirs: &[PathBuf]) -> Result<PathBuf, EmbedError> {
    let direct = Path::new(spec);
    if direct.is_dir() {
        return check_complete(direct);
    }
    let name = spec.rsplit(['/', '\\']).next().unwrap_or(spec);
    let mut tried = vec![direct.display().to_string()];
    for dir in search_dirs {
        let candidate = dir.join(name);
        if candidate.is_dir() {
            return check_complete(&candidate);
        }
        tried.push(candidate.display().to_string());
    }
    match from_hub(spec) {
        Ok(dir) => Ok(dir),
        Err(hub_error) => Err(EmbedError::ModelNotFound {
            spec: spec.to_string(),
            tried: tried.join(", "),
            hub_error,
            hint: FETCH_HINT,
        }),
    }
}

fn check_complete(dir: &Path) -> Result<PathBuf, EmbedError> {
    for f in REQUIRED {
        if !dir.join(f).is_file() {
            return Err(EmbedError::IncompleteModel {
                dir: dir.to_path_buf(),
                missing: f.to_string(),
                hint: FETCH_HINT,
            });
        }
    }
    Ok(dir.to_path_buf())
}

/// Looks in the hf-hub cache, then downloads. All files land in one snapshot folder, which is returned.
fn from_hub(spec: &str) -> Result<PathBuf, String> {
    // Only hub ids look like `owner/name`; don't query the hub for a bare folder name or a path.
    if spec.split('/').count() != 2 || spec.starts_with('.') || spec.starts_with('/') {
        return Err("not a hub id (owner/name)".to_string());
    }
    let repo = hf_hub::Repo::model(spec.to_string());
    let cache = hf_hub::Cache::from_env().repo(repo.clone());
    let cached: Option<Vec<PathBuf>> = REQUIRED.iter().map(|f| cache.get(f)).collect();
    if let Some(paths) = cached {
        // Optional files may be absent from the cache; loading then falls back to defaults.
        return paths[0]
            .parent()
            .map(Path::to_path_buf)
            .ok_or_else(|| "bad cache path".to_string());
    }
    if std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| v == "1") {
        return Err("not in the hub cache and HF_HUB_OFFLINE=1".to_string());
    }
    let api = hf_hub::api::sync::ApiBuilder::from_env()
        .with_progress(false)
        .build()
        .map_err(|e| e.to_string())?;
    let api_repo = api.repo(repo);
    let mut config_path = None;
    for f in REQUIRED {
        let p = api_repo
            .get(f)
            .map_err(|e| format!("hub download of {f}: {e}"))?;
        config_path.get_or_insert(p);
    }
    for f in OPTIONAL {
        if let Err(e) = api_repo.get(f) {
            tracing::debug!(file = f, error = %e, "optional model file not on the hub");
        }
    }
    config_path
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .ok_or_else(|| "hub returned no files".to_string())
}
