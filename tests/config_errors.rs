//! Every config error names file:line:column and the field; `semroute check` exits non-zero with it.

use std::process::Command;

use semroute::config::parse_str;

fn err(yaml: &str) -> String {
    parse_str(yaml, "routes.yaml").unwrap_err().to_string()
}

const ROUTES: &str = "routes:\n  - name: a\n    utterances: [hello there]\n";

#[test]
fn duplicate_route_names() {
    let e = err("routes:\n  - name: a\n    utterances: [x]\n  - name: a\n    utterances: [y]\n");
    assert_eq!(
        e,
        "routes.yaml:4:11: routes[1].name: duplicate route name `a`"
    );
}

#[test]
fn blank_and_empty_utterances() {
    let e = err("routes:\n  - name: a\n    utterances:\n      - fine\n      - \"   \"\n");
    assert_eq!(
        e,
        "routes.yaml:5:9: routes[0].utterances[1]: blank utterance in route `a`"
    );
    let e = err("routes:\n  - name: a\n    utterances: []\n");
    assert_eq!(
        e,
        "routes.yaml:3:17: routes[0].utterances: route `a` has no utterances"
    );
}

#[test]
fn thresholds_outside_range() {
    let e = err(&format!("matching:\n  threshold: 1.5\n{ROUTES}"));
    assert!(
        e.starts_with("routes.yaml:2:14: matching.threshold: threshold 1.5 is outside [-1, 1]"),
        "{e}"
    );
    let e = err("routes:\n  - name: a\n    threshold: -2\n    utterances: [x]\n");
    assert!(
        e.starts_with("routes.yaml:3:16: routes[0].threshold:"),
        "{e}"
    );
}

#[test]
fn unknown_default_route() {
    let e = err(&format!("default_route: nope\n{ROUTES}"));
    assert_eq!(
        e,
        "routes.yaml:1:16: default_route: unknown route `nope` (routes: a)"
    );
}

#[test]
fn unknown_fields_everywhere() {
    let e = err(&format!("matching:\n  treshold: 0.5\n{ROUTES}"));
    assert!(
        e.starts_with("routes.yaml:2:3: matching: unknown field `treshold`"),
        "{e}"
    );
    let e = err("routes:\n  - name: a\n    utterance: [x]\n");
    assert!(
        e.starts_with("routes.yaml:3:5: routes[0]: unknown field `utterance`"),
        "{e}"
    );
    let e = err(&format!("colour: blue\n{ROUTES}"));
    assert!(
        e.starts_with("routes.yaml:1:1: unknown field `colour`"),
        "{e}"
    );
}

#[test]
fn yaml_syntax_and_types() {
    let e = err("routes:\n  - name: a\n    utterances: [unclosed\n");
    assert!(e.starts_with("routes.yaml:"), "{e}");
    let pos: Vec<&str> = e.split(':').take(3).collect();
    assert!(pos[1].parse::<usize>().unwrap() >= 3, "{e}");
    let e = err("matching:\n  top_k: many\nroutes: []\n");
    assert!(
        e.starts_with("routes.yaml:2:10: matching.top_k: invalid type"),
        "{e}"
    );
}

/// Syntax errors say what is wrong in words, with the position once, up front.
#[test]
fn yaml_syntax_errors_in_words() {
    let tab = err("routes:\n\t- name: a\n");
    assert!(tab.starts_with("routes.yaml:2:"), "{tab}");
    assert!(tab.contains("a tab character"), "{tab}");
    let indent = err("routes:\n  - name: a\n    utterances: [x]\n   threshold: 0.3\n");
    assert!(indent.contains("indentation"), "{indent}");
    let colon = err("routes:\n  - name: a: b\n    utterances: [x]\n");
    assert!(colon.contains("quote"), "{colon}");
    for e in [&tab, &indent, &colon] {
        assert_eq!(
            e.matches(" at line ").count(),
            0,
            "the position is printed once: {e}"
        );
    }
}

#[test]
fn other_rules() {
    let e = err("routes: []\n");
    assert_eq!(e, "routes.yaml:1:9: routes: at least one route is required");
    let e = err(&format!("encoder:\n  device: gpu\n{ROUTES}"));
    assert!(
        e.starts_with("routes.yaml:2:11: encoder.device: unknown device `gpu`"),
        "{e}"
    );
    let e = err(&format!("matching:\n  top_k: 0\n{ROUTES}"));
    assert!(e.starts_with("routes.yaml:2:10: matching.top_k:"), "{e}");
    let e = err(&format!("matching:\n  aggregation: median\n{ROUTES}"));
    assert!(
        e.starts_with("routes.yaml:2:16: matching.aggregation: unknown variant `median`"),
        "{e}"
    );
    let e = err(&format!("encoder:\n  precision: int4\n{ROUTES}"));
    assert!(
        e.starts_with("routes.yaml:2:14: encoder.precision: unknown variant `int4`")
            && e.contains("`int8-fast`"),
        "{e}"
    );
}

#[test]
fn precision_names_parse_and_int8_fast_is_the_default() {
    use semroute::config::Precision;
    let precision = |yaml: &str| parse_str(yaml, "routes.yaml").unwrap().encoder.precision;
    assert_eq!(precision(ROUTES), Precision::Int8Fast);
    for (name, want) in [
        ("f32", Precision::F32),
        ("int8", Precision::Int8),
        ("int8-fast", Precision::Int8Fast),
        ("bf16", Precision::Bf16),
    ] {
        assert_eq!(
            precision(&format!("encoder:\n  precision: {name}\n{ROUTES}")),
            want
        );
        assert_eq!(want.name(), name);
    }
}

#[test]
fn shipped_routes_yaml_is_valid_and_rich() {
    let loaded = semroute::config::load_file(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("routes.yaml"),
    )
    .unwrap();
    let c = loaded.config;
    assert!(c.routes.len() >= 9);
    for r in &c.routes {
        assert!(
            r.utterances.len() >= 10,
            "route {} has {} utterances",
            r.name,
            r.utterances.len()
        );
    }
}

#[test]
fn check_command_reports_position_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "routes:\n  - name: a\n    utterances: [x]\n  - name: a\n    utterances: [y]\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_semroute"))
        .args(["check", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.yaml:4:11: routes[1].name: duplicate route name `a`"),
        "{stderr}"
    );

    let good = dir.path().join("good.yaml");
    std::fs::write(&good, ROUTES).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_semroute"))
        .args(["check", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The env fallback works too.
    let out = Command::new(env!("CARGO_BIN_EXE_semroute"))
        .arg("check")
        .env("SEMROUTE_CONFIG", &bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn shipped_routes_yaml_round_trips_through_admin_serialisation() {
    // Admin changes persist the config by serialising it; what they write must load back unchanged.
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("routes.yaml");
    let original = semroute::config::load_file(&path).unwrap().config;
    let written = semroute::config::to_yaml(&original);
    let reloaded = parse_str(&written, "written.yaml").unwrap();
    assert_eq!(reloaded, original);
}

#[test]
fn guard_and_rules_errors_point_at_their_field() {
    let e = err(&format!(
        "guard:\n  detectors:\n    cards: redact\n{ROUTES}"
    ));
    assert!(
        e.starts_with("routes.yaml:3:12: guard.detectors.cards: unknown detector `cards`"),
        "{e}"
    );
    let e = err(&format!(
        "guard:\n  custom:\n    - name: emp\n      pattern: \"EMP-(\"\n      action: redact\n{ROUTES}"
    ));
    assert!(
        e.starts_with("routes.yaml:4:16: guard.custom[0].pattern: does not compile"),
        "{e}"
    );
    let e = err(&format!(
        "guard:\n  detectors: {{ email: shred }}\n{ROUTES}"
    ));
    assert!(e.contains("shred"), "{e}");
    let e = err(&format!(
        "rules:\n  - name: r\n    when: {{ route: nope }}\n    strategy: cheapest\n{ROUTES}"
    ));
    assert!(
        e.starts_with("routes.yaml:3:20: rules[0].when.route: unknown route `nope`"),
        "{e}"
    );
    let e = err(&format!(
        "rules:\n  - name: r\n    when: {{ tier: free }}\n    refuse: no\n{ROUTES}"
    ));
    assert!(e.contains("tier"), "an unknown condition is refused: {e}");
    let e = err(&format!(
        "rules:\n  - name: r\n    targets: [ghost]\n{ROUTES}"
    ));
    assert!(
        e.starts_with("routes.yaml:3:15: rules[0].targets[0]: unknown model `ghost`"),
        "{e}"
    );
    let e = err(&format!("rules:\n  - name: r\n    when: {{}}\n{ROUTES}"));
    assert!(
        e.starts_with("routes.yaml:2:5: rules[0]: does nothing"),
        "{e}"
    );
    let e = err(&format!(
        "rules:\n  - name: r\n    refuse: go away\n  - name: r\n    refuse: again\n{ROUTES}"
    ));
    assert!(
        e.starts_with("routes.yaml:4:11: rules[1].name: rule `r` is declared twice"),
        "{e}"
    );
}
