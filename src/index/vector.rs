//! Small vector helpers of the index. The dot product itself is the kernels' ([`semroute_kernels::math::dot`]),
//! shared with attention.

pub use semroute_kernels::math::dot;

/// Scales `v` to unit length in place; returns false (leaving `v` alone) when it is all zeros or not finite.
pub fn normalize(v: &mut [f32]) -> bool {
    let n = dot(v, v).sqrt();
    if !n.is_finite() || n == 0.0 {
        return false;
    }
    v.iter_mut().for_each(|x| *x /= n);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_rejects_zero() {
        let mut z = vec![0.0; 4];
        assert!(!normalize(&mut z));
        let mut v = vec![3.0, 4.0];
        assert!(normalize(&mut v));
        assert!((v[0] - 0.6).abs() < 1e-6);
    }
}
