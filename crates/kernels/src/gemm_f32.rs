//! F32 `y = x W^T + b` with weights packed once at load.
//!
//! Layout: `W` (`n x k`, row-major as checkpoints store it) becomes panels of [`NR`] output columns, each
//! panel `k` rows of [`NR`] contiguous floats, zero-padded past `n`. A microkernel keeps a block of outputs
//! in registers and streams the weights one panel row per step, so every weight loaded feeds several FMAs
//! and the weights are read in order, once per row block. This is what candle's `gemm` cannot do for us: it
//! re-packs the weights on every call, which dominates at the few-row activations of one query.
//!
//! The AVX2 and portable kernels take `MR` rows of one panel per block. The AVX-512 kernel takes `MR`
//! rows of [`WIDE_PANELS`] neighbouring panels at once (one zmm per row and panel). With one panel per
//! block, as it first had, each step was `1 + MR` loads (the weight vector, one broadcast per row) for
//! `MR` FMAs, about one load per FMA, and it ran no faster than AVX2 (issue 23); the wide block does
//! `3 + 8` loads for 24 FMAs and comes close to the FMA units' rate on one core of the Zen 5 it was
//! measured on.
//! All ISAs share the one packed layout (the wide block reads its panels as separate streams, `k * NR`
//! floats apart), so weights packed once serve whichever kernel the self-check lets run.

use super::{Activation, Isa};

/// Output columns per panel (two AVX2 vectors).
pub const NR: usize = super::PANEL;
/// Rows per register block on AVX2: 6 rows x 2 vectors = 12 accumulators of the 16 ymm registers.
const MR_AVX2: usize = 6;
/// Rows per block in the portable kernel (arrays the compiler keeps in vector registers where it can).
const MR_PORTABLE: usize = 4;
/// Panels per AVX-512 register block: [`WIDE`] columns, one zmm per row and panel.
pub const WIDE_PANELS: usize = 3;
/// Output columns per AVX-512 register block.
pub const WIDE: usize = WIDE_PANELS * NR;
/// Rows per AVX-512 register block: 8 rows x 3 panels = 24 zmm accumulators, plus 3 for the step's weight
/// vectors and one for a broadcast, of the 32 registers. Each step then does 3 + 8 loads for 24 FMAs (the
/// one-panel kernel did 1 + 12 for 12). A 13-token query is two blocks (7 + 6), the second reading the
/// group's weights again from L1/L2. 12 x 2 and 14 x 2 (a 13-token query in one block) measured the
/// same on one Zen 5 core, all close to the FMA rate; 8 x 3 has the fewest loads per FMA, which matters
/// more on cores with fewer load ports.
const MR_WIDE: usize = 8;

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

/// `out (m x n) = a (m x k) * W^T + bias`, then `act`. Splits the panels over the thread team when the
/// product is large enough to pay for it.
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
        Isa::Avx2 => MR_AVX2,
        Isa::Portable => MR_PORTABLE,
        #[cfg(test)]
        Isa::Avx512Model | Isa::AmxModel => return matmul_wide(isa, a, m, w, bias, act, out),
        Isa::Avx512 | Isa::Amx => return matmul_wide(isa, a, m, w, bias, act, out),
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
            match isa {
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 => avx2::tile(at.rows, &tile),
                Isa::Portable => portable_tile(at.rows, &tile),
                _ => unreachable!("{} has its own block walk", isa.name()),
            }
        }
    });
}

/// [`matmul`] for the AVX-512 kernel, whose blocks span [`WIDE_PANELS`] panels: the same walk as
/// [`super::run_blocks`] (row blocks of [`super::MC`], then column groups, then row tiles) over groups of
/// panels instead of single panels, split over the team by group so that no block straddles two tasks.
fn matmul_wide(
    isa: Isa,
    a: &[f32],
    m: usize,
    w: &PackedF32,
    bias: Option<&[f32]>,
    act: Activation,
    out: &mut [std::mem::MaybeUninit<f32>],
) {
    let (n, k) = (w.n, w.k);
    assert_eq!(out.len(), m * n, "output size");
    if let Some(b) = bias {
        assert_eq!(b.len(), n, "bias size");
    }
    let out = super::SendPtr(out.as_mut_ptr().cast::<f32>());
    super::split_panels(n.div_ceil(WIDE), m * n * k, |groups| {
        for rows in (0..m).step_by(super::MC) {
            let rows_end = (rows + super::MC).min(m);
            for g in groups.clone() {
                let col = g * WIDE;
                let cols = WIDE.min(n - col);
                let mut bias_g = [0f32; WIDE];
                if let Some(bias) = bias {
                    bias_g[..cols].copy_from_slice(&bias[col..col + cols]);
                }
                let mut row = rows;
                while row < rows_end {
                    let h = super::tile_rows(rows_end - row, MR_WIDE);
                    // SAFETY: rows `row..row + h` of `a` and `out`, the group's `cols.div_ceil(NR)`
                    // panels of the packed weights and its `cols` output columns all lie inside their
                    // buffers; other tasks write other groups' columns.
                    unsafe {
                        let tile = WideTile {
                            a: a.as_ptr().add(row * k),
                            lda: k,
                            b: w.data.as_ptr().add(g * WIDE_PANELS * k * NR),
                            panel_stride: k * NR,
                            k,
                            c: out.get().add(row * n + col),
                            ldc: n,
                            cols,
                            bias: &bias_g,
                            act,
                        };
                        let panels = cols.div_ceil(NR);
                        match isa {
                            #[cfg(target_arch = "x86_64")]
                            Isa::Avx512 | Isa::Amx => avx512::tile(h, panels, &tile),
                            #[cfg(test)]
                            Isa::Avx512Model | Isa::AmxModel => {
                                avx512_model::tile(h, panels, &tile)
                            }
                            _ => unreachable!("the wide kernel is AVX-512's"),
                        }
                    }
                    row += h;
                }
            }
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

/// One AVX-512 register block's inputs: `rows x cols` outputs at `c` from `rows` activation rows at `a`,
/// against the panels at `b`, `b + panel_stride`, ... (as many as `cols` needs, at most [`WIDE_PANELS`]).
struct WideTile<'a> {
    a: *const f32,
    lda: usize,
    b: *const f32,
    panel_stride: usize,
    k: usize,
    c: *mut f32,
    ldc: usize,
    cols: usize,
    bias: &'a [f32; WIDE],
    act: Activation,
}

/// Writes a finished `rows x WIDE` block (bias already added; columns past the block's panels zero) to
/// the output. GELU runs over the whole fixed-width row, so it vectorises without a remainder loop (on a
/// padding zero it is zero and never stored); a full group is one fixed-size copy ([`super::store_prefix`]).
#[inline(always)]
unsafe fn store_wide<const MR: usize>(t: &WideTile, block: &mut [[f32; WIDE]; MR]) {
    for (r, row) in block.iter_mut().enumerate() {
        if t.act == Activation::Gelu {
            super::math::gelu_slice(row);
        }
        super::store_prefix(row, t.c.add(r * t.ldc), t.cols);
    }
}

/// Runs `$block::<rows, $np>` for `rows` in `1..=MR_WIDE` (the literals listed are those below
/// `MR_WIDE`), each row count its own unrolled instance.
macro_rules! wide_rows {
    ($block:ident, $np:literal, $rows:expr, $t:expr; $($r:literal)*) => {
        match $rows {
            $($r => $block::<$r, $np>($t),)*
            _ => $block::<MR_WIDE, $np>($t),
        }
    };
}

avx512_kernel! {
    @module uses { store_wide, WideTile, MR_WIDE, NR, WIDE }
    entry {
        /// Runs one block of `rows` (1..=`MR_WIDE`) rows and `panels` (1..=`WIDE_PANELS`) panels.
        pub(super) unsafe fn tile(rows: usize, panels: usize, t: &WideTile) {
            match panels {
                1 => wide_rows!(block, 1, rows, t; 1 2 3 4 5 6 7),
                2 => wide_rows!(block, 2, rows, t; 1 2 3 4 5 6 7),
                _ => wide_rows!(block, 3, rows, t; 1 2 3 4 5 6 7),
            }
        }
    }

    /// `MR` rows x `NP` panels, one zmm accumulator per row and panel. Each step loads the `NP` panels'
    /// weight vectors for this `k`, then broadcasts one activation per row and multiply-adds it with all
    /// of them: `NP + MR` loads for `NP * MR` FMAs, where one panel per block needed `1 + MR` for `MR`.
    #[inline(always)]
    unsafe fn block<const MR: usize, const NP: usize>(t: &WideTile) {
        let mut acc = [[_mm512_setzero_ps(); NP]; MR];
        let mut b = t.b;
        for kk in 0..t.k {
            let mut w = [_mm512_setzero_ps(); NP];
            for (p, w_p) in w.iter_mut().enumerate() {
                *w_p = _mm512_loadu_ps(b.add(p * t.panel_stride));
            }
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_ps(*t.a.add(r * t.lda + kk));
                for (acc_rp, w_p) in acc_r.iter_mut().zip(&w) {
                    *acc_rp = _mm512_fmadd_ps(av, *w_p, *acc_rp);
                }
            }
            b = b.add(NR);
        }
        let mut out = [[0f32; WIDE]; MR];
        for (out_r, acc_r) in out.iter_mut().zip(&acc) {
            for (p, acc_rp) in acc_r.iter().enumerate() {
                let bias = _mm512_loadu_ps(t.bias.as_ptr().add(p * NR));
                _mm512_storeu_ps(out_r.as_mut_ptr().add(p * NR), _mm512_add_ps(*acc_rp, bias));
            }
        }
        store_wide(t, &mut out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{noise, Linear, Precision};

    /// `act(x W^T + b)` summed in f64: the F32 kernels should be within a few ulps of the exact sum.
    fn reference(
        x: &[f32],
        m: usize,
        w: &[f32],
        n: usize,
        k: usize,
        b: &[f32],
        gelu: bool,
    ) -> Vec<f32> {
        let mut out = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let dot: f64 = (0..k)
                    .map(|c| x[i * k + c] as f64 * w[j * k + c] as f64)
                    .sum();
                let y = (dot + b[j] as f64) as f32;
                out[i * n + j] = if gelu { crate::math::gelu(y) } else { y };
            }
        }
        out
    }

    fn cosine(a: &[f32], b: &[f32]) -> f64 {
        let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
        let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        dot / (norm(a) * norm(b))
    }

    /// Every block the AVX-512 kernel has: each row count up to `MR_WIDE` (and the row tiles of larger
    /// `m`), each number of panels in a group, the last group partial or full, with and without bias and
    /// GELU. Through the instruction model everywhere, and on the hardware where it has AVX-512.
    #[test]
    fn wide_blocks_match_an_exact_reference() {
        let isas: Vec<Isa> = Isa::available()
            .into_iter()
            .filter(|isa| matches!(isa, Isa::Avx512 | Isa::Avx512Model))
            .collect();
        let ns = [
            1,
            5,
            NR,
            NR + 1,
            2 * NR,
            2 * NR + 1,
            WIDE - 1,
            WIDE,
            WIDE + 17,
            2 * WIDE + 40,
        ];
        let mut seed = 0;
        for isa in isas {
            for m in 1..=2 * MR_WIDE + 1 {
                for &n in &ns {
                    for k in [1, 19, 64] {
                        seed += 1;
                        let (x, w) = (noise(m * k, seed), noise(n * k, seed + 1000));
                        let bias = noise(n, seed + 2000);
                        for (with_bias, act) in
                            [(false, Activation::None), (true, Activation::Gelu)]
                        {
                            let b = if with_bias {
                                bias.clone()
                            } else {
                                vec![0.0; n]
                            };
                            let want = reference(&x, m, &w, n, k, &b, act == Activation::Gelu);
                            let lin = Linear::new(
                                &w,
                                n,
                                k,
                                with_bias.then(|| b.clone()),
                                Precision::F32,
                                isa,
                            );
                            let got = lin.forward_vec(&x, m, act);
                            let label =
                                format!("{} {m}x{n}x{k} bias={with_bias} {act:?}", isa.name());
                            for (g, e) in got.iter().zip(&want) {
                                assert!(
                                    (g - e).abs() <= 1e-5 * (k as f32).sqrt(),
                                    "{label}: {g} vs {e}"
                                );
                            }
                            if want.iter().any(|v| *v != 0.0) {
                                let cos = cosine(&got, &want);
                                assert!(cos > 0.99999, "{label}: cosine {cos}");
                            }
                        }
                    }
                }
            }
        }
    }

    /// The encoder's own shapes on the exact path: the bar the exact path must keep is cosine > 0.9999 to
    /// the reference; an F32 kernel should be at rounding level, ~1e-6 relative.
    #[test]
    fn encoder_shapes_stay_at_rounding_error() {
        for isa in Isa::available() {
            for (i, (m, n, k)) in [(13, 1152, 384), (14, 384, 1536), (100, 1536, 384)]
                .into_iter()
                .enumerate()
            {
                let (x, w, b) = (
                    noise(m * k, i as u64),
                    noise(n * k, 10 + i as u64),
                    noise(n, 20 + i as u64),
                );
                let want = reference(&x, m, &w, n, k, &b, true);
                let got = Linear::new(&w, n, k, Some(b), Precision::F32, isa).forward_vec(
                    &x,
                    m,
                    Activation::Gelu,
                );
                let err: f64 = got
                    .iter()
                    .zip(&want)
                    .map(|(g, e)| ((g - e) as f64).powi(2))
                    .sum::<f64>()
                    .sqrt();
                let norm: f64 = want.iter().map(|e| (*e as f64).powi(2)).sum::<f64>().sqrt();
                assert!(
                    err / norm < 1e-5,
                    "{} {m}x{n}x{k}: relative error {}",
                    isa.name(),
                    err / norm
                );
                assert!(cosine(&got, &want) > 0.99999, "{} {m}x{n}x{k}", isa.name());
            }
        }
    }
}
