//! Multi-head self-attention straight from the fused QKV projection.
//!
//! Input rows are tokens laid out `[q (hidden) | k (hidden) | v (hidden)]`, so one head's query, key and
//! value are contiguous `head_dim` slices at fixed offsets: no transposes or copies into per-head tensors,
//! which at query-sized inputs cost more than the arithmetic. Padding keys (mask 0) are skipped, not
//! weighted by a large negative number.

use super::{Isa, SendPtr};

/// Shape of one attention call.
#[derive(Debug, Clone, Copy)]
pub struct Dims {
    /// Sequences in the batch.
    pub batch: usize,
    /// Tokens per sequence (padded).
    pub seq: usize,
    /// Attention heads.
    pub heads: usize,
    /// Width of one head.
    pub head_dim: usize,
}

/// `out (batch*seq x hidden)` = softmax(q k^T / sqrt(d)) v per head, from `qkv (batch*seq x 3 hidden)` and
/// `mask (batch x seq)`, 1.0 for a token and 0.0 for padding. Sequences run in parallel on the current
/// rayon pool when there is more than one.
pub fn attention(isa: Isa, qkv: &[f32], mask: &[f32], d: Dims, out: &mut [f32]) {
    let hidden = d.heads * d.head_dim;
    assert_eq!(qkv.len(), d.batch * d.seq * 3 * hidden, "qkv size");
    assert_eq!(mask.len(), d.batch * d.seq, "mask size");
    assert_eq!(out.len(), d.batch * d.seq * hidden, "output size");
    let out_ptr = SendPtr(out.as_mut_ptr());
    let one = |i: usize| {
        let qkv = &qkv[i * d.seq * 3 * hidden..(i + 1) * d.seq * 3 * hidden];
        let mask = &mask[i * d.seq..(i + 1) * d.seq];
        // SAFETY: sequence `i` owns rows i*seq..(i+1)*seq of `out`; tasks get disjoint sequences.
        let out = unsafe {
            std::slice::from_raw_parts_mut(out_ptr.get().add(i * d.seq * hidden), d.seq * hidden)
        };
        match isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Isa::Avx2` is only chosen when the CPU has AVX2 and FMA.
            Isa::Avx2 => unsafe { sequence_avx2(qkv, mask, d, out) },
            _ => sequence(qkv, mask, d, out),
        }
    };
    let work = d.batch * d.heads * d.seq * d.seq * d.head_dim * 2;
    super::team::split(d.batch, work, super::PARALLEL_MIN_WORK, |range| {
        range.for_each(one)
    });
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn sequence_avx2(qkv: &[f32], mask: &[f32], d: Dims, out: &mut [f32]) {
    sequence(qkv, mask, d, out)
}

/// Attention for one sequence.
#[inline(always)]
fn sequence(qkv: &[f32], mask: &[f32], d: Dims, out: &mut [f32]) {
    let hidden = d.heads * d.head_dim;
    let stride = 3 * hidden;
    let keys: Vec<usize> = (0..d.seq).filter(|&u| mask[u] > 0.5).collect();
    let scale = 1.0 / (d.head_dim as f32).sqrt();
    let mut p = vec![0f32; keys.len()];
    for h in 0..d.heads {
        let off = h * d.head_dim;
        for t in 0..d.seq {
            let q = &qkv[t * stride + off..t * stride + off + d.head_dim];
            for (pu, &u) in p.iter_mut().zip(&keys) {
                let k = &qkv[u * stride + hidden + off..u * stride + hidden + off + d.head_dim];
                *pu = dot(q, k) * scale;
            }
            super::math::softmax(&mut p);
            let o = &mut out[t * hidden + off..t * hidden + off + d.head_dim];
            o.fill(0.0);
            for (&pu, &u) in p.iter().zip(&keys) {
                let v =
                    &qkv[u * stride + 2 * hidden + off..u * stride + 2 * hidden + off + d.head_dim];
                for (oj, vj) in o.iter_mut().zip(v) {
                    *oj += pu * vj;
                }
            }
        }
    }
}

#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor, D};

    #[test]
    fn matches_candle_attention_with_padding() {
        let d = Dims {
            batch: 3,
            seq: 6,
            heads: 4,
            head_dim: 8,
        };
        let hidden = d.heads * d.head_dim;
        let n = d.batch * d.seq * 3 * hidden;
        let qkv: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        // Lengths 6, 4 and 1.
        let lens = [6usize, 4, 1];
        let mask: Vec<f32> = lens
            .iter()
            .flat_map(|&l| (0..d.seq).map(move |u| if u < l { 1.0 } else { 0.0 }))
            .collect();

        let dev = Device::Cpu;
        let t = Tensor::from_slice(&qkv, (d.batch, d.seq, 3 * hidden), &dev).unwrap();
        let split = |i: usize| {
            t.narrow(D::Minus1, i * hidden, hidden)
                .unwrap()
                .reshape((d.batch, d.seq, d.heads, d.head_dim))
                .unwrap()
                .transpose(1, 2)
                .unwrap()
                .contiguous()
                .unwrap()
        };
        let (q, k, v) = (split(0), split(1), split(2));
        let bias = ((Tensor::from_slice(&mask, (d.batch, 1, 1, d.seq), &dev).unwrap() - 1.0)
            .unwrap()
            * 1e9)
            .unwrap();
        let scores = (q.matmul(&k.t().unwrap()).unwrap() / (d.head_dim as f64).sqrt())
            .unwrap()
            .broadcast_add(&bias)
            .unwrap();
        let probs = candle_nn::ops::softmax_last_dim(&scores).unwrap();
        let expect: Vec<f32> = probs
            .matmul(&v)
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();

        for isa in Isa::available() {
            let mut got = vec![0f32; d.batch * d.seq * hidden];
            attention(isa, &qkv, &mask, d, &mut got);
            for (i, (e, g)) in expect.iter().zip(&got).enumerate() {
                assert!(
                    (e - g).abs() < 1e-5,
                    "{} element {i}: {e} vs {g}",
                    isa.name()
                );
            }
        }
    }
}
