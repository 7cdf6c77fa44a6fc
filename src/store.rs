//! The exemplar embedding store: vectors keyed by (model identity, text), persisted under the data
//! directory, so a rebuild or restart with unchanged routes embeds nothing and a changed route embeds only
//! its new utterances.
//!
//! File format (little endian): magic `SREMB001`, identity length (u32) + identity bytes, dim (u32), count
//! (u64), then per entry: text length (u32), text bytes, `dim` f32s. One file per model identity; a file for
//! another identity, or a damaged one, is ignored (the vectors are recomputed), never trusted.

use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::persist::write_atomically;

const MAGIC: &[u8; 8] = b"SREMB001";
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
        }
    }

    /// Opens the store for `identity` under `data_dir`, loading what a previous run saved. A missing,
    /// foreign or damaged file yields an empty store (logged), since every vector can be recomputed.
    pub fn open(data_dir: &Path, identity: &str, dim: usize) -> Self {
        let path = data_dir.join(format!("embeddings-{identity}.bin"));
        let mut store = Self::in_memory(identity, dim);
        store.path = Some(path.clone());
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

    /// Keeps the store bounded: past [`MAX_ENTRIES`], forget vectors that `in_use` does not name.
    pub fn prune_unless_used(&mut self, in_use: &dyn Fn(&str) -> bool) {
        if self.vectors.len() > MAX_ENTRIES {
            self.vectors.retain(|t, _| in_use(t));
            self.dirty = true;
        }
    }

    /// Writes the store if it changed (atomically: temp file, fsync, rename).
    pub fn save(&mut self) -> Result<(), StoreError> {
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

fn read_entries(
    r: &mut impl Read,
    identity: &str,
    dim: usize,
) -> std::io::Result<HashMap<String, Vec<f32>>> {
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(invalid("not an embedding store"));
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
    let count = u64::from_le_bytes(count);
    let mut out = HashMap::new();
    let mut buf = vec![0u8; dim * 4];
    for _ in 0..count {
        let len = read_u32(r)? as usize;
        if len > 16 * 1024 * 1024 {
            return Err(invalid("text length out of range"));
        }
        let mut t = vec![0u8; len];
        r.read_exact(&mut t)?;
        let text = String::from_utf8(t).map_err(|_| invalid("text is not UTF-8"))?;
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
