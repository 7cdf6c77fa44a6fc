//! The routing decision. Holds the live snapshot (config + index) and swaps it atomically on rebuild, so a
//! request always completes on the snapshot it started with and reports that snapshot's version.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use serde::Serialize;

use crate::config::Aggregation;
use crate::config::{Config, LoadedConfig};
use crate::embedding::{resolve_model_dir, DeviceSpec, EmbedError, Embedder, SentenceEncoder};
use crate::index::{
    decision_score, negative_penalised, Exemplar, HeadTraining, IndexError, LateQuery, RouteIndex,
    Scoring, TokenRows,
};
use crate::store::EmbeddingStore;

/// Most neighbours a caller may ask for as evidence.
pub const MAX_EVIDENCE: usize = 100;

/// Errors of the routing layer.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// The request is malformed (blank text, too long, no user turn, ...).
    #[error("{0}")]
    InvalidInput(String),
    /// The embedding layer failed or is overloaded.
    #[error(transparent)]
    Embed(#[from] EmbedError),
    /// The index could not be built.
    #[error(transparent)]
    Index(#[from] IndexError),
}

/// One chat turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    /// `user`, `assistant`, `system`, `tool`.
    pub role: String,
    /// The text.
    pub content: String,
}

/// What to route: plain text or a conversation.
#[derive(Debug, Clone, Default)]
pub struct RouteQuery {
    /// The prompt; mutually exclusive with `messages`.
    pub text: String,
    /// A conversation; its last user turn is routed.
    pub messages: Vec<ChatMessage>,
    /// Neighbours to return as evidence (default: `matching.top_k`).
    pub top_k: Option<usize>,
}

/// A route and its aggregated score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    /// Route name.
    pub route: String,
    /// Aggregated score.
    pub score: f32,
}

/// An exemplar near the prompt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Neighbour {
    /// The exemplar's route.
    pub route: String,
    /// The exemplar's text.
    pub utterance: String,
    /// Cosine similarity to the prompt.
    pub similarity: f32,
}

/// The decision for one prompt, with its evidence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// The chosen route; `None` when nothing cleared its threshold and there is no default route.
    pub route: Option<String>,
    /// The best candidate's score.
    pub score: f32,
    /// Whether the best candidate cleared its threshold (false when the default route was used).
    pub matched: bool,
    /// Route scores, best first.
    pub candidates: Vec<Candidate>,
    /// Nearest exemplars, most similar first.
    pub neighbours: Vec<Neighbour>,
    /// The snapshot version that decided.
    pub index_version: u64,
    /// Microseconds spent embedding (queueing included).
    pub embed_micros: u64,
    /// Microseconds spent searching and aggregating.
    pub search_micros: u64,
}

/// An immutable routing state: a validated config and the index built from it.
pub struct Snapshot {
    /// The configuration.
    pub config: Arc<Config>,
    /// The exemplar index.
    pub index: RouteIndex,
    /// Monotonic version, reported with every decision.
    pub version: u64,
    /// When the snapshot was built.
    pub built_at: SystemTime,
    /// How long the build took.
    pub build_duration: Duration,
    /// Utterances that had to be embedded by this build (the rest came from the embedding store).
    pub embedded: usize,
}

impl Snapshot {
    /// Decides for a prompt already embedded as `query` (a unit vector). With `aggregation: late` this
    /// falls back to the centroid rule: use [`Self::decide_with`] and the prompt's token vectors.
    pub fn decide(&self, query: &[f32], evidence_k: usize) -> Decision {
        self.decide_with(query, None, evidence_k)
    }

    /// True when this snapshot's rule scores with the prompt's token vectors (`aggregation: late`).
    pub fn wants_tokens(&self) -> bool {
        self.config.matching.aggregation == Aggregation::Late && self.index.late().is_some()
    }

    /// Decides for a prompt embedded as `query` (a unit vector) and, for `aggregation: late`, `late` (its
    /// token vectors).
    pub fn decide_with(
        &self,
        query: &[f32],
        late: Option<&LateQuery>,
        evidence_k: usize,
    ) -> Decision {
        let m = &self.config.matching;
        let k = m.top_k.max(evidence_k);
        let hits = self.index.search(query, k);
        let agg_hits = &hits[..hits.len().min(m.top_k)];
        let scores = self
            .index
            .route_scores_with(query, late, agg_hits, Scoring::from_config(m));
        let names = self.index.routes();

        let (best_score, matched, best_name) = match scores.first() {
            Some(&(r, s)) => {
                let route_cfg = &self.config.routes[r];
                let d = decision_score(&scores, m.margin_weight).unwrap_or(s);
                // No scan when calibration chose no penalty (weight 0) for a config with negatives.
                let d = if m.negative_weight > 0.0 {
                    let negatives = self
                        .index
                        .negative_similarities(query, m.negative_neighbours);
                    negative_penalised(d, &negatives, m.negative_weight, m.negative_neighbours)
                } else {
                    d
                };
                (
                    s,
                    d >= self.config.threshold_for(route_cfg),
                    Some(&names[r]),
                )
            }
            None => (0.0, false, None),
        };
        let route = if matched {
            best_name.cloned()
        } else {
            self.config.default_route.clone()
        };
        Decision {
            route,
            score: best_score,
            matched,
            candidates: scores
                .iter()
                .take(evidence_k)
                .map(|&(r, score)| Candidate {
                    route: names[r].clone(),
                    score,
                })
                .collect(),
            neighbours: hits
                .iter()
                .take(evidence_k)
                .map(|h| Neighbour {
                    route: names[self.index.exemplar_route(h.id)].clone(),
                    utterance: self.index.exemplar_text(h.id).to_string(),
                    similarity: h.similarity,
                })
                .collect(),
            index_version: self.version,
            embed_micros: 0,
            search_micros: 0,
        }
    }
}

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

/// An LRU cache of prompt vectors: a repeated prompt skips the model. Its size is fixed at start-up
/// (`encoder.cache_size`), like the rest of the encoder section.
struct PromptCache {
    entries: Option<Mutex<lru::LruCache<String, Arc<QueryVectors>>>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl PromptCache {
    fn new(size: usize) -> Self {
        Self {
            entries: std::num::NonZeroUsize::new(size).map(|n| Mutex::new(lru::LruCache::new(n))),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The cached vectors of `text`, when they include token vectors or `tokens` is false (an entry cached
    /// before a switch to `late` lacks them and counts as a miss).
    fn get(&self, text: &str, tokens: bool) -> Option<Arc<QueryVectors>> {
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

    fn put(&self, text: String, v: Arc<QueryVectors>) {
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

/// Loads the model named by `config.encoder` and starts its thread. Blocking: call from a blocking context.
pub fn start_embedder(loaded: &LoadedConfig, threads: usize) -> Result<Embedder, EmbedError> {
    let enc = &loaded.config.encoder;
    let dir = model_dir(loaded)?;
    let device = DeviceSpec::parse(&enc.device).map_err(|reason| EmbedError::Load {
        what: "encoder.device".into(),
        reason,
    })?;
    let encoder =
        SentenceEncoder::load_with_precision(&dir, device, enc.max_tokens, enc.precision)?;
    Embedder::start(encoder, enc.max_batch, enc.queue_capacity, threads)
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
        let text = extract_text(&query, snapshot.config.limits.max_input_bytes)?;
        let evidence_k = query
            .top_k
            .filter(|&k| k > 0)
            .unwrap_or(snapshot.config.matching.top_k)
            .min(MAX_EVIDENCE);

        let t0 = Instant::now();
        let tokens = snapshot.wants_tokens();
        let vectors = match self.cache.get(&text, tokens) {
            Some(v) => v,
            None => {
                let v = if tokens {
                    let mut out = self.embedder.embed_tokens(vec![text.clone()]).await?;
                    let t = out.pop().ok_or(EmbedError::Stopped)?;
                    QueryVectors {
                        late: LateQuery::from_hidden(&t.tokens, self.embedder.info().dim),
                        sentence: t.sentence,
                    }
                } else {
                    let mut out = self.embedder.embed(vec![text.clone()]).await?;
                    QueryVectors {
                        sentence: out.pop().ok_or(EmbedError::Stopped)?,
                        late: None,
                    }
                };
                let v = Arc::new(v);
                self.cache.put(text, v.clone());
                v
            }
        };
        let embed_micros = t0.elapsed().as_micros() as u64;

        let t1 = Instant::now();
        let mut decision =
            snapshot.decide_with(&vectors.sentence, vectors.late.as_ref(), evidence_k);
        decision.search_micros = t1.elapsed().as_micros() as u64;
        decision.embed_micros = embed_micros;
        Ok(decision)
    }
}

/// Texts embedded per model job during a build: small enough to log progress and to let live requests
/// interleave, large enough to keep batches full.
const BUILD_CHUNK: usize = 1024;

/// Exemplars x routes above which training the route head is worth a warning (20x CLINC150 at K = all,
/// about a minute on two cores).
const HEAD_WARN_SIZE: usize = 20 * 15_000 * 150;

/// Builds the index for `config`, embedding only the utterances the store does not already hold.
fn build_snapshot(
    embedder: &Embedder,
    store: &Mutex<EmbeddingStore>,
    config: Config,
    version: u64,
    options: BuildOptions,
) -> Result<Snapshot, RouteError> {
    let started = Instant::now();
    let dim = embedder.info().dim;
    // Token vectors are kept only for the rule that uses them: they cost about 10x a sentence vector.
    let late = config.matching.aggregation == Aggregation::Late;
    // Negative exemplars need sentence vectors only (the penalty compares sentence vectors).
    let (missing, missing_negatives) = {
        let store = store.lock().unwrap_or_else(|p| p.into_inner());
        let utterances = config.routes.iter().flat_map(|r| r.utterances.iter());
        (
            not_stored(&store, utterances, late),
            not_stored(&store, config.out_of_scope.iter(), false),
        )
    };
    let embedded = missing.len() + missing_negatives.len();
    let mut fresh = Vec::with_capacity(embedded);
    let mut fresh_tokens = Vec::new();
    for chunk in missing.chunks(BUILD_CHUNK) {
        let vectors = if late {
            let out = embedder.embed_tokens_blocking(chunk.to_vec())?;
            let mut vectors = Vec::with_capacity(out.len());
            for (text, t) in chunk.iter().zip(out) {
                fresh_tokens.push((text.clone(), TokenRows::from_hidden(&t.tokens, dim)));
                vectors.push(t.sentence);
            }
            vectors
        } else {
            embedder.embed_blocking(chunk.to_vec())?
        };
        fresh.extend(chunk.iter().cloned().zip(vectors));
        if missing.len() > BUILD_CHUNK {
            tracing::info!(
                version,
                done = fresh.len(),
                of = missing.len(),
                "embedding utterances"
            );
        }
    }
    for chunk in missing_negatives.chunks(BUILD_CHUNK) {
        let vectors = embedder.embed_blocking(chunk.to_vec())?;
        fresh.extend(chunk.iter().cloned().zip(vectors));
    }

    let mut exemplars = Vec::new();
    let mut negatives = Vec::with_capacity(config.out_of_scope.len());
    let mut tokens = Vec::new();
    {
        let mut store = store.lock().unwrap_or_else(|p| p.into_inner());
        for (text, v) in fresh {
            store.insert(text, v);
        }
        for (text, t) in fresh_tokens {
            store.insert_tokens(text, t);
        }
        for (r, route) in config.routes.iter().enumerate() {
            for u in &route.utterances {
                if late {
                    tokens.push(store.get_tokens(u).cloned().ok_or(EmbedError::Stopped)?);
                }
                let vector = store.get(u).cloned().ok_or(EmbedError::Stopped)?;
                exemplars.push(Exemplar {
                    route: r,
                    text: u.clone(),
                    vector,
                });
            }
        }
        for u in &config.out_of_scope {
            let vector = store.get(u).cloned().ok_or(EmbedError::Stopped)?;
            negatives.push((u.clone(), vector));
        }
        let in_use: std::collections::HashSet<&str> = config
            .routes
            .iter()
            .flat_map(|r| r.utterances.iter().map(String::as_str))
            .chain(config.out_of_scope.iter().map(String::as_str))
            .collect();
        store.prune_unless_used(&|t| in_use.contains(t));
        if let Err(e) = store.save() {
            // The store is a cache: failing to persist it costs re-embedding later, nothing more.
            tracing::warn!(error = %e, "could not save the embedding store");
        }
    }
    let n = exemplars.len();
    let names = config.routes.iter().map(|r| r.name.clone()).collect();
    let mut index = RouteIndex::build(dim, names, exemplars, config.matching.exact_search_max)?
        .with_negatives(negatives)?;
    if late {
        let head = (config.matching.head_weight > 0.0 || options.always_train_head)
            .then(HeadTraining::default);
        if head.is_some() && n * config.routes.len() > HEAD_WARN_SIZE {
            tracing::warn!(
                exemplars = n,
                routes = config.routes.len(),
                "training the route head (matching.head_weight): its time grows with exemplars x routes \
                 (about 4 s at 15,000 x 150 on two cores), so this build takes longer"
            );
        }
        let late_started = Instant::now();
        index = index.with_late(&tokens, head)?;
        if let Some(l) = index.late() {
            tracing::info!(
                version,
                tokens = l.token_count(),
                bytes = l.bytes(),
                head = head.is_some(),
                build_ms = late_started.elapsed().as_millis() as u64,
                "token index built (aggregation: late)"
            );
        }
    }
    let build_duration = started.elapsed();
    tracing::info!(
        version,
        routes = config.routes.len(),
        exemplars = n,
        out_of_scope = index.negative_count(),
        embedded,
        mode = ?index.mode(),
        millis = build_duration.as_millis() as u64,
        "index built"
    );
    Ok(Snapshot {
        config: Arc::new(config),
        index,
        version,
        built_at: SystemTime::now(),
        build_duration,
        embedded,
    })
}

/// The distinct `texts` whose vectors (and, with `tokens`, token vectors) `store` lacks, in order.
fn not_stored<'a>(
    store: &EmbeddingStore,
    texts: impl Iterator<Item = &'a String>,
    tokens: bool,
) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    texts
        .filter(|u| {
            (store.get(u).is_none() || (tokens && store.get_tokens(u).is_none()))
                && seen.insert(u.as_str())
        })
        .cloned()
        .collect()
}

/// Picks the text to embed and enforces the input rules.
fn extract_text(q: &RouteQuery, max_bytes: usize) -> Result<String, RouteError> {
    let has_text = !q.text.is_empty();
    let text = match (has_text, q.messages.is_empty()) {
        (true, false) => {
            return Err(RouteError::InvalidInput(
                "set either `text` or `messages`, not both".into(),
            ))
        }
        (true, true) => q.text.as_str(),
        (false, false) => q
            .messages
            .iter()
            .rev()
            .find(|m| m.role.eq_ignore_ascii_case("user"))
            .map(|m| m.content.as_str())
            .ok_or_else(|| {
                RouteError::InvalidInput("`messages` has no message with role \"user\"".into())
            })?,
        (false, true) => {
            return Err(RouteError::InvalidInput(
                "`text` is empty (set `text` or `messages`)".into(),
            ))
        }
    };
    if text.len() > max_bytes {
        return Err(RouteError::InvalidInput(format!(
            "prompt is {} bytes; the limit is {max_bytes} bytes (limits.max_input_bytes)",
            text.len()
        )));
    }
    if text.trim().is_empty() {
        return Err(RouteError::InvalidInput(
            "prompt is blank (only whitespace)".into(),
        ));
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: &str, content: &str) -> ChatMessage {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }

    #[test]
    fn picks_last_user_message() {
        let q = RouteQuery {
            messages: vec![
                msg("user", "first"),
                msg("assistant", "x"),
                msg("user", "last"),
                msg("assistant", "y"),
            ],
            ..Default::default()
        };
        assert_eq!(extract_text(&q, 100).unwrap(), "last");
    }

    #[test]
    fn input_rules() {
        let blank = RouteQuery {
            text: "  \n\t ".into(),
            ..Default::default()
        };
        assert!(extract_text(&blank, 100)
            .unwrap_err()
            .to_string()
            .contains("blank"));
        let long = RouteQuery {
            text: "x".repeat(101),
            ..Default::default()
        };
        assert!(extract_text(&long, 100)
            .unwrap_err()
            .to_string()
            .contains("limit is 100 bytes"));
        let no_user = RouteQuery {
            messages: vec![msg("system", "be nice")],
            ..Default::default()
        };
        assert!(extract_text(&no_user, 100).is_err());
        let both = RouteQuery {
            text: "a".into(),
            messages: vec![msg("user", "b")],
            ..Default::default()
        };
        assert!(extract_text(&both, 100).is_err());
        assert!(extract_text(&RouteQuery::default(), 100).is_err());
    }
}
