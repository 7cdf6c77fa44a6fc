//! The `routes.yaml` schema: plain serde structs. Unknown fields are rejected everywhere so that a typo
//! never silently falls back to a default.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Which sentence-transformer embeds prompts and exemplars, and where it runs.
    #[serde(default)]
    pub encoder: EncoderConfig,
    /// How neighbours are searched and aggregated into per-route scores.
    #[serde(default)]
    pub matching: MatchingConfig,
    /// Limits on incoming requests.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// The OpenAI-compatible HTTP face.
    #[serde(default)]
    pub http: HttpConfig,
    /// The route answered when no route clears its threshold. `None`: answer with no route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_route: Option<String>,
    /// How prompts are forwarded: retries, circuit breaking, body limits.
    #[serde(default)]
    pub upstream: UpstreamConfig,
    /// Downstream services that serve models (OpenAI-compatible servers, Anthropic).
    #[serde(default)]
    pub providers: Vec<ProviderConfig>,
    /// Downstream models by name: which provider serves them, under which id, at what price.
    #[serde(default)]
    pub models: Vec<ModelConfig>,
    /// The routes, each declared by example utterances.
    pub routes: Vec<RouteConfig>,
    /// Example prompts that belong to no route (negative exemplars). A prompt close to them is less likely
    /// in scope: its decision score drops by `matching.negative_weight` x its mean similarity to its
    /// `matching.negative_neighbours` most similar ones. Empty (the default): no penalty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub out_of_scope: Vec<String>,
    /// The sensitive-data guard: what to look for in every message and what to do when it is found.
    /// Absent: nothing is scanned.
    #[serde(default, skip_serializing_if = "GuardConfig::is_off")]
    pub guard: GuardConfig,
    /// Per-user and per-tenant rules, evaluated in order after the route is decided; the first whose
    /// `when` matches fires.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RuleConfig>,
    /// Cluster mode: routes, limits and budgets shared by every replica through Redis. Absent: each
    /// replica keeps its own state (nothing changes). Local to each replica: never stored in Redis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterConfig>,
}

/// `cluster:` — shared state in Redis (or Valkey).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// `redis://[user:password@]host:port[/db]`. It may carry a password, so it is never logged or
    /// returned; prefer `redis_url_env`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_url: Option<String>,
    /// The environment variable holding the URL (keeps a password out of the file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_url_env: Option<String>,
    /// The longest any Redis call on the request path may take (limit checks), in milliseconds.
    #[serde(default = "default_cluster_timeout_ms")]
    pub timeout_ms: u64,
    /// How often each replica compares its route version with Redis's (the safety net under pub/sub).
    #[serde(default = "default_cluster_poll_ms")]
    pub poll_ms: u64,
    /// Prefix of every key and channel, so several deployments can share one Redis.
    #[serde(default = "default_cluster_prefix")]
    pub key_prefix: String,
    /// What limits do when Redis cannot answer in time: `open` admits (per-replica concurrency limits
    /// still hold), `closed` refuses with UNAVAILABLE / 503.
    #[serde(default)]
    pub limits_on_redis_error: FailMode,
}

impl std::fmt::Debug for ClusterConfig {
    /// The URL may carry a password: it is never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("redis_url", &self.redis_url.as_ref().map(|_| "<redacted>"))
            .field("redis_url_env", &self.redis_url_env)
            .field("timeout_ms", &self.timeout_ms)
            .field("poll_ms", &self.poll_ms)
            .field("key_prefix", &self.key_prefix)
            .field("limits_on_redis_error", &self.limits_on_redis_error)
            .finish()
    }
}

/// How shared limits behave when Redis is unreachable or slow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    /// Admit the request (the default: an outage of the limits store does not become an outage of
    /// every LLM call; per-replica concurrency limits still hold).
    #[default]
    Open,
    /// Refuse the request with UNAVAILABLE / 503 until Redis answers again.
    Closed,
}

fn default_cluster_timeout_ms() -> u64 {
    50
}

fn default_cluster_poll_ms() -> u64 {
    2000
}

fn default_cluster_prefix() -> String {
    "semroute".into()
}

/// `guard:` — the sensitive-data guard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct GuardConfig {
    /// What each built-in detector does (`email`, `phone`, `card`, `iban`, `ssn`, `ip`, `secret`); one
    /// not listed is off.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub detectors: BTreeMap<String, GuardAction>,
    /// Detectors of your own: a name and a regular expression (Rust `regex` syntax).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custom: Vec<CustomDetectorConfig>,
}

impl GuardConfig {
    /// True when no detector is on.
    pub fn is_off(&self) -> bool {
        self.detectors.values().all(|a| *a == GuardAction::Off)
            && self.custom.iter().all(|c| c.action == GuardAction::Off)
    }
}

/// What the guard does with a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum GuardAction {
    /// Not scanned.
    Off,
    /// Counted in metrics and visible to rules (`when.sensitive`, `when.detectors`); the prompt goes as is.
    Detect,
    /// Each match is replaced by a typed placeholder (`[EMAIL_1]`) before the prompt leaves for a target
    /// that is not `private: true`; private targets get the prompt as written.
    Redact,
    /// Only `private: true` targets may receive the prompt; a route without one refuses it (403).
    Private,
    /// The request is refused (PERMISSION_DENIED / 403) naming the detector, never the value.
    Block,
}

/// A detector of your own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomDetectorConfig {
    /// Its name (metrics, placeholders, errors): lowercase letters, digits and `_`.
    pub name: String,
    /// The regular expression; each match is a finding.
    pub pattern: String,
    /// What to do with a finding.
    pub action: GuardAction,
}

/// One string or a list of strings (any of them matches).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One value.
    One(String),
    /// Any of these values.
    Many(Vec<String>),
}

impl OneOrMany {
    /// True when `v` is (one of) the value(s).
    pub fn contains(&self, v: &str) -> bool {
        match self {
            OneOrMany::One(x) => x == v,
            OneOrMany::Many(xs) => xs.iter().any(|x| x == v),
        }
    }

    /// The values.
    pub fn values(&self) -> &[String] {
        match self {
            OneOrMany::One(x) => std::slice::from_ref(x),
            OneOrMany::Many(xs) => xs,
        }
    }
}

/// One rule: when it matches, what happens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Unique name: reported as the decision's evidence (`x-semroute-rule`, metrics, traces).
    pub name: String,
    /// The conditions; every one given must hold. Empty: the rule always matches.
    #[serde(default)]
    pub when: RuleWhen,
    /// Pin this route (its targets and strategy), whatever the prompt's decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// Use only these models, in this order (then the strategy orders them): restricts and reorders the
    /// route's targets. Models outside the route's targets may be named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<Vec<String>>,
    /// Override the route's strategy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
    /// Refuse the request (PERMISSION_DENIED / 403) with this message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refuse: Option<String>,
}

/// The conditions of a rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RuleWhen {
    /// Request metadata the caller sent (gRPC `metadata`, HTTP `metadata` and `user`), key by key. The
    /// caller sets these: match on `key` for anything that grants more than it restricts.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, OneOrMany>,
    /// Attributes of the caller's client key (set by the operator), key by key. A call without a key
    /// matches no `key` condition.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub key: BTreeMap<String, OneOrMany>,
    /// The caller key's tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<OneOrMany>,
    /// The decided route (`""` when no route was decided).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<OneOrMany>,
    /// Whether the guard found anything (any detector that is not off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensitive: Option<bool>,
    /// The guard found at least one of these detectors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub detectors: Vec<String>,
    /// The prompt (every message) has at least this many tokens (the encoder's tokenizer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_tokens: Option<u64>,
    /// The prompt has at most this many tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
}

/// `http:` — the OpenAI-compatible HTTP face.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// The `model` value that asks for semantic routing (`auto` by default). A route's name uses that
    /// route's targets; a model's name goes to that model.
    #[serde(default = "default_model_alias")]
    pub model_alias: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            model_alias: default_model_alias(),
        }
    }
}

fn default_model_alias() -> String {
    "auto".into()
}

/// `encoder:` — the embedding model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncoderConfig {
    /// A directory, a folder name under `models/`, or a Hugging Face hub id.
    #[serde(default = "default_model")]
    pub model: String,
    /// `cpu`, `cuda`, `cuda:N` or `auto` (CUDA when built with the `cuda` feature and a GPU is present).
    #[serde(default = "default_device")]
    pub device: String,
    /// Truncate inputs to this many tokens (including [CLS]/[SEP]); at most the model's max_seq_length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<usize>,
    /// Precision of the encoder's linear layers on CPU: `int8-fast` (default: 7-bit weights, 8-bit
    /// activations, smoothing calibrated at load), `int8` (int8 weights, 12-bit activations) or `f32`
    /// (exact). CUDA always runs F32.
    #[serde(default)]
    pub precision: Precision,
    /// Most texts the model thread embeds in one forward pass.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// Texts admitted to the model queue and not yet answered before new requests are refused with
    /// RESOURCE_EXHAUSTED / 429.
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
    /// Estimated tokens admitted to the model queue and not yet answered before new requests are refused.
    #[serde(default = "default_queue_tokens")]
    pub queue_tokens: usize,
    /// A request is refused at the door when the model's work ahead of it, at its recent rate, would take
    /// longer than this (milliseconds; 0: bounded only by each request's deadline). Keeps served latency
    /// bounded under overload instead of letting the queue grow to `queue_capacity`.
    #[serde(default = "default_max_queue_ms")]
    pub max_queue_ms: u64,
    /// Prompt vectors kept in an LRU cache so repeated prompts skip the model; 0 turns it off.
    #[serde(default = "default_cache_size")]
    pub cache_size: usize,
}

/// `encoder.precision`: number precision of the encoder's linear layers on CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// F32 weights and activations: the reference result.
    F32,
    /// Int8 weights with per-channel scales, activations quantised per row on the fly.
    Int8,
    /// 7-bit weights and 8-bit activations with smoothing calibrated at load: the fast path.
    #[default]
    #[serde(rename = "int8-fast")]
    Int8Fast,
    /// bf16 weights and activations summed in F32: within the exact bar (cosine > 0.9999) at half F32's
    /// weight bytes; fast on CPUs with AVX-512 BF16.
    Bf16,
}

impl Precision {
    /// The name routes.yaml uses.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Int8 => "int8",
            Self::Int8Fast => "int8-fast",
            Self::Bf16 => "bf16",
        }
    }
}

/// A parsed `encoder.device` value: where the model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    /// The CPU (default).
    Cpu,
    /// CUDA GPU with this ordinal. Requires building with `--features cuda`.
    Cuda(usize),
    /// CUDA GPU 0 when available, else the CPU.
    Auto,
}

impl DeviceSpec {
    /// Parses `cpu`, `cuda`, `cuda:N` or `auto`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim() {
            "cpu" => Ok(Self::Cpu),
            "auto" => Ok(Self::Auto),
            "cuda" => Ok(Self::Cuda(0)),
            other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(n)) => Ok(Self::Cuda(n)),
                _ => Err(format!(
                    "unknown device `{other}` (expected cpu, cuda, cuda:N or auto)"
                )),
            },
        }
    }
}

/// How per-route scores are computed from the prompt's similarity to exemplars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Aggregation {
    /// The best single exemplar similarity among the top-k neighbours.
    Max,
    /// The mean similarity of the route's exemplars among the top-k neighbours.
    Mean,
    /// Similarity to the route's prototype: the normalised mean of all its exemplar vectors.
    /// Beats `max` and `mean` on CLINC150 by 7 points or more (see docs/quality.md).
    Centroid,
    /// `hybrid_weight` x centroid similarity + (1 - `hybrid_weight`) x the mean similarity of the route's
    /// best `hybrid_neighbours` exemplars among the top-k (a route with none there gets the k-th similarity,
    /// an upper bound). Prototype and neighbour evidence together: ties with `centroid` on CLINC150 with 10
    /// exemplars per route and beats it by 2 points with 100 (calibrated on val; see docs/quality.md), hence the
    /// default.
    #[default]
    Hybrid,
    /// Late interaction: `(cent_nt + late_weight x bag) / (1 + late_weight)` for the `late_shortlist` routes
    /// with the best `cent_nt`, where `cent_nt` is the similarity to a prototype pooled from unit token
    /// vectors and `bag` the mean over the prompt's tokens of the best cosine to any token of the route's
    /// exemplars. Needs the encoder's token vectors for every exemplar (kept as int8) and for each prompt
    /// (same forward pass). Opt-in; figures in docs/quality.md.
    Late,
}

impl std::str::FromStr for Aggregation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "max" => Ok(Self::Max),
            "mean" => Ok(Self::Mean),
            "centroid" => Ok(Self::Centroid),
            "hybrid" => Ok(Self::Hybrid),
            "late" => Ok(Self::Late),
            other => Err(format!(
                "unknown aggregation `{other}` (expected max, mean, centroid, hybrid or late)"
            )),
        }
    }
}

/// `matching:` — search and scoring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchingConfig {
    /// Neighbours fetched from the index (and returned as evidence by default).
    #[serde(default = "default_top_k")]
    pub top_k: usize,
    /// How neighbour similarities become per-route scores.
    #[serde(default)]
    pub aggregation: Aggregation,
    /// Score a route must reach to be chosen, unless the route sets its own.
    #[serde(default = "default_threshold")]
    pub threshold: f32,
    /// Up to this many exemplars the index is scanned exactly (on an int8 copy of the vectors with F32
    /// re-scoring, from 4,096 exemplars up); above it an HNSW graph answers. Measured cut-over
    /// (`cargo bench --bench route`, 384-d, top 10, 2-core Zen 3): the scan takes 50 µs at 1,500, 167 µs at
    /// 15,000 and 0.92 ms at 50,000; the graph 190-300 µs from 15,000 to 50,000, so they cross near 25,000.
    #[serde(default = "default_exact_search_max")]
    pub exact_search_max: usize,
    /// `hybrid` only: weight of the centroid term, in [0, 1]; the neighbour term gets the rest.
    #[serde(default = "default_hybrid_weight")]
    pub hybrid_weight: f32,
    /// `hybrid` only: how many of a route's nearest exemplars (among the top-k) are averaged; 1..=top_k.
    #[serde(default = "default_hybrid_neighbours")]
    pub hybrid_neighbours: usize,
    /// The score compared with the threshold is `best - margin_weight x second best`, in [0, 1]: a prompt
    /// halfway between two routes is less sure than one close to a single route. 0 (the default) compares
    /// the best score alone.
    #[serde(default)]
    pub margin_weight: f32,
    /// `late` only: weight of the token (bag) term against the token-pooled prototype, in [0, 10]; 0 is the
    /// prototype alone.
    #[serde(default = "default_late_weight")]
    pub late_weight: f32,
    /// `late` only: how many routes (best prototype similarity first) get a token-level score; 1..=1000.
    /// Routes outside the shortlist are not candidates.
    #[serde(default = "default_late_shortlist")]
    pub late_shortlist: usize,
    /// `late` only: weight of a linear route classifier trained on the exemplars when the index is built, in
    /// [0, 10]; 0 (the default) trains none. Its score (a logit scaled into [-1, 1]) joins the late score:
    /// `(cent_nt + late_weight x bag + head_weight x head) / (1 + late_weight + head_weight)`. Training
    /// takes about 2-4 s per build at 15,000 exemplars and 150 routes (it grows with exemplars x routes).
    #[serde(default)]
    pub head_weight: f32,
    /// With `out_of_scope` utterances: the decision score is lowered by this weight times the prompt's mean
    /// similarity to its `negative_neighbours` most similar ones, in [0, 2]. Chosen on CLINC150's val
    /// split; `semroute calibrate --tune-rule` searches it.
    #[serde(default = "default_negative_weight")]
    pub negative_weight: f32,
    /// With `out_of_scope` utterances: how many of the most similar ones are averaged, 1..=100.
    #[serde(default = "default_negative_neighbours")]
    pub negative_neighbours: usize,
    /// Conversations: how many user turns, the last included, a prompt is routed on, 1..=16. The last turn
    /// decides alone when it clears its threshold; otherwise the earlier turns join it (see
    /// `context_weight`), so a follow-up such as "and now in Rust?" stays on the route of the turns before
    /// it. 1 routes the last user turn alone.
    #[serde(default = "default_context_turns")]
    pub context_turns: usize,
    /// Conversations: the weight of the user turn before the last, in [0, 1]; each turn further back
    /// weighs this much less again. The prompt's vector becomes the weighted sum of the turns' vectors.
    #[serde(default = "default_context_weight")]
    pub context_weight: f32,
}

/// `limits:` — request limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest prompt accepted, in bytes of UTF-8. Longer prompts are INVALID_ARGUMENT; prompts under the
    /// limit but over the model's token limit are truncated, never refused.
    #[serde(default = "default_max_input_bytes")]
    pub max_input_bytes: usize,
    /// The deadline of a request whose caller sets none (`grpc-timeout`, the HTTP `x-request-timeout`
    /// or `x-stainless-timeout` header), in milliseconds. A request the model could not start before its
    /// deadline is refused at once; past it, nothing more is spent on it.
    #[serde(default = "default_deadline_ms")]
    pub default_deadline_ms: u64,
}

/// One route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Unique name, returned in `RouteResponse.route`.
    pub name: String,
    /// What the route is for (documentation only).
    #[serde(default)]
    pub description: String,
    /// Overrides `matching.threshold` for this route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f32>,
    /// Example prompts that belong to this route.
    pub utterances: Vec<String>,
    /// How one of `targets` is chosen for each request.
    #[serde(default)]
    pub strategy: Strategy,
    /// For `weighted`: the request metadata key whose value pins a caller to one target (e.g. `user_id`);
    /// without it (or when a request lacks the key) each request draws at random.
    #[serde(default)]
    pub sticky_key: Option<String>,
    /// For `cascade`: when an answer is not good enough and the next (more expensive) target is tried.
    #[serde(default)]
    pub cascade: CascadeConfig,
    /// The models that may answer prompts of this route. Empty: `Complete` refuses this route.
    #[serde(default)]
    pub targets: Vec<TargetConfig>,
    /// When the guard finds anything in a prompt of this route (any detector that is not off), only
    /// `private: true` targets may receive it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub private_on_sensitive: bool,
}

/// How a route picks among its targets. Every strategy skips targets whose circuit is open and falls back
/// along the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// In the order listed.
    #[default]
    Fallback,
    /// An A/B split by `weight`, sticky by `sticky_key`; the others follow in the order listed.
    Weighted,
    /// Lowest price first (input plus output price per million tokens).
    Cheapest,
    /// Lowest learned latency first (EWMA of time to first token and tokens per second).
    Fastest,
    /// Cheapest first; escalate to the next when the answer fails a `cascade` check.
    Cascade,
}

/// One target of a route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// A name from `models`.
    pub model: String,
    /// For `weighted`: the target's share (any positive number; shares are normalised).
    #[serde(default)]
    pub weight: Option<f64>,
}

/// The checks after which a `cascade` escalates to the next target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CascadeConfig {
    /// Escalate when the answer is empty or only whitespace.
    #[serde(default = "yes")]
    pub on_empty: bool,
    /// Escalate when the answer was cut off by the token limit (finish_reason `length`).
    #[serde(default = "yes")]
    pub on_length: bool,
    /// Escalate when the answer matches one of these (case-insensitive substrings), e.g. "I can't help".
    #[serde(default)]
    pub refusal_patterns: Vec<String>,
    /// Escalate when the request asked for JSON (`response_format: json`) and the answer does not parse.
    #[serde(default = "yes")]
    pub on_invalid_json: bool,
}

impl Default for CascadeConfig {
    fn default() -> Self {
        Self {
            on_empty: true,
            on_length: true,
            refusal_patterns: Vec::new(),
            on_invalid_json: true,
        }
    }
}

/// The wire format a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// `POST {base_url}/chat/completions`, OpenAI's Chat Completions API (also vLLM, Ollama, llama.cpp,
    /// LiteLLM, Together, Groq, ...).
    Openai,
    /// `POST {base_url}/messages`, Anthropic's Messages API.
    Anthropic,
    /// Not a model: answers locally, with no network and no key, by echoing the last user turn (or with the
    /// provider's fixed `reply`). For trying the service without keys and for callers' integration tests.
    Mock,
}

/// One provider: where it is and how to authenticate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Unique name, referred to by `models[].provider`.
    pub name: String,
    /// The wire format.
    pub kind: ProviderKind,
    /// The API root, e.g. `https://api.openai.com/v1` or `http://127.0.0.1:11434/v1` (none for `mock`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub base_url: String,
    /// `kind: mock` only: answer with this text instead of echoing the last user turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
    /// The environment variable holding the API key. Keys never sit in this file.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// A file holding the API key (relative to this file's directory), e.g. a mounted secret.
    #[serde(default)]
    pub api_key_file: Option<String>,
    /// Extra HTTP headers sent with every request (not secrets: they are part of the config).
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    /// Per-attempt time limits.
    #[serde(default)]
    pub timeouts: TimeoutsConfig,
    /// The provider keeps data private (self-hosted, or under a contract that allows sensitive data):
    /// every model it serves may receive prompts the guard flagged.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub private: bool,
}

/// Per-attempt time limits, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsConfig {
    /// Establishing the TCP (and TLS) connection.
    #[serde(default = "default_connect_ms")]
    pub connect_ms: u64,
    /// Until the first token arrives (streams). Non-streaming calls are bounded by `total_ms` alone: their
    /// response headers arrive with the whole answer.
    #[serde(default = "default_first_token_ms")]
    pub first_token_ms: u64,
    /// The whole attempt, body included.
    #[serde(default = "default_total_ms")]
    pub total_ms: u64,
}

impl Default for TimeoutsConfig {
    fn default() -> Self {
        Self {
            connect_ms: default_connect_ms(),
            first_token_ms: default_first_token_ms(),
            total_ms: default_total_ms(),
        }
    }
}

/// One downstream model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Unique name, referred to by `routes[].targets[].model`.
    pub name: String,
    /// A name from `providers`.
    pub provider: String,
    /// The provider's id for the model (`gpt-4o-mini`, `claude-sonnet-4-5`, `llama3.1:8b`).
    pub id: String,
    /// USD per million input tokens.
    #[serde(default)]
    pub input_price: f64,
    /// USD per million output tokens.
    #[serde(default)]
    pub output_price: f64,
    /// The model's context window in tokens (documentation and `max_tokens` defaulting for Anthropic).
    #[serde(default)]
    pub context_window: Option<u32>,
    /// Whether the model takes images. Requests with image parts skip models without it, and are refused
    /// (400) when no target of the route has it.
    #[serde(default)]
    pub vision: bool,
    /// The model may receive prompts the guard flagged (also true when its provider is `private`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub private: bool,
}

/// `upstream:` — how forwarding behaves when downstream models fail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Retries on the same target after a retryable failure (connect error, timeout, 408, 429, 5xx),
    /// before moving to the next target.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// First backoff; doubles with each retry, with full jitter.
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: u64,
    /// Longest single backoff.
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
    /// A `Retry-After` longer than this is not waited for: the next target is tried instead.
    #[serde(default = "default_retry_after_max_ms")]
    pub retry_after_max_ms: u64,
    /// Consecutive failures that open a target's circuit.
    #[serde(default = "default_breaker_failures")]
    pub breaker_failures: u32,
    /// How long an open circuit stays open before one probe request is let through.
    #[serde(default = "default_breaker_cool_down_ms")]
    pub breaker_cool_down_ms: u64,
    /// Largest upstream response body read (JSON bodies, and each SSE event), in bytes.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// One budget for forwarding a request, every retry and fallback included (milliseconds), capped by
    /// the caller's deadline. No attempt starts that the budget cannot cover; when it runs out the call
    /// ends with DEADLINE_EXCEEDED / 504 listing the attempts made.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            max_retries: default_max_retries(),
            backoff_ms: default_backoff_ms(),
            max_backoff_ms: default_max_backoff_ms(),
            retry_after_max_ms: default_retry_after_max_ms(),
            breaker_failures: default_breaker_failures(),
            breaker_cool_down_ms: default_breaker_cool_down_ms(),
            max_body_bytes: default_max_body_bytes(),
            request_timeout_ms: default_request_timeout_ms(),
        }
    }
}

fn yes() -> bool {
    true
}
fn default_connect_ms() -> u64 {
    2_000
}
fn default_first_token_ms() -> u64 {
    30_000
}
fn default_total_ms() -> u64 {
    120_000
}
fn default_max_retries() -> u32 {
    2
}
fn default_backoff_ms() -> u64 {
    100
}
fn default_max_backoff_ms() -> u64 {
    2_000
}
fn default_retry_after_max_ms() -> u64 {
    5_000
}
fn default_breaker_failures() -> u32 {
    5
}
fn default_breaker_cool_down_ms() -> u64 {
    30_000
}
fn default_request_timeout_ms() -> u64 {
    180_000
}
fn default_max_body_bytes() -> usize {
    4 * 1024 * 1024
}

impl Default for EncoderConfig {
    fn default() -> Self {
        Self {
            model: default_model(),
            device: default_device(),
            max_tokens: None,
            precision: Default::default(),
            max_batch: default_max_batch(),
            queue_capacity: default_queue_capacity(),
            queue_tokens: default_queue_tokens(),
            max_queue_ms: default_max_queue_ms(),
            cache_size: default_cache_size(),
        }
    }
}

impl Default for MatchingConfig {
    fn default() -> Self {
        Self {
            top_k: default_top_k(),
            aggregation: Aggregation::default(),
            threshold: default_threshold(),
            exact_search_max: default_exact_search_max(),
            hybrid_weight: default_hybrid_weight(),
            hybrid_neighbours: default_hybrid_neighbours(),
            margin_weight: 0.0,
            late_weight: default_late_weight(),
            late_shortlist: default_late_shortlist(),
            head_weight: 0.0,
            negative_weight: default_negative_weight(),
            negative_neighbours: default_negative_neighbours(),
            context_turns: default_context_turns(),
            context_weight: default_context_weight(),
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_input_bytes: default_max_input_bytes(),
            default_deadline_ms: default_deadline_ms(),
        }
    }
}

fn default_model() -> String {
    "sentence-transformers/all-MiniLM-L6-v2".to_string()
}
fn default_device() -> String {
    "cpu".to_string()
}
fn default_max_batch() -> usize {
    32
}
fn default_queue_capacity() -> usize {
    1024
}
fn default_queue_tokens() -> usize {
    64 * 1024
}
fn default_max_queue_ms() -> u64 {
    100
}
fn default_cache_size() -> usize {
    4096
}
fn default_top_k() -> usize {
    10
}
fn default_threshold() -> f32 {
    0.4
}
fn default_exact_search_max() -> usize {
    20_000
}
fn default_hybrid_weight() -> f32 {
    0.7
}
fn default_hybrid_neighbours() -> usize {
    1
}
fn default_late_weight() -> f32 {
    0.5
}
fn default_late_shortlist() -> usize {
    10
}
fn default_negative_weight() -> f32 {
    0.5
}
fn default_negative_neighbours() -> usize {
    3
}
fn default_context_turns() -> usize {
    3
}
fn default_context_weight() -> f32 {
    0.5
}
fn default_deadline_ms() -> u64 {
    300_000
}
fn default_max_input_bytes() -> usize {
    64 * 1024
}
