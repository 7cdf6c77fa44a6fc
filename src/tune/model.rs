//! A BERT encoder written with differentiable candle ops only, for fine-tuning.
//!
//! The serving forward pass (`embedding::bert`) runs fused custom ops that have no backward pass, and
//! candle-nn's fast `LayerNorm` / `softmax_last_dim` have none either; this one is built from plain ops
//! (matmul, broadcast arithmetic, `gelu_erf`, reductions) so `Tensor::backward` reaches the weights.
//! Only the top `trained` layers hold [`Var`]s; the layers below are constants, run once per text
//! ([`TrainableBert::lower`]) and cached, so an epoch costs the top layers only.

use std::collections::HashMap;

use candle_core::{DType, Device, Result, Tensor, Var, D};
use candle_transformers::models::bert::Config;

/// A linear layer's weight `(out, in)` and bias `(out)`.
struct Linear {
    w: Tensor,
    b: Tensor,
}

impl Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // (batch, seq, in) -> (batch * seq, in) so the product is one plain matmul.
        let (b, s, i) = x.dims3()?;
        let y = x.reshape((b * s, i))?.matmul(&self.w.t()?)?;
        y.broadcast_add(&self.b)?.reshape((b, s, ()))
    }
}

/// Layer-norm scale and shift.
struct Norm {
    gamma: Tensor,
    beta: Tensor,
    eps: f64,
}

impl Norm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let centred = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        centred
            .broadcast_div(&(var + self.eps)?.sqrt()?)?
            .broadcast_mul(&self.gamma)?
            .broadcast_add(&self.beta)
    }
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attn_out: Linear,
    attn_norm: Norm,
    up: Linear,
    down: Linear,
    out_norm: Norm,
}

/// Every weight of a BERT checkpoint, the top layers trainable.
pub struct TrainableBert {
    word: Tensor,
    position: Tensor,
    token_type: Tensor,
    emb_norm: Norm,
    layers: Vec<Layer>,
    trained_from: usize,
    heads: usize,
    /// The trainable weights by checkpoint name (prefix included), for the optimiser and for saving.
    vars: Vec<(String, Var)>,
}

impl TrainableBert {
    /// Builds the model from `weights` (a checkpoint's tensors by name) with the top `trained` layers as
    /// variables. Names may carry a `bert.` prefix, as in Hugging Face BERT checkpoints.
    pub fn new(weights: &HashMap<String, Tensor>, c: &Config, trained: usize) -> Result<Self> {
        let prefix = if weights.contains_key("bert.embeddings.word_embeddings.weight") {
            "bert."
        } else {
            ""
        };
        if trained == 0 || trained > c.num_hidden_layers {
            candle_core::bail!(
                "layers to train must be in 1..={}, got {trained}",
                c.num_hidden_layers
            );
        }
        let trained_from = c.num_hidden_layers - trained;
        let mut vars = Vec::new();
        let mut get = |name: &str, train: bool| -> Result<Tensor> {
            let full = format!("{prefix}{name}");
            let t = weights
                .get(&full)
                .ok_or_else(|| candle_core::Error::Msg(format!("weight {full} is missing")))?
                .to_dtype(DType::F32)?;
            if train {
                let v = Var::from_tensor(&t)?;
                let t = v.as_tensor().clone();
                vars.push((full, v));
                Ok(t)
            } else {
                Ok(t)
            }
        };
        let eps = c.layer_norm_eps;
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let train = i >= trained_from;
            let p = format!("encoder.layer.{i}");
            let mut lin = |name: &str| -> Result<Linear> {
                Ok(Linear {
                    w: get(&format!("{p}.{name}.weight"), train)?,
                    b: get(&format!("{p}.{name}.bias"), train)?,
                })
            };
            let query = lin("attention.self.query")?;
            let key = lin("attention.self.key")?;
            let value = lin("attention.self.value")?;
            let attn_out = lin("attention.output.dense")?;
            let up = lin("intermediate.dense")?;
            let down = lin("output.dense")?;
            let mut norm = |name: &str| -> Result<Norm> {
                Ok(Norm {
                    gamma: get(&format!("{p}.{name}.weight"), train)?,
                    beta: get(&format!("{p}.{name}.bias"), train)?,
                    eps,
                })
            };
            let attn_norm = norm("attention.output.LayerNorm")?;
            let out_norm = norm("output.LayerNorm")?;
            layers.push(Layer {
                query,
                key,
                value,
                attn_out,
                attn_norm,
                up,
                down,
                out_norm,
            });
        }
        let word = get("embeddings.word_embeddings.weight", false)?;
        let position = get("embeddings.position_embeddings.weight", false)?;
        let token_type = get("embeddings.token_type_embeddings.weight", false)?;
        let emb_norm = Norm {
            gamma: get("embeddings.LayerNorm.weight", false)?,
            beta: get("embeddings.LayerNorm.bias", false)?,
            eps,
        };
        Ok(Self {
            word,
            position,
            token_type,
            emb_norm,
            layers,
            trained_from,
            heads: c.num_attention_heads,
            vars,
        })
    }

    /// The trainable weights, by checkpoint name.
    pub fn vars(&self) -> &[(String, Var)] {
        &self.vars
    }

    /// The hidden states `(seq, hidden)` of one text (unpadded `ids`) after the frozen layers.
    pub fn lower(&self, ids: &[u32]) -> Result<Tensor> {
        let dev = &Device::Cpu;
        let s = ids.len();
        let ids_t = Tensor::new(ids, dev)?;
        let x = self
            .word
            .index_select(&ids_t, 0)?
            .add(&self.position.narrow(0, 0, s)?)?
            .broadcast_add(&self.token_type.narrow(0, 0, 1)?)?;
        let mut x = self.emb_norm.forward(&x.unsqueeze(0)?)?;
        let mask = Tensor::ones((1, s), DType::F32, dev)?;
        for l in &self.layers[..self.trained_from] {
            x = self.layer(l, &x, &mask)?;
        }
        x.squeeze(0)
    }

    /// Runs the trainable layers over a padded batch `(batch, seq, hidden)` of [`Self::lower`] outputs
    /// and mean-pools the real tokens into L2-normalised sentence vectors `(batch, hidden)`.
    /// `mask` is `(batch, seq)` F32, 1 for a real token.
    pub fn upper_pooled(&self, x: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        for l in &self.layers[self.trained_from..] {
            x = self.layer(l, &x, mask)?;
        }
        let m = mask.unsqueeze(2)?;
        let pooled = x
            .broadcast_mul(&m)?
            .sum(1)?
            .broadcast_div(&m.sum(1)?.clamp(1e-9, f64::MAX)?)?;
        normalize_rows(&pooled)
    }

    fn layer(&self, l: &Layer, x: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, s, h) = x.dims3()?;
        let d = h / self.heads;
        let heads = |t: Tensor| -> Result<Tensor> {
            t.reshape((b, s, self.heads, d))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = heads(l.query.forward(x)?)?;
        let k = heads(l.key.forward(x)?)?;
        let v = heads(l.value.forward(x)?)?;
        // Padding keys get a large negative score so softmax gives them no weight.
        let bias = ((mask - 1.0)? * 1e9)?.reshape((b, 1, 1, s))?;
        let scores = (q.matmul(&k.t()?)? / (d as f64).sqrt())?.broadcast_add(&bias)?;
        let probs = candle_nn::ops::softmax(&scores, D::Minus1)?;
        let ctx = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b, s, h))?;
        let x = l.attn_norm.forward(&(l.attn_out.forward(&ctx)? + x)?)?;
        let up = l.up.forward(&x)?.gelu_erf()?;
        l.out_norm.forward(&(l.down.forward(&up)? + x)?)
    }
}

/// Rows divided by their L2 norms.
pub fn normalize_rows(x: &Tensor) -> Result<Tensor> {
    x.broadcast_div(
        &x.sqr()?
            .sum_keepdim(D::Minus1)?
            .sqrt()?
            .clamp(1e-12, f64::MAX)?,
    )
}
