//! bf16 weights and activations with F32 sums: the `bf16` path, close to exact at half F32's weight bytes.
//!
//! Why: rounding every linear layer's weights and inputs to bf16 (8 significant bits, round to nearest
//! even) and summing the exact products in F32 keeps the sentence embeddings within cosine 0.99997 of the
//! F32 reference (the exact bar is 0.9999), and AVX-512 BF16's `vdpbf16ps` (Zen 4, Zen 5, Intel Cooper
//! Lake and Sapphire Rapids) multiplies a pair of bf16 per 32-bit lane: twice F32's multiply-adds per
//! instruction, and half its weight bytes to stream (21 MB instead of 42 for MiniLM).
//!
//! Layout: panels of [`NR`] output columns; within a panel, for each pair of input positions, 16 columns
//! x 2 bf16: one 64-byte load is exactly `vdpbf16ps`'s weight operand against a broadcast activation
//! pair. Without AVX-512 BF16 the portable kernel computes the same products (exact in F32) and sums.

use std::mem::MaybeUninit;

use super::{Activation, Isa};

/// Output columns per panel.
pub const NR: usize = super::PANEL;
/// Rows per register block in the portable kernel.
const MR_PORTABLE: usize = 4;

/// `v` rounded to the nearest bf16 (ties to even), as its 16 bits; NaN stays NaN.
pub fn to_bf16(v: f32) -> u16 {
    if v.is_nan() {
        return 0x7fc0;
    }
    let b = v.to_bits();
    (b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

/// The F32 value of bf16 bits `h` (exact).
pub fn from_bf16(h: u16) -> f32 {
    f32::from_bits(u32::from(h) << 16)
}

/// Weights of one linear layer for [`matmul`]: bf16, packed in pairs.
#[derive(Debug, Clone)]
pub struct PackedBf16 {
    n: usize,
    k: usize,
    /// `k` rounded up to even: positions go in pairs.
    kp: usize,
    data: Vec<u16>,
}

/// Where weight `(kk, j)` of a panel sits in it.
fn offset(kk: usize, j: usize) -> usize {
    (kk / 2) * NR * 2 + j * 2 + kk % 2
}

impl PackedBf16 {
    /// Rounds and packs `w`, an `n x k` row-major matrix.
    pub fn pack(w: &[f32], n: usize, k: usize) -> Self {
        assert_eq!(w.len(), n * k, "weight size");
        let kp = k.next_multiple_of(2);
        let panels = n.div_ceil(NR);
        let mut data = vec![0u16; panels * kp * NR];
        for col in 0..n {
            let (p, j) = (col / NR, col % NR);
            let panel = &mut data[p * kp * NR..(p + 1) * kp * NR];
            for (kk, &v) in w[col * k..(col + 1) * k].iter().enumerate() {
                panel[offset(kk, j)] = to_bf16(v);
            }
        }
        Self { n, k, kp, data }
    }

    /// Output width.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Input width.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Bytes held by the packed weights.
    pub fn bytes(&self) -> usize {
        self.data.len() * 2
    }
}

/// Whether `isa` runs the AVX-512 BF16 kernel: an AVX-512 tier on a CPU that has `vdpbf16ps`.
fn hardware(isa: Isa) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static BF16: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        matches!(isa, Isa::Avx512 | Isa::Amx)
            && *BF16.get_or_init(|| std::arch::is_x86_feature_detected!("avx512bf16"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = isa;
        false
    }
}

thread_local! {
    /// The calling thread's bf16 activation rows, reused across calls.
    static CODES: std::cell::Cell<Vec<u16>> = const { std::cell::Cell::new(Vec::new()) };
}

/// `out (m x n) = act(a (m x k) W^T + b)` with `a` and `W` rounded to bf16 and the products summed in F32.
pub fn matmul(
    isa: Isa,
    a: &[f32],
    m: usize,
    w: &PackedBf16,
    bias: Option<&[f32]>,
    act: Activation,
    out: &mut [MaybeUninit<f32>],
) {
    let (n, k, kp) = (w.n, w.k, w.kp);
    assert_eq!(a.len(), m * k, "activation size");
    assert_eq!(out.len(), m * n, "output size");
    let hw = hardware(isa);
    // Activations rounded once per call, each row padded to whole pairs with a zero.
    let mut codes = CODES.take();
    codes.clear();
    codes.reserve(m * kp);
    for row in a.chunks_exact(k.max(1)).take(m) {
        #[cfg(target_arch = "x86_64")]
        if hw {
            // SAFETY: `hw` means the CPU has AVX-512 F and BF16.
            unsafe { avx512::round_row(row, &mut codes) };
        } else {
            codes.extend(row.iter().map(|&v| to_bf16(v)));
        }
        #[cfg(not(target_arch = "x86_64"))]
        codes.extend(row.iter().map(|&v| to_bf16(v)));
        if kp > k {
            codes.push(0);
        }
    }
    let mr = if hw { super::MR_AVX512 } else { MR_PORTABLE };
    super::run_blocks(m, n, mr, m * n * k / 2, bias, out, |at, out| {
        let (p, r) = (at.panel, at.row);
        let tile = Tile {
            a: &codes[r * kp..(r + at.rows) * kp],
            lda: kp,
            b: &w.data[p * kp * NR..(p + 1) * kp * NR],
            pairs: kp / 2,
            // SAFETY: the block's rows and panel lie inside `out` (`run_blocks`' contract).
            c: unsafe { out.add(r * n + p * NR) },
            ldc: n,
            cols: at.cols,
            bias: at.bias,
            act,
        };
        #[cfg(target_arch = "x86_64")]
        if hw {
            // SAFETY: `hw` means AVX-512 F and BF16; the tile's slices cover what the block reads.
            return unsafe { avx512::tile(at.rows, &tile) };
        }
        // SAFETY: as above.
        unsafe { portable_tile(at.rows, &tile) }
    });
    CODES.set(codes);
}

/// One register block's operands: `rows` rows of activations from `a` (rows `lda` apart), one panel of
/// weights `b`, outputs at `c` (rows `ldc` apart, the first `cols` columns real).
struct Tile<'a> {
    a: &'a [u16],
    lda: usize,
    b: &'a [u16],
    pairs: usize,
    c: *mut f32,
    ldc: usize,
    cols: usize,
    bias: &'a [f32; NR],
    act: Activation,
}

/// Adds the bias, applies the activation and stores one output row's sums.
///
/// # Safety
/// `out` must be valid for `cols` writes.
#[inline(always)]
unsafe fn finish_row(sums: &[f32; NR], t: &Tile, out: *mut f32) {
    let mut row = [0f32; NR];
    for j in 0..NR {
        row[j] = sums[j] + t.bias[j];
    }
    if t.act == Activation::Gelu {
        super::math::gelu_slice(&mut row);
    }
    super::store_row(&row, out, t.cols);
}

/// The portable block: the same exact products, summed in F32 (the odd position of a pair, then the
/// even, as `vdpbf16ps` is specified).
///
/// # Safety
/// `t.c` must be valid for `rows` output rows.
unsafe fn portable_tile(rows: usize, t: &Tile) {
    for r in 0..rows {
        let a = &t.a[r * t.lda..(r + 1) * t.lda];
        let mut acc = [0f32; NR];
        for p in 0..t.pairs {
            let (a0, a1) = (from_bf16(a[2 * p]), from_bf16(a[2 * p + 1]));
            let w = &t.b[p * NR * 2..(p + 1) * NR * 2];
            for (j, s) in acc.iter_mut().enumerate() {
                *s += a1 * from_bf16(w[2 * j + 1]);
                *s += a0 * from_bf16(w[2 * j]);
            }
        }
        finish_row(&acc, t, t.c.add(r * t.ldc));
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{finish_row, Tile, NR};
    use std::arch::x86_64::*;

    /// Appends `row` rounded to bf16 (ties to even) to `codes`, 16 at a time with `vcvtneps2bf16`.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F and BF16.
    #[target_feature(enable = "avx512f,avx512bf16,avx512vl")]
    pub(super) unsafe fn round_row(row: &[f32], codes: &mut Vec<u16>) {
        let start = codes.len();
        codes.reserve(row.len());
        let dst = codes.as_mut_ptr().add(start);
        let mut i = 0;
        while i + 16 <= row.len() {
            let h: __m256bh = _mm512_cvtneps_pbh(_mm512_loadu_ps(row.as_ptr().add(i)));
            _mm256_storeu_si256(
                dst.add(i).cast(),
                std::mem::transmute::<__m256bh, __m256i>(h),
            );
            i += 16;
        }
        for (j, &v) in row[i..].iter().enumerate() {
            *dst.add(i + j) = super::to_bf16(v);
        }
        codes.set_len(start + row.len());
    }

    /// The block for `rows` in `1..=12`, every row count its own fully unrolled instance.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F and BF16; `t.c` must be valid for `rows` output rows.
    #[target_feature(enable = "avx512f,avx512bf16,avx512vl,avx2,fma")]
    pub(super) unsafe fn tile(rows: usize, t: &Tile) {
        avx512_kernel!(@rows block, rows, t)
    }

    /// `MR` rows x 16 columns, one zmm accumulator per row: per pair of inputs, the panel's 64 weight
    /// bytes meet one broadcast activation pair per row in `vdpbf16ps`.
    #[inline(always)]
    unsafe fn block<const MR: usize>(t: &Tile) {
        assert!(t.a.len() >= MR * t.lda && t.b.len() >= t.pairs * NR * 2);
        let mut acc = [_mm512_setzero_ps(); MR];
        let (a, mut b) = (t.a.as_ptr(), t.b.as_ptr());
        for p in 0..t.pairs {
            let w: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.cast()));
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let pair = a.add(r * t.lda + 2 * p).cast::<i32>().read_unaligned();
                let x: __m512bh = std::mem::transmute(_mm512_set1_epi32(pair));
                *acc_r = _mm512_dpbf16_ps(*acc_r, x, w);
            }
            b = b.add(NR * 2);
        }
        for (r, acc_r) in acc.iter().enumerate() {
            let mut sums = [0f32; NR];
            _mm512_storeu_ps(sums.as_mut_ptr(), *acc_r);
            finish_row(&sums, t, t.c.add(r * t.ldc));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{noise, Linear, Precision, Team};

    #[test]
    fn rounding_is_to_nearest_even() {
        assert_eq!(to_bf16(1.0), 0x3f80);
        // 1 + 2^-8 lies halfway between 1 and the next bf16: ties go to the even one (1.0).
        assert_eq!(to_bf16(1.0 + 1.0 / 256.0), 0x3f80);
        // 1 + 3 * 2^-8 lies halfway between two neighbours: ties go to the even one, upwards.
        assert_eq!(to_bf16(1.0 + 3.0 / 256.0), 0x3f82);
        assert_eq!(from_bf16(to_bf16(-2.5)), -2.5);
        assert!(from_bf16(to_bf16(f32::NAN)).is_nan());
        assert_eq!(from_bf16(to_bf16(f32::INFINITY)), f32::INFINITY);
    }

    /// Every instruction set's kernel against the F32 sum of the bf16-rounded operands, alone and over a
    /// team, on shapes with partial panels, partial row blocks and odd input widths; and the rounding's
    /// own error against F32 stays at bf16's scale.
    #[test]
    fn kernels_sum_the_rounded_products() {
        let team = Team::new(2, "test-bf16").unwrap();
        for (m, n, k) in [(1, 16, 2), (13, 40, 384), (7, 33, 101), (30, 16, 1536)] {
            let (x, w, b) = (
                noise(m * k, m as u64),
                noise(n * k, n as u64),
                noise(n, k as u64),
            );
            let round =
                |v: &[f32]| -> Vec<f32> { v.iter().map(|&v| from_bf16(to_bf16(v))).collect() };
            let (xr, wr) = (round(&x), round(&w));
            let want: Vec<f32> = (0..m * n)
                .map(|i| {
                    let (r, c) = (i / n, i % n);
                    let dot: f64 = (0..k)
                        .map(|kk| xr[r * k + kk] as f64 * wr[c * k + kk] as f64)
                        .sum();
                    dot as f32 + b[c]
                })
                .collect();
            let exact: Vec<f32> =
                Linear::new(&w, n, k, Some(b.clone()), Precision::F32, Isa::Portable).forward_vec(
                    &x,
                    m,
                    Activation::None,
                );
            for isa in Isa::available() {
                let l = Linear::new(&w, n, k, Some(b.clone()), Precision::Bf16, isa);
                for got in [
                    l.forward_vec(&x, m, Activation::None),
                    team.install(|| l.forward_vec(&x, m, Activation::None)),
                ] {
                    for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                        // F32 sums of up to 1,536 products of magnitude <= 1.
                        assert!(
                            (g - e).abs() < 1e-4 * (k as f32).sqrt(),
                            "{} {m}x{n}x{k} [{i}]: {g} vs {e}",
                            isa.name()
                        );
                    }
                    let worst = got
                        .iter()
                        .zip(&exact)
                        .fold(0f32, |s, (g, e)| s.max((g - e).abs()));
                    assert!(
                        worst < 0.02 * (k as f32).sqrt(),
                        "{} {m}x{n}x{k}: {worst} from F32",
                        isa.name()
                    );
                }
            }
        }
    }
}
