//! CLINC150 (Larson et al., 2019) as a route set and labelled query files, with the recipe of
//! `../shared/data/clinc150/README.md`: one route per intent whose exemplars are the first K train utterances
//! of the intent in file order; val + oos_val for calibration; test + oos_test for the report.

use std::collections::HashMap;
use std::path::Path;

use crate::config::{Config, MatchingConfig, RouteConfig};

use super::{EvalError, Sample};

/// The label CLINC150 gives out-of-scope queries.
pub const OOS_LABEL: &str = "oos";

/// CLINC150 split into the parts the recipe uses.
#[derive(Debug, Clone)]
pub struct Clinc150 {
    /// The route set: one route per intent (first appearance order in `train`), K exemplars each.
    pub config: Config,
    /// val + oos_val: for choosing thresholds and weights.
    pub val: Vec<Sample>,
    /// test + oos_test: for reporting.
    pub test: Vec<Sample>,
    /// oos_train: the training split's out-of-scope utterances, which `semroute dataset --oos-negatives`
    /// writes as the config's `out_of_scope` (negative exemplars). Not part of the recipe's routes.
    pub oos_train: Vec<String>,
}

/// Reads `data_full.json` and applies the recipe with `k` exemplars per intent (`None`: every train
/// utterance). `matching` is written into the config as is.
pub fn clinc150(
    path: &Path,
    k: Option<usize>,
    matching: MatchingConfig,
) -> Result<Clinc150, EvalError> {
    let text = std::fs::read_to_string(path).map_err(|e| EvalError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    clinc150_from_str(&text, k, matching).map_err(|message| EvalError::Data {
        path: path.display().to_string(),
        line: 0,
        message,
    })
}

/// [`clinc150`] on the file's text.
pub fn clinc150_from_str(
    json: &str,
    k: Option<usize>,
    matching: MatchingConfig,
) -> Result<Clinc150, String> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let pairs = |key: &str| -> Result<Vec<(String, String)>, String> {
        let list = v[key]
            .as_array()
            .ok_or_else(|| format!("no `{key}` list (is this CLINC150's data_full.json?)"))?;
        list.iter()
            .enumerate()
            .map(|(i, p)| match (p[0].as_str(), p[1].as_str()) {
                (Some(t), Some(l)) => Ok((t.to_string(), l.to_string())),
                _ => Err(format!("{key}[{i}] is not a [text, intent] pair")),
            })
            .collect()
    };
    let mut routes: Vec<RouteConfig> = Vec::new();
    let mut by_name: HashMap<String, usize> = HashMap::new();
    for (text, intent) in pairs("train")? {
        let r = *by_name.entry(intent.clone()).or_insert_with(|| {
            routes.push(RouteConfig {
                name: intent.clone(),
                description: String::new(),
                threshold: None,
                utterances: Vec::new(),
                strategy: Default::default(),
                sticky_key: None,
                cascade: Default::default(),
                targets: Vec::new(),
                private_on_sensitive: false,
            });
            routes.len() - 1
        });
        if k.is_none_or(|k| routes[r].utterances.len() < k) {
            routes[r].utterances.push(text);
        }
    }
    let samples = |ins: &str, oos: &str| -> Result<Vec<Sample>, String> {
        let mut out = Vec::new();
        for (text, label) in pairs(ins)?.into_iter().chain(pairs(oos)?) {
            let label = (label != OOS_LABEL).then_some(label);
            if let Some(l) = &label {
                if !by_name.contains_key(l) {
                    return Err(format!("{ins}: intent `{l}` has no train utterance"));
                }
            }
            out.push(Sample {
                text,
                label,
                tags: Vec::new(),
                context: Vec::new(),
            });
        }
        Ok(out)
    };
    let oos_train = pairs("oos_train")?.into_iter().map(|(t, _)| t).collect();
    let val = samples("val", "oos_val")?;
    let test = samples("test", "oos_test")?;
    let config = Config {
        encoder: Default::default(),
        matching,
        limits: Default::default(),
        http: Default::default(),
        default_route: None,
        routes,
        upstream: Default::default(),
        providers: Vec::new(),
        models: Vec::new(),
        out_of_scope: Vec::new(),
        guard: Default::default(),
        rules: Vec::new(),
        cluster: None,
    };
    Ok(Clinc150 {
        config,
        val,
        test,
        oos_train,
    })
}

/// Writes `routes.yaml`, `val.jsonl` and `test.jsonl` for `data` into `dir` (created if missing).
pub fn write(data: &Clinc150, dir: &Path, header: &str) -> Result<(), EvalError> {
    write_parts(&data.config, &data.val, &data.test, dir, header)
}

/// Writes `config` as `routes.yaml` (with `header` as its comment lines), `val` and `test` as JSONL into
/// `dir` (created if missing).
pub fn write_parts(
    config: &Config,
    val: &[Sample],
    test: &[Sample],
    dir: &Path,
    header: &str,
) -> Result<(), EvalError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| EvalError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let yaml = serde_yaml::to_string(config).map_err(|e| EvalError::Data {
        path: dir.join("routes.yaml").display().to_string(),
        line: 0,
        message: e.to_string(),
    })?;
    let mut text = String::new();
    for line in header.lines() {
        text.push_str("# ");
        text.push_str(line);
        text.push('\n');
    }
    text.push_str(&yaml);
    let p = dir.join("routes.yaml");
    std::fs::write(&p, text).map_err(io(&p))?;
    for (name, set) in [("val.jsonl", val), ("test.jsonl", test)] {
        let p = dir.join(name);
        std::fs::write(&p, super::to_jsonl(set)).map_err(io(&p))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINI: &str = r#"{
        "train": [["a1","A"],["b1","B"],["a2","A"],["a3","A"],["b2","B"]],
        "val": [["av","A"]], "oos_val": [["ov","oos"]],
        "test": [["bt","B"]], "oos_test": [["ot","oos"]], "oos_train": [["on1","oos"],["on2","oos"]]
    }"#;

    #[test]
    fn first_k_in_file_order() {
        let d = clinc150_from_str(MINI, Some(2), MatchingConfig::default()).unwrap();
        let r = &d.config.routes;
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].name.as_str(), r[1].name.as_str()), ("A", "B"));
        assert_eq!(r[0].utterances, vec!["a1", "a2"]);
        assert_eq!(r[1].utterances, vec!["b1", "b2"]);
        assert_eq!(d.val.len(), 2);
        assert_eq!(d.val[0].label.as_deref(), Some("A"));
        assert_eq!(d.val[1].label, None);
        assert_eq!(d.test[0].label.as_deref(), Some("B"));
        assert_eq!(d.oos_train, vec!["on1", "on2"]);
        assert!(d.config.out_of_scope.is_empty());
        let all = clinc150_from_str(MINI, None, MatchingConfig::default()).unwrap();
        assert_eq!(all.config.routes[0].utterances.len(), 3);
    }

    #[test]
    fn written_files_load_back() {
        let mut d = clinc150_from_str(MINI, Some(1), MatchingConfig::default()).unwrap();
        d.config.out_of_scope = d.oos_train.clone();
        let dir = tempfile::tempdir().unwrap();
        write(&d, dir.path(), "CLINC150 test\nsecond line").unwrap();
        let loaded = crate::config::load_file(&dir.path().join("routes.yaml")).unwrap();
        assert_eq!(loaded.config, d.config);
        let val = super::super::read_jsonl(&dir.path().join("val.jsonl")).unwrap();
        assert_eq!(val, d.val);
    }

    #[test]
    fn unknown_intent_is_an_error() {
        let bad = MINI.replace(r#"["av","A"]"#, r#"["av","Z"]"#);
        assert!(clinc150_from_str(&bad, Some(2), MatchingConfig::default())
            .unwrap_err()
            .contains("`Z`"));
    }
}
