//! The sensitive-data guard's cost per prompt: every built-in detector on (`detect`, and `redact` for the
//! copy a non-private target would get) over the labelled set's 318 prompts, one prompt at a time.
//!
//! `cargo bench --bench guard`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use semroute::config::{GuardAction, GuardConfig};
use semroute::guard::{Builtin, Guard};
use semroute::message::ChatMessage;

fn prompts() -> Vec<Vec<ChatMessage>> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/guard/labelled.jsonl"
    );
    std::fs::read_to_string(path)
        .expect("the labelled set")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("JSON line");
            vec![ChatMessage::text("user", v["text"].as_str().expect("text"))]
        })
        .collect()
}

fn guard(action: GuardAction) -> Guard {
    Guard::new(&GuardConfig {
        detectors: Builtin::ALL
            .iter()
            .map(|b| (b.name().to_string(), action))
            .collect(),
        custom: Vec::new(),
    })
    .expect("built-in detectors")
}

fn bench(c: &mut Criterion) {
    let set = prompts();
    let bytes: usize = set.iter().map(|m| m[0].content.len()).sum();
    let mut g = c.benchmark_group("guard");
    g.throughput(Throughput::Bytes(bytes as u64));
    for (name, action) in [
        ("detect", GuardAction::Detect),
        ("redact", GuardAction::Redact),
    ] {
        let guard = guard(action);
        g.bench_function(format!("{name}_318_prompts"), |b| {
            b.iter(|| {
                let mut hits = 0;
                for m in &set {
                    hits += guard.scan(m).hits.len();
                }
                hits
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
