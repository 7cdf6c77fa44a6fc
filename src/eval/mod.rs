//! Quality tooling: labelled query sets, metrics, threshold/weight calibration, and the CLINC150 recipe.
//!
//! Everything here works on vectors already embedded, so one run can embed a data set once and score many
//! decision rules on it.

pub mod banking77;
pub mod calibrate;
pub mod dataset;
pub mod metrics;
pub mod yaml_edit;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Errors of the quality tooling.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A data file is malformed.
    #[error("{path}:{line}: {message}")]
    Data {
        /// The file.
        path: String,
        /// 1-based line (0: the whole file).
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// One labelled query: `label` is the route it belongs to, `None` (JSON `null`) when it is out of scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sample {
    /// The query.
    pub text: String,
    /// Its route; `None` for out of scope.
    pub label: Option<String>,
    /// Optional kinds the query belongs to (`long`, `de`, `typo`, ...): `eval` breaks its figures down by
    /// them, so one file can show where a rule fails (long prompts, other languages) without a file per kind.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// For a conversation: the user turns before `text`, oldest first. They join the decision as the
    /// server's do (`matching.context_turns`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub context: Vec<String>,
}

/// Reads a JSONL file of `{"text": ..., "label": ... | null}` lines (blank lines are skipped).
pub fn read_jsonl(path: &Path) -> Result<Vec<Sample>, EvalError> {
    let text = std::fs::read_to_string(path).map_err(|source| EvalError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_jsonl(&text, &path.display().to_string())
}

/// Parses JSONL text; `file` names it in errors.
pub fn parse_jsonl(text: &str, file: &str) -> Result<Vec<Sample>, EvalError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let s: Sample = serde_json::from_str(line).map_err(|e| EvalError::Data {
            path: file.to_string(),
            line: i + 1,
            message: format!("{e} (expected {{\"text\": \"...\", \"label\": \"route\" | null}})"),
        })?;
        if s.text.trim().is_empty() {
            return Err(EvalError::Data {
                path: file.to_string(),
                line: i + 1,
                message: "blank text".into(),
            });
        }
        out.push(s);
    }
    Ok(out)
}

/// Serialises samples as JSONL.
pub fn to_jsonl(samples: &[Sample]) -> String {
    let mut s = String::new();
    for x in samples {
        s.push_str(&serde_json::to_string(x).expect("a sample always serialises"));
        s.push('\n');
    }
    s
}

/// Maps sample labels to route ids of `routes`; an unknown label is an error naming its line.
pub fn label_ids(
    samples: &[Sample],
    routes: &[String],
    file: &str,
) -> Result<Vec<Option<usize>>, EvalError> {
    let by_name: std::collections::HashMap<&str, usize> = routes
        .iter()
        .enumerate()
        .map(|(i, r)| (r.as_str(), i))
        .collect();
    samples
        .iter()
        .enumerate()
        .map(|(i, s)| match &s.label {
            None => Ok(None),
            Some(l) => by_name
                .get(l.as_str())
                .copied()
                .map(Some)
                .ok_or_else(|| EvalError::Data {
                    path: file.to_string(),
                    line: i + 1,
                    message: format!("label `{l}` is not a route of the config"),
                }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn leave_one_out_evidence_scores_each_example_without_itself() {
        use crate::index::{Exemplar, RouteIndex};
        let unit = |v: [f32; 3]| {
            let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.map(|x| x / n).to_vec()
        };
        let ex = |route, text: &str, v| Exemplar {
            route,
            text: text.into(),
            vector: unit(v),
        };
        let index = RouteIndex::build(
            3,
            vec!["a".into(), "b".into()],
            vec![
                ex(0, "a1", [1.0, 0.0, 0.0]),
                ex(0, "a2", [1.0, 1.0, 0.0]),
                ex(1, "b1", [0.0, 0.0, 1.0]),
            ],
            100,
        )
        .unwrap()
        .with_negatives(vec![
            ("n1".into(), unit([0.0, 1.0, 0.0])),
            ("n2".into(), unit([0.0, 1.0, 1.0])),
        ])
        .unwrap();
        let e = super::leave_one_out_evidence(&index, 5);
        assert_eq!(e.len(), 5);
        assert_eq!(
            e.iter().map(|e| e.label).collect::<Vec<_>>(),
            [Some(0), Some(0), Some(1), None, None]
        );
        // a1 without itself: route a's prototype is a2 alone, cos 0.7071; a1 is not its own neighbour.
        assert!(
            (e[0].centroid[0] - 0.70710677).abs() < 1e-5,
            "{:?}",
            e[0].centroid
        );
        assert_eq!(e[0].hits.len(), 2);
        assert!((e[0].hits[0].1 - 0.70710677).abs() < 1e-5);
        // b1 is its route's only exemplar: no prototype is left, so no similarity to it.
        assert_eq!(e[2].centroid[1], 0.0);
        // n1's negatives are n2 only.
        assert_eq!(e[3].negatives.len(), 1);
        assert!((e[3].negatives[0] - 0.70710677).abs() < 1e-5);
    }

    use super::*;

    #[test]
    fn jsonl_roundtrip_and_errors() {
        let text = "{\"text\":\"hi\",\"label\":\"a\"}\n\n{\"text\":\"x\",\"label\":null}\n";
        let s = parse_jsonl(text, "t.jsonl").unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].label, None);
        assert_eq!(parse_jsonl(&to_jsonl(&s), "t").unwrap(), s);
        let e = parse_jsonl("{\"text\":\"a\",\"label\":null}\n{\"txt\":1}\n", "t.jsonl")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("t.jsonl:2: "), "{e}");
        let ids = label_ids(&s, &["a".to_string()], "t").unwrap();
        assert_eq!(ids, vec![Some(0), None]);
        let tagged = parse_jsonl(
            "{\"text\":\"q\",\"label\":null,\"tags\":[\"de\",\"long\"]}",
            "t",
        )
        .unwrap();
        assert_eq!(tagged[0].tags, vec!["de", "long"]);
        assert_eq!(parse_jsonl(&to_jsonl(&tagged), "t").unwrap(), tagged);
        assert!(!to_jsonl(&s).contains("tags"), "no tags, no field");
        let bad = parse_jsonl("{\"text\":\"q\",\"label\":\"zz\"}", "t").unwrap();
        assert!(label_ids(&bad, &["a".to_string()], "t.jsonl")
            .unwrap_err()
            .to_string()
            .contains("t.jsonl:1: label `zz`"));
    }

    #[test]
    fn figures_per_tag() {
        let sample = |label: Option<&str>, tags: &[&str]| Sample {
            text: "q".into(),
            label: label.map(str::to_string),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            context: Vec::new(),
        };
        let samples = [
            sample(Some("a"), &["en", "long"]),
            sample(Some("a"), &["de"]),
            sample(Some("b"), &["en"]),
            sample(None, &["en"]),
            sample(None, &["de", "long"]),
        ];
        let o = |expected, predicted| metrics::Outcome {
            expected,
            predicted,
        };
        // Query 1 is right; query 2 is unrouted but its best route is right; query 3 is wrong both
        // ways; OOS query 4 is left unrouted (right), OOS query 5 is claimed by `a` (wrong).
        let outcomes = [
            o(Some(0), Some(0)),
            o(Some(0), None),
            o(Some(1), Some(0)),
            o(None, None),
            o(None, Some(0)),
        ];
        let top = [Some(0), Some(0), Some(0), Some(1), Some(0)];
        let t = by_tag(&samples, &outcomes, &top);
        let names: Vec<&str> = t.iter().map(|r| r.tag.as_str()).collect();
        assert_eq!(names, ["de", "en", "long"]);
        let de = &t[0];
        assert_eq!((de.in_scope, de.out_of_scope), (1, 1));
        assert_eq!(de.in_scope_accuracy, Some(0.0));
        assert_eq!(de.top_route_accuracy, Some(1.0));
        assert_eq!(de.oos_recall, Some(0.0));
        let en = &t[1];
        assert_eq!((en.in_scope, en.out_of_scope), (2, 1));
        assert_eq!(en.in_scope_accuracy, Some(0.5));
        assert_eq!(en.top_route_accuracy, Some(0.5));
        assert_eq!(en.oos_recall, Some(1.0));
        assert_eq!(t[2].oos_recall, Some(0.0));
        assert_eq!(
            top_route_accuracy(&outcomes, &top, |_| true),
            Some(2.0 / 3.0)
        );
        assert!(by_tag(&[sample(None, &[])], &outcomes[3..4], &top[3..4]).is_empty());
    }
}

/// Evidence for calibration: each vector's similarity to every route prototype, its `k` nearest
/// exemplars and its most similar negative exemplars (as many as `matching.negative_neighbours` may ask).
pub fn collect_evidence(
    index: &crate::index::RouteIndex,
    k: usize,
    vectors: &[Vec<f32>],
    labels: &[Option<usize>],
) -> Vec<calibrate::Evidence> {
    vectors
        .iter()
        .zip(labels)
        .map(|(v, &label)| evidence_of(index, k, v, label))
        .collect()
}

/// One query's evidence against the whole index (see [`collect_evidence`]).
fn evidence_of(
    index: &crate::index::RouteIndex,
    k: usize,
    v: &[f32],
    label: Option<usize>,
) -> calibrate::Evidence {
    calibrate::Evidence {
        label,
        centroid: index.centroid_scores(v),
        hits: index
            .search(v, k)
            .into_iter()
            .map(|h| (index.exemplar_route(h.id), h.similarity))
            .collect(),
        late: None,
        negatives: index.negative_similarities(v, crate::config::MAX_NEGATIVE_NEIGHBOURS),
    }
}

/// Evidence from the config alone, for calibrating where no labelled traffic exists: every exemplar as an
/// in-scope query of its route, scored against the index without itself (leave-one-out: its route's
/// prototype is re-computed without it and it is not its own neighbour), and every `out_of_scope`
/// example as an out-of-scope query, its penalty computed from the other negatives. Exemplars are what
/// operators think a route's prompts look like, so this is optimistic about in-scope traffic; the
/// figures say how a threshold splits the config's own examples, which is what `calibrate` needs to
/// move it from a default that fits nobody's routes.
pub fn leave_one_out_evidence(
    index: &crate::index::RouteIndex,
    k: usize,
) -> Vec<calibrate::Evidence> {
    let dim = index.dim();
    let n_routes = index.routes().len();
    // Each route's sum of exemplar vectors: its prototype's direction, and what leaving one out changes.
    let mut sums = vec![vec![0f32; dim]; n_routes];
    for id in 0..index.len() {
        for (s, x) in sums[index.exemplar_route(id)]
            .iter_mut()
            .zip(index.exemplar_vector(id))
        {
            *s += x;
        }
    }
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    let mut out = Vec::with_capacity(index.len() + index.negative_count());
    for id in 0..index.len() {
        let v = index.exemplar_vector(id);
        let r = index.exemplar_route(id);
        let mut centroid = index.centroid_scores(v);
        // cos(v, S - v) = (v.S - v.v) / |S - v|; a route's only exemplar leaves no prototype behind.
        let (vs, vv, ss) = (dot(v, &sums[r]), dot(v, v), dot(&sums[r], &sums[r]));
        let rest = (ss - 2.0 * vs + vv).max(0.0).sqrt();
        centroid[r] = if rest > 1e-6 { (vs - vv) / rest } else { 0.0 };
        let hits = index
            .search(v, k + 1)
            .into_iter()
            .filter(|h| h.id != id)
            .take(k)
            .map(|h| (index.exemplar_route(h.id), h.similarity))
            .collect();
        out.push(calibrate::Evidence {
            label: Some(r),
            centroid,
            hits,
            late: None,
            negatives: index.negative_similarities(v, crate::config::MAX_NEGATIVE_NEIGHBOURS),
        });
    }
    for (i, v) in index.negative_vectors().enumerate() {
        // The other negatives only: the example itself would be its own nearest, at similarity 1.
        let mut negatives: Vec<f32> = index
            .negative_vectors()
            .enumerate()
            .filter(|&(j, _)| j != i)
            .map(|(_, n)| dot(v, n))
            .collect();
        negatives.sort_by(|a, b| b.total_cmp(a));
        negatives.truncate(crate::config::MAX_NEGATIVE_NEIGHBOURS);
        out.push(calibrate::Evidence {
            negatives,
            ..evidence_of(index, k, v, None)
        });
    }
    out
}

/// Adds token-level evidence (`aggregation: late`) to `evidence`: `queries[i]` holds the token vectors of
/// the query behind `evidence[i]`. Needs an index built with [`crate::index::RouteIndex::with_late`];
/// without one, or for a query without tokens, the evidence is left as it is.
pub fn add_late_evidence(
    evidence: &mut [calibrate::Evidence],
    index: &crate::index::RouteIndex,
    queries: &[Option<crate::index::LateQuery>],
    shortlist: usize,
) {
    let Some(late) = index.late() else { return };
    for (e, q) in evidence.iter_mut().zip(queries) {
        e.late = q.as_ref().map(|q| late.evidence(q, shortlist));
    }
}

/// A wrong decision with what the router saw, so an operator knows which utterances to add.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorCase {
    /// The query.
    pub text: String,
    /// The right route (`None`: out of scope).
    pub expected: Option<String>,
    /// The matched route (`None`: unrouted).
    pub predicted: Option<String>,
    /// The best candidate's score.
    pub score: f32,
    /// The nearest exemplars.
    pub neighbours: Vec<crate::router::Neighbour>,
}

/// The figures of one tag's queries (see [`Sample::tags`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TagReport {
    /// The tag.
    pub tag: String,
    /// Tagged queries with a route.
    pub in_scope: usize,
    /// Tagged out-of-scope queries.
    pub out_of_scope: usize,
    /// In-scope accuracy over the tagged queries (`None` without in-scope ones).
    pub in_scope_accuracy: Option<f64>,
    /// OOS recall over the tagged queries (`None` without OOS ones).
    pub oos_recall: Option<f64>,
    /// In-scope queries whose best-scoring route is theirs, thresholds ignored (`None` without in-scope
    /// ones): what a better threshold could at most reach.
    pub top_route_accuracy: Option<f64>,
}

/// The result of evaluating a snapshot on a labelled set.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    /// The figures.
    #[serde(flatten)]
    pub report: metrics::Report,
    /// In-scope queries whose best-scoring route is theirs, thresholds ignored.
    pub top_route_accuracy: f64,
    /// The figures per tag, in tag order (empty when no query has tags).
    pub by_tag: Vec<TagReport>,
    /// Every wrong decision, in data order.
    pub errors: Vec<ErrorCase>,
    /// Per-query decision time (search + aggregation), microseconds.
    #[serde(skip)]
    pub decide_micros: Vec<f64>,
}

/// Decides every embedded query with `snapshot` (exactly as the server does) and scores the decisions.
pub fn evaluate(
    snapshot: &crate::router::Snapshot,
    samples: &[Sample],
    labels: &[Option<usize>],
    vectors: &[Vec<f32>],
    evidence_k: usize,
) -> Evaluation {
    evaluate_with(snapshot, samples, labels, vectors, &[], &[], evidence_k)
}

/// [`evaluate`] with each query's token vectors (`late[i]` for `vectors[i]`), which `aggregation: late`
/// decides with, and the vectors of its conversation's earlier user turns (`context[i]`, newest first);
/// an empty slice gives none.
pub fn evaluate_with(
    snapshot: &crate::router::Snapshot,
    samples: &[Sample],
    labels: &[Option<usize>],
    vectors: &[Vec<f32>],
    late: &[Option<crate::index::LateQuery>],
    context: &[Vec<Vec<f32>>],
    evidence_k: usize,
) -> Evaluation {
    let names = snapshot.index.routes();
    let by_name: std::collections::HashMap<&str, usize> = names
        .iter()
        .enumerate()
        .map(|(i, r)| (r.as_str(), i))
        .collect();
    let mut outcomes = Vec::with_capacity(samples.len());
    let mut errors = Vec::new();
    let mut decide_micros = Vec::with_capacity(samples.len());
    let mut top = Vec::with_capacity(samples.len());
    for (i, ((s, &label), v)) in samples.iter().zip(labels).zip(vectors).enumerate() {
        let t0 = std::time::Instant::now();
        let mut d = snapshot.decide_with(v, late.get(i).and_then(Option::as_ref), evidence_k);
        if let Some(c) = context.get(i).filter(|c| !c.is_empty()) {
            if snapshot.wants_context(&d) {
                d = snapshot.decide_in_context(d, v, c, evidence_k);
            }
        }
        decide_micros.push(t0.elapsed().as_secs_f64() * 1e6);
        let predicted = if d.matched {
            d.route.as_deref().and_then(|r| by_name.get(r).copied())
        } else {
            None
        };
        top.push(
            d.candidates
                .first()
                .and_then(|c| by_name.get(c.route.as_str()).copied()),
        );
        outcomes.push(metrics::Outcome {
            expected: label,
            predicted,
        });
        if predicted != label {
            errors.push(ErrorCase {
                text: s.text.clone(),
                expected: s.label.clone(),
                predicted: predicted.map(|p| names[p].clone()),
                score: d.score,
                neighbours: d.neighbours,
            });
        }
    }
    Evaluation {
        report: metrics::report(names, &outcomes),
        top_route_accuracy: top_route_accuracy(&outcomes, &top, |_| true).unwrap_or(0.0),
        by_tag: by_tag(samples, &outcomes, &top),
        errors,
        decide_micros,
    }
}

/// Share of the in-scope outcomes kept by `keep` whose best-scoring route (`top[i]`) is the expected one.
fn top_route_accuracy(
    outcomes: &[metrics::Outcome],
    top: &[Option<usize>],
    keep: impl Fn(usize) -> bool,
) -> Option<f64> {
    let (mut n, mut right) = (0, 0);
    for (i, (o, t)) in outcomes.iter().zip(top).enumerate() {
        if let (Some(e), true) = (o.expected, keep(i)) {
            n += 1;
            right += usize::from(*t == Some(e));
        }
    }
    (n > 0).then(|| right as f64 / n as f64)
}

/// The figures of each tag that some sample carries, in tag order.
fn by_tag(
    samples: &[Sample],
    outcomes: &[metrics::Outcome],
    top: &[Option<usize>],
) -> Vec<TagReport> {
    let tags: std::collections::BTreeSet<&str> = samples
        .iter()
        .flat_map(|s| s.tags.iter().map(String::as_str))
        .collect();
    tags.into_iter()
        .map(|tag| {
            let has = |i: usize| samples[i].tags.iter().any(|t| t == tag);
            let (mut ins, mut ins_right, mut oos, mut oos_right) = (0, 0, 0, 0);
            for (_, o) in outcomes.iter().enumerate().filter(|(i, _)| has(*i)) {
                let right = usize::from(o.expected == o.predicted);
                match o.expected {
                    Some(_) => (ins, ins_right) = (ins + 1, ins_right + right),
                    None => (oos, oos_right) = (oos + 1, oos_right + right),
                }
            }
            let ratio = |a: usize, b: usize| (b > 0).then(|| a as f64 / b as f64);
            TagReport {
                tag: tag.to_string(),
                in_scope: ins,
                out_of_scope: oos,
                in_scope_accuracy: ratio(ins_right, ins),
                oos_recall: ratio(oos_right, oos),
                top_route_accuracy: top_route_accuracy(outcomes, top, has),
            }
        })
        .collect()
}
