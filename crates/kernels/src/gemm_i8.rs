//! Int8-weight `y = x W^T + b`: the fast path.
//!
//! Weights: int8, one scale per output channel (`max |w| / 127`), packed once at load. Activations: each
//! row quantised on the fly to signed 12-bit integers with its own scale (`max |x| / 2047`). Products are
//! summed exactly in i32 (`2047 * 127 * 2` per pair and `k <= 4096` pairs stay far below 2^31), so the only
//! errors are the two roundings, and the 12-bit activations make the weights' rounding the dominant one.
//!
//! Why 12-bit activations rather than 8: the AVX2 instruction that multiplies u8 by i8 (`vpmaddubsw`)
//! saturates its i16 pair sums, which forces 7-bit activations; `vpmaddwd` multiplies i16 pairs into i32
//! without saturation at the same throughput, so the extra activation bits cost nothing. Weights stay int8
//! in memory (a quarter of F32), which is what matters at the few-row activations of a query: the F32
//! weights of MiniLM (42 MB) do not fit in L3, the int8 ones (11 MB) do.
//!
//! Layout: panels of [`NR`] output columns; within a panel, for each pair of input positions, 16 columns x 2
//! bytes. Sign-extending 16 bytes gives one ymm of 8 columns x 2 inputs, exactly what `vpmaddwd` pairs up.

use super::{Activation, Isa};

/// Output columns per panel.
pub const NR: usize = super::PANEL;
const MR_AVX2: usize = 6;
const MR_PORTABLE: usize = 4;
/// Largest activation magnitude after quantisation (12 bits signed).
const QMAX: f32 = 2047.0;

/// Int8 weights of one linear layer, packed for [`matmul`].
#[derive(Debug, Clone)]
pub struct PackedI8 {
    n: usize,
    k: usize,
    /// `k` rounded up to even: positions go in pairs.
    kp: usize,
    data: Vec<i8>,
    /// Per output column: the weight scale (zero-padded past `n`).
    scales: Vec<f32>,
    /// The largest of `scales`, for [`Self::error_bound`].
    max_scale: f32,
}

impl PackedI8 {
    /// Quantises and packs `w`, an `n x k` row-major matrix.
    pub fn pack(w: &[f32], n: usize, k: usize) -> Self {
        assert_eq!(w.len(), n * k, "weight size");
        let kp = k.next_multiple_of(2);
        let panels = n.div_ceil(NR);
        let mut data = vec![0i8; panels * kp * NR];
        let mut scales = vec![0f32; panels * NR];
        for col in 0..n {
            let row = &w[col * k..(col + 1) * k];
            let amax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
            let scale = if amax > 0.0 { amax / 127.0 } else { 1.0 };
            scales[col] = scale;
            let (p, j) = (col / NR, col % NR);
            let panel = &mut data[p * kp * NR..(p + 1) * kp * NR];
            for (kk, &v) in row.iter().enumerate() {
                let q = (v / scale).round().clamp(-127.0, 127.0) as i8;
                panel[(kk / 2) * NR * 2 + j * 2 + kk % 2] = q;
            }
        }
        let max_scale = scales.iter().fold(0f32, |m, &s| m.max(s));
        Self {
            n,
            k,
            kp,
            data,
            scales,
            max_scale,
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

    /// The weights as the kernel sees them (dequantised), `n x k` row-major; for accuracy checks.
    pub fn dequantised(&self) -> Vec<f32> {
        let mut w = vec![0f32; self.n * self.k];
        for col in 0..self.n {
            let (p, j) = (col / NR, col % NR);
            let panel = &self.data[p * self.kp * NR..];
            for kk in 0..self.k {
                w[col * self.k + kk] =
                    panel[(kk / 2) * NR * 2 + j * 2 + kk % 2] as f32 * self.scales[col];
            }
        }
        w
    }

    /// An upper bound on `|x . w_j - computed_j|` for every output column `j` of the row `x` (no bias),
    /// given that every weight row has L1 norm at most `w_l1`.
    ///
    /// With `x_i = s_x (a_i + d_i)` and `w_i = s_w (b_i + e_i)`, `|d_i|, |e_i| <= 1/2` (round to nearest),
    /// the exact minus the computed product is `s_x s_w sum(a_i e_i + d_i b_i + d_i e_i)`, which is at most
    /// `s_w/2 |x|_1 + s_x/2 |w|_1 + 3/4 k s_x s_w`; `s_w` is the largest column scale. The i32 sums are
    /// exact; a 1% margin and a small absolute term cover the f32 rounding of the scale products.
    pub fn error_bound(&self, x: &[f32], w_l1: f32) -> f32 {
        let x_l1: f32 = x.iter().map(|v| v.abs()).sum();
        let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        let s_x = amax / QMAX;
        let s_w = self.max_scale;
        let bound = s_w / 2.0 * x_l1 + s_x / 2.0 * w_l1 + 0.75 * self.k as f32 * s_x * s_w;
        bound * 1.01 + 1e-5
    }
}

/// Activations quantised per row: `kp` i16 per row (zero-padded) and one scale per row.
struct Quantised {
    q: Vec<i16>,
    scales: Vec<f32>,
}

#[inline(always)]
fn quantise_rows(a: &[f32], m: usize, k: usize, kp: usize) -> Quantised {
    let mut q = vec![0i16; m * kp];
    let mut scales = vec![0f32; m];
    for r in 0..m {
        let row = &a[r * k..(r + 1) * k];
        let amax = row.iter().fold(0f32, |acc, v| acc.max(v.abs()));
        let scale = if amax > 0.0 { amax / QMAX } else { 1.0 };
        scales[r] = scale;
        let inv = 1.0 / scale;
        // Adding 1.5 * 2^23 rounds to nearest without a libm call, so this loop vectorises.
        const ROUND: f32 = 12_582_912.0;
        for (d, &v) in q[r * kp..r * kp + k].iter_mut().zip(row) {
            *d = ((v * inv + ROUND) - ROUND) as i16;
        }
    }
    Quantised { q, scales }
}

/// `out (m x n) = a (m x k) * W^T + bias`, then `act`, with the int8 weights.
pub fn matmul(
    isa: Isa,
    a: &[f32],
    m: usize,
    w: &PackedI8,
    bias: Option<&[f32]>,
    act: Activation,
    out: &mut [std::mem::MaybeUninit<f32>],
) {
    let (n, k) = (w.n, w.k);
    assert_eq!(a.len(), m * k, "activation size");
    let aq = match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the x86 tiers are only chosen when the CPU has AVX2 and FMA.
        Isa::Avx2 | Isa::Avx512 | Isa::Amx => unsafe { avx2::quantise(a, m, k, w.kp) },
        _ => quantise_rows(a, m, k, w.kp),
    };
    let kp = w.kp;
    let mr = match isa {
        Isa::Avx512 | Isa::Amx => super::MR_AVX512,
        Isa::Avx2 => MR_AVX2,
        Isa::Portable => MR_PORTABLE,
        #[cfg(test)]
        Isa::Avx512Model | Isa::AmxModel => super::MR_AVX512,
    };
    super::run_blocks(m, n, mr, m * n * k / 2, bias, out, |at, out| {
        let p = at.panel;
        // SAFETY: the block's rows and panel lie inside the quantised rows, the packed weights and `out`.
        unsafe {
            let tile = Tile {
                a: aq.q.as_ptr().add(at.row * kp),
                ascale: &aq.scales[at.row..at.row + at.rows],
                lda: kp,
                b: w.data.as_ptr().add(p * kp * NR),
                pairs: kp / 2,
                c: out.add(at.row * n + p * NR),
                ldc: n,
                cols: at.cols,
                bias: at.bias,
                wscale: w.scales[p * NR..(p + 1) * NR]
                    .try_into()
                    .expect("a panel of scales"),
                act,
            };
            dispatch_tile!(isa, at.rows, &tile)
        }
    });
}

struct Tile<'a> {
    a: *const i16,
    ascale: &'a [f32],
    lda: usize,
    b: *const i8,
    pairs: usize,
    c: *mut f32,
    ldc: usize,
    cols: usize,
    bias: &'a [f32; NR],
    wscale: &'a [f32; NR],
    act: Activation,
}

/// Scales the exact integer sums back to floats, adds the bias, applies the activation, stores.
#[inline(always)]
unsafe fn finish<const MR: usize>(t: &Tile, acc: &[[i32; NR]; MR]) {
    for (r, acc_r) in acc.iter().enumerate() {
        let out = t.c.add(r * t.ldc);
        super::finish_int_row(
            acc_r,
            t.ascale[r],
            0,
            &[0; NR],
            t.wscale,
            t.bias,
            t.act,
            out,
            t.cols,
        );
    }
}

#[inline(always)]
unsafe fn portable_block<const MR: usize>(t: &Tile) {
    let mut acc = [[0i32; NR]; MR];
    for q in 0..t.pairs {
        let b = std::slice::from_raw_parts(t.b.add(q * NR * 2), NR * 2);
        for (r, acc_r) in acc.iter_mut().enumerate() {
            let a0 = *t.a.add(r * t.lda + 2 * q) as i32;
            let a1 = *t.a.add(r * t.lda + 2 * q + 1) as i32;
            for j in 0..NR {
                acc_r[j] += a0 * b[2 * j] as i32 + a1 * b[2 * j + 1] as i32;
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
    use super::{finish, Quantised, Tile, NR, QMAX};
    use std::arch::x86_64::*;

    /// Row quantisation with intrinsics. The portable loop's `max` reduction stays scalar when compiled
    /// (float `max` is not reassociated), which made quantising 4-6% of a forward pass. Rounding is the
    /// same (to nearest, ties to even: `vcvtps2dq` in the default mode, and the 1.5 * 2^23 trick in the
    /// portable code), so both give identical integers.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn quantise(a: &[f32], m: usize, k: usize, kp: usize) -> Quantised {
        let mut q = vec![0i16; m * kp];
        let mut scales = vec![0f32; m];
        let abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
        for r in 0..m {
            let row = &a[r * k..(r + 1) * k];
            let p = row.as_ptr();
            let mut vmax = _mm256_setzero_ps();
            let mut i = 0;
            while i + 8 <= k {
                vmax = _mm256_max_ps(vmax, _mm256_and_ps(_mm256_loadu_ps(p.add(i)), abs_mask));
                i += 8;
            }
            let mut lanes = [0f32; 8];
            _mm256_storeu_ps(lanes.as_mut_ptr(), vmax);
            let mut amax = lanes.iter().fold(0f32, |acc, &v| acc.max(v));
            amax = row[i..].iter().fold(amax, |acc, v| acc.max(v.abs()));
            let scale = if amax > 0.0 { amax / QMAX } else { 1.0 };
            scales[r] = scale;
            let inv = 1.0 / scale;
            let vinv = _mm256_set1_ps(inv);
            let out = q.as_mut_ptr().add(r * kp);
            let mut i = 0;
            while i + 16 <= k {
                let lo = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(p.add(i)), vinv));
                let hi = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(p.add(i + 8)), vinv));
                // packs works within 128-bit lanes: [lo0-3 hi0-3 lo4-7 hi4-7]; restore the order.
                let packed = _mm256_permute4x64_epi64(_mm256_packs_epi32(lo, hi), 0b11_01_10_00);
                _mm256_storeu_si256(out.add(i) as *mut __m256i, packed);
                i += 16;
            }
            const ROUND: f32 = 12_582_912.0;
            for (j, &v) in row.iter().enumerate().skip(i) {
                *out.add(j) = ((v * inv + ROUND) - ROUND) as i16;
            }
        }
        Quantised { q, scales }
    }

    /// `MR` rows x 16 columns: per input pair, two sign-extended weight vectors and one broadcast pair of
    /// activations per row feed `vpmaddwd` into i32 accumulators.
    #[inline(always)]
    unsafe fn block<const MR: usize>(t: &Tile) {
        let mut lo = [_mm256_setzero_si256(); MR];
        let mut hi = [_mm256_setzero_si256(); MR];
        let mut b = t.b;
        for q in 0..t.pairs {
            let b0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(b as *const __m128i));
            let b1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(b.add(16) as *const __m128i));
            for r in 0..MR {
                let pair = (t.a.add(r * t.lda + 2 * q) as *const i32).read_unaligned();
                let av = _mm256_set1_epi32(pair);
                lo[r] = _mm256_add_epi32(lo[r], _mm256_madd_epi16(av, b0));
                hi[r] = _mm256_add_epi32(hi[r], _mm256_madd_epi16(av, b1));
            }
            b = b.add(NR * 2);
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
            5 => block::<5>(t),
            _ => block::<6>(t),
        }
    }
}

avx512_kernel! {
    finish;
    /// `MR` rows x 16 columns, one zmm accumulator per row: per input pair, the panel's 32 weight
    /// bytes sign-extended to i16 meet one broadcast activation pair per row in `vpdpwssd`, which
    /// multiplies i16 pairs and adds both products to the i32 lane (no saturation).
    #[inline(always)]
    unsafe fn block<const MR: usize>(t: &Tile) {
        let mut acc = [_mm512_setzero_si512(); MR];
        let mut b = t.b;
        for q in 0..t.pairs {
            let w = _mm512_cvtepi8_epi16(_mm256_loadu_si256(b.cast()));
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let pair = t.a.add(r * t.lda + 2 * q).cast::<i32>().read_unaligned();
                *acc_r = _mm512_dpwssd_epi32(*acc_r, _mm512_set1_epi32(pair), w);
            }
            b = b.add(NR * 2);
        }
        finish(t, crate::i32x16_rows(&acc));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avx2_quantisation_equals_the_portable_one() {
        #[cfg(target_arch = "x86_64")]
        if Isa::available().contains(&Isa::Avx2) {
            let mut s = 12345u64;
            for k in [1usize, 7, 8, 15, 16, 17, 31, 33, 384, 1536] {
                let m = 3;
                let mut a: Vec<f32> = (0..m * k)
                    .map(|_| {
                        s ^= s << 13;
                        s ^= s >> 7;
                        s ^= s << 17;
                        (s >> 40) as f32 / (1u64 << 22) as f32 - 2.0
                    })
                    .collect();
                // A zero row and a row with an exact tie at .5 steps.
                a[k..2 * k].fill(0.0);
                let kp = k.next_multiple_of(2);
                let want = quantise_rows(&a, m, k, kp);
                // SAFETY: AVX2 and FMA are available (checked above).
                let got = unsafe { avx2::quantise(&a, m, k, kp) };
                assert_eq!(want.q, got.q, "k = {k}");
                assert_eq!(want.scales, got.scales, "k = {k}");
            }
        }
    }
}
