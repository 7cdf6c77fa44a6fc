//! The check an instruction set's linear-layer kernels pass before [`super::Isa::detect`] uses them: every
//! precision, on a few small products with awkward shapes (partial panels and row blocks, padded inputs,
//! more panels than one AMX pass takes), must agree with the portable kernels. It costs well under a millisecond, once per process.

use super::{Activation, Isa, Linear, Precision};

/// Whether `isa`'s kernels give the portable kernels' answers (to rounding) on small random products.
pub(super) fn agrees_with_portable(isa: Isa) -> bool {
    let mut seed = 0x5EED_u64;
    for (m, n, k) in [
        (1, 16, 64),
        (7, 40, 102),
        (13, 33, 384),
        (30, 17, 8),
        (20, 80, 130),
    ] {
        for precision in Precision::ALL {
            seed += 1;
            let w = noise(n * k, seed);
            let x = noise(m * k, seed ^ 0xABCD);
            let bias = noise(n, seed ^ 0x1234);
            let want = Linear::new(&w, n, k, Some(bias.clone()), precision, Isa::Portable)
                .forward_vec(&x, m, Activation::Gelu);
            let got = Linear::new(&w, n, k, Some(bias), precision, isa).forward_vec(
                &x,
                m,
                Activation::Gelu,
            );
            // The integer kernels sum exactly, so only the float kernels' sums (F32's fused
            // multiply-adds, bf16's pairs) can round differently; a wrong lane or operand is off by far
            // more than this.
            let scale = want.iter().fold(1f32, |s, v| s.max(v.abs()));
            let close = want
                .iter()
                .zip(&got)
                .all(|(a, b)| (a - b).abs() <= 1e-4 * scale);
            if !close {
                tracing::warn!(
                    isa = isa.name(),
                    precision = precision.name(),
                    m,
                    n,
                    k,
                    "kernel self-check failed"
                );
                return false;
            }
        }
    }
    true
}

/// Deterministic pseudo-random numbers in [-1, 1) (xorshift): inputs for the self-check, the kernel tests
/// and the kernel benchmarks that reproduce from run to run.
pub fn noise(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_available_instruction_set_passes_the_self_check() {
        for isa in Isa::available() {
            assert!(agrees_with_portable(isa), "{}", isa.name());
        }
    }
}
