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
/// `mask (batch x seq)`, 1.0 for a token and 0.0 for padding. The (sequence, head) pairs are split between
/// the current team's threads: splitting by sequence alone left one query's attention on one thread.
pub fn attention(isa: Isa, qkv: &[f32], mask: &[f32], d: Dims, out: &mut [f32]) {
    let hidden = d.heads * d.head_dim;
    assert_eq!(qkv.len(), d.batch * d.seq * 3 * hidden, "qkv size");
    assert_eq!(mask.len(), d.batch * d.seq, "mask size");
    assert_eq!(out.len(), d.batch * d.seq * hidden, "output size");
    let out_ptr = SendPtr(out.as_mut_ptr());
    let one = |unit: usize| {
        let (i, h) = (unit / d.heads, unit % d.heads);
        let qkv = &qkv[i * d.seq * 3 * hidden..(i + 1) * d.seq * 3 * hidden];
        let mask = &mask[i * d.seq..(i + 1) * d.seq];
        // SAFETY: sequence `i` owns rows i*seq..(i+1)*seq of `out` and head `h` the columns
        // h*head_dim..(h+1)*head_dim of each; every unit is one (i, h) pair, run once.
        let out = unsafe { out_ptr.get().add(i * d.seq * hidden) };
        match isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Isa::Avx2` is only chosen when the CPU has AVX2 and FMA; `out` as above.
            Isa::Avx2 => unsafe { head_avx2(qkv, mask, d, h, out) },
            // SAFETY: as above.
            _ => unsafe { head(qkv, mask, d, h, out) },
        }
    };
    let work = d.batch * d.heads * d.seq * d.seq * d.head_dim * 2;
    super::team::split(d.batch * d.heads, work, super::PARALLEL_MIN_WORK, |range| {
        range.for_each(one)
    });
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn head_avx2(qkv: &[f32], mask: &[f32], d: Dims, h: usize, out: *mut f32) {
    head(qkv, mask, d, h, out)
}

/// Attention of head `h` over one sequence; writes that head's columns of the sequence's `seq x hidden`
/// output rows starting at `out`. Padding queries get zeros: no real token attends to them and pooling
/// skips them, so computing them would only waste a padded batch's time.
///
/// The head's keys are first copied transposed (`head_dim x keys`, zero-padded to whole vectors), so each
/// query's scores are `head_dim` vector multiply-adds over contiguous keys rather than one horizontal dot
/// product per key (a third of the attention's time at query sizes); the softmax and the value sum then
/// run over the same contiguous scores.
///
/// # Safety
/// `out` must be valid for `seq * hidden` floats, and no one else may touch head `h`'s columns meanwhile.
#[inline(always)]
unsafe fn head(qkv: &[f32], mask: &[f32], d: Dims, h: usize, out: *mut f32) {
    let hidden = d.heads * d.head_dim;
    let (stride, off, hd) = (3 * hidden, h * d.head_dim, d.head_dim);
    let keys: Vec<usize> = (0..d.seq).filter(|&u| mask[u] > 0.5).collect();
    let width = keys.len().next_multiple_of(8);
    let mut kt = vec![0f32; hd * width];
    for (j, &u) in keys.iter().enumerate() {
        let k = &qkv[u * stride + hidden + off..][..hd];
        for (i, &v) in k.iter().enumerate() {
            kt[i * width + j] = v;
        }
    }
    let scale = 1.0 / (hd as f32).sqrt();
    let mut scores = vec![0f32; width];
    for t in 0..d.seq {
        let o = out.add(t * hidden + off);
        std::ptr::write_bytes(o, 0, hd);
        if mask[t] <= 0.5 {
            continue;
        }
        let o = std::slice::from_raw_parts_mut(o, hd);
        let q = &qkv[t * stride + off..][..hd];
        // Eight keys at a time in one local vector: the sums stay in a register across the `head_dim`
        // steps instead of going through memory (a store-to-load chain per step).
        for (j, s8) in scores.chunks_exact_mut(8).enumerate() {
            // Four partial sums (by `i % 4`): one chain of `head_dim` dependent multiply-adds would wait
            // on the FMA latency at every step.
            let mut acc = [[0f32; 8]; 4];
            let keys8 = |i: usize| -> &[f32; 8] {
                kt[i * width + j * 8..][..8].try_into().expect("eight keys")
            };
            for (g, q4) in q.chunks(4).enumerate() {
                for (l, (acc, &qi)) in acc.iter_mut().zip(q4).enumerate() {
                    for (a, &k) in acc.iter_mut().zip(keys8(g * 4 + l)) {
                        *a = qi.mul_add(k, *a);
                    }
                }
            }
            for (l, s) in s8.iter_mut().enumerate() {
                *s = ((acc[0][l] + acc[1][l]) + (acc[2][l] + acc[3][l])) * scale;
            }
        }
        super::math::softmax(&mut scores[..keys.len()]);
        let p = &scores[..keys.len()];
        let value = |u: usize| &qkv[u * stride + 2 * hidden + off..][..hd];
        match hd {
            // MiniLM's 32 and BERT-base's 64: every output column's sum in a register at once.
            32 => weighted_sum::<4>(p, &keys, value, o),
            64 => weighted_sum::<8>(p, &keys, value, o),
            _ => {
                o.fill(0.0);
                for (&pu, &u) in p.iter().zip(&keys) {
                    for (oj, &x) in o.iter_mut().zip(value(u)) {
                        *oj = pu.mul_add(x, *oj);
                    }
                }
            }
        }
    }
}

/// `o = sum_u p[u] * value(keys[u])` for a head `8 * C` wide, with all `C` vectors of sums in registers
/// across the keys (independent chains, so the multiply-adds overlap).
#[inline(always)]
fn weighted_sum<'a, const C: usize>(
    p: &[f32],
    keys: &[usize],
    value: impl Fn(usize) -> &'a [f32],
    o: &mut [f32],
) {
    let mut acc = [[0f32; 8]; C];
    for (&pu, &u) in p.iter().zip(keys) {
        let v: &[f32] = value(u);
        for (c, acc) in acc.iter_mut().enumerate() {
            let v8: &[f32; 8] = v[c * 8..c * 8 + 8].try_into().expect("eight values");
            for (a, &x) in acc.iter_mut().zip(v8) {
                *a = pu.mul_add(x, *a);
            }
        }
    }
    for (o8, acc) in o.chunks_exact_mut(8).zip(&acc) {
        o8.copy_from_slice(acc);
    }
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
                // Padding queries are not computed (zeros); real ones match candle's.
                let e = if mask[i / hidden] > 0.5 { *e } else { 0.0 };
                assert!(
                    (e - g).abs() < 1e-5,
                    "{} element {i}: {e} vs {g}",
                    isa.name()
                );
            }
        }
    }

    #[test]
    fn team_split_over_heads_equals_one_thread() {
        // One long sequence: the work is large enough to split, and only the heads can be split.
        let d = Dims {
            batch: 1,
            seq: 48,
            heads: 12,
            head_dim: 32,
        };
        let hidden = d.heads * d.head_dim;
        let qkv: Vec<f32> = (0..d.seq * 3 * hidden)
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let mask: Vec<f32> = (0..d.seq).map(|u| if u < 40 { 1.0 } else { 0.0 }).collect();
        for isa in Isa::available() {
            let mut alone = vec![0f32; d.seq * hidden];
            attention(isa, &qkv, &mask, d, &mut alone);
            let team = crate::kernels::Team::new(3, "test-attention").unwrap();
            let mut split = vec![f32::NAN; d.seq * hidden];
            team.install(|| attention(isa, &qkv, &mask, d, &mut split));
            assert_eq!(alone, split, "{}", isa.name());
        }
    }
}
