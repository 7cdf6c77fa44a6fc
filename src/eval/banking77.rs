//! Banking77 (Casanueva et al., 2020; CC BY 4.0) as a route set and labelled query files, read from the
//! public `train.csv` and `test.csv` (columns `text,category`) in a folder the user gives.
//!
//! The recipe mirrors CLINC150's: one route per category, in first-appearance order in `train.csv`, whose
//! exemplars are the category's first K train utterances in file order. Banking77 has no validation split
//! and no out-of-scope queries, so val is the next [`VAL_PER_INTENT`] train utterances of each category
//! (never exemplars, never test), and test is `test.csv`.

use std::collections::HashMap;
use std::path::Path;

use crate::config::{Config, MatchingConfig, RouteConfig};

use super::{EvalError, Sample};

/// Train utterances per category, after the K exemplars, that go to val.
pub const VAL_PER_INTENT: usize = 20;

/// Banking77 split into the parts the recipe uses.
#[derive(Debug, Clone)]
pub struct Banking77 {
    /// The route set: one route per category, K exemplars each.
    pub config: Config,
    /// Held-out train utterances, for choosing thresholds and weights.
    pub val: Vec<Sample>,
    /// `test.csv`, for reporting.
    pub test: Vec<Sample>,
}

/// Reads `dir/train.csv` and `dir/test.csv` and applies the recipe with `k` exemplars per category
/// (`None`: every train utterance, which leaves val empty). `matching` is written into the config as is.
pub fn banking77(
    dir: &Path,
    k: Option<usize>,
    matching: MatchingConfig,
) -> Result<Banking77, EvalError> {
    let read = |name: &str| {
        let path = dir.join(name);
        let text = std::fs::read_to_string(&path).map_err(|source| EvalError::Io {
            path: path.clone(),
            source,
        })?;
        parse_csv(&text, &path.display().to_string())
    };
    let (train, test) = (read("train.csv")?, read("test.csv")?);
    banking77_from_rows(&train, &test, k, matching).map_err(|message| EvalError::Data {
        path: dir.join("test.csv").display().to_string(),
        line: 0,
        message,
    })
}

/// [`banking77`] on rows already read: `(text, category)` pairs of train and test.
pub fn banking77_from_rows(
    train: &[(String, String)],
    test: &[(String, String)],
    k: Option<usize>,
    matching: MatchingConfig,
) -> Result<Banking77, String> {
    let mut routes: Vec<RouteConfig> = Vec::new();
    let mut by_name: HashMap<&str, usize> = HashMap::new();
    let mut val = Vec::new();
    let mut held = Vec::new();
    for (text, category) in train {
        let r = *by_name.entry(category).or_insert_with(|| {
            routes.push(RouteConfig {
                name: category.clone(),
                description: String::new(),
                threshold: None,
                utterances: Vec::new(),
                strategy: Default::default(),
                sticky_key: None,
                cascade: Default::default(),
                targets: Vec::new(),
                private_on_sensitive: false,
            });
            held.push(0);
            routes.len() - 1
        });
        if k.is_none_or(|k| routes[r].utterances.len() < k) {
            routes[r].utterances.push(text.clone());
        } else if held[r] < VAL_PER_INTENT {
            held[r] += 1;
            val.push(Sample {
                text: text.clone(),
                label: Some(category.clone()),
                tags: Vec::new(),
                context: Vec::new(),
            });
        }
    }
    let test = test
        .iter()
        .map(|(text, category)| {
            if !by_name.contains_key(category.as_str()) {
                return Err(format!("category `{category}` has no train utterance"));
            }
            Ok(Sample {
                text: text.clone(),
                label: Some(category.clone()),
                tags: Vec::new(),
                context: Vec::new(),
            })
        })
        .collect::<Result<_, _>>()?;
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
    Ok(Banking77 { config, val, test })
}

/// Parses CSV text (RFC 4180: quoted fields, `""` inside quotes, line breaks inside quotes, CRLF or LF)
/// whose header names a `text` and a `category` column, into `(text, category)` rows. `file` names it in
/// errors, which give the 1-based line where the bad record starts.
pub fn parse_csv(text: &str, file: &str) -> Result<Vec<(String, String)>, EvalError> {
    let err = |line: usize, message: String| EvalError::Data {
        path: file.to_string(),
        line,
        message,
    };
    let records = split_records(text).map_err(|(line, m)| err(line, m))?;
    let mut it = records.into_iter();
    let (_, header) = it.next().ok_or_else(|| err(0, "empty file".into()))?;
    let col = |name: &str| {
        header.iter().position(|h| h.trim() == name).ok_or_else(|| {
            err(
                1,
                format!("no `{name}` column in the header (expected `text,category`)"),
            )
        })
    };
    let (ti, ci) = (col("text")?, col("category")?);
    it.filter(|(_, r)| !(r.len() == 1 && r[0].trim().is_empty()))
        .map(|(line, r)| {
            if r.len() != header.len() {
                return Err(err(
                    line,
                    format!("{} fields, the header has {}", r.len(), header.len()),
                ));
            }
            let (t, c) = (r[ti].trim(), r[ci].trim());
            if t.is_empty() || c.is_empty() {
                return Err(err(line, "blank text or category".into()));
            }
            Ok((t.to_string(), c.to_string()))
        })
        .collect()
}

/// A CSV record's fields, with the 1-based line it starts on.
type Record = (usize, Vec<String>);

/// Splits CSV text into records of fields, each with the 1-based line it starts on.
fn split_records(text: &str) -> Result<Vec<Record>, (usize, String)> {
    let mut records = Vec::new();
    let (mut fields, mut field) = (Vec::new(), String::new());
    let (mut line, mut start) = (1, 1);
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => {
                line += usize::from(c == '\n');
                field.push(c);
            }
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => fields.push(std::mem::take(&mut field)),
            (false, '\r') if chars.peek() == Some(&'\n') => {}
            (false, '\n') => {
                fields.push(std::mem::take(&mut field));
                records.push((start, std::mem::take(&mut fields)));
                line += 1;
                start = line;
            }
            (false, c) => field.push(c),
        }
    }
    if quoted {
        return Err((start, "unterminated quoted field".into()));
    }
    if !field.is_empty() || !fields.is_empty() {
        fields.push(field);
        records.push((start, fields));
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    // A tiny file in Banking77's layout, written for this test: quoted fields with commas, an escaped
    // quote, a CRLF line end and a line break inside quotes.
    const TRAIN: &str = "text,category\n\
        How do I activate my card?,activate_my_card\n\
        \"My card, the new one, won't activate\",activate_my_card\r\n\
        where is my card,card_arrival\n\
        Activate card please,activate_my_card\n\
        \"It says \"\"declined\"\"\nagain\",declined_card_payment\n\
        card still not here,card_arrival\n";
    const TEST: &str = "text,category\nhow long does a card take to arrive,card_arrival\n";

    #[test]
    fn csv_quotes_commas_and_line_breaks() {
        let rows = parse_csv(TRAIN, "train.csv").unwrap();
        assert_eq!(rows.len(), 6);
        assert_eq!(rows[1].0, "My card, the new one, won't activate");
        assert_eq!(rows[1].1, "activate_my_card");
        assert_eq!(rows[4].0, "It says \"declined\"\nagain");
        assert_eq!(rows[5].1, "card_arrival");
        // Column order comes from the header.
        let swapped = parse_csv("category,text\nx,hello\n", "t").unwrap();
        assert_eq!(swapped, vec![("hello".to_string(), "x".to_string())]);
    }

    #[test]
    fn csv_errors_name_their_line() {
        let e = parse_csv("text,label\na,b\n", "t.csv")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("t.csv:1: no `category` column"), "{e}");
        let e = parse_csv("text,category\na,b\nc\n", "t.csv")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("t.csv:3: 1 fields"), "{e}");
        let e = parse_csv("text,category\na,b\n\"open,c\n", "t.csv")
            .unwrap_err()
            .to_string();
        assert!(e.contains("t.csv:3: unterminated"), "{e}");
    }

    #[test]
    fn first_k_are_exemplars_the_rest_val() {
        let train = parse_csv(TRAIN, "train.csv").unwrap();
        let test = parse_csv(TEST, "test.csv").unwrap();
        let d = banking77_from_rows(&train, &test, Some(1), MatchingConfig::default()).unwrap();
        let names: Vec<&str> = d.config.routes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            ["activate_my_card", "card_arrival", "declined_card_payment"]
        );
        assert_eq!(
            d.config.routes[0].utterances,
            vec!["How do I activate my card?"]
        );
        let val: Vec<(&str, &str)> = d
            .val
            .iter()
            .map(|s| (s.text.as_str(), s.label.as_deref().unwrap()))
            .collect();
        assert_eq!(
            val,
            [
                ("My card, the new one, won't activate", "activate_my_card"),
                ("Activate card please", "activate_my_card"),
                ("card still not here", "card_arrival"),
            ]
        );
        assert_eq!(d.test.len(), 1);
        assert_eq!(d.test[0].label.as_deref(), Some("card_arrival"));
        let all = banking77_from_rows(&train, &test, None, MatchingConfig::default()).unwrap();
        assert_eq!(all.config.routes[0].utterances.len(), 3);
        assert!(all.val.is_empty());
        let bad = parse_csv("text,category\nq,nope\n", "t").unwrap();
        assert!(
            banking77_from_rows(&train, &bad, Some(1), MatchingConfig::default())
                .unwrap_err()
                .contains("`nope`")
        );
    }

    #[test]
    fn reads_a_folder_and_writes_loadable_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("train.csv"), TRAIN).unwrap();
        std::fs::write(dir.path().join("test.csv"), TEST).unwrap();
        let d = banking77(dir.path(), Some(2), MatchingConfig::default()).unwrap();
        let out = dir.path().join("out");
        super::super::dataset::write_parts(&d.config, &d.val, &d.test, &out, "Banking77 test")
            .unwrap();
        let loaded = crate::config::load_file(&out.join("routes.yaml")).unwrap();
        assert_eq!(loaded.config, d.config);
        assert_eq!(
            super::super::read_jsonl(&out.join("test.jsonl")).unwrap(),
            d.test
        );
        let missing = banking77(&dir.path().join("nope"), Some(2), MatchingConfig::default())
            .unwrap_err()
            .to_string();
        assert!(missing.contains("train.csv"), "{missing}");
    }
}
