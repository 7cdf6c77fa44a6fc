//! Writing calibrated values back into `routes.yaml` without losing its comments or layout.
//!
//! Scalars that already exist are replaced where they stand; a missing key is inserted as the first key of
//! its (block-style) parent mapping, at the same indentation; a key to remove is removed with its line. The
//! result is re-parsed and must equal the wanted config, else the edit is refused (`None`) and the caller
//! falls back to re-serialising the whole file. The new file replaces the old one atomically (temp file,
//! fsync, rename) and the old one is kept as `<file>.bak`.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::config::{parse_str, Config, PositionMap};

/// A change to one scalar at a YAML path (`matching.threshold`, `routes[3].threshold`).
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Set the value (plain YAML scalar text such as `0.43` or `hybrid`), inserting the key if missing.
    Set(String, String),
    /// Remove the key and its value if present.
    Remove(String),
}

/// Byte offset of a 1-based line and (character) column.
fn offset(source: &str, line: usize, column: usize) -> Option<usize> {
    let mut start = 0;
    for _ in 1..line {
        start += source[start..].find('\n')? + 1;
    }
    let rest = &source[start..];
    let skip = rest
        .char_indices()
        .nth(column - 1)
        .map(|(i, _)| i)
        .unwrap_or(rest.len());
    Some(start + skip)
}

fn is_plain_token(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | '_' | '/'))
}

/// Applies `changes` to `source` in place; `None` when any change cannot be made safely or the result does not
/// parse to `want`.
pub fn apply(source: &str, changes: &[Change], want: &Config) -> Option<String> {
    let map = PositionMap::build(source);
    // (byte start, byte end, replacement), applied back to front.
    let mut splices: Vec<(usize, usize, String)> = Vec::new();
    for change in changes {
        match change {
            Change::Set(path, value) => {
                if !is_plain_token(value) {
                    return None;
                }
                if let Some(pos) = map.get(path) {
                    let start = offset(source, pos.line, pos.column)?;
                    let line_end = source[start..]
                        .find('\n')
                        .map_or(source.len(), |i| start + i);
                    let rest = &source[start..line_end];
                    let token_len = rest.find(" #").unwrap_or(rest.len());
                    let token = rest[..token_len].trim_end();
                    if !is_plain_token(token) {
                        return None;
                    }
                    splices.push((start, start + token.len(), value.clone()));
                } else {
                    let (parent, key) = match path.rfind('.') {
                        Some(cut) => (&path[..cut], &path[cut + 1..]),
                        None => return None,
                    };
                    let pos = map.get(parent)?;
                    let at = offset(source, pos.line, pos.column)?;
                    // Block mappings are placed at their first key; a flow mapping starts with `{`.
                    if source[at..].starts_with('{') || source[at..].starts_with('\n') {
                        return None;
                    }
                    let indent = " ".repeat(pos.column - 1);
                    splices.push((at, at, format!("{key}: {value}\n{indent}")));
                }
            }
            Change::Remove(path) => {
                let Some(pos) = map.get(path) else { continue };
                let value_at = offset(source, pos.line, pos.column)?;
                let line_start = source[..value_at].rfind('\n').map_or(0, |i| i + 1);
                let line_end = source[value_at..]
                    .find('\n')
                    .map_or(source.len(), |i| value_at + i + 1);
                let key = path.rsplit('.').next()?;
                // Only a line that holds nothing but `key: value [# comment]`.
                if source[line_start..value_at].trim() != format!("{key}:") {
                    return None;
                }
                splices.push((line_start, line_end, String::new()));
            }
        }
    }
    splices.sort_by_key(|s| std::cmp::Reverse(s.0));
    if splices.windows(2).any(|w| w[1].1 > w[0].0) {
        return None; // overlapping edits
    }
    let mut out = source.to_string();
    for (start, end, text) in splices {
        out.replace_range(start..end, &text);
    }
    match parse_str(&out, "<edited>") {
        Ok(c) if &c == want => Some(out),
        _ => None,
    }
}

/// Writes `text` to `path` atomically: the old file is copied to `<path>.bak`, the new text goes to a temp file
/// in the same directory, is fsynced and renamed over `path`. Returns the backup's path.
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<PathBuf> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("not a file path"))?
        .to_string_lossy()
        .into_owned();
    let backup = dir.join(format!("{name}.bak"));
    std::fs::copy(path, &backup)?;
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        if let Ok(meta) = std::fs::metadata(path) {
            std::fs::set_permissions(&tmp, meta.permissions())?;
        }
        std::fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map(|()| backup)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "# top comment\nmatching:\n  top_k: 10   # neighbours\n  threshold: 0.4 # global\nroutes:\n  # first\n  - name: a\n    utterances: [x]\n  - name: b\n    threshold: 0.3\n    utterances:\n      - y\n";

    fn want(f: impl FnOnce(&mut Config)) -> Config {
        let mut c = parse_str(SRC, "t").unwrap();
        f(&mut c);
        c
    }

    #[test]
    fn edits_keep_comments() {
        let w = want(|c| {
            c.matching.threshold = 0.43;
            c.routes[0].threshold = Some(0.5);
            c.routes[1].threshold = Some(0.25);
        });
        let out = apply(
            SRC,
            &[
                Change::Set("matching.threshold".into(), "0.43".into()),
                Change::Set("routes[0].threshold".into(), "0.5".into()),
                Change::Set("routes[1].threshold".into(), "0.25".into()),
            ],
            &w,
        )
        .unwrap();
        assert!(out.contains("  threshold: 0.43 # global\n"), "{out}");
        assert!(out.contains("  - threshold: 0.5\n    name: a\n"), "{out}");
        assert!(out.contains("    threshold: 0.25\n"), "{out}");
        assert!(out.starts_with("# top comment\n"));
        assert!(out.contains("  # first\n"));
    }

    #[test]
    fn removes_and_inserts_into_matching() {
        let w = want(|c| {
            c.routes[1].threshold = None;
            c.matching.exact_search_max = 7;
        });
        let out = apply(
            SRC,
            &[
                Change::Remove("routes[1].threshold".into()),
                Change::Set("matching.exact_search_max".into(), "7".into()),
            ],
            &w,
        )
        .unwrap();
        assert!(!out.contains("0.3"), "{out}");
        assert!(
            out.contains("matching:\n  exact_search_max: 7\n  top_k: 10"),
            "{out}"
        );
    }

    #[test]
    fn sets_a_model_path_in_place() {
        // `semroute tune --set-model` writes a folder path; it must not cost the file its comments.
        let src = "encoder:\n  model: sentence-transformers/all-MiniLM-L6-v2 # the default\nroutes:\n  - name: a\n    utterances: [x]\n";
        let mut w = parse_str(src, "t").unwrap();
        w.encoder.model = "models/tuned-k10".into();
        let out = apply(
            src,
            &[Change::Set(
                "encoder.model".into(),
                "models/tuned-k10".into(),
            )],
            &w,
        )
        .unwrap();
        assert!(
            out.contains("  model: models/tuned-k10 # the default\n"),
            "{out}"
        );
        // A path YAML would not read back as the same plain string is refused, not mangled.
        w.encoder.model = "my models: v2".into();
        assert!(apply(
            src,
            &[Change::Set("encoder.model".into(), "my models: v2".into())],
            &w
        )
        .is_none());
    }

    #[test]
    fn refuses_what_it_cannot_do_safely() {
        // Quoted scalars are not replaced in place.
        let quoted =
            "matching:\n  aggregation: \"centroid\"\nroutes:\n  - name: a\n    utterances: [x]\n";
        let mut w = parse_str(quoted, "t").unwrap();
        w.matching.aggregation = crate::config::Aggregation::Max;
        assert!(apply(
            quoted,
            &[Change::Set("matching.aggregation".into(), "max".into())],
            &w
        )
        .is_none());
        // A result that does not parse to the wanted config is refused.
        let w = want(|c| c.matching.threshold = 0.9);
        assert!(apply(
            SRC,
            &[Change::Set("matching.threshold".into(), "0.8".into())],
            &w
        )
        .is_none());
    }

    #[test]
    fn atomic_write_keeps_backup() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("routes.yaml");
        std::fs::write(&p, "old").unwrap();
        let bak = write_atomically(&p, "new").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new");
        assert_eq!(std::fs::read_to_string(bak).unwrap(), "old");
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 2);
    }
}
