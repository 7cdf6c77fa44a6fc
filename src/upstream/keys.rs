//! Provider API keys: read from the environment variable or file the config names, at call time. The value
//! never appears in `Debug` output, errors or logs.
//!
//! Key files are read off the async workers and cached for [`KEY_FILE_TTL`]: a rotated key (a
//! re-mounted Kubernetes Secret, say) takes effect within that time, and no attempt waits on the disk.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::{Config, ProviderConfig};

/// An API key. `Debug` prints nothing of it.
#[derive(Clone)]
pub struct ApiKey(String);

impl ApiKey {
    /// The secret, for building the one header that carries it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// How long a key file's contents (or its absence) are trusted before the file is read again.
pub const KEY_FILE_TTL: Duration = Duration::from_secs(5);

/// The key of provider `p` (`None` when it needs none, e.g. a local server), read now. The error says
/// which variable or file is missing, never what it holds. Blocking: for start-up checks; calls use
/// [`KeyCache::get`].
pub fn resolve(p: &ProviderConfig, base_dir: &Path) -> Result<Option<ApiKey>, String> {
    match source(p, base_dir) {
        Source::None => Ok(None),
        Source::Env(var) => from_env(p, var),
        Source::File(path) => from_file(p, &path, std::fs::read_to_string(&path)),
    }
}

enum Source<'a> {
    None,
    Env(&'a str),
    File(PathBuf),
}

fn source<'a>(p: &'a ProviderConfig, base_dir: &Path) -> Source<'a> {
    match (&p.api_key_env, &p.api_key_file) {
        (Some(var), _) => Source::Env(var),
        (None, Some(file)) => Source::File(base_dir.join(file)),
        (None, None) => Source::None,
    }
}

fn from_env(p: &ProviderConfig, var: &str) -> Result<Option<ApiKey>, String> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Ok(Some(ApiKey(v.trim().to_string()))),
        _ => Err(format!(
            "provider `{}`: API key variable {var} is not set",
            p.name
        )),
    }
}

fn from_file(
    p: &ProviderConfig,
    path: &Path,
    read: std::io::Result<String>,
) -> Result<Option<ApiKey>, String> {
    match read {
        Ok(v) if !v.trim().is_empty() => Ok(Some(ApiKey(v.trim().to_string()))),
        Ok(_) => Err(format!(
            "provider `{}`: API key file {} is empty",
            p.name,
            path.display()
        )),
        Err(e) => Err(format!(
            "provider `{}`: cannot read API key file {}: {}",
            p.name,
            path.display(),
            e.kind()
        )),
    }
}

/// Provider keys for calls: environment variables read directly (no I/O), key files read on a blocking
/// thread at most once per [`KEY_FILE_TTL`] each.
#[derive(Default)]
pub struct KeyCache {
    files: Mutex<HashMap<PathBuf, (Instant, std::io::Result<String>)>>,
}

impl KeyCache {
    /// The key of provider `p`, as [`resolve`] but without blocking the async runtime.
    pub async fn get(&self, p: &ProviderConfig, base_dir: &Path) -> Result<Option<ApiKey>, String> {
        let path = match source(p, base_dir) {
            Source::None => return Ok(None),
            Source::Env(var) => return from_env(p, var),
            Source::File(path) => path,
        };
        let cached = {
            let files = self.files.lock().unwrap_or_else(|e| e.into_inner());
            files
                .get(&path)
                .filter(|(at, _)| at.elapsed() < KEY_FILE_TTL)
                .map(|(_, r)| clone_read(r))
        };
        let read = match cached {
            Some(r) => r,
            None => {
                let r = tokio::fs::read_to_string(&path).await;
                let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
                files.insert(path.clone(), (Instant::now(), clone_read(&r)));
                r
            }
        };
        from_file(p, &path, read)
    }
}

fn clone_read(r: &std::io::Result<String>) -> std::io::Result<String> {
    match r {
        Ok(s) => Ok(s.clone()),
        Err(e) => Err(std::io::Error::from(e.kind())),
    }
}

/// One message per provider whose key is missing, for the start-up warnings.
pub fn missing(config: &Config, base_dir: &Path) -> Vec<String> {
    config
        .providers
        .iter()
        .filter_map(|p| resolve(p, base_dir).err())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_key_and_errors_name_only_the_source() {
        let k = ApiKey("sk-very-secret".into());
        assert!(!format!("{k:?}").contains("secret"));
        let p: ProviderConfig = serde_yaml::from_str(
            "name: p\nkind: openai\nbase_url: http://127.0.0.1:1\napi_key_env: SEMROUTE_TEST_SURELY_UNSET_KEY\n",
        )
        .unwrap();
        let e = resolve(&p, Path::new(".")).unwrap_err();
        assert!(e.contains("SEMROUTE_TEST_SURELY_UNSET_KEY"), "{e}");
    }

    #[tokio::test]
    async fn key_files_are_cached_then_read_again() {
        let dir = std::env::temp_dir().join(format!("semroute-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p: ProviderConfig = serde_yaml::from_str(
            "name: p\nkind: openai\nbase_url: http://127.0.0.1:1\napi_key_file: key.txt\n",
        )
        .unwrap();
        let cache = KeyCache::default();
        let e = cache.get(&p, &dir).await.unwrap_err();
        assert!(e.contains("key.txt") && e.contains("not found"), "{e}");
        std::fs::write(dir.join("key.txt"), "sk-one\n").unwrap();
        // The absence is cached too: a missing file is not read on every attempt.
        assert!(cache.get(&p, &dir).await.is_err());
        // Once stale, the file is read again.
        cache.files.lock().unwrap().clear();
        let k = cache.get(&p, &dir).await.unwrap().unwrap();
        assert_eq!(k.expose(), "sk-one");
        std::fs::write(dir.join("key.txt"), "sk-two").unwrap();
        assert_eq!(
            cache.get(&p, &dir).await.unwrap().unwrap().expose(),
            "sk-one"
        );
        for (at, _) in cache.files.lock().unwrap().values_mut() {
            *at -= KEY_FILE_TTL;
        }
        assert_eq!(
            cache.get(&p, &dir).await.unwrap().unwrap().expose(),
            "sk-two"
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
