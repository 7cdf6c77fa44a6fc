//! `routes.yaml`: schema, loading and validation.
//!
//! Every error names the file, line and column, and the field it is about, so an operator can fix it without
//! guessing. Validation is all-or-nothing: a config that fails is never partially applied.

mod locate;
mod schema;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

pub use locate::{Position, PositionMap};
pub use schema::{
    Aggregation, CascadeConfig, ClusterConfig, Config, CustomDetectorConfig, DeviceSpec,
    EncoderConfig, FailMode, GuardAction, GuardConfig, HttpConfig, LimitsConfig, MatchingConfig,
    ModelConfig, OneOrMany, Precision, ProviderConfig, ProviderKind, RouteConfig, RuleConfig,
    RuleWhen, Strategy, TargetConfig, TimeoutsConfig, UpstreamConfig,
};

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
    let config: Config = parse_fragment(source, file)?;
    validate_config(&config, source, file)?;
    Ok(config)
}

/// Parses a YAML fragment (e.g. one route sent to the admin API) into `T`, with positioned errors.
pub fn parse_fragment<T: serde::de::DeserializeOwned>(
    source: &str,
    file: &str,
) -> Result<T, ConfigError> {
    serde_yaml::from_str(source).map_err(|e| parse_error(&e, file, source))
}

/// Validates an in-memory config (e.g. after an admin mutation). Positions refer to `source`, the YAML the
/// config would be written as.
pub fn validate_config(config: &Config, source: &str, file: &str) -> Result<(), ConfigError> {
    validate(config).map_err(|v| {
        let pos = PositionMap::build(source).find(&v.field);
        ConfigError::Invalid {
            file: file.to_string(),
            line: pos.line,
            column: pos.column,
            field: v.field,
            message: v.message,
        }
    })
}

/// The YAML text a config is persisted as.
pub fn to_yaml(config: &Config) -> String {
    // Serialising our own plain structs cannot fail (no maps with non-string keys, no untagged enums).
    serde_yaml::to_string(config).unwrap_or_default()
}

fn parse_error(e: &serde_yaml::Error, file: &str, source: &str) -> ConfigError {
    let (line, column) = e
        .location()
        .map(|l| (l.line(), l.column()))
        .unwrap_or((1, 1));
    ConfigError::Parse {
        file: file.to_string(),
        line,
        column,
        message: explain_yaml(&e.to_string(), source, line, column),
    }
}

/// `raw` without the " at line L column C" pieces serde_yaml embeds (for the error and its context).
fn strip_positions(raw: &str) -> String {
    let digits = |s: &str| s.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = rest.find(" at line ") {
        out.push_str(&rest[..at]);
        let mut after = &rest[at + " at line ".len()..];
        after = &after[after.len() - digits(after)..];
        if let Some(col) = after.strip_prefix(" column ") {
            after = &col[col.len() - digits(col)..];
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// The parser's message in words an operator can act on. libyaml's messages name the scanner's state
/// ("found character that cannot start any token") and repeat positions; we print the position once, up
/// front, and say what is wrong and how to fix it. Schema errors (unknown field, wrong type) pass through.
fn explain_yaml(raw: &str, source: &str, line: usize, column: usize) -> String {
    let message = strip_positions(raw);
    let at = source
        .lines()
        .nth(line.saturating_sub(1))
        .and_then(|l| l.chars().nth(column.saturating_sub(1)));
    let line_text = source.lines().nth(line.saturating_sub(1)).unwrap_or("");
    if at == Some('\t') || (message.contains("cannot start any token") && line_text.contains('\t'))
    {
        return "a tab character: YAML indents with spaces only; replace the tab with spaces"
            .into();
    }
    if message.contains("cannot start any token") {
        if let Some(c) = at {
            return format!(
                "`{c}` cannot start a value here; put the value in quotes (e.g. \"{c}...\")"
            );
        }
    }
    if message.contains("mapping values are not allowed") {
        return "a `key: value` appears where a plain value was expected: check the indentation, or quote \
                a value that contains \": \""
            .into();
    }
    if message.contains("did not find expected key")
        || message.contains("did not find expected '-'")
    {
        return "the indentation does not line up with the entries above: keys of one mapping, and items \
                of one list, start in the same column"
            .into();
    }
    if message.contains("found unexpected end of stream")
        || message.contains("found unexpected end")
    {
        return "the file ends inside a quoted string or a bracket: close it".into();
    }
    if message.contains("did not find expected") {
        return format!("{message} (check the brackets, quotes and indentation on this line)");
    }
    message
}

/// A rule violation before it is given a position.
struct Violation {
    field: String,
    message: String,
}

/// Most negative exemplars `matching.negative_neighbours` may average.
pub const MAX_NEGATIVE_NEIGHBOURS: usize = 100;

/// Most user turns `matching.context_turns` may route a conversation on.
pub const MAX_CONTEXT_TURNS: usize = 16;

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
    DeviceSpec::parse(&c.encoder.device).map_err(|e| violation("encoder.device", e))?;
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
    if c.encoder.queue_tokens == 0 {
        return Err(violation("encoder.queue_tokens", "must be at least 1"));
    }
    if c.limits.default_deadline_ms == 0 {
        return Err(violation(
            "limits.default_deadline_ms",
            "must be at least 1",
        ));
    }
    if c.upstream.request_timeout_ms == 0 {
        return Err(violation(
            "upstream.request_timeout_ms",
            "must be at least 1",
        ));
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
    let lw = c.matching.late_weight;
    if !lw.is_finite() || !(0.0..=10.0).contains(&lw) {
        return Err(violation(
            "matching.late_weight",
            format!("{lw} is outside [0, 10] (the weight of the token term)"),
        ));
    }
    let hw = c.matching.head_weight;
    if !hw.is_finite() || !(0.0..=10.0).contains(&hw) {
        return Err(violation(
            "matching.head_weight",
            format!("{hw} is outside [0, 10] (the weight of the trained head's term)"),
        ));
    }
    if c.matching.late_shortlist == 0 || c.matching.late_shortlist > 1000 {
        return Err(violation(
            "matching.late_shortlist",
            format!("{} must be between 1 and 1000", c.matching.late_shortlist),
        ));
    }
    let nw = c.matching.negative_weight;
    if !nw.is_finite() || !(0.0..=2.0).contains(&nw) {
        return Err(violation(
            "matching.negative_weight",
            format!("{nw} is outside [0, 2] (the weight of the out-of-scope penalty)"),
        ));
    }
    if c.matching.negative_neighbours == 0
        || c.matching.negative_neighbours > MAX_NEGATIVE_NEIGHBOURS
    {
        return Err(violation(
            "matching.negative_neighbours",
            format!(
                "{} must be between 1 and {MAX_NEGATIVE_NEIGHBOURS}",
                c.matching.negative_neighbours
            ),
        ));
    }
    if c.matching.context_turns == 0 || c.matching.context_turns > MAX_CONTEXT_TURNS {
        return Err(violation(
            "matching.context_turns",
            format!(
                "{} must be between 1 and {MAX_CONTEXT_TURNS}",
                c.matching.context_turns
            ),
        ));
    }
    let cw = c.matching.context_weight;
    if !cw.is_finite() || !(0.0..=1.0).contains(&cw) {
        return Err(violation(
            "matching.context_weight",
            format!("{cw} is outside [0, 1] (the weight of the turn before the last)"),
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
    // An utterance both in a route and out of scope would pull the same prompt both ways.
    let routed: HashSet<&str> = c
        .routes
        .iter()
        .flat_map(|r| r.utterances.iter().map(String::as_str))
        .collect();
    for (j, u) in c.out_of_scope.iter().enumerate() {
        if u.trim().is_empty() {
            return Err(violation(
                format!("out_of_scope[{j}]"),
                "blank out-of-scope utterance",
            ));
        }
        if routed.contains(u.as_str()) {
            return Err(violation(
                format!("out_of_scope[{j}]"),
                format!("`{u}` is also a route's utterance"),
            ));
        }
    }
    let models = validate_upstream(c)?;
    for (i, r) in c.routes.iter().enumerate() {
        validate_targets(i, r, &models)?;
        // The HTTP face's `model` field names a route or a model: one name must not mean both.
        if models.contains(r.name.as_str()) {
            return Err(violation(
                format!("routes[{i}].name"),
                format!(
                    "`{}` is also a model's name: the HTTP API's `model` field could not tell them apart; \
                     rename one",
                    r.name
                ),
            ));
        }
    }
    validate_guard(c)?;
    validate_rules(c, &names, &models)?;
    if let Some(cluster) = &c.cluster {
        validate_cluster(cluster)?;
    }
    let alias = c.http.model_alias.as_str();
    if alias.trim().is_empty() {
        return Err(violation("http.model_alias", "must not be empty"));
    }
    if names.contains(alias) || models.contains(alias) {
        return Err(violation(
            "http.model_alias",
            format!("`{alias}` is also a route or model name; pick another alias"),
        ));
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

/// Checks `upstream`, `providers` and `models`; returns the model names.
fn validate_upstream(c: &Config) -> Result<HashSet<&str>, Violation> {
    let u = &c.upstream;
    if u.breaker_failures == 0 {
        return Err(violation("upstream.breaker_failures", "must be at least 1"));
    }
    if u.max_body_bytes < 1024 {
        return Err(violation(
            "upstream.max_body_bytes",
            "must be at least 1024",
        ));
    }
    if u.backoff_ms > u.max_backoff_ms {
        return Err(violation(
            "upstream.backoff_ms",
            format!(
                "{} exceeds upstream.max_backoff_ms ({})",
                u.backoff_ms, u.max_backoff_ms
            ),
        ));
    }
    let mut providers = HashSet::new();
    for (i, p) in c.providers.iter().enumerate() {
        let at = |f: &str| format!("providers[{i}].{f}");
        if p.name.trim().is_empty() || p.name.trim() != p.name {
            return Err(violation(
                at("name"),
                "must not be blank or padded with spaces",
            ));
        }
        if !providers.insert(p.name.as_str()) {
            return Err(violation(
                at("name"),
                format!("duplicate provider name `{}`", p.name),
            ));
        }
        if p.kind == ProviderKind::Mock {
            if !p.base_url.is_empty() {
                return Err(violation(
                    at("base_url"),
                    "a mock provider answers locally: remove base_url",
                ));
            }
        } else {
            if p.base_url.is_empty() {
                return Err(violation(
                    at("base_url"),
                    "missing: the provider's API root, e.g. https://api.openai.com/v1",
                ));
            }
            if !(p.base_url.starts_with("http://") || p.base_url.starts_with("https://")) {
                return Err(violation(
                    at("base_url"),
                    format!("`{}` must start with http:// or https://", p.base_url),
                ));
            }
            if p.reply.is_some() {
                return Err(violation(
                    at("reply"),
                    "only a provider of kind `mock` has a fixed reply",
                ));
            }
        }
        if p.api_key_env.is_some() && p.api_key_file.is_some() {
            return Err(violation(
                at("api_key_file"),
                "set api_key_env or api_key_file, not both",
            ));
        }
        if p.api_key_env
            .as_deref()
            .is_some_and(|v| v.trim().is_empty())
        {
            return Err(violation(
                at("api_key_env"),
                "must name an environment variable",
            ));
        }
        if p.api_key_file
            .as_deref()
            .is_some_and(|v| v.trim().is_empty())
        {
            return Err(violation(at("api_key_file"), "must name a file"));
        }
        for name in p.headers.keys() {
            let lower = name.to_ascii_lowercase();
            // Secrets belong in api_key_env / api_key_file, never in the YAML.
            if lower == "authorization" || lower == "x-api-key" {
                return Err(violation(
                    format!("providers[{i}].headers.{name}"),
                    "credentials must not sit in the config: use api_key_env or api_key_file",
                ));
            }
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(violation(
                    format!("providers[{i}].headers.{name}"),
                    format!("`{name}` is not a valid HTTP header name"),
                ));
            }
        }
        for (name, value) in &p.headers {
            if http::HeaderValue::from_str(value).is_err() {
                return Err(violation(
                    format!("providers[{i}].headers.{name}"),
                    "not a valid HTTP header value",
                ));
            }
        }
        let t = &p.timeouts;
        for (f, v) in [
            ("connect_ms", t.connect_ms),
            ("first_token_ms", t.first_token_ms),
            ("total_ms", t.total_ms),
        ] {
            if v == 0 {
                return Err(violation(
                    at(&format!("timeouts.{f}")),
                    "must be at least 1",
                ));
            }
        }
    }
    let mut models = HashSet::new();
    for (i, m) in c.models.iter().enumerate() {
        let at = |f: &str| format!("models[{i}].{f}");
        if m.name.trim().is_empty() || m.name.trim() != m.name {
            return Err(violation(
                at("name"),
                "must not be blank or padded with spaces",
            ));
        }
        if !models.insert(m.name.as_str()) {
            return Err(violation(
                at("name"),
                format!("duplicate model name `{}`", m.name),
            ));
        }
        if !providers.contains(m.provider.as_str()) {
            return Err(violation(
                at("provider"),
                format!("unknown provider `{}` ({})", m.provider, known(&providers)),
            ));
        }
        if m.id.trim().is_empty() {
            return Err(violation(at("id"), "must not be blank"));
        }
        for (f, v) in [
            ("input_price", m.input_price),
            ("output_price", m.output_price),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(violation(at(f), format!("price {v} must be a number >= 0")));
            }
        }
        if m.context_window == Some(0) {
            return Err(violation(at("context_window"), "must be at least 1"));
        }
    }
    Ok(models)
}

fn known(names: &HashSet<&str>) -> String {
    if names.is_empty() {
        return "none are declared".into();
    }
    let mut v: Vec<_> = names.iter().copied().collect();
    v.sort_unstable();
    format!("declared: {}", v.join(", "))
}

/// Checks a route's `targets`, `strategy`, `sticky_key` and `cascade`.
fn validate_targets(i: usize, r: &RouteConfig, models: &HashSet<&str>) -> Result<(), Violation> {
    let weighted = r.strategy == Strategy::Weighted;
    if r.sticky_key.is_some() && !weighted {
        return Err(violation(
            format!("routes[{i}].sticky_key"),
            "only applies to strategy `weighted`",
        ));
    }
    let mut seen = HashSet::new();
    for (j, t) in r.targets.iter().enumerate() {
        if !models.contains(t.model.as_str()) {
            return Err(violation(
                format!("routes[{i}].targets[{j}].model"),
                format!("unknown model `{}` ({})", t.model, known(models)),
            ));
        }
        if !seen.insert(t.model.as_str()) {
            return Err(violation(
                format!("routes[{i}].targets[{j}].model"),
                format!("model `{}` is listed twice", t.model),
            ));
        }
        match (weighted, t.weight) {
            (true, None) => {
                return Err(violation(
                    format!("routes[{i}].targets[{j}]"),
                    "strategy `weighted` needs a weight on every target",
                ))
            }
            (true, Some(w)) if !w.is_finite() || w <= 0.0 => {
                return Err(violation(
                    format!("routes[{i}].targets[{j}].weight"),
                    format!("weight {w} must be > 0"),
                ))
            }
            (false, Some(_)) => {
                return Err(violation(
                    format!("routes[{i}].targets[{j}].weight"),
                    "weights only apply to strategy `weighted`",
                ))
            }
            _ => {}
        }
    }
    for (j, p) in r.cascade.refusal_patterns.iter().enumerate() {
        if p.trim().is_empty() {
            return Err(violation(
                format!("routes[{i}].cascade.refusal_patterns[{j}]"),
                "must not be blank",
            ));
        }
    }
    Ok(())
}

/// Checks `guard`: known detector names, custom names and patterns.
fn validate_guard(c: &Config) -> Result<(), Violation> {
    for name in c.guard.detectors.keys() {
        if crate::guard::Builtin::from_name(name).is_none() {
            let all: Vec<_> = crate::guard::Builtin::ALL
                .iter()
                .map(|b| b.name())
                .collect();
            return Err(violation(
                format!("guard.detectors.{name}"),
                format!(
                    "unknown detector `{name}` (built in: {}; add your own under guard.custom)",
                    all.join(", ")
                ),
            ));
        }
    }
    let mut seen = HashSet::new();
    for (i, d) in c.guard.custom.iter().enumerate() {
        let ok = !d.name.is_empty()
            && d.name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !ok {
            return Err(violation(
                format!("guard.custom[{i}].name"),
                format!(
                    "`{}` must be lowercase letters, digits and `_` (it becomes a metric label and a \
                     placeholder)",
                    d.name
                ),
            ));
        }
        if crate::guard::Builtin::from_name(&d.name).is_some() || !seen.insert(d.name.as_str()) {
            return Err(violation(
                format!("guard.custom[{i}].name"),
                format!("`{}` is already a detector's name", d.name),
            ));
        }
        if let Err(e) = crate::guard::compile_custom(&d.pattern) {
            return Err(violation(format!("guard.custom[{i}].pattern"), e));
        }
    }
    Ok(())
}

/// Checks `rules`: unique names, known routes, models, detectors, at least one action, one outcome.
fn validate_cluster(c: &ClusterConfig) -> Result<(), Violation> {
    match (&c.redis_url, &c.redis_url_env) {
        (Some(_), Some(_)) => {
            return Err(violation(
                "cluster.redis_url",
                "set `redis_url` or `redis_url_env`, not both",
            ))
        }
        (None, None) => {
            return Err(violation(
                "cluster",
                "needs `redis_url` (or `redis_url_env`, the variable holding it)",
            ))
        }
        (Some(url), None) => {
            // The message never repeats the URL: it may carry a password.
            const SCHEMES: &[&str] = &["redis://", "valkey://", "unix://", "redis+unix://"];
            if !SCHEMES.iter().any(|s| url.starts_with(s)) {
                return Err(violation(
                    "cluster.redis_url",
                    "must start with redis:// or valkey:// (unix:// for a socket); rediss:// (TLS) \
                     is not built in",
                ));
            }
        }
        (None, Some(var)) => {
            if var.trim().is_empty() {
                return Err(violation("cluster.redis_url_env", "must not be empty"));
            }
        }
    }
    if c.timeout_ms == 0 || c.timeout_ms > 10_000 {
        return Err(violation(
            "cluster.timeout_ms",
            "must be between 1 and 10000 (it bounds every Redis call a request waits on)",
        ));
    }
    if c.poll_ms < 100 {
        return Err(violation("cluster.poll_ms", "must be at least 100"));
    }
    if c.key_prefix.is_empty() || c.key_prefix.contains(char::is_whitespace) {
        return Err(violation(
            "cluster.key_prefix",
            "must be non-empty and without spaces",
        ));
    }
    Ok(())
}

fn validate_rules(
    c: &Config,
    routes: &HashSet<&str>,
    models: &HashSet<&str>,
) -> Result<(), Violation> {
    let mut seen = HashSet::new();
    let detectors: HashSet<&str> = crate::guard::Builtin::ALL
        .iter()
        .map(|b| b.name())
        .chain(c.guard.custom.iter().map(|d| d.name.as_str()))
        .collect();
    for (i, r) in c.rules.iter().enumerate() {
        let at = |f: &str| format!("rules[{i}].{f}");
        if r.name.trim().is_empty() {
            return Err(violation(at("name"), "must not be blank"));
        }
        if !seen.insert(r.name.as_str()) {
            return Err(violation(
                at("name"),
                format!("rule `{}` is declared twice", r.name),
            ));
        }
        if r.route.is_none() && r.targets.is_none() && r.strategy.is_none() && r.refuse.is_none() {
            return Err(violation(
                format!("rules[{i}]"),
                "does nothing: give `route`, `targets`, `strategy` or `refuse`",
            ));
        }
        if let Some(m) = &r.refuse {
            if m.trim().is_empty() {
                return Err(violation(at("refuse"), "must not be blank: say why"));
            }
            if r.route.is_some() || r.targets.is_some() || r.strategy.is_some() {
                return Err(violation(
                    at("refuse"),
                    "a refusing rule cannot also route: drop `route`, `targets` and `strategy`",
                ));
            }
        }
        if let Some(route) = &r.route {
            if !routes.contains(route.as_str()) {
                return Err(violation(
                    at("route"),
                    format!("unknown route `{route}` ({})", known(routes)),
                ));
            }
        }
        if let Some(ts) = &r.targets {
            if ts.is_empty() {
                return Err(violation(at("targets"), "must name at least one model"));
            }
            let mut listed = HashSet::new();
            for (j, t) in ts.iter().enumerate() {
                if !models.contains(t.as_str()) {
                    return Err(violation(
                        format!("rules[{i}].targets[{j}]"),
                        format!("unknown model `{t}` ({})", known(models)),
                    ));
                }
                if !listed.insert(t.as_str()) {
                    return Err(violation(
                        format!("rules[{i}].targets[{j}]"),
                        format!("model `{t}` is listed twice"),
                    ));
                }
            }
            if r.strategy == Some(Strategy::Weighted) {
                return Err(violation(
                    at("strategy"),
                    "`weighted` needs weights, which rule targets do not carry",
                ));
            }
        }
        if let Some(when_route) = &r.when.route {
            for v in when_route.values() {
                if !v.is_empty() && !routes.contains(v.as_str()) {
                    return Err(violation(
                        format!("rules[{i}].when.route"),
                        format!("unknown route `{v}` ({})", known(routes)),
                    ));
                }
            }
        }
        for (j, d) in r.when.detectors.iter().enumerate() {
            if !detectors.contains(d.as_str()) {
                return Err(violation(
                    format!("rules[{i}].when.detectors[{j}]"),
                    format!("unknown detector `{d}` ({})", known(&detectors)),
                ));
            }
        }
        if let (Some(lo), Some(hi)) = (r.when.min_tokens, r.when.max_tokens) {
            if lo > hi {
                return Err(violation(
                    at("when.min_tokens"),
                    format!("{lo} is above when.max_tokens {hi}: the rule could never match"),
                ));
            }
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
        let late = format!(
            "matching:\n  aggregation: late\n  late_weight: 1.5\n  late_shortlist: 5\n  head_weight: 2\n{base}"
        );
        let c = parse_str(&late, "t.yaml").unwrap();
        assert_eq!(c.matching.aggregation, Aggregation::Late);
        assert_eq!(c.matching.head_weight, 2.0);
        assert_eq!(
            (c.matching.late_weight, c.matching.late_shortlist),
            (1.5, 5)
        );
        for (field, bad) in [
            ("matching.hybrid_weight", "hybrid_weight: 1.5"),
            ("matching.hybrid_neighbours", "hybrid_neighbours: 0"),
            ("matching.hybrid_neighbours", "hybrid_neighbours: 11"),
            ("matching.margin_weight", "margin_weight: -0.1"),
            ("matching.late_weight", "late_weight: -1"),
            ("matching.late_weight", "late_weight: .nan"),
            ("matching.late_shortlist", "late_shortlist: 0"),
            ("matching.head_weight", "head_weight: 11"),
            ("matching.head_weight", "head_weight: -0.5"),
            ("matching.negative_weight", "negative_weight: 2.5"),
            ("matching.context_turns", "context_turns: 0"),
            ("matching.context_turns", "context_turns: 17"),
            ("matching.context_weight", "context_weight: 1.5"),
            ("matching.negative_weight", "negative_weight: -0.1"),
            ("matching.negative_neighbours", "negative_neighbours: 0"),
            ("matching.negative_neighbours", "negative_neighbours: 101"),
        ] {
            let e = parse_str(&format!("matching:\n  {bad}\n{base}"), "t.yaml")
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("t.yaml:2:"), "{e}");
            assert!(e.contains(&format!("{field}: ")), "{e}");
        }
    }

    #[test]
    fn out_of_scope_utterances_checked_with_location() {
        let base = "routes:\n  - name: a\n    utterances: [hello, bye]\n";
        let c = parse_str(&format!("{base}out_of_scope:\n  - weather\n"), "t.yaml").unwrap();
        assert_eq!(c.out_of_scope, vec!["weather".to_string()]);
        assert!(parse_str(base, "t.yaml").unwrap().out_of_scope.is_empty());
        let e = parse_str(
            &format!("{base}out_of_scope:\n  - weather\n  - bye\n"),
            "t.yaml",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "t.yaml:6:5: out_of_scope[1]: `bye` is also a route's utterance"
        );
        let e = parse_str(&format!("{base}out_of_scope: ['  ']\n"), "t.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("t.yaml:4:"), "{e}");
        assert!(e.contains("out_of_scope[0]: blank"), "{e}");
    }

    #[test]
    fn duplicate_name_points_at_second() {
        let src = "routes:\n  - name: a\n    utterances: [x]\n  - name: a\n    utterances: [y]\n";
        let e = parse_str(src, "t.yaml").unwrap_err().to_string();
        assert_eq!(e, "t.yaml:4:11: routes[1].name: duplicate route name `a`");
    }
}
