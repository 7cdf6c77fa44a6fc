//! The routing decision. Holds the live snapshot (config + index) and swaps it atomically on rebuild, so a
//! request always completes on the snapshot it started with and reports that snapshot's version.
//!
//! [`types`] holds the domain types, [`snapshot`] the decision rule, `build` the snapshot builder,
//! `cache` the prompt cache, [`model`] model discovery and loading, `query` the input rules.

mod build;
mod cache;
pub mod model;
mod query;
pub mod snapshot;
pub mod types;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;

use crate::config::Config;
use crate::embedding::{EmbedError, Embedder};
use crate::index::LateQuery;
pub use crate::message::ChatMessage;
use crate::state::EmbeddingStore;
use build::build_snapshot;
pub use cache::CacheStats;
use cache::PromptCache;
pub use model::{model_dir, model_search_dirs, start_embedder};
use query::extract_prompt;
pub use snapshot::Snapshot;
pub use types::{Candidate, Decision, Neighbour, RouteError, RouteQuery, MAX_EVIDENCE};

/// The router: the embedder plus the live snapshot.
pub struct Router {
    embedder: Embedder,
    snapshot: ArcSwap<Snapshot>,
    next_version: AtomicU64,
    store: Mutex<EmbeddingStore>,
    cache: PromptCache,
    options: BuildOptions,
}

/// How a [`Router`] builds its snapshots, beyond what the config says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BuildOptions {
    /// Rule `late`: train the route head even when `matching.head_weight` is 0, so that calibration can
    /// try head weights on one index.
    pub always_train_head: bool,
}

/// A prompt as the decision needs it: its sentence vector and, for `aggregation: late`, its token vectors.
#[derive(Debug, Clone)]
pub struct QueryVectors {
    /// The unit sentence vector.
    pub sentence: Vec<f32>,
    /// The token vectors (only when the live rule is `late`).
    pub late: Option<LateQuery>,
}

impl Router {
    /// Builds the first snapshot from `config` (embedding every utterance) and returns a ready router whose
    /// exemplar vectors are kept in memory only. Blocking: call from a blocking context.
    pub fn build(embedder: Embedder, config: Config) -> Result<Self, RouteError> {
        let store = EmbeddingStore::in_memory(&embedder.info().identity, embedder.info().dim);
        Self::build_with_store(embedder, config, store)
    }

    /// Like [`Self::build`], with exemplar vectors looked up in and saved to `store`.
    pub fn build_with_store(
        embedder: Embedder,
        config: Config,
        store: EmbeddingStore,
    ) -> Result<Self, RouteError> {
        Self::build_with_options(embedder, config, store, BuildOptions::default())
    }

    /// Like [`Self::build_with_store`], with `options` applying to this and every later snapshot.
    pub fn build_with_options(
        embedder: Embedder,
        config: Config,
        store: EmbeddingStore,
        options: BuildOptions,
    ) -> Result<Self, RouteError> {
        let store = Mutex::new(store);
        let cache = PromptCache::new(config.encoder.cache_size);
        let snapshot = build_snapshot(&embedder, &store, config, 1, options)?;
        Ok(Self {
            embedder,
            snapshot: ArcSwap::from_pointee(snapshot),
            next_version: AtomicU64::new(2),
            store,
            cache,
            options,
        })
    }

    /// The live snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// The embedder.
    pub fn embedder(&self) -> &Embedder {
        &self.embedder
    }

    /// Prompt-cache hit and miss counts since start.
    pub fn cache_stats(&self) -> CacheStats {
        CacheStats {
            hits: self.cache.hits.load(Ordering::Relaxed),
            misses: self.cache.misses.load(Ordering::Relaxed),
        }
    }

    /// Builds a snapshot for `config` off the request path without installing it. Versions are handed out
    /// in call order, so callers that install what they prepare must serialise (the admin control plane
    /// does). Blocking.
    pub fn prepare(&self, config: Config) -> Result<Snapshot, RouteError> {
        let version = self.next_version.fetch_add(1, Ordering::SeqCst);
        build_snapshot(&self.embedder, &self.store, config, version, self.options)
    }

    /// Makes `snapshot` the live one in one atomic step. Requests already running finish on the snapshot
    /// they started with.
    pub fn install(&self, snapshot: Snapshot) -> Arc<Snapshot> {
        let snapshot = Arc::new(snapshot);
        self.snapshot.store(snapshot.clone());
        tracing::info!(version = snapshot.version, "snapshot installed");
        snapshot
    }

    /// [`Self::prepare`] then [`Self::install`]. On error the live snapshot is untouched. Blocking.
    pub fn rebuild(&self, config: Config) -> Result<Arc<Snapshot>, RouteError> {
        let snapshot = self.prepare(config)?;
        Ok(self.install(snapshot))
    }

    /// Routes one prompt.
    pub async fn route(&self, query: RouteQuery) -> Result<Decision, RouteError> {
        // Pin the snapshot first: limits and the decision come from the same version.
        let snapshot = self.snapshot.load_full();
        self.route_on(&snapshot, query).await
    }

    /// Routes one prompt on a snapshot the caller pinned, so that what it does next with the decision (the
    /// route's targets) comes from the same version.
    pub async fn route_on(
        &self,
        snapshot: &Snapshot,
        query: RouteQuery,
    ) -> Result<Decision, RouteError> {
        let prompt = extract_prompt(
            &query,
            snapshot.config.limits.max_input_bytes,
            snapshot.config.matching.context_turns,
        )?;
        let evidence_k = query
            .top_k
            .filter(|&k| k > 0)
            .unwrap_or(snapshot.config.matching.top_k)
            .min(MAX_EVIDENCE);

        let t0 = Instant::now();
        let tokens = snapshot.wants_tokens();
        let vectors = match self.cache.get(&prompt.text, tokens) {
            Some(v) => v,
            None => {
                let span = tracing::info_span!(target: "semroute::router", "embed");
                let v = if tokens {
                    let mut out = tracing::Instrument::instrument(
                        self.embedder
                            .embed_tokens_by(vec![prompt.text.clone()], query.deadline),
                        span,
                    )
                    .await?;
                    let t = out.pop().ok_or(EmbedError::Stopped)?;
                    QueryVectors {
                        late: LateQuery::from_hidden(&t.tokens, self.embedder.info().dim),
                        sentence: t.sentence,
                    }
                } else {
                    let mut out = tracing::Instrument::instrument(
                        self.embedder
                            .embed_by(vec![prompt.text.clone()], query.deadline),
                        span,
                    )
                    .await?;
                    QueryVectors {
                        sentence: out.pop().ok_or(EmbedError::Stopped)?,
                        late: None,
                    }
                };
                let v = Arc::new(v);
                self.cache.put(prompt.text.clone(), v.clone());
                v
            }
        };
        let mut embed_micros = t0.elapsed().as_micros() as u64;

        let t1 = Instant::now();
        let search = tracing::info_span!(target: "semroute::router", "search").entered();
        let mut decision =
            snapshot.decide_with(&vectors.sentence, vectors.late.as_ref(), evidence_k);
        drop(search);
        let mut search_micros = t1.elapsed().as_micros() as u64;
        // The earlier turns are embedded only when the last one cannot decide alone (most prompts can),
        // and in a conversation they were usually routed before, so the cache holds them.
        if snapshot.wants_context(&decision) && !prompt.context.is_empty() {
            let t2 = Instant::now();
            let context = self.context_vectors(prompt.context, query.deadline).await?;
            embed_micros += t2.elapsed().as_micros() as u64;
            let t3 = Instant::now();
            let search = tracing::info_span!(target: "semroute::router", "context").entered();
            decision =
                snapshot.decide_in_context(decision, &vectors.sentence, &context, evidence_k);
            drop(search);
            search_micros += t3.elapsed().as_micros() as u64;
        }
        decision.embed_micros = embed_micros;
        decision.search_micros = search_micros;
        Ok(decision)
    }

    /// Sentence vectors of a conversation's earlier turns, from the prompt cache where it holds them and
    /// from one model batch for the rest.
    async fn context_vectors(
        &self,
        turns: Vec<String>,
        deadline: Option<std::time::Instant>,
    ) -> Result<Vec<Vec<f32>>, RouteError> {
        let mut out: Vec<Option<Vec<f32>>> = turns
            .iter()
            .map(|t| self.cache.get(t, false).map(|v| v.sentence.clone()))
            .collect();
        let missing: Vec<usize> = (0..turns.len()).filter(|&i| out[i].is_none()).collect();
        if !missing.is_empty() {
            let texts: Vec<String> = missing.iter().map(|&i| turns[i].clone()).collect();
            let span = tracing::info_span!(target: "semroute::router", "embed_context");
            let vectors =
                tracing::Instrument::instrument(self.embedder.embed_by(texts, deadline), span)
                    .await?;
            for (&i, v) in missing.iter().zip(vectors) {
                self.cache.put(
                    turns[i].clone(),
                    Arc::new(QueryVectors {
                        sentence: v.clone(),
                        late: None,
                    }),
                );
                out[i] = Some(v);
            }
        }
        out.into_iter()
            .map(|v| v.ok_or(RouteError::Embed(EmbedError::Stopped)))
            .collect()
    }
}
