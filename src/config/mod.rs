//! `routes.yaml`: schema, loading and validation.
//!
//! Every error names the file, line and column, and the field it is about, so an operator can fix it without
//! guessing. Validation is all-or-nothing: a config that fails is never partially applied.

mod locate;
mod schema;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

pub use locate::{Position, PositionMap};
pub use schema::{Aggregation, Config, EncoderConfig, LimitsConfig, MatchingConfig, RouteConfig};

/// Errors from reading or validating a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why reading failed.
        source: std::io::Error,
    },
    /// The YAML is malformed or does not fit the schema (wrong type, unknown field, missing field).
    #[error("{file}:{line}:{column}: {message}")]
    Parse {
        /// The file (or `<inline>`).
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// The YAML parses but breaks a rule (duplicate names, blank utterances, ...).
    #[error("{file}:{line}:{column}: {field}: {message}")]
    Invalid {
        /// The file (or `<inline>`).
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The offending field, as a path (`routes[2].utterances[0]`).
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// A validated configuration and the file it came from.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The validated configuration.
    pub config: Config,
    /// The file it was read from; `None` for inline sources.
    pub path: Option<PathBuf>,
}

impl LoadedConfig {
    /// The directory relative paths in the config resolve against (the config file's directory).
    pub fn base_dir(&self) -> PathBuf {
        self.path
            .as_deref()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    }
}

/// Reads and validates a configuration file.
pub fn load_file(path: &Path) -> Result<LoadedConfig, ConfigError> {
    let source = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let config = parse_str(&source, &path.display().to_string())?;
    Ok(LoadedConfig {
        config,
        path: Some(path.to_path_buf()),
    })
}

/// Parses and validates YAML text; `file` names the source in error messages.
pub fn parse_str(source: &str, file: &str) -> Result<Config, ConfigError> {
    let config: Config = serde_yaml::from_str(source).map_err(|e| parse_error(&e, file))?;
    let positions = PositionMap::build(source);
    validate(&config).map_err(|v| {
        let pos = positions.find(&v.field);
        ConfigError::Invalid {
            file: file.to_string(),
            line: pos.line,
            column: pos.column,
            field: v.field,
            message: v.message,
        }
    })?;
    Ok(config)
}

fn parse_error(e: &serde_yaml::Error, file: &str) -> ConfigError {
    let (line, column) = e
        .location()
        .map(|l| (l.line(), l.column()))
        .unwrap_or((1, 1));
    // serde_yaml appends " at line L column C" to its message; we print the position up front instead.
    let mut message = e.to_string();
    if let Some(cut) = message.rfind(" at line ") {
        message.truncate(cut);
    }
    ConfigError::Parse {
        file: file.to_string(),
        line,
        column,
        message,
    }
}

/// A rule violation before it is given a position.
struct Violation {
    field: String,
    message: String,
}

fn violation(field: impl Into<String>, message: impl Into<String>) -> Violation {
    Violation {
        field: field.into(),
        message: message.into(),
    }
}

fn check_threshold(field: String, t: f32) -> Result<(), Violation> {
    if !t.is_finite() || !(-1.0..=1.0).contains(&t) {
        return Err(violation(
            field,
            format!("threshold {t} is outside [-1, 1] (scores are cosine similarities)"),
        ));
    }
    Ok(())
}

/// Checks the rules serde cannot express. Returns the first violation, in file order.
fn validate(c: &Config) -> Result<(), Violation> {
    crate::embedding::DeviceSpec::parse(&c.encoder.device)
        .map_err(|e| violation("encoder.device", e))?;
    if c.encoder.model.trim().is_empty() {
        return Err(violation("encoder.model", "must not be empty"));
    }
    if c.encoder.max_tokens == Some(0) || c.encoder.max_tokens.is_some_and(|t| t < 3) {
        return Err(violation(
            "encoder.max_tokens",
            "must be at least 3 ([CLS], one token, [SEP])",
        ));
    }
    if c.encoder.max_batch == 0 {
        return Err(violation("encoder.max_batch", "must be at least 1"));
    }
    if c.encoder.queue_capacity == 0 {
        return Err(violation("encoder.queue_capacity", "must be at least 1"));
    }
    if c.matching.top_k == 0 || c.matching.top_k > 1000 {
        return Err(violation("matching.top_k", "must be between 1 and 1000"));
    }
    check_threshold("matching.threshold".into(), c.matching.threshold)?;
    let w = c.matching.hybrid_weight;
    if !w.is_finite() || !(0.0..=1.0).contains(&w) {
        return Err(violation(
            "matching.hybrid_weight",
            format!("{w} is outside [0, 1] (the weight of the centroid term)"),
        ));
    }
    if c.matching.hybrid_neighbours == 0 || c.matching.hybrid_neighbours > c.matching.top_k {
        return Err(violation(
            "matching.hybrid_neighbours",
            format!(
                "{} must be between 1 and matching.top_k ({})",
                c.matching.hybrid_neighbours, c.matching.top_k
            ),
        ));
    }
    let m = c.matching.margin_weight;
    if !m.is_finite() || !(0.0..=1.0).contains(&m) {
        return Err(violation(
            "matching.margin_weight",
            format!("{m} is outside [0, 1]"),
        ));
    }
    if c.limits.max_input_bytes == 0 {
        return Err(violation("limits.max_input_bytes", "must be at least 1"));
    }
    if c.routes.is_empty() {
        return Err(violation("routes", "at least one route is required"));
    }
    let mut names = HashSet::new();
    for (i, r) in c.routes.iter().enumerate() {
        if r.name.trim().is_empty() {
            return Err(violation(format!("routes[{i}].name"), "must not be blank"));
        }
        if r.name.trim() != r.name {
            return Err(violation(
                format!("routes[{i}].name"),
                format!("`{}` has leading or trailing whitespace", r.name),
            ));
        }
        if !names.insert(r.name.as_str()) {
            return Err(violation(
                format!("routes[{i}].name"),
                format!("duplicate route name `{}`", r.name),
            ));
        }
        if let Some(t) = r.threshold {
            check_threshold(format!("routes[{i}].threshold"), t)?;
        }
        if r.utterances.is_empty() {
            return Err(violation(
                format!("routes[{i}].utterances"),
                format!("route `{}` has no utterances", r.name),
            ));
        }
        for (j, u) in r.utterances.iter().enumerate() {
            if u.trim().is_empty() {
                return Err(violation(
                    format!("routes[{i}].utterances[{j}]"),
                    format!("blank utterance in route `{}`", r.name),
                ));
            }
        }
    }
    if let Some(d) = &c.default_route {
        if !names.contains(d.as_str()) {
            let mut known: Vec<_> = names.into_iter().collect();
            known.sort_unstable();
            return Err(violation(
                "default_route",
                format!("unknown route `{d}` (routes: {})", known.join(", ")),
            ));
        }
    }
    Ok(())
}

impl Config {
    /// The threshold that applies to route `name`.
    pub fn threshold_for(&self, route: &RouteConfig) -> f32 {
        route.threshold.unwrap_or(self.matching.threshold)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str =
        "routes:\n  - name: a\n    utterances: [hello]\n  - name: b\n    utterances: [bye]\n";

    #[test]
    fn defaults_apply() {
        let c = parse_str(GOOD, "t.yaml").unwrap();
        assert_eq!(c.matching.top_k, 10);
        assert_eq!(c.matching.aggregation, Aggregation::Hybrid);
        assert_eq!(c.limits.max_input_bytes, 65536);
        assert_eq!(c.encoder.device, "cpu");
    }

    #[test]
    fn hybrid_fields_validated_by_path() {
        let base = "routes:\n  - name: a\n    utterances: [x]\n";
        let ok = format!("matching:\n  aggregation: hybrid\n  hybrid_weight: 0.5\n  hybrid_neighbours: 3\n  margin_weight: 0.25\n{base}");
        let c = parse_str(&ok, "t.yaml").unwrap();
        assert_eq!(c.matching.aggregation, Aggregation::Hybrid);
        assert_eq!(c.matching.hybrid_neighbours, 3);
        for (field, bad) in [
            ("matching.hybrid_weight", "hybrid_weight: 1.5"),
            ("matching.hybrid_neighbours", "hybrid_neighbours: 0"),
            ("matching.hybrid_neighbours", "hybrid_neighbours: 11"),
            ("matching.margin_weight", "margin_weight: -0.1"),
        ] {
            let e = parse_str(&format!("matching:\n  {bad}\n{base}"), "t.yaml")
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("t.yaml:2:"), "{e}");
            assert!(e.contains(&format!("{field}: ")), "{e}");
        }
    }

    #[test]
    fn duplicate_name_points_at_second() {
        let src = "routes:\n  - name: a\n    utterances: [x]\n  - name: a\n    utterances: [y]\n";
        let e = parse_str(src, "t.yaml").unwrap_err().to_string();
        assert_eq!(e, "t.yaml:4:11: routes[1].name: duplicate route name `a`");
    }
}
