//! Glue for `eval`, `calibrate` and `dataset`: load, embed, call the library (`semroute::eval`), print.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use semroute::config::{self, Aggregation, Config};
use semroute::eval::calibrate::{self as cal, Objective, Rule};
use semroute::eval::yaml_edit::{self, Change};
use semroute::eval::{self, dataset, metrics};
use semroute::index::LateQuery;
use semroute::router::{start_embedder, BuildOptions, RouteQuery, Router};
use semroute::serve::ServeOptions;
use semroute::state::EmbeddingStore;

use crate::cli::DatasetName;

pub struct EvalArgs {
    pub config: PathBuf,
    pub data: PathBuf,
    pub json: bool,
    pub min_accuracy: Option<f64>,
    pub errors: usize,
    pub latency_samples: usize,
}

pub struct CalibrateArgs {
    pub config: PathBuf,
    /// `None`: calibrate on the config's own examples (leave-one-out).
    pub data: Option<PathBuf>,
    pub objective: Objective,
    pub tune_rule: bool,
    pub per_route: Option<f32>,
    pub dry_run: bool,
}

/// A router with labelled data embedded once: samples, their route ids, their vectors, and their token
/// vectors when the rule is `late` (else empty).
struct Loaded {
    router: Router,
    samples: Vec<eval::Sample>,
    labels: Vec<Option<usize>>,
    vectors: Vec<Vec<f32>>,
    late: Vec<Option<LateQuery>>,
    /// Per sample, its conversation's earlier user turns embedded, newest first.
    context: Vec<Vec<Vec<f32>>>,
}

/// Loads the config, builds the router (with `options`) and embeds the labelled data once (none without
/// `data`).
fn load(config: &Path, data: Option<&Path>, options: BuildOptions) -> anyhow::Result<Loaded> {
    let loaded = config::load_file(config)?;
    let samples = match data {
        Some(d) => eval::read_jsonl(d)?,
        None => Vec::new(),
    };
    let names: Vec<String> = loaded
        .config
        .routes
        .iter()
        .map(|r| r.name.clone())
        .collect();
    let file = data.map(|d| d.display().to_string()).unwrap_or_default();
    let labels = eval::label_ids(&samples, &names, &file)?;
    let embedder = start_embedder(&loaded, ServeOptions::default().model_threads)?;
    let t0 = Instant::now();
    // The exemplar vectors (and token vectors) persist where `serve` keeps them by default, so repeated
    // eval / calibrate runs, and a later `serve`, embed the exemplars once: at 15,000 exemplars that is a
    // minute per run saved.
    let info = embedder.info();
    let store = EmbeddingStore::open(
        &loaded.base_dir().join(".semroute"),
        &info.identity,
        info.dim,
    );
    let router = Router::build_with_options(embedder, loaded.config, store, options)?;
    let t1 = Instant::now();
    let texts: Vec<String> = samples.iter().map(|s| s.text.clone()).collect();
    let (vectors, late) = if router.snapshot().wants_tokens() {
        let dim = router.embedder().info().dim;
        router
            .embedder()
            .embed_tokens_blocking(texts)?
            .into_iter()
            .map(|t| (t.sentence, LateQuery::from_hidden(&t.tokens, dim)))
            .unzip()
    } else {
        (router.embedder().embed_blocking(texts)?, Vec::new())
    };
    let context = embed_context(&router, &samples)?;
    eprintln!(
        "embedded {} exemplars in {:.1} s and {} queries in {:.1} s",
        router.snapshot().index.len(),
        (t1 - t0).as_secs_f64(),
        samples.len(),
        t1.elapsed().as_secs_f64()
    );
    Ok(Loaded {
        router,
        samples,
        labels,
        vectors,
        late,
        context,
    })
}

/// The sentence vectors of each sample's earlier conversation turns (newest first), in one model batch.
fn embed_context(router: &Router, samples: &[eval::Sample]) -> anyhow::Result<Vec<Vec<Vec<f32>>>> {
    let turns: Vec<String> = samples
        .iter()
        .flat_map(|s| s.context.iter().rev().cloned())
        .collect();
    if turns.is_empty() {
        return Ok(Vec::new());
    }
    let mut vectors = router.embedder().embed_blocking(turns)?.into_iter();
    Ok(samples
        .iter()
        .map(|s| vectors.by_ref().take(s.context.len()).collect())
        .collect())
}

fn pct(x: Option<f64>) -> String {
    x.map_or_else(|| "-".to_string(), |v| format!("{v:.3}"))
}

pub fn eval(a: EvalArgs) -> anyhow::Result<()> {
    let Loaded {
        router,
        samples,
        labels,
        vectors,
        late,
        context,
    } = load(&a.config, Some(&a.data), BuildOptions::default())?;
    let snapshot = router.snapshot();
    let ev = eval::evaluate_with(&snapshot, &samples, &labels, &vectors, &late, &context, 5);
    // End-to-end latency (embed + decide, one prompt at a time) on the first queries.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut e2e = Vec::new();
    for s in samples.iter().take(a.latency_samples) {
        let t0 = Instant::now();
        rt.block_on(router.route(RouteQuery {
            text: s.text.clone(),
            ..Default::default()
        }))?;
        e2e.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    let r = &ev.report;
    let latency = serde_json::json!({
        "route_ms_p50": metrics::percentile(&e2e, 0.5),
        "route_ms_p99": metrics::percentile(&e2e, 0.99),
        "route_samples": e2e.len(),
        "decide_us_p50": metrics::percentile(&ev.decide_micros, 0.5),
        "decide_us_p99": metrics::percentile(&ev.decide_micros, 0.99),
    });
    if a.json {
        let mut v = serde_json::to_value(&ev)?;
        v["latency"] = latency;
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let m = &snapshot.config.matching;
        println!(
            "{}: {} queries ({} in scope, {} out of scope) against {} ({} routes, {} exemplars; {:?}, threshold {})",
            a.data.display(),
            samples.len(),
            r.in_scope,
            r.out_of_scope,
            a.config.display(),
            snapshot.index.routes().len(),
            snapshot.index.len(),
            m.aggregation,
            m.threshold
        );
        println!("in-scope accuracy  {:.3}", r.in_scope_accuracy);
        println!("OOS recall         {}", pct(r.oos_recall));
        println!("OOS precision      {}", pct(r.oos_precision));
        println!("overall accuracy   {:.3}", r.overall_accuracy);
        println!("macro-F1           {:.3}", r.macro_f1);
        println!(
            "top route          {:.3} (in scope, thresholds ignored)",
            ev.top_route_accuracy
        );
        println!(
            "latency            route (embed + decide) p50 {} ms, p99 {} ms over {} prompts; decide alone p50 {} µs, p99 {} µs",
            pct(latency["route_ms_p50"].as_f64()),
            pct(latency["route_ms_p99"].as_f64()),
            e2e.len(),
            pct(latency["decide_us_p50"].as_f64()),
            pct(latency["decide_us_p99"].as_f64()),
        );
        if !ev.by_tag.is_empty() {
            println!("\nby tag:");
            println!(
                "  {:<12} {:>6} {:>6} {:>9} {:>9} {:>10}",
                "tag", "in", "oos", "in acc", "OOS rec", "top route"
            );
            for t in &ev.by_tag {
                println!(
                    "  {:<12} {:>6} {:>6} {:>9} {:>9} {:>10}",
                    t.tag,
                    t.in_scope,
                    t.out_of_scope,
                    pct(t.in_scope_accuracy),
                    pct(t.oos_recall),
                    pct(t.top_route_accuracy)
                );
            }
        }
        let mut worst: Vec<_> = r.routes.iter().collect();
        worst.sort_by(|x, y| x.f1.total_cmp(&y.f1));
        println!("\nper route (worst F1 first; --json for all):");
        println!(
            "  {:<32} {:>7} {:>7} {:>7} {:>7}",
            "route", "support", "prec", "recall", "F1"
        );
        for s in worst.iter().take(15) {
            println!(
                "  {:<32} {:>7} {:>7.3} {:>7.3} {:>7.3}",
                s.route, s.support, s.precision, s.recall, s.f1
            );
        }
        let name = |x: &Option<String>| x.clone().unwrap_or_else(|| "(none)".into());
        println!("\nmost confused (expected -> got):");
        for c in r.confusions.iter().take(10) {
            println!(
                "  {:>4}  {} -> {}",
                c.count,
                name(&c.expected),
                name(&c.predicted)
            );
        }
        println!(
            "\nerrors ({} of {}; add utterances like these to the expected route):",
            a.errors.min(ev.errors.len()),
            ev.errors.len()
        );
        for e in ev.errors.iter().take(a.errors) {
            println!(
                "  {:?}: expected {}, got {} ({:.3})",
                e.text,
                name(&e.expected),
                name(&e.predicted),
                e.score
            );
            for n in e.neighbours.iter().take(3) {
                println!(
                    "      {:.3} {:<24} {:?}",
                    n.similarity, n.route, n.utterance
                );
            }
        }
    }
    if let Some(min) = a.min_accuracy {
        if r.in_scope_accuracy < min {
            bail!(
                "in-scope accuracy {:.4} is below --min-accuracy {min}",
                r.in_scope_accuracy
            );
        }
    }
    Ok(())
}

/// A threshold as short YAML text that parses back to the same f32.
fn fmt_f32(x: f32) -> String {
    let s = format!("{x:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" {
        "0".into()
    } else {
        s.to_string()
    }
}

/// Queues `matching.<field>: x` as short YAML text and returns the value that text parses back to, so the
/// wanted config holds exactly what the file will.
fn set_f32(changes: &mut Vec<Change>, field: &str, x: f32) -> anyhow::Result<f32> {
    let text = fmt_f32(x);
    let parsed = text.parse()?;
    changes.push(Change::Set(format!("matching.{field}"), text));
    Ok(parsed)
}

pub fn calibrate(a: CalibrateArgs) -> anyhow::Result<()> {
    let source = std::fs::read_to_string(&a.config)
        .with_context(|| format!("reading {}", a.config.display()))?;
    let Loaded {
        router,
        labels,
        vectors,
        late,
        ..
    } = load(
        &a.config,
        a.data.as_deref(),
        // Tuning the late rule tries head weights, so the index needs a head whatever the config says.
        BuildOptions {
            always_train_head: a.tune_rule,
        },
    )?;
    let snapshot = router.snapshot();
    let cfg: &Config = &snapshot.config;
    let n = cfg.routes.len();
    let m = &cfg.matching;
    let k = m.top_k.max(3);
    let evidence = match &a.data {
        Some(_) => {
            let mut e = eval::collect_evidence(&snapshot.index, k, &vectors, &labels);
            eval::add_late_evidence(&mut e, &snapshot.index, &late, m.late_shortlist);
            e
        }
        None => {
            // Token-level evidence would need every exemplar's bag without itself: not built.
            if m.aggregation == Aggregation::Late {
                anyhow::bail!(
                    "calibrating without --data is not supported for `aggregation: late`; give labelled dev \
                     queries with --data"
                );
            }
            eval::leave_one_out_evidence(&snapshot.index, k)
        }
    };
    let n_queries = evidence.len();

    let before_scored = cal::score_all(n, &evidence, m);
    let before = cal::figures(&before_scored, |r| cfg.threshold_for(&cfg.routes[r]));
    let rules = if a.tune_rule {
        let head = evidence
            .iter()
            .any(|e| e.late.as_ref().is_some_and(|l| !l.head.is_empty()));
        cal::rule_grid(m, head, snapshot.index.negative_count() > 0)
    } else {
        vec![Rule::of(m)]
    };
    let c = cal::calibrate(n, &evidence, m, &rules, a.objective, a.per_route)
        .context("no setting satisfies the objective on this data")?;

    // The wanted config, with every value exactly as its YAML text parses.
    let mut want = cfg.clone();
    let mut changes = Vec::new();
    want.matching.threshold = set_f32(&mut changes, "threshold", c.threshold)?;
    let new_m = c.rule.apply(m);
    if a.tune_rule {
        let agg = format!("{:?}", new_m.aggregation).to_lowercase();
        want.matching.aggregation = new_m.aggregation;
        changes.push(Change::Set("matching.aggregation".into(), agg));
        want.matching.hybrid_weight = set_f32(&mut changes, "hybrid_weight", new_m.hybrid_weight)?;
        want.matching.hybrid_neighbours = new_m.hybrid_neighbours;
        changes.push(Change::Set(
            "matching.hybrid_neighbours".into(),
            new_m.hybrid_neighbours.to_string(),
        ));
        want.matching.margin_weight = set_f32(&mut changes, "margin_weight", new_m.margin_weight)?;
        if snapshot.index.negative_count() > 0 {
            want.matching.negative_weight =
                set_f32(&mut changes, "negative_weight", new_m.negative_weight)?;
            want.matching.negative_neighbours = new_m.negative_neighbours;
            changes.push(Change::Set(
                "matching.negative_neighbours".into(),
                new_m.negative_neighbours.to_string(),
            ));
        }
        if new_m.aggregation == Aggregation::Late {
            want.matching.late_weight = set_f32(&mut changes, "late_weight", new_m.late_weight)?;
            want.matching.head_weight = set_f32(&mut changes, "head_weight", new_m.head_weight)?;
        }
    }
    for (i, r) in want.routes.iter_mut().enumerate() {
        let path = format!("routes[{i}].threshold");
        match &c.per_route {
            Some(t) if (t[i] - c.threshold).abs() > 1e-6 => {
                let text = fmt_f32(t[i]);
                r.threshold = Some(text.parse()?);
                changes.push(Change::Set(path, text));
            }
            _ => {
                if r.threshold.is_some() {
                    r.threshold = None;
                    changes.push(Change::Remove(path));
                }
            }
        }
    }
    let show = |label: &str, f: &cal::Figures| {
        println!(
            "{label}: in-scope accuracy {:.3}, OOS recall {:.3}, overall accuracy {:.3}",
            f.in_scope_accuracy, f.oos_recall, f.overall_accuracy
        )
    };
    let on = match &a.data {
        Some(d) => d.display().to_string(),
        None => format!(
            "the config's own examples (each of {} exemplars left out in turn, {} out_of_scope)",
            snapshot.index.len(),
            snapshot.index.negative_count()
        ),
    };
    println!(
        "{} on {on} ({n_queries} queries), objective {:?}",
        a.config.display(),
        a.objective
    );
    let weights = |m: &semroute::config::MatchingConfig| match m.aggregation {
        Aggregation::Late => format!(
            "late weight {} head weight {} shortlist {}",
            m.late_weight, m.head_weight, m.late_shortlist
        ),
        _ => format!(
            "weight {} neighbours {}",
            m.hybrid_weight, m.hybrid_neighbours
        ),
    };
    let negatives = |m: &semroute::config::MatchingConfig| {
        if snapshot.index.negative_count() == 0 {
            String::new()
        } else {
            format!(
                ", out-of-scope penalty {} x mean of {}",
                m.negative_weight, m.negative_neighbours
            )
        }
    };
    println!(
        "before: {:?} {} margin {}{}, threshold {}",
        m.aggregation,
        weights(m),
        m.margin_weight,
        negatives(m),
        m.threshold
    );
    show("before", &before);
    println!(
        "after:  {:?} {} margin {}{}, threshold {}{}",
        want.matching.aggregation,
        weights(&want.matching),
        want.matching.margin_weight,
        negatives(&want.matching),
        want.matching.threshold,
        match &c.per_route {
            Some(_) => format!(
                ", {} per-route thresholds",
                want.routes.iter().filter(|r| r.threshold.is_some()).count()
            ),
            None => String::new(),
        }
    );
    show("after ", &c.figures);
    if a.dry_run {
        println!("dry run: {} left unchanged", a.config.display());
        return Ok(());
    }
    write_config(&a.config, &source, &changes, &want)
}

/// Applies `changes` to the config text in place (comments kept), checks the result parses to `want`'s
/// values, and writes it atomically, keeping the old file as `<config>.bak`.
fn write_config(
    path: &Path,
    source: &str,
    changes: &[Change],
    want: &Config,
) -> anyhow::Result<()> {
    let text = match yaml_edit::apply(source, changes, want) {
        Some(t) => t,
        None => {
            eprintln!(
                "note: could not edit {} in place; re-serialising it (comments are lost, see {}.bak)",
                path.display(),
                path.display()
            );
            serde_yaml::to_string(want)?
        }
    };
    config::parse_str(&text, &path.display().to_string())?;
    let bak = yaml_edit::write_atomically(path, &text)
        .with_context(|| format!("writing {}", path.display()))?;
    println!(
        "wrote {} (previous version: {})",
        path.display(),
        bak.display()
    );
    Ok(())
}

pub struct TuneArgs {
    pub config: PathBuf,
    pub out: PathBuf,
    pub options: semroute::tune::TuneOptions,
    pub set_model: bool,
}

/// `semroute tune`: fine-tunes the config's encoder on its routes' utterances and writes the model folder;
/// with `set_model`, points `encoder.model` at it.
pub fn tune(a: TuneArgs) -> anyhow::Result<()> {
    use semroute::tune;
    let loaded = config::load_file(&a.config)?;
    let cfg = &loaded.config;
    let base = semroute::router::model_dir(&loaded)?;
    let examples = tune::examples(cfg);
    println!(
        "tuning {} on {} utterances of {} routes: top {} layers, {} epochs, lr {}",
        base.display(),
        examples.len(),
        cfg.routes.len(),
        a.options.layers,
        a.options.epochs,
        a.options.lr
    );
    let report = tune::tune(
        &base,
        &examples,
        cfg.routes.len(),
        &a.out,
        &a.options,
        &mut |e| {
            let cross = e
                .cross_lingual_loss
                .map_or_else(String::new, |l| format!(", cross-lingual {l:.4}"));
            println!(
                "epoch {}: loss {:.4}{cross}, exemplar accuracy {:.3}, {:.1} s",
                e.epoch, e.loss, e.accuracy, e.seconds
            )
        },
    )?;
    println!(
        "wrote {} ({} exemplars, {} routes)",
        a.out.display(),
        report.exemplars,
        report.routes
    );
    if a.set_model {
        // Relative to the config's folder when possible, so the pair can move together.
        let base_dir = Some(loaded.base_dir())
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        let out_abs = std::path::absolute(&a.out)?;
        let base_abs = std::path::absolute(&base_dir)?;
        let model = out_abs
            .strip_prefix(&base_abs)
            .map(|p| p.to_path_buf())
            .unwrap_or(out_abs);
        let model = model.display().to_string();
        let mut want = cfg.clone();
        want.encoder.model = model.clone();
        let source = std::fs::read_to_string(&a.config)
            .with_context(|| format!("reading {}", a.config.display()))?;
        write_config(
            &a.config,
            &source,
            &[Change::Set("encoder.model".into(), model)],
            &want,
        )?;
    }
    Ok(())
}

pub fn dataset(
    name: DatasetName,
    data: &Path,
    k: &str,
    out: &Path,
    aggregation: Aggregation,
    oos_negatives: bool,
) -> anyhow::Result<()> {
    let k = match k {
        "all" => None,
        n => Some(
            n.parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .with_context(|| format!("--k `{n}`: expected a positive number or `all`"))?,
        ),
    };
    match name {
        DatasetName::Clinc150 => {
            let matching = semroute::config::MatchingConfig {
                aggregation,
                ..Default::default()
            };
            let mut d = dataset::clinc150(data, k, matching)?;
            let (negatives, flag) = if oos_negatives {
                d.config.out_of_scope = d.oos_train.clone();
                (
                    format!(
                        "\nout_of_scope: the {} oos_train utterances, as negative exemplars.",
                        d.oos_train.len()
                    ),
                    " --oos-negatives",
                )
            } else {
                (String::new(), "")
            };
            let header = format!(
                "CLINC150 (Larson et al., 2019; CC BY 3.0), {} exemplars per intent: the first train utterances of\n\
                 each intent in file order.{negatives}\nWritten by `semroute dataset clinc150 --k {}{flag}`.\n\
                 Calibrate on val.jsonl, report on test.jsonl:\n  semroute calibrate --config routes.yaml --data val.jsonl\n  semroute eval --config routes.yaml --data test.jsonl",
                k.map_or("all".to_string(), |k| k.to_string()),
                k.map_or("all".to_string(), |k| k.to_string()),
            );
            dataset::write(&d, out, &header)?;
            println!(
                "wrote {}/routes.yaml ({} routes, {} exemplars, {} out of scope), val.jsonl ({}), test.jsonl ({})",
                out.display(),
                d.config.routes.len(),
                d.config
                    .routes
                    .iter()
                    .map(|r| r.utterances.len())
                    .sum::<usize>(),
                d.config.out_of_scope.len(),
                d.val.len(),
                d.test.len()
            );
        }
        DatasetName::Banking77 => {
            if oos_negatives {
                bail!("--oos-negatives: Banking77 has no out-of-scope utterances");
            }
            let matching = semroute::config::MatchingConfig {
                aggregation,
                ..Default::default()
            };
            let d = semroute::eval::banking77::banking77(data, k, matching)?;
            let kk = k.map_or("all".to_string(), |k| k.to_string());
            let header = format!(
                "Banking77 (Casanueva et al., 2020; CC BY 4.0), {kk} exemplars per category: the first train\n\
                 utterances of each category in file order. val.jsonl: the next {} train utterances of each\n\
                 category (none with --k all); test.jsonl: test.csv. No out-of-scope queries.\n\
                 Written by `semroute dataset banking77 --k {kk}`.\n\
                 Calibrate on val.jsonl, report on test.jsonl:\n  semroute calibrate --config routes.yaml --data val.jsonl\n  semroute eval --config routes.yaml --data test.jsonl",
                semroute::eval::banking77::VAL_PER_INTENT,
            );
            dataset::write_parts(&d.config, &d.val, &d.test, out, &header)?;
            println!(
                "wrote {}/routes.yaml ({} routes, {} exemplars), val.jsonl ({}), test.jsonl ({})",
                out.display(),
                d.config.routes.len(),
                d.config
                    .routes
                    .iter()
                    .map(|r| r.utterances.len())
                    .sum::<usize>(),
                d.val.len(),
                d.test.len()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::fmt_f32;

    #[test]
    fn thresholds_print_short_and_round_trip() {
        assert_eq!(fmt_f32(0.43), "0.43");
        assert_eq!(fmt_f32(0.3416), "0.3416");
        assert_eq!(fmt_f32(1.0), "1");
        assert_eq!(fmt_f32(0.0), "0");
        assert_eq!(fmt_f32(-0.25), "-0.25");
        for x in [0.12345f32, 0.5, 0.99999] {
            let y: f32 = fmt_f32(x).parse().unwrap();
            assert!((x - y).abs() < 1e-4);
        }
    }
}
