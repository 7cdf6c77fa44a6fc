//! The prompt cache: a repeated prompt skips the model.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::QueryVectors;

/// An LRU cache of prompt vectors: a repeated prompt skips the model. Its size is fixed at start-up
/// (`encoder.cache_size`), like the rest of the encoder section.
pub(super) struct PromptCache {
    entries: Option<Mutex<lru::LruCache<String, Arc<QueryVectors>>>>,
    pub(super) hits: AtomicU64,
    pub(super) misses: AtomicU64,
}

impl PromptCache {
    pub(super) fn new(size: usize) -> Self {
        Self {
            entries: std::num::NonZeroUsize::new(size).map(|n| Mutex::new(lru::LruCache::new(n))),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The cached vectors of `text`, when they include token vectors or `tokens` is false (an entry cached
    /// before a switch to `late` lacks them and counts as a miss).
    pub(super) fn get(&self, text: &str, tokens: bool) -> Option<Arc<QueryVectors>> {
        let entries = self.entries.as_ref()?;
        let hit = entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(text)
            .filter(|e| !tokens || e.late.is_some())
            .cloned();
        let counter = if hit.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        hit
    }

    pub(super) fn put(&self, text: String, v: Arc<QueryVectors>) {
        if let Some(entries) = &self.entries {
            entries
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .put(text, v);
        }
    }
}

/// Prompt-cache counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CacheStats {
    /// Prompts answered from the cache.
    pub hits: u64,
    /// Prompts that needed the model (with the cache on).
    pub misses: u64,
}
