//! The `routes.yaml` schema: plain serde structs. Unknown fields are rejected everywhere so that a typo
//! never silently falls back to a default.

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
    /// The route answered when no route clears its threshold. `None`: answer with no route.
    #[serde(default)]
    pub default_route: Option<String>,
    /// The routes, each declared by example utterances.
    pub routes: Vec<RouteConfig>,
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
    #[serde(default)]
    pub max_tokens: Option<usize>,
    /// Most texts the model thread embeds in one forward pass.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// Requests that may wait for the model before new ones are refused with RESOURCE_EXHAUSTED.
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
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
    /// Beats `max` and `mean` on CLINC150 by 7 points or more (see README).
    Centroid,
    /// `hybrid_weight` x centroid similarity + (1 - `hybrid_weight`) x the mean similarity of the route's
    /// best `hybrid_neighbours` exemplars among the top-k (a route with none there gets the k-th similarity,
    /// an upper bound). Prototype and neighbour evidence together: ties with `centroid` on CLINC150 with 10
    /// exemplars per route and beats it by 2 points with 100 (calibrated on val; see README), hence the
    /// default.
    #[default]
    Hybrid,
}

impl std::str::FromStr for Aggregation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "max" => Ok(Self::Max),
            "mean" => Ok(Self::Mean),
            "centroid" => Ok(Self::Centroid),
            "hybrid" => Ok(Self::Hybrid),
            other => Err(format!(
                "unknown aggregation `{other}` (expected max, mean, centroid or hybrid)"
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
    /// Up to this many exemplars the index is scanned exactly (faster and exact at that size); above it an
    /// HNSW graph answers. Measured cut-over (`cargo bench --bench route`, 384-d, top 10): the scan costs
    /// about 0.05-0.08 µs per exemplar (76 µs at 1,500; 1.25 ms at 15,000) and the graph 200-300 µs at any
    /// size measured, so they cross near 4,000.
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
}

/// `limits:` — request limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest prompt accepted, in bytes of UTF-8. Longer prompts are INVALID_ARGUMENT; prompts under the
    /// limit but over the model's token limit are truncated, never refused.
    #[serde(default = "default_max_input_bytes")]
    pub max_input_bytes: usize,
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
    #[serde(default)]
    pub threshold: Option<f32>,
    /// Example prompts that belong to this route.
    pub utterances: Vec<String>,
}

impl Default for EncoderConfig {
    fn default() -> Self {
        Self {
            model: default_model(),
            device: default_device(),
            max_tokens: None,
            max_batch: default_max_batch(),
            queue_capacity: default_queue_capacity(),
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
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_input_bytes: default_max_input_bytes(),
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
fn default_top_k() -> usize {
    10
}
fn default_threshold() -> f32 {
    0.4
}
fn default_exact_search_max() -> usize {
    4_000
}
fn default_hybrid_weight() -> f32 {
    0.7
}
fn default_hybrid_neighbours() -> usize {
    1
}
fn default_max_input_bytes() -> usize {
    64 * 1024
}
