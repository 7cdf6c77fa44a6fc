//! Element-wise maths of the forward pass, written so the compiler vectorises it: no libm calls, no
//! branches in the inner loops. `f32::exp` is a libm call per element, which made GELU and softmax a
//! visible share of a short query's forward pass.

/// ln 2 split in a part exact in f32 and the rest, so `x - n ln2` loses nothing ([`exp`] and its vector
/// forms).
pub(crate) const LN2_HI: f32 = 0.693_359_4;
/// The rest of ln 2 after [`LN2_HI`].
pub(crate) const LN2_LO: f32 = -2.121_944_4e-4;
/// The Taylor coefficients of `e^r` from degree 6 down to 0, as [`exp`] and its vector forms evaluate them.
pub(crate) const EXP_TAYLOR: [f32; 7] = [
    1.0 / 720.0,
    1.0 / 120.0,
    1.0 / 24.0,
    1.0 / 6.0,
    0.5,
    1.0,
    1.0,
];

/// `e^x` for f32, relative error below 2e-7 over the whole range (inputs below -87 give 0's neighbourhood,
/// above 88 are clamped). Range reduction `x = n ln2 + r`, `|r| <= ln2/2`, then a degree-6 Taylor
/// polynomial for `e^r` and `2^n` built in the exponent bits.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // Adding 1.5 * 2^23 rounds to the nearest integer in the default rounding mode.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = EXP_TAYLOR[1..]
        .iter()
        .fold(EXP_TAYLOR[0], |acc, &c| acc * r + c);
    let ni = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    p * f32::from_bits(((ni + 127) << 23) as u32)
}

/// erf as the rational function `x P(x^2) / Q(x^2)` on `[-4, 4]` (degrees 6 and 4 in `x^2`, coefficients as
/// in XLA's f32 `erf`), absolute error below 5e-7; beyond 4, erf is +-1 to within 2e-8, so `x` is clamped
/// there. One division and eleven multiply-adds: half the work of the exponential-based form
/// (Abramowitz & Stegun 7.1.26 with our `exp`), which made GELU most of the FFN-up epilogue. Plain
/// multiplies and adds, not fused ones, so every instruction set rounds alike (the kernels' epilogues must
/// agree bit for bit across tiers).
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    const P: [f32; 7] = [
        -2.726_142_3e-10,
        2.770_681_4e-8,
        -2.101_024e-6,
        -5.692_506_4e-5,
        -7.349_906_3e-4,
        -2.954_6e-3,
        -1.609_603_3e-2,
    ];
    const Q: [f32; 5] = [
        -1.456_607_2e-5,
        -2.133_740_6e-4,
        -1.682_827e-3,
        -7.373_329_2e-3,
        -1.426_474e-2,
    ];
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let p = P[1..].iter().fold(P[0], |acc, &c| acc * x2 + c) * x;
    let q = Q[1..].iter().fold(Q[0], |acc, &c| acc * x2 + c);
    p / q
}

/// GELU, exact (erf) form: `x/2 * (1 + erf(x / sqrt 2))`.
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// GELU in place over a slice.
#[inline(always)]
pub fn gelu_slice(xs: &mut [f32]) {
    for x in xs {
        *x = gelu(*x);
    }
}

/// Softmax in place over a slice (numerically stable: the maximum is subtracted first).
///
/// The maximum and the sum are taken in eight lanes, and the exponentials in a loop of their own, so all
/// three loops vectorise (a running scalar sum would keep the `exp` loop scalar).
#[inline(always)]
pub fn softmax(xs: &mut [f32]) {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let mut chunks = xs.chunks_exact(8);
    for c in &mut chunks {
        for (m, &x) in lanes.iter_mut().zip(c) {
            *m = m.max(x);
        }
    }
    let max = chunks
        .remainder()
        .iter()
        .chain(&lanes)
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    for x in xs.iter_mut() {
        *x = exp(*x - max);
    }
    let inv = 1.0 / sum8(xs);
    for x in xs {
        *x *= inv;
    }
}

/// Sum in eight lanes (vectorises; the order differs from a running sum only by rounding).
#[inline(always)]
fn sum8(xs: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let mut chunks = xs.chunks_exact(8);
    for c in &mut chunks {
        for (l, &x) in lanes.iter_mut().zip(c) {
            *l += x;
        }
    }
    lanes.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

/// `out = LayerNorm(x + residual) * gamma + beta` for one row. Sums are kept in eight lanes so the
/// compiler can vectorise the reductions.
#[inline(always)]
pub fn add_layer_norm(
    x: &[f32],
    residual: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    out: &mut [f32],
) {
    let n = x.len();
    for ((o, a), b) in out.iter_mut().zip(x).zip(residual) {
        *o = a + b;
    }
    let mean = lane_sum(out) / n as f32;
    let mut sq = [0f32; 8];
    let chunks = out.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for i in 0..8 {
            let d = c[i] - mean;
            sq[i] += d * d;
        }
    }
    let mut var: f32 = sq.iter().sum();
    for v in tail {
        var += (v - mean) * (v - mean);
    }
    let inv = 1.0 / (var / n as f32 + eps).sqrt();
    for ((o, g), b) in out.iter_mut().zip(gamma).zip(beta) {
        *o = (*o - mean) * inv * g + b;
    }
}

/// [`add_layer_norm`] for every row of `x` and `residual` (rows of `gamma.len()` values), compiled for
/// AVX2 + FMA where `isa` has them so the per-row loops vectorise with 8-wide FMAs.
pub fn add_layer_norm_rows(
    isa: crate::Isa,
    x: &[f32],
    residual: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    out: &mut [f32],
) {
    assert!(
        x.len() == residual.len() && x.len() == out.len() && x.len().is_multiple_of(gamma.len())
    );
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the x86 tiers are only chosen when the CPU has AVX2 and FMA.
        crate::Isa::Avx2 | crate::Isa::Avx512 | crate::Isa::Amx => unsafe {
            add_layer_norm_rows_avx2(x, residual, gamma, beta, eps, out)
        },
        _ => add_layer_norm_rows_portable(x, residual, gamma, beta, eps, out),
    }
}

#[inline(always)]
fn add_layer_norm_rows_portable(
    x: &[f32],
    residual: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    out: &mut [f32],
) {
    let h = gamma.len();
    for ((x, r), o) in x
        .chunks_exact(h)
        .zip(residual.chunks_exact(h))
        .zip(out.chunks_exact_mut(h))
    {
        add_layer_norm(x, r, gamma, beta, eps, o);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn add_layer_norm_rows_avx2(
    x: &[f32],
    residual: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    out: &mut [f32],
) {
    add_layer_norm_rows_portable(x, residual, gamma, beta, eps, out)
}

#[inline(always)]
fn lane_sum(xs: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = xs.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for i in 0..8 {
            acc[i] += c[i];
        }
    }
    acc.iter().sum::<f32>() + tail.iter().sum::<f32>()
}

/// Dot product of two equal-length slices. On x86-64 CPUs with AVX2 + FMA it runs four independent
/// 8-wide fused multiply-add chains (one chain waits on its own latency every step; four keep the FMA
/// units busy); elsewhere a plain loop with eight accumulators the compiler can vectorise. The feature
/// check is a cached load.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot of different lengths");
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the features `dot_avx2` is compiled for, and the lengths are equal.
        return unsafe { dot_avx2(a, b) };
    }
    dot_portable(a, b)
}

/// Why intrinsics: compiled for AVX2 the portable loop below came out as 2-wide SSE with register
/// shuffles (81 ns per 384-d dot); this runs about four times faster.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len();
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (j, acc) in acc.iter_mut().enumerate() {
            let x = _mm256_loadu_ps(pa.add(i + 8 * j));
            let y = _mm256_loadu_ps(pb.add(i + 8 * j));
            *acc = _mm256_fmadd_ps(x, y, *acc);
        }
        i += 32;
    }
    while i + 8 <= n {
        let x = _mm256_loadu_ps(pa.add(i));
        let y = _mm256_loadu_ps(pb.add(i));
        acc[0] = _mm256_fmadd_ps(x, y, acc[0]);
        i += 8;
    }
    let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let half = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps(sum, 1));
    let mut lanes = [0f32; 4];
    _mm_storeu_ps(lanes.as_mut_ptr(), half);
    let mut total = (lanes[0] + lanes[2]) + (lanes[1] + lanes[3]);
    while i < n {
        total += *pa.add(i) * *pb.add(i);
        i += 1;
    }
    total
}

fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_naive() {
        // Lengths around every loop boundary (32-wide, 8-wide, scalar tail).
        for n in [0, 1, 7, 8, 9, 31, 32, 33, 40, 383, 384, 385] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let naive: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            assert!((dot(&a, &b) as f64 - naive).abs() < 1e-4, "n = {n}");
            assert!(
                (dot_portable(&a, &b) as f64 - naive).abs() < 1e-4,
                "n = {n}"
            );
        }
    }

    #[test]
    fn exp_matches_libm() {
        let mut worst = 0f32;
        for i in -87_000..88_000 {
            let x = i as f32 / 1000.0;
            let (a, b) = (exp(x), x.exp());
            worst = worst.max(((a - b) / b).abs());
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
    }

    #[test]
    fn erf_and_gelu_match_libm() {
        // Every 1/1000 over [-8, 8], against libm's f64 erf: erf within 5e-7, GELU within 1.5e-6 of its
        // size (at least 1), a few f32 steps (the A&S form it replaced: 1.5e-7 and 4.6e-7).
        let (mut worst_erf, mut worst_gelu) = (0f64, 0f64);
        for i in -8_000..=8_000 {
            let x = i as f32 / 1000.0;
            let want = libm::erf(x as f64);
            worst_erf = worst_erf.max((erf(x) as f64 - want).abs());
            let z = x as f64 * std::f64::consts::FRAC_1_SQRT_2;
            let g = 0.5 * x as f64 * (1.0 + libm::erf(z));
            worst_gelu = worst_gelu.max((gelu(x) as f64 - g).abs() / g.abs().max(1.0));
        }
        assert!(worst_erf < 5e-7, "erf: worst absolute error {worst_erf}");
        assert!(worst_gelu < 1.5e-6, "gelu: worst error {worst_gelu}");
        assert_eq!(gelu(0.0), 0.0);
        assert_eq!(erf(100.0), erf(4.0));
        assert!(gelu(-10.0).abs() < 1e-6);
    }

    #[test]
    fn softmax_sums_to_one_and_orders() {
        let mut xs = [1.0, 2.0, 3.0, -1e9];
        softmax(&mut xs);
        assert!((xs.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(xs[2] > xs[1] && xs[1] > xs[0]);
        assert!(xs[3] < 1e-30);
    }

    #[test]
    fn layer_norm_normalises() {
        let x: Vec<f32> = (0..19).map(|i| i as f32).collect();
        let r = vec![1.0; 19];
        let g = vec![2.0; 19];
        let b = vec![0.5; 19];
        let mut out = vec![0.0; 19];
        add_layer_norm(&x, &r, &g, &b, 1e-12, &mut out);
        let mean: f32 = out.iter().map(|v| (v - 0.5) / 2.0).sum::<f32>() / 19.0;
        let var: f32 = out.iter().map(|v| ((v - 0.5) / 2.0).powi(2)).sum::<f32>() / 19.0;
        assert!(
            mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-4,
            "{mean} {var}"
        );
    }
}
