//! Embedding benchmarks with the real model, through the model thread as the service runs it: one query
//! (the PEERS.md protocol text, 13 tokens) and batches of 8 / 32 / 64 varied sentences, for each backend:
//! candle's own F32 kernels (the baseline), our F32 kernels (the exact path) and our int8 kernels (the
//! fast path). Run: `cargo bench --bench embed` (after ./models/fetch.sh); filter with e.g. `-- int8`.

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use semroute::embedding::{Backend, DeviceSpec, Embedder, SentenceEncoder};
use semroute::kernels::{Isa, Precision};

const QUERY: &str = "can you tell me how to say fly in italian please";

/// 64 sentences of CLINC-like lengths (5-25 tokens), built from fixed parts so the run is reproducible.
fn sentences() -> Vec<String> {
    let heads = [
        "what is the balance of my checking account",
        "please book a table for four at an italian place",
        "how do i reset the password on my router",
        "tell me a joke",
        "can you translate good morning into german for me",
        "i need to transfer five hundred dollars to my savings account before friday",
        "set an alarm",
        "what will the weather be like in boston tomorrow afternoon",
    ];
    let tails = [
        "",
        " right now",
        " please",
        " as soon as you can",
        " because i forgot",
        " thanks",
        " and also remind me later",
        " if that is possible today",
    ];
    heads
        .iter()
        .flat_map(|h| tails.iter().map(move |t| format!("{h}{t}")))
        .collect()
}

fn backends() -> Vec<Backend> {
    let isa = Isa::detect();
    vec![
        Backend::Candle,
        Backend::Kernels(isa, Precision::F32),
        Backend::Kernels(isa, Precision::Int8),
    ]
}

fn bench(c: &mut Criterion) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/all-MiniLM-L6-v2");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let all = sentences();
    for backend in backends() {
        let encoder = SentenceEncoder::load_on(&dir, DeviceSpec::Cpu, None, backend)
            .expect("run ./models/fetch.sh first");
        let embedder = Embedder::start(encoder, 64, 1024, threads).unwrap();
        let name = backend.describe();
        let mut g = c.benchmark_group(format!("embed/{name}"));
        g.throughput(Throughput::Elements(1));
        g.bench_function("one_query", |b| {
            b.iter(|| embedder.embed_blocking(vec![QUERY.to_string()]).unwrap())
        });
        for n in [8usize, 32, 64] {
            let batch: Vec<String> = all.iter().step_by(64 / n).take(n).cloned().collect();
            g.throughput(Throughput::Elements(n as u64));
            g.bench_with_input(BenchmarkId::new("batch", n), &batch, |b, batch| {
                b.iter(|| embedder.embed_blocking(batch.clone()).unwrap())
            });
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(4));
    targets = bench
}
criterion_main!(benches);
