//! Routing quality with the real model: CLINC150 (recipe in ../shared/data/clinc150/README.md, K = 10)
//! and a held-out set of realistic LLM prompts against the shipped routes.yaml.

mod common;

use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use semroute::config::{Aggregation, MatchingConfig};
use semroute::eval::calibrate::{self as cal, Objective, Rule};
use semroute::eval::dataset::{self, Clinc150};
use semroute::eval::{self, Sample};
use semroute::index::{Exemplar, RouteIndex, Scoring};
use semroute::router::Snapshot;

/// CLINC150 K = 10 with every sentence embedded once per test binary (about 10,000 sentences).
struct Clinc {
    data: Clinc150,
    names: Vec<String>,
    index: RouteIndex,
    val: Vec<Vec<f32>>,
    val_labels: Vec<Option<usize>>,
    test: Vec<Vec<f32>>,
    test_labels: Vec<Option<usize>>,
}

fn clinc() -> &'static Clinc {
    static C: OnceLock<Clinc> = OnceLock::new();
    C.get_or_init(|| {
        let path = common::shared_dir().join("data/clinc150/data_full.json");
        let data = dataset::clinc150(&path, Some(10), MatchingConfig::default())
            .unwrap_or_else(|e| panic!("{e} (set SEMROUTE_SHARED_DIR)"));
        let names: Vec<String> = data.config.routes.iter().map(|r| r.name.clone()).collect();
        assert_eq!(names.len(), 150);
        let e = common::embedder();
        let mut texts = Vec::new();
        let mut owners = Vec::new();
        for (r, route) in data.config.routes.iter().enumerate() {
            for u in &route.utterances {
                texts.push(u.clone());
                owners.push(r);
            }
        }
        assert_eq!(texts.len(), 1500);
        let vecs = e.embed_blocking(texts.clone()).unwrap();
        let exemplars = owners
            .into_iter()
            .zip(texts)
            .zip(vecs)
            .map(|((route, text), vector)| Exemplar {
                route,
                text,
                vector,
            })
            .collect();
        let index = RouteIndex::build(384, names.clone(), exemplars, 20_000).unwrap();
        let embed = |s: &[Sample]| {
            e.embed_blocking(s.iter().map(|x| x.text.clone()).collect())
                .unwrap()
        };
        let (val, test) = (embed(&data.val), embed(&data.test));
        let val_labels = eval::label_ids(&data.val, &names, "val").unwrap();
        let test_labels = eval::label_ids(&data.test, &names, "test").unwrap();
        Clinc {
            data,
            names,
            index,
            val,
            val_labels,
            test,
            test_labels,
        }
    })
}

#[test]
fn clinc150_k10_top_route_accuracy() {
    let c = clinc();
    let mut acc = std::collections::BTreeMap::new();
    for agg in [
        Aggregation::Max,
        Aggregation::Mean,
        Aggregation::Centroid,
        Aggregation::Hybrid,
    ] {
        let (mut right, mut n) = (0, 0);
        for (q, l) in c.test.iter().zip(&c.test_labels) {
            let Some(l) = l else { continue };
            let hits = c.index.search(q, 10);
            let scores = c.index.route_scores(q, &hits, Scoring::from(agg));
            right += usize::from(scores[0].0 == *l);
            n += 1;
        }
        assert_eq!(n, 4500);
        acc.insert(format!("{agg:?}"), right as f64 / n as f64);
    }
    eprintln!("CLINC150 K=10 in-scope top-route accuracy, no threshold: {acc:?}");
    // Prototype evidence (centroid, hybrid) beats neighbour-only aggregation by several points.
    for proto in ["Centroid", "Hybrid"] {
        assert!(
            acc[proto] >= acc["Max"] && acc[proto] >= acc["Mean"],
            "{acc:?}"
        );
        assert!(acc[proto] >= 0.83, "{proto} accuracy {}", acc[proto]);
    }
}

/// The CI floor: the default rule, its global threshold calibrated on val + oos_val only (balanced), decided
/// on test + oos_test exactly as the server decides.
#[test]
fn clinc150_k10_calibrated_floor() {
    let c = clinc();
    let m = MatchingConfig::default();
    let evidence = eval::collect_evidence(&c.index, m.top_k, &c.val, &c.val_labels);
    let cal = cal::calibrate(
        c.names.len(),
        &evidence,
        &m,
        &[Rule::of(&m)],
        Objective::Balanced,
        None,
    )
    .unwrap();
    let mut config = c.data.config.clone();
    config.matching.threshold = cal.threshold;
    let index = RouteIndex::build(
        384,
        c.names.clone(),
        (0..c.index.len())
            .map(|i| Exemplar {
                route: c.index.exemplar_route(i),
                text: c.index.exemplar_text(i).to_string(),
                vector: c.index.exemplar_vector(i).to_vec(),
            })
            .collect(),
        20_000,
    )
    .unwrap();
    let snapshot = Snapshot {
        config: Arc::new(config),
        index,
        version: 1,
        built_at: SystemTime::now(),
        build_duration: std::time::Duration::ZERO,
        embedded: 0,
    };
    let ev = eval::evaluate(&snapshot, &c.data.test, &c.test_labels, &c.test, 3);
    let r = &ev.report;
    eprintln!(
        "CLINC150 K=10 {:?}, threshold {:.3} chosen on val (val {:.3}/{:.3}): test in-scope accuracy {:.3}, \
         OOS recall {:.3}, OOS precision {:.3}, macro-F1 {:.3}",
        m.aggregation,
        cal.threshold,
        cal.figures.in_scope_accuracy,
        cal.figures.oos_recall,
        r.in_scope_accuracy,
        r.oos_recall.unwrap(),
        r.oos_precision.unwrap(),
        r.macro_f1
    );
    assert_eq!((r.in_scope, r.out_of_scope), (4500, 1000));
    assert!(
        r.in_scope_accuracy >= 0.80 && r.oos_recall.unwrap() >= 0.80,
        "calibrated floor: accuracy {}, OOS recall {:?}",
        r.in_scope_accuracy,
        r.oos_recall
    );
}

#[test]
fn heldout_llm_prompts_route_correctly() {
    let loaded = semroute::config::load_file(&common::repo().join("routes.yaml")).unwrap();
    let router =
        semroute::router::Router::build(common::embedder().clone(), loaded.config).unwrap();
    let set = common::read_labelled(&common::repo().join("tests/data/heldout_prompts.jsonl"));
    let labelled: Vec<_> = set.iter().filter(|(_, l)| l.is_some()).collect();
    assert!(labelled.len() >= 100);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut correct = 0;
    let mut misses = Vec::new();
    for (text, label) in &labelled {
        let d = rt
            .block_on(router.route(semroute::router::RouteQuery {
                text: text.clone(),
                ..Default::default()
            }))
            .unwrap();
        // "Right route first": the top candidate, whatever the threshold says.
        if d.candidates[0].route == *label.as_ref().unwrap() {
            correct += 1;
        } else {
            misses.push(format!(
                "{text:?}: want {label:?}, got {}",
                d.candidates[0].route
            ));
        }
    }
    let acc = correct as f64 / labelled.len() as f64;
    eprintln!(
        "held-out LLM prompts: {correct}/{} = {acc:.3}\n{}",
        labelled.len(),
        misses.join("\n")
    );
    assert!(acc >= 0.80, "held-out accuracy {acc}");
}

#[test]
fn repeated_prompts_come_from_the_cache_with_the_same_decision() {
    let mut config = semroute::config::load_file(&common::repo().join("routes.yaml"))
        .unwrap()
        .config;
    config.encoder.cache_size = 2;
    let router = semroute::router::Router::build(common::embedder().clone(), config).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let route = |t: &str| {
        rt.block_on(router.route(semroute::router::RouteQuery {
            text: t.into(),
            ..Default::default()
        }))
        .unwrap()
    };
    let first = route("how do I get a refund for a double charge?");
    let second = route("how do I get a refund for a double charge?");
    assert_eq!(first.candidates, second.candidates);
    assert_eq!(
        router.cache_stats(),
        semroute::router::CacheStats { hits: 1, misses: 1 }
    );
    // Capacity 2: two other prompts evict the first, which then misses again.
    route("hello there");
    route("what's 2 + 2");
    route("how do I get a refund for a double charge?");
    assert_eq!(
        router.cache_stats(),
        semroute::router::CacheStats { hits: 1, misses: 4 }
    );

    let mut off = semroute::config::load_file(&common::repo().join("routes.yaml"))
        .unwrap()
        .config;
    off.encoder.cache_size = 0;
    let router = semroute::router::Router::build(common::embedder().clone(), off).unwrap();
    rt.block_on(router.route(semroute::router::RouteQuery {
        text: "hi".into(),
        ..Default::default()
    }))
    .unwrap();
    rt.block_on(router.route(semroute::router::RouteQuery {
        text: "hi".into(),
        ..Default::default()
    }))
    .unwrap();
    assert_eq!(
        router.cache_stats(),
        semroute::router::CacheStats { hits: 0, misses: 0 }
    );
}
