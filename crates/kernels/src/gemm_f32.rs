//! F32 `y = x W^T + b` with weights packed once at load.
//!
//! Layout: `W` (`n x k`, row-major as checkpoints store it) becomes panels of [`NR`] output columns, each
//! panel `k` rows of [`NR`] contiguous floats, zero-padded past `n`. A microkernel keeps an `MR x NR` block
//! of outputs in registers and streams one panel row per step, so every weight loaded feeds `MR` FMAs and
//! the weights are read in order, once per row block. This is what candle's `gemm` cannot do for us: it
//! re-packs the weights on every call, which dominates at the few-row activations of one query.

use super::{Activation, Isa};

/// Output columns per panel (two AVX2 vectors).
pub const NR: usize = super::PANEL;
/// Rows per register block on AVX2: 6 rows x 2 vectors = 12 accumulators of the 16 ymm registers.
const MR_AVX2: usize = 6;
/// Rows per block in the portable kernel (arrays the compiler keeps in vector registers where it can).
const MR_PORTABLE: usize = 4;

/// Weights of one linear layer packed for [`matmul`].
#[derive(Debug, Clone)]
pub struct PackedF32 {
    n: usize,
    k: usize,
    /// `ceil(n / NR)` panels of `k * NR` floats.
    data: Vec<f32>,
}

impl PackedF32 {
    /// Packs `w`, an `n x k` row-major matrix.
    pub fn pack(w: &[f32], n: usize, k: usize) -> Self {
        assert_eq!(w.len(), n * k, "weight size");
        let panels = n.div_ceil(NR);
        let mut data = vec![0f32; panels * k * NR];
        for p in 0..panels {
            let panel = &mut data[p * k * NR..(p + 1) * k * NR];
            for j in 0..NR.min(n - p * NR) {
                let row = &w[(p * NR + j) * k..(p * NR + j + 1) * k];
                for (kk, &v) in row.iter().enumerate() {
                    panel[kk * NR + j] = v;
                }
            }
        }
        Self { n, k, data }
    }

    /// Output width.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Input width.
    pub fn k(&self) -> usize {
        self.k
    }

    fn panel(&self, p: usize) -> &[f32] {
        &self.data[p * self.k * NR..(p + 1) * self.k * NR]
    }
}

/// `out (m x n) = a (m x k) * W^T + bias`, then `act`. Splits the panels over the current rayon pool when
/// the product is large enough to pay for it.
pub fn matmul(
    isa: Isa,
    a: &[f32],
    m: usize,
    w: &PackedF32,
    bias: Option<&[f32]>,
    act: Activation,
    out: &mut [std::mem::MaybeUninit<f32>],
) {
    let (n, k) = (w.n, w.k);
    assert_eq!(a.len(), m * k, "activation size");
    let mr = match isa {
        Isa::Avx512 => super::MR_AVX512,
        Isa::Avx2 => MR_AVX2,
        Isa::Portable => MR_PORTABLE,
        #[cfg(test)]
        Isa::Avx512Model => super::MR_AVX512,
    };
    super::run_blocks(m, n, mr, m * n * k, bias, out, |at, out| {
        // SAFETY: the block's rows and panel lie inside `a`, the packed weights and `out` (m x n).
        unsafe {
            let tile = Tile {
                a: a.as_ptr().add(at.row * k),
                lda: k,
                b: w.panel(at.panel).as_ptr(),
                k,
                c: out.add(at.row * n + at.panel * NR),
                ldc: n,
                cols: at.cols,
                bias: at.bias,
                act,
            };
            dispatch_tile!(isa, at.rows, &tile)
        }
    });
}

/// One register block's inputs: `rows x cols` outputs at `c` from `rows` activation rows at `a`.
struct Tile<'a> {
    a: *const f32,
    lda: usize,
    b: *const f32,
    k: usize,
    c: *mut f32,
    ldc: usize,
    cols: usize,
    bias: &'a [f32; NR],
    act: Activation,
}

/// Writes a finished `rows x NR` block (bias already added) to the output, applying the activation while
/// the block is still in L1.
#[inline(always)]
unsafe fn store_block<const MR: usize>(t: &Tile, block: &mut [[f32; NR]; MR]) {
    for (r, row) in block.iter_mut().enumerate() {
        if t.act == Activation::Gelu {
            super::math::gelu_slice(row);
        }
        super::store_row(row, t.c.add(r * t.ldc), t.cols);
    }
}

#[inline(always)]
unsafe fn portable_block<const MR: usize>(t: &Tile) {
    let mut acc = [[0f32; NR]; MR];
    for kk in 0..t.k {
        let b = std::slice::from_raw_parts(t.b.add(kk * NR), NR);
        for (r, acc_r) in acc.iter_mut().enumerate() {
            let av = *t.a.add(r * t.lda + kk);
            for j in 0..NR {
                acc_r[j] += av * b[j];
            }
        }
    }
    for acc_r in acc.iter_mut() {
        for (a, b) in acc_r.iter_mut().zip(t.bias) {
            *a += b;
        }
    }
    store_block(t, &mut acc);
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
    use super::{store_block, Tile, NR};
    use std::arch::x86_64::*;

    /// The AVX2 + FMA microkernel for `MR` rows: 2 x MR ymm accumulators, one broadcast per row per step.
    #[inline(always)]
    unsafe fn block<const MR: usize>(t: &Tile) {
        let mut lo = [_mm256_setzero_ps(); MR];
        let mut hi = [_mm256_setzero_ps(); MR];
        let mut a = [std::ptr::null::<f32>(); MR];
        for (r, a_r) in a.iter_mut().enumerate() {
            *a_r = t.a.add(r * t.lda);
        }
        let mut b = t.b;
        for kk in 0..t.k {
            let b0 = _mm256_loadu_ps(b);
            let b1 = _mm256_loadu_ps(b.add(8));
            for r in 0..MR {
                let av = _mm256_broadcast_ss(&*a[r].add(kk));
                lo[r] = _mm256_fmadd_ps(av, b0, lo[r]);
                hi[r] = _mm256_fmadd_ps(av, b1, hi[r]);
            }
            b = b.add(NR);
        }
        let bias0 = _mm256_loadu_ps(t.bias.as_ptr());
        let bias1 = _mm256_loadu_ps(t.bias.as_ptr().add(8));
        let mut out = [[0f32; NR]; MR];
        for r in 0..MR {
            _mm256_storeu_ps(out[r].as_mut_ptr(), _mm256_add_ps(lo[r], bias0));
            _mm256_storeu_ps(out[r].as_mut_ptr().add(8), _mm256_add_ps(hi[r], bias1));
        }
        store_block(t, &mut out);
    }

    /// Dispatches a block of `rows` (1..=6) rows.
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
    store_block;
    /// `MR` rows x 16 columns, one zmm accumulator per row: each step loads one panel row and
    /// multiply-adds it with one broadcast activation per row (the FMA's embedded-broadcast operand).
    #[inline(always)]
    unsafe fn block<const MR: usize>(t: &Tile) {
        let mut acc = [_mm512_setzero_ps(); MR];
        let mut b = t.b;
        for kk in 0..t.k {
            let w = _mm512_loadu_ps(b);
            for (r, acc_r) in acc.iter_mut().enumerate() {
                *acc_r = _mm512_fmadd_ps(_mm512_set1_ps(*t.a.add(r * t.lda + kk)), w, *acc_r);
            }
            b = b.add(NR);
        }
        let bias = _mm512_loadu_ps(t.bias.as_ptr());
        let mut out = [[0f32; NR]; MR];
        for (out_r, acc_r) in out.iter_mut().zip(acc) {
            _mm512_storeu_ps(out_r.as_mut_ptr(), _mm512_add_ps(acc_r, bias));
        }
        store_block(t, &mut out);
    }
}
