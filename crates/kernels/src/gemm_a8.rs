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

use std::mem::MaybeUninit;

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
/// Zero bytes after the packed panels: one AMX weight tile (16 quads of a panel), the most the AMX kernel
/// reads past the last panel's last quad.
const SLACK: usize = 16 * NR * 4;

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
        // Zero slack after the last panel: the AMX kernel's last weight tile may reach past it.
        let mut data = vec![0i8; panels * kq * NR + SLACK];
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

/// Activations quantised per row: `lda` u8 codes per row (zero past the row's `k`), a scale and a zero
/// point per row (`x ~ scale (code - zero)`); `rows >= m` rows, zero past row `m` (the AMX kernel reads
/// whole 16-row, 64-code tiles).
struct Quantised {
    q: Vec<u8>,
    scales: Vec<f32>,
    zeros: Vec<i32>,
}

thread_local! {
    /// The calling thread's quantised-code buffer, reused across calls ([`Quantised::recycle`]).
    static CODES: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

impl Quantised {
    /// Hands the code buffer back for the thread's next call.
    fn recycle(self) {
        CODES.set(self.q);
    }

    /// Quantises the `m` rows of `a` (`k` wide) with `isa`'s row quantiser.
    ///
    /// Each byte is written once: the rows' codes and their zero tails by the row quantiser, then the
    /// padding rows (zeroing the whole buffer first showed as a `memset` in one-query profiles).
    fn new(
        isa: Isa,
        a: &[f32],
        m: usize,
        k: usize,
        (lda, rows): (usize, usize),
        inv_smooth: &[f32],
    ) -> Self {
        assert!(rows >= m && lda >= k && a.len() == m * k && inv_smooth.len() == k);
        // The calling thread's buffer from its previous call: already in cache, where a fresh allocation
        // made the first store to each line wait for it (the stores were ~1 % of a query's samples).
        let mut q = CODES.take();
        q.clear();
        q.reserve(rows * lda);
        let (mut scales, mut zeros) = (Vec::with_capacity(m), Vec::with_capacity(m));
        for r in 0..m {
            let src = &a[r * k..(r + 1) * k];
            let out = &mut q.spare_capacity_mut()[r * lda..(r + 1) * lda];
            let (scale, zero) = match isa {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: the x86 tiers are only chosen when the CPU has AVX2 and FMA.
                Isa::Avx2 | Isa::Avx512 | Isa::Amx => unsafe {
                    avx2::quantise_row(src, inv_smooth, out)
                },
                _ => quantise_row(src, inv_smooth, out),
            };
            scales.push(scale);
            zeros.push(zero);
        }
        q.spare_capacity_mut()[m * lda..rows * lda].fill(MaybeUninit::new(0));
        // SAFETY: every one of the `rows * lda` bytes was written above.
        unsafe { q.set_len(rows * lda) };
        Self { q, scales, zeros }
    }
}

/// One row's quantisation (`src` times `inv_smooth`, to u8 codes with a zero point) into `out`: `k`
/// codes, then zeros to the end of `out`. Returns the row's scale and zero point.
fn quantise_row(src: &[f32], inv_smooth: &[f32], out: &mut [MaybeUninit<u8>]) -> (f32, i32) {
    let k = src.len();
    let smoothed = || src.iter().zip(inv_smooth).map(|(&v, &c)| v * c);
    // Eight lanes of running minima and maxima, so the reduction vectorises (a float `min` fold over one
    // accumulator is not reassociated and stays scalar).
    let (mut lo8, mut hi8) = ([0f32; 8], [0f32; 8]);
    for (i, v) in smoothed().enumerate() {
        lo8[i % 8] = lo8[i % 8].min(v);
        hi8[i % 8] = hi8[i % 8].max(v);
    }
    let lo = lo8.iter().fold(0f32, |m, &v| m.min(v));
    let hi = hi8.iter().fold(0f32, |m, &v| m.max(v));
    let scale = if hi > lo { (hi - lo) / AMAX } else { 1.0 };
    let inv = 1.0 / scale;
    // lo <= 0 <= hi, so z is within 0..=255.
    let z = (-lo * inv).round().clamp(0.0, AMAX);
    // Adding 1.5 * 2^23 rounds to nearest without a libm call, so this loop vectorises.
    const ROUND: f32 = 12_582_912.0;
    for (d, v) in out[..k].iter_mut().zip(smoothed()) {
        d.write((((v * inv + ROUND) - ROUND) + z).clamp(0.0, AMAX) as u8);
    }
    out[k..].fill(MaybeUninit::new(0));
    (scale, z as i32)
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
    if let Some(b) = bias {
        assert_eq!(b.len(), n, "bias size");
    }
    assert_eq!(out.len(), m * n, "output size");
    // The AMX kernel reads whole tiles: rows in 16s and 64 codes per row.
    let shape = match isa {
        Isa::Amx => (w.kq.next_multiple_of(64), m.next_multiple_of(AMX_ROWS)),
        #[cfg(test)]
        Isa::AmxModel => (w.kq.next_multiple_of(64), m.next_multiple_of(AMX_ROWS)),
        _ => (w.kq, m),
    };
    let aq = Quantised::new(isa, a, m, k, shape, &w.inv_smooth);
    let mr = match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::Amx` is only chosen when the CPU has AMX-INT8 and the OS granted the tile state.
        Isa::Amx => {
            unsafe { tiles::matmul::<crate::amx::Hw>(&aq, shape.0, m, w, bias, act, out) };
            return aq.recycle();
        }
        #[cfg(not(target_arch = "x86_64"))]
        Isa::Amx => unreachable!("AMX is only detected on x86-64"),
        #[cfg(test)]
        // SAFETY: the model checks every tile access itself.
        Isa::AmxModel => {
            unsafe { tiles::matmul::<crate::amx::Model>(&aq, shape.0, m, w, bias, act, out) };
            return aq.recycle();
        }
        Isa::Avx512 => super::MR_AVX512,
        Isa::Avx2 => MR_AVX2,
        Isa::Portable => MR_PORTABLE,
        #[cfg(test)]
        Isa::Avx512Model => super::MR_AVX512,
    };
    let kq = w.kq;
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
    aq.recycle();
}

/// Rows of one AMX tile: the kernel's row block.
const AMX_ROWS: usize = crate::amx::MAX_ROWS;

/// The AMX kernel, written once against [`crate::amx::Tiles`]: the hardware's instructions in `Isa::Amx`,
/// their software model in tests.
///
/// Why the packing needs no change: a panel stores, per quad of inputs, column j's four weights at bytes
/// `4j..4j + 4` of a 64-byte row, which is exactly how `tdpbusd` wants its B operand (one row per input
/// quad, one i32-sized column per output). Sixteen quads of a panel (1 KiB, stride 64) are one B tile.
mod tiles {
    use super::{Activation, PackedA8, Quantised, AMX_ROWS, NR};
    use crate::amx::{Config, Tiles};
    use std::mem::MaybeUninit;

    /// Output panels per pass over a row block's activations: four C tiles (`tmm0..3`), each 16 rows x 16
    /// columns of i32; `tmm4` holds 16 rows x 64 activation codes and `tmm5` / `tmm6` take turns with the
    /// weights, so one panel's weights can load while the previous product runs.
    const GROUP: usize = 4;
    /// Input positions per tile product.
    const KB: usize = 64;

    /// `out = act(a W^T + b)` from the quantised activations `aq` (row stride `lda`, a multiple of 64,
    /// rows padded with zeros to a multiple of 16), split over the team by panels.
    ///
    /// # Safety
    /// `U`'s instructions must be usable on this CPU; `aq` must hold `m.next_multiple_of(16)` rows of
    /// `lda >= w.kq` codes, zero past `k`; `out` is `m x n`; `bias`, if given, has `n` values.
    pub(super) unsafe fn matmul<U: Tiles>(
        aq: &Quantised,
        lda: usize,
        m: usize,
        w: &PackedA8,
        bias: Option<&[f32]>,
        act: Activation,
        out: &mut [MaybeUninit<f32>],
    ) {
        let n = w.n;
        let out_ptr = crate::SendPtr(out.as_mut_ptr().cast::<f32>());
        // An AMX product does roughly eight times the multiply-adds per cycle of the AVX-512 kernel, so
        // handing panels to the team pays only at proportionally larger products.
        crate::split_panels(n.div_ceil(NR), m * n * w.k / 32, |panels| {
            // SAFETY: as for the caller; tasks write disjoint panels of `out`.
            unsafe { task::<U>(aq, lda, m, w, bias, act, out_ptr.get(), panels) }
        });
    }

    /// One task's panels: configures the tiles on this thread, walks 16-row blocks and groups of
    /// [`GROUP`] panels, and releases the tiles when done.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    unsafe fn task<U: Tiles>(
        aq: &Quantised,
        lda: usize,
        m: usize,
        w: &PackedA8,
        bias: Option<&[f32]>,
        act: Activation,
        out: *mut f32,
        panels: std::ops::Range<usize>,
    ) {
        let n = w.n;
        let full = (AMX_ROWS as u8, (KB) as u16);
        let c = (AMX_ROWS as u8, (NR * 4) as u16);
        U::configure(&Config::new(
            [
                c.0,
                c.0,
                c.0,
                c.0,
                full.0,
                (KB / 4) as u8,
                (KB / 4) as u8,
                0,
            ],
            [
                c.1,
                c.1,
                c.1,
                c.1,
                full.1,
                (NR * 4) as u16,
                (NR * 4) as u16,
                0,
            ],
        ));
        let blocks = lda / KB;
        let panel_bytes = w.kq * NR;
        let mut acc = [[[0i32; NR]; AMX_ROWS]; GROUP];
        for row in (0..m).step_by(AMX_ROWS) {
            let rows = AMX_ROWS.min(m - row);
            let a = aq.q.as_ptr().add(row * lda);
            let mut p0 = panels.start;
            while p0 < panels.end {
                let g = GROUP.min(panels.end - p0);
                let b = w.data.as_ptr().add(p0 * panel_bytes).cast::<u8>();
                U::zero::<0>();
                U::zero::<1>();
                U::zero::<2>();
                U::zero::<3>();
                for kb in 0..blocks {
                    U::load::<4>(a.add(kb * KB), lda);
                    // Sixteen quads of each panel: 1 KiB at stride 64. Past the panel's last quad the
                    // tile reads the next panel (or the zero slack after the last one) against zero
                    // activation codes, which adds nothing.
                    let bk = b.add(kb * KB * NR);
                    U::load::<5>(bk, NR * 4);
                    U::dpbusd::<0, 4, 5>();
                    if g > 1 {
                        U::load::<6>(bk.add(panel_bytes), NR * 4);
                        U::dpbusd::<1, 4, 6>();
                    }
                    if g > 2 {
                        U::load::<5>(bk.add(2 * panel_bytes), NR * 4);
                        U::dpbusd::<2, 4, 5>();
                    }
                    if g > 3 {
                        U::load::<6>(bk.add(3 * panel_bytes), NR * 4);
                        U::dpbusd::<3, 4, 6>();
                    }
                }
                U::store::<0>(acc[0].as_mut_ptr().cast(), NR * 4);
                if g > 1 {
                    U::store::<1>(acc[1].as_mut_ptr().cast(), NR * 4);
                }
                if g > 2 {
                    U::store::<2>(acc[2].as_mut_ptr().cast(), NR * 4);
                }
                if g > 3 {
                    U::store::<3>(acc[3].as_mut_ptr().cast(), NR * 4);
                }
                for (i, acc_p) in acc.iter().enumerate().take(g) {
                    let p = p0 + i;
                    let cols = NR.min(n - p * NR);
                    let bias_p = crate::panel_bias(bias, p, n);
                    let wscale = w.scales[p * NR..(p + 1) * NR].try_into().expect("a panel");
                    let wsum = w.sums[p * NR..(p + 1) * NR].try_into().expect("a panel");
                    for (r, acc_r) in acc_p.iter().enumerate().take(rows) {
                        let at = row + r;
                        crate::finish_int_row(
                            acc_r,
                            aq.scales[at],
                            aq.zeros[at],
                            wsum,
                            wscale,
                            &bias_p,
                            act,
                            out.add(at * n + p * NR),
                            cols,
                        );
                    }
                }
                p0 += g;
            }
        }
        U::release();
    }
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
    use super::{finish, Tile, AMAX, NR};
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    /// [`super::quantise_row`] with intrinsics: the same smoothing, range, scale and zero point, and the
    /// same codes (`vcvtps2dq` rounds to nearest even like the portable trick; saturating packs clamp to
    /// 0..=255 like its `clamp`). Written out because the compiled portable loop keeps its float `min` /
    /// `max` and its float-to-u8 casts scalar, which at k = 1536 cost more than the product it feeds.
    /// The smoothing product is taken twice (for the range, then for the codes) rather than stored: the
    /// row and the factors are in L1 either way, and there is no scratch row to allocate.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn quantise_row(
        src: &[f32],
        inv_smooth: &[f32],
        out: &mut [MaybeUninit<u8>],
    ) -> (f32, i32) {
        let k = src.len();
        assert!(inv_smooth.len() >= k && out.len() >= k, "row sizes");
        let (s, c) = (src.as_ptr(), inv_smooth.as_ptr());
        let smoothed =
            |i: usize| _mm256_mul_ps(_mm256_loadu_ps(s.add(i)), _mm256_loadu_ps(c.add(i)));
        let body = k / 8 * 8;
        let (mut vlo, mut vhi) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut i = 0;
        while i < body {
            let v = smoothed(i);
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
            let v = src[j] * inv_smooth[j];
            lo = lo.min(v);
            hi = hi.max(v);
        }
        let scale = if hi > lo { (hi - lo) / AMAX } else { 1.0 };
        let inv = 1.0 / scale;
        let z = (-lo * inv).round().clamp(0.0, AMAX);
        let (vinv, vz) = (_mm256_set1_ps(inv), _mm256_set1_epi32(z as i32));
        let o = out.as_mut_ptr().cast::<u8>();
        let code =
            |at: usize| _mm256_add_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(smoothed(at), vinv)), vz);
        let mut i = 0;
        while i + 32 <= k {
            // Packs work within 128-bit lanes; one cross-lane permute restores the order.
            let w0 = _mm256_packs_epi32(code(i), code(i + 8));
            let w1 = _mm256_packs_epi32(code(i + 16), code(i + 24));
            let b = _mm256_packus_epi16(w0, w1);
            let b = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            _mm256_storeu_si256(o.add(i) as *mut __m256i, b);
            i += 32;
        }
        const ROUND: f32 = 12_582_912.0;
        for j in i..k {
            let v = src[j] * inv_smooth[j];
            out[j].write((((v * inv + ROUND) - ROUND) + z).clamp(0.0, AMAX) as u8);
        }
        out[k..].fill(MaybeUninit::new(0));
        (scale, z as i32)
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

    /// The AMX kernel through the tile model: every shape class (one and several 16-row blocks, partial
    /// row blocks, one to five panels so groups are full and partial, inputs shorter than, equal to and
    /// longer than one 64-wide tile with and without a tail), alone and split over a team, must give the
    /// portable kernel's floats exactly (both sum the same integers), and leave the tiles released.
    #[test]
    fn amx_kernel_equals_the_portable_one() {
        use crate::{amx, Linear, Team};
        let team = Team::new(3, "test-amx").unwrap();
        for (m, n, k) in [
            (1, 16, 4),
            (13, 64, 64),
            (16, 80, 100),
            (17, 33, 384),
            (33, 130, 130),
            (40, 5, 1536),
        ] {
            let (x, w, b) = (
                crate::noise(m * k, m as u64),
                crate::noise(n * k, n as u64),
                crate::noise(n, k as u64),
            );
            let smooth: Vec<f32> = (0..k).map(|c| 0.5 + (c % 3) as f32 * 0.5).collect();
            let want = Linear::int8_fast(&w, n, k, Some(b.clone()), &smooth, Isa::Portable)
                .forward_vec(&x, m, Activation::Gelu);
            let amx = Linear::int8_fast(&w, n, k, Some(b), &smooth, Isa::AmxModel);
            assert_eq!(
                amx.forward_vec(&x, m, Activation::Gelu),
                want,
                "{m}x{n}x{k}"
            );
            assert!(!amx::Model::configured(), "tiles released");
            let split = team.install(|| amx.forward_vec(&x, m, Activation::Gelu));
            assert_eq!(split, want, "{m}x{n}x{k} over a team");
        }
    }

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
                // Rows padded past `k`, as the AMX kernel's are: the tails must come back zero.
                let lda = k.next_multiple_of(64);
                let isa = |portable: bool| if portable { Isa::Portable } else { Isa::Avx2 };
                let each = |portable| Quantised::new(isa(portable), &a, m, k, (lda, m + 3), &inv);
                let (want, got) = (each(true), each(false));
                assert_eq!(want.q, got.q, "k = {k}");
                assert_eq!(want.scales, got.scales, "k = {k}");
                assert_eq!(want.zeros, got.zeros, "k = {k}");
                assert!(want.q[m * lda..].iter().all(|&c| c == 0), "padding rows");
                assert!(want
                    .q
                    .chunks(lda)
                    .all(|row| row[k..].iter().all(|&c| c == 0)));
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
        let q = Quantised::new(Isa::Portable, &a, m, k, (12, m), &inv);
        for r in 0..m {
            let (scale, zero) = (q.scales[r], q.zeros[r]);
            assert_eq!(q.q[r * 12 + k..(r + 1) * 12], [0, 0], "zero past the row");
            for i in 0..k {
                let x = a[r * k + i] * inv[i];
                let back = (q.q[r * 12 + i] as i32 - zero) as f32 * scale;
                assert!((x - back).abs() <= scale * 0.5001, "{x} vs {back}");
            }
        }
    }
}
