//! Client keys: the keys file, how keys are made and hashed, and the ring the server looks them up in.
//!
//! A key is `sr_` followed by 40 random base62 characters (about 238 bits from the OS's random source).
//! Only its SHA-256 is stored. A fast hash is right here: keys are long random strings, so there is no
//! dictionary to slow down, unlike passwords. The file also holds each key's tenant, attributes, allowed
//! routes and models, limits and expiry, and the tenants' own limits.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What every key starts with, so a leaked one is recognisable (secret scanners, log review).
pub const KEY_PREFIX: &str = "sr_";
const KEY_RANDOM_CHARS: usize = 40;
const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Errors reading or changing the keys file.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// The file could not be read or written.
    #[error("keys file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a valid keys file.
    #[error("keys file {path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong, with its line and column where known.
        message: String,
    },
    /// No key has this name.
    #[error("no key is named `{0}`")]
    UnknownKey(String),
    /// The OS's random source failed.
    #[error("the OS random source failed: {0}")]
    Random(String),
    /// A new key's name is taken.
    #[error("a key named `{0}` exists: rotate it, or choose another name")]
    Exists(String),
    /// A new key's name is not usable.
    #[error("{0}")]
    BadName(String),
    /// A rotation's grace period is out of range.
    #[error("the grace period of {0} s is too long")]
    BadGrace(u64),
    /// The server runs without a keys file, so there is nothing to change.
    #[error(
        "this server runs without client keys: start it with `serve --keys <file>` to manage keys"
    )]
    NotConfigured,
}

/// How long a rotated-out key keeps working unless told otherwise (a day: long enough to roll out the new
/// key to every replica of a caller).
pub const DEFAULT_GRACE_SECS: u64 = 86_400;

/// What a new key carries: everything of its entry but the secret and its hash.
#[derive(Debug, Clone, Default)]
pub struct KeySpec {
    /// A unique name; `@` is reserved for rotated-out keys.
    pub name: String,
    /// The tenant whose limits it also counts against.
    pub tenant: Option<String>,
    /// Free-form attributes.
    pub attributes: BTreeMap<String, String>,
    /// Routes it may use (empty: all).
    pub routes: Vec<String>,
    /// Models it may be served by (empty: all).
    pub models: Vec<String>,
    /// Its limits.
    pub limits: Limits,
    /// When it stops working (RFC 3339).
    pub expires_at: Option<String>,
}

/// A key just made: its entry, and the secret, which exists only here (the file keeps its hash).
pub struct IssuedKey {
    /// The entry as the file now holds it.
    pub entry: KeyEntry,
    /// The key itself, to hand to the caller once.
    pub secret: String,
}

impl std::fmt::Debug for IssuedKey {
    /// The secret never reaches a log line, however the value is printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedKey")
            .field("entry", &self.entry)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Limits of a key or a tenant. Absent: unlimited.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Requests per minute (a sliding 60-second window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u32>,
    /// Tokens per minute, input + output: reserved from an estimate when a completion starts, settled from
    /// the provider's reported usage when it ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
    /// Requests in flight at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// USD per UTC day, from the models' prices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_usd: Option<f64>,
    /// USD per UTC calendar month.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly_usd: Option<f64>,
}

/// One key as the file stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// A unique name (a service, a team member).
    pub name: String,
    /// `sha256:<hex>` of the whole key.
    pub hash: String,
    /// The key's first characters (`sr_` and 6 more), to recognise it in lists; not enough to use it.
    pub hint: String,
    /// The tenant (team, customer) whose limits it also counts against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Free-form attributes (`tier: free`, `region: eu`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    /// Routes it may use (by `model` = route name, or by semantic routing). Empty: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<String>,
    /// Models it may be served by. Empty: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    /// Its limits.
    #[serde(default, skip_serializing_if = "is_default")]
    pub limits: Limits,
    /// When it stops working (RFC 3339, e.g. `2027-01-01T00:00:00Z`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Revoked keys are refused at once.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub revoked: bool,
}

fn is_default(l: &Limits) -> bool {
    *l == Limits::default()
}

/// The keys file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysFile {
    /// Refuse calls without a valid key (default `true`: a keys file means keys are wanted).
    #[serde(default = "yes")]
    pub required: bool,
    /// Tenants' limits, by tenant name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tenants: BTreeMap<String, Limits>,
    /// The keys.
    #[serde(default)]
    pub keys: Vec<KeyEntry>,
}

fn yes() -> bool {
    true
}

impl KeysFile {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, KeysError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeysError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and validates a keys file's text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, KeysError> {
        let invalid = |message: String| KeysError::Invalid {
            path: origin.to_string(),
            message,
        };
        let file: KeysFile = if text.trim().is_empty() {
            KeysFile {
                required: true,
                ..Default::default()
            }
        } else {
            serde_yaml::from_str(text).map_err(|e| invalid(e.to_string()))?
        };
        let mut names = std::collections::HashSet::new();
        for (i, k) in file.keys.iter().enumerate() {
            let at = format!("keys[{i}] (`{}`)", k.name);
            if k.name.trim().is_empty() {
                return Err(invalid(format!("keys[{i}].name is empty")));
            }
            if !names.insert(k.name.as_str()) {
                return Err(invalid(format!("{at}: the name is used twice")));
            }
            if parse_hash(&k.hash).is_none() {
                return Err(invalid(format!(
                    "{at}.hash: expected `sha256:` and 64 hex digits (`semroute keys create` writes it)"
                )));
            }
            if let Some(e) = &k.expires_at {
                if e.parse::<jiff::Timestamp>().is_err() {
                    return Err(invalid(format!(
                        "{at}.expires_at: `{e}` is not an RFC 3339 time such as 2027-01-01T00:00:00Z"
                    )));
                }
            }
            if let Some(t) = &k.tenant {
                if t.trim().is_empty() {
                    return Err(invalid(format!("{at}.tenant is empty")));
                }
            }
            check_limits(&k.limits).map_err(|m| invalid(format!("{at}.limits.{m}")))?;
        }
        for (name, l) in &file.tenants {
            check_limits(l).map_err(|m| invalid(format!("tenants.{name}.{m}")))?;
        }
        Ok(file)
    }

    /// Reads `path`, or starts an empty file (keys required) when it does not exist yet.
    pub fn load_or_new(path: &Path) -> Result<Self, KeysError> {
        if path.exists() {
            return Self::load(path);
        }
        Ok(KeysFile {
            required: true,
            ..Default::default()
        })
    }

    /// Adds a key made from `spec` and returns it with its secret.
    pub fn create(&mut self, spec: KeySpec) -> Result<IssuedKey, KeysError> {
        if spec.name.contains('@') {
            return Err(KeysError::BadName(
                "a key's name cannot contain `@` (rotation uses it)".into(),
            ));
        }
        if spec.name.trim().is_empty() {
            return Err(KeysError::BadName("a key needs a name".into()));
        }
        if self.keys.iter().any(|k| k.name == spec.name) {
            return Err(KeysError::Exists(spec.name));
        }
        let (mut entry, secret) = new_entry(&spec.name)?;
        entry.tenant = spec.tenant;
        entry.attributes = spec.attributes;
        entry.routes = spec.routes;
        entry.models = spec.models;
        entry.limits = spec.limits;
        entry.expires_at = spec.expires_at;
        self.keys.push(entry.clone());
        Ok(IssuedKey { entry, secret })
    }

    /// Revokes the key `name` and, when it is a current key, the rotated-out keys it replaced (`name@…`,
    /// still in their grace period): revoking a key means no secret it ever had works any more. Returns the
    /// names revoked.
    pub fn revoke(&mut self, name: &str) -> Result<Vec<String>, KeysError> {
        if !self.keys.iter().any(|k| k.name == name) {
            return Err(KeysError::UnknownKey(name.to_string()));
        }
        let predecessor = |n: &str| n.split_once('@').is_some_and(|(base, _)| base == name);
        let mut revoked = Vec::new();
        for k in &mut self.keys {
            if k.name == name || predecessor(&k.name) {
                k.revoked = true;
                revoked.push(k.name.clone());
            }
        }
        Ok(revoked)
    }

    /// Issues a new secret for `name`; the old one keeps the key's rights and limits, under the name
    /// `name@<hint>`, for `grace_secs` (or until its own expiry, if sooner). Returns the new key and when the
    /// old one stops working.
    pub fn rotate(
        &mut self,
        name: &str,
        grace_secs: u64,
    ) -> Result<(IssuedKey, jiff::Timestamp), KeysError> {
        let i = self
            .keys
            .iter()
            .position(|k| k.name == name)
            .ok_or_else(|| KeysError::UnknownKey(name.to_string()))?;
        let until = i64::try_from(grace_secs)
            .ok()
            .and_then(|s| {
                jiff::Timestamp::now()
                    .checked_add(jiff::SignedDuration::from_secs(s))
                    .ok()
            })
            .ok_or(KeysError::BadGrace(grace_secs))?;
        let (fresh, secret) = new_entry(name)?;
        let mut old = self.keys[i].clone();
        old.name = format!("{name}@{}", old.hint);
        let own_expiry = old
            .expires_at
            .as_deref()
            .and_then(|e| e.parse::<jiff::Timestamp>().ok());
        let old_until = match own_expiry {
            Some(e) if e < until => e,
            _ => until,
        };
        old.expires_at = Some(old_until.to_string());
        let current = &mut self.keys[i];
        current.hash = fresh.hash;
        current.hint = fresh.hint;
        current.revoked = false;
        let entry = current.clone();
        // A second rotation within the grace period replaces the first one's leftover of the same hint.
        self.keys.retain(|k| k.name != old.name);
        self.keys.push(old);
        Ok((IssuedKey { entry, secret }, old_until))
    }

    /// Validates the file as the server will read it, then writes it atomically.
    pub fn save_checked(&self, path: &Path) -> Result<(), KeysError> {
        let text = serde_yaml::to_string(self).map_err(|e| KeysError::Invalid {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::parse(&text, &path.display().to_string())?;
        self.save(path)
    }

    /// Writes the file atomically (a reader sees the old file or the new one).
    pub fn save(&self, path: &Path) -> Result<(), KeysError> {
        let text = serde_yaml::to_string(self).map_err(|e| KeysError::Invalid {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        crate::state::write_atomically(path, |f| {
            use std::io::Write;
            f.write_all(b"# semroute client keys: hashes only. Manage with `semroute keys`.\n")?;
            f.write_all(text.as_bytes())
        })
        .map_err(|source| KeysError::Io {
            path: path.display().to_string(),
            source,
        })
    }
}

fn check_limits(l: &Limits) -> Result<(), String> {
    if l.rpm == Some(0) || l.tpm == Some(0) || l.concurrency == Some(0) {
        return Err(
            "rpm, tpm and concurrency must be at least 1 (leave them out for no limit)".into(),
        );
    }
    for (name, v) in [("daily_usd", l.daily_usd), ("monthly_usd", l.monthly_usd)] {
        if v.is_some_and(|v| !v.is_finite() || v < 0.0) {
            return Err(format!("{name} must be a non-negative number"));
        }
    }
    Ok(())
}

fn parse_hash(s: &str) -> Option<[u8; 32]> {
    let hex = s.strip_prefix("sha256:")?;
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// `sha256:<hex>` of `key`, as the file stores it.
pub fn hash(key: &str) -> String {
    let hex: String = digest(key).iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// A new random key.
pub fn generate() -> Result<String, KeysError> {
    let mut key = String::from(KEY_PREFIX);
    let mut buf = [0u8; 64];
    while key.len() < KEY_PREFIX.len() + KEY_RANDOM_CHARS {
        getrandom::fill(&mut buf).map_err(|e| KeysError::Random(e.to_string()))?;
        // Rejection sampling keeps every character equally likely (256 is not a multiple of 62).
        for b in buf {
            if b < 248 && key.len() < KEY_PREFIX.len() + KEY_RANDOM_CHARS {
                key.push(BASE62[usize::from(b % 62)] as char);
            }
        }
    }
    Ok(key)
}

/// A new key entry named `name`, and the key itself (shown once, never stored).
pub fn new_entry(name: &str) -> Result<(KeyEntry, String), KeysError> {
    let key = generate()?;
    let entry = KeyEntry {
        name: name.to_string(),
        hash: hash(&key),
        hint: key.chars().take(KEY_PREFIX.len() + 6).collect(),
        tenant: None,
        attributes: BTreeMap::new(),
        routes: Vec::new(),
        models: Vec::new(),
        limits: Limits::default(),
        expires_at: None,
        revoked: false,
    };
    Ok((entry, key))
}

/// Reads the keys file at `path` (or starts one), applies `change`, validates the result and writes it
/// atomically: the one way keys are changed, by `semroute keys` on the file and by the Admin API on the
/// server's file. Blocking file I/O: async callers run it off their workers.
pub fn edit_file<T>(
    path: &Path,
    change: impl FnOnce(&mut KeysFile) -> Result<T, KeysError>,
) -> Result<T, KeysError> {
    let mut file = KeysFile::load_or_new(path)?;
    let out = change(&mut file)?;
    file.save_checked(path)?;
    Ok(out)
}

/// A key the server knows, as the gateway sees it.
#[derive(Debug)]
pub struct ClientKey {
    /// Its entry in the file.
    pub entry: KeyEntry,
    /// Its expiry, parsed.
    pub expires_at: Option<jiff::Timestamp>,
}

/// The keys in force: looked up by hash.
#[derive(Debug, Default)]
pub struct KeyRing {
    /// Whether calls without a key are refused. `false` with no file: the service runs open.
    pub required: bool,
    /// Whether a keys file is in force at all.
    pub configured: bool,
    by_hash: HashMap<[u8; 32], Arc<ClientKey>>,
    /// Tenants' limits.
    pub tenants: BTreeMap<String, Limits>,
}

impl KeyRing {
    /// The ring of a keys file.
    pub fn from_file(file: KeysFile) -> Self {
        let by_hash = file
            .keys
            .into_iter()
            .filter_map(|entry| {
                let h = parse_hash(&entry.hash)?;
                let expires_at = entry.expires_at.as_deref().and_then(|e| e.parse().ok());
                Some((h, Arc::new(ClientKey { entry, expires_at })))
            })
            .collect();
        Self {
            required: file.required,
            configured: true,
            by_hash,
            tenants: file.tenants,
        }
    }

    /// The key whose hash matches `presented`. Looking up by hash means the comparison never touches the
    /// secret byte by byte.
    pub fn find(&self, presented: &str) -> Option<&Arc<ClientKey>> {
        self.by_hash.get(&digest(presented))
    }

    /// How many keys it holds.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_prefixed_and_found_by_hash_only() {
        let (entry, key) = new_entry("svc").unwrap();
        assert!(key.starts_with(KEY_PREFIX) && key.len() == KEY_PREFIX.len() + KEY_RANDOM_CHARS);
        assert!(key[3..].bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(generate().unwrap(), key);
        assert!(!entry.hash.contains(&key[3..]));
        let file = KeysFile {
            required: true,
            keys: vec![entry],
            ..Default::default()
        };
        let text = serde_yaml::to_string(&file).unwrap();
        assert!(!text.contains(&key[3..]), "the file never holds the key");
        let ring = KeyRing::from_file(KeysFile::parse(&text, "t").unwrap());
        assert_eq!(ring.find(&key).unwrap().entry.name, "svc");
        assert!(ring.find("sr_wrong").is_none());
    }

    #[test]
    fn rotation_keeps_the_old_secret_for_its_grace_and_revocation_ends_both() {
        let spec = |name: &str| KeySpec {
            name: name.into(),
            ..Default::default()
        };
        let mut f = KeysFile {
            required: true,
            ..Default::default()
        };
        let first = f.create(spec("svc")).unwrap();
        assert!(matches!(f.create(spec("svc")), Err(KeysError::Exists(_))));
        assert!(matches!(f.create(spec("a@b")), Err(KeysError::BadName(_))));
        assert!(!format!("{first:?}").contains(&first.secret[3..]));
        let (second, until) = f.rotate("svc", 60).unwrap();
        assert_ne!(first.secret, second.secret);
        let ring = KeyRing::from_file(f.clone());
        let old = ring.find(&first.secret).unwrap();
        assert!(old.entry.name.starts_with("svc@sr_"));
        assert_eq!(old.expires_at, Some(until));
        assert_eq!(ring.find(&second.secret).unwrap().entry.name, "svc");
        assert!(matches!(
            f.rotate("svc", u64::MAX),
            Err(KeysError::BadGrace(_))
        ));
        let mut revoked = f.revoke("svc").unwrap();
        revoked.sort();
        assert_eq!(revoked.len(), 2, "{revoked:?}");
        assert!(f.keys.iter().all(|k| k.revoked));
        assert!(matches!(f.revoke("nobody"), Err(KeysError::UnknownKey(_))));
    }

    #[test]
    fn bad_files_name_the_field() {
        let e = KeysFile::parse("keys:\n  - {name: a, hash: nope, hint: x}\n", "k.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("keys[0]") && e.contains("hash"), "{e}");
        let e = KeysFile::parse("keys: []\ncolour: red\n", "k.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("colour") && e.contains("line 2"), "{e}");
        let h = hash("sr_x");
        let e = KeysFile::parse(
            &format!("keys:\n  - {{name: a, hash: '{h}', hint: x, limits: {{rpm: 0}}}}\n"),
            "k.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("limits.rpm"), "{e}");
    }
}
