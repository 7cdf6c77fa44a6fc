//! The exemplar embedding store: vectors keyed by (model identity, text), persisted under the data
//! directory, so a rebuild or restart with unchanged routes embeds nothing and a changed route embeds only
//! its new utterances.
//!
//! File format (little endian): magic `SREMB001`, identity length (u32) + identity bytes, dim (u32), count
//! (u64), then per entry: text length (u32), text bytes, `dim` f32s. One file per model identity; a file for
//! another identity, or a damaged one, is ignored (the vectors are recomputed), never trusted.
//!
//! Token vectors (`aggregation: late` only) go to a second file, `tokens-<identity>.bin`, so the vector
//! file keeps its format: magic `SRTOK001`, identity length + bytes, dim (u32), count (u64), then per entry:
//! text length (u32), text bytes, token count `n` (u32), `n` f32 scales, `n x dim` int8 codes (the
//! [`TokenRows`] form, a quarter of F32). The same rules apply: foreign or damaged means recompute.

use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::index::TokenRows;
use crate::state::write_atomically;

const MAGIC: &[u8; 8] = b"SREMB001";
const TOKENS_MAGIC: &[u8; 8] = b"SRTOK001";
/// More tokens than any encoder keeps per text; a larger count marks a damaged file.
const MAX_TOKENS_PER_TEXT: usize = 1 << 16;
/// Stored vectors beyond this many are pruned to the ones the current routes use.
const MAX_ENTRIES: usize = 500_000;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Reading or writing the file failed.
    #[error("embedding store {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Embeddings of exemplar texts for one model identity.
pub struct EmbeddingStore {
    identity: String,
    dim: usize,
    vectors: HashMap<String, Vec<f32>>,
    path: Option<PathBuf>,
    dirty: bool,
    tokens: HashMap<String, TokenRows>,
    tokens_path: Option<PathBuf>,
    tokens_dirty: bool,
}

impl EmbeddingStore {
    /// An empty store that never touches disk.
    pub fn in_memory(identity: &str, dim: usize) -> Self {
        Self {
            identity: identity.to_string(),
            dim,
            vectors: HashMap::new(),
            path: None,
            dirty: false,
            tokens: HashMap::new(),
            tokens_path: None,
            tokens_dirty: false,
        }
    }

    /// Opens the store for `identity` under `data_dir`, loading what a previous run saved. A missing,
    /// foreign or damaged file yields an empty store (logged), since every vector can be recomputed.
    pub fn open(data_dir: &Path, identity: &str, dim: usize) -> Self {
        let path = data_dir.join(format!("embeddings-{identity}.bin"));
        let mut store = Self::in_memory(identity, dim);
        store.path = Some(path.clone());
        let tokens_path = data_dir.join(format!("tokens-{identity}.bin"));
        store.tokens_path = Some(tokens_path.clone());
        match std::fs::File::open(&tokens_path) {
            Ok(f) => match read_tokens(&mut BufReader::new(f), identity, dim) {
                Ok(t) => {
                    tracing::info!(path = %tokens_path.display(), texts = t.len(), "token store loaded");
                    store.tokens = t;
                }
                Err(e) => {
                    tracing::warn!(path = %tokens_path.display(), error = %e, "token store unreadable; starting empty");
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %tokens_path.display(), error = %e, "cannot open token store")
            }
        }
        match std::fs::File::open(&path) {
            Ok(f) => match read_entries(&mut BufReader::new(f), identity, dim) {
                Ok(v) => {
                    tracing::info!(path = %path.display(), vectors = v.len(), "embedding store loaded");
                    store.vectors = v;
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "embedding store unreadable; starting empty");
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot open embedding store")
            }
        }
        store
    }

    /// Number of stored vectors.
    pub fn len(&self) -> usize {
        self.vectors.len()
    }

    /// True when no vectors are stored.
    pub fn is_empty(&self) -> bool {
        self.vectors.is_empty()
    }

    /// The stored vector for `text`.
    pub fn get(&self, text: &str) -> Option<&Vec<f32>> {
        self.vectors.get(text)
    }

    /// Stores a vector.
    pub fn insert(&mut self, text: String, vector: Vec<f32>) {
        debug_assert_eq!(vector.len(), self.dim);
        self.vectors.insert(text, vector);
        self.dirty = true;
    }

    /// The stored token vectors for `text`.
    pub fn get_tokens(&self, text: &str) -> Option<&TokenRows> {
        self.tokens.get(text)
    }

    /// Stores a text's token vectors.
    pub fn insert_tokens(&mut self, text: String, tokens: TokenRows) {
        debug_assert_eq!(tokens.dim(), self.dim);
        self.tokens.insert(text, tokens);
        self.tokens_dirty = true;
    }

    /// Keeps the store bounded: past [`MAX_ENTRIES`], forget vectors (and token vectors) that `in_use`
    /// does not name.
    pub fn prune_unless_used(&mut self, in_use: &dyn Fn(&str) -> bool) {
        if self.vectors.len() > MAX_ENTRIES {
            self.vectors.retain(|t, _| in_use(t));
            self.dirty = true;
        }
        if self.tokens.len() > MAX_ENTRIES {
            self.tokens.retain(|t, _| in_use(t));
            self.tokens_dirty = true;
        }
    }

    /// Writes the store if it changed (atomically: temp file, fsync, rename).
    pub fn save(&mut self) -> Result<(), StoreError> {
        self.save_vectors()?;
        self.save_tokens()
    }

    fn save_tokens(&mut self) -> Result<(), StoreError> {
        let Some(path) = self.tokens_path.clone() else {
            return Ok(());
        };
        if !self.tokens_dirty {
            return Ok(());
        }
        write_atomically(&path, |w| {
            let mut w = BufWriter::new(w);
            w.write_all(TOKENS_MAGIC)?;
            w.write_all(&(self.identity.len() as u32).to_le_bytes())?;
            w.write_all(self.identity.as_bytes())?;
            w.write_all(&(self.dim as u32).to_le_bytes())?;
            w.write_all(&(self.tokens.len() as u64).to_le_bytes())?;
            for (text, t) in &self.tokens {
                w.write_all(&(text.len() as u32).to_le_bytes())?;
                w.write_all(text.as_bytes())?;
                w.write_all(&(t.len() as u32).to_le_bytes())?;
                for s in t.scales() {
                    w.write_all(&s.to_le_bytes())?;
                }
                let codes: Vec<u8> = t.codes().iter().map(|&c| c as u8).collect();
                w.write_all(&codes)?;
            }
            w.flush()
        })
        .map_err(|source| StoreError::Io { path, source })?;
        self.tokens_dirty = false;
        Ok(())
    }

    fn save_vectors(&mut self) -> Result<(), StoreError> {
        let Some(path) = self.path.clone() else {
            return Ok(());
        };
        if !self.dirty {
            return Ok(());
        }
        let io = |source| StoreError::Io {
            path: path.clone(),
            source,
        };
        write_atomically(&path, |w| {
            let mut w = BufWriter::new(w);
            w.write_all(MAGIC)?;
            w.write_all(&(self.identity.len() as u32).to_le_bytes())?;
            w.write_all(self.identity.as_bytes())?;
            w.write_all(&(self.dim as u32).to_le_bytes())?;
            w.write_all(&(self.vectors.len() as u64).to_le_bytes())?;
            for (text, v) in &self.vectors {
                w.write_all(&(text.len() as u32).to_le_bytes())?;
                w.write_all(text.as_bytes())?;
                for x in v {
                    w.write_all(&x.to_le_bytes())?;
                }
            }
            w.flush()
        })
        .map_err(io)?;
        self.dirty = false;
        Ok(())
    }
}

fn read_u32(r: &mut impl Read) -> std::io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn invalid(msg: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.to_string())
}

/// Reads the magic, identity and dimension of a store file; returns the entry count.
fn read_header(
    r: &mut impl Read,
    magic: &[u8; 8],
    identity: &str,
    dim: usize,
) -> std::io::Result<u64> {
    let mut m = [0u8; 8];
    r.read_exact(&mut m)?;
    if &m != magic {
        return Err(invalid("not a store file of this kind"));
    }
    let id_len = read_u32(r)? as usize;
    if id_len > 1024 {
        return Err(invalid("identity too long"));
    }
    let mut id = vec![0u8; id_len];
    r.read_exact(&mut id)?;
    if id != identity.as_bytes() {
        return Err(invalid("written for another model identity"));
    }
    if read_u32(r)? as usize != dim {
        return Err(invalid("dimension differs"));
    }
    let mut count = [0u8; 8];
    r.read_exact(&mut count)?;
    Ok(u64::from_le_bytes(count))
}

fn read_text(r: &mut impl Read) -> std::io::Result<String> {
    let len = read_u32(r)? as usize;
    if len > 16 * 1024 * 1024 {
        return Err(invalid("text length out of range"));
    }
    let mut t = vec![0u8; len];
    r.read_exact(&mut t)?;
    String::from_utf8(t).map_err(|_| invalid("text is not UTF-8"))
}

fn read_tokens(
    r: &mut impl Read,
    identity: &str,
    dim: usize,
) -> std::io::Result<HashMap<String, TokenRows>> {
    let count = read_header(r, TOKENS_MAGIC, identity, dim)?;
    let mut out = HashMap::new();
    for _ in 0..count {
        let text = read_text(r)?;
        let n = read_u32(r)? as usize;
        if n > MAX_TOKENS_PER_TEXT {
            return Err(invalid("token count out of range"));
        }
        let mut buf = vec![0u8; n * 4];
        r.read_exact(&mut buf)?;
        let scales: Vec<f32> = buf
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if scales.iter().any(|s| !s.is_finite()) {
            return Err(invalid("token scale is not finite"));
        }
        let mut codes = vec![0u8; n * dim];
        r.read_exact(&mut codes)?;
        let codes = codes.into_iter().map(|c| c as i8).collect();
        let rows = TokenRows::from_parts(dim, codes, scales)
            .ok_or_else(|| invalid("token rows do not match the dimension"))?;
        out.insert(text, rows);
    }
    Ok(out)
}

fn read_entries(
    r: &mut impl Read,
    identity: &str,
    dim: usize,
) -> std::io::Result<HashMap<String, Vec<f32>>> {
    let count = read_header(r, MAGIC, identity, dim)?;
    let mut out = HashMap::new();
    let mut buf = vec![0u8; dim * 4];
    for _ in 0..count {
        let text = read_text(r)?;
        r.read_exact(&mut buf)?;
        let v = buf
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        out.insert(text, v);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_other_identities() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = EmbeddingStore::open(dir.path(), "abc", 3);
        assert!(s.is_empty());
        s.insert("hello".into(), vec![1.0, 2.0, 3.0]);
        s.insert("wörld".into(), vec![-1.0, 0.5, 0.25]);
        s.save().unwrap();
        let again = EmbeddingStore::open(dir.path(), "abc", 3);
        assert_eq!(again.len(), 2);
        assert_eq!(again.get("wörld"), Some(&vec![-1.0, 0.5, 0.25]));
        // Another identity uses another file and starts empty.
        assert!(EmbeddingStore::open(dir.path(), "xyz", 3).is_empty());
    }

    #[test]
    fn token_vectors_round_trip_in_their_own_file() {
        let dir = tempfile::tempdir().unwrap();
        let hidden = vec![
            vec![1.0, 1.0, 1.0],
            vec![0.3, -0.4, 0.0],
            vec![0.0, 2.0, 1.0],
            vec![1.0, 1.0, 1.0],
        ];
        let rows = TokenRows::from_hidden(&hidden, 3);
        assert_eq!(rows.len(), 2);
        let mut s = EmbeddingStore::open(dir.path(), "abc", 3);
        s.insert("hello".into(), vec![1.0, 2.0, 3.0]);
        s.insert_tokens("hello".into(), rows.clone());
        s.save().unwrap();
        let again = EmbeddingStore::open(dir.path(), "abc", 3);
        assert_eq!(again.get_tokens("hello"), Some(&rows));
        assert_eq!(again.get("hello"), Some(&vec![1.0, 2.0, 3.0]));
        // A damaged token file is ignored without losing the vectors.
        let path = dir.path().join("tokens-abc.bin");
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        let damaged = EmbeddingStore::open(dir.path(), "abc", 3);
        assert!(damaged.get_tokens("hello").is_none());
        assert_eq!(damaged.len(), 1);
    }

    #[test]
    fn damaged_file_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = EmbeddingStore::open(dir.path(), "abc", 2);
        s.insert("a".into(), vec![1.0, 2.0]);
        s.save().unwrap();
        let path = dir.path().join("embeddings-abc.bin");
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        assert!(EmbeddingStore::open(dir.path(), "abc", 2).is_empty());
    }
}
