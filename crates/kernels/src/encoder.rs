//! A transformer encoder layer (BERT's post-norm block) on this crate's kernels, and the forward pass
//! that splits a batch's rows between the current team's threads.

use std::ops::Range;

use super::attention::{attention_rows, Heads};
use super::{math, team, Activation, Isa, Linear};

/// Scale and shift of a layer norm, with its epsilon.
#[derive(Debug, Clone)]
pub struct Norm {
    /// Per-column scale.
    pub gamma: Vec<f32>,
    /// Per-column shift.
    pub beta: Vec<f32>,
    /// Added to the variance.
    pub eps: f32,
}

/// One encoder layer: fused QKV projection, attention, output projection, residual + norm, GELU
/// feed-forward, residual + norm.
pub struct Layer {
    /// `hidden -> 3 hidden`: queries, keys and values of every head side by side.
    pub qkv: Linear,
    /// Attention output projection, `hidden -> hidden`.
    pub attn_out: Linear,
    /// Norm after the attention block's residual.
    pub attn_norm: Norm,
    /// Feed-forward up-projection (GELU applied), `hidden -> inner`.
    pub up: Linear,
    /// Feed-forward down-projection, `inner -> hidden`.
    pub down: Linear,
    /// Norm after the feed-forward block's residual.
    pub out_norm: Norm,
}

/// `layers` over the rows `x` (`rows x hidden`, the rows of each of `sequences` attend to each other),
/// with the rows split between the current team's threads ([`team::together`]), each running the whole
/// pass on its share: its rows of every linear layer (all the weights), its queries' attention, its rows'
/// layer norms and activation quantisation. The parts meet once per layer, after the QKV projection,
/// because a query needs the keys and values of its whole sequence. Without a team, one thread does it
/// all. Every row's result is the same whichever thread computes it.
///
/// Why rows: splitting every linear layer by output columns instead hands off ~30 calls per pass, and
/// the serial steps between them (quantisation, layer norm) run on the calling thread while the helpers
/// wait: at one query the helper idled ~11 % of the samples. Split by rows, every step is parallel and
/// the threads meet six times per pass. The price is that every thread reads every weight; see the
/// caller for when that pays.
pub fn layers_by_rows(
    isa: Isa,
    layers: &[Layer],
    heads: Heads,
    mut x: Vec<f32>,
    sequences: &[Range<usize>],
) -> Vec<f32> {
    let h = heads.heads * heads.head_dim;
    assert!(x.len().is_multiple_of(h), "input rows");
    let m = x.len() / h;
    assert_eq!(
        sequences.last().map_or(0, |s| s.end),
        m,
        "sequences cover the rows"
    );
    let inner = layers.first().map_or(0, |l| l.up.out_features());
    // The calling thread's buffers from its previous pass, grown (and zeroed) only past the longest
    // pass so far: zeroing fresh ones cost ~1.5 % of a query's samples.
    let mut bufs = BUFFERS.take();
    bufs.resize_with(6, Vec::new);
    let [qkv0, qkv1, normed, ctx, y, up] = &mut bufs[..] else {
        unreachable!("six buffers")
    };
    let at_least = |v: &mut Vec<f32>, len: usize| {
        if v.len() < len {
            v.resize(len, 0.0);
        }
    };
    for (v, width) in [
        (&mut *qkv0, 3 * h),
        (qkv1, 3 * h),
        (normed, h),
        (ctx, h),
        (y, h),
        (up, inner),
    ] {
        at_least(v, m * width);
    }
    // Two QKV buffers, used by alternate layers: a part may write the next layer's QKV while another
    // still reads this layer's keys and values; by the layer after, the meeting in between has ordered
    // that read before the overwrite.
    let qkv = [
        SharedRows::new(&mut qkv0[..m * 3 * h], 3 * h),
        SharedRows::new(&mut qkv1[..m * 3 * h], 3 * h),
    ];
    let (xs, normed, ctx, y, up) = (
        SharedRows::new(&mut x, h),
        SharedRows::new(&mut normed[..m * h], h),
        SharedRows::new(&mut ctx[..m * h], h),
        SharedRows::new(&mut y[..m * h], h),
        SharedRows::new(&mut up[..m * inner], inner),
    );
    let norm = |n: &Norm, y: &[f32], residual: &[f32], out: &mut [f32]| {
        math::add_layer_norm_rows(isa, y, residual, &n.gamma, &n.beta, n.eps, out)
    };
    team::together(|part| {
        let r = part.share(m);
        let n = r.len();
        for (i, l) in layers.iter().enumerate() {
            let qkv = &qkv[i % 2];
            // SAFETY (every `rows`/`rows_mut`): a part writes only its own rows `r` of each buffer, and
            // reads other parts' rows only of `qkv`, after the meeting that follows their writes and
            // before the next layer's meeting, ahead of which nobody writes this buffer again.
            unsafe {
                l.qkv
                    .forward(xs.rows(&r), n, Activation::None, qkv.rows_mut(&r));
            }
            part.wait();
            unsafe {
                attention_rows(
                    isa,
                    qkv.rows(&(0..m)),
                    sequences,
                    heads,
                    r.clone(),
                    ctx.rows_mut(&r),
                );
                l.attn_out
                    .forward(ctx.rows(&r), n, Activation::None, y.rows_mut(&r));
                norm(&l.attn_norm, y.rows(&r), xs.rows(&r), normed.rows_mut(&r));
                l.up.forward(normed.rows(&r), n, Activation::Gelu, up.rows_mut(&r));
                l.down
                    .forward(up.rows(&r), n, Activation::None, y.rows_mut(&r));
                norm(&l.out_norm, y.rows(&r), normed.rows(&r), xs.rows_mut(&r));
            }
        }
    });
    BUFFERS.set(bufs);
    x
}

thread_local! {
    /// [`layers_by_rows`]'s intermediate buffers, kept by the thread that calls it between passes.
    static BUFFERS: std::cell::Cell<Vec<Vec<f32>>> = const { std::cell::Cell::new(Vec::new()) };
}

/// A buffer of rows `width` wide that the parts of a [`team::together`] call share by raw pointer: each
/// part writes only its own rows, and reads another part's rows only after a meeting that follows the
/// write.
struct SharedRows {
    ptr: *mut f32,
    width: usize,
    rows: usize,
}

// SAFETY: access goes through the unsafe methods, whose callers keep the parts' accesses disjoint or
// ordered by a meeting.
unsafe impl Sync for SharedRows {}

impl SharedRows {
    /// Shares `data` (whole rows of `width`); `data` must not be used otherwise while this lives.
    fn new(data: &mut [f32], width: usize) -> Self {
        Self {
            ptr: data.as_mut_ptr(),
            width,
            rows: data.len() / width.max(1),
        }
    }

    /// Rows `r`, to read.
    ///
    /// # Safety
    /// Nobody may write these rows while the slice lives.
    unsafe fn rows(&self, r: &Range<usize>) -> &[f32] {
        assert!(r.start <= r.end && r.end <= self.rows, "rows out of range");
        std::slice::from_raw_parts(self.ptr.add(r.start * self.width), r.len() * self.width)
    }

    /// Rows `r`, to write.
    ///
    /// # Safety
    /// Nobody else may read or write these rows while the slice lives.
    #[allow(clippy::mut_from_ref)]
    unsafe fn rows_mut(&self, r: &Range<usize>) -> &mut [f32] {
        assert!(r.start <= r.end && r.end <= self.rows, "rows out of range");
        std::slice::from_raw_parts_mut(self.ptr.add(r.start * self.width), r.len() * self.width)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{attention::attention, noise, Precision, Team};

    fn linear(n: usize, k: usize, seed: u64, precision: Precision, isa: Isa) -> Linear {
        let w: Vec<f32> = noise(n * k, seed).iter().map(|v| v * 0.2).collect();
        Linear::new(&w, n, k, Some(noise(n, seed + 1)), precision, isa)
    }

    fn norm(h: usize, seed: u64) -> Norm {
        Norm {
            gamma: noise(h, seed).iter().map(|v| 1.0 + 0.1 * v).collect(),
            beta: noise(h, seed + 1),
            eps: 1e-12,
        }
    }

    /// The layers one op at a time over all rows, as the column-split forward pass runs them.
    fn reference(
        isa: Isa,
        layers: &[Layer],
        d: Heads,
        x: &[f32],
        seqs: &[Range<usize>],
    ) -> Vec<f32> {
        let h = d.heads * d.head_dim;
        let m = x.len() / h;
        let mut x = x.to_vec();
        for l in layers {
            let qkv = l.qkv.forward_vec(&x, m, Activation::None);
            let mut ctx = vec![0f32; m * h];
            attention(isa, &qkv, seqs, d, &mut ctx);
            let y = l.attn_out.forward_vec(&ctx, m, Activation::None);
            let mut normed = vec![0f32; m * h];
            let n = &l.attn_norm;
            math::add_layer_norm_rows(isa, &y, &x, &n.gamma, &n.beta, n.eps, &mut normed);
            let up = l.up.forward_vec(&normed, m, Activation::Gelu);
            let y = l.down.forward_vec(&up, m, Activation::None);
            let n = &l.out_norm;
            math::add_layer_norm_rows(isa, &y, &normed, &n.gamma, &n.beta, n.eps, &mut x);
        }
        x
    }

    /// Split by rows over teams of 1 to 3 threads (shares inside one sequence and across sequences, and
    /// an empty share), every precision: each row's result is exactly the one-op-at-a-time pass's, and
    /// a second call (reusing the buffers of a longer first one) is too.
    #[test]
    fn split_by_rows_equals_the_pass_one_op_at_a_time() {
        let d = Heads {
            heads: 2,
            head_dim: 32,
        };
        let (h, inner) = (64, 128);
        for isa in Isa::available() {
            for precision in Precision::ALL {
                let layers: Vec<Layer> = (0..2u64)
                    .map(|i| Layer {
                        qkv: linear(3 * h, h, 10 * i, precision, isa),
                        attn_out: linear(h, h, 10 * i + 2, precision, isa),
                        attn_norm: norm(h, 10 * i + 4),
                        up: linear(inner, h, 10 * i + 6, precision, isa),
                        down: linear(h, inner, 10 * i + 8, precision, isa),
                        out_norm: norm(h, 10 * i + 9),
                    })
                    .collect();
                // One sequence, several, and two rows (with three threads, one share is empty).
                #[allow(clippy::single_range_in_vec_init)]
                let cases: [&[Range<usize>]; 3] = [&[0..13], &[0..5, 5..6, 6..13], &[0..2]];
                for seqs in cases {
                    let m = seqs.last().unwrap().end;
                    let x = noise(m * h, m as u64);
                    let want = reference(isa, &layers, d, &x, seqs);
                    for threads in 1..=3 {
                        let team = Team::new(threads, "test-by-rows").unwrap();
                        let got = team.install(|| layers_by_rows(isa, &layers, d, x.clone(), seqs));
                        assert_eq!(
                            got,
                            want,
                            "{} {precision:?}, {threads} threads, {seqs:?}",
                            isa.name()
                        );
                    }
                }
            }
        }
    }
}
