//! The exact k-NN scan over many exemplars, on an int8 copy of their vectors.
//!
//! The F32 vectors of 15,000 exemplars are 23 MB: a scan streams them from L3 or memory and costs about
//! 1.5 ms. Their int8 copy (per-vector scales, our int8 matrix kernel with the query as a one-row
//! activation) is a quarter of that and stays in cache. Quantised scores are only approximate, so the
//! scan keeps every exemplar that could still be among the true top k, using the kernel's worst-case
//! error bound, and re-scores those few in F32: the result is the exact scan's, not an approximation.

use super::vector::dot;
use super::Hit;
use semroute_kernels::{gemm_i8, Activation, Isa, PackedI8};

/// Below this many exemplars the plain F32 scan is as fast (its vectors fit in L2) and there is nothing
/// to gain from a second copy.
pub const QUANTISED_SCAN_MIN: usize = 4_096;

/// Int8 copy of an index's unit vectors, for [`QuantisedScan::top_k`].
pub struct QuantisedScan {
    packed: PackedI8,
    isa: Isa,
    /// Largest L1 norm of any exemplar vector (enters the error bound).
    max_l1: f32,
}

impl QuantisedScan {
    /// Packs `vectors` (`n x dim`, row-major). `None` when this CPU has only the portable kernels, which
    /// are not faster than the F32 scan.
    pub fn build(vectors: &[f32], dim: usize) -> Option<Self> {
        let isa = Isa::detect();
        if isa == Isa::Portable || dim == 0 {
            return None;
        }
        let n = vectors.len() / dim;
        let max_l1 = vectors
            .chunks_exact(dim)
            .map(|v| v.iter().map(|x| x.abs()).sum::<f32>())
            .fold(0f32, f32::max);
        Some(Self {
            packed: PackedI8::pack(vectors, n, dim),
            isa,
            max_l1,
        })
    }

    /// Bytes held by the int8 copy.
    pub fn bytes(&self) -> usize {
        self.packed.n().next_multiple_of(gemm_i8::NR) * (self.packed.k() + 4)
    }

    /// The exact `k` nearest of `vectors` (the F32 rows this scan was built from) to `query`, most similar
    /// first, and how many exemplars were re-scored in F32.
    pub fn top_k(&self, vectors: &[f32], query: &[f32], k: usize) -> (Vec<Hit>, usize) {
        let (n, dim) = (self.packed.n(), self.packed.k());
        let k = k.min(n);
        if k == 0 {
            return (Vec::new(), 0);
        }
        let mut approx = vec![0f32; n];
        gemm_i8::matmul(
            self.isa,
            query,
            1,
            &self.packed,
            None,
            Activation::None,
            semroute_kernels::uninit_mut(&mut approx),
        );
        // Every approximate score is within `bound` of the exact one. The k-th best approximate score
        // `t` is then at most the exact k-th best plus `bound`, and each of the true top k scores at least
        // the exact k-th best minus `bound` approximately: all of them have approx >= t - 2 * bound.
        let bound = self.packed.error_bound(query, self.max_l1);
        let cut = kth_largest(&approx, k) - 2.0 * bound;
        let mut hits: Vec<Hit> = approx
            .iter()
            .enumerate()
            .filter(|(_, &a)| a >= cut)
            .map(|(id, _)| Hit {
                id,
                similarity: dot(query, &vectors[id * dim..(id + 1) * dim]),
            })
            .collect();
        let rescored = hits.len();
        let by_sim_desc = |a: &Hit, b: &Hit| b.similarity.total_cmp(&a.similarity);
        if k < hits.len() {
            hits.select_nth_unstable_by(k - 1, by_sim_desc);
            hits.truncate(k);
        }
        hits.sort_unstable_by(by_sim_desc);
        (hits, rescored)
    }
}

/// The `k`-th largest of `xs` (`1 <= k <= xs.len()`), keeping a sorted top-k buffer: one compare per item
/// for the usual item that does not make the cut, and no copy of `xs`.
fn kth_largest(xs: &[f32], k: usize) -> f32 {
    let mut top: Vec<f32> = Vec::with_capacity(k + 1);
    for &x in xs {
        if top.len() < k {
            let at = top.partition_point(|&t| t > x);
            top.insert(at, x);
        } else if x > top[k - 1] {
            let at = top.partition_point(|&t| t > x);
            top.insert(at, x);
            top.pop();
        }
    }
    top[k - 1]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::normalize;

    fn unit_vectors(n: usize, dim: usize, seed: u64, clusters: usize) -> Vec<f32> {
        let mut s = seed | 1;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        };
        let centres: Vec<Vec<f32>> = (0..clusters)
            .map(|_| (0..dim).map(|_| next()).collect())
            .collect();
        let mut out = Vec::with_capacity(n * dim);
        for i in 0..n {
            // Tight clusters make many near-ties around the k-th score: the hard case for the bound.
            let mut v: Vec<f32> = centres[i % clusters]
                .iter()
                .map(|c| c + 0.15 * next())
                .collect();
            assert!(normalize(&mut v));
            out.extend_from_slice(&v);
        }
        out
    }

    fn exact_top_k(vectors: &[f32], dim: usize, q: &[f32], k: usize) -> Vec<usize> {
        let mut all: Vec<(usize, f32)> = vectors
            .chunks_exact(dim)
            .enumerate()
            .map(|(i, v)| (i, dot(q, v)))
            .collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1));
        all.truncate(k);
        all.into_iter().map(|(i, _)| i).collect()
    }

    #[test]
    fn kth_largest_matches_sorting() {
        let xs: [f32; 7] = [0.3, -1.0, 2.5, 0.3, 7.0, 1.0, -4.0];
        let mut sorted = xs.to_vec();
        sorted.sort_by(|a, b| b.total_cmp(a));
        for k in 1..=xs.len() {
            assert_eq!(kth_largest(&xs, k), sorted[k - 1], "k = {k}");
        }
    }

    #[test]
    fn quantised_scan_returns_the_exact_top_k() {
        let dim = 384;
        let vectors = unit_vectors(6_000, dim, 11, 40);
        let Some(scan) = QuantisedScan::build(&vectors, dim) else {
            eprintln!("portable kernels only: the quantised scan is not used on this CPU");
            return;
        };
        let queries = unit_vectors(50, dim, 99, 40);
        let mut rescored_total = 0;
        for q in queries.chunks_exact(dim) {
            for k in [1, 10, 32] {
                let (hits, rescored) = scan.top_k(&vectors, q, k);
                rescored_total += rescored;
                let got: Vec<usize> = hits.iter().map(|h| h.id).collect();
                let want = exact_top_k(&vectors, dim, q, k);
                // Ids can differ only between exactly tied similarities.
                for (g, w) in got.iter().zip(&want) {
                    let (sg, sw) = (
                        dot(q, &vectors[g * dim..(g + 1) * dim]),
                        dot(q, &vectors[w * dim..(w + 1) * dim]),
                    );
                    assert!(g == w || sg == sw, "k {k}: got {g} ({sg}), want {w} ({sw})");
                }
                assert_eq!(got.len(), k);
                assert!(hits.windows(2).all(|p| p[0].similarity >= p[1].similarity));
            }
        }
        // The point of the bound: it re-scores a small fraction of 6,000 exemplars (about 2% here), not all.
        assert!(
            rescored_total < 150 * 6_000 / 10,
            "re-scored {rescored_total} over 150 searches"
        );
    }

    #[test]
    fn error_bound_holds_on_every_score() {
        let dim = 384;
        let vectors = unit_vectors(2_000, dim, 5, 7);
        let Some(scan) = QuantisedScan::build(&vectors, dim) else {
            return;
        };
        let queries = unit_vectors(20, dim, 17, 7);
        for q in queries.chunks_exact(dim) {
            let mut approx = vec![0f32; 2_000];
            gemm_i8::matmul(
                scan.isa,
                q,
                1,
                &scan.packed,
                None,
                Activation::None,
                semroute_kernels::uninit_mut(&mut approx),
            );
            let bound = scan.packed.error_bound(q, scan.max_l1);
            assert!(bound < 0.05, "bound {bound} too loose to be useful");
            for (i, a) in approx.iter().enumerate() {
                let exact = dot(q, &vectors[i * dim..(i + 1) * dim]);
                assert!(
                    (a - exact).abs() <= bound,
                    "{i}: {a} vs {exact}, bound {bound}"
                );
            }
        }
    }
}
