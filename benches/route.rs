//! Routing benchmarks: one prompt (and a conversation's follow-up) routed in-process on the shipped
//! routes.yaml, and the index search on its
//! own at several sizes, exact scan vs HNSW, which is how `matching.exact_search_max` was chosen, and the
//! training of the late rule's route head (`matching.head_weight`) at CLINC150's sizes.
//! Run: `cargo bench --bench route`.

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use semroute::index::{normalize, Exemplar, HeadTraining, LinearHead, RouteIndex};
use semroute::router::{start_embedder, RouteQuery, Router};

fn route_one(c: &mut Criterion) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("routes.yaml");
    let loaded = semroute::config::load_file(&path).unwrap();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let embedder = start_embedder(&loaded, threads).expect("run ./models/fetch.sh first");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // The model path (prompt cache off: every call embeds) and the cached path (a repeated prompt).
    for (name, cache_size) in [
        ("route/one_prompt_in_process", 0),
        ("route/one_prompt_cached", 4096),
    ] {
        let mut config = loaded.config.clone();
        config.encoder.cache_size = cache_size;
        let router = Router::build(embedder.clone(), config).unwrap();
        c.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(router.route(RouteQuery {
                    text: "can you tell me how to say fly in italian please".into(),
                    ..Default::default()
                }))
                .unwrap()
            })
        });
        // A follow-up that cannot decide alone: the earlier user turn joins the decision
        // (`matching.context_turns`). Cached, both turns come from the prompt cache; uncached, each
        // call embeds the last turn, then the earlier one.
        let follow_up = name.replace("one_prompt", "follow_up");
        let messages = vec![
            semroute::router::ChatMessage::text(
                "user",
                "Write a Python function that checks whether a string is a palindrome.",
            ),
            semroute::router::ChatMessage::text("assistant", "def is_palindrome(s): ..."),
            semroute::router::ChatMessage::text("user", "and now in Rust?"),
        ];
        let d = rt
            .block_on(router.route(RouteQuery {
                messages: messages.clone(),
                ..Default::default()
            }))
            .unwrap();
        assert_eq!(
            d.context_turns, 1,
            "the follow-up must use its context: {d:?}"
        );
        c.bench_function(&follow_up, |b| {
            b.iter(|| {
                rt.block_on(router.route(RouteQuery {
                    messages: messages.clone(),
                    ..Default::default()
                }))
                .unwrap()
            })
        });
    }
}

/// Deterministic clustered unit vectors (sentence embeddings cluster by topic).
fn clustered(n: usize, dim: usize, seed: u64) -> Vec<Exemplar> {
    let mut s = seed;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    };
    let centres: Vec<Vec<f32>> = (0..150)
        .map(|_| (0..dim).map(|_| next()).collect())
        .collect();
    (0..n)
        .map(|i| {
            let mut v: Vec<f32> = centres[i % 150].iter().map(|c| c + 0.6 * next()).collect();
            normalize(&mut v);
            Exemplar {
                route: i % 150,
                text: String::new(),
                vector: v,
            }
        })
        .collect()
}

fn search(c: &mut Criterion) {
    let dim = 384;
    let routes: Vec<String> = (0..150).map(|r| format!("r{r}")).collect();
    let mut g = c.benchmark_group("search_top10");
    for n in [1_500usize, 15_000, 50_000, 150_000] {
        let mut ex = clustered(n + 100, dim, 7 + n as u64);
        let queries: Vec<Vec<f32>> = ex.split_off(n).into_iter().map(|e| e.vector).collect();
        let q = queries[0].clone();
        // exact_max = usize::MAX: the exact scan (int8 copy + F32 re-scoring from 4,096 exemplars up);
        // exact_max = 0: the HNSW graph.
        let scan = RouteIndex::build(dim, routes.clone(), ex.clone(), usize::MAX).unwrap();
        let started = std::time::Instant::now();
        let idx = RouteIndex::build(dim, routes.clone(), ex, 0).unwrap();
        // Recall@10 of the graph against the exact scan over 100 held-out queries, printed beside the
        // timings (the test suite guards recall at 20,000; this reports it at every size benchmarked).
        let mut found = 0;
        for q in &queries {
            let exact: std::collections::HashSet<usize> =
                scan.search(q, 10).iter().map(|h| h.id).collect();
            found += idx
                .search(q, 10)
                .iter()
                .filter(|h| exact.contains(&h.id))
                .count();
        }
        eprintln!(
            "search_top10/{n}: HNSW recall@10 {:.4} over {} queries (build {:.1} s)",
            found as f64 / (10 * queries.len()) as f64,
            queries.len(),
            started.elapsed().as_secs_f64()
        );
        g.bench_with_input(BenchmarkId::new("exact", n), &n, |b, _| {
            b.iter(|| scan.search(&q, 10))
        });
        g.bench_with_input(BenchmarkId::new("exact_f32_only", n), &n, |b, _| {
            b.iter(|| scan.search_exact_f32(&q, 10))
        });
        g.bench_with_input(BenchmarkId::new("hnsw", n), &n, |b, _| {
            b.iter(|| idx.search(&q, 10))
        });
    }
    g.finish();
}

/// Training the route head as an index build does (default settings), on 1,500 and 15,000 exemplars over
/// 150 routes: CLINC150 at K = 10 and K = all.
fn head_training(c: &mut Criterion) {
    let mut g = c.benchmark_group("head_train");
    g.sample_size(10);
    for n in [1_500, 15_000] {
        let ex = clustered(n, 384, 11);
        let inputs: Vec<f32> = ex.iter().flat_map(|e| e.vector.iter().copied()).collect();
        let labels: Vec<usize> = ex.iter().map(|e| e.route).collect();
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                LinearHead::train(&inputs, &labels, 384, 150, HeadTraining::default()).unwrap()
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = route_one, search, head_training
}
criterion_main!(benches);
