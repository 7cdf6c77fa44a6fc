//! Int8-weight `y = x W^T + b` with 8-bit activations: the `int8-fast` path.
//!
//! Why a second int8 kernel: on AVX2 (no VNNI) the [`super::gemm_i8`] kernel multiplies i16 pairs with
//! `vpmaddwd`, 16 multiply-adds per instruction, and spends as many `vpaddd`, broadcasts and weight
//! widenings again around them. `vpmaddubsw` multiplies u8 activations by i8 weights, 32 per instruction,
//! and reads the weights as they are stored; one `vpmaddwd` by ones widens its i16 pair sums to i32. Per
//! multiply-add that is half the instructions (measured: 87 against 64 G multiply-adds/s on one core of
//! this project's Zen 3 machine, 13 rows, QKV-sized weights).
//!
//! The price is precision, and it is paid carefully:
//! - `vpmaddubsw` saturates its i16 pair sums, so the weights are 7-bit (`|w| <= 63`, one scale per output
//!   channel): `255 * 63 * 2 = 32130` never saturates, and every sum is still exact in i32.
//! - Activations are quantised per row to u8 with a zero point (`x ~ s (q - z)`), which spends all 256
//!   levels on the row's actual range (GELU outputs are mostly positive).
//! - Outlier channels (BERT's hidden states have a few) would set every row's scale; a per-input-channel
//!   smoothing factor `c` moves that range into the weights (`x W^T = (x / c)(W diag c)^T`, SmoothQuant).
//!   The encoder calibrates `c` at load from activation maxima on fixed sentences.
//!
//! Layout: panels of [`NR`] output columns; within a panel, for each quad of input positions, 8 columns x 4
//! bytes (columns 0-7) then 8 x 4 (columns 8-15): one load is exactly what `vpmaddubsw` pairs up against a
//! broadcast quad of activations.

use super::{Activation, Isa};

/// Output columns per panel.
pub const NR: usize = super::PANEL;
/// Rows per register block on AVX2: 5 rows x 2 accumulators + 2 weight vectors + ones + broadcast +
/// product = 15 of the 16 ymm registers.
const MR_AVX2: usize = 5;
const MR_PORTABLE: usize = 4;
/// Largest weight magnitude after quantisation: 7 bits, so `vpmaddubsw` never saturates.
const WMAX: f32 = 63.0;
/// Largest activation code (u8).
const AMAX: f32 = 255.0;

/// Weights of one linear layer for [`matmul`]: 7-bit, per-channel scales, with the input smoothing folded
/// in.
#[derive(Debug, Clone)]
pub struct PackedA8 {
    n: usize,
    k: usize,
    /// `k` rounded up to a multiple of 4: positions go in quads.
    kq: usize,
    data: Vec<i8>,
    /// Per output column: the weight scale (zero-padded past `n`).
    scales: Vec<f32>,
    /// Per output column: the sum of its quantised weights, for the activations' zero point.
    sums: Vec<i32>,
    /// Per input position: `1 / c`, what the activations are multiplied by before quantisation.
    inv_smooth: Vec<f32>,
}

impl PackedA8 {
    /// Quantises and packs `w`, an `n x k` row-major matrix, with per-input smoothing `smooth` (`k`
    /// positive factors; all ones for none).
    pub fn pack(w: &[f32], n: usize, k: usize, smooth: &[f32]) -> Self {
        assert_eq!(w.len(), n * k, "weight size");
        assert_eq!(smooth.len(), k, "smoothing size");
        assert!(
            smooth.iter().all(|c| c.is_finite() && *c > 0.0),
            "smoothing factors must be positive"
        );
        let kq = k.next_multiple_of(4);
        let panels = n.div_ceil(NR);
        let mut data = vec![0i8; panels * kq * NR];
        let mut scales = vec![0f32; panels * NR];
        let mut sums = vec![0i32; panels * NR];
        let mut row = vec![0f32; k];
        for col in 0..n {
            for ((r, &v), &c) in row.iter_mut().zip(&w[col * k..(col + 1) * k]).zip(smooth) {
                *r = v * c;
            }
            let amax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
            let scale = if amax > 0.0 { amax / WMAX } else { 1.0 };
            scales[col] = scale;
            let (p, j) = (col / NR, col % NR);
            let panel = &mut data[p * kq * NR..(p + 1) * kq * NR];
            let mut sum = 0i32;
            for (kk, &v) in row.iter().enumerate() {
                let q = (v / scale).round().clamp(-WMAX, WMAX) as i8;
                sum += q as i32;
                panel[offset(kk, j)] = q;
            }
            sums[col] = sum;
        }
        Self {
            n,
            k,
            kq,
            data,
            scales,
            sums,
            inv_smooth: smooth.iter().map(|c| 1.0 / c).collect(),
        }
    }

    /// Output width.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Input width.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Bytes held (weights, per-column scales and sums, per-input smoothing).
    pub fn bytes(&self) -> usize {
        self.data.len() + self.scales.len() * 8 + self.inv_smooth.len() * 4
    }

    /// The weights as the kernel applies them to the unsmoothed input (dequantised, smoothing undone),
    /// `n x k` row-major; for accuracy checks.
    pub fn dequantised(&self) -> Vec<f32> {
        let mut w = vec![0f32; self.n * self.k];
        for col in 0..self.n {
            let (p, j) = (col / NR, col % NR);
            let panel = &self.data[p * self.kq * NR..];
            for kk in 0..self.k {
                w[col * self.k + kk] =
                    panel[offset(kk, j)] as f32 * self.scales[col] * self.inv_smooth[kk];
            }
        }
        w
    }
}

/// Where input `kk` of panel column `j` sits inside its panel.
#[inline(always)]
fn offset(kk: usize, j: usize) -> usize {
    (kk / 4) * NR * 4 + (j / 8) * 32 + (j % 8) * 4 + kk % 4
}

/// Activations quantised per row: `kq` u8 codes per row (zero-padded), a scale and a zero point per row.
struct Quantised {
    q: Vec<u8>,
    scales: Vec<f32>,
    zeros: Vec<i32>,
}

/// Per row: smooth, find the range (always containing 0, so the zero point is a code), quantise.
fn quantise_rows(a: &[f32], m: usize, k: usize, kq: usize, inv_smooth: &[f32]) -> Quantised {
    let mut q = vec![0u8; m * kq];
    let mut scales = vec![0f32; m];
    let mut zeros = vec![0i32; m];
    let mut row = vec![0f32; k];
    for r in 0..m {
        for ((d, &v), &c) in row.iter_mut().zip(&a[r * k..(r + 1) * k]).zip(inv_smooth) {
            *d = v * c;
        }
        // Eight lanes of running minima and maxima, so the reduction vectorises (a float `min` fold over
        // one accumulator is not reassociated and stays scalar).
        let (mut lo8, mut hi8) = ([0f32; 8], [0f32; 8]);
        let chunks = row.chunks_exact(8);
        let tail = chunks.remainder();
        for c in chunks {
            for i in 0..8 {
                lo8[i] = lo8[i].min(c[i]);
                hi8[i] = hi8[i].max(c[i]);
            }
        }
        let lo = tail.iter().chain(&lo8).fold(0f32, |m, &v| m.min(v));
        let hi = tail.iter().chain(&hi8).fold(0f32, |m, &v| m.max(v));
        let scale = if hi > lo { (hi - lo) / AMAX } else { 1.0 };
        let inv = 1.0 / scale;
        // lo <= 0 <= hi, so z is within 0..=255.
        let z = (-lo * inv).round().clamp(0.0, AMAX);
        scales[r] = scale;
        zeros[r] = z as i32;
        // Adding 1.5 * 2^23 rounds to nearest without a libm call, so this loop vectorises.
        const ROUND: f32 = 12_582_912.0;
        for (d, &v) in q[r * kq..r * kq + k].iter_mut().zip(&row) {
            *d = (((v * inv + ROUND) - ROUND) + z).clamp(0.0, AMAX) as u8;
        }
    }
    Quantised { q, scales, zeros }
}

/// `out (m x n) = a (m x k) * W^T + bias`, then `act`, with 7-bit weights and 8-bit activations.
pub fn matmul(
    isa: Isa,
    a: &[f32],
    m: usize,
    w: &PackedA8,
    bias: Option<&[f32]>,
    act: Activation,
    out: &mut [std::mem::MaybeUninit<f32>],
) {
    let (n, k) = (w.n, w.k);
    assert_eq!(a.len(), m * k, "activation size");
    let aq = match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::Avx2` and `Isa::Avx512` are only chosen when the CPU has AVX2 and FMA.
        Isa::Avx2 | Isa::Avx512 => unsafe { avx2::quantise(a, m, k, w.kq, &w.inv_smooth) },
        _ => quantise_rows(a, m, k, w.kq, &w.inv_smooth),
    };
    let kq = w.kq;
    let mr = match isa {
        Isa::Avx512 => super::MR_AVX512,
        Isa::Avx2 => MR_AVX2,
        Isa::Portable => MR_PORTABLE,
        #[cfg(test)]
        Isa::Avx512Model => super::MR_AVX512,
    };
    // The AVX2 kernel does about twice the multiply-adds per cycle of the i16 one: count work accordingly.
    super::run_blocks(m, n, mr, m * n * k / 4, bias, out, |at, out| {
        let (p, r) = (at.panel, at.row);
        // SAFETY: the block's rows and panel lie inside the quantised rows, the packed weights and `out`.
        unsafe {
            let tile = Tile {
                a: aq.q.as_ptr().add(r * kq),
                ascale: &aq.scales[r..r + at.rows],
                azero: &aq.zeros[r..r + at.rows],
                lda: kq,
                b: w.data.as_ptr().add(p * kq * NR),
                quads: kq / 4,
                c: out.add(r * n + p * NR),
                ldc: n,
                cols: at.cols,
                bias: at.bias,
                wscale: w.scales[p * NR..(p + 1) * NR]
                    .try_into()
                    .expect("a panel of scales"),
                wsum: w.sums[p * NR..(p + 1) * NR]
                    .try_into()
                    .expect("a panel of sums"),
                act,
            };
            dispatch_tile!(isa, at.rows, &tile)
        }
    });
}

struct Tile<'a> {
    a: *const u8,
    ascale: &'a [f32],
    azero: &'a [i32],
    lda: usize,
    b: *const i8,
    quads: usize,
    c: *mut f32,
    ldc: usize,
    cols: usize,
    bias: &'a [f32; NR],
    wscale: &'a [f32; NR],
    wsum: &'a [i32; NR],
    act: Activation,
}

/// Removes the zero point from the exact integer sums, scales back to floats, adds the bias, applies the
/// activation, stores.
#[inline(always)]
unsafe fn finish<const MR: usize>(t: &Tile, acc: &[[i32; NR]; MR]) {
    for (r, acc_r) in acc.iter().enumerate() {
        let (s, z, out) = (t.ascale[r], t.azero[r], t.c.add(r * t.ldc));
        super::finish_int_row(acc_r, s, z, t.wsum, t.wscale, t.bias, t.act, out, t.cols);
    }
}

#[inline(always)]
unsafe fn portable_block<const MR: usize>(t: &Tile) {
    let mut acc = [[0i32; NR]; MR];
    for q in 0..t.quads {
        let b = std::slice::from_raw_parts(t.b.add(q * NR * 4), NR * 4);
        for (r, acc_r) in acc.iter_mut().enumerate() {
            let a = std::slice::from_raw_parts(t.a.add(r * t.lda + 4 * q), 4);
            for (j, acc_rj) in acc_r.iter_mut().enumerate() {
                let w = &b[(j / 8) * 32 + (j % 8) * 4..][..4];
                *acc_rj += (0..4).map(|i| a[i] as i32 * w[i] as i32).sum::<i32>();
            }
        }
    }
    finish(t, &acc);
}

unsafe fn portable_tile(rows: usize, t: &Tile) {
    match rows {
        1 => portable_block::<1>(t),
        2 => portable_block::<2>(t),
        3 => portable_block::<3>(t),
        _ => portable_block::<4>(t),
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{finish, Quantised, Tile, AMAX, NR};
    use std::arch::x86_64::*;

    /// [`super::quantise_rows`] with intrinsics: the same smoothing, range, scale and zero point, and the
    /// same codes (`vcvtps2dq` rounds to nearest even like the portable trick; saturating packs clamp to
    /// 0..=255 like its `clamp`). Written out because the compiled portable loop keeps its float `min` /
    /// `max` and its float-to-u8 casts scalar, which at k = 1536 cost more than the product it feeds.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn quantise(
        a: &[f32],
        m: usize,
        k: usize,
        kq: usize,
        inv_smooth: &[f32],
    ) -> Quantised {
        let mut q = vec![0u8; m * kq];
        let mut scales = vec![0f32; m];
        let mut zeros = vec![0i32; m];
        let mut row = vec![0f32; k];
        let body = k / 8 * 8;
        for r in 0..m {
            let src = a.as_ptr().add(r * k);
            let (mut vlo, mut vhi) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            let mut i = 0;
            while i < body {
                let v = _mm256_mul_ps(
                    _mm256_loadu_ps(src.add(i)),
                    _mm256_loadu_ps(inv_smooth.as_ptr().add(i)),
                );
                _mm256_storeu_ps(row.as_mut_ptr().add(i), v);
                vlo = _mm256_min_ps(vlo, v);
                vhi = _mm256_max_ps(vhi, v);
                i += 8;
            }
            let (mut lo8, mut hi8) = ([0f32; 8], [0f32; 8]);
            _mm256_storeu_ps(lo8.as_mut_ptr(), vlo);
            _mm256_storeu_ps(hi8.as_mut_ptr(), vhi);
            let (mut lo, mut hi) = (0f32, 0f32);
            for j in 0..8 {
                lo = lo.min(lo8[j]);
                hi = hi.max(hi8[j]);
            }
            for j in body..k {
                let v = *src.add(j) * inv_smooth[j];
                row[j] = v;
                lo = lo.min(v);
                hi = hi.max(v);
            }
            let scale = if hi > lo { (hi - lo) / AMAX } else { 1.0 };
            let inv = 1.0 / scale;
            let z = (-lo * inv).round().clamp(0.0, AMAX);
            scales[r] = scale;
            zeros[r] = z as i32;
            let (vinv, vz) = (_mm256_set1_ps(inv), _mm256_set1_epi32(z as i32));
            let out = q.as_mut_ptr().add(r * kq);
            let code = |at: usize| {
                _mm256_add_epi32(
                    _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(row.as_ptr().add(at)), vinv)),
                    vz,
                )
            };
            let mut i = 0;
            while i + 32 <= k {
                // Packs work within 128-bit lanes; one cross-lane permute restores the order.
                let w0 = _mm256_packs_epi32(code(i), code(i + 8));
                let w1 = _mm256_packs_epi32(code(i + 16), code(i + 24));
                let b = _mm256_packus_epi16(w0, w1);
                let b = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
                _mm256_storeu_si256(out.add(i) as *mut __m256i, b);
                i += 32;
            }
            const ROUND: f32 = 12_582_912.0;
            for (j, &v) in row.iter().enumerate().skip(i) {
                *out.add(j) = (((v * inv + ROUND) - ROUND) + z).clamp(0.0, AMAX) as u8;
            }
        }
        Quantised { q, scales, zeros }
    }

    /// `MR` rows x 16 columns: per quad of inputs, two weight vectors and one broadcast quad of
    /// activations per row feed `vpmaddubsw`, whose i16 pair sums `vpmaddwd` by ones widens into i32.
    #[inline(always)]
    unsafe fn block<const MR: usize>(t: &Tile) {
        let mut lo = [_mm256_setzero_si256(); MR];
        let mut hi = [_mm256_setzero_si256(); MR];
        let ones = _mm256_set1_epi16(1);
        let mut b = t.b;
        for q in 0..t.quads {
            let b0 = _mm256_loadu_si256(b as *const __m256i);
            let b1 = _mm256_loadu_si256(b.add(32) as *const __m256i);
            for r in 0..MR {
                let quad = (t.a.add(r * t.lda + 4 * q) as *const i32).read_unaligned();
                let av = _mm256_set1_epi32(quad);
                lo[r] =
                    _mm256_add_epi32(lo[r], _mm256_madd_epi16(_mm256_maddubs_epi16(av, b0), ones));
                hi[r] =
                    _mm256_add_epi32(hi[r], _mm256_madd_epi16(_mm256_maddubs_epi16(av, b1), ones));
            }
            b = b.add(NR * 4);
        }
        finish(t, &crate::avx2_acc_rows(&lo, &hi));
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tile(rows: usize, t: &Tile) {
        match rows {
            1 => block::<1>(t),
            2 => block::<2>(t),
            3 => block::<3>(t),
            4 => block::<4>(t),
            _ => block::<5>(t),
        }
    }
}

avx512_kernel! {
    finish;
    /// `MR` rows x 16 columns, one zmm accumulator per row: per quad of inputs, the panel's 64 weight
    /// bytes (column j's quad in lane j, as packed) meet one broadcast activation quad per row in
    /// `vpdpbusd`, which multiplies u8 activations by i8 weights and adds the four products to the
    /// i32 lane (no saturation): one instruction for AVX2's `vpmaddubsw` + `vpmaddwd` + `vpaddd`.
    #[inline(always)]
    unsafe fn block<const MR: usize>(t: &Tile) {
        let mut acc = [_mm512_setzero_si512(); MR];
        let mut b = t.b;
        for q in 0..t.quads {
            let w = _mm512_loadu_si512(b.cast());
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let quad = t.a.add(r * t.lda + 4 * q).cast::<i32>().read_unaligned();
                *acc_r = _mm512_dpbusd_epi32(*acc_r, _mm512_set1_epi32(quad), w);
            }
            b = b.add(NR * 4);
        }
        finish(t, crate::i32x16_rows(&acc));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_puts_each_column_quad_where_the_kernel_reads_it() {
        // Column j, inputs 4q..4q+3: bytes (j % 8) * 4 .. + 4 of the quad's (j / 8)-th 32-byte vector.
        assert_eq!(offset(0, 0), 0);
        assert_eq!(offset(3, 0), 3);
        assert_eq!(offset(0, 1), 4);
        assert_eq!(offset(0, 8), 32);
        assert_eq!(offset(4, 0), 64);
        assert_eq!(offset(5, 15), 64 + 32 + 28 + 1);
    }

    #[test]
    fn weights_stay_within_seven_bits_and_sums_match() {
        let (n, k) = (20, 9);
        let w: Vec<f32> = (0..n * k)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        let p = PackedA8::pack(&w, n, k, &vec![1.0; k]);
        assert!(p.data.iter().all(|&q| (-63..=63).contains(&q)));
        for col in 0..n {
            let (pp, j) = (col / NR, col % NR);
            let s: i32 = (0..k)
                .map(|kk| p.data[pp * p.kq * NR + offset(kk, j)] as i32)
                .sum();
            assert_eq!(s, p.sums[col]);
        }
    }

    #[test]
    fn avx2_quantisation_equals_the_portable_one() {
        #[cfg(target_arch = "x86_64")]
        if Isa::available().contains(&Isa::Avx2) {
            for k in [1usize, 7, 8, 31, 32, 33, 64, 100, 384, 1536] {
                let m = 4;
                let mut a: Vec<f32> = (0..m * k)
                    .map(|i| ((i * 7919 % 1000) as f32 / 250.0 - 1.5) * (1 + i % 3) as f32)
                    .collect();
                // A zero row, and an all-positive one (its zero point is 0).
                a[k..2 * k].fill(0.0);
                for v in &mut a[2 * k..3 * k] {
                    *v = v.abs() + 0.1;
                }
                let inv: Vec<f32> = (0..k).map(|i| 0.5 + (i % 5) as f32 * 0.4).collect();
                let kq = k.next_multiple_of(4);
                let want = quantise_rows(&a, m, k, kq, &inv);
                // SAFETY: AVX2 and FMA are available (checked above).
                let got = unsafe { avx2::quantise(&a, m, k, kq, &inv) };
                assert_eq!(want.q, got.q, "k = {k}");
                assert_eq!(want.scales, got.scales, "k = {k}");
                assert_eq!(want.zeros, got.zeros, "k = {k}");
            }
        }
    }

    #[test]
    fn quantised_rows_reconstruct_within_half_a_step() {
        let (m, k) = (3, 10);
        let a: Vec<f32> = (0..m * k)
            .map(|i| (i as f32 * 0.37).sin() * 3.0 + 0.5)
            .collect();
        let smooth: Vec<f32> = (0..k).map(|i| 0.5 + i as f32 * 0.1).collect();
        let inv: Vec<f32> = smooth.iter().map(|c| 1.0 / c).collect();
        let q = quantise_rows(&a, m, k, 12, &inv);
        for r in 0..m {
            for i in 0..k {
                let x = a[r * k + i] * inv[i];
                let back = (q.q[r * 12 + i] as i32 - q.zeros[r]) as f32 * q.scales[r];
                assert!((x - back).abs() <= q.scales[r] * 0.5001, "{x} vs {back}");
            }
        }
    }
}
