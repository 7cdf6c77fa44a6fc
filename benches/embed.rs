//! Embedding benchmarks with the real model, through the model thread as the service runs it: one query
//! (the PEERS.md protocol text, 13 tokens) and batches of 8 / 32 / 64 varied sentences, for each backend:
//! candle's own F32 kernels (the baseline), our F32 kernels (the exact path) and our int8 kernels (the
//! fast path). Run: `cargo bench --bench embed` (after ./models/fetch.sh); filter with e.g. `-- int8`.
//!
//! With `SEMROUTE_CLINC=path/to/data_full.json` (CLINC150, e.g. `../shared/data/clinc150/data_full.json`)
//! it also prints the throughput over the 4,500 test texts sorted by length in batches of 32, the protocol
//! of `scripts/peers/onnx_bench.py`, so ours and ONNX Runtime's figures compare like for like (about 30 s
//! per backend, whatever the filter).

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use semroute::embedding::{Backend, DeviceSpec, Embedder, SentenceEncoder};
use semroute_kernels::{Isa, Precision};

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
        Backend::Kernels(isa, Precision::Int8Fast),
        Backend::Kernels(isa, Precision::Bf16),
    ]
}

/// The CLINC150 test texts, sorted by length (as sentence-transformers' `encode` and the peer script do).
fn clinc_test_sorted() -> Option<Vec<String>> {
    let path = PathBuf::from(std::env::var_os("SEMROUTE_CLINC")?);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    let mut texts: Vec<String> = json["test"]
        .as_array()?
        .iter()
        .filter_map(|pair| pair[0].as_str().map(str::to_string))
        .collect();
    texts.sort_by_key(|t| t.chars().count());
    Some(texts)
}

/// Sentences per second over whole passes of `texts` in batches of `batch` (median of up to three passes,
/// stopping after about 20 s).
fn corpus_throughput(embedder: &Embedder, texts: &[String], batch: usize) -> f64 {
    let started = std::time::Instant::now();
    let mut rates = Vec::new();
    while rates.len() < 3 && (rates.is_empty() || started.elapsed().as_secs() < 20) {
        let pass = std::time::Instant::now();
        for chunk in texts.chunks(batch) {
            embedder.embed_blocking(chunk.to_vec()).unwrap();
        }
        rates.push(texts.len() as f64 / pass.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

fn bench(c: &mut Criterion) {
    let clinc = clinc_test_sorted();
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
        if let (Some(texts), false) = (&clinc, backend == Backend::Candle) {
            let rate = corpus_throughput(&embedder, texts, 32);
            eprintln!(
                "embed/{name}: {rate:.0} sentences/s over the {} CLINC150 test texts, sorted by length, batches of 32",
                texts.len()
            );
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(4));
    targets = bench
}
criterion_main!(benches);
