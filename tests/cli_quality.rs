//! `semroute eval`, `calibrate` and `dataset` end to end through the binary, on a tiny route set (real model).

mod common;

use std::process::Command;

const ROUTES: &str = "# tiny route set\nencoder:\n  model: all-MiniLM-L6-v2\nmatching:\n  threshold: 0.9   # far too strict: calibration must lower it\nroutes:\n  - name: weather\n    utterances: [what's the weather tomorrow, will it rain today, how hot is it outside]\n  - name: music\n    threshold: 0.8\n    utterances: [play some jazz, put on my workout playlist, skip this song]\n";

const DEV: &str = r#"{"text": "is it going to snow this weekend", "label": "weather"}
{"text": "what's the temperature right now", "label": "weather"}
{"text": "play something by the beatles", "label": "music"}
{"text": "next track please", "label": "music"}
{"text": "how do I file my taxes", "label": null}
{"text": "explain the theory of relativity", "label": null}
"#;

fn semroute(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    common::model_dir(); // fetched
    Command::new(env!("CARGO_BIN_EXE_semroute"))
        .args(args)
        .current_dir(dir)
        .env("SEMROUTE_MODELS_DIR", common::repo().join("models"))
        .env("SEMROUTE_LOG", "warn")
        .output()
        .unwrap()
}

#[test]
fn calibrate_then_eval() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("routes.yaml"), ROUTES).unwrap();
    std::fs::write(d.join("dev.jsonl"), DEV).unwrap();

    // Before calibration nothing clears 0.9: the gate fails with a non-zero exit.
    let out = semroute(
        d,
        &[
            "eval",
            "--config",
            "routes.yaml",
            "--data",
            "dev.jsonl",
            "--min-accuracy",
            "0.5",
        ],
    );
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let out = semroute(
        d,
        &[
            "calibrate",
            "--config",
            "routes.yaml",
            "--data",
            "dev.jsonl",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("before:") && stdout.contains("after"),
        "{stdout}"
    );
    let edited = std::fs::read_to_string(d.join("routes.yaml")).unwrap();
    assert_eq!(
        std::fs::read_to_string(d.join("routes.yaml.bak")).unwrap(),
        ROUTES
    );
    // Edited in place: comments kept, the route override removed, the global threshold lowered.
    assert!(edited.starts_with("# tiny route set\n"), "{edited}");
    assert!(edited.contains("# far too strict"), "{edited}");
    let c = semroute::config::parse_str(&edited, "edited").unwrap();
    assert!(c.matching.threshold < 0.9);
    assert_eq!(c.routes[1].threshold, None);

    let out = semroute(
        d,
        &[
            "eval",
            "--config",
            "routes.yaml",
            "--data",
            "dev.jsonl",
            "--json",
            "--min-accuracy",
            "0.75",
            "--latency-samples",
            "2",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["in_scope"], 4);
    assert_eq!(v["out_of_scope"], 2);
    assert!(v["in_scope_accuracy"].as_f64().unwrap() >= 0.75);
    assert!(v["routes"].as_array().unwrap().len() == 2);
    assert!(v["latency"]["route_ms_p50"].as_f64().is_some());
}

#[test]
fn dataset_writes_the_recipe() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("data_full.json");
    std::fs::write(
        &src,
        r#"{"train": [["a1","A"],["b1","B"],["a2","A"]], "val": [["av","A"]], "oos_val": [["ov","oos"]],
            "test": [["bt","B"]], "oos_test": [["ot","oos"]], "oos_train": [["on","oos"]]}"#,
    )
    .unwrap();
    let out = semroute(
        dir.path(),
        &[
            "dataset",
            "clinc150",
            "--data",
            "data_full.json",
            "--k",
            "1",
            "--out",
            "out",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c = semroute::config::load_file(&dir.path().join("out/routes.yaml")).unwrap();
    assert_eq!(c.config.routes.len(), 2);
    assert_eq!(c.config.routes[0].utterances, vec!["a1"]);
    let test = std::fs::read_to_string(dir.path().join("out/test.jsonl")).unwrap();
    assert_eq!(
        test,
        "{\"text\":\"bt\",\"label\":\"B\"}\n{\"text\":\"ot\",\"label\":null}\n"
    );
    assert!(c.config.out_of_scope.is_empty());
    let negatives = semroute(
        dir.path(),
        &[
            "dataset",
            "clinc150",
            "--data",
            "data_full.json",
            "--out",
            "neg",
            "--oos-negatives",
        ],
    );
    assert!(negatives.status.success());
    let n = semroute::config::load_file(&dir.path().join("neg/routes.yaml")).unwrap();
    assert_eq!(n.config.out_of_scope, vec!["on"]);
    assert_eq!(n.config.routes[0].utterances, vec!["a1", "a2"]);
    let bad = semroute(
        dir.path(),
        &[
            "dataset",
            "clinc150",
            "--data",
            "data_full.json",
            "--k",
            "zero",
            "--out",
            "o2",
        ],
    );
    assert!(!bad.status.success());
}

#[test]
fn tune_writes_a_model_the_config_then_uses() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("routes.yaml"), ROUTES).unwrap();
    std::fs::write(d.join("dev.jsonl"), DEV).unwrap();
    let tune = |out: &str| {
        semroute(
            d,
            &[
                "tune",
                "--config",
                "routes.yaml",
                "--out",
                out,
                "--epochs",
                "2",
                "--set-model",
            ],
        )
    };
    let out = tune("models/tuned");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("on 6 utterances of 2 routes"), "{stdout}");
    assert!(stdout.contains("epoch 2: loss"), "{stdout}");
    assert!(d.join("models/tuned/model.safetensors").is_file());
    // encoder.model now names the folder, relative to the config; the file keeps its comments.
    let config = std::fs::read_to_string(d.join("routes.yaml")).unwrap();
    assert!(config.contains("  model: models/tuned\n"), "{config}");
    assert!(config.starts_with("# tiny route set\n"), "{config}");
    assert!(d.join("routes.yaml.bak").is_file());

    // The tuned model serves: eval runs on it and reports it.
    let out = semroute(
        d,
        &["eval", "--config", "routes.yaml", "--data", "dev.jsonl"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("in-scope accuracy"), "{stdout}");

    // A folder that is not a tuning's output is refused with a clear message and left alone.
    std::fs::create_dir(d.join("other")).unwrap();
    std::fs::write(d.join("other/keep.txt"), "x").unwrap();
    let out = tune("other");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("refusing to replace it"), "{stderr}");
    assert!(d.join("other/keep.txt").is_file());
}

/// Without `--data`, calibration uses the config's own examples (each exemplar left out in turn, and the
/// `out_of_scope` list), and the threshold it writes holds on the dev queries it never saw.
#[test]
fn calibrate_from_the_config_alone() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let routes = format!(
        "{ROUTES}out_of_scope: [how do I file my taxes this year, what is the meaning of life, who wrote Hamlet]\n"
    );
    std::fs::write(d.join("routes.yaml"), &routes).unwrap();
    std::fs::write(d.join("dev.jsonl"), DEV).unwrap();
    let out = semroute(d, &["calibrate", "--config", "routes.yaml"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(
            "the config's own examples (each of 6 exemplars left out in turn, 3 out_of_scope)"
        ),
        "{stdout}"
    );
    let c = semroute::config::parse_str(
        &std::fs::read_to_string(d.join("routes.yaml")).unwrap(),
        "edited",
    )
    .unwrap();
    assert!(c.matching.threshold < 0.8, "{}", c.matching.threshold);
    let out = semroute(
        d,
        &[
            "eval",
            "--config",
            "routes.yaml",
            "--data",
            "dev.jsonl",
            "--min-accuracy",
            "0.75",
            "--latency-samples",
            "0",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // `late` needs token-level evidence per left-out exemplar, which is not built: a clear refusal.
    std::fs::write(
        d.join("late.yaml"),
        routes.replace("matching:\n", "matching:\n  aggregation: late\n"),
    )
    .unwrap();
    let out = semroute(d, &["calibrate", "--config", "late.yaml", "--dry-run"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not supported for `aggregation: late`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
