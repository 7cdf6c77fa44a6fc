//! Our CPU kernels for the encoder's hot loops: matrix products against weights packed once at load (F32
//! and an int8-weight fast path), attention over the fused QKV projection, and the element-wise maths
//! (GELU, softmax, residual + layer norm) written to vectorise.
//!
//! Dispatch is at run time ([`Isa::detect`]): AVX-512 (with VNNI) linear-layer kernels and AVX2 + FMA
//! intrinsics on x86-64 CPUs that have them, and a portable version of the same algorithms everywhere else
//! (any x86-64, ARM), so one binary runs anywhere.
//! The encoder uses them through candle custom ops; on CUDA candle's own kernels run instead.

/// Runs `tile(rows, &t)` from the calling kernel module's `avx512`, `avx2` or portable code per `isa`:
/// one place for the dispatch every linear-layer kernel makes per register block (the x86 arms only exist
/// on x86-64, where those instruction sets can be detected; the model arm only in unit tests).
macro_rules! dispatch_tile {
    ($isa:expr, $rows:expr, $tile:expr) => {
        match $isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 | Isa::Amx => avx512::tile($rows, $tile),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => avx2::tile($rows, $tile),
            #[cfg(not(target_arch = "x86_64"))]
            Isa::Avx2 | Isa::Avx512 | Isa::Amx => {
                unreachable!("AVX2, AVX-512 and AMX are only detected on x86-64")
            }
            Isa::Portable => portable_tile($rows, $tile),
            #[cfg(test)]
            Isa::Avx512Model | Isa::AmxModel => avx512_model::tile($rows, $tile),
        }
    };
}

/// A linear-layer kernel's AVX-512 register block, given once as `fn block<const MR: usize>(t: &Tile)` (after
/// `$epilogue;`, the kernel module's function that stores a finished block), expanded twice: as module
/// `avx512`, against `std::arch` and compiled for AVX-512 + VNNI; and, in unit tests, as `avx512_model`,
/// against the software model of the same intrinsics ([`avx512_model`]). Each gets a `tile(rows, t)` that
/// runs the block for `rows` in `1..=12` rows, every row count its own fully unrolled instance.
///
/// The general form, `@module uses { names from the kernel module } entry { one function } items...`,
/// expands `items` into both modules the same way and compiles `entry` (the module's one way in) with the
/// AVX-512 target features in `avx512` and without them in the model, which must run on any CPU: for
/// kernels whose register block is not `MR` rows of one panel (the F32 kernel's block spans several).
macro_rules! avx512_kernel {
    (@module uses { $($uses:tt)* } entry { $($entry:tt)* } $($items:tt)*) => {
        #[cfg(target_arch = "x86_64")]
        mod avx512 {
            use super::{$($uses)*};
            use std::arch::x86_64::*;

            $($items)*

            #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")]
            $($entry)*
        }

        #[cfg(test)]
        mod avx512_model {
            use super::{$($uses)*};
            use crate::avx512_model::*;

            $($items)*

            $($entry)*
        }
    };
    (@rows $block:ident, $rows:expr, $t:expr) => {
        match $rows {
            1 => $block::<1>($t),
            2 => $block::<2>($t),
            3 => $block::<3>($t),
            4 => $block::<4>($t),
            5 => $block::<5>($t),
            6 => $block::<6>($t),
            7 => $block::<7>($t),
            8 => $block::<8>($t),
            9 => $block::<9>($t),
            10 => $block::<10>($t),
            11 => $block::<11>($t),
            _ => $block::<12>($t),
        }
    };
    ($epilogue:ident; $($block:tt)*) => {
        avx512_kernel! {
            @module uses { $epilogue, Tile, NR }
            entry {
                pub(super) unsafe fn tile(rows: usize, t: &Tile) {
                    avx512_kernel!(@rows block, rows, t)
                }
            }
            $($block)*
        }
    };
}

/// Rows per register block in the AVX-512 integer kernels (F32 has its own, wider block): 12 zmm
/// accumulators of 16 columns, the weight vector and broadcasts fit easily in the 32 registers; a
/// 13-token query is two blocks (7 + 6) reading each weight panel once from memory and once from L1.
const MR_AVX512: usize = 12;

mod amx;
pub mod attention;
#[cfg(test)]
mod avx512_model;
pub mod encoder;
pub mod gemm_a8;
pub mod gemm_bf16;
pub mod gemm_f32;
pub mod gemm_i8;
pub mod math;
mod self_check;
pub mod team;

pub use gemm_a8::PackedA8;
pub use gemm_bf16::PackedBf16;
pub use gemm_f32::PackedF32;
pub use gemm_i8::PackedI8;
pub use self_check::noise;
pub use team::Team;

use std::mem::MaybeUninit;

/// An initialised buffer as a kernel output (the kernels only ever write their outputs).
pub fn uninit_mut(out: &mut [f32]) -> &mut [MaybeUninit<f32>] {
    // SAFETY: `MaybeUninit<f32>` has `f32`'s layout, and every value the kernels store is an initialised
    // f32, so the buffer stays initialised for the caller.
    unsafe { &mut *(out as *mut [f32] as *mut [MaybeUninit<f32>]) }
}

/// The instruction set a kernel call uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// AVX-512 (as [`Isa::Avx512`]) plus AMX-INT8 tiles (Intel Sapphire Rapids and later) for the
    /// int8-fast linear layers: one `tdpbusd` multiplies a 16 x 64 block of activations by a 64 x 16 block
    /// of weights. Everything else runs the AVX-512 and AVX2 code. Only used when the operating system
    /// grants the process the tile state and after the self-check.
    Amx,
    /// x86-64 with AVX-512 F/BW/VL and VNNI (Intel Cascade Lake, Ice Lake, Sapphire Rapids and later; AMD
    /// Zen 4 and later): an 8x48 F32 linear-layer microkernel and 12x16 integer ones on `vpdpbusd` /
    /// `vpdpwssd`.
    /// Everything else (attention, norms, quantisation) runs the AVX2 code, which these CPUs also have.
    Avx512,
    /// x86-64 with AVX2 and FMA: hand-written 6x16 microkernels.
    Avx2,
    /// Plain Rust the compiler vectorises for the build target; runs on any CPU.
    Portable,
    /// Unit tests only: the AVX-512 microkernels' own source compiled against a software model of the
    /// intrinsics they use ([`avx512_model`]), so their logic is tested on CPUs without AVX-512 (for
    /// everything but the linear layers it runs the portable code).
    #[cfg(test)]
    Avx512Model,
    /// Unit tests only: the AMX kernel's own source run against a software model of the tile
    /// instructions (`amx::Model`), and the AVX-512 model for the rest.
    #[cfg(test)]
    AmxModel,
}

impl Isa {
    /// The best instruction set this CPU supports, decided once per process.
    ///
    /// `SEMROUTE_KERNELS` caps the tier (to compare, or to rule ours out when chasing a problem):
    /// `portable` forces the portable kernels, `avx2` caps x86 at AVX2, `avx512` leaves AMX unused. AMX
    /// and AVX-512 are only used after a self-check: their kernels must agree with the portable ones on a
    /// few small products, or the process logs an error and takes the next tier down (a wrong embedding
    /// routes silently, so a CPU or compiler surprise must cost speed, never answers).
    pub fn detect() -> Self {
        static BEST: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| {
            let forced = std::env::var("SEMROUTE_KERNELS").unwrap_or_default();
            let usable = Self::available()
                .into_iter()
                .filter(|isa| match forced.as_str() {
                    "portable" => *isa == Isa::Portable,
                    "avx2" => !matches!(isa, Isa::Avx512 | Isa::Amx),
                    "avx512" => *isa != Isa::Amx,
                    _ => true,
                })
                .find(|isa| match isa {
                    // `available` lists AMX only once its self-check has passed.
                    Isa::Amx => true,
                    Isa::Avx512 => {
                        let agrees = self_check::agrees_with_portable(*isa);
                        if !agrees {
                            tracing::error!(
                                isa = isa.name(),
                                "kernels disagree with the portable ones on this CPU; using the next tier down"
                            );
                        }
                        agrees
                    }
                    #[cfg(test)]
                    Isa::Avx512Model | Isa::AmxModel => false,
                    _ => true,
                });
            usable.unwrap_or(Isa::Portable)
        })
    }

    /// Every instruction set usable on this CPU, best first (tests run each of them).
    pub fn available() -> Vec<Self> {
        let mut out = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
            if avx2
                && is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("avx512vnni")
            {
                if amx::usable() && amx_agrees() {
                    out.push(Isa::Amx);
                }
                out.push(Isa::Avx512);
            }
            if avx2 {
                out.push(Isa::Avx2);
            }
        }
        out.push(Isa::Portable);
        #[cfg(test)]
        out.extend([Isa::Avx512Model, Isa::AmxModel]);
        out
    }

    /// Short name for logs and benchmark labels.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Amx => "amx",
            Isa::Avx512 => "avx512",
            Isa::Avx2 => "avx2",
            Isa::Portable => "portable",
            #[cfg(test)]
            Isa::Avx512Model => "avx512-model",
            #[cfg(test)]
            Isa::AmxModel => "amx-model",
        }
    }
}

/// Whether the AMX kernel passes the self-check on this CPU, once per process. Unlike AVX-512, AMX only
/// counts as available when it passes: its code has been tested through the tile model but has not yet
/// run on AMX hardware in this project, so on a CPU where it disagrees, it is logged as an error and left
/// out everywhere (service and tests alike), and the AVX-512 kernel serves.
fn amx_agrees() -> bool {
    static AGREES: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AGREES.get_or_init(|| {
        let agrees = self_check::agrees_with_portable(Isa::Amx);
        if !agrees {
            tracing::error!(
                "the AMX kernel disagrees with the portable one on this CPU; using AVX-512"
            );
        }
        agrees
    })
}

/// What runs on a linear layer's output before it is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Nothing (bias only).
    None,
    /// GELU, erf form.
    Gelu,
}

/// Number precision of the linear layers (`encoder.precision` in routes.yaml).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// F32 weights and activations: the reference result (cosine > 0.9999 to sentence-transformers).
    F32,
    /// Int8 weights with per-channel scales, activations quantised per row on the fly (12-bit): cosine
    /// >= 0.998 to the reference on the test items.
    Int8,
    /// 7-bit weights with per-channel scales and 8-bit activations (per row, with a zero point), inputs
    /// smoothed per channel with factors calibrated at load: the fast path and the default (1.2-1.35x
    /// the batch throughput of `Int8`; cosine >= 0.996 to the reference; CLINC150 K = 10 accuracy within
    /// 0.1 points of F32).
    #[default]
    Int8Fast,
    /// bf16 weights and activations, products summed in F32: cosine >= 0.99997 to the reference on the
    /// test items (the exact bar is 0.9999) at half F32's weight bytes; fast where the CPU has AVX-512
    /// BF16 (`vdpbf16ps`), the portable kernel elsewhere.
    Bf16,
}

impl Precision {
    /// Every precision, for checks and benchmarks that cover them all.
    pub const ALL: [Precision; 4] = [
        Precision::F32,
        Precision::Int8,
        Precision::Int8Fast,
        Precision::Bf16,
    ];

    /// The name routes.yaml uses.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Int8 => "int8",
            Precision::Int8Fast => "int8-fast",
            Precision::Bf16 => "bf16",
        }
    }
}

/// Weights of one linear layer in the form its kernel wants.
#[derive(Debug, Clone)]
pub enum PackedWeights {
    /// F32 panels.
    F32(PackedF32),
    /// Int8 panels with per-channel scales.
    Int8(PackedI8),
    /// 7-bit panels for 8-bit activations.
    A8(PackedA8),
    /// bf16 panels in input pairs.
    Bf16(PackedBf16),
}

/// A linear layer `y = x W^T + b` (optionally followed by GELU) backed by our kernels.
#[derive(Debug, Clone)]
pub struct Linear {
    weights: PackedWeights,
    bias: Option<Vec<f32>>,
    isa: Isa,
}

impl Linear {
    /// Packs `w` (`n x k`, row-major, as checkpoints store it) at `precision`.
    pub fn new(
        w: &[f32],
        n: usize,
        k: usize,
        bias: Option<Vec<f32>>,
        precision: Precision,
        isa: Isa,
    ) -> Self {
        if let Some(b) = &bias {
            assert_eq!(b.len(), n, "bias size");
        }
        let weights = match precision {
            Precision::F32 => PackedWeights::F32(PackedF32::pack(w, n, k)),
            Precision::Int8 => PackedWeights::Int8(PackedI8::pack(w, n, k)),
            Precision::Int8Fast => PackedWeights::A8(PackedA8::pack(w, n, k, &vec![1.0; k])),
            Precision::Bf16 => PackedWeights::Bf16(PackedBf16::pack(w, n, k)),
        };
        Self { weights, bias, isa }
    }

    /// Packs `w` for [`Precision::Int8Fast`] with per-input smoothing factors (`k` of them, see
    /// [`gemm_a8`]).
    pub fn int8_fast(
        w: &[f32],
        n: usize,
        k: usize,
        bias: Option<Vec<f32>>,
        smooth: &[f32],
        isa: Isa,
    ) -> Self {
        if let Some(b) = &bias {
            assert_eq!(b.len(), n, "bias size");
        }
        Self {
            weights: PackedWeights::A8(PackedA8::pack(w, n, k, smooth)),
            bias,
            isa,
        }
    }

    /// Output width.
    pub fn out_features(&self) -> usize {
        match &self.weights {
            PackedWeights::F32(w) => w.n(),
            PackedWeights::Int8(w) => w.n(),
            PackedWeights::A8(w) => w.n(),
            PackedWeights::Bf16(w) => w.n(),
        }
    }

    /// Input width.
    pub fn in_features(&self) -> usize {
        match &self.weights {
            PackedWeights::F32(w) => w.k(),
            PackedWeights::Int8(w) => w.k(),
            PackedWeights::A8(w) => w.k(),
            PackedWeights::Bf16(w) => w.k(),
        }
    }

    /// `out (m x n) = act(x (m x k) W^T + b)`.
    pub fn forward(&self, x: &[f32], m: usize, act: Activation, out: &mut [f32]) {
        self.forward_uninit(x, m, act, uninit_mut(out));
    }

    /// [`Linear::forward`] into a new vector. The output is written once by the kernels, never zeroed
    /// first: at query sizes zeroing the outputs cost about 6% of the forward pass, all of it on the
    /// calling thread while the team's helpers wait.
    pub fn forward_vec(&self, x: &[f32], m: usize, act: Activation) -> Vec<f32> {
        let len = m * self.out_features();
        let mut out = Vec::with_capacity(len);
        self.forward_uninit(x, m, act, &mut out.spare_capacity_mut()[..len]);
        // SAFETY: the kernels write every one of the `m x n` outputs (`run_blocks` covers each row of
        // each panel once; see the `every_output_is_written` test).
        unsafe { out.set_len(len) };
        out
    }

    /// [`Linear::forward`] into memory that need not be initialised; every element is written.
    pub fn forward_uninit(
        &self,
        x: &[f32],
        m: usize,
        act: Activation,
        out: &mut [MaybeUninit<f32>],
    ) {
        let bias = self.bias.as_deref();
        match &self.weights {
            PackedWeights::F32(w) => gemm_f32::matmul(self.isa, x, m, w, bias, act, out),
            PackedWeights::Int8(w) => gemm_i8::matmul(self.isa, x, m, w, bias, act, out),
            PackedWeights::A8(w) => gemm_a8::matmul(self.isa, x, m, w, bias, act, out),
            PackedWeights::Bf16(w) => gemm_bf16::matmul(self.isa, x, m, w, bias, act, out),
        }
    }

    /// Bytes held by the packed weights.
    pub fn weight_bytes(&self) -> usize {
        match &self.weights {
            PackedWeights::F32(w) => w.n().next_multiple_of(PANEL) * w.k() * 4,
            PackedWeights::Int8(w) => w.n().next_multiple_of(PANEL) * (w.k() + 4),
            PackedWeights::A8(w) => w.bytes(),
            PackedWeights::Bf16(w) => w.bytes(),
        }
    }
}

/// A raw output pointer that parallel tasks write disjoint parts of.
#[derive(Clone, Copy)]
struct SendPtr<T>(*mut T);
// SAFETY: only used to hand disjoint output regions to rayon tasks that all finish before the owner of
// the buffer regains it (the scope of one kernel call).
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}

impl<T> SendPtr<T> {
    /// The pointer (a method, so closures capture the whole `Send` wrapper rather than the raw field).
    fn get(self) -> *mut T {
        self.0
    }
}

/// Height of the next row tile when `left` rows remain and a tile holds at most `mr`: the fewest tiles,
/// as even as possible (13 rows as 5 + 4 + 4, not 6 + 6 + 1). Every tile streams the whole weight panel,
/// so a one-row tile costs nearly as much weight traffic as a full one for a sixth of the work.
fn tile_rows(left: usize, mr: usize) -> usize {
    left.div_ceil(left.div_ceil(mr))
}

/// Output columns per weight panel in every kernel (two AVX2 vectors of eight lanes).
pub const PANEL: usize = 16;

/// Rows whose activations are reused across all of a task's panels before moving on (keeps them in L2).
const MC: usize = 96;

/// Where one register block of a kernel task goes: rows `row..row + rows` of panel `panel`, whose first
/// `cols` columns are real, with those columns' bias (zero-padded, zeros without a bias).
struct TileAt<'a> {
    row: usize,
    rows: usize,
    panel: usize,
    cols: usize,
    bias: &'a [f32; PANEL],
}

/// Runs a linear-layer kernel over `out` (`m x n`, row-major): the panels are split over the current team
/// when `work` (multiply-adds, in the kernel's own units) pays for it, and each task walks its register
/// blocks with [`for_each_tile`], calling `block(at, out)` for each (rows of at most `mr`).
///
/// `block` must write only rows `at.row..at.row + at.rows`, columns of panel `at.panel`, of `out`; then
/// tasks never touch the same output.
fn run_blocks(
    m: usize,
    n: usize,
    mr: usize,
    work: usize,
    bias: Option<&[f32]>,
    out: &mut [MaybeUninit<f32>],
    block: impl Fn(TileAt, *mut f32) + Sync,
) {
    assert_eq!(out.len(), m * n, "output size");
    if let Some(b) = bias {
        assert_eq!(b.len(), n, "bias size");
    }
    let out_ptr = SendPtr(out.as_mut_ptr().cast::<f32>());
    split_panels(n.div_ceil(PANEL), work, |panels| {
        for_each_tile(m, n, mr, panels, bias, |at| block(at, out_ptr.get()))
    });
}

/// Walks a task's register blocks in the order every kernel uses: [`MC`]-row blocks, then each panel of
/// `panels`, then row tiles of at most `mr` rows, as even as possible ([`tile_rows`]).
fn for_each_tile(
    m: usize,
    n: usize,
    mr: usize,
    panels: std::ops::Range<usize>,
    bias: Option<&[f32]>,
    mut f: impl FnMut(TileAt),
) {
    for rows in (0..m).step_by(MC) {
        let rows_end = (rows + MC).min(m);
        for panel in panels.clone() {
            let cols = PANEL.min(n - panel * PANEL);
            let bias_p = panel_bias(bias, panel, n);
            let mut row = rows;
            while row < rows_end {
                let h = tile_rows(rows_end - row, mr);
                f(TileAt {
                    row,
                    rows: h,
                    panel,
                    cols,
                    bias: &bias_p,
                });
                row += h;
            }
        }
    }
}

/// Panel `panel`'s bias (of a layer `n` wide), zero-padded past the layer's last column; zeros without a
/// bias.
#[inline(always)]
fn panel_bias(bias: Option<&[f32]>, panel: usize, n: usize) -> [f32; PANEL] {
    let mut out = [0f32; PANEL];
    if let Some(bias) = bias {
        let cols = PANEL.min(n - panel * PANEL);
        let b = &bias[panel * PANEL..panel * PANEL + cols];
        // Fixed-size when the panel is full: no `memcpy` call per panel.
        match <&[f32; PANEL]>::try_from(b) {
            Ok(full) => out = *full,
            Err(_) => out[..cols].copy_from_slice(b),
        }
    }
    out
}

/// The integer kernels' epilogue for one output row: the exact sum minus the activations' zero point
/// times the column's weight sum, scaled back to floats (`ascale * wscale`), plus bias, then the
/// activation, stored to the row's first `cols` outputs at `out`. Int8's symmetric activations pass zero
/// for `zero` (the compiler drops the term).
///
/// # Safety
/// `out` must be valid for `cols` writes.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn finish_int_row(
    acc: &[i32; PANEL],
    ascale: f32,
    zero: i32,
    wsum: &[i32; PANEL],
    wscale: &[f32; PANEL],
    bias: &[f32; PANEL],
    act: Activation,
    out: *mut f32,
    cols: usize,
) {
    let mut row = [0f32; PANEL];
    for j in 0..PANEL {
        row[j] = (acc[j] - zero * wsum[j]) as f32 * (ascale * wscale[j]) + bias[j];
    }
    if act == Activation::Gelu {
        math::gelu_slice(&mut row);
    }
    store_row(&row, out, cols);
}

/// Stores a panel row's first `cols` values at `out` (see [`store_prefix`]).
///
/// # Safety
/// `out` must be valid for `cols` writes.
#[inline(always)]
unsafe fn store_row(row: &[f32; PANEL], out: *mut f32, cols: usize) {
    store_prefix(row, out, cols)
}

/// Stores the first `cols` of a row's `W` finished values at `out`. A full row (every panel but a layer's
/// last, and all of them in MiniLM) is a fixed-size copy, which compiles to vector stores. The partial
/// row is written element by element with volatile stores, which the compiler can neither turn into a
/// `memcpy` call nor merge with the full case: given `copy_nonoverlapping(row, out, cols)` there, LLVM
/// folded both branches into one `memcpy(out, row, 4 * cols)` call per row, 4.4 % of the model threads'
/// time under 32 gRPC clients (`perf`).
///
/// # Safety
/// `out` must be valid for `cols <= W` writes.
#[inline(always)]
unsafe fn store_prefix<const W: usize>(row: &[f32; W], out: *mut f32, cols: usize) {
    if cols == W {
        out.cast::<[f32; W]>().write_unaligned(*row);
    } else {
        for (j, &v) in row.iter().enumerate().take(cols) {
            out.add(j).write_volatile(v);
        }
    }
}

/// The AVX2 integer kernels' accumulators (per row: columns 0-7 in `lo`, 8-15 in `hi`) as plain rows.
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn avx2_acc_rows<const MR: usize>(
    lo: &[std::arch::x86_64::__m256i; MR],
    hi: &[std::arch::x86_64::__m256i; MR],
) -> [[i32; PANEL]; MR] {
    use std::arch::x86_64::{__m256i, _mm256_storeu_si256};
    let mut acc = [[0i32; PANEL]; MR];
    for r in 0..MR {
        _mm256_storeu_si256(acc[r].as_mut_ptr() as *mut __m256i, lo[r]);
        _mm256_storeu_si256(acc[r].as_mut_ptr().add(8) as *mut __m256i, hi[r]);
    }
    acc
}

/// The AVX-512 integer kernels' accumulators (one 16-lane vector of i32 per row) viewed as plain rows, in
/// place. A copy (`read_unaligned` into a new array) compiled to a `memcpy` call of up to 768 bytes per
/// register block, 4.5 % of the server's samples under 32 clients (`perf`).
///
/// # Safety
/// `V` must be 64 bytes holding 16 `i32` lanes, lane 0 first in memory, aligned to at least 4 bytes:
/// `__m512i` (what a vector store writes is its lanes in order) or the test model's stand-in for it.
#[inline(always)]
unsafe fn i32x16_rows<V: Copy, const MR: usize>(acc: &[V; MR]) -> &[[i32; PANEL]; MR] {
    const {
        assert!(std::mem::size_of::<V>() == 4 * PANEL);
        assert!(std::mem::align_of::<V>() >= std::mem::align_of::<i32>());
    };
    &*acc.as_ptr().cast::<[[i32; PANEL]; MR]>()
}

/// Below this many multiply-adds a product runs on the calling thread: handing work to the team costs a
/// microsecond or two.
const PARALLEL_MIN_WORK: usize = 1 << 16;

/// Runs `f` over `0..panels`, split into one contiguous range per thread of the current [`Team`] when
/// `work` (multiply-adds) is large enough.
fn split_panels(panels: usize, work: usize, f: impl Fn(std::ops::Range<usize>) + Sync) {
    team::split(panels, work, PARALLEL_MIN_WORK, f);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_rows_are_even_and_few() {
        let split = |mut left: usize, mr: usize| {
            let mut tiles = Vec::new();
            while left > 0 {
                let h = tile_rows(left, mr);
                assert!((1..=mr).contains(&h));
                tiles.push(h);
                left -= h;
            }
            tiles
        };
        assert_eq!(split(13, 6), [5, 4, 4]);
        assert_eq!(split(12, 6), [6, 6]);
        assert_eq!(split(1, 6), [1]);
        assert_eq!(split(96, 6), [6; 16]);
        assert_eq!(split(7, 4), [4, 3]);
    }
    use candle_core::{Device, Tensor};

    use super::self_check::noise;

    /// candle's matmul: the reference every kernel is compared with.
    fn candle_linear(x: &[f32], m: usize, w: &[f32], n: usize, k: usize, b: &[f32]) -> Vec<f32> {
        let x = Tensor::from_slice(x, (m, k), &Device::Cpu).unwrap();
        let w = Tensor::from_slice(w, (n, k), &Device::Cpu).unwrap();
        let b = Tensor::from_slice(b, n, &Device::Cpu).unwrap();
        x.matmul(&w.t().unwrap())
            .unwrap()
            .broadcast_add(&b)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    /// The largest absolute difference between two outputs.
    fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max)
    }

    /// Root mean square of `a - b` and of `a`: an error relative to the output's scale.
    fn rms_error(a: &[f32], b: &[f32]) -> (f32, f32) {
        let n = a.len() as f32;
        let err = (a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f32>() / n).sqrt();
        (err, (a.iter().map(|v| v * v).sum::<f32>() / n).sqrt())
    }

    /// Shapes: the encoder's own (few rows and a batch; 384 / 1152 / 1536 wide) and awkward ones that
    /// exercise partial panels, partial row blocks and odd widths.
    const SHAPES: &[(usize, usize, usize)] = &[
        (1, 384, 384),
        (13, 1152, 384),
        (13, 1536, 384),
        (14, 384, 1536),
        (200, 384, 384),
        (7, 33, 7),
        (5, 17, 130),
        (97, 40, 64),
    ];

    #[test]
    fn f32_kernels_match_candle() {
        for isa in Isa::available() {
            for (i, &(m, n, k)) in SHAPES.iter().enumerate() {
                let (x, w, b) = (
                    noise(m * k, i as u64),
                    noise(n * k, 100 + i as u64),
                    noise(n, 200 + i as u64),
                );
                let expect = candle_linear(&x, m, &w, n, k, &b);
                let lin = Linear::new(&w, n, k, Some(b.clone()), Precision::F32, isa);
                let mut got = vec![0f32; m * n];
                lin.forward(&x, m, Activation::None, &mut got);
                let worst = max_abs_diff(&expect, &got);
                // Sums of k products of magnitude <= 1 in a different order: a few ulps of sqrt(k).
                assert!(
                    worst < 1e-4,
                    "{} {m}x{n}x{k}: max error {worst}",
                    isa.name()
                );
            }
        }
    }

    #[test]
    fn every_output_is_written_and_forward_vec_matches_forward() {
        // `forward_vec` hands the kernels uninitialised memory: a buffer of NaNs shows any output a
        // kernel skips (a partial panel, a row tile), and `forward_vec` must give the same numbers.
        for isa in Isa::available() {
            for precision in Precision::ALL {
                for (i, &(m, n, k)) in SHAPES.iter().enumerate() {
                    let (x, w, b) = (
                        noise(m * k, i as u64),
                        noise(n * k, 100 + i as u64),
                        noise(n, 7),
                    );
                    let lin = Linear::new(&w, n, k, Some(b), precision, isa);
                    let mut got = vec![f32::NAN; m * n];
                    lin.forward(&x, m, Activation::Gelu, &mut got);
                    let label = format!("{} {} {m}x{n}x{k}", isa.name(), precision.name());
                    assert!(
                        got.iter().all(|v| v.is_finite()),
                        "{label}: an output was not written"
                    );
                    let fresh = lin.forward_vec(&x, m, Activation::Gelu);
                    assert_eq!(fresh, got, "{label}");
                }
            }
        }
    }

    #[test]
    fn int8_kernels_match_candle_on_dequantised_weights() {
        for isa in Isa::available() {
            for (i, &(m, n, k)) in SHAPES.iter().enumerate() {
                let (x, w, b) = (
                    noise(m * k, i as u64),
                    noise(n * k, 100 + i as u64),
                    noise(n, 200 + i as u64),
                );
                let lin = Linear::new(&w, n, k, Some(b.clone()), Precision::Int8, isa);
                let PackedWeights::Int8(packed) = &lin.weights else {
                    unreachable!()
                };
                // Against the dequantised weights only the activation rounding remains: 1/4094 of each
                // row's largest value per element, summed over k terms of random sign.
                let expect = candle_linear(&x, m, &packed.dequantised(), n, k, &b);
                let mut got = vec![0f32; m * n];
                lin.forward(&x, m, Activation::None, &mut got);
                let worst = max_abs_diff(&expect, &got);
                let bound = 3.0 * (k as f32).sqrt() / 4094.0 + 1e-5;
                assert!(
                    worst < bound,
                    "{} {m}x{n}x{k}: {worst} >= {bound}",
                    isa.name()
                );
                // And against the exact F32 weights, relative to the output scale.
                let exact = candle_linear(&x, m, &w, n, k, &b);
                let (err, rms) = rms_error(&exact, &got);
                assert!(
                    err < 0.02 * rms,
                    "{} {m}x{n}x{k}: rms error {err} vs rms {rms}",
                    isa.name()
                );
            }
        }
    }

    #[test]
    fn int8_fast_kernels_match_candle_on_dequantised_weights() {
        for isa in Isa::available() {
            for (i, &(m, n, k)) in SHAPES.iter().enumerate() {
                let (x, w, b) = (
                    noise(m * k, i as u64),
                    noise(n * k, 100 + i as u64),
                    noise(n, 200 + i as u64),
                );
                for smoothed in [false, true] {
                    let smooth: Vec<f32> = if smoothed {
                        (0..k).map(|c| 0.5 + (c % 7) as f32 * 0.25).collect()
                    } else {
                        vec![1.0; k]
                    };
                    let lin = Linear::int8_fast(&w, n, k, Some(b.clone()), &smooth, isa);
                    let PackedWeights::A8(packed) = &lin.weights else {
                        unreachable!()
                    };
                    let mut got = vec![0f32; m * n];
                    lin.forward(&x, m, Activation::None, &mut got);
                    if !smoothed {
                        // Against the dequantised weights only the activation rounding remains: half a
                        // step of (row range / 255) per element, summed over k terms of random sign.
                        let expect = candle_linear(&x, m, &packed.dequantised(), n, k, &b);
                        let worst = max_abs_diff(&expect, &got);
                        let bound = 3.0 * (k as f32).sqrt() / 255.0 + 1e-4;
                        assert!(
                            worst < bound,
                            "{} {m}x{n}x{k}: {worst} >= {bound}",
                            isa.name()
                        );
                    }
                    // Against the exact F32 weights, relative to the output scale.
                    let exact = candle_linear(&x, m, &w, n, k, &b);
                    let (err, rms) = rms_error(&exact, &got);
                    assert!(
                        err < 0.04 * rms,
                        "{} {m}x{n}x{k} smoothed={smoothed}: rms error {err} vs rms {rms}",
                        isa.name()
                    );
                }
            }
        }
    }

    #[test]
    fn isas_agree_exactly_on_int8_fast() {
        let (m, n, k) = (11, 40, 101);
        let (x, w, b) = (noise(m * k, 4), noise(n * k, 5), noise(n, 6));
        let smooth: Vec<f32> = (0..k).map(|c| 0.5 + (c % 5) as f32 * 0.3).collect();
        let outs: Vec<Vec<f32>> = Isa::available()
            .into_iter()
            .map(|isa| {
                let lin = Linear::int8_fast(&w, n, k, Some(b.clone()), &smooth, isa);
                let mut out = vec![0f32; m * n];
                lin.forward(&x, m, Activation::Gelu, &mut out);
                out
            })
            .collect();
        for o in &outs[1..] {
            assert_eq!(
                &outs[0], o,
                "the integer sums are exact, so every ISA gives the same floats"
            );
        }
    }

    #[test]
    fn isas_agree_exactly_on_int8_and_gelu_epilogue() {
        let (m, n, k) = (9, 48, 100);
        let (x, w, b) = (noise(m * k, 1), noise(n * k, 2), noise(n, 3));
        let outs: Vec<Vec<f32>> = Isa::available()
            .into_iter()
            .map(|isa| {
                let lin = Linear::new(&w, n, k, Some(b.clone()), Precision::Int8, isa);
                let mut out = vec![0f32; m * n];
                lin.forward(&x, m, Activation::Gelu, &mut out);
                out
            })
            .collect();
        for o in &outs[1..] {
            for (a, b) in outs[0].iter().zip(o) {
                assert!((a - b).abs() < 1e-6, "{a} vs {b}");
            }
        }
        // GELU really ran: no output below GELU's minimum (about -0.17).
        assert!(outs[0].iter().all(|&v| v > -0.1701));
    }

    #[test]
    fn parallel_split_matches_single_thread() {
        let (m, n, k) = (64, 384, 384);
        let (x, w, b) = (noise(m * k, 7), noise(n * k, 8), noise(n, 9));
        for precision in Precision::ALL {
            let lin = Linear::new(&w, n, k, Some(b.clone()), precision, Isa::detect());
            let mut one = vec![0f32; m * n];
            lin.forward(&x, m, Activation::None, &mut one);
            let team = Team::new(3, "test-linear").unwrap();
            let mut three = vec![0f32; m * n];
            team.install(|| lin.forward(&x, m, Activation::None, &mut three));
            assert_eq!(one, three, "{precision:?}");
        }
    }
}
