//! Routing-quality metrics: in-scope accuracy, out-of-scope (OOS) recall and precision, per-route
//! precision/recall/F1, macro-F1 and the most confused route pairs.
//!
//! An outcome pairs the expected route (`None`: out of scope, nothing should match) with the route the router
//! chose (`None`: nothing cleared its threshold). Route ids index a name list.

use std::collections::HashMap;

use serde::Serialize;

/// Expected and chosen route of one labelled query (`None` = out of scope / unrouted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The route the query belongs to; `None` for an out-of-scope query.
    pub expected: Option<usize>,
    /// The route that matched; `None` when no route cleared its threshold.
    pub predicted: Option<usize>,
}

/// Precision, recall and F1 of one route.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteStats {
    /// Route name.
    pub route: String,
    /// Queries labelled with this route.
    pub support: usize,
    /// Queries routed to this route.
    pub predicted: usize,
    /// Queries labelled with and routed to this route.
    pub correct: usize,
    /// correct / predicted (1 when nothing was routed here).
    pub precision: f64,
    /// correct / support (1 when the route has no labelled query).
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    pub f1: f64,
}

/// A kind of mistake and how often it happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Confusion {
    /// The right answer (`None`: out of scope).
    pub expected: Option<String>,
    /// What the router said (`None`: unrouted).
    pub predicted: Option<String>,
    /// How many queries.
    pub count: usize,
}

/// Quality figures over a labelled set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Labelled queries with a route.
    pub in_scope: usize,
    /// Out-of-scope queries.
    pub out_of_scope: usize,
    /// In-scope queries routed to their route / in-scope queries (unrouted counts as wrong).
    pub in_scope_accuracy: f64,
    /// OOS queries left unrouted / OOS queries (`None` without OOS queries).
    pub oos_recall: Option<f64>,
    /// Unrouted queries that are OOS / unrouted queries (`None` when nothing was unrouted).
    pub oos_precision: Option<f64>,
    /// Correct decisions (right route, or unrouted OOS) / all queries.
    pub overall_accuracy: f64,
    /// Mean F1 over the routes with labelled queries, plus the out-of-scope class when there are OOS queries.
    pub macro_f1: f64,
    /// Per-route figures, in route order, routes without labelled or routed queries left out.
    pub routes: Vec<RouteStats>,
    /// Mistakes grouped by (expected, predicted), most frequent first.
    pub confusions: Vec<Confusion>,
}

fn ratio(num: usize, den: usize) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

fn f1(p: f64, r: f64) -> f64 {
    if p + r == 0.0 {
        0.0
    } else {
        2.0 * p * r / (p + r)
    }
}

/// Computes the report for `outcomes` over routes named `names`.
pub fn report(names: &[String], outcomes: &[Outcome]) -> Report {
    let n = names.len();
    let (mut support, mut predicted, mut correct) = (vec![0; n], vec![0; n], vec![0; n]);
    let (mut oos, mut oos_unrouted, mut unrouted) = (0, 0, 0);
    let mut in_correct = 0;
    let mut confusions: HashMap<(Option<usize>, Option<usize>), usize> = HashMap::new();
    for o in outcomes {
        match o.expected {
            Some(e) => support[e] += 1,
            None => oos += 1,
        }
        match o.predicted {
            Some(p) => predicted[p] += 1,
            None => unrouted += 1,
        }
        if o.expected == o.predicted {
            match o.expected {
                Some(e) => {
                    correct[e] += 1;
                    in_correct += 1;
                }
                None => oos_unrouted += 1,
            }
        } else {
            *confusions.entry((o.expected, o.predicted)).or_default() += 1;
        }
    }
    let in_scope = outcomes.len() - oos;
    let mut routes = Vec::new();
    let mut f1_sum = 0.0;
    let mut f1_n = 0;
    for r in 0..n {
        if support[r] == 0 && predicted[r] == 0 {
            continue;
        }
        let precision = ratio(correct[r], predicted[r]).unwrap_or(1.0);
        let recall = ratio(correct[r], support[r]).unwrap_or(1.0);
        let f = f1(precision, recall);
        if support[r] > 0 {
            f1_sum += f;
            f1_n += 1;
        }
        routes.push(RouteStats {
            route: names[r].clone(),
            support: support[r],
            predicted: predicted[r],
            correct: correct[r],
            precision,
            recall,
            f1: f,
        });
    }
    let oos_recall = ratio(oos_unrouted, oos);
    let oos_precision = ratio(oos_unrouted, unrouted);
    if let Some(r) = oos_recall {
        f1_sum += f1(oos_precision.unwrap_or(1.0), r);
        f1_n += 1;
    }
    let mut confusions: Vec<Confusion> = confusions
        .into_iter()
        .map(|((e, p), count)| Confusion {
            expected: e.map(|e| names[e].clone()),
            predicted: p.map(|p| names[p].clone()),
            count,
        })
        .collect();
    confusions.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| a.expected.cmp(&b.expected))
            .then_with(|| a.predicted.cmp(&b.predicted))
    });
    Report {
        in_scope,
        out_of_scope: oos,
        in_scope_accuracy: ratio(in_correct, in_scope).unwrap_or(0.0),
        oos_recall,
        oos_precision,
        overall_accuracy: ratio(in_correct + oos_unrouted, outcomes.len()).unwrap_or(0.0),
        macro_f1: if f1_n == 0 { 0.0 } else { f1_sum / f1_n as f64 },
        routes,
        confusions,
    }
}

/// The `q`-quantile (0..=1, nearest rank) of `values`; `None` when empty.
pub fn percentile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = (q.clamp(0.0, 1.0) * v.len() as f64).ceil() as usize;
    Some(v[rank.saturating_sub(1).min(v.len() - 1)])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(expected: Option<usize>, predicted: Option<usize>) -> Outcome {
        Outcome {
            expected,
            predicted,
        }
    }

    #[test]
    fn figures_by_hand() {
        let names = vec!["a".to_string(), "b".to_string()];
        let outs = [
            o(Some(0), Some(0)),
            o(Some(0), Some(1)),
            o(Some(1), Some(1)),
            o(Some(1), None),
            o(None, None),
            o(None, Some(0)),
        ];
        let r = report(&names, &outs);
        assert_eq!((r.in_scope, r.out_of_scope), (4, 2));
        assert!((r.in_scope_accuracy - 0.5).abs() < 1e-12);
        assert_eq!(r.oos_recall, Some(0.5));
        assert_eq!(r.oos_precision, Some(0.5));
        assert!((r.overall_accuracy - 0.5).abs() < 1e-12);
        // a: predicted 2 (1 right) of support 2 -> P .5 R .5; b: P .5 R .5; oos: P .5 R .5.
        assert!(r.routes.iter().all(|s| (s.f1 - 0.5).abs() < 1e-12));
        assert!((r.macro_f1 - 0.5).abs() < 1e-12);
        assert_eq!(r.confusions.len(), 3);
        assert!(r.confusions.iter().all(|c| c.count == 1));
    }

    #[test]
    fn confusions_sorted_and_no_oos() {
        let names = vec!["a".to_string(), "b".to_string()];
        let outs = [
            o(Some(0), Some(1)),
            o(Some(0), Some(1)),
            o(Some(1), Some(0)),
        ];
        let r = report(&names, &outs);
        assert_eq!(r.oos_recall, None);
        assert_eq!(r.oos_precision, None);
        assert_eq!(r.in_scope_accuracy, 0.0);
        assert_eq!(r.confusions[0].count, 2);
        assert_eq!(r.confusions[0].expected.as_deref(), Some("a"));
        assert_eq!(r.confusions[0].predicted.as_deref(), Some("b"));
    }

    #[test]
    fn percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), Some(50.0));
        assert_eq!(percentile(&v, 0.99), Some(99.0));
        assert_eq!(percentile(&v, 1.0), Some(100.0));
        assert_eq!(percentile(&[], 0.5), None);
    }
}
