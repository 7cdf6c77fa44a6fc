//! Measures decision rules for long prompts on a labelled set, without touching the request path: each
//! query is cut into segments by a strategy, every segment is embedded and scored like a query, and the
//! query takes the segment with the highest decision score.
//!
//! cargo run --release --example devset_probe -- CONFIG DATA.jsonl [STRATEGY ...]
//! Strategies: whole, ends, paras, sents, headtail.

use std::collections::HashMap;
use std::path::PathBuf;

use semroute::config;
use semroute::eval::calibrate::{self as cal, Objective, Scored};
use semroute::eval::{self};
use semroute::router::{start_embedder, BuildOptions, Router};
use semroute::serve::ServeOptions;
use semroute::state::EmbeddingStore;

fn paragraphs(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !cur.trim().is_empty() {
                out.push(cur.trim().to_string());
            }
            cur.clear();
        } else {
            cur.push_str(line);
            cur.push('\n');
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

fn sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        cur.push(c);
        let end = matches!(c, '.' | '?' | '!' | '\n')
            && chars.get(i + 1).is_none_or(|n| n.is_whitespace());
        if end && cur.trim().len() > 1 {
            out.push(cur.trim().to_string());
            cur.clear();
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

fn words(s: &str) -> usize {
    s.split_whitespace().count()
}

/// Segments of `text` under `strategy`; the whole text always comes first.
fn segments(text: &str, strategy: &str) -> Vec<String> {
    let mut v = vec![text.to_string()];
    if words(text) < 40 && strategy != "sents" {
        return v;
    }
    match strategy {
        "whole" => {}
        "ends" => {
            let p = paragraphs(text);
            if p.len() > 1 {
                v.push(p[0].clone());
                v.push(p[p.len() - 1].clone());
            }
            let s = sentences(text);
            if s.len() > 1 {
                v.push(s[0].clone());
                v.push(s[s.len() - 1].clone());
            }
        }
        "paras" => v.extend(paragraphs(text).into_iter().take(12)),
        "sents" => v.extend(sentences(text).into_iter().take(24)),
        "headtail" => {
            // The first and last 60 words joined, so truncation cannot drop a request at the end.
            let w: Vec<&str> = text.split_whitespace().collect();
            if w.len() > 120 {
                v[0] = format!("{} ... {}", w[..60].join(" "), w[w.len() - 60..].join(" "));
            }
        }
        other => panic!("unknown strategy {other}"),
    }
    v.dedup();
    v
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cfg_path = PathBuf::from(&args[0]);
    let data = PathBuf::from(&args[1]);
    let strategies: Vec<String> = if args.len() > 2 {
        args[2..].to_vec()
    } else {
        vec!["whole".into()]
    };
    let loaded = config::load_file(&cfg_path)?;
    let samples = eval::read_jsonl(&data)?;
    let names: Vec<String> = loaded
        .config
        .routes
        .iter()
        .map(|r| r.name.clone())
        .collect();
    let labels = eval::label_ids(&samples, &names, "data")?;
    let embedder = start_embedder(&loaded, ServeOptions::default().model_threads)?;
    let info = embedder.info();
    let store = EmbeddingStore::open(
        &loaded.base_dir().join(".semroute"),
        &info.identity,
        info.dim,
    );
    let router =
        Router::build_with_options(embedder, loaded.config, store, BuildOptions::default())?;
    let snap = router.snapshot();
    let cfg = &snap.config;
    let m = &cfg.matching;
    let n = cfg.routes.len();

    // Every distinct text of every strategy, embedded once.
    let mut segs: Vec<Vec<Vec<usize>>> = Vec::new();
    let mut texts: Vec<String> = Vec::new();
    let mut ids: HashMap<String, usize> = HashMap::new();
    for st in &strategies {
        segs.push(
            samples
                .iter()
                .map(|s| {
                    segments(&s.text, st)
                        .into_iter()
                        .map(|t| {
                            let k = ids.len();
                            *ids.entry(t.clone()).or_insert_with(|| {
                                texts.push(t);
                                k
                            })
                        })
                        .collect()
                })
                .collect(),
        );
    }
    let t0 = std::time::Instant::now();
    let vectors = router.embedder().embed_blocking(texts.clone())?;
    eprintln!(
        "embedded {} texts in {:.1} s",
        texts.len(),
        t0.elapsed().as_secs_f64()
    );
    let no_labels = vec![None; vectors.len()];
    let ev = eval::collect_evidence(&snap.index, m.top_k.max(3), &vectors, &no_labels);
    let per_text = cal::score_all(n, &ev, m);

    for (st, segs) in strategies.iter().zip(&segs) {
        let scored: Vec<Scored> = segs
            .iter()
            .zip(&labels)
            .map(|(ids, &label)| {
                let best = ids
                    .iter()
                    .map(|&i| per_text[i])
                    .max_by(|a, b| a.score.total_cmp(&b.score))
                    .expect("at least the whole text");
                Scored { label, ..best }
            })
            .collect();
        let thr = |r: usize| cfg.threshold_for(&cfg.routes[r]);
        let f = cal::figures(&scored, thr);
        let top = |keep: &dyn Fn(usize) -> bool| {
            let (mut a, mut b) = (0, 0);
            for (i, s) in scored.iter().enumerate() {
                if let (Some(l), true) = (s.label, keep(i)) {
                    b += 1;
                    a += usize::from(s.top == l);
                }
            }
            if b == 0 {
                f64::NAN
            } else {
                a as f64 / b as f64
            }
        };
        println!(
            "== {st}: config thresholds -> in-scope {:.3}, OOS recall {:.3}; top route {:.3}",
            f.in_scope_accuracy,
            f.oos_recall,
            top(&|_| true)
        );
        for tag in [
            "en", "es", "fr", "de", "long", "short", "typo", "multi", "hard",
        ] {
            let has = |i: usize| samples[i].tags.iter().any(|t| t == tag);
            let sub: Vec<Scored> = scored
                .iter()
                .enumerate()
                .filter(|(i, _)| has(*i))
                .map(|(_, s)| *s)
                .collect();
            if sub.is_empty() {
                continue;
            }
            let g = cal::figures(&sub, thr);
            println!(
                "   {tag:6} n={:4} in {:.3} oos {:.3} top {:.3}",
                sub.len(),
                g.in_scope_accuracy,
                g.oos_recall,
                top(&has)
            );
        }
        for t in [0.1f32, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45] {
            let g = cal::figures(&scored, |_| t);
            print!(
                "   t={t:.2}: {:.3}/{:.3}",
                g.in_scope_accuracy, g.oos_recall
            );
        }
        println!();
        for obj in ["balanced", "min-oos-recall=0.85", "min-oos-recall=0.9"] {
            let o: Objective = obj.parse().map_err(anyhow::Error::msg)?;
            if let Some((t, g)) = cal::best_global(&scored, o) {
                println!(
                    "   best on this set, {obj}: t={t:.4} -> {:.3}/{:.3}",
                    g.in_scope_accuracy, g.oos_recall
                );
            }
        }
    }
    Ok(())
}
