//! An immutable routing state (a validated config and the index built from it) and the decision rule that
//! runs on it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::types::{Candidate, Decision, Neighbour};
use crate::config::{Aggregation, Config};
use crate::index::{decision_score, negative_penalised, LateQuery, RouteIndex, Scoring};

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
    /// The sensitive-data guard of `config.guard`, compiled.
    pub guard: Arc<crate::guard::Guard>,
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
            rule: None,
            guard: Vec::new(),
        }
    }
}
