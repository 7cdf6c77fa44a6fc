//! Each linear-layer kernel against candle's matmul on the encoder's real shapes: one query (13 rows)
//! and a batch of 32 sentences (448 rows), for the QKV (384 -> 1152), FFN up (384 -> 1536) and FFN down
//! (1536 -> 384) products. Run: `cargo bench --bench kernels`. Throughput is in multiply-adds. Both sides
//! use every core: candle its rayon pool, ours a [`Team`] of the same size, as the model thread does. Ours
//! runs on every vector instruction set this CPU has (AVX-512 and AVX2 side by side where both exist;
//! portable only where neither does).

use candle_core::{Device, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use semroute_kernels::{noise, Activation, Isa, Linear, Precision, Team};

fn bench(c: &mut Criterion) {
    let mut isas: Vec<Isa> = Isa::available()
        .into_iter()
        .filter(|isa| *isa != Isa::Portable)
        .collect();
    if isas.is_empty() {
        isas.push(Isa::Portable);
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let team = Team::new(threads, "bench-kernels").unwrap();
    let solo = Team::new(1, "bench-solo").unwrap();
    for (m, n, k, name) in [
        (13, 1152, 384, "qkv"),
        (13, 1536, 384, "up"),
        (13, 384, 1536, "down"),
        (448, 1152, 384, "qkv"),
        (448, 1536, 384, "up"),
        (448, 384, 1536, "down"),
    ] {
        let (x, w, b) = (noise(m * k, 1), noise(n * k, 2), noise(n, 3));
        let mut g = c.benchmark_group(format!("linear/{name}/{m}x{n}x{k}"));
        g.throughput(Throughput::Elements((m * n * k) as u64));
        let xt = Tensor::from_slice(&x, (m, k), &Device::Cpu).unwrap();
        let wt = Tensor::from_slice(&w, (n, k), &Device::Cpu).unwrap();
        let bt = Tensor::from_slice(&b, n, &Device::Cpu).unwrap();
        g.bench_function("candle", |bench| {
            bench.iter(|| {
                xt.matmul(&wt.t().unwrap())
                    .unwrap()
                    .broadcast_add(&bt)
                    .unwrap()
            })
        });
        for isa in &isas {
            for precision in Precision::ALL {
                let lin = Linear::new(&w, n, k, Some(b.clone()), precision, *isa);
                let mut out = vec![0f32; m * n];
                let label = format!("{}-{precision:?}", isa.name()).to_lowercase();
                g.bench_function(BenchmarkId::new("ours", &label), |bench| {
                    bench.iter(|| team.install(|| lin.forward(&x, m, Activation::None, &mut out)))
                });
                g.bench_function(BenchmarkId::new("ours-1t", &label), |bench| {
                    bench.iter(|| solo.install(|| lin.forward(&x, m, Activation::None, &mut out)))
                });
            }
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
