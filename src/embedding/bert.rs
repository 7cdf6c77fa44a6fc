//! Our BERT encoder forward pass on candle tensors.
//!
//! On CPU the layers run our kernels (`semroute_kernels`) through candle custom ops: linear layers against
//! weights packed once at load (F32, or int8 for the fast path) with bias and GELU fused into the product,
//! attention straight from the fused QKV projection, and residual + layer norm in one pass; the embedding
//! lookup and every step between the layers run on plain vectors, so a forward pass on our kernels makes no
//! candle tensor at all (each one is an allocation, a shape check and an `Arc`). On CUDA, or on
//! CPU with `SEMROUTE_KERNELS=candle` (the baseline our benchmarks compare with), candle's own ops run, with
//! Q/K/V fused into one matmul and GELU as a vectorisable custom op instead of candle's scalar f64 `erf`.
//! Weight names follow Hugging Face BERT checkpoints (with or without a `bert.` prefix).

use std::ops::Range;

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Module, Result, Shape, Tensor, D};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder};
use candle_transformers::models::bert::Config;

use semroute_kernels::encoder::{Layer as KernelLayer, Norm};
use semroute_kernels::{self as kernels, attention::Heads, Activation, Isa, Precision};

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

/// Fewest rows per thread for a forward pass split by rows ([`Bert::by_rows`]) at `precision`, or `None`
/// where the column split always wins. With fewer rows each thread reads every weight for a few rows,
/// and the column split, which reads each weight once, measured as fast or faster. Measured on Zen 4,
/// both paths alternating call by call in one process (docs/benchmarks.md):
/// - int8-fast: 13 and 22 tokens 3-7 % faster split by rows; 6 tokens mixed, 3 slower.
/// - int8: 6, 13 tokens 16-25 % faster (its column split leaves more serial work on the caller); 5 and
///   3 slower.
/// - bf16: 13 and 22 tokens 3-8 % faster, 10 even, 6 slower (its 21 MB of weights weigh more).
/// - F32: 13 tokens 20 % slower (42 MB of weights from memory, read by each thread).
fn by_rows_min_rows(precision: Precision) -> Option<usize> {
    match precision {
        Precision::Int8Fast => Some(4),
        Precision::Int8 => Some(3),
        Precision::Bf16 => Some(6),
        Precision::F32 => None,
    }
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

/// The embedding layer as candle modules (the candle backend).
struct CandleEmbeddings {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    norm: LayerNorm,
}

/// The embedding layer as plain row-major tables (our kernels): a lookup is a row copy.
struct PlainEmbeddings {
    word: Vec<f32>,
    position: Vec<f32>,
    token_type: Vec<f32>,
    norm: Norm,
}

enum Embeddings {
    Candle(CandleEmbeddings),
    Plain(PlainEmbeddings),
}

/// The last hidden state of a batch's real tokens (no padding rows), sequence after sequence.
#[derive(Debug, Clone)]
pub struct TokenRows {
    /// `rows x hidden`, row-major.
    pub data: Vec<f32>,
    /// Values per row.
    pub hidden: usize,
    /// Each input sequence's rows, in input order, consecutive and covering every row.
    pub sequences: Vec<Range<usize>>,
}

impl TokenRows {
    /// Sequence `i`'s rows as one slice (`len x hidden`).
    pub fn sequence(&self, i: usize) -> &[f32] {
        let r = &self.sequences[i];
        &self.data[r.start * self.hidden..r.end * self.hidden]
    }
}

/// A BERT encoder.
pub struct Bert {
    embeddings: Embeddings,
    layers: Layers,
    heads: usize,
    head_dim: usize,
    hidden: usize,
    max_positions: usize,
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
}

impl ChannelMaxima {
    /// Folds input `i` (rows of `k` channels) in.
    fn observe(&mut self, i: usize, rows: &[f32], k: usize) {
        if self.maxima.len() <= i {
            self.maxima.resize(i + 1, Vec::new());
        }
        let m = &mut self.maxima[i];
        m.resize(k, 0.0);
        for row in rows.chunks_exact(k) {
            for (a, x) in m.iter_mut().zip(row) {
                *a = a.max(x.abs());
            }
        }
    }

    /// The maxima of inputs `0..inputs`.
    fn finish(self, inputs: usize) -> Result<Vec<Vec<f32>>> {
        if self.maxima.len() != inputs {
            candle_core::bail!(
                "calibration saw {} of {inputs} layer inputs",
                self.maxima.len()
            );
        }
        Ok(self.maxima)
    }
}

/// Token ids the int8-fast path calibrates on at load, one sentence each ([CLS] and [SEP] included).
pub type Calibration = Vec<Vec<u32>>;

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
        let candle_embeddings = CandleEmbeddings {
            word: emb("word_embeddings", c.vocab_size)?,
            position: emb("position_embeddings", c.max_position_embeddings)?,
            token_type: emb("token_type_embeddings", c.type_vocab_size)?,
            norm: layer_norm(&e.pp("LayerNorm"), h, c.layer_norm_eps)?,
        };
        let embeddings = match backend {
            Backend::Candle => Embeddings::Candle(candle_embeddings),
            Backend::Kernels(..) => {
                let table = |e: &Embedding| e.embeddings().flatten_all()?.to_vec1::<f32>();
                Embeddings::Plain(PlainEmbeddings {
                    word: table(&candle_embeddings.word)?,
                    position: table(&candle_embeddings.position)?,
                    token_type: table(&candle_embeddings.token_type)?,
                    norm: norm(&candle_embeddings.norm, c.layer_norm_eps)?,
                })
            }
        };
        let mut bert = Self {
            embeddings,
            layers: Layers::Candle(Vec::new()),
            heads: c.num_attention_heads,
            head_dim: h / c.num_attention_heads,
            hidden: h,
            max_positions: c.max_position_embeddings,
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
                    .map(|ids| {
                        let (x, sequences) = bert.embed_plain(isa, &[ids.as_slice()])?;
                        Ok((x, sequences))
                    })
                    .collect::<Result<Vec<_>>>()?;
                let mut fast = Vec::with_capacity(layers.len());
                for l in &layers {
                    let one = std::slice::from_ref(l);
                    let exact = kernel_layers_of(one, eps, |l, _| packed(l, Precision::F32, isa))?;
                    let mut maxima = ChannelMaxima::default();
                    for (x, sequences) in &mut states {
                        *x = bert.kernel_layers(
                            &exact,
                            isa,
                            std::mem::take(x),
                            sequences,
                            &mut |i, rows, k| maxima.observe(i, rows, k),
                        );
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

    /// The last hidden state of every token of `texts` (each a sequence of token ids, [CLS] and [SEP]
    /// included, at most the model's position count long; token type 0).
    pub fn forward(&self, texts: &[&[u32]]) -> Result<TokenRows> {
        if let Some(t) = texts
            .iter()
            .find(|t| t.is_empty() || t.len() > self.max_positions)
        {
            candle_core::bail!(
                "a sequence of {} tokens (the model takes 1 to {})",
                t.len(),
                self.max_positions
            );
        }
        match (&self.layers, &self.embeddings) {
            (Layers::Kernels(layers, isa), Embeddings::Plain(_)) => {
                let (x, sequences) = self.embed_plain(*isa, texts)?;
                let rows = x.len() / self.hidden;
                let data = if self.by_rows(rows) {
                    let heads = Heads {
                        heads: self.heads,
                        head_dim: self.head_dim,
                    };
                    kernels::encoder::layers_by_rows(*isa, layers, heads, x, &sequences)
                } else {
                    self.kernel_layers(layers, *isa, x, &sequences, &mut |_, _, _| {})
                };
                Ok(TokenRows {
                    data,
                    hidden: self.hidden,
                    sequences,
                })
            }
            (Layers::Candle(layers), Embeddings::Candle(e)) => {
                self.candle_forward(e, layers, texts)
            }
            _ => candle_core::bail!("embeddings and layers loaded for different backends"),
        }
    }

    /// Our path's embedding layer: word + position + token type (0) rows, then layer norm, for every token
    /// of `texts` back to back; and each text's rows.
    fn embed_plain(&self, isa: Isa, texts: &[&[u32]]) -> Result<(Vec<f32>, Vec<Range<usize>>)> {
        let Embeddings::Plain(e) = &self.embeddings else {
            candle_core::bail!("the plain embedding tables are not loaded");
        };
        let h = self.hidden;
        let rows: usize = texts.iter().map(|t| t.len()).sum();
        let vocab = e.word.len() / h;
        let mut words = Vec::with_capacity(rows * h);
        let mut rest = Vec::with_capacity(rows * h);
        let mut sequences = Vec::with_capacity(texts.len());
        let type0 = &e.token_type[..h];
        for t in texts {
            let start = sequences.last().map_or(0, |r: &Range<usize>| r.end);
            for (pos, &id) in t.iter().enumerate() {
                let id = id as usize;
                if id >= vocab {
                    candle_core::bail!("token id {id} is outside the vocabulary of {vocab}");
                }
                words.extend_from_slice(&e.word[id * h..(id + 1) * h]);
                let p = &e.position[pos * h..(pos + 1) * h];
                rest.extend(p.iter().zip(type0).map(|(a, b)| a + b));
            }
            sequences.push(start..start + t.len());
        }
        let mut x = vec![0f32; rows * h];
        kernels::math::add_layer_norm_rows(
            isa,
            &words,
            &rest,
            &e.norm.gamma,
            &e.norm.beta,
            e.norm.eps,
            &mut x,
        );
        Ok((x, sequences))
    }

    /// The encoder layers on our kernels over ragged rows `x` (`rows x hidden`, the rows of each of
    /// `sequences` attend to each other). `observe(i, input, width)` sees every linear layer's input,
    /// numbered in order ([`INPUTS_PER_LAYER`] per layer), for calibration.
    fn kernel_layers(
        &self,
        layers: &[KernelLayer],
        isa: Isa,
        mut x: Vec<f32>,
        sequences: &[Range<usize>],
        observe: &mut dyn FnMut(usize, &[f32], usize),
    ) -> Vec<f32> {
        let h = self.hidden;
        let m = x.len() / h;
        let heads = Heads {
            heads: self.heads,
            head_dim: self.head_dim,
        };
        // The same buffers serve every layer, each fully written before it is read: `ctx` (attention),
        // `normed` (the add-norm output, swapped with `x` after each norm), and the linear layers'
        // outputs. Fresh vectors per layer cost the allocator (and a `memset` for zeroed ones) on the
        // calling thread while the team's helper waits (~2 % of a query's samples).
        let (mut ctx, mut normed) = (vec![0f32; m * h], vec![0f32; m * h]);
        // Sized by `into` at first use.
        let (mut qkv, mut up, mut y) = (Vec::new(), Vec::new(), Vec::new());
        let add_norm = |n: &Norm, y: &[f32], x: &mut Vec<f32>, normed: &mut Vec<f32>| {
            kernels::math::add_layer_norm_rows(isa, y, x, &n.gamma, &n.beta, n.eps, normed);
            std::mem::swap(x, normed);
        };
        let into = |l: &kernels::Linear, x: &[f32], act: Activation, out: &mut Vec<f32>| {
            out.resize(m * l.out_features(), 0.0);
            l.forward_uninit(x, m, act, kernels::uninit_mut(out));
        };
        for (i, l) in layers.iter().enumerate() {
            let at = i * INPUTS_PER_LAYER;
            observe(at, &x, h);
            into(&l.qkv, &x, Activation::None, &mut qkv);
            kernels::attention::attention(isa, &qkv, sequences, heads, &mut ctx);
            observe(at + 1, &ctx, h);
            into(&l.attn_out, &ctx, Activation::None, &mut y);
            add_norm(&l.attn_norm, &y, &mut x, &mut normed);
            observe(at + 2, &x, h);
            into(&l.up, &x, Activation::Gelu, &mut up);
            observe(at + 3, &up, l.up.out_features());
            into(&l.down, &up, Activation::None, &mut y);
            add_norm(&l.out_norm, &y, &mut x, &mut normed);
        }
        x
    }

    /// Whether a forward pass of `rows` tokens splits its rows between the current team's threads
    /// ([`kernels::encoder::layers_by_rows`]) rather than each linear layer's columns: when every thread
    /// gets at least [`by_rows_min_rows`] rows of this precision. Every thread then reads every weight,
    /// which costs less than the hand-offs and serial steps saved where the weights come from L3.
    fn by_rows(&self, rows: usize) -> bool {
        let threads = kernels::team::current_threads();
        let Backend::Kernels(_, precision) = self.backend else {
            return false;
        };
        threads > 1 && by_rows_min_rows(precision).is_some_and(|min| rows >= threads * min)
    }

    /// The candle backend: `texts` padded to the longest into one batch, candle's ops, then the real
    /// tokens' rows copied out.
    fn candle_forward(
        &self,
        e: &CandleEmbeddings,
        layers: &[CandleLayer],
        texts: &[&[u32]],
    ) -> Result<TokenRows> {
        let device = e.word.embeddings().device();
        let (batch, seq) = (
            texts.len(),
            texts.iter().map(|t| t.len()).max().unwrap_or(0),
        );
        let mut ids = vec![0u32; batch * seq];
        let mut mask = vec![0u32; batch * seq];
        for (b, t) in texts.iter().enumerate() {
            ids[b * seq..b * seq + t.len()].copy_from_slice(t);
            mask[b * seq..b * seq + t.len()].fill(1);
        }
        let ids = Tensor::from_vec(ids, (batch, seq), device)?;
        let mask = Tensor::from_vec(mask, (batch, seq), device)?;
        let positions = Tensor::arange(0u32, seq as u32, device)?;
        let x = e
            .word
            .forward(&ids)?
            .broadcast_add(&e.position.forward(&positions)?)?
            .add(&e.token_type.forward(&ids.zeros_like()?)?)?;
        let x = e.norm.forward(&x)?;
        let y = self.candle_layers(layers, x, &mask)?;
        let padded = y.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
        let h = self.hidden;
        let mut data = Vec::with_capacity(texts.iter().map(|t| t.len()).sum::<usize>() * h);
        let mut sequences = Vec::with_capacity(batch);
        for (b, t) in texts.iter().enumerate() {
            let start = data.len() / h;
            data.extend_from_slice(&padded[b * seq * h..(b * seq + t.len()) * h]);
            sequences.push(start..start + t.len());
        }
        Ok(TokenRows {
            data,
            hidden: h,
            sequences,
        })
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
