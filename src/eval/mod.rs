//! Quality tooling: labelled query sets, metrics, threshold/weight calibration, and the CLINC150 recipe.
//!
//! Everything here works on vectors already embedded, so one run can embed a data set once and score many
//! decision rules on it.

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
        let bad = parse_jsonl("{\"text\":\"q\",\"label\":\"zz\"}", "t").unwrap();
        assert!(label_ids(&bad, &["a".to_string()], "t.jsonl")
            .unwrap_err()
            .to_string()
            .contains("t.jsonl:1: label `zz`"));
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
        .map(|(v, &label)| calibrate::Evidence {
            label,
            centroid: index.centroid_scores(v),
            hits: index
                .search(v, k)
                .into_iter()
                .map(|h| (index.exemplar_route(h.id), h.similarity))
                .collect(),
            late: None,
            negatives: index.negative_similarities(v, crate::config::MAX_NEGATIVE_NEIGHBOURS),
        })
        .collect()
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

/// The result of evaluating a snapshot on a labelled set.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    /// The figures.
    #[serde(flatten)]
    pub report: metrics::Report,
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
    evaluate_with(snapshot, samples, labels, vectors, &[], evidence_k)
}

/// [`evaluate`] with each query's token vectors (`late[i]` for `vectors[i]`), which `aggregation: late`
/// decides with; an empty slice gives none.
pub fn evaluate_with(
    snapshot: &crate::router::Snapshot,
    samples: &[Sample],
    labels: &[Option<usize>],
    vectors: &[Vec<f32>],
    late: &[Option<crate::index::LateQuery>],
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
    for (i, ((s, &label), v)) in samples.iter().zip(labels).zip(vectors).enumerate() {
        let t0 = std::time::Instant::now();
        let d = snapshot.decide_with(v, late.get(i).and_then(Option::as_ref), evidence_k);
        decide_micros.push(t0.elapsed().as_secs_f64() * 1e6);
        let predicted = if d.matched {
            d.route.as_deref().and_then(|r| by_name.get(r).copied())
        } else {
            None
        };
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
        errors,
        decide_micros,
    }
}
