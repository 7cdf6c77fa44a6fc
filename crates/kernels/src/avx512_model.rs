//! A software model of the AVX-512 intrinsics our linear-layer kernels use, so the kernels' own source
//! runs (as [`super::Isa::Avx512Model`]) in tests on machines without AVX-512, which is every machine this
//! project builds and tests on. Each kernel's AVX-512 block is written once, in a macro, and expanded twice:
//! against `std::arch` in the real `avx512` module and against this model in `avx512_model`.
//!
//! The model follows Intel's definitions lane by lane. What could still differ from the hardware is the
//! model itself, so the tests at the bottom check each operation against the AVX2 instructions whose
//! semantics our AVX2 kernels already rely on (on the two 256-bit halves), including which operand of
//! `vpdpbusd` is the unsigned one.
#![allow(non_camel_case_types)]

/// 16 f32 lanes.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C, align(64))]
pub struct __m512([f32; 16]);

/// 512 bits of integers, viewed as bytes, i16 or i32 lanes by each operation (little-endian, like the
/// hardware's lanes in memory).
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C, align(64))]
pub struct __m512i([u8; 64]);

/// 256 bits of integers.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C, align(32))]
pub struct __m256i([u8; 32]);

impl __m512i {
    fn i32s(self) -> [i32; 16] {
        std::array::from_fn(|i| i32::from_le_bytes(self.0[4 * i..4 * i + 4].try_into().unwrap()))
    }

    fn i16s(self) -> [i16; 32] {
        std::array::from_fn(|i| i16::from_le_bytes([self.0[2 * i], self.0[2 * i + 1]]))
    }

    fn from_i32s(v: [i32; 16]) -> Self {
        let mut b = [0u8; 64];
        for (chunk, x) in b.chunks_exact_mut(4).zip(v) {
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        Self(b)
    }

    fn from_i16s(v: [i16; 32]) -> Self {
        let mut b = [0u8; 64];
        for (chunk, x) in b.chunks_exact_mut(2).zip(v) {
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        Self(b)
    }
}

/// `vxorps`: all lanes 0.0.
pub fn _mm512_setzero_ps() -> __m512 {
    __m512([0.0; 16])
}

/// `vmovups` load.
///
/// # Safety
/// `p` must be valid for reading 16 floats.
pub unsafe fn _mm512_loadu_ps(p: *const f32) -> __m512 {
    __m512(p.cast::<[f32; 16]>().read_unaligned())
}

/// `vmovups` store.
///
/// # Safety
/// `p` must be valid for writing 16 floats.
pub unsafe fn _mm512_storeu_ps(p: *mut f32, a: __m512) {
    p.cast::<[f32; 16]>().write_unaligned(a.0)
}

/// `vbroadcastss`: `a` in every lane.
pub fn _mm512_set1_ps(a: f32) -> __m512 {
    __m512([a; 16])
}

/// `vfmadd`: `a * b + c` per lane with one rounding.
pub fn _mm512_fmadd_ps(a: __m512, b: __m512, c: __m512) -> __m512 {
    __m512(std::array::from_fn(|i| a.0[i].mul_add(b.0[i], c.0[i])))
}

/// `vaddps`.
pub fn _mm512_add_ps(a: __m512, b: __m512) -> __m512 {
    __m512(std::array::from_fn(|i| a.0[i] + b.0[i]))
}

/// `vpxord`: all bits 0.
pub fn _mm512_setzero_si512() -> __m512i {
    __m512i([0; 64])
}

/// `vmovdqu` load of 64 bytes.
///
/// # Safety
/// `p` must be valid for reading 64 bytes.
pub unsafe fn _mm512_loadu_si512(p: *const __m512i) -> __m512i {
    __m512i(p.cast::<[u8; 64]>().read_unaligned())
}

/// `vmovdqu` load of 32 bytes.
///
/// # Safety
/// `p` must be valid for reading 32 bytes.
pub unsafe fn _mm256_loadu_si256(p: *const __m256i) -> __m256i {
    __m256i(p.cast::<[u8; 32]>().read_unaligned())
}

/// `vpbroadcastd`: `a` in every i32 lane.
pub fn _mm512_set1_epi32(a: i32) -> __m512i {
    __m512i::from_i32s([a; 16])
}

/// `vpmovsxbw`: 32 signed bytes sign-extended to 32 i16 lanes.
pub fn _mm512_cvtepi8_epi16(a: __m256i) -> __m512i {
    __m512i::from_i16s(std::array::from_fn(|i| a.0[i] as i8 as i16))
}

/// `vpdpbusd`: per i32 lane, the four products of `a`'s bytes taken as **unsigned** with `b`'s bytes taken
/// as **signed**, summed and added to `src` (wrapping, no saturation).
pub fn _mm512_dpbusd_epi32(src: __m512i, a: __m512i, b: __m512i) -> __m512i {
    let s = src.i32s();
    __m512i::from_i32s(std::array::from_fn(|i| {
        let dot: i32 = (0..4)
            .map(|j| a.0[4 * i + j] as i32 * b.0[4 * i + j] as i8 as i32)
            .sum();
        s[i].wrapping_add(dot)
    }))
}

/// `vpdpwssd`: per i32 lane, the two products of signed i16 pairs of `a` and `b`, summed and added to
/// `src` (wrapping, no saturation).
pub fn _mm512_dpwssd_epi32(src: __m512i, a: __m512i, b: __m512i) -> __m512i {
    let (s, a, b) = (src.i32s(), a.i16s(), b.i16s());
    __m512i::from_i32s(std::array::from_fn(|i| {
        let lo = a[2 * i] as i32 * b[2 * i] as i32;
        let hi = a[2 * i + 1] as i32 * b[2 * i + 1] as i32;
        s[i].wrapping_add(lo).wrapping_add(hi)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpbusd_takes_the_first_operand_unsigned_and_the_second_signed() {
        // 0x80 is 128 unsigned but -128 signed; 0xFF is 255 or -1.
        let a = __m512i([0x80, 0xFF, 2, 0].repeat(16).try_into().unwrap());
        let b = __m512i([2, 0xFF, 0x80, 5].repeat(16).try_into().unwrap());
        let got = _mm512_dpbusd_epi32(_mm512_set1_epi32(10), a, b).i32s();
        // 128 * 2 + 255 * -1 + 2 * -128 + 0 * 5 + 10
        assert_eq!(got, [128 * 2 - 255 - 256 + 10; 16]);
    }

    #[test]
    fn lanes_are_little_endian_in_memory() {
        let v = _mm512_set1_epi32(0x0403_0201);
        assert_eq!(&v.0[..8], &[1, 2, 3, 4, 1, 2, 3, 4]);
        let w = _mm512_cvtepi8_epi16(__m256i(std::array::from_fn(|i| (i as i8 - 3) as u8)));
        assert_eq!(&w.i16s()[..5], &[-3, -2, -1, 0, 1]);
    }

    /// The model against the AVX2 instructions on each 256-bit half.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_model_matches_the_avx2_instructions_it_widens() {
        use std::arch::x86_64 as x86;
        if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
            return;
        }
        let bytes = |seed: u64| -> [u8; 64] {
            let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            std::array::from_fn(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 32) as u8
            })
        };
        for seed in 1..50u64 {
            let (a, src) = (__m512i(bytes(seed)), __m512i(bytes(seed + 1000)));
            // 7-bit signed weights: vpmaddubsw's i16 pair sums cannot saturate, so AVX2 is exact too.
            let b = __m512i(bytes(seed + 2000).map(|x| ((x as i8) >> 1) as u8));
            let f = |s: u64| {
                __m512(
                    bytes(s).map(|x| x as i8 as f32 / 16.0)[..16]
                        .try_into()
                        .unwrap(),
                )
            };
            let (fa, fb, fc) = (f(seed + 3000), f(seed + 4000), f(seed + 5000));
            let dpbusd = _mm512_dpbusd_epi32(src, a, b);
            let dpwssd = _mm512_dpwssd_epi32(src, a, b);
            let fma = _mm512_fmadd_ps(fa, fb, fc);
            for half in 0..2 {
                // SAFETY: AVX2 and FMA are available (checked above); every pointer covers 32 bytes.
                unsafe {
                    let ld = |v: &__m512i| {
                        x86::_mm256_loadu_si256(v.0.as_ptr().add(32 * half) as *const x86::__m256i)
                    };
                    let lds = |v: &__m512| x86::_mm256_loadu_ps(v.0.as_ptr().add(8 * half));
                    let mut want = [0u8; 32];
                    let ones = x86::_mm256_set1_epi16(1);
                    let us = x86::_mm256_add_epi32(
                        ld(&src),
                        x86::_mm256_madd_epi16(x86::_mm256_maddubs_epi16(ld(&a), ld(&b)), ones),
                    );
                    x86::_mm256_storeu_si256(want.as_mut_ptr() as *mut x86::__m256i, us);
                    assert_eq!(want, dpbusd.0[32 * half..32 * half + 32], "vpdpbusd");
                    let ws =
                        x86::_mm256_add_epi32(ld(&src), x86::_mm256_madd_epi16(ld(&a), ld(&b)));
                    x86::_mm256_storeu_si256(want.as_mut_ptr() as *mut x86::__m256i, ws);
                    assert_eq!(want, dpwssd.0[32 * half..32 * half + 32], "vpdpwssd");
                    let ext = x86::_mm256_cvtepi8_epi16(x86::_mm_loadu_si128(
                        a.0.as_ptr().add(16 * half) as *const x86::__m128i,
                    ));
                    x86::_mm256_storeu_si256(want.as_mut_ptr() as *mut x86::__m256i, ext);
                    let model = _mm512_cvtepi8_epi16(__m256i(a.0[..32].try_into().unwrap()));
                    assert_eq!(want, model.0[32 * half..32 * half + 32], "vpmovsxbw");
                    let mut fwant = [0f32; 8];
                    x86::_mm256_storeu_ps(
                        fwant.as_mut_ptr(),
                        x86::_mm256_fmadd_ps(lds(&fa), lds(&fb), lds(&fc)),
                    );
                    assert_eq!(fwant, fma.0[8 * half..8 * half + 8], "vfmadd");
                }
            }
        }
    }
}
