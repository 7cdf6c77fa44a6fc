//! Intel AMX (Advanced Matrix Extensions, Sapphire Rapids and later): detection, the operating system's
//! permission, and the tile instructions our int8-fast kernel uses, twice: as inline assembly for the
//! hardware ([`Hw`]) and, in unit tests, as a software model of the same instructions ([`Model`]) that
//! follows Intel's definitions and checks what the hardware would fault on (an unconfigured tile, shapes
//! that do not fit). The kernel ([`crate::gemm_a8`]) is written once, generic over [`Tiles`], so its
//! logic runs in tests on machines without AMX, which is every machine this project builds on.
//!
//! Why inline assembly: Rust's AMX intrinsics are not stable; the five instructions we need are simple to
//! state in assembly (the test `objdump` of a build shows the encodings the assembler chose).
//!
//! What AMX is, in the terms the kernel needs: eight tile registers `tmm0..tmm7`, each up to 16 rows of
//! 64 bytes, shaped by a 64-byte configuration (`ldtilecfg`). `tdpbusd c, a, b` treats `a` as rows of u8
//! quads and `b` as rows of i8 quads (one row per quad of the shared dimension, one i32-sized column per
//! output column) and adds every `a` row's dot products with `b`'s columns to `c`'s i32 lanes: a 16 x 16
//! output over 64 inputs, 16,384 multiply-adds, in one instruction.

/// Tiles held by the CPU.
pub(crate) const TILES: usize = 8;
/// Largest rows of a tile.
pub(crate) const MAX_ROWS: usize = 16;
/// Largest bytes in one row of a tile.
pub(crate) const MAX_COLSB: usize = 64;

/// A tile configuration (`ldtilecfg`'s 64-byte operand): palette 1, each tile's rows and bytes per row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(64))]
pub(crate) struct Config([u8; 64]);

impl Config {
    /// Palette 1 with tile `i` shaped `rows[i] x colsb[i]` (a zero shape leaves the tile unused).
    pub(crate) fn new(rows: [u8; TILES], colsb: [u16; TILES]) -> Self {
        let mut b = [0u8; 64];
        b[0] = 1; // palette 1: eight tiles of at most 16 x 64 bytes
        for i in 0..TILES {
            assert!(rows[i] as usize <= MAX_ROWS && colsb[i] as usize <= MAX_COLSB);
            b[16 + 2 * i..18 + 2 * i].copy_from_slice(&colsb[i].to_le_bytes());
            b[48 + i] = rows[i];
        }
        Self(b)
    }

    #[cfg(test)]
    fn shape(&self, t: u8) -> (usize, usize) {
        let t = t as usize;
        let colsb = u16::from_le_bytes([self.0[16 + 2 * t], self.0[17 + 2 * t]]);
        (self.0[48 + t] as usize, colsb as usize)
    }
}

/// The tile instructions, as the kernel calls them. Tile numbers are const parameters because the
/// instructions encode them.
///
/// # Safety (every method)
/// The tile state must be configured ([`Tiles::configure`]) on this thread with shapes the operation fits;
/// loads and stores must be valid for each configured row at `p + row * stride`.
pub(crate) trait Tiles {
    /// `ldtilecfg`: shapes the tiles and zeroes them.
    unsafe fn configure(cfg: &Config);
    /// `tilerelease`: returns the tile state to its initial (unconfigured) state, so the thread does not
    /// carry 8 KiB of tile data through context switches.
    unsafe fn release();
    /// `tilezero`.
    unsafe fn zero<const T: u8>();
    /// `tileloadd`: each configured row from `p + row * stride`.
    unsafe fn load<const T: u8>(p: *const u8, stride: usize);
    /// `tilestored`: each configured row to `p + row * stride`.
    unsafe fn store<const T: u8>(p: *mut u8, stride: usize);
    /// `tdpbusd`: `C += A (u8) . B (i8)`, quads summed into i32 lanes.
    unsafe fn dpbusd<const C: u8, const A: u8, const B: u8>();
}

/// The hardware: each method is the one instruction.
#[cfg(target_arch = "x86_64")]
pub(crate) struct Hw;

#[cfg(target_arch = "x86_64")]
impl Tiles for Hw {
    #[inline(always)]
    unsafe fn configure(cfg: &Config) {
        std::arch::asm!("ldtilecfg [{p}]", p = in(reg) cfg.0.as_ptr(), options(nostack, readonly));
    }

    #[inline(always)]
    unsafe fn release() {
        std::arch::asm!("tilerelease", options(nostack, nomem));
    }

    #[inline(always)]
    unsafe fn zero<const T: u8>() {
        std::arch::asm!("tilezero tmm{t}", t = const T, options(nostack, nomem));
    }

    #[inline(always)]
    unsafe fn load<const T: u8>(p: *const u8, stride: usize) {
        std::arch::asm!(
            "tileloadd tmm{t}, [{p} + {s}*1]",
            t = const T,
            p = in(reg) p,
            s = in(reg) stride,
            options(nostack, readonly)
        );
    }

    #[inline(always)]
    unsafe fn store<const T: u8>(p: *mut u8, stride: usize) {
        std::arch::asm!(
            "tilestored [{p} + {s}*1], tmm{t}",
            t = const T,
            p = in(reg) p,
            s = in(reg) stride,
            options(nostack)
        );
    }

    #[inline(always)]
    unsafe fn dpbusd<const C: u8, const A: u8, const B: u8>() {
        std::arch::asm!(
            "tdpbusd tmm{c}, tmm{a}, tmm{b}",
            c = const C,
            a = const A,
            b = const B,
            options(nostack, nomem)
        );
    }
}

/// Whether this CPU has AMX-INT8 and the operating system lets this process use the tile state; asked
/// once per process. On Linux (5.16 and later) the tile data is a dynamically enabled state component: a
/// process must request it (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`) before its first tile
/// instruction, or that instruction faults. The permission covers every thread of the process.
pub(crate) fn usable() -> bool {
    static USABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *USABLE.get_or_init(|| {
        let ok = cpu_has_amx_int8() && os_grants_tile_data();
        tracing::debug!(amx_int8 = ok, "AMX detection");
        ok
    })
}

/// CPUID leaf 7: AMX-TILE (EDX bit 24) and AMX-INT8 (EDX bit 25), and the OS saving the tile state
/// (`XCR0` bits 17 and 18, read only when `OSXSAVE` says `xgetbv` exists).
#[cfg(target_arch = "x86_64")]
fn cpu_has_amx_int8() -> bool {
    use std::arch::x86_64::{__cpuid, __cpuid_count};
    // `cpuid` exists on every x86-64 CPU; leaf 7 is only read when leaf 0 says it exists.
    let max_leaf = __cpuid(0).eax;
    let edx7 = if max_leaf >= 7 {
        __cpuid_count(7, 0).edx
    } else {
        0
    };
    let ecx1 = __cpuid(1).ecx;
    let tile = edx7 & (1 << 24) != 0;
    let int8 = edx7 & (1 << 25) != 0;
    let osxsave = ecx1 & (1 << 27) != 0;
    if max_leaf < 7 || !tile || !int8 || !osxsave {
        return false;
    }
    // SAFETY: `OSXSAVE` is set, so `xgetbv` with ECX = 0 is allowed (it reads XCR0).
    let xcr0 = unsafe { xgetbv0() };
    xcr0 & (0b11 << 17) == 0b11 << 17
}

#[cfg(not(target_arch = "x86_64"))]
fn cpu_has_amx_int8() -> bool {
    false
}

/// `XCR0`, via `xgetbv` in assembly (its intrinsic needs the `xsave` target feature on the caller).
///
/// # Safety
/// `CPUID.1:ECX.OSXSAVE` must be set.
#[cfg(target_arch = "x86_64")]
unsafe fn xgetbv0() -> u64 {
    let (lo, hi): (u32, u32);
    std::arch::asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") hi, options(nomem, nostack));
    (hi as u64) << 32 | lo as u64
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn os_grants_tile_data() -> bool {
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: `arch_prctl` with this request only changes which state components the process may use;
    // it reads and writes no memory of ours.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        )
    };
    if rc != 0 {
        tracing::info!(
            "the CPU has AMX but the kernel did not grant the tile state; not using AMX"
        );
    }
    rc == 0
}

/// Other systems: without a known way to request the tile state, AMX stays unused.
#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn os_grants_tile_data() -> bool {
    false
}

/// The software model of the tile instructions (tests only): per-thread tile state, like the hardware's.
#[cfg(test)]
pub(crate) struct Model;

#[cfg(test)]
struct ModelState {
    config: Option<Config>,
    tiles: [[u8; MAX_ROWS * MAX_COLSB]; TILES],
}

#[cfg(test)]
thread_local! {
    static STATE: std::cell::RefCell<ModelState> = const {
        std::cell::RefCell::new(ModelState { config: None, tiles: [[0; MAX_ROWS * MAX_COLSB]; TILES] })
    };
}

#[cfg(test)]
impl Model {
    /// The configured shape of tile `t`; panics (the hardware raises #UD) when the tiles are not
    /// configured or the tile is unused.
    fn shape(s: &ModelState, t: u8) -> (usize, usize) {
        let cfg = s.config.expect("a tile instruction before ldtilecfg");
        let (rows, colsb) = cfg.shape(t);
        assert!(rows > 0 && colsb > 0, "tile {t} is not configured");
        (rows, colsb)
    }

    /// Whether the tile state is configured on this thread (after `release` it is not).
    pub(crate) fn configured() -> bool {
        STATE.with(|s| s.borrow().config.is_some())
    }
}

#[cfg(test)]
impl Tiles for Model {
    unsafe fn configure(cfg: &Config) {
        assert_eq!(cfg.0[0], 1, "palette 1");
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            s.config = Some(*cfg);
            s.tiles = [[0; MAX_ROWS * MAX_COLSB]; TILES];
        });
    }

    unsafe fn release() {
        STATE.with(|s| s.borrow_mut().config = None);
    }

    unsafe fn zero<const T: u8>() {
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            Self::shape(&s, T);
            s.tiles[T as usize] = [0; MAX_ROWS * MAX_COLSB];
        });
    }

    unsafe fn load<const T: u8>(p: *const u8, stride: usize) {
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            let (rows, colsb) = Self::shape(&s, T);
            let tile = &mut s.tiles[T as usize];
            *tile = [0; MAX_ROWS * MAX_COLSB];
            for r in 0..rows {
                let src = std::slice::from_raw_parts(p.add(r * stride), colsb);
                tile[r * MAX_COLSB..r * MAX_COLSB + colsb].copy_from_slice(src);
            }
        });
    }

    unsafe fn store<const T: u8>(p: *mut u8, stride: usize) {
        STATE.with(|s| {
            let s = s.borrow();
            let (rows, colsb) = Self::shape(&s, T);
            let tile = &s.tiles[T as usize];
            for r in 0..rows {
                let dst = std::slice::from_raw_parts_mut(p.add(r * stride), colsb);
                dst.copy_from_slice(&tile[r * MAX_COLSB..r * MAX_COLSB + colsb]);
            }
        });
    }

    /// Intel's definition: for each row `m` of C and each column `n` (an i32 lane), over each quad `k` of
    /// A's row: `C[m][n] += sum over i < 4 of u8(A[m][4k + i]) * i8(B[k][4n + i])`, wrapping like the
    /// hardware. The shapes must agree: `A.rows == C.rows`, `A.colsb == 4 * B.rows`, `B.colsb == C.colsb`.
    unsafe fn dpbusd<const C: u8, const A: u8, const B: u8>() {
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            let (c_rows, c_colsb) = Self::shape(&s, C);
            let (a_rows, a_colsb) = Self::shape(&s, A);
            let (b_rows, b_colsb) = Self::shape(&s, B);
            assert!(
                a_rows == c_rows && a_colsb == 4 * b_rows && b_colsb == c_colsb,
                "tdpbusd shapes: C {c_rows}x{c_colsb}, A {a_rows}x{a_colsb}, B {b_rows}x{b_colsb}"
            );
            let (a, b) = (s.tiles[A as usize], s.tiles[B as usize]);
            let c = &mut s.tiles[C as usize];
            for m in 0..c_rows {
                for n in 0..c_colsb / 4 {
                    let at = m * MAX_COLSB + 4 * n;
                    let mut acc = i32::from_le_bytes(c[at..at + 4].try_into().unwrap());
                    for k in 0..b_rows {
                        for i in 0..4 {
                            let x = a[m * MAX_COLSB + 4 * k + i] as i32;
                            let w = b[k * MAX_COLSB + 4 * n + i] as i8 as i32;
                            acc = acc.wrapping_add(x * w);
                        }
                    }
                    c[at..at + 4].copy_from_slice(&acc.to_le_bytes());
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_bytes_follow_the_layout() {
        let cfg = Config::new([16, 2, 0, 0, 0, 0, 0, 9], [64, 8, 0, 0, 0, 0, 0, 36]);
        assert_eq!(cfg.0[0], 1);
        assert_eq!(cfg.0[1], 0, "start row");
        assert_eq!(&cfg.0[16..20], &[64, 0, 8, 0]);
        assert_eq!(&cfg.0[30..32], &[36, 0]);
        assert_eq!(&cfg.0[48..50], &[16, 2]);
        assert_eq!(cfg.0[55], 9);
        assert_eq!(cfg.shape(7), (9, 36));
    }

    #[test]
    fn model_dpbusd_is_unsigned_by_signed_quads() {
        // A: 2 rows of 2 quads (8 bytes); B: 2 rows (one per quad) of 3 columns (12 bytes); C: 2 x 3 i32.
        let cfg = Config::new([2, 2, 2, 0, 0, 0, 0, 0], [12, 8, 12, 0, 0, 0, 0, 0]);
        let a: [u8; 16] = [255, 1, 2, 3, 4, 5, 6, 7, 0, 0, 0, 200, 1, 1, 1, 1];
        let b: Vec<i8> = (0..24).map(|i| (i as i8 - 12) * 10).collect();
        let mut c = [0i32; 6];
        // SAFETY: configured first; every load and store fits its buffer at the strides given.
        unsafe {
            Model::configure(&cfg);
            Model::load::<1>(a.as_ptr(), 8);
            Model::load::<2>(b.as_ptr().cast(), 12);
            Model::zero::<0>();
            Model::dpbusd::<0, 1, 2>();
            Model::dpbusd::<0, 1, 2>();
            Model::store::<0>(c.as_mut_ptr().cast(), 12);
            Model::release();
        }
        assert!(!Model::configured());
        for m in 0..2 {
            for n in 0..3 {
                let want: i32 = (0..2)
                    .flat_map(|k| (0..4).map(move |i| (k, i)))
                    .map(|(k, i)| a[m * 8 + 4 * k + i] as i32 * b[k * 12 + 4 * n + i] as i32)
                    .sum();
                assert_eq!(c[m * 3 + n], 2 * want, "row {m} column {n}");
            }
        }
        // 255 is unsigned in A (a signed reading would give -1); -120 is signed in B.
        assert_eq!(b[0], -120);
    }

    #[test]
    #[should_panic(expected = "before ldtilecfg")]
    fn model_faults_without_a_configuration() {
        // SAFETY: the model panics before touching memory.
        unsafe { Model::zero::<0>() }
    }

    #[test]
    #[should_panic(expected = "tdpbusd shapes")]
    fn model_faults_on_mismatched_shapes() {
        let cfg = Config::new([4, 4, 16, 0, 0, 0, 0, 0], [64, 64, 60, 0, 0, 0, 0, 0]);
        // SAFETY: the model checks the shapes before any memory access.
        unsafe {
            Model::configure(&cfg);
            Model::dpbusd::<0, 1, 2>();
        }
    }

    #[test]
    fn detection_does_not_fault() {
        // On CPUs without AMX this is false; on those with it, the permission request must not fail the
        // process either way.
        let _ = usable();
    }
}
