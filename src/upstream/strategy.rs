//! Target choice: the order in which a route's targets are tried for one request.
//!
//! Health is not consulted here beyond learned latency: the caller walks the order and skips targets whose
//! circuit is open, so every strategy falls back along the rest.

use std::collections::HashMap;

use crate::config::{Config, RouteConfig, Strategy};

/// What target choice needs to know about the request.
#[derive(Debug, Clone, Copy)]
pub struct RequestShape<'a> {
    /// Caller metadata (the weighted strategy's sticky key is read from it).
    pub metadata: &'a HashMap<String, String>,
    /// Estimated input tokens.
    pub input_tokens: u64,
    /// Expected output tokens (max_tokens, or a typical answer length).
    pub output_tokens: u64,
}

/// The estimated price in USD of a request of `shape` on `model`.
pub fn estimated_cost(config: &Config, model: &str, input_tokens: u64, output_tokens: u64) -> f64 {
    config
        .models
        .iter()
        .find(|m| m.name == model)
        .map_or(0.0, |m| {
            (input_tokens as f64 * m.input_price + output_tokens as f64 * m.output_price) / 1e6
        })
}

/// Orders `route.targets` for one request; returns model names, most preferred first.
///
/// `latency_ms` gives a target's learned expected latency (`None`: never measured).
pub fn order(
    config: &Config,
    route: &RouteConfig,
    shape: RequestShape<'_>,
    latency_ms: &dyn Fn(&str) -> Option<f64>,
) -> Vec<String> {
    let mut names: Vec<&str> = route.targets.iter().map(|t| t.model.as_str()).collect();
    match route.strategy {
        Strategy::Fallback => {}
        Strategy::Weighted => {
            let weights: Vec<f64> = route
                .targets
                .iter()
                .map(|t| t.weight.unwrap_or(0.0))
                .collect();
            let draw = match route
                .sticky_key
                .as_deref()
                .and_then(|k| shape.metadata.get(k))
            {
                Some(v) => unit_hash(v),
                None => fastrand::f64(),
            };
            if let Some(i) = pick_weighted(&weights, draw) {
                let chosen = names.remove(i);
                names.insert(0, chosen);
            }
        }
        Strategy::Cheapest | Strategy::Cascade => {
            // Stable: equal prices keep the listed order.
            names.sort_by(|a, b| {
                let ca = estimated_cost(config, a, shape.input_tokens, shape.output_tokens);
                let cb = estimated_cost(config, b, shape.input_tokens, shape.output_tokens);
                ca.total_cmp(&cb)
            });
        }
        Strategy::Fastest => {
            // Unmeasured targets first (they must be tried to be learned), then by expected latency.
            names.sort_by(|a, b| {
                let la = latency_ms(a).unwrap_or(f64::NEG_INFINITY);
                let lb = latency_ms(b).unwrap_or(f64::NEG_INFINITY);
                la.total_cmp(&lb)
            });
        }
    }
    names.into_iter().map(str::to_string).collect()
}

/// The index whose cumulative share contains `draw` (in [0, 1)).
pub fn pick_weighted(weights: &[f64], draw: f64) -> Option<usize> {
    let total: f64 = weights.iter().sum();
    if weights.is_empty() || total <= 0.0 {
        return None;
    }
    let mut acc = 0.0;
    let point = draw * total;
    for (i, w) in weights.iter().enumerate() {
        acc += w;
        if point < acc {
            return Some(i);
        }
    }
    Some(weights.len() - 1)
}

/// A deterministic, well-spread map from a string to [0, 1): FNV-1a then the splitmix64 finaliser. Stable
/// across processes and releases (unlike `std`'s hasher), so a user keeps their arm after a restart.
pub fn unit_hash(s: &str) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    // The top 53 bits make an exact double in [0, 1).
    (h >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_pick_respects_shares() {
        let w = [1.0, 3.0];
        assert_eq!(pick_weighted(&w, 0.0), Some(0));
        assert_eq!(pick_weighted(&w, 0.24), Some(0));
        assert_eq!(pick_weighted(&w, 0.26), Some(1));
        assert_eq!(pick_weighted(&w, 0.999), Some(1));
        assert_eq!(pick_weighted(&[], 0.5), None);
    }

    #[test]
    fn unit_hash_is_stable_and_spread() {
        assert_eq!(unit_hash("user-1"), unit_hash("user-1"));
        let n = 10_000;
        let below_half = (0..n).filter(|i| unit_hash(&format!("u{i}")) < 0.5).count();
        assert!((4_800..5_200).contains(&below_half), "{below_half}");
    }
}
