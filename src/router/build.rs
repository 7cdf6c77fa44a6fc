//! Building a snapshot off the request path: embed only what the embedding store lacks, then build the
//! index (and, for `aggregation: late`, the token index and route head).

use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use super::{BuildOptions, RouteError, Snapshot};
use crate::config::{Aggregation, Config};
use crate::embedding::{EmbedError, Embedder};
use crate::index::{Exemplar, HeadTraining, RouteIndex, TokenRows};
use crate::state::EmbeddingStore;

/// Texts embedded per model job during a build: small enough to log progress and to let live requests
/// interleave, large enough to keep batches full.
const BUILD_CHUNK: usize = 1024;

/// Exemplars x routes above which training the route head is worth a warning (20x CLINC150 at K = all,
/// about a minute on two cores).
const HEAD_WARN_SIZE: usize = 20 * 15_000 * 150;

/// Builds the index for `config`, embedding only the utterances the store does not already hold.
pub(super) fn build_snapshot(
    embedder: &Embedder,
    store: &Mutex<EmbeddingStore>,
    config: Config,
    version: u64,
    options: BuildOptions,
) -> Result<Snapshot, RouteError> {
    let started = Instant::now();
    // Validation compiled the same patterns, so this fails only for a config that skipped validation.
    let guard = crate::guard::Guard::new(&config.guard)
        .map_err(|e| RouteError::InvalidInput(e.to_string()))?;
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
        guard: Arc::new(guard),
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
