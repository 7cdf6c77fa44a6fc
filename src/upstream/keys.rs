//! Provider API keys: read from the environment variable or file the config names, at call time. The value
//! never appears in `Debug` output, errors or logs.

use std::path::Path;

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

/// The key of provider `p` (`None` when it needs none, e.g. a local server). The error says which
/// variable or file is missing, never what it holds.
pub fn resolve(p: &ProviderConfig, base_dir: &Path) -> Result<Option<ApiKey>, String> {
    if let Some(var) = &p.api_key_env {
        return match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => Ok(Some(ApiKey(v.trim().to_string()))),
            _ => Err(format!(
                "provider `{}`: API key variable {var} is not set",
                p.name
            )),
        };
    }
    if let Some(file) = &p.api_key_file {
        let path = base_dir.join(file);
        return match std::fs::read_to_string(&path) {
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
        };
    }
    Ok(None)
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
}
