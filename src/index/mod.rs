//! The exemplar index: every utterance's vector, k-NN search (exact scan or HNSW), and aggregation of
//! neighbour similarities into per-route scores.

mod head;
mod hnsw;
mod late;
mod scan;
mod vector;

pub use head::{HeadError, HeadTraining, LinearHead};
pub use hnsw::{HnswGraph, UnitCosine};
pub use late::{
    late_combine, train_head, EmptyRoute, LateEvidence, LateIndex, LateQuery, TokenRows,
};
pub use scan::{QuantisedScan, QUANTISED_SCAN_MIN};
pub use vector::{dot, normalize};

use crate::config::Aggregation;

/// Errors of the index layer.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// A vector's length differs from the index dimension.
    #[error("vector for `{text}` has {got} dimensions, the index has {want}")]
    Dimension {
        /// The exemplar.
        text: String,
        /// Its length.
        got: usize,
        /// The index dimension.
        want: usize,
    },
    /// A vector is zero or not finite, so it has no direction to compare.
    #[error("vector for `{0}` is zero or not finite")]
    Degenerate(String),
    /// A route has no exemplars.
    #[error("route `{0}` has no exemplars")]
    EmptyRoute(String),
    /// Rule `late`: the route head could not be trained.
    #[error("aggregation `late`: {0}")]
    Head(#[from] HeadError),
    /// Rule `late`: an exemplar has no token vectors, or a route none at all.
    #[error("aggregation `late`: {0}")]
    Tokens(String),
}

/// One labelled example utterance with its vector.
#[derive(Debug, Clone)]
pub struct Exemplar {
    /// Index into the route list.
    pub route: usize,
    /// The utterance text.
    pub text: String,
    /// Its embedding.
    pub vector: Vec<f32>,
}

/// A neighbour found by search.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    /// Exemplar id.
    pub id: usize,
    /// Cosine similarity to the query.
    pub similarity: f32,
}

/// Which search backend answers queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchMode {
    /// Brute-force scan: exact, and faster than the graph below the cut-over size.
    Exact,
    /// HNSW graph: approximate, sub-linear.
    Hnsw,
}

/// All exemplars of a route set, searchable.
pub struct RouteIndex {
    dim: usize,
    routes: Vec<String>,
    /// Row-major `n x dim` unit vectors.
    vectors: Vec<f32>,
    exemplar_route: Vec<usize>,
    exemplar_text: Vec<String>,
    /// Row-major `routes x dim` normalised route prototypes.
    centroids: Vec<f32>,
    graph: Option<HnswGraph>,
    /// Int8 copy of `vectors` for the exact scan, when there is no graph and at least
    /// [`QUANTISED_SCAN_MIN`] exemplars.
    scan: Option<QuantisedScan>,
    /// Token matrices and token-pooled prototypes; only with `aggregation: late`.
    late: Option<LateIndex>,
    /// Row-major unit vectors of the config's `out_of_scope` utterances (negative exemplars).
    negatives: Vec<f32>,
}

impl RouteIndex {
    /// Builds the index. Vectors are re-normalised (cosine needs unit vectors whatever the model emits).
    /// With more than `exact_max` exemplars an HNSW graph is built as well and answers searches.
    pub fn build(
        dim: usize,
        routes: Vec<String>,
        exemplars: Vec<Exemplar>,
        exact_max: usize,
    ) -> Result<Self, IndexError> {
        let n = exemplars.len();
        let mut vectors = Vec::with_capacity(n * dim);
        let mut exemplar_route = Vec::with_capacity(n);
        let mut exemplar_text = Vec::with_capacity(n);
        let mut sums = vec![0.0f32; routes.len() * dim];
        let mut counts = vec![0usize; routes.len()];
        for mut e in exemplars {
            if e.vector.len() != dim {
                return Err(IndexError::Dimension {
                    text: e.text,
                    got: e.vector.len(),
                    want: dim,
                });
            }
            if !normalize(&mut e.vector) {
                return Err(IndexError::Degenerate(e.text));
            }
            let sum = &mut sums[e.route * dim..(e.route + 1) * dim];
            sum.iter_mut().zip(&e.vector).for_each(|(s, v)| *s += v);
            counts[e.route] += 1;
            vectors.extend_from_slice(&e.vector);
            exemplar_route.push(e.route);
            exemplar_text.push(e.text);
        }
        for (r, c) in sums.chunks_exact_mut(dim).enumerate() {
            if counts[r] == 0 || !normalize(c) {
                return Err(IndexError::EmptyRoute(routes[r].clone()));
            }
        }
        let graph = (n > exact_max).then(|| HnswGraph::build(&vectors, dim));
        let scan = if graph.is_none() && n >= QUANTISED_SCAN_MIN {
            QuantisedScan::build(&vectors, dim)
        } else {
            None
        };
        Ok(Self {
            dim,
            routes,
            vectors,
            exemplar_route,
            exemplar_text,
            centroids: sums,
            graph,
            scan,
            late: None,
            negatives: Vec::new(),
        })
    }

    /// Adds negative exemplars: vectors of prompts that belong to no route (re-normalised like exemplars).
    pub fn with_negatives(
        mut self,
        negatives: Vec<(String, Vec<f32>)>,
    ) -> Result<Self, IndexError> {
        let mut flat = Vec::with_capacity(negatives.len() * self.dim);
        for (text, mut v) in negatives {
            if v.len() != self.dim {
                return Err(IndexError::Dimension {
                    text,
                    got: v.len(),
                    want: self.dim,
                });
            }
            if !normalize(&mut v) {
                return Err(IndexError::Degenerate(text));
            }
            flat.extend_from_slice(&v);
        }
        self.negatives = flat;
        Ok(self)
    }

    /// The negative exemplars' unit vectors, in config order.
    pub fn negative_vectors(&self) -> impl Iterator<Item = &[f32]> {
        self.negatives.chunks_exact(self.dim.max(1))
    }

    /// Number of negative exemplars.
    pub fn negative_count(&self) -> usize {
        self.negatives.len() / self.dim.max(1)
    }

    /// The query's similarities to its `n` most similar negative exemplars, most similar first (fewer when
    /// there are fewer negatives; empty without any). A plain scan: negatives are few.
    pub fn negative_similarities(&self, query: &[f32], n: usize) -> Vec<f32> {
        let mut sims: Vec<f32> = self
            .negatives
            .chunks_exact(self.dim)
            .map(|v| dot(query, v))
            .collect();
        let n = n.min(sims.len());
        if n == 0 {
            return Vec::new();
        }
        sims.select_nth_unstable_by(n - 1, |a, b| b.total_cmp(a));
        sims.truncate(n);
        sims.sort_by(|a, b| b.total_cmp(a));
        sims
    }

    /// Adds the token-level index that `aggregation: late` scores with; `tokens[i]` belongs to exemplar `i`
    /// (in [`Self::build`]'s order). With `head`, also trains a [`LinearHead`] on the exemplars
    /// (`matching.head_weight`).
    pub fn with_late(
        mut self,
        tokens: &[TokenRows],
        head: Option<HeadTraining>,
    ) -> Result<Self, IndexError> {
        if tokens.len() != self.len() {
            return Err(IndexError::Tokens(format!(
                "{} token sets for {} exemplars",
                tokens.len(),
                self.len()
            )));
        }
        let exemplars = || self.exemplar_route.iter().copied().zip(tokens);
        let mut late = LateIndex::build(self.dim, self.routes.len(), exemplars()).map_err(
            |EmptyRoute(r)| {
                IndexError::Tokens(format!("route `{}` has no token vectors", self.routes[r]))
            },
        )?;
        if let Some(settings) = head {
            late = late.with_head(train_head(
                self.dim,
                self.routes.len(),
                exemplars(),
                settings,
            )?);
        }
        self.late = Some(late);
        Ok(self)
    }

    /// The token-level index, when built.
    pub fn late(&self) -> Option<&LateIndex> {
        self.late.as_ref()
    }

    /// Vector dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of exemplars.
    pub fn len(&self) -> usize {
        self.exemplar_route.len()
    }

    /// True when there are no exemplars.
    pub fn is_empty(&self) -> bool {
        self.exemplar_route.is_empty()
    }

    /// Route names, in index order.
    pub fn routes(&self) -> &[String] {
        &self.routes
    }

    /// The route index of exemplar `id`.
    pub fn exemplar_route(&self, id: usize) -> usize {
        self.exemplar_route[id]
    }

    /// The (unit) vector of exemplar `id`.
    pub fn exemplar_vector(&self, id: usize) -> &[f32] {
        &self.vectors[id * self.dim..(id + 1) * self.dim]
    }

    /// The text of exemplar `id`.
    pub fn exemplar_text(&self, id: usize) -> &str {
        &self.exemplar_text[id]
    }

    /// The backend answering [`Self::search`].
    pub fn mode(&self) -> SearchMode {
        if self.graph.is_some() {
            SearchMode::Hnsw
        } else {
            SearchMode::Exact
        }
    }

    /// The `k` nearest exemplars to the unit vector `query`, most similar first.
    pub fn search(&self, query: &[f32], k: usize) -> Vec<Hit> {
        match &self.graph {
            Some(g) => g
                .search(query, k)
                .into_iter()
                .map(|(id, similarity)| Hit { id, similarity })
                .collect(),
            None => self.search_exact(query, k),
        }
    }

    /// Exact k-NN by scanning every exemplar (on the int8 copy with F32 re-scoring when there is one,
    /// which gives the same neighbours).
    pub fn search_exact(&self, query: &[f32], k: usize) -> Vec<Hit> {
        match &self.scan {
            Some(scan) => scan.top_k(&self.vectors, query, k).0,
            None => self.search_exact_f32(query, k),
        }
    }

    /// Exact k-NN over the F32 vectors only (what [`Self::search_exact`] does below
    /// [`QUANTISED_SCAN_MIN`] exemplars; public for benchmarks and tests).
    pub fn search_exact_f32(&self, query: &[f32], k: usize) -> Vec<Hit> {
        let mut all: Vec<Hit> = self
            .vectors
            .chunks_exact(self.dim)
            .enumerate()
            .map(|(id, v)| Hit {
                id,
                similarity: dot(query, v),
            })
            .collect();
        let k = k.min(all.len());
        if k == 0 {
            return Vec::new();
        }
        let by_sim_desc = |a: &Hit, b: &Hit| b.similarity.total_cmp(&a.similarity);
        if k < all.len() {
            all.select_nth_unstable_by(k - 1, by_sim_desc);
            all.truncate(k);
        }
        all.sort_unstable_by(by_sim_desc);
        all
    }

    /// Similarity of `query` to every route's prototype, in route order.
    pub fn centroid_scores(&self, query: &[f32]) -> Vec<f32> {
        self.centroids
            .chunks_exact(self.dim)
            .map(|c| dot(query, c))
            .collect()
    }

    /// Per-route scores, best first. `Centroid` and `Hybrid` score every route; `Max` and `Mean` score the
    /// routes that appear among `hits`. Pass an [`Aggregation`] (with default hybrid parameters) or a
    /// [`Scoring`].
    pub fn route_scores(
        &self,
        query: &[f32],
        hits: &[Hit],
        scoring: impl Into<Scoring>,
    ) -> Vec<(usize, f32)> {
        self.route_scores_with(query, None, hits, scoring)
    }

    /// [`Self::route_scores`] with the prompt's token vectors, which `Late` needs (without them, or without
    /// a late index, `Late` falls back to the centroid rule).
    pub fn route_scores_with(
        &self,
        query: &[f32],
        late: Option<&LateQuery>,
        hits: &[Hit],
        scoring: impl Into<Scoring>,
    ) -> Vec<(usize, f32)> {
        let scoring = scoring.into();
        if scoring.aggregation == Aggregation::Late {
            if let (Some(idx), Some(q)) = (&self.late, late) {
                return aggregate_late(&idx.evidence(q, scoring.late_shortlist), scoring);
            }
        }
        let centroid = matches!(
            scoring.aggregation,
            Aggregation::Centroid | Aggregation::Hybrid | Aggregation::Late
        )
        .then(|| self.centroid_scores(query));
        let hits: Vec<(usize, f32)> = hits
            .iter()
            .map(|h| (self.exemplar_route[h.id], h.similarity))
            .collect();
        aggregate(self.routes.len(), centroid.as_deref(), &hits, scoring)
    }
}

/// The parameters of the scoring rule (`matching.aggregation` and its `hybrid_*` fields).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scoring {
    /// How similarities become route scores.
    pub aggregation: Aggregation,
    /// `Hybrid`: weight of the centroid term.
    pub hybrid_weight: f32,
    /// `Hybrid`: nearest exemplars of a route averaged for the neighbour term.
    pub hybrid_neighbours: usize,
    /// `Late`: weight of the token term.
    pub late_weight: f32,
    /// `Late`: routes that get a token-level score.
    pub late_shortlist: usize,
    /// `Late`: weight of the trained head's term.
    pub head_weight: f32,
}

impl Scoring {
    /// The rule configured in `matching:`.
    pub fn from_config(m: &crate::config::MatchingConfig) -> Self {
        Self {
            aggregation: m.aggregation,
            hybrid_weight: m.hybrid_weight,
            hybrid_neighbours: m.hybrid_neighbours,
            late_weight: m.late_weight,
            late_shortlist: m.late_shortlist,
            head_weight: m.head_weight,
        }
    }
}

impl From<Aggregation> for Scoring {
    fn from(aggregation: Aggregation) -> Self {
        let d = crate::config::MatchingConfig::default();
        Self {
            aggregation,
            ..Self::from_config(&d)
        }
    }
}

/// Route scores of the `Late` rule, best first, from precomputed token-level evidence.
pub fn aggregate_late(evidence: &LateEvidence, scoring: Scoring) -> Vec<(usize, f32)> {
    let mut scores = late_combine(
        evidence,
        scoring.late_weight,
        scoring.head_weight,
        scoring.late_shortlist,
    );
    scores.sort_by(|a, b| b.1.total_cmp(&a.1));
    scores
}

/// Route scores, best first, from precomputed evidence: `centroid[r]` (the query's similarity to route `r`'s
/// prototype; needed by `Centroid` and `Hybrid`, and by `Late`, which falls back to it here: its token
/// evidence goes through [`aggregate_late`]) and `hits` as `(route, similarity)`, most similar first.
/// Kept apart from the index so that calibration can score many rules on cached evidence.
pub fn aggregate(
    n_routes: usize,
    centroid: Option<&[f32]>,
    hits: &[(usize, f32)],
    scoring: Scoring,
) -> Vec<(usize, f32)> {
    let mut scores: Vec<(usize, f32)> = match (scoring.aggregation, centroid) {
        (Aggregation::Centroid | Aggregation::Late, Some(c)) => {
            c.iter().copied().enumerate().collect()
        }
        (Aggregation::Hybrid, Some(c)) if !hits.is_empty() => {
            let n = scoring.hybrid_neighbours.max(1);
            // Routes without n neighbours among the hits are padded with the last hit's similarity: an upper
            // bound on what their unseen exemplars score.
            let floor = hits[hits.len() - 1].1;
            let mut taken = vec![(0usize, 0.0f32); n_routes];
            for &(r, s) in hits {
                let t = &mut taken[r];
                if t.0 < n {
                    t.0 += 1;
                    t.1 += s;
                }
            }
            let w = scoring.hybrid_weight;
            c.iter()
                .zip(taken)
                .enumerate()
                .map(|(r, (&cs, (cnt, sum)))| {
                    let nb = (sum + (n - cnt) as f32 * floor) / n as f32;
                    (r, w * cs + (1.0 - w) * nb)
                })
                .collect()
        }
        (Aggregation::Hybrid, Some(c)) => c.iter().copied().enumerate().collect(),
        (Aggregation::Centroid | Aggregation::Hybrid | Aggregation::Late, None) => Vec::new(),
        (Aggregation::Max | Aggregation::Mean, _) => {
            let mut acc: Vec<(f32, f32, usize)> = vec![(f32::NEG_INFINITY, 0.0, 0); n_routes];
            for &(r, s) in hits {
                let a = &mut acc[r];
                a.0 = a.0.max(s);
                a.1 += s;
                a.2 += 1;
            }
            acc.into_iter()
                .enumerate()
                .filter(|(_, a)| a.2 > 0)
                .map(|(r, (max, sum, n))| {
                    let s = if scoring.aggregation == Aggregation::Max {
                        max
                    } else {
                        sum / n as f32
                    };
                    (r, s)
                })
                .collect()
        }
    };
    scores.sort_by(|a, b| b.1.total_cmp(&a.1));
    scores
}

/// The score a decision compares with the threshold: the best score minus `margin_weight` times the second
/// best (`scores` best first). `None` when there is no score.
pub fn decision_score(scores: &[(usize, f32)], margin_weight: f32) -> Option<f32> {
    let best = scores.first()?.1;
    match scores.get(1) {
        Some(&(_, second)) if margin_weight > 0.0 => Some(best - margin_weight * second),
        _ => Some(best),
    }
}

/// `decision` lowered by the out-of-scope penalty: `weight` times the mean of the first `neighbours` of
/// `negatives` (the prompt's similarities to the negative exemplars, most similar first). No negatives, no
/// penalty.
pub fn negative_penalised(decision: f32, negatives: &[f32], weight: f32, neighbours: usize) -> f32 {
    let taken = &negatives[..negatives.len().min(neighbours.max(1))];
    if taken.is_empty() || weight == 0.0 {
        return decision;
    }
    decision - weight * taken.iter().sum::<f32>() / taken.len() as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use hnsw_rs::prelude::Distance;

    fn unit(v: &[f32]) -> Vec<f32> {
        let mut v = v.to_vec();
        normalize(&mut v);
        v
    }

    fn small() -> RouteIndex {
        let ex = vec![
            Exemplar {
                route: 0,
                text: "a1".into(),
                vector: unit(&[1.0, 0.0, 0.0]),
            },
            Exemplar {
                route: 0,
                text: "a2".into(),
                vector: unit(&[1.0, 0.2, 0.0]),
            },
            Exemplar {
                route: 1,
                text: "b1".into(),
                vector: unit(&[0.0, 1.0, 0.0]),
            },
            Exemplar {
                route: 1,
                text: "b2".into(),
                vector: unit(&[0.1, 1.0, 0.3]),
            },
        ];
        RouteIndex::build(3, vec!["a".into(), "b".into()], ex, 100).unwrap()
    }

    #[test]
    fn negatives_rank_and_penalise() {
        let idx = small()
            .with_negatives(vec![
                ("z".into(), vec![0.0, 0.0, 2.0]),
                ("y".into(), vec![0.0, 0.6, 0.8]),
            ])
            .unwrap();
        assert_eq!(idx.negative_count(), 2);
        let q = unit(&[0.0, 0.0, 1.0]);
        let sims = idx.negative_similarities(&q, 5);
        assert_eq!(sims.len(), 2);
        assert!((sims[0] - 1.0).abs() < 1e-6 && (sims[1] - 0.8).abs() < 1e-6);
        assert_eq!(idx.negative_similarities(&q, 1), vec![sims[0]]);
        // Mean of the first two, weighted: 0.5 - 0.5 x 0.9.
        assert!((negative_penalised(0.5, &sims, 0.5, 2) - 0.05).abs() < 1e-6);
        assert_eq!(negative_penalised(0.5, &sims, 0.0, 2), 0.5);
        assert_eq!(negative_penalised(0.5, &[], 1.0, 3), 0.5);
        assert!(small().negative_similarities(&q, 3).is_empty());
        assert!(matches!(
            small().with_negatives(vec![("bad".into(), vec![1.0])]),
            Err(IndexError::Dimension { .. })
        ));
    }

    #[test]
    fn exact_search_orders_by_similarity() {
        let idx = small();
        let q = unit(&[1.0, 0.1, 0.0]);
        let hits = idx.search(&q, 3);
        assert_eq!(hits.len(), 3);
        assert!(hits.windows(2).all(|w| w[0].similarity >= w[1].similarity));
        assert_eq!(idx.exemplar_route(hits[0].id), 0);
    }

    #[test]
    fn aggregations_rank_the_right_route() {
        let idx = small();
        let q = unit(&[0.05, 1.0, 0.1]);
        let hits = idx.search(&q, 4);
        for agg in [
            Aggregation::Max,
            Aggregation::Mean,
            Aggregation::Centroid,
            Aggregation::Hybrid,
        ] {
            let s = idx.route_scores(&q, &hits, agg);
            assert_eq!(s[0].0, 1, "{agg:?}");
            assert!(s[0].1 > s[1].1);
        }
    }

    #[test]
    fn hybrid_combines_centroid_and_neighbours() {
        // Route 0 has prototype similarity .5 and neighbours .9, .7; route 1 .6 and one neighbour .8.
        let c = [0.5, 0.6];
        let hits = [(0, 0.9), (1, 0.8), (0, 0.7), (1, 0.1)];
        let s = Scoring {
            aggregation: Aggregation::Hybrid,
            hybrid_weight: 0.5,
            hybrid_neighbours: 2,
            ..Aggregation::Hybrid.into()
        };
        let out = aggregate(2, Some(&c), &hits, s);
        assert_eq!(out[0].0, 0);
        assert!((out[0].1 - (0.25 + 0.4)).abs() < 1e-6);
        assert!((out[1].1 - (0.3 + 0.225)).abs() < 1e-6);
        // A route missing from the hits is padded with the last hit's similarity.
        let out = aggregate(3, Some(&[0.5, 0.6, 0.7]), &hits[..2], s);
        let r2 = out.iter().find(|x| x.0 == 2).unwrap().1;
        assert!((r2 - (0.35 + 0.4)).abs() < 1e-6, "{out:?}");
        // Weight 1 is the centroid rule.
        let cen = aggregate(
            2,
            Some(&c),
            &hits,
            Scoring {
                hybrid_weight: 1.0,
                ..s
            },
        );
        assert_eq!(
            cen,
            aggregate(2, Some(&c), &hits, Aggregation::Centroid.into())
        );
    }

    #[test]
    fn margin_lowers_ambiguous_scores() {
        let s = [(3, 0.8), (1, 0.6)];
        assert_eq!(decision_score(&s, 0.0), Some(0.8));
        assert!((decision_score(&s, 0.5).unwrap() - 0.5).abs() < 1e-6);
        assert_eq!(decision_score(&s[..1], 0.5), Some(0.8));
        assert_eq!(decision_score(&[], 0.5), None);
    }

    #[test]
    fn rejects_bad_vectors() {
        let bad = vec![Exemplar {
            route: 0,
            text: "z".into(),
            vector: vec![0.0; 3],
        }];
        assert!(matches!(
            RouteIndex::build(3, vec!["a".into()], bad, 10),
            Err(IndexError::Degenerate(_))
        ));
        let short = vec![Exemplar {
            route: 0,
            text: "s".into(),
            vector: vec![1.0; 2],
        }];
        assert!(matches!(
            RouteIndex::build(3, vec!["a".into()], short, 10),
            Err(IndexError::Dimension { .. })
        ));
    }

    #[test]
    fn unit_cosine_never_negative() {
        // A self-dot that rounds above 1 must not produce a negative distance (hnsw_rs asserts on it).
        let v = vec![0.70710677f32, 0.70710677, 1e-4];
        assert!(UnitCosine.eval(&v, &v) >= 0.0);
    }
}
