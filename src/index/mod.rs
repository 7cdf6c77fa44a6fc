//! The exemplar index: every utterance's vector, k-NN search (exact scan or HNSW), and aggregation of
//! neighbour similarities into per-route scores.

mod hnsw;
mod vector;

pub use hnsw::{HnswGraph, UnitCosine};
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
        Ok(Self {
            dim,
            routes,
            vectors,
            exemplar_route,
            exemplar_text,
            centroids: sums,
            graph,
        })
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

    /// Exact k-NN by scanning every exemplar.
    pub fn search_exact(&self, query: &[f32], k: usize) -> Vec<Hit> {
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

    /// Per-route scores, best first. `Centroid` scores every route; `Max` and `Mean` score the routes that
    /// appear among `hits`.
    pub fn route_scores(
        &self,
        query: &[f32],
        hits: &[Hit],
        aggregation: Aggregation,
    ) -> Vec<(usize, f32)> {
        let mut scores: Vec<(usize, f32)> = match aggregation {
            Aggregation::Centroid => self
                .centroids
                .chunks_exact(self.dim)
                .enumerate()
                .map(|(r, c)| (r, dot(query, c)))
                .collect(),
            Aggregation::Max | Aggregation::Mean => {
                let mut acc: Vec<(f32, f32, usize)> =
                    vec![(f32::NEG_INFINITY, 0.0, 0); self.routes.len()];
                for h in hits {
                    let a = &mut acc[self.exemplar_route[h.id]];
                    a.0 = a.0.max(h.similarity);
                    a.1 += h.similarity;
                    a.2 += 1;
                }
                acc.into_iter()
                    .enumerate()
                    .filter(|(_, a)| a.2 > 0)
                    .map(|(r, (max, sum, n))| {
                        let s = if aggregation == Aggregation::Max {
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
        for agg in [Aggregation::Max, Aggregation::Mean, Aggregation::Centroid] {
            let s = idx.route_scores(&q, &hits, agg);
            assert_eq!(s[0].0, 1, "{agg:?}");
            assert!(s[0].1 > s[1].1);
        }
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
