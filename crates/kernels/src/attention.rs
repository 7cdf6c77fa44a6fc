//! Multi-head self-attention straight from the fused QKV projection, over ragged batches.
//!
//! Input rows are tokens laid out `[q (hidden) | k (hidden) | v (hidden)]`, so one head's query, key and
//! value are contiguous `head_dim` slices at fixed offsets: no transposes or copies into per-head tensors,
//! which at query-sized inputs cost more than the arithmetic. A batch is its sequences' real tokens back
//! to back (no padding rows): each sequence is a range of rows whose tokens attend to each other only.

use std::ops::Range;

use super::{Isa, SendPtr};

/// Head layout of one attention call.
#[derive(Debug, Clone, Copy)]
pub struct Heads {
    /// Attention heads.
    pub heads: usize,
    /// Width of one head.
    pub head_dim: usize,
}

/// `out (rows x hidden)` = softmax(q k^T / sqrt(d)) v per head and per sequence, from `qkv (rows x 3
/// hidden)`; `sequences` are consecutive row ranges that together cover `0..rows`. The (sequence, head)
/// pairs are split between the current team's threads: splitting by sequence alone left one query's
/// attention on one thread.
pub fn attention(isa: Isa, qkv: &[f32], sequences: &[Range<usize>], d: Heads, out: &mut [f32]) {
    let hidden = d.heads * d.head_dim;
    let rows = qkv.len() / (3 * hidden);
    assert_eq!(qkv.len(), rows * 3 * hidden, "qkv size");
    assert_eq!(out.len(), rows * hidden, "output size");
    let mut next = 0;
    for s in sequences {
        assert_eq!(s.start, next, "sequences must be consecutive");
        next = s.end;
    }
    assert_eq!(next, rows, "sequences must cover every row");
    let out_ptr = SendPtr(out.as_mut_ptr());
    let one = |unit: usize| {
        let (s, h) = (&sequences[unit / d.heads], unit % d.heads);
        let qkv = &qkv[s.start * 3 * hidden..s.end * 3 * hidden];
        // SAFETY: a sequence owns its rows of `out` and head `h` the columns h*head_dim..(h+1)*head_dim
        // of each; every unit is one (sequence, head) pair, run once.
        let out = unsafe { out_ptr.get().add(s.start * hidden) };
        // SAFETY: as above.
        unsafe { head_on(isa, qkv, s.len(), 0..s.len(), d, h, out) };
    };
    let work: usize = sequences.iter().map(|s| s.len() * s.len()).sum::<usize>() * hidden * 2;
    super::team::split(
        sequences.len() * d.heads,
        work,
        super::PARALLEL_MIN_WORK,
        |range| range.for_each(one),
    );
}

/// `out (rows.len() x hidden)` = the attention output of rows `rows` only (the queries), each against
/// every key of its sequence, from `qkv` as in [`attention`]; on the calling thread. Parts of a forward
/// pass that each own a range of rows use it: they need the keys and values of every row of their
/// sequences, but compute and write only their own.
pub fn attention_rows(
    isa: Isa,
    qkv: &[f32],
    sequences: &[Range<usize>],
    d: Heads,
    rows: Range<usize>,
    out: &mut [f32],
) {
    let hidden = d.heads * d.head_dim;
    assert!(qkv.len() >= rows.end * 3 * hidden, "qkv size");
    assert_eq!(out.len(), rows.len() * hidden, "output size");
    for s in sequences {
        assert!(
            s.end * 3 * hidden <= qkv.len(),
            "sequence past the qkv rows"
        );
        let queries = s.start.max(rows.start)..s.end.min(rows.end);
        if queries.is_empty() {
            continue;
        }
        let qkv = &qkv[s.start * 3 * hidden..s.end * 3 * hidden];
        let out = out[(queries.start - rows.start) * hidden..].as_mut_ptr();
        let local = queries.start - s.start..queries.end - s.start;
        for h in 0..d.heads {
            // SAFETY: `out` holds the rows of `queries` (asserted above), and nothing else writes it.
            unsafe { head_on(isa, qkv, s.len(), local.clone(), d, h, out) };
        }
    }
}

/// Head `h` of the queries `queries` of one sequence of `seq` tokens on the best code for `isa`.
///
/// # Safety
/// As for [`head`].
unsafe fn head_on(
    isa: Isa,
    qkv: &[f32],
    seq: usize,
    queries: Range<usize>,
    d: Heads,
    h: usize,
    out: *mut f32,
) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the x86 tiers are only chosen when the CPU has AVX2 and FMA.
        Isa::Avx2 | Isa::Avx512 | Isa::Amx => head_avx2(qkv, seq, queries, d, h, out),
        _ => head(qkv, seq, queries, d, h, out),
    }
}

/// [`head`] with AVX2 intrinsics for heads a multiple of eight wide (MiniLM's 32, BERT-base's 64); other
/// widths take the portable code compiled for AVX2.
///
/// Scores come eight keys at a time as eight dot products with the query, each kept in its own register
/// across the head's width and reduced together at the end (three rounds of `vhaddps` and one lane swap
/// give the eight sums in one vector), so the keys are read as stored: no transposed copy, and no
/// accumulator in memory. The compiled portable loop spilled its accumulators to the stack, a
/// store-to-load chain per multiply-add that made attention 9-11 % of a query's samples.
///
/// # Safety
/// As for [`head`]; the CPU must have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn head_avx2(
    qkv: &[f32],
    seq: usize,
    queries: Range<usize>,
    d: Heads,
    h: usize,
    out: *mut f32,
) {
    use std::arch::x86_64::*;
    let hd = d.head_dim;
    if !hd.is_multiple_of(8) || seq == 0 {
        return head(qkv, seq, queries, d, h, out);
    }
    let hidden = d.heads * hd;
    let (stride, off) = (3 * hidden, h * hd);
    assert!(qkv.len() >= seq * stride, "qkv rows");
    let width = seq.next_multiple_of(8);
    let mut scores = SCORES.take();
    if scores.len() < width {
        scores.resize(width, 0.0);
    }
    let base = qkv.as_ptr();
    // Keys past the sequence (the last block's padding) read the last real key: valid memory, and their
    // scores are replaced by -inf before the softmax.
    let key = |u: usize| base.add(u.min(seq - 1) * stride + hidden + off);
    let scale = _mm256_set1_ps(1.0 / (hd as f32).sqrt());
    let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for t in queries.clone() {
        let q = base.add(t * stride + off);
        for j in (0..width).step_by(8) {
            let keys: [*const f32; 8] = std::array::from_fn(|u| key(j + u));
            let mut acc = [_mm256_setzero_ps(); 8];
            for c in (0..hd).step_by(8) {
                let qv = _mm256_loadu_ps(q.add(c));
                for u in 0..8 {
                    acc[u] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(keys[u].add(c)), acc[u]);
                }
            }
            // hadd(a, b) = [a0+a1, a2+a3, b0+b1, b2+b3 | the same of lanes 4-7]; two rounds leave each
            // key's sum of lanes 0-3 in the low half and of lanes 4-7 in the high half.
            let h01 = _mm256_hadd_ps(acc[0], acc[1]);
            let h23 = _mm256_hadd_ps(acc[2], acc[3]);
            let h45 = _mm256_hadd_ps(acc[4], acc[5]);
            let h67 = _mm256_hadd_ps(acc[6], acc[7]);
            let h0123 = _mm256_hadd_ps(h01, h23);
            let h4567 = _mm256_hadd_ps(h45, h67);
            let sums = _mm256_add_ps(
                _mm256_permute2f128_ps::<0x20>(h0123, h4567),
                _mm256_permute2f128_ps::<0x31>(h0123, h4567),
            );
            let real = _mm256_cmpgt_epi32(_mm256_set1_epi32((seq - j) as i32), lane);
            let s8 = _mm256_blendv_ps(
                _mm256_set1_ps(f32::NEG_INFINITY),
                _mm256_mul_ps(sums, scale),
                _mm256_castsi256_ps(real),
            );
            _mm256_storeu_ps(scores.as_mut_ptr().add(j), s8);
        }
        // The softmax without its division: the exponentials (the padding's -inf gives zero) and their
        // sum, all in vectors; 1/sum scales the output sums at the end, off the chain from scores to
        // outputs (normalising the weights first put a division and a pass over the scores on it).
        let inv = 1.0 / exp_rows_avx2(&mut scores[..width]);
        let scale_out = _mm256_set1_ps(inv);
        // The output, four vectors (32 columns) at a time: each sum stays in a register over all keys.
        let (p, v, o) = (
            scores.as_ptr(),
            base.add(2 * hidden + off),
            out.add((t - queries.start) * hidden + off),
        );
        let mut c = 0;
        while c + 32 <= hd {
            let mut acc = [_mm256_setzero_ps(); 4];
            for u in 0..seq {
                let (pu, vu) = (_mm256_set1_ps(*p.add(u)), v.add(u * stride + c));
                for (i, a) in acc.iter_mut().enumerate() {
                    *a = _mm256_fmadd_ps(pu, _mm256_loadu_ps(vu.add(8 * i)), *a);
                }
            }
            for (i, a) in acc.iter().enumerate() {
                _mm256_storeu_ps(o.add(c + 8 * i), _mm256_mul_ps(*a, scale_out));
            }
            c += 32;
        }
        while c < hd {
            let mut acc = _mm256_setzero_ps();
            for u in 0..seq {
                let vu = _mm256_loadu_ps(v.add(u * stride + c));
                acc = _mm256_fmadd_ps(_mm256_set1_ps(*p.add(u)), vu, acc);
            }
            _mm256_storeu_ps(o.add(c), _mm256_mul_ps(acc, scale_out));
            c += 8;
        }
    }
    SCORES.set(scores);
}

/// `xs[i] = e^(xs[i] - max xs)` in place over whole vectors, returning their sum: the softmax of `xs` up
/// to the division by that sum. The exponential is [`super::math::exp`]'s, in eight lanes with fused
/// multiply-adds.
///
/// # Safety
/// The CPU must have AVX2 and FMA; `xs.len()` must be a positive multiple of eight.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn exp_rows_avx2(xs: &mut [f32]) -> f32 {
    use std::arch::x86_64::*;
    debug_assert!(!xs.is_empty() && xs.len().is_multiple_of(8));
    let ptr = xs.as_mut_ptr();
    let at = |i: usize| ptr.add(i);
    let mut m = _mm256_loadu_ps(at(0));
    for i in (8..xs.len()).step_by(8) {
        m = _mm256_max_ps(m, _mm256_loadu_ps(at(i)));
    }
    // The maximum in every lane: swap halves, then pairs, then neighbours.
    m = _mm256_max_ps(m, _mm256_permute2f128_ps::<1>(m, m));
    m = _mm256_max_ps(m, _mm256_permute_ps::<0b01_00_11_10>(m));
    m = _mm256_max_ps(m, _mm256_permute_ps::<0b10_11_00_01>(m));
    let mut sum = _mm256_setzero_ps();
    for i in (0..xs.len()).step_by(8) {
        let e = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(at(i)), m));
        _mm256_storeu_ps(at(i), e);
        sum = _mm256_add_ps(sum, e);
    }
    let half = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps::<1>(sum));
    let pairs = _mm_add_ps(half, _mm_movehl_ps(half, half));
    _mm_cvtss_f32(_mm_add_ss(pairs, _mm_movehdup_ps(pairs)))
}

/// [`super::math::exp`] in eight lanes: `x = n ln2 + r`, a degree-6 polynomial for `e^r` (fused
/// multiply-adds), `2^n` built in the exponent bits; inputs below -87 (the padding's -inf) give about
/// 1e-38, which is zero to any sum of weights that includes the maximum's 1.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn exp_avx2(x: std::arch::x86_64::__m256) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    let x = _mm256_min_ps(
        _mm256_max_ps(x, _mm256_set1_ps(-87.0)),
        _mm256_set1_ps(88.0),
    );
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
        x,
        _mm256_set1_ps(std::f32::consts::LOG2_E),
    ));
    use super::math::{EXP_TAYLOR, LN2_HI, LN2_LO};
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
    let mut p = _mm256_set1_ps(EXP_TAYLOR[0]);
    for &c in &EXP_TAYLOR[1..] {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
    }
    let two_n = _mm256_slli_epi32::<23>(_mm256_add_epi32(
        _mm256_cvtps_epi32(n),
        _mm256_set1_epi32(127),
    ));
    _mm256_mul_ps(p, _mm256_castsi256_ps(two_n))
}

thread_local! {
    /// One thread's score row for [`head_avx2`], reused across heads.
    static SCORES: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Attention of head `h` over one sequence of `seq` tokens for its tokens `queries` (each against all
/// `seq` keys); writes that head's columns of the queries' `queries.len() x hidden` output rows starting
/// at `out`.
///
/// The head's keys are first copied transposed (`head_dim x seq`, zero-padded to whole vectors), so each
/// query's scores are `head_dim` vector multiply-adds over contiguous keys rather than one horizontal dot
/// product per key; the softmax and the value sum then run over the same contiguous scores.
///
/// # Safety
/// `out` must be valid for `queries.len() * hidden` floats, `queries` must lie within `0..seq`, and no one
/// else may touch head `h`'s columns of those rows meanwhile.
#[inline(always)]
unsafe fn head(qkv: &[f32], seq: usize, queries: Range<usize>, d: Heads, h: usize, out: *mut f32) {
    let hidden = d.heads * d.head_dim;
    let (stride, off, hd) = (3 * hidden, h * d.head_dim, d.head_dim);
    let width = seq.next_multiple_of(8);
    let mut kt = vec![0f32; hd * width];
    for u in 0..seq {
        let k = &qkv[u * stride + hidden + off..][..hd];
        for (i, &v) in k.iter().enumerate() {
            kt[i * width + u] = v;
        }
    }
    let scale = 1.0 / (hd as f32).sqrt();
    let mut scores = vec![0f32; width];
    let value = |u: usize| &qkv[u * stride + 2 * hidden + off..][..hd];
    for t in queries.clone() {
        let q = &qkv[t * stride + off..][..hd];
        // Eight keys at a time, with four partial sums (by `i % 4`) in registers: sums kept in memory
        // make a store-to-load chain per step, and one chain of `head_dim` dependent multiply-adds waits
        // on the FMA latency at every step.
        for (j, s8) in scores.chunks_exact_mut(8).enumerate() {
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
        let p = &mut scores[..seq];
        super::math::softmax(p);
        let o = std::slice::from_raw_parts_mut(out.add((t - queries.start) * hidden + off), hd);
        match hd {
            // MiniLM's 32 and BERT-base's 64: every output column's sum in a register at once.
            32 => weighted_sum::<4>(p, value, o),
            64 => weighted_sum::<8>(p, value, o),
            _ => {
                o.fill(0.0);
                for (u, &pu) in p.iter().enumerate() {
                    for (oj, &x) in o.iter_mut().zip(value(u)) {
                        *oj = pu.mul_add(x, *oj);
                    }
                }
            }
        }
    }
}

/// `o = sum_u p[u] * value(u)` for a head `8 * C` wide, with all `C` vectors of sums in registers
/// across the keys (independent chains, so the multiply-adds overlap).
#[inline(always)]
fn weighted_sum<'a, const C: usize>(p: &[f32], value: impl Fn(usize) -> &'a [f32], o: &mut [f32]) {
    let mut acc = [[0f32; 8]; C];
    for (u, &pu) in p.iter().enumerate() {
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

    /// candle's attention over a padded batch (`batch x seq`, sequence `i` has `lens[i]` real tokens),
    /// padding keys masked with a large negative bias: `(batch * seq) x hidden`.
    fn candle_padded(qkv: &[f32], lens: &[usize], seq: usize, d: Heads) -> Vec<f32> {
        let (batch, hidden) = (lens.len(), d.heads * d.head_dim);
        let mask: Vec<f32> = lens
            .iter()
            .flat_map(|&l| (0..seq).map(move |u| if u < l { 0.0 } else { -1e9 }))
            .collect();
        let dev = Device::Cpu;
        let t = Tensor::from_slice(qkv, (batch, seq, 3 * hidden), &dev).unwrap();
        let split = |i: usize| {
            t.narrow(D::Minus1, i * hidden, hidden)
                .unwrap()
                .reshape((batch, seq, d.heads, d.head_dim))
                .unwrap()
                .transpose(1, 2)
                .unwrap()
                .contiguous()
                .unwrap()
        };
        let (q, k, v) = (split(0), split(1), split(2));
        let bias = Tensor::from_slice(&mask, (batch, 1, 1, seq), &dev).unwrap();
        let scores = (q.matmul(&k.t().unwrap()).unwrap() / (d.head_dim as f64).sqrt())
            .unwrap()
            .broadcast_add(&bias)
            .unwrap();
        candle_nn::ops::softmax_last_dim(&scores)
            .unwrap()
            .matmul(&v)
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    #[test]
    fn ragged_batch_matches_candle_on_the_padded_batch() {
        // Head widths: the generic path (8, 24) and the register-sum ones (32, 64). Lengths 6, 4, 1 and
        // 11: a single-token sequence, and lengths on both sides of the eight-key vector width.
        for head_dim in [8usize, 24, 32, 64] {
            let d = Heads { heads: 4, head_dim };
            let (lens, seq, hidden) = ([6usize, 4, 1, 11], 11, 4 * head_dim);
            let padded: Vec<f32> = (0..lens.len() * seq * 3 * hidden)
                .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
                .collect();
            let expect = candle_padded(&padded, &lens, seq, d);
            // The same tokens back to back, padding rows dropped.
            let mut ragged = Vec::new();
            let mut sequences = Vec::new();
            for (b, &l) in lens.iter().enumerate() {
                let start = ragged.len() / (3 * hidden);
                ragged.extend_from_slice(&padded[b * seq * 3 * hidden..][..l * 3 * hidden]);
                sequences.push(start..start + l);
            }
            for isa in Isa::available() {
                let rows = ragged.len() / (3 * hidden);
                let mut got = vec![f32::NAN; rows * hidden];
                attention(isa, &ragged, &sequences, d, &mut got);
                for (b, s) in sequences.iter().enumerate() {
                    for (t, row) in s.clone().enumerate() {
                        let e = &expect[(b * seq + t) * hidden..][..hidden];
                        let g = &got[row * hidden..][..hidden];
                        for (j, (e, g)) in e.iter().zip(g).enumerate() {
                            assert!(
                                (e - g).abs() < 1e-5,
                                "{} head_dim {head_dim}, sequence {b} token {t} column {j}: {e} vs {g}",
                                isa.name()
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn any_row_range_equals_the_whole_call() {
        // Ranges inside one sequence, across sequence boundaries, a single row, and everything; head
        // widths for the AVX2 (32) and generic (24) code.
        for head_dim in [24usize, 32] {
            let d = Heads { heads: 3, head_dim };
            let (rows, hidden) = (30, 3 * head_dim);
            let qkv: Vec<f32> = (0..rows * 3 * hidden)
                .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
                .collect();
            let sequences = [0..13, 13..14, 14..30];
            for isa in Isa::available() {
                let mut whole = vec![0f32; rows * hidden];
                attention(isa, &qkv, &sequences, d, &mut whole);
                for range in [0..6, 6..13, 0..30, 10..20, 13..14, 29..30, 5..5] {
                    let mut part = vec![f32::NAN; range.len() * hidden];
                    attention_rows(isa, &qkv, &sequences, d, range.clone(), &mut part);
                    assert_eq!(
                        part,
                        whole[range.start * hidden..range.end * hidden],
                        "{} head_dim {head_dim} rows {range:?}",
                        isa.name()
                    );
                }
            }
        }
    }

    #[test]
    fn team_split_over_heads_equals_one_thread() {
        // One long sequence and a short one: the work is large enough to split.
        let d = Heads {
            heads: 12,
            head_dim: 32,
        };
        let (rows, hidden) = (48, 384);
        let qkv: Vec<f32> = (0..rows * 3 * hidden)
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let sequences = [0..40, 40..48];
        for isa in Isa::available() {
            let mut alone = vec![0f32; rows * hidden];
            attention(isa, &qkv, &sequences, d, &mut alone);
            let team = crate::Team::new(3, "test-attention").unwrap();
            let mut split = vec![f32::NAN; rows * hidden];
            team.install(|| attention(isa, &qkv, &sequences, d, &mut split));
            assert_eq!(alone, split, "{}", isa.name());
        }
    }
}
