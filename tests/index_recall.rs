//! HNSW recall@10 against the exact scan on 20,000 clustered unit vectors (no model needed), and the
//! cut-over: small sets use the exact scan, large ones the graph.

use semroute::index::{normalize, Exemplar, RouteIndex, SearchMode};

/// A tiny deterministic generator (xorshift) so the test needs no RNG crate and is reproducible.
struct Rng(u64);
impl Rng {
    fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
    fn vec(&mut self, dim: usize) -> Vec<f32> {
        (0..dim).map(|_| self.next_f32()).collect()
    }
}

/// Sentence embeddings are clustered (by topic), not uniform on the sphere: mimic that with 200 centres
/// and points scattered around them.
fn clustered(n: usize, dim: usize, rng: &mut Rng) -> Vec<Exemplar> {
    let centres: Vec<Vec<f32>> = (0..200).map(|_| rng.vec(dim)).collect();
    (0..n)
        .map(|i| {
            let c = &centres[i % centres.len()];
            let noise = rng.vec(dim);
            let mut v: Vec<f32> = c.iter().zip(&noise).map(|(a, b)| a + 0.6 * b).collect();
            normalize(&mut v);
            Exemplar {
                route: i % 200,
                text: format!("e{i}"),
                vector: v,
            }
        })
        .collect()
}

#[test]
fn hnsw_recall_at_10_on_20k() {
    let dim = 384;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    // 20,000 indexed points plus 200 held-out queries from the same distribution.
    let mut ex = clustered(20_200, dim, &mut rng);
    let held_out: Vec<Vec<f32>> = ex.split_off(20_000).into_iter().map(|e| e.vector).collect();
    let routes: Vec<String> = (0..200).map(|r| format!("r{r}")).collect();
    let idx = RouteIndex::build(dim, routes, ex, 1_000).unwrap();
    assert_eq!(idx.mode(), SearchMode::Hnsw);

    let queries = 200;
    let mut found = 0usize;
    for q in &held_out {
        let exact: Vec<usize> = idx.search_exact(q, 10).iter().map(|h| h.id).collect();
        let approx: Vec<usize> = idx.search(q, 10).iter().map(|h| h.id).collect();
        assert_eq!(approx.len(), 10);
        found += approx.iter().filter(|id| exact.contains(id)).count();
    }
    let recall = found as f64 / (queries * 10) as f64;
    eprintln!("HNSW recall@10 on 20k clustered vectors: {recall:.4}");
    assert!(recall >= 0.95, "recall@10 {recall}");
}

#[test]
fn small_sets_use_the_exact_scan() {
    let mut rng = Rng(42);
    let ex = clustered(500, 32, &mut rng);
    let routes: Vec<String> = (0..200).map(|r| format!("r{r}")).collect();
    let idx = RouteIndex::build(32, routes, ex, 20_000).unwrap();
    assert_eq!(idx.mode(), SearchMode::Exact);
    let mut q = rng.vec(32);
    normalize(&mut q);
    assert_eq!(idx.search(&q, 5), idx.search_exact(&q, 5));
}
