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
            context_turns: 0,
        }
    }

    /// True when a decision on a conversation's last turn alone should be retried with the turns before
    /// it: it cleared no threshold and the config routes on more than one turn.
    pub fn wants_context(&self, last: &Decision) -> bool {
        !last.matched && self.config.matching.context_turns > 1
    }

    /// The conversation rule. `last` is the decision on the last user turn alone (embedded as `query`);
    /// `context` holds the vectors of the user turns before it, newest first. When `last` cleared no
    /// threshold and the last turn is nearer a route's exemplar than any `out_of_scope` one, the turns
    /// are blended (the last with weight 1, each earlier one `context_weight` times the weight of the turn
    /// after it) and the blend decides if it clears a threshold; otherwise `last` stands. A
    /// self-contained prompt thus decides alone: a change of topic to another route clears its threshold
    /// and moves at once, and one that is plainly off-topic (nearest an `out_of_scope` example: "what's
    /// the weather in Lisbon?" after a coding question) is not pulled back to the earlier route.
    pub fn decide_in_context(
        &self,
        last: Decision,
        query: &[f32],
        context: &[Vec<f32>],
        evidence_k: usize,
    ) -> Decision {
        let m = &self.config.matching;
        let turns = context.len().min(m.context_turns.saturating_sub(1));
        if last.matched || turns == 0 || m.context_weight <= 0.0 {
            return last;
        }
        let nearest_negative = self.index.negative_similarities(query, 1).first().copied();
        let nearest_exemplar = self.index.search(query, 1).first().map(|h| h.similarity);
        if let (Some(neg), Some(ex)) = (nearest_negative, nearest_exemplar) {
            if neg > ex {
                return last;
            }
        }
        let blend = blend_turns(query, &context[..turns], m.context_weight);
        // Token vectors exist for the last turn only: the blend is scored on sentence vectors (`late`
        // falls back to its prototype term).
        let mut d = self.decide_with(&blend, None, evidence_k);
        if !d.matched {
            return last;
        }
        d.context_turns = turns;
        d
    }
}

/// The unit vector along `query + w x context[0] + w^2 x context[1] + ...`.
pub fn blend_turns(query: &[f32], context: &[Vec<f32>], weight: f32) -> Vec<f32> {
    let mut out = query.to_vec();
    let mut w = 1.0;
    for c in context {
        w *= weight;
        for (o, x) in out.iter_mut().zip(c) {
            *o += w * x;
        }
    }
    let norm = out.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        out.iter_mut().for_each(|x| *x /= norm);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::blend_turns;

    #[test]
    fn blend_weights_turns_geometrically_and_normalises() {
        let b = blend_turns(
            &[1.0, 0.0, 0.0],
            &[vec![0.0, 1.0, 0.0], vec![0.0, 0.0, 1.0]],
            0.5,
        );
        let n = (1.0f32 + 0.25 + 0.0625).sqrt();
        for (got, want) in b.iter().zip([1.0 / n, 0.5 / n, 0.25 / n]) {
            assert!((got - want).abs() < 1e-6, "{b:?}");
        }
        assert_eq!(blend_turns(&[0.6, 0.8], &[], 0.5), vec![0.6, 0.8]);
    }
}
