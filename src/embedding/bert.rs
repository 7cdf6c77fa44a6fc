//! Our BERT encoder forward pass on candle tensors.
//!
//! On CPU the layers run our kernels (`semroute_kernels`) through candle custom ops: linear layers against
//! weights packed once at load (F32, or int8 for the fast path) with bias and GELU fused into the product,
//! attention straight from the fused QKV projection, and residual + layer norm in one pass. On CUDA, or on
//! CPU with `SEMROUTE_KERNELS=candle` (the baseline our benchmarks compare with), candle's own ops run, with
//! Q/K/V fused into one matmul and GELU as a vectorisable custom op instead of candle's scalar f64 `erf`.
//! Weight names follow Hugging Face BERT checkpoints (with or without a `bert.` prefix).

use std::ops::Range;

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Module, Result, Shape, Tensor, D};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder};
use candle_transformers::models::bert::Config;

use super::ops::{AddNormOp, AttentionOp, LinearOp};
use semroute_kernels::{self as kernels, Activation, Isa, Precision};

/// GELU, exact form `x/2 * (1 + erf(x / sqrt 2))`, as a candle custom op.
struct Gelu;

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "semroute-gelu"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("semroute-gelu: only f32 is supported");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("semroute-gelu: input must be contiguous");
        };
        let out: Vec<f32> = data[start..end]
            .iter()
            .map(|&x| kernels::math::gelu(x))
            .collect();
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

/// GELU that uses the fast op on CPU and candle's own `gelu_erf` elsewhere (CUDA).
fn gelu_tensor(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        x.contiguous()?.apply_op1_no_bwd(&Gelu)
    } else {
        x.gelu_erf()
    }
}

/// One encoder layer on candle's own ops (CUDA, and CPU when asked for as the baseline).
struct CandleLayer {
    qkv: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    up: Linear,
    down: Linear,
    out_norm: LayerNorm,
}

/// Scale and shift of a layer norm, as plain slices for our fused residual + norm op.
struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
    eps: f32,
}

/// One encoder layer on our CPU kernels, weights packed at load.
struct KernelLayer {
    qkv: kernels::Linear,
    attn_out: kernels::Linear,
    attn_norm: Norm,
    up: kernels::Linear,
    down: kernels::Linear,
    out_norm: Norm,
}

/// Which code runs the encoder layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// candle's kernels, F32 (always on CUDA; on CPU the baseline we measure ours against).
    Candle,
    /// Our kernels (CPU only) at a precision.
    Kernels(Isa, Precision),
}

impl Backend {
    /// The backend for `device` at `precision`: our kernels on CPU unless `SEMROUTE_KERNELS=candle`.
    pub fn choose(device: &Device, precision: Precision) -> Self {
        let forced_candle = std::env::var("SEMROUTE_KERNELS").is_ok_and(|v| v == "candle");
        if device.is_cpu() && !forced_candle {
            Backend::Kernels(Isa::detect(), precision)
        } else {
            Backend::Candle
        }
    }

    /// Short description for logs and benchmark labels.
    pub fn describe(&self) -> String {
        match self {
            Backend::Candle => "candle-f32".into(),
            Backend::Kernels(isa, precision) => format!("{}-{}", isa.name(), precision.name()),
        }
    }
}

enum Layers {
    Candle(Vec<CandleLayer>),
    Kernels(Vec<KernelLayer>, Isa),
}

/// A BERT encoder.
pub struct Bert {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    norm: LayerNorm,
    layers: Layers,
    heads: usize,
    head_dim: usize,
    backend: Backend,
}

fn linear(vb: &VarBuilder, inp: usize, out: usize) -> Result<Linear> {
    Ok(Linear::new(
        vb.get((out, inp), "weight")?,
        Some(vb.get(out, "bias")?),
    ))
}

fn layer_norm(vb: &VarBuilder, size: usize, eps: f64) -> Result<LayerNorm> {
    Ok(LayerNorm::new(
        vb.get(size, "weight")?,
        vb.get(size, "bias")?,
        eps,
    ))
}

/// A linear layer's weights as plain vectors: `(w (n x k), n, k, bias)`.
type PlainWeights = (Vec<f32>, usize, usize, Option<Vec<f32>>);

/// A candle linear layer's weights as plain vectors.
fn weights_of(l: &Linear) -> Result<PlainWeights> {
    let (n, k) = l.weight().dims2()?;
    let w = l.weight().flatten_all()?.to_vec1::<f32>()?;
    let b = l.bias().map(|b| b.to_vec1::<f32>()).transpose()?;
    Ok((w, n, k, b))
}

fn packed(l: &Linear, precision: Precision, isa: Isa) -> Result<kernels::Linear> {
    let (w, n, k, b) = weights_of(l)?;
    Ok(kernels::Linear::new(&w, n, k, b, precision, isa))
}

/// Packs `l` for the int8-fast path with SmoothQuant factors `c_i = sqrt(max|x_i| / max_j |w_ji|)` from
/// the input maxima seen in calibration: each input channel's range is split evenly between the
/// activations (divided by `c_i`) and the weights (multiplied by it), so a few outlier channels no longer
/// set every row's activation scale.
fn packed_fast(l: &Linear, input_max: &[f32], isa: Isa) -> Result<kernels::Linear> {
    let (w, n, k, b) = weights_of(l)?;
    if input_max.len() != k {
        candle_core::bail!(
            "calibration saw {} inputs for a {k}-wide layer",
            input_max.len()
        );
    }
    let mut w_max = vec![0f32; k];
    for row in w.chunks_exact(k) {
        for (m, v) in w_max.iter_mut().zip(row) {
            *m = m.max(v.abs());
        }
    }
    // The floor keeps dead channels (never active, or all-zero weights) at a finite, harmless factor.
    let smooth: Vec<f32> = input_max
        .iter()
        .zip(&w_max)
        .map(|(&a, &wm)| (a.max(1e-5) / wm.max(1e-5)).sqrt())
        .collect();
    Ok(kernels::Linear::int8_fast(&w, n, k, b, &smooth, isa))
}

/// Our kernel layers for candle's `layers`, each linear layer packed by `pack(linear, i)`, where `i`
/// numbers the layer inputs in forward order ([`INPUTS_PER_LAYER`] per layer).
fn kernel_layers_of(
    layers: &[CandleLayer],
    eps: f64,
    mut pack: impl FnMut(&Linear, usize) -> Result<kernels::Linear>,
) -> Result<Vec<KernelLayer>> {
    layers
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let at = i * INPUTS_PER_LAYER;
            Ok(KernelLayer {
                qkv: pack(&l.qkv, at)?,
                attn_out: pack(&l.attn_out, at + 1)?,
                attn_norm: norm(&l.attn_norm, eps)?,
                up: pack(&l.up, at + 2)?,
                down: pack(&l.down, at + 3)?,
                out_norm: norm(&l.out_norm, eps)?,
            })
        })
        .collect()
}

/// The largest magnitude each observed input takes in each channel, input by input.
#[derive(Default)]
struct ChannelMaxima {
    maxima: Vec<Vec<f32>>,
    failed: Option<candle_core::Error>,
}

impl ChannelMaxima {
    /// Folds input `i` (any shape; channels on the last axis) in.
    fn observe(&mut self, i: usize, t: &Tensor) {
        let mut fold = || -> Result<()> {
            let k = t.dim(D::Minus1)?;
            let v = t.flatten_all()?.to_vec1::<f32>()?;
            if self.maxima.len() <= i {
                self.maxima.resize(i + 1, Vec::new());
            }
            let m = &mut self.maxima[i];
            m.resize(k, 0.0);
            for row in v.chunks_exact(k) {
                for (a, x) in m.iter_mut().zip(row) {
                    *a = a.max(x.abs());
                }
            }
            Ok(())
        };
        if let Err(e) = fold() {
            self.failed.get_or_insert(e);
        }
    }

    /// The maxima of inputs `0..inputs`, or the first error met while observing.
    fn finish(self, inputs: usize) -> Result<Vec<Vec<f32>>> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if self.maxima.len() != inputs {
            candle_core::bail!(
                "calibration saw {} of {inputs} layer inputs",
                self.maxima.len()
            );
        }
        Ok(self.maxima)
    }
}

/// Token inputs the int8-fast path calibrates on at load: `(ids, type_ids, mask)`, one sentence each.
pub type Calibration = Vec<(Tensor, Tensor, Tensor)>;

/// Linear-layer inputs per encoder layer, in the order the forward pass meets them.
const INPUTS_PER_LAYER: usize = 4;

fn norm(l: &LayerNorm, eps: f64) -> Result<Norm> {
    Ok(Norm {
        gamma: l.weight().to_vec1()?,
        beta: l
            .bias()
            .map(|b| b.to_vec1())
            .transpose()?
            .unwrap_or_default(),
        eps: eps as f32,
    })
}

/// A padded batch's real tokens back to back (see [`Bert::ragged`]).
struct Ragged {
    /// `rows x hidden`.
    x: Tensor,
    /// Each row's index in the padded `batch x seq` layout.
    rows: Vec<usize>,
    /// Each sequence's rows.
    sequences: Vec<Range<usize>>,
    batch: usize,
    seq: usize,
}

impl Ragged {
    /// `y` (`rows x width`) back in the padded `(batch, seq, width)` layout, zeros at the padding.
    fn padded(&self, y: &Tensor) -> Result<Tensor> {
        let (rows, width) = y.dims2()?;
        let (batch, seq) = (self.batch, self.seq);
        if rows == batch * seq {
            // No padding: the rows are already in order.
            return y.reshape((batch, seq, width));
        }
        let y = y.flatten_all()?.to_vec1::<f32>()?;
        let mut out = vec![0f32; batch * seq * width];
        for (src, &dst) in y.chunks_exact(width).zip(&self.rows) {
            out[dst * width..(dst + 1) * width].copy_from_slice(src);
        }
        Tensor::from_vec(out, (batch, seq, width), &Device::Cpu)
    }
}

impl Bert {
    /// Loads the weights named like a Hugging Face BERT checkpoint, for `backend`. The int8-fast precision
    /// needs `calibration` (its smoothing is measured on it with the F32 kernels); the others ignore it.
    pub fn load(
        vb: VarBuilder,
        c: &Config,
        backend: Backend,
        calibration: Option<&Calibration>,
    ) -> Result<Self> {
        let vb = if vb.contains_tensor("bert.embeddings.word_embeddings.weight") {
            vb.pp("bert")
        } else {
            vb
        };
        let h = c.hidden_size;
        let e = vb.pp("embeddings");
        let emb = |name: &str, n: usize| -> Result<Embedding> {
            Ok(Embedding::new(e.pp(name).get((n, h), "weight")?, h))
        };
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let l = vb.pp(format!("encoder.layer.{i}"));
            let a = l.pp("attention");
            let s = a.pp("self");
            // Fuse Q, K and V into one (3h x h) matmul: one pass over the activations instead of three.
            let w = Tensor::cat(
                &[
                    s.pp("query").get((h, h), "weight")?,
                    s.pp("key").get((h, h), "weight")?,
                    s.pp("value").get((h, h), "weight")?,
                ],
                0,
            )?;
            let b = Tensor::cat(
                &[
                    s.pp("query").get(h, "bias")?,
                    s.pp("key").get(h, "bias")?,
                    s.pp("value").get(h, "bias")?,
                ],
                0,
            )?;
            layers.push(CandleLayer {
                qkv: Linear::new(w, Some(b)),
                attn_out: linear(&a.pp("output.dense"), h, h)?,
                attn_norm: layer_norm(&a.pp("output.LayerNorm"), h, c.layer_norm_eps)?,
                up: linear(&l.pp("intermediate.dense"), h, c.intermediate_size)?,
                down: linear(&l.pp("output.dense"), c.intermediate_size, h)?,
                out_norm: layer_norm(&l.pp("output.LayerNorm"), h, c.layer_norm_eps)?,
            });
        }
        let mut bert = Self {
            word: emb("word_embeddings", c.vocab_size)?,
            position: emb("position_embeddings", c.max_position_embeddings)?,
            token_type: emb("token_type_embeddings", c.type_vocab_size)?,
            norm: layer_norm(&e.pp("LayerNorm"), h, c.layer_norm_eps)?,
            layers: Layers::Candle(Vec::new()),
            heads: c.num_attention_heads,
            head_dim: h / c.num_attention_heads,
            backend,
        };
        let eps = c.layer_norm_eps;
        // Pack once; the candle copies of the weights are dropped on return, so only one copy stays.
        bert.layers = match backend {
            Backend::Candle => Layers::Candle(layers),
            Backend::Kernels(isa, Precision::Int8Fast) => {
                let Some(calibration) = calibration.filter(|c| !c.is_empty()) else {
                    candle_core::bail!("the int8-fast precision needs calibration sentences");
                };
                // Layer by layer: the sentences' hidden states go through layer i on the exact (F32)
                // kernels, the maxima of its inputs set its smoothing, and only that one layer's F32
                // weights are ever packed (all six at once left ~40 MB of freed heap resident).
                let mut states = calibration
                    .iter()
                    .map(|(ids, type_ids, mask)| bert.ragged(ids, type_ids, mask))
                    .collect::<Result<Vec<_>>>()?;
                let mut fast = Vec::with_capacity(layers.len());
                for l in &layers {
                    let one = std::slice::from_ref(l);
                    let exact = kernel_layers_of(one, eps, |l, _| packed(l, Precision::F32, isa))?;
                    let mut maxima = ChannelMaxima::default();
                    for r in &mut states {
                        r.x = bert.kernel_layers(
                            &exact,
                            isa,
                            r.x.clone(),
                            &r.sequences,
                            &mut |i, t| maxima.observe(i, t),
                        )?;
                    }
                    let m = maxima.finish(INPUTS_PER_LAYER)?;
                    fast.extend(kernel_layers_of(one, eps, |l, i| {
                        packed_fast(l, &m[i], isa)
                    })?);
                }
                Layers::Kernels(fast, isa)
            }
            Backend::Kernels(isa, precision) => Layers::Kernels(
                kernel_layers_of(&layers, eps, |l, _| packed(l, precision, isa))?,
                isa,
            ),
        };
        Ok(bert)
    }

    /// Which code runs the layers.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Token vectors `(batch, seq, hidden)` for `ids` and `mask` (both `(batch, seq)` u32; mask 1 = token).
    pub fn forward(&self, ids: &Tensor, type_ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        match &self.layers {
            Layers::Candle(layers) => {
                let (_, s) = ids.dims2()?;
                let positions = Tensor::arange(0u32, s as u32, ids.device())?;
                let x = self.embed(ids, &positions, type_ids)?;
                self.candle_layers(layers, x, mask)
            }
            Layers::Kernels(layers, isa) => {
                let r = self.ragged(ids, type_ids, mask)?;
                let y =
                    self.kernel_layers(layers, *isa, r.x.clone(), &r.sequences, &mut |_, _| {})?;
                r.padded(&y)
            }
        }
    }

    /// The embedding layer: word + position + token type, then layer norm. `positions` is either every
    /// token's own position or one row of positions that broadcasts over the batch.
    fn embed(&self, ids: &Tensor, positions: &Tensor, type_ids: &Tensor) -> Result<Tensor> {
        let x = self
            .word
            .forward(ids)?
            .broadcast_add(&self.position.forward(positions)?)?
            .add(&self.token_type.forward(type_ids)?)?;
        self.norm.forward(&x)
    }

    /// The embedded real tokens of a padded batch (`ids`, `type_ids` and `mask` all `(batch, seq)`), back
    /// to back: what our kernels run on, so no layer spends time on padding.
    fn ragged(&self, ids: &Tensor, type_ids: &Tensor, mask: &Tensor) -> Result<Ragged> {
        let (batch, seq) = ids.dims2()?;
        let host = |t: &Tensor| t.to_dtype(DType::U32)?.flatten_all()?.to_vec1::<u32>();
        let (all_ids, all_types, mask) = (host(ids)?, host(type_ids)?, host(mask)?);
        let mut rows = Vec::with_capacity(batch * seq);
        let mut sequences = Vec::with_capacity(batch);
        for b in 0..batch {
            let start = rows.len();
            rows.extend((b * seq..(b + 1) * seq).filter(|&i| mask[i] != 0));
            sequences.push(start..rows.len());
        }
        let pick = |values: &dyn Fn(usize) -> u32| -> Result<Tensor> {
            let v: Vec<u32> = rows.iter().map(|&i| values(i)).collect();
            Tensor::from_vec(v, rows.len(), ids.device())
        };
        let x = self.embed(
            &pick(&|i| all_ids[i])?,
            &pick(&|i| (i % seq) as u32)?,
            &pick(&|i| all_types[i])?,
        )?;
        Ok(Ragged {
            x,
            rows,
            sequences,
            batch,
            seq,
        })
    }

    /// The encoder layers on our kernels over a ragged batch `x` (`rows x hidden`, the rows of each of
    /// `sequences` attend to each other). `observe(i, input)` sees every linear layer's input, numbered
    /// in order ([`INPUTS_PER_LAYER`] per layer), for calibration.
    fn kernel_layers(
        &self,
        layers: &[KernelLayer],
        isa: Isa,
        mut x: Tensor,
        sequences: &[Range<usize>],
        observe: &mut dyn FnMut(usize, &Tensor),
    ) -> Result<Tensor> {
        let attention = AttentionOp {
            heads: self.heads,
            head_dim: self.head_dim,
            sequences,
            isa,
        };
        let lin = |l: &kernels::Linear, act: Activation, x: &Tensor| {
            x.apply_op1_no_bwd(&LinearOp { linear: l, act })
        };
        let add_norm = |n: &Norm, x: &Tensor, residual: &Tensor| {
            x.apply_op2_no_bwd(
                residual,
                &AddNormOp {
                    gamma: &n.gamma,
                    beta: &n.beta,
                    eps: n.eps,
                    isa,
                },
            )
        };
        x = x.contiguous()?;
        for (i, l) in layers.iter().enumerate() {
            let at = i * INPUTS_PER_LAYER;
            observe(at, &x);
            let qkv = lin(&l.qkv, Activation::None, &x)?;
            let ctx = qkv.apply_op1_no_bwd(&attention)?;
            observe(at + 1, &ctx);
            x = add_norm(&l.attn_norm, &lin(&l.attn_out, Activation::None, &ctx)?, &x)?;
            observe(at + 2, &x);
            let up = lin(&l.up, Activation::Gelu, &x)?;
            observe(at + 3, &up);
            x = add_norm(&l.out_norm, &lin(&l.down, Activation::None, &up)?, &x)?;
        }
        Ok(x)
    }

    fn candle_layers(
        &self,
        layers: &[CandleLayer],
        mut x: Tensor,
        mask: &Tensor,
    ) -> Result<Tensor> {
        let (b, s) = mask.dims2()?;
        // Padding keys get a large negative score so softmax gives them no weight.
        let bias = ((mask.to_dtype(DType::F32)? - 1.0)? * 1e9)?.reshape((b, 1, 1, s))?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let hidden = self.heads * self.head_dim;
        for l in layers {
            let qkv = l.qkv.forward(&x)?;
            let split = |i: usize| -> Result<Tensor> {
                qkv.narrow(D::Minus1, i * hidden, hidden)?
                    .reshape((b, s, self.heads, self.head_dim))?
                    .transpose(1, 2)?
                    .contiguous()
            };
            let (q, k, v) = (split(0)?, split(1)?, split(2)?);
            let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(&bias)?;
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            let ctx = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, s, hidden))?;
            x = l.attn_norm.forward(&(l.attn_out.forward(&ctx)? + &x)?)?;
            let up = gelu_tensor(&l.up.forward(&x)?)?;
            x = l.out_norm.forward(&(l.down.forward(&up)? + &x)?)?;
        }
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_gelu_matches_candle() {
        let xs: Vec<f32> = (-4000..4000).map(|i| i as f32 / 500.0).collect();
        let t = Tensor::new(xs.as_slice(), &candle_core::Device::Cpu).unwrap();
        let ours = gelu_tensor(&t).unwrap().to_vec1::<f32>().unwrap();
        let theirs = t.gelu_erf().unwrap().to_vec1::<f32>().unwrap();
        for ((x, a), b) in xs.iter().zip(&ours).zip(&theirs) {
            assert!((a - b).abs() < 2e-6, "gelu({x}): {a} vs {b}");
        }
    }
}
