//! Our BERT encoder forward pass on candle tensors.
//!
//! Why not candle-transformers' `BertModel`: its GELU is candle's `gelu_erf`, which evaluates `erf` in f64
//! one element at a time through a general-purpose series (15-27 % of a short query's forward pass), and it
//! runs three separate Q/K/V matmuls. Here Q, K and V are one fused matmul, and GELU is a custom op with an
//! f32 `erf` accurate to 1.5e-7 that the compiler can keep in registers. Weight names follow Hugging Face
//! BERT checkpoints (with or without a `bert.` prefix).

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Module, Result, Shape, Tensor, D};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder};
use candle_transformers::models::bert::Config;

/// GELU, exact form `x/2 * (1 + erf(x / sqrt 2))`, as a candle custom op.
struct Gelu;

/// erf for f32 via Abramowitz & Stegun 7.1.26 (max absolute error 1.5e-7, below f32 resolution of the
/// activations that matter here).
#[inline(always)]
fn erf(x: f32) -> f32 {
    let s = x.signum();
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152_1 + t * 1.061_405_4))));
    s * (1.0 - poly * (-a * a).exp())
}

#[inline(always)]
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

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
        let out: Vec<f32> = data[start..end].iter().map(|&x| gelu(x)).collect();
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

struct Layer {
    qkv: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    up: Linear,
    down: Linear,
    out_norm: LayerNorm,
}

/// A BERT encoder.
pub struct Bert {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    head_dim: usize,
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

impl Bert {
    /// Loads the weights named like a Hugging Face BERT checkpoint.
    pub fn load(vb: VarBuilder, c: &Config) -> Result<Self> {
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
            layers.push(Layer {
                qkv: Linear::new(w, Some(b)),
                attn_out: linear(&a.pp("output.dense"), h, h)?,
                attn_norm: layer_norm(&a.pp("output.LayerNorm"), h, c.layer_norm_eps)?,
                up: linear(&l.pp("intermediate.dense"), h, c.intermediate_size)?,
                down: linear(&l.pp("output.dense"), c.intermediate_size, h)?,
                out_norm: layer_norm(&l.pp("output.LayerNorm"), h, c.layer_norm_eps)?,
            });
        }
        Ok(Self {
            word: emb("word_embeddings", c.vocab_size)?,
            position: emb("position_embeddings", c.max_position_embeddings)?,
            token_type: emb("token_type_embeddings", c.type_vocab_size)?,
            norm: layer_norm(&e.pp("LayerNorm"), h, c.layer_norm_eps)?,
            layers,
            heads: c.num_attention_heads,
            head_dim: h / c.num_attention_heads,
        })
    }

    /// Token vectors `(batch, seq, hidden)` for `ids` and `mask` (both `(batch, seq)` u32; mask 1 = token).
    pub fn forward(&self, ids: &Tensor, type_ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, s) = ids.dims2()?;
        let positions = Tensor::arange(0u32, s as u32, ids.device())?;
        let x = self
            .word
            .forward(ids)?
            .broadcast_add(&self.position.forward(&positions)?)?
            .add(&self.token_type.forward(type_ids)?)?;
        let mut x = self.norm.forward(&x)?;
        // Padding keys get a large negative score so softmax gives them no weight.
        let bias = ((mask.to_dtype(DType::F32)? - 1.0)? * 1e9)?.reshape((b, 1, 1, s))?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let hidden = self.heads * self.head_dim;
        for l in &self.layers {
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
