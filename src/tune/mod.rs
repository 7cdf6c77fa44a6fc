//! Fine-tuning the encoder on a config's routes (`semroute tune`).
//!
//! A frozen sentence-transformer places the exemplars of two similar intents close together; a few
//! passes of supervised training on the exemplars themselves pull each route's exemplars together and push
//! the routes apart. The top `layers` transformer layers and a cosine classifier (one unit vector per
//! route, started at the route's centroid) are trained with cross-entropy on `scale x cosine`, AdamW,
//! no dropout, in a fixed order from `seed`, so two runs on the same inputs write the same weights. The
//! result is a complete model folder: the serving path, int8 quantisation, the embedding store (keyed by
//! the weights' hash) and every matching rule use it unchanged.
//!
//! Measured on CLINC150 K = 10 (docs/quality.md): the top route's accuracy goes from 0.844 to 0.896, and
//! the calibrated centroid rule from 0.810 / 0.810 to 0.853 / 0.844 (in-scope accuracy / OOS recall).

mod model;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use candle_transformers::models::bert::Config as BertConfig;
use serde::Serialize;

use crate::embedding::{batch_tokenizer, max_tokens_for, read_json, EmbedError};
pub use model::TrainableBert;

/// The name of the provenance file a tuned model folder carries.
pub const PROVENANCE_FILE: &str = "semroute-tune.json";

/// Files of a sentence-transformer folder copied beside the tuned weights when present.
const COPIED: [&str; 9] = [
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "sentence_bert_config.json",
    "modules.json",
    "config_sentence_transformers.json",
    "1_Pooling/config.json",
];

/// Errors of fine-tuning.
#[derive(Debug, thiserror::Error)]
pub enum TuneError {
    /// The base model could not be read.
    #[error(transparent)]
    Model(#[from] EmbedError),
    /// The tensor engine failed.
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The inputs or options cannot be trained on.
    #[error("{0}")]
    Invalid(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TuneError + '_ {
    move |source| TuneError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Training settings. The defaults are the ones measured on CLINC150 (docs/quality.md).
#[derive(Debug, Clone, Serialize)]
pub struct TuneOptions {
    /// Transformer layers trained, counted from the top (the rest stay as they are).
    pub layers: usize,
    /// Passes over the exemplars.
    pub epochs: usize,
    /// AdamW learning rate of the transformer layers.
    pub lr: f64,
    /// AdamW learning rate of the route classifier.
    pub classifier_lr: f64,
    /// Multiplier of the cosine before the softmax (its temperature's inverse).
    pub scale: f64,
    /// Exemplars per step.
    pub batch: usize,
    /// Seed of the exemplar order.
    pub seed: u64,
    /// Weight of the cross-lingual alignment term (0: off): each step also pulls a share of the shipped
    /// Spanish, French and German sentences ([`PARALLEL`]) onto their English translations as the model
    /// embeds those at that step, so the whole set is seen once per epoch.
    pub cross_lingual: f64,
}

/// Parallel sentences shipped for cross-lingual tuning: `English<TAB>Spanish<TAB>French<TAB>German` per
/// line, `#` comments. General-purpose, written for semroute (not from any evaluation set).
pub const PARALLEL: &str = include_str!("parallel.tsv");

/// `(English, translation)` pairs of [`PARALLEL`], every language of a line in turn.
pub fn parallel_pairs() -> Vec<(&'static str, &'static str)> {
    PARALLEL
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .flat_map(|l| {
            let mut cols = l.split('\t');
            let en = cols.next().unwrap_or_default();
            cols.map(move |t| (en, t))
        })
        .collect()
}

impl Default for TuneOptions {
    fn default() -> Self {
        Self {
            layers: 4,
            epochs: 3,
            lr: 1e-4,
            classifier_lr: 1e-2,
            scale: 20.0,
            batch: 32,
            seed: 0,
            cross_lingual: 0.0,
        }
    }
}

/// One epoch's figures.
#[derive(Debug, Clone, Serialize)]
pub struct EpochStats {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean cross-entropy over the epoch's steps, per exemplar.
    pub loss: f64,
    /// Share of exemplars the classifier put in their own route during the epoch.
    pub accuracy: f64,
    /// Mean cross-lingual term over the epoch's steps (cross-entropy of each translation against the
    /// step's English sentences); `None` with `cross_lingual` 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cross_lingual_loss: Option<f64>,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// What a tuning run did, also written to the output folder as [`PROVENANCE_FILE`].
#[derive(Debug, Clone, Serialize)]
pub struct TuneReport {
    /// The model folder trained from.
    pub base_model: String,
    /// Routes (classes).
    pub routes: usize,
    /// Exemplars trained on.
    pub exemplars: usize,
    /// The settings.
    pub options: TuneOptions,
    /// Per-epoch figures.
    pub epochs: Vec<EpochStats>,
}

/// One exemplar for training: its text and its route's index.
#[derive(Debug, Clone)]
pub struct Example {
    /// The utterance.
    pub text: String,
    /// Index of its route, `0..routes`.
    pub route: usize,
}

/// One [`Example`] per utterance of `config`'s routes, route indices in the config's order.
pub fn examples(config: &crate::config::Config) -> Vec<Example> {
    config
        .routes
        .iter()
        .enumerate()
        .flat_map(|(route, r)| {
            r.utterances.iter().map(move |u| Example {
                text: u.clone(),
                route,
            })
        })
        .collect()
}

/// Fine-tunes the model in `base` on `examples` and writes a complete model folder to `out` (replacing
/// an earlier tuning's output; any other existing folder is refused). `progress`
/// sees each epoch as it ends.
pub fn tune(
    base: &Path,
    examples: &[Example],
    routes: usize,
    out: &Path,
    options: &TuneOptions,
    progress: &mut dyn FnMut(&EpochStats),
) -> Result<TuneReport, TuneError> {
    check_inputs(base, examples, routes, out, options)?;
    let config: BertConfig = read_json(&base.join("config.json"))?;
    let weights_path = base.join("model.safetensors");
    let weights = candle_core::safetensors::load(&weights_path, &Device::Cpu)?;
    let model = TrainableBert::new(&weights, &config, options.layers)?;
    let max_tokens = max_tokens_for(base, &config, None)?;
    let tokenizer = batch_tokenizer(base, &config, max_tokens)?;

    // The frozen layers' output of every exemplar, computed once: epochs then cost the top layers only.
    let lower: Vec<Tensor> = examples
        .iter()
        .map(|e| {
            let enc = tokenizer
                .encode(e.text.as_str(), true)
                .map_err(|err| EmbedError::Tokenize(err.to_string()))?;
            Ok(model.lower(enc.get_ids())?)
        })
        .collect::<Result<_, TuneError>>()?;
    let order: Vec<usize> = (0..examples.len()).collect();
    // The parallel sentences' frozen-layer outputs, English in `pair_en`, translations in `pair_xx`.
    let (pair_en, pair_xx) = if options.cross_lingual > 0.0 {
        let lower_of = |text: &str| -> Result<Tensor, TuneError> {
            let enc = tokenizer
                .encode(text, true)
                .map_err(|err| EmbedError::Tokenize(err.to_string()))?;
            Ok(model.lower(enc.get_ids())?)
        };
        let pairs = parallel_pairs();
        let en = pairs
            .iter()
            .map(|(e, _)| lower_of(e))
            .collect::<Result<Vec<_>, _>>()?;
        let xx = pairs
            .iter()
            .map(|(_, x)| lower_of(x))
            .collect::<Result<Vec<_>, _>>()?;
        (en, xx)
    } else {
        (Vec::new(), Vec::new())
    };
    let steps = examples.len().div_ceil(options.batch.max(1));
    let pairs_per_step = pair_en.len().div_ceil(steps.max(1));

    // Start each route's classifier vector at the route's centroid, so training starts from the
    // frozen model's nearest-centroid rule rather than from chance.
    let mut centroids = vec![vec![0f32; config.hidden_size]; routes];
    for chunk in order.chunks(options.batch.max(64)) {
        let (x, mask) = pad_batch(&lower, chunk)?;
        let pooled = model.upper_pooled(&x, &mask)?.detach().to_vec2::<f32>()?;
        for (&i, v) in chunk.iter().zip(pooled) {
            for (c, x) in centroids[examples[i].route].iter_mut().zip(v) {
                *c += x;
            }
        }
    }
    let flat: Vec<f32> = centroids.into_iter().flatten().collect();
    let classifier = Var::from_tensor(&Tensor::from_vec(
        flat,
        (routes, config.hidden_size),
        &Device::Cpu,
    )?)?;

    let params = |lr: f64| ParamsAdamW {
        lr,
        weight_decay: 0.01,
        ..Default::default()
    };
    let layer_vars: Vec<Var> = model.vars().iter().map(|(_, v)| v.clone()).collect();
    let mut opt_layers = AdamW::new(layer_vars, params(options.lr))?;
    let mut opt_classifier = AdamW::new(vec![classifier.clone()], params(options.classifier_lr))?;

    let mut rng = fastrand::Rng::with_seed(options.seed);
    let mut epochs = Vec::with_capacity(options.epochs);
    for epoch in 1..=options.epochs {
        let t0 = Instant::now();
        let mut shuffled = order.clone();
        rng.shuffle(&mut shuffled);
        let mut pair_order: Vec<usize> = (0..pair_en.len()).collect();
        rng.shuffle(&mut pair_order);
        let mut pair_chunks = pair_order.chunks(pairs_per_step.max(1));
        let (mut loss_sum, mut correct) = (0.0f64, 0usize);
        let (mut align_sum, mut align_steps) = (0.0f64, 0usize);
        for chunk in shuffled.chunks(options.batch) {
            let (x, mask) = pad_batch(&lower, chunk)?;
            let targets: Vec<u32> = chunk.iter().map(|&i| examples[i].route as u32).collect();
            let targets = Tensor::new(targets.as_slice(), &Device::Cpu)?;
            let pooled = model.upper_pooled(&x, &mask)?;
            let logits = (pooled.matmul(&model::normalize_rows(classifier.as_tensor())?.t()?)?
                * options.scale)?;
            let loss = candle_nn::loss::cross_entropy(&logits, &targets)?;
            let total = match pair_chunks.next() {
                Some(pairs) => {
                    // Each translation must be nearer its own English sentence, as the model embeds it
                    // now, than the step's other English sentences (cross-entropy over the batch's
                    // cosines). The English side is the target (detached), so the routes' geometry is
                    // learnt from the exemplars alone and the other languages follow it; contrasting
                    // with the other pairs keeps the model from meeting the term by pulling every
                    // sentence together, which 1 - cos alone did (every score rose, out-of-scope
                    // prompts with them).
                    let (xe, me) = pad_batch(&pair_en, pairs)?;
                    let target = model.upper_pooled(&xe, &me)?.detach();
                    let (xx, mx) = pad_batch(&pair_xx, pairs)?;
                    let student = model.upper_pooled(&xx, &mx)?;
                    let sims = (student.matmul(&target.t()?)? * options.scale)?;
                    let own: Vec<u32> = (0..pairs.len() as u32).collect();
                    let own = Tensor::new(own.as_slice(), &Device::Cpu)?;
                    let align = candle_nn::loss::cross_entropy(&sims, &own)?;
                    align_sum += f64::from(align.to_scalar::<f32>()?);
                    align_steps += 1;
                    (&loss + (align * options.cross_lingual)?)?
                }
                None => loss.clone(),
            };
            let grads = total.backward()?;
            opt_layers.step(&grads)?;
            opt_classifier.step(&grads)?;
            loss_sum += f64::from(loss.to_scalar::<f32>()?) * chunk.len() as f64;
            let predicted = logits.argmax(1)?.to_vec1::<u32>()?;
            correct += predicted
                .iter()
                .zip(chunk)
                .filter(|(p, &i)| **p as usize == examples[i].route)
                .count();
        }
        let stats = EpochStats {
            epoch,
            loss: loss_sum / examples.len() as f64,
            accuracy: correct as f64 / examples.len() as f64,
            cross_lingual_loss: (align_steps > 0).then(|| align_sum / align_steps as f64),
            seconds: t0.elapsed().as_secs_f64(),
        };
        tracing::info!(
            epoch,
            loss = stats.loss,
            cross_lingual_loss = stats.cross_lingual_loss,
            accuracy = stats.accuracy,
            seconds = stats.seconds,
            "tune epoch"
        );
        progress(&stats);
        epochs.push(stats);
    }

    let report = TuneReport {
        base_model: base.display().to_string(),
        routes,
        exemplars: examples.len(),
        options: options.clone(),
        epochs,
    };
    let mut tuned = weights;
    for (name, var) in model.vars() {
        tuned.insert(name.clone(), var.as_tensor().detach());
    }
    write_folder(base, out, &tuned, &report)?;
    Ok(report)
}

fn check_inputs(
    base: &Path,
    examples: &[Example],
    routes: usize,
    out: &Path,
    options: &TuneOptions,
) -> Result<(), TuneError> {
    let bad = |m: String| Err(TuneError::Invalid(m));
    if routes < 2 {
        return bad(format!(
            "tuning needs at least 2 routes to tell apart, got {routes}"
        ));
    }
    if let Some(e) = examples.iter().find(|e| e.route >= routes) {
        return bad(format!(
            "example `{}` names route {} of {routes}",
            e.text, e.route
        ));
    }
    let mut seen = vec![false; routes];
    examples.iter().for_each(|e| seen[e.route] = true);
    if let Some(r) = seen.iter().position(|s| !s) {
        return bad(format!("route {r} has no utterances to train on"));
    }
    if options.epochs == 0 || options.batch == 0 {
        return bad("epochs and batch must be at least 1".into());
    }
    if !(options.lr > 0.0 && options.classifier_lr > 0.0 && options.scale > 0.0) {
        return bad("learning rates and scale must be positive".into());
    }
    let same = match (base.canonicalize(), out.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        return bad(format!(
            "--out {} is the base model's own folder; write the tuned model elsewhere",
            out.display()
        ));
    }
    if out.exists() && !out.join(PROVENANCE_FILE).is_file() {
        return bad(format!(
            "{} exists and is not a tuned model (no {PROVENANCE_FILE}); refusing to replace it",
            out.display()
        ));
    }
    Ok(())
}

/// Zero-pads the chosen texts' hidden states to the longest and stacks them: `(batch, seq, hidden)` and
/// the `(batch, seq)` mask. Padding rows are masked out of attention and pooling.
fn pad_batch(lower: &[Tensor], chosen: &[usize]) -> candle_core::Result<(Tensor, Tensor)> {
    let longest = chosen
        .iter()
        .map(|&i| lower[i].dim(0))
        .collect::<candle_core::Result<Vec<_>>>()?
        .into_iter()
        .max()
        .unwrap_or(1);
    let mut rows = Vec::with_capacity(chosen.len());
    let mut mask = Vec::with_capacity(chosen.len() * longest);
    for &i in chosen {
        let len = lower[i].dim(0)?;
        rows.push(lower[i].pad_with_zeros(0, 0, longest - len)?);
        mask.extend((0..longest).map(|t| if t < len { 1f32 } else { 0f32 }));
    }
    let mask = Tensor::from_vec(mask, (chosen.len(), longest), &Device::Cpu)?;
    Ok((Tensor::stack(&rows, 0)?, mask.to_dtype(DType::F32)?))
}

/// Writes the folder next to `out` under a temporary name, then renames it into place, so `out` never
/// holds a half-written model (an earlier tuning's folder is moved aside first and then removed).
fn write_folder(
    base: &Path,
    out: &Path,
    weights: &HashMap<String, Tensor>,
    report: &TuneReport,
) -> Result<(), TuneError> {
    let name = out
        .file_name()
        .ok_or_else(|| TuneError::Invalid(format!("--out {} has no folder name", out.display())))?
        .to_string_lossy()
        .to_string();
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let staging = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(io(&staging))?;
    }
    std::fs::create_dir_all(staging.join("1_Pooling")).map_err(io(&staging))?;
    for f in COPIED {
        let from = base.join(f);
        if from.is_file() {
            std::fs::copy(&from, staging.join(f)).map_err(io(&from))?;
        }
    }
    let weights_path = staging.join("model.safetensors");
    candle_core::safetensors::save(weights, &weights_path)?;
    let json = serde_json::to_string_pretty(report)
        .map_err(|e| TuneError::Invalid(format!("provenance: {e}")))?;
    let prov = staging.join(PROVENANCE_FILE);
    std::fs::write(&prov, json + "\n").map_err(io(&prov))?;
    // Swap: move the old folder aside, move the new one in, drop the old one.
    let old = parent.join(format!(".{name}.old-{}", std::process::id()));
    if out.exists() {
        std::fs::rename(out, &old).map_err(io(out))?;
    }
    std::fs::rename(&staging, out).map_err(io(out))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(io(&old))?;
    }
    Ok(())
}
