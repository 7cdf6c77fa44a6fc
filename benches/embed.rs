//! Embedding benchmarks with the real model: one query (the PEERS.md protocol text, 13 tokens) and a
//! batch of 32 CLINC-like sentences. Run: `cargo bench --bench embed` (after ./models/fetch.sh).

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use semroute::embedding::{DeviceSpec, Embedder, SentenceEncoder};

fn model() -> SentenceEncoder {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/all-MiniLM-L6-v2");
    SentenceEncoder::load(&dir, DeviceSpec::Cpu, None).expect("run ./models/fetch.sh first")
}

const QUERY: &str = "can you tell me how to say fly in italian please";

fn bench(c: &mut Criterion) {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let embedder = Embedder::start(model(), 32, 1024, threads).unwrap();
    let mut g = c.benchmark_group("embed");
    g.throughput(Throughput::Elements(1));
    g.bench_function("one_query_via_model_thread", |b| {
        b.iter(|| embedder.embed_blocking(vec![QUERY.to_string()]).unwrap())
    });
    let batch: Vec<String> = (0..32)
        .map(|i| format!("what is the balance of my checking account number {i} right now"))
        .collect();
    g.throughput(Throughput::Elements(32));
    g.bench_function("batch_32", |b| {
        b.iter(|| embedder.embed_blocking(batch.clone()).unwrap())
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = bench
}
criterion_main!(benches);
