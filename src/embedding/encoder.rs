//! The sentence-transformer itself: tokenizer, candle BERT, pooling and normalisation, following the
//! model folder's sentence-transformers metadata (`sentence_bert_config.json`, `modules.json`,
//! `1_Pooling/config.json`) so that vectors match the reference Python implementation.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::Config as BertConfig;

use super::bert::{Backend, Bert, Calibration, TokenRows};
use semroute_kernels::Precision;
use serde::Deserialize;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams, TruncationStrategy};

use super::{DeviceSpec, EmbedError};

/// How token vectors become one sentence vector (from `1_Pooling/config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Mean of the non-padding token vectors.
    Mean,
    /// The [CLS] token's vector.
    Cls,
    /// Element-wise max over the non-padding token vectors.
    Max,
}

#[derive(Deserialize)]
struct PoolingFile {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
}

#[derive(Deserialize)]
struct SentenceBertFile {
    max_seq_length: Option<usize>,
}

#[derive(Deserialize)]
struct ModuleEntry {
    #[serde(rename = "type")]
    kind: String,
}

/// A loaded sentence-transformer. Not thread-safe to share across threads for concurrent forward passes
/// by design: the service runs it on the model thread only (see [`super::Embedder`]).
pub struct SentenceEncoder {
    model: Bert,
    tokenizer: Tokenizer,
    pooling: Pooling,
    normalize: bool,
    max_tokens: usize,
    dim: usize,
    dir: PathBuf,
    identity: String,
}

/// A stable identity for "this model, configured this way": the sha256 of the weights, tokenizer and config
/// files plus the settings that change vectors (pooling, normalisation, truncation). Stored embeddings are
/// keyed by it, so a changed model or setting never serves stale vectors.
fn model_identity(
    dir: &Path,
    pooling: Pooling,
    normalize: bool,
    max_tokens: usize,
    precision: Precision,
) -> Result<String, EmbedError> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for f in ["model.safetensors", "tokenizer.json", "config.json"] {
        let path = dir.join(f);
        let mut file = std::fs::File::open(&path).map_err(|e| EmbedError::Load {
            what: path.display().to_string(),
            reason: e.to_string(),
        })?;
        std::io::copy(&mut file, &mut h).map_err(|e| EmbedError::Load {
            what: path.display().to_string(),
            reason: e.to_string(),
        })?;
    }
    h.update(format!("{pooling:?}/{normalize}/{max_tokens}").as_bytes());
    // Int8 vectors differ slightly from F32 ones; F32 keeps the identity it always had.
    match precision {
        Precision::F32 => {}
        Precision::Int8 => h.update(b"/int8"),
        Precision::Int8Fast => h.update(b"/int8-fast"),
        Precision::Bf16 => h.update(b"/bf16"),
    }
    let digest = h.finalize();
    Ok(digest.iter().take(12).map(|b| format!("{b:02x}")).collect())
}

/// The calibration sentences as token ids, one unpadded sentence each (padding would add rows the model never
/// sees in service).
fn calibration_inputs(tokenizer: &Tokenizer) -> Result<Calibration, EmbedError> {
    super::calibration::SENTENCES
        .iter()
        .map(|text| tokenize(tokenizer, text))
        .collect()
}

/// `text` as the model's token ids: [CLS] and [SEP] added, truncated to the model's length, unpadded. One
/// text on the calling thread (the tokenizer's batch call would hand even one text to a rayon pool).
pub(crate) fn tokenize(tokenizer: &Tokenizer, text: &str) -> Result<Vec<u32>, EmbedError> {
    let e = tokenizer
        .encode(text, true)
        .map_err(|e| EmbedError::Tokenize(e.to_string()))?;
    Ok(e.get_ids().to_vec())
}

pub(crate) fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, EmbedError> {
    let text = std::fs::read_to_string(path).map_err(|e| EmbedError::Load {
        what: path.display().to_string(),
        reason: e.to_string(),
    })?;
    serde_json::from_str(&text).map_err(|e| EmbedError::Load {
        what: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// Tokens kept per text: the model's `max_seq_length` (capped by its position table), lowered to
/// `requested` when given.
pub(crate) fn max_tokens_for(
    dir: &Path,
    bert_config: &BertConfig,
    requested: Option<usize>,
) -> Result<usize, EmbedError> {
    let st_path = dir.join("sentence_bert_config.json");
    let model_max = if st_path.is_file() {
        read_json::<SentenceBertFile>(&st_path)?.max_seq_length
    } else {
        None
    }
    .unwrap_or(bert_config.max_position_embeddings)
    .min(bert_config.max_position_embeddings);
    Ok(requested.map_or(model_max, |m| m.min(model_max)))
}

/// The model's tokenizer set up as sentence-transformers runs it: batches padded to their longest text,
/// texts truncated at `max_tokens`.
pub(crate) fn batch_tokenizer(
    dir: &Path,
    bert_config: &BertConfig,
    max_tokens: usize,
) -> Result<Tokenizer, EmbedError> {
    let mut tokenizer =
        Tokenizer::from_file(dir.join("tokenizer.json")).map_err(|e| EmbedError::Load {
            what: dir.join("tokenizer.json").display().to_string(),
            reason: e.to_string(),
        })?;
    // tokenizer.json ships fixed-length padding (128) and its own truncation; sentence-transformers
    // pads to the longest text in the batch and truncates at max_seq_length, so we must too.
    let pad_token = tokenizer
        .get_padding()
        .map(|p| p.pad_token.clone())
        .unwrap_or_else(|| "[PAD]".to_string());
    let pad_id = tokenizer
        .token_to_id(&pad_token)
        .unwrap_or(bert_config.pad_token_id as u32);
    tokenizer.with_padding(Some(PaddingParams {
        strategy: PaddingStrategy::BatchLongest,
        pad_id,
        pad_token,
        ..Default::default()
    }));
    tokenizer
        .with_truncation(Some(TruncationParams {
            max_length: max_tokens,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
            ..Default::default()
        }))
        .map_err(|e| EmbedError::Load {
            what: "tokenizer truncation".into(),
            reason: e.to_string(),
        })?;
    Ok(tokenizer)
}

impl SentenceEncoder {
    /// Loads the model in `dir` onto `device` at F32 (the reference vectors). `max_tokens` lowers the
    /// model's own max_seq_length.
    pub fn load(
        dir: &Path,
        device: DeviceSpec,
        max_tokens: Option<usize>,
    ) -> Result<Self, EmbedError> {
        Self::load_with_precision(dir, device, max_tokens, Precision::F32)
    }

    /// Loads the model with its linear layers at `precision` (int8 is a CPU fast path; on CUDA the model
    /// runs F32 and a warning is logged).
    pub fn load_with_precision(
        dir: &Path,
        device: DeviceSpec,
        max_tokens: Option<usize>,
        precision: Precision,
    ) -> Result<Self, EmbedError> {
        let opened = device.open()?;
        let backend = Backend::choose(&opened, precision);
        if backend == Backend::Candle && precision != Precision::F32 {
            tracing::warn!(
                ?precision,
                "int8 runs on our CPU kernels only; this device runs F32"
            );
        }
        Self::load_on_device(dir, opened, max_tokens, backend)
    }

    /// Loads the model to run on `backend` (benchmarks compare backends side by side with this).
    pub fn load_on(
        dir: &Path,
        device: DeviceSpec,
        max_tokens: Option<usize>,
        backend: Backend,
    ) -> Result<Self, EmbedError> {
        Self::load_on_device(dir, device.open()?, max_tokens, backend)
    }

    /// Loads the model onto an opened device. `load_with_precision` opens it once: a second `open` built
    /// a second candle CUDA device (cuBLAS handle, cuRAND generator) only to drop one, and `auto` without a
    /// GPU warned twice.
    fn load_on_device(
        dir: &Path,
        device: Device,
        max_tokens: Option<usize>,
        backend: Backend,
    ) -> Result<Self, EmbedError> {
        if matches!(backend, Backend::Kernels(..)) && !device.is_cpu() {
            return Err(EmbedError::Load {
                what: "backend".into(),
                reason: "our kernels run on CPU only".into(),
            });
        }
        let precision = match backend {
            Backend::Kernels(_, p) => p,
            Backend::Candle => Precision::F32,
        };
        let bert_config: BertConfig = read_json(&dir.join("config.json"))?;

        let pooling_path = dir.join("1_Pooling/config.json");
        let pooling = if pooling_path.is_file() {
            let p: PoolingFile = read_json(&pooling_path)?;
            match (
                p.pooling_mode_mean_tokens,
                p.pooling_mode_cls_token,
                p.pooling_mode_max_tokens,
            ) {
                (true, false, false) => Pooling::Mean,
                (false, true, false) => Pooling::Cls,
                (false, false, true) => Pooling::Max,
                _ => {
                    return Err(EmbedError::Load {
                        what: pooling_path.display().to_string(),
                        reason: "exactly one of mean / cls / max pooling must be enabled".into(),
                    })
                }
            }
        } else {
            Pooling::Mean
        };

        let modules_path = dir.join("modules.json");
        let normalize = if modules_path.is_file() {
            let modules: Vec<ModuleEntry> = read_json(&modules_path)?;
            modules.iter().any(|m| m.kind.ends_with(".Normalize"))
        } else {
            false
        };

        let max_tokens = max_tokens_for(dir, &bert_config, max_tokens)?;
        let tokenizer = batch_tokenizer(dir, &bert_config, max_tokens)?;

        let weights = dir.join("model.safetensors");
        // Read, not memory-mapped: mapping needs `unsafe` (the file could change under us), and the kernels
        // crate holds the project's only unsafe code. The buffer lives only until the layers are loaded.
        let bytes = std::fs::read(&weights)
            .map_err(|e| candle_core::Error::Msg(format!("reading {}: {e}", weights.display())))?;
        let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, &device)?;
        let started = std::time::Instant::now();
        let calibration = match precision {
            Precision::Int8Fast => Some(calibration_inputs(&tokenizer)?),
            _ => None,
        };
        let model = Bert::load(vb, &bert_config, backend, calibration.as_ref())?;
        let identity = model_identity(dir, pooling, normalize, max_tokens, precision)?;
        tracing::info!(
            identity = %identity,
            dir = %dir.display(),
            ?pooling,
            normalize,
            max_tokens,
            device = ?device,
            backend = %backend.describe(),
            millis = started.elapsed().as_millis() as u64,
            "model loaded"
        );
        Ok(Self {
            model,
            tokenizer,
            pooling,
            normalize,
            max_tokens,
            dim: bert_config.hidden_size,
            dir: dir.to_path_buf(),
            identity,
        })
    }

    /// Whether the forward pass runs our CPU kernels (rather than candle's).
    pub fn uses_kernels(&self) -> bool {
        matches!(self.model.backend(), Backend::Kernels(..))
    }

    /// Which code runs the forward pass (e.g. `avx2-int8`, `candle-f32`).
    pub fn backend(&self) -> String {
        self.model.backend().describe()
    }

    /// The tokenizer, with the model's truncation and padding settings.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Vector dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Tokens kept per text, [CLS] and [SEP] included.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// The folder the model was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A stable identity of the model and the settings that shape its vectors (hex).
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Number of tokens `text` becomes after truncation ([CLS]/[SEP] included).
    pub fn token_count(&self, text: &str) -> Result<usize, EmbedError> {
        Ok(self.tokenize(text)?.len())
    }

    /// `text` as the model's token ids ([CLS] and [SEP] included, truncated): what
    /// [`Self::embed_ids`] takes. The service tokenises on the caller's thread, off the model thread.
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>, EmbedError> {
        tokenize(&self.tokenizer, text)
    }

    /// Embeds `texts` in one batch. Returns one vector per text, in order.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let ids = self.tokenize_all(texts)?;
        self.embed_ids(&ids.iter().map(Vec::as_slice).collect::<Vec<_>>())
    }

    /// Embeds texts given as token ids (from [`Self::tokenize`]) in one batch: one vector per text, in
    /// order.
    pub fn embed_ids(&self, texts: &[&[u32]]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self.model.forward(texts)?;
        Ok((0..texts.len()).map(|i| self.pool(&rows, i)).collect())
    }

    fn tokenize_all(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>, EmbedError> {
        texts.iter().map(|t| self.tokenize(t)).collect()
    }

    /// Sequence `i`'s sentence vector per the model's pooling and normalisation.
    fn pool(&self, rows: &TokenRows, i: usize) -> Vec<f32> {
        pool(rows.sequence(i), rows.hidden, self.pooling, self.normalize)
    }

    /// Embeds `texts` in one batch and also returns each text's token-level vectors: the last hidden state
    /// of every token, [CLS] and [SEP] included, before pooling and un-normalised, with the token ids. For
    /// late-interaction (token-level) scoring and offline analysis; the sentence vectors are exactly those
    /// of [`Self::embed`].
    pub fn embed_with_tokens(&self, texts: &[&str]) -> Result<Vec<TokenEmbedding>, EmbedError> {
        let ids = self.tokenize_all(texts)?;
        self.embed_ids_with_tokens(&ids.iter().map(Vec::as_slice).collect::<Vec<_>>())
    }

    /// [`Self::embed_with_tokens`] for texts given as token ids.
    pub fn embed_ids_with_tokens(
        &self,
        texts: &[&[u32]],
    ) -> Result<Vec<TokenEmbedding>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self.model.forward(texts)?;
        Ok(texts
            .iter()
            .enumerate()
            .map(|(i, ids)| TokenEmbedding {
                ids: ids.to_vec(),
                tokens: rows
                    .sequence(i)
                    .chunks_exact(rows.hidden)
                    .map(<[f32]>::to_vec)
                    .collect(),
                sentence: self.pool(&rows, i),
            })
            .collect())
    }
}

/// One sequence's token vectors (`tokens`: rows of `h`) pooled into one sentence vector per `pooling`, then
/// L2-normalised when `normalize`: what sentence-transformers' Pooling and Normalize modules compute.
fn pool(tokens: &[f32], h: usize, pooling: Pooling, normalize: bool) -> Vec<f32> {
    let mut v = match pooling {
        Pooling::Mean => {
            let mut sum = vec![0f32; h];
            for row in tokens.chunks_exact(h) {
                for (s, x) in sum.iter_mut().zip(row) {
                    *s += x;
                }
            }
            let n = (tokens.len() / h).max(1) as f32;
            sum.iter_mut().for_each(|s| *s /= n);
            sum
        }
        Pooling::Cls => tokens[..h].to_vec(),
        Pooling::Max => {
            let mut max = vec![f32::NEG_INFINITY; h];
            for row in tokens.chunks_exact(h) {
                for (m, x) in max.iter_mut().zip(row) {
                    *m = m.max(*x);
                }
            }
            max
        }
    };
    if normalize {
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// One text's vectors from [`SentenceEncoder::embed_with_tokens`].
#[derive(Debug, Clone)]
pub struct TokenEmbedding {
    /// Token ids of the real tokens, [CLS] and [SEP] included, in order.
    pub ids: Vec<u32>,
    /// The last hidden state of each of those tokens (un-normalised), in the same order.
    pub tokens: Vec<Vec<f32>>,
    /// The pooled (and, per the model's config, normalised) sentence vector, as [`SentenceEncoder::embed`].
    pub sentence: Vec<f32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_modes_over_one_sequences_rows() {
        // Three tokens of width 2.
        let rows = [1.0, -2.0, 3.0, 4.0, -1.0, 0.5];
        assert_eq!(pool(&rows, 2, Pooling::Mean, false), vec![1.0, 2.5 / 3.0]);
        assert_eq!(pool(&rows, 2, Pooling::Cls, false), vec![1.0, -2.0]);
        assert_eq!(pool(&rows, 2, Pooling::Max, false), vec![3.0, 4.0]);
        let n = pool(&rows, 2, Pooling::Max, true);
        assert!(
            (n[0] - 0.6).abs() < 1e-6 && (n[1] - 0.8).abs() < 1e-6,
            "{n:?}"
        );
        // A zero vector stays zero rather than turning into NaNs.
        assert_eq!(pool(&[0.0, 0.0], 2, Pooling::Mean, true), vec![0.0, 0.0]);
    }
}
