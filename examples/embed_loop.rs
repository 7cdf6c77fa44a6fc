//! Embeds the same input in a loop for a fixed time, through the model thread as the service runs it: the
//! workload for `perf record` (the criterion bench's warm-up and sampling get in a profile's way) and a
//! quick per-call timing.
//!
//! ```sh
//! cargo build --release --example embed_loop
//! perf record -g -o perf.data target/release/examples/embed_loop -- int8-fast query 10
//! perf report -i perf.data --no-children --percent-limit 1
//! ```
//!
//! Arguments: precision (`f32`, `int8`, `int8-fast`, `bf16`; default `int8-fast`), input (`query`: the PEERS.md
//! one-query text; `batch32`: 32 varied sentences; `clinc`: passes over the CLINC150 test texts sorted by
//! length in batches of 32, the protocol of `scripts/peers/onnx_bench.py`, from the file
//! `SEMROUTE_CLINC` names; default `query`), seconds (default 10). Honours `SEMROUTE_KERNELS` like the
//! service. Prints the mean per call and, per pass over the input, the fastest, p10 and median.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use semroute::embedding::{Backend, DeviceSpec, Embedder, SentenceEncoder};
use semroute_kernels::Precision;

const QUERY: &str = "can you tell me how to say fly in italian please";

const SENTENCES: [&str; 8] = [
    "what is the balance of my checking account",
    "please book a table for four at an italian place",
    "how do i reset the password on my router",
    "tell me a joke",
    "can you translate good morning into german for me",
    "i need to transfer five hundred dollars to my savings account before friday",
    "set an alarm",
    "what will the weather be like in boston tomorrow afternoon",
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--").collect();
    let precision = match args.first().map(String::as_str).unwrap_or("int8-fast") {
        "f32" => Precision::F32,
        "int8" => Precision::Int8,
        "int8-fast" => Precision::Int8Fast,
        "bf16" => Precision::Bf16,
        other => panic!("unknown precision {other}: f32, int8, int8-fast or bf16"),
    };
    let texts: Vec<String> = match args.get(1).map(String::as_str).unwrap_or("query") {
        "query" => vec![QUERY.to_string()],
        "batch32" => (0..32)
            .map(|i| {
                format!(
                    "{} {}",
                    SENTENCES[i % 8],
                    ["", "please", "right now", "thanks"][i / 8]
                )
            })
            .collect(),
        "clinc" => {
            let path =
                std::env::var("SEMROUTE_CLINC").expect("SEMROUTE_CLINC: CLINC150 data_full.json");
            let json: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(path).expect("read SEMROUTE_CLINC"))
                    .expect("CLINC150 JSON");
            let mut texts: Vec<String> = json["test"]
                .as_array()
                .expect("a test split")
                .iter()
                .filter_map(|pair| pair[0].as_str().map(str::to_string))
                .collect();
            texts.sort_by_key(|t| t.chars().count());
            texts
        }
        other => panic!("unknown input {other}: query, batch32 or clinc"),
    };
    let seconds: u64 = args.get(2).map_or(10, |s| s.parse().expect("seconds"));

    let dir = std::env::var_os("SEMROUTE_MODELS_DIR")
        .map_or_else(
            || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models"),
            PathBuf::from,
        )
        .join("all-MiniLM-L6-v2");
    let backend = Backend::choose(&candle_core::Device::Cpu, precision);
    let encoder = SentenceEncoder::load_on(&dir, DeviceSpec::Cpu, None, backend)
        .expect("run ./models/fetch.sh first");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let embedder = Embedder::start(encoder, 64, 1024, threads).expect("model thread");
    // One call is up to 32 texts (a CLINC150 pass is many calls).
    let calls_of: Vec<Vec<String>> = texts.chunks(32).map(<[String]>::to_vec).collect();
    for c in calls_of.iter().cycle().take(50) {
        embedder.embed_blocking(c.clone()).expect("embed");
    }
    let started = Instant::now();
    let mut calls = 0u64;
    let mut done = 0usize;
    // Each pass over the input is timed too: on a VM whose neighbours steal time in bursts, the fastest
    // and the median pass say more about the code than the mean does.
    let mut passes: Vec<f64> = Vec::new();
    // At least one pass, so a zero-second run still prints figures.
    while passes.is_empty() || started.elapsed() < Duration::from_secs(seconds) {
        let pass = Instant::now();
        for c in &calls_of {
            embedder.embed_blocking(c.clone()).expect("embed");
            calls += 1;
            done += c.len();
        }
        passes.push(pass.elapsed().as_secs_f64() / calls_of.len() as f64 * 1e6);
    }
    let took = started.elapsed().as_secs_f64();
    passes.sort_by(f64::total_cmp);
    println!(
        "{}: {calls} calls, {done} texts, {:.1} µs per call, {:.0} texts/s; per call by pass: fastest {:.1} µs, p10 {:.1}, p50 {:.1}",
        backend.describe(),
        took / calls as f64 * 1e6,
        done as f64 / took,
        passes[0],
        passes[passes.len() / 10],
        passes[passes.len() / 2],
    );
}
