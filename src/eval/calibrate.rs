//! Choosing thresholds (global, optionally per route) and the weights of the decision rule on labelled dev
//! data, from evidence embedded once.

use serde::Serialize;

use crate::config::{Aggregation, MatchingConfig};
use crate::index::{
    aggregate, aggregate_late, decision_score, negative_penalised, LateEvidence, Scoring,
};

/// What calibration maximises.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Objective {
    /// The mean of in-scope accuracy and OOS recall.
    Balanced,
    /// Correct decisions over all queries (right route, or unrouted when out of scope).
    Accuracy,
    /// The best in-scope accuracy whose OOS recall is at least this.
    MinOosRecall(f64),
}

impl std::str::FromStr for Objective {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "balanced" => Ok(Self::Balanced),
            "accuracy" => Ok(Self::Accuracy),
            _ => match s.strip_prefix("min-oos-recall=") {
                Some(x) => match x.parse::<f64>() {
                    Ok(v) if (0.0..=1.0).contains(&v) => Ok(Self::MinOosRecall(v)),
                    _ => Err(format!("`{x}` is not a recall in [0, 1]")),
                },
                None => Err(format!(
                    "unknown objective `{s}` (balanced, accuracy or min-oos-recall=X)"
                )),
            },
        }
    }
}

/// The evidence for one labelled query: its similarity to every route prototype and its top-k hits.
#[derive(Debug, Clone)]
pub struct Evidence {
    /// Expected route (`None`: out of scope).
    pub label: Option<usize>,
    /// Similarity to each route's prototype, in route order.
    pub centroid: Vec<f32>,
    /// `(route, similarity)` of the nearest exemplars, most similar first (`matching.top_k` of them).
    pub hits: Vec<(usize, f32)>,
    /// Token-level evidence, for `aggregation: late` (see [`crate::eval::add_late_evidence`]).
    pub late: Option<LateEvidence>,
    /// Similarities to the most similar negative exemplars (`out_of_scope`), most similar first; empty
    /// without any.
    pub negatives: Vec<f32>,
}

/// One query's decision under a rule, before thresholds: the top route and the score that is thresholded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    /// Expected route.
    pub label: Option<usize>,
    /// Best route.
    pub top: usize,
    /// The score compared with the threshold.
    pub score: f32,
}

/// Scores `evidence` under the rule in `matching`.
pub fn score_all(n_routes: usize, evidence: &[Evidence], matching: &MatchingConfig) -> Vec<Scored> {
    penalise(
        evidence,
        &unpenalised(n_routes, evidence, matching),
        matching,
    )
}

/// Each query's decision before the out-of-scope penalty (`None`: no route scored), aligned with
/// `evidence`. Kept apart because the penalty moves neither the top route nor this score, so calibration
/// computes it once for every penalty it tries.
fn unpenalised(
    n_routes: usize,
    evidence: &[Evidence],
    matching: &MatchingConfig,
) -> Vec<Option<Scored>> {
    let scoring = Scoring::from_config(matching);
    let k = matching.top_k;
    evidence
        .iter()
        .map(|e| {
            let hits = &e.hits[..e.hits.len().min(k)];
            let s = match (&e.late, scoring.aggregation) {
                (Some(late), Aggregation::Late) => aggregate_late(late, scoring),
                _ => aggregate(n_routes, Some(&e.centroid), hits, scoring),
            };
            let top = s.first()?.0;
            Some(Scored {
                label: e.label,
                top,
                score: decision_score(&s, matching.margin_weight)?,
            })
        })
        .collect()
}

/// `scored` (from [`unpenalised`]) with `matching`'s out-of-scope penalty applied.
fn penalise(
    evidence: &[Evidence],
    scored: &[Option<Scored>],
    matching: &MatchingConfig,
) -> Vec<Scored> {
    evidence
        .iter()
        .zip(scored)
        .filter_map(|(e, s)| {
            let s = (*s)?;
            Some(Scored {
                score: negative_penalised(
                    s.score,
                    &e.negatives,
                    matching.negative_weight,
                    matching.negative_neighbours,
                ),
                ..s
            })
        })
        .collect()
}

/// In-scope accuracy, OOS recall and overall accuracy of thresholded decisions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Figures {
    /// Right route / in-scope queries.
    pub in_scope_accuracy: f64,
    /// Unrouted / OOS queries (1 when there are none).
    pub oos_recall: f64,
    /// Correct decisions / all queries.
    pub overall_accuracy: f64,
}

impl Figures {
    /// The value `objective` maximises; `None` when the constraint of `MinOosRecall` fails.
    pub fn value(&self, objective: Objective) -> Option<f64> {
        match objective {
            Objective::Balanced => Some((self.in_scope_accuracy + self.oos_recall) / 2.0),
            Objective::Accuracy => Some(self.overall_accuracy),
            Objective::MinOosRecall(min) => {
                (self.oos_recall + 1e-12 >= min).then_some(self.in_scope_accuracy)
            }
        }
    }
}

/// The figures of `scored` when route `r` needs `threshold(r)`.
pub fn figures(scored: &[Scored], threshold: impl Fn(usize) -> f32) -> Figures {
    let (mut n_in, mut n_oos, mut ok_in, mut ok_oos) = (0usize, 0usize, 0usize, 0usize);
    for s in scored {
        let routed = s.score >= threshold(s.top);
        match s.label {
            Some(l) => {
                n_in += 1;
                ok_in += usize::from(routed && s.top == l);
            }
            None => {
                n_oos += 1;
                ok_oos += usize::from(!routed);
            }
        }
    }
    let r = |a: usize, b: usize| if b == 0 { 1.0 } else { a as f64 / b as f64 };
    Figures {
        in_scope_accuracy: r(ok_in, n_in),
        oos_recall: r(ok_oos, n_oos),
        overall_accuracy: r(ok_in + ok_oos, n_in + n_oos),
    }
}

/// Candidate thresholds: midpoints between consecutive distinct scores (and just below / above all).
fn candidates(scored: &[Scored]) -> Vec<f32> {
    let mut v: Vec<f32> = scored.iter().map(|s| s.score).collect();
    v.sort_by(f32::total_cmp);
    v.dedup();
    let mut out = Vec::with_capacity(v.len() + 1);
    if let Some(&first) = v.first() {
        out.push(first - 1e-4);
    }
    out.extend(v.windows(2).map(|w| (w[0] + w[1]) / 2.0));
    if let Some(&last) = v.last() {
        out.push(last + 1e-4);
    }
    out.into_iter()
        .map(|t| t.clamp(-1.0, 1.0))
        .map(|t| (t * 10_000.0).round() / 10_000.0)
        .collect()
}

/// The global threshold that maximises `objective` on `scored` (ties: the lowest threshold, which routes
/// the most), with its figures. `None` when no threshold satisfies the objective's constraint.
pub fn best_global(scored: &[Scored], objective: Objective) -> Option<(f32, Figures)> {
    let mut best: Option<(f64, f32, Figures)> = None;
    for t in candidates(scored) {
        let f = figures(scored, |_| t);
        if let Some(v) = f.value(objective) {
            if best.as_ref().is_none_or(|b| v > b.0 + 1e-12) {
                best = Some((v, t, f));
            }
        }
    }
    best.map(|(_, t, f)| (t, f))
}

/// Per-route thresholds by coordinate ascent from `global`: each route's threshold moves within
/// `global ± max_shift` only when that improves the objective on the dev data. Few dev queries per route make
/// this prone to over-fitting: compare on held-out data before keeping it.
pub fn per_route(
    scored: &[Scored],
    n_routes: usize,
    global: f32,
    max_shift: f32,
    objective: Objective,
) -> Vec<f32> {
    let mut t = vec![global; n_routes];
    let mut current = figures(scored, |r| t[r]).value(objective);
    let grid: Vec<f32> = (-20..=20).map(|i| i as f32 * max_shift / 20.0).collect();
    for r in 0..n_routes {
        if !scored.iter().any(|s| s.top == r) {
            continue;
        }
        let mut best = t[r];
        for d in &grid {
            t[r] = (global + d).clamp(-1.0, 1.0);
            let v = figures(scored, |x| t[x]).value(objective);
            if v.is_some() && (current.is_none() || v > current.map(|c| c + 1e-12)) {
                current = v;
                best = t[r];
            }
        }
        t[r] = best;
    }
    t
}

/// A rule to try: the scoring fields of `matching:` that calibration may change.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Rule {
    /// `matching.aggregation`.
    #[serde(serialize_with = "ser_agg")]
    pub aggregation: Aggregation,
    /// `matching.hybrid_weight`.
    pub hybrid_weight: f32,
    /// `matching.hybrid_neighbours`.
    pub hybrid_neighbours: usize,
    /// `matching.margin_weight`.
    pub margin_weight: f32,
    /// `matching.late_weight`.
    pub late_weight: f32,
    /// `matching.head_weight`.
    pub head_weight: f32,
    /// `matching.negative_weight`.
    pub negative_weight: f32,
    /// `matching.negative_neighbours`.
    pub negative_neighbours: usize,
}

fn ser_agg<S: serde::Serializer>(a: &Aggregation, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{a:?}").to_lowercase())
}

impl Rule {
    /// The rule configured in `m`.
    pub fn of(m: &MatchingConfig) -> Self {
        Self {
            aggregation: m.aggregation,
            hybrid_weight: m.hybrid_weight,
            hybrid_neighbours: m.hybrid_neighbours,
            margin_weight: m.margin_weight,
            late_weight: m.late_weight,
            head_weight: m.head_weight,
            negative_weight: m.negative_weight,
            negative_neighbours: m.negative_neighbours,
        }
    }

    /// This rule without its out-of-scope penalty settings: rules equal here decide alike before the
    /// penalty.
    fn before_penalty(&self) -> Self {
        Self {
            negative_weight: 0.0,
            negative_neighbours: 1,
            ..*self
        }
    }

    /// `m` with this rule.
    pub fn apply(&self, m: &MatchingConfig) -> MatchingConfig {
        MatchingConfig {
            aggregation: self.aggregation,
            hybrid_weight: self.hybrid_weight,
            hybrid_neighbours: self.hybrid_neighbours.min(m.top_k),
            margin_weight: self.margin_weight,
            late_weight: self.late_weight,
            head_weight: self.head_weight,
            negative_weight: self.negative_weight,
            negative_neighbours: self.negative_neighbours,
            ..m.clone()
        }
    }
}

/// The weights of the token term `calibrate` tries for `late` (0 is the token-pooled prototype alone).
pub const LATE_WEIGHTS: [f32; 10] = [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0];

/// The weights of the trained head's term `calibrate` tries for `late` when the index has a head (0 leaves
/// it out). Measured on CLINC150 K = all: every weight from 2 to 6 lands within a point of the others.
pub const HEAD_WEIGHTS: [f32; 7] = [0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0];

/// The out-of-scope penalty weights `calibrate` tries when there are negative exemplars (0: no penalty).
pub const NEGATIVE_WEIGHTS: [f32; 6] = [0.0, 0.25, 0.5, 0.75, 1.0, 1.5];

/// The numbers of most similar negative exemplars `calibrate` tries averaging.
pub const NEGATIVE_NEIGHBOURS: [usize; 4] = [1, 2, 3, 5];

/// The rules `calibrate` searches when asked to tune the rule: the configured aggregation's weights
/// (`hybrid`: weight 0.3..1 by 0.1, neighbours 1..3; `late`: [`LATE_WEIGHTS`], times [`HEAD_WEIGHTS`] when
/// `head` says the evidence has head scores) and margin weights 0, 0.25, 0.5; each of them with every
/// out-of-scope penalty ([`NEGATIVE_WEIGHTS`] x [`NEGATIVE_NEIGHBOURS`]) when `negatives` says there are
/// negative exemplars.
pub fn rule_grid(m: &MatchingConfig, head: bool, negatives: bool) -> Vec<Rule> {
    let base = base_grid(m, head);
    if !negatives {
        return base;
    }
    // Penalties innermost: consecutive rules then share their unpenalised scores in `calibrate`.
    let mut out =
        Vec::with_capacity(base.len() * NEGATIVE_WEIGHTS.len() * NEGATIVE_NEIGHBOURS.len());
    for rule in base {
        out.push(Rule {
            negative_weight: 0.0,
            ..rule
        });
        for w in &NEGATIVE_WEIGHTS[1..] {
            for n in NEGATIVE_NEIGHBOURS {
                out.push(Rule {
                    negative_weight: *w,
                    negative_neighbours: n,
                    ..rule
                });
            }
        }
    }
    out
}

fn base_grid(m: &MatchingConfig, head: bool) -> Vec<Rule> {
    let head_weights: &[f32] = if head {
        &HEAD_WEIGHTS
    } else {
        std::slice::from_ref(&m.head_weight)
    };
    let mut out = Vec::new();
    for margin in [0.0, 0.25, 0.5] {
        if m.aggregation == Aggregation::Hybrid {
            for w in 3..=10 {
                for n in 1..=3usize.min(m.top_k) {
                    out.push(Rule {
                        aggregation: Aggregation::Hybrid,
                        hybrid_weight: w as f32 / 10.0,
                        hybrid_neighbours: n,
                        margin_weight: margin,
                        ..Rule::of(m)
                    });
                }
            }
        } else if m.aggregation == Aggregation::Late {
            for w in LATE_WEIGHTS {
                for &h in head_weights {
                    out.push(Rule {
                        late_weight: w,
                        head_weight: h,
                        margin_weight: margin,
                        ..Rule::of(m)
                    });
                }
            }
        } else {
            out.push(Rule {
                margin_weight: margin,
                ..Rule::of(m)
            });
        }
    }
    out
}

/// The outcome of a calibration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Calibration {
    /// The chosen rule.
    pub rule: Rule,
    /// The chosen global threshold.
    pub threshold: f32,
    /// Per-route thresholds (route order), when asked for.
    pub per_route: Option<Vec<f32>>,
    /// Figures on the dev data with the chosen settings.
    pub figures: Figures,
}

/// Chooses the rule (among `rules`) and global threshold that maximise `objective` on the dev evidence,
/// then per-route thresholds within `± per_route_shift` when given. Ties keep the earlier rule.
pub fn calibrate(
    n_routes: usize,
    evidence: &[Evidence],
    base: &MatchingConfig,
    rules: &[Rule],
    objective: Objective,
    per_route_shift: Option<f32>,
) -> Option<Calibration> {
    let mut best: Option<(f64, Rule, f32, Figures, Vec<Scored>)> = None;
    let mut shared: Option<(Rule, Vec<Option<Scored>>)> = None;
    for rule in rules {
        let m = rule.apply(base);
        let key = rule.before_penalty();
        if shared.as_ref().is_none_or(|(k, _)| *k != key) {
            shared = Some((key, unpenalised(n_routes, evidence, &m)));
        }
        let scored = penalise(evidence, &shared.as_ref().expect("just set").1, &m);
        if let Some((t, f)) = best_global(&scored, objective) {
            let v = f.value(objective).unwrap_or(f64::NEG_INFINITY);
            if best.as_ref().is_none_or(|b| v > b.0 + 1e-9) {
                best = Some((v, *rule, t, f, scored));
            }
        }
    }
    let (_, rule, threshold, mut figs, scored) = best?;
    let per_route = per_route_shift.map(|shift| {
        let t = per_route(&scored, n_routes, threshold, shift, objective);
        figs = figures(&scored, |r| t[r]);
        t
    });
    Some(Calibration {
        rule,
        threshold,
        per_route,
        figures: figs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Calibrates two-route evidence over `grid`, objective balanced, global threshold only.
    fn balanced(ev: &[Evidence], base: &MatchingConfig, grid: &[Rule]) -> Calibration {
        calibrate(2, ev, base, grid, Objective::Balanced, None).unwrap()
    }

    fn s(label: Option<usize>, top: usize, score: f32) -> Scored {
        Scored { label, top, score }
    }

    #[test]
    fn objectives_parse() {
        assert_eq!("balanced".parse::<Objective>(), Ok(Objective::Balanced));
        assert_eq!("accuracy".parse::<Objective>(), Ok(Objective::Accuracy));
        assert_eq!(
            "min-oos-recall=0.9".parse::<Objective>(),
            Ok(Objective::MinOosRecall(0.9))
        );
        assert!("min-oos-recall=2".parse::<Objective>().is_err());
        assert!("f1".parse::<Objective>().is_err());
    }

    #[test]
    fn global_threshold_separates() {
        // In-scope scores .8/.7 (right) and .6 (wrong route); OOS .5 and .65.
        let v = [
            s(Some(0), 0, 0.8),
            s(Some(1), 1, 0.7),
            s(Some(0), 1, 0.6),
            s(None, 0, 0.5),
            s(None, 1, 0.65),
        ];
        let (t, f) = best_global(&v, Objective::Balanced).unwrap();
        assert!(t > 0.65 && t <= 0.7, "{t}");
        assert_eq!(f.in_scope_accuracy, 2.0 / 3.0);
        assert_eq!(f.oos_recall, 1.0);
        // Requiring no OOS recall at all routes everything.
        let (t, f) = best_global(&v, Objective::MinOosRecall(0.0)).unwrap();
        assert!(t <= 0.5);
        assert_eq!(f.oos_recall, 0.0);
        let (_, f) = best_global(&v, Objective::MinOosRecall(0.5)).unwrap();
        assert!(f.oos_recall >= 0.5);
    }

    #[test]
    fn per_route_thresholds_only_move_when_it_helps() {
        // Route 1's right answers score lower than route 0's: a lower threshold for route 1 helps.
        let v = [
            s(Some(0), 0, 0.8),
            s(Some(1), 1, 0.45),
            s(None, 0, 0.5),
            s(None, 1, 0.3),
        ];
        let t = per_route(&v, 3, 0.6, 0.2, Objective::Balanced);
        assert_eq!(t[0], 0.6);
        assert!(t[1] <= 0.45 && t[1] > 0.3, "{t:?}");
        assert_eq!(t[2], 0.6); // never the top route: untouched
    }

    #[test]
    fn calibrate_picks_the_better_rule() {
        // Centroid evidence points at the wrong route, neighbours at the right one.
        let ev = vec![
            Evidence {
                label: Some(1),
                centroid: vec![0.6, 0.5],
                hits: vec![(1, 0.95), (0, 0.4)],
                late: None,
                negatives: vec![],
            },
            Evidence {
                label: None,
                centroid: vec![0.2, 0.1],
                hits: vec![(0, 0.3), (1, 0.2)],
                late: None,
                negatives: vec![],
            },
        ];
        let base = MatchingConfig {
            aggregation: Aggregation::Hybrid,
            top_k: 2,
            ..Default::default()
        };
        let c = balanced(&ev, &base, &rule_grid(&base, false, false));
        assert_eq!(c.figures.in_scope_accuracy, 1.0);
        assert_eq!(c.figures.oos_recall, 1.0);
        assert!(c.rule.hybrid_weight < 1.0);
    }

    #[test]
    fn calibrate_chooses_an_out_of_scope_penalty() {
        // The OOS query scores as high as the in-scope one, but sits next to a negative exemplar: only a
        // penalty tells them apart.
        let ev = vec![
            Evidence {
                label: Some(0),
                centroid: vec![0.7, 0.2],
                hits: vec![(0, 0.7)],
                late: None,
                negatives: vec![0.1, 0.05],
            },
            Evidence {
                label: None,
                centroid: vec![0.72, 0.1],
                hits: vec![(0, 0.72)],
                late: None,
                negatives: vec![0.9, 0.2],
            },
        ];
        let base = MatchingConfig {
            aggregation: Aggregation::Centroid,
            negative_weight: 0.0,
            ..Default::default()
        };
        let without = balanced(&ev, &base, &rule_grid(&base, false, false));
        assert!(without.figures.in_scope_accuracy + without.figures.oos_recall < 2.0);
        let grid = rule_grid(&base, false, true);
        assert_eq!(
            grid.len(),
            3 * (1 + (NEGATIVE_WEIGHTS.len() - 1) * NEGATIVE_NEIGHBOURS.len())
        );
        let with = balanced(&ev, &base, &grid);
        assert_eq!(with.figures.in_scope_accuracy, 1.0);
        assert_eq!(with.figures.oos_recall, 1.0);
        assert!(with.rule.negative_weight > 0.0);
        let scored = score_all(2, &ev, &with.rule.apply(&base));
        assert!(scored[1].score < with.threshold && scored[0].score >= with.threshold);
    }

    #[test]
    fn calibrate_tunes_the_late_weight() {
        // The token-pooled prototype prefers route 0 for the in-scope query; its bag score points at route
        // 1, the right one: (0.6 + 0.5 w) < (0.5 + 0.9 w) iff w > 0.25, so weights 0 and 0.25 (a tie) get it
        // wrong, and the OOS query must stay below the threshold.
        let late = |cent_nt: Vec<f32>, bag: Vec<(usize, f32)>| {
            Some(LateEvidence {
                cent_nt,
                bag,
                head: Vec::new(),
            })
        };
        let ev = vec![
            Evidence {
                label: Some(1),
                centroid: vec![0.6, 0.5],
                hits: vec![(0, 0.9), (1, 0.5)],
                late: late(vec![0.6, 0.5], vec![(0, 0.5), (1, 0.9)]),
                negatives: vec![],
            },
            Evidence {
                label: None,
                centroid: vec![0.2, 0.1],
                hits: vec![(0, 0.3), (1, 0.2)],
                late: late(vec![0.2, 0.1], vec![(0, 0.3), (1, 0.2)]),
                negatives: vec![],
            },
        ];
        let base = MatchingConfig {
            aggregation: Aggregation::Late,
            late_weight: 0.0,
            top_k: 2,
            ..Default::default()
        };
        let grid = rule_grid(&base, false, false);
        assert!(grid.iter().all(|r| r.aggregation == Aggregation::Late));
        assert!(grid.iter().all(|r| r.head_weight == 0.0));
        let c = balanced(&ev, &base, &grid);
        assert_eq!(c.figures.in_scope_accuracy, 1.0);
        assert_eq!(c.figures.oos_recall, 1.0);
        assert!(c.rule.late_weight > 0.25, "{:?}", c.rule);
        // Without token evidence the late rule falls back to the centroid and gets the query wrong.
        let plain: Vec<Evidence> = ev
            .into_iter()
            .map(|e| Evidence { late: None, ..e })
            .collect();
        let scored = score_all(2, &plain, &c.rule.apply(&base));
        assert_eq!(scored[0].top, 0);
    }

    #[test]
    fn calibrate_tunes_the_head_weight() {
        // Prototype and bag both prefer route 0 for the in-scope query; the head points at route 1, the
        // right one: (1.2 + 0.2 h) vs (1.0 + 0.8 h) at late weight 1 flips at h = 1/3, and no late weight
        // alone helps, so only a grid with head weights gets it right.
        let late = |cent_nt: Vec<f32>, bag: Vec<(usize, f32)>, head: Vec<f32>| {
            Some(LateEvidence { cent_nt, bag, head })
        };
        let ev = vec![
            Evidence {
                label: Some(1),
                centroid: vec![0.6, 0.5],
                hits: vec![(0, 0.9), (1, 0.5)],
                late: late(vec![0.6, 0.5], vec![(0, 0.6), (1, 0.5)], vec![0.2, 0.8]),
                negatives: vec![],
            },
            Evidence {
                label: None,
                centroid: vec![0.2, 0.1],
                hits: vec![(0, 0.3), (1, 0.2)],
                late: late(vec![0.2, 0.1], vec![(0, 0.3), (1, 0.2)], vec![-0.5, -0.6]),
                negatives: vec![],
            },
        ];
        let base = MatchingConfig {
            aggregation: Aggregation::Late,
            top_k: 2,
            ..Default::default()
        };
        let without = balanced(&ev, &base, &rule_grid(&base, false, false));
        assert_eq!(without.figures.in_scope_accuracy, 0.0);
        let grid = rule_grid(&base, true, false);
        assert_eq!(grid.len(), 3 * LATE_WEIGHTS.len() * HEAD_WEIGHTS.len());
        let c = balanced(&ev, &base, &grid);
        assert_eq!(c.figures.in_scope_accuracy, 1.0);
        assert_eq!(c.figures.oos_recall, 1.0);
        assert!(c.rule.head_weight > 0.0, "{:?}", c.rule);
        assert_eq!(c.rule.apply(&base).head_weight, c.rule.head_weight);
    }
}
