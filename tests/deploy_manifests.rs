//! The deployment files in `deploy/` against the code they deploy. No container engine or cluster runs
//! here, so this test does what it can without one:
//!
//! - renders the kustomize base and the Redis overlay (plain `resources`, as `kustomize build` would) and
//!   checks their structure: selectors against labels, Service target ports against container ports, the
//!   HPA's target, the PDB against the HPA's floor, security contexts, resources against the thread count;
//! - reads the Dockerfile and checks it against the Deployment (ports, user, health check, model path);
//! - starts the real `semroute` binary as the pod would run it: the Deployment's args and env, the
//!   ConfigMap and Secrets written where their volumes mount, the image's working directory, environment
//!   and model folder, all re-rooted in a temporary folder, the listen addresses moved to free loopback
//!   ports. Then it calls the liveness and readiness probes, the Prometheus scrape the annotations name and
//!   the Docker HEALTHCHECK command, so a probe path, port or mount that drifts from the code fails here.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_yaml::Value;

fn deploy_dir() -> PathBuf {
    common::repo().join("deploy")
}

fn base_dir() -> PathBuf {
    deploy_dir().join("k8s/base")
}

fn overlay_dir() -> PathBuf {
    deploy_dir().join("k8s/overlays/redis")
}

// ---------------------------------------------------------------------------------------------------
// YAML access

/// Every document of a (multi-document) YAML file; empty documents are skipped.
fn yaml_docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|v| !v.is_null())
        .collect()
}

/// The value at a dotted path (`spec.template.spec`); `Null` when any step is missing.
fn at<'a>(v: &'a Value, path: &str) -> &'a Value {
    static NULL: Value = Value::Null;
    path.split('.')
        .try_fold(v, |v, k| v.get(k))
        .unwrap_or(&NULL)
}

fn s<'a>(v: &'a Value, path: &str) -> &'a str {
    at(v, path)
        .as_str()
        .unwrap_or_else(|| panic!("`{path}` is not a string in {v:?}"))
}

fn seq<'a>(v: &'a Value, path: &str) -> &'a [Value] {
    at(v, path).as_sequence().map_or(&[], Vec::as_slice)
}

/// A string-to-string mapping (labels, selectors, ConfigMap data).
fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_mapping()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(s) => s.clone(),
                        other => panic!("`{k:?}` is not a string: {other:?}"),
                    };
                    (k.as_str().unwrap().to_string(), v)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `selector` picks pods labelled `labels` (every selector pair present).
fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

// ---------------------------------------------------------------------------------------------------
// Rendering

/// One object of a rendered kustomization, with the file it came from.
#[derive(Debug, Clone)]
struct Object {
    file: PathBuf,
    doc: Value,
}

impl Object {
    fn kind(&self) -> &str {
        s(&self.doc, "kind")
    }
    fn name(&self) -> &str {
        s(&self.doc, "metadata.name")
    }
}

/// What `kustomize build DIR` outputs for the kustomizations used here: the objects of every `resources`
/// entry, in order, directories recursively, then every `patches` entry (`path:` only) merged into the
/// object of its kind and name (strategic merge for the maps used here: keys merge, other values
/// replace). Anything else in a kustomization (generators, name prefixes, other patch forms) would change
/// the output in ways this does not model, so it is refused rather than ignored.
fn render(dir: &Path) -> Vec<Object> {
    let path = dir.join("kustomization.yaml");
    let docs = yaml_docs(&path);
    assert_eq!(docs.len(), 1, "{}: one document", path.display());
    let k = &docs[0];
    assert_eq!(s(k, "apiVersion"), "kustomize.config.k8s.io/v1beta1");
    assert_eq!(s(k, "kind"), "Kustomization");
    for key in k.as_mapping().unwrap().keys() {
        let key = key.as_str().unwrap();
        assert!(
            ["apiVersion", "kind", "resources", "patches"].contains(&key),
            "{}: `{key}` is not modelled by this test's renderer; teach render() what it does",
            path.display()
        );
    }
    let mut out = Vec::new();
    for r in seq(k, "resources") {
        let r = dir.join(r.as_str().unwrap());
        if r.is_dir() {
            out.extend(render(&r));
        } else {
            assert!(
                r.is_file(),
                "{}: resource {} is missing",
                path.display(),
                r.display()
            );
            for doc in yaml_docs(&r) {
                out.push(Object {
                    file: r.clone(),
                    doc,
                });
            }
        }
    }
    if let Some(patches) = k.get("patches") {
        for p in patches.as_sequence().unwrap() {
            let keys: Vec<_> = p.as_mapping().unwrap().keys().collect();
            assert_eq!(
                keys,
                ["path"],
                "{}: only `path:` patches are modelled",
                path.display()
            );
            let file = dir.join(s(p, "path"));
            for patch in yaml_docs(&file) {
                let target = out
                    .iter_mut()
                    .find(|o| {
                        o.kind() == s(&patch, "kind") && o.name() == s(&patch, "metadata.name")
                    })
                    .unwrap_or_else(|| panic!("{}: patches nothing", file.display()));
                merge(&mut target.doc, &patch);
            }
        }
    }
    out
}

/// Strategic merge as kustomize does it for maps of scalars and maps: keys merge, everything else is
/// replaced.
fn merge(into: &mut Value, patch: &Value) {
    match (into, patch) {
        (Value::Mapping(a), Value::Mapping(b)) => {
            for (k, v) in b {
                match a.get_mut(k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        a.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (a, b) => *a = b.clone(),
    }
}

fn find<'a>(objects: &'a [Object], kind: &str, name: &str) -> &'a Object {
    let found: Vec<_> = objects
        .iter()
        .filter(|o| o.kind() == kind && o.name() == name)
        .collect();
    assert_eq!(found.len(), 1, "exactly one {kind} `{name}`: {found:?}");
    found[0]
}

fn of_kind<'a>(objects: &'a [Object], kind: &str) -> Vec<&'a Object> {
    objects.iter().filter(|o| o.kind() == kind).collect()
}

// ---------------------------------------------------------------------------------------------------
// The Deployment's container

/// The router's Deployment and its one container.
struct Router {
    deployment: Value,
    container: Value,
}

fn router(objects: &[Object]) -> Router {
    let deployment = find(objects, "Deployment", "semroute").doc.clone();
    let containers = seq(&deployment, "spec.template.spec.containers");
    assert_eq!(containers.len(), 1, "one container");
    Router {
        container: containers[0].clone(),
        deployment,
    }
}

impl Router {
    fn pod_labels(&self) -> BTreeMap<String, String> {
        string_map(at(&self.deployment, "spec.template.metadata.labels"))
    }

    fn args(&self) -> Vec<String> {
        seq(&self.container, "args")
            .iter()
            .map(|a| {
                a.as_str()
                    .unwrap_or_else(|| panic!("args must be strings (quote numbers): {a:?}"))
                    .to_string()
            })
            .collect()
    }

    /// containerPort by port name.
    fn ports(&self) -> BTreeMap<String, u16> {
        seq(&self.container, "ports")
            .iter()
            .map(|p| {
                assert_eq!(at(p, "protocol").as_str().unwrap_or("TCP"), "TCP");
                (
                    s(p, "name").to_string(),
                    at(p, "containerPort").as_u64().unwrap() as u16,
                )
            })
            .collect()
    }

    /// A probe's or Service's port (a name or a number) as a containerPort; panics when the container
    /// declares no such port.
    fn resolve_port(&self, port: &Value) -> u16 {
        let ports = self.ports();
        match port {
            Value::Number(n) => {
                let n = n.as_u64().unwrap() as u16;
                assert!(
                    ports.values().any(|p| *p == n),
                    "port {n} is not a containerPort ({ports:?})"
                );
                n
            }
            Value::String(name) => *ports
                .get(name)
                .unwrap_or_else(|| panic!("no containerPort is named `{name}` ({ports:?})")),
            other => panic!("a port is a name or a number: {other:?}"),
        }
    }

    /// volume name -> mountPath.
    fn mounts(&self) -> BTreeMap<String, (String, bool)> {
        seq(&self.container, "volumeMounts")
            .iter()
            .map(|m| {
                assert!(
                    at(m, "subPath").is_null(),
                    "subPath mounts never see ConfigMap/Secret updates (--watch, keys reload): {m:?}"
                );
                (
                    s(m, "name").to_string(),
                    (
                        s(m, "mountPath").to_string(),
                        at(m, "readOnly").as_bool().unwrap_or(false),
                    ),
                )
            })
            .collect()
    }

    fn volume(&self, name: &str) -> &Value {
        seq(&self.deployment, "spec.template.spec.volumes")
            .iter()
            .find(|v| s(v, "name") == name)
            .unwrap_or_else(|| panic!("no volume `{name}`"))
    }
}

/// The value of `--flag` in `args` (`--flag value` or `--flag=value`).
fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    let eq = format!("{name}=");
    args.iter().enumerate().find_map(|(i, a)| {
        if a == name {
            Some(
                args.get(i + 1)
                    .unwrap_or_else(|| panic!("{name} has no value"))
                    .as_str(),
            )
        } else {
            a.strip_prefix(&eq)
        }
    })
}

/// The serve flags that take a listen address, and the port name the Deployment must give each.
const LISTEN_FLAGS: [(&str, &str); 3] = [
    ("--listen", "grpc"),
    ("--http-listen", "http"),
    ("--metrics-listen", "metrics"),
];

/// CPU in millicores, memory in bytes, from Kubernetes quantities.
fn quantity(q: &Value) -> f64 {
    let q = match q {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => panic!("not a quantity: {other:?}"),
    };
    let units: [(&str, f64); 8] = [
        ("Ki", 1024.0),
        ("Mi", 1024.0 * 1024.0),
        ("Gi", 1024.0 * 1024.0 * 1024.0),
        ("m", 1.0),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("", 1000.0),
    ];
    for (suffix, factor) in units {
        if let Some(n) = q.strip_suffix(suffix) {
            if let Ok(n) = n.parse::<f64>() {
                // A bare number is whole cores (for CPU) or bytes (for memory); callers know which.
                return if suffix.is_empty() { n } else { n * factor };
            }
        }
    }
    panic!("not a quantity: {q}")
}

fn cpu_millis(q: &Value) -> f64 {
    match q {
        Value::String(s) if s.ends_with('m') => quantity(q),
        _ => quantity(q) * 1000.0,
    }
}

// ---------------------------------------------------------------------------------------------------
// The Dockerfile

/// One instruction: keyword (upper case) and its arguments, continuation lines joined.
#[derive(Debug, Clone)]
struct Instruction {
    keyword: String,
    args: String,
}

/// The Dockerfile's stages, each a list of instructions, `FROM` first.
fn dockerfile() -> Vec<Vec<Instruction>> {
    let text = std::fs::read_to_string(deploy_dir().join("Dockerfile")).unwrap();
    let mut lines = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && current.is_empty()) {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(t);
                lines.push(std::mem::take(&mut current));
            }
        }
    }
    let mut stages: Vec<Vec<Instruction>> = Vec::new();
    for l in lines {
        let (keyword, args) = l.split_once(char::is_whitespace).unwrap_or((&l, ""));
        let ins = Instruction {
            keyword: keyword.to_ascii_uppercase(),
            args: args.trim().to_string(),
        };
        if ins.keyword == "FROM" {
            stages.push(vec![ins]);
        } else if let Some(stage) = stages.last_mut() {
            stage.push(ins);
        } else {
            assert_eq!(ins.keyword, "ARG", "only ARG may precede the first FROM");
        }
    }
    stages
}

fn stage_named<'a>(stages: &'a [Vec<Instruction>], name: &str) -> &'a [Instruction] {
    stages
        .iter()
        .find(|st| {
            st[0]
                .args
                .to_ascii_lowercase()
                .ends_with(&format!(" as {name}"))
        })
        .unwrap_or_else(|| panic!("no stage `{name}`"))
}

fn last<'a>(stage: &'a [Instruction], keyword: &str) -> Option<&'a Instruction> {
    stage.iter().rev().find(|i| i.keyword == keyword)
}

/// An exec-form (JSON array) instruction's arguments.
fn exec_form(ins: &Instruction) -> Vec<String> {
    serde_json::from_str(&ins.args).unwrap_or_else(|e| {
        panic!(
            "{} must be in exec (JSON) form: {e}: {}",
            ins.keyword, ins.args
        )
    })
}

/// The runtime stage, as the pod emulation needs it.
struct Image {
    workdir: PathBuf,
    user: u32,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    env: BTreeMap<String, String>,
    expose: BTreeSet<u16>,
    /// HEALTHCHECK's command (after `CMD`).
    healthcheck: Vec<String>,
    /// Destination of the model folder copied from the model stage.
    model_dest: PathBuf,
    /// Destination of the binary copied from the builder stage.
    binary_dest: String,
}

fn image() -> Image {
    let stages = dockerfile();
    assert!(stages.len() >= 3, "model, builder and runtime stages");
    let rt = stages.last().unwrap();
    let user = last(rt, "USER")
        .expect("the runtime stage sets USER")
        .args
        .clone();
    let uid = user.split(':').next().unwrap();
    let user: u32 = uid.parse().unwrap_or_else(|_| {
        panic!("USER must be numeric (runAsNonRoot can only verify a number): {uid}")
    });
    let workdir = PathBuf::from(&last(rt, "WORKDIR").expect("WORKDIR").args);
    let mut env = BTreeMap::new();
    for ins in rt.iter().filter(|i| i.keyword == "ENV") {
        for pair in ins.args.split_whitespace() {
            let (k, v) = pair
                .split_once('=')
                .unwrap_or_else(|| panic!("ENV in KEY=VALUE form: {pair}"));
            env.insert(k.to_string(), v.trim_matches('"').to_string());
        }
    }
    let expose = rt
        .iter()
        .filter(|i| i.keyword == "EXPOSE")
        .flat_map(|i| i.args.split_whitespace())
        .map(|p| p.trim_end_matches("/tcp").parse().unwrap())
        .collect();
    let hc = last(rt, "HEALTHCHECK").expect("a HEALTHCHECK").args.clone();
    let hc_cmd = hc
        .split_once("CMD ")
        .expect("HEALTHCHECK ... CMD [...]")
        .1
        .trim();
    let healthcheck: Vec<String> = serde_json::from_str(hc_cmd)
        .unwrap_or_else(|e| panic!("HEALTHCHECK CMD in exec form (no shell in the image): {e}"));
    let copy_from = |stage: &str| {
        rt.iter()
            .filter(|i| i.keyword == "COPY")
            .filter_map(|i| {
                let words: Vec<&str> = i.args.split_whitespace().collect();
                words
                    .contains(&format!("--from={stage}").as_str())
                    .then(|| {
                        (
                            words[words.len() - 2].to_string(),
                            words[words.len() - 1].to_string(),
                        )
                    })
            })
            .collect::<Vec<_>>()
    };
    let model = copy_from("model");
    assert_eq!(model.len(), 1, "one COPY --from=model");
    let binary_dest = copy_from("builder")
        .into_iter()
        .find(|(src, _)| src.ends_with("/semroute"))
        .expect("the binary is copied from the builder stage")
        .1;
    Image {
        workdir,
        user,
        entrypoint: exec_form(last(rt, "ENTRYPOINT").expect("ENTRYPOINT")),
        cmd: exec_form(last(rt, "CMD").expect("CMD")),
        env,
        expose,
        healthcheck,
        model_dest: PathBuf::from(&model[0].1),
        binary_dest,
    }
}

// ---------------------------------------------------------------------------------------------------
// Static checks

#[test]
fn kustomizations_list_every_manifest_and_nothing_else() {
    for dir in [base_dir(), overlay_dir()] {
        let k = &yaml_docs(&dir.join("kustomization.yaml"))[0];
        let patches = k.get("patches").and_then(Value::as_sequence);
        let listed: BTreeSet<String> = seq(k, "resources")
            .iter()
            .chain(patches.into_iter().flatten().map(|p| at(p, "path")))
            .map(|r| r.as_str().unwrap().to_string())
            .filter(|r| dir.join(r).is_file())
            .collect();
        let on_disk: BTreeSet<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
            .collect();
        assert_eq!(
            listed,
            on_disk,
            "{}: a manifest not applied, or a listed file missing",
            dir.display()
        );
        for o in render(&dir) {
            for key in ["apiVersion", "kind", "metadata.name"] {
                assert!(
                    at(&o.doc, key).is_string(),
                    "{}: no {key}",
                    o.file.display()
                );
            }
            // The namespace comes from the overlay (or kubectl -n), never hard-coded in the base.
            assert!(
                at(&o.doc, "metadata.namespace").is_null(),
                "{}",
                o.file.display()
            );
        }
    }
    let base = render(&base_dir());
    let kinds: BTreeSet<&str> = base.iter().map(Object::kind).collect();
    for kind in [
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "ConfigMap",
        "Secret",
        "ServiceAccount",
    ] {
        assert!(kinds.contains(kind), "the base has a {kind}");
    }
}

#[test]
fn selectors_and_service_ports_match_the_deployment() {
    let base = render(&base_dir());
    let r = router(&base);
    let labels = r.pod_labels();
    let selector = string_map(at(&r.deployment, "spec.selector.matchLabels"));
    assert!(
        selects(&selector, &labels),
        "the Deployment selects its own pods"
    );

    let services = of_kind(&base, "Service");
    assert_eq!(services.len(), 2, "a ClusterIP Service and a headless one");
    let mut headless = 0;
    for svc in &services {
        let d = &svc.doc;
        assert!(
            selects(&string_map(at(d, "spec.selector")), &labels),
            "Service {} selects the router's pods",
            svc.name()
        );
        for p in seq(d, "spec.ports") {
            let target = r.resolve_port(at(p, "targetPort"));
            // Named target ports keep the Service right when a container port number changes.
            assert_eq!(
                r.resolve_port(&Value::String(s(p, "name").to_string())),
                target,
                "Service {} port `{}` targets the container port of the same name",
                svc.name(),
                s(p, "name")
            );
        }
        if at(d, "spec.clusterIP").as_str() == Some("None") {
            headless += 1;
            assert_eq!(
                at(d, "spec.publishNotReadyAddresses").as_bool(),
                Some(false)
            );
            let names: Vec<&str> = seq(d, "spec.ports").iter().map(|p| s(p, "name")).collect();
            assert_eq!(
                names,
                ["grpc"],
                "the headless Service is for gRPC load balancing"
            );
        } else {
            let names: BTreeSet<&str> = seq(d, "spec.ports").iter().map(|p| s(p, "name")).collect();
            assert_eq!(
                names,
                ["grpc", "http", "metrics"].into_iter().collect(),
                "the Service exposes gRPC, HTTP and metrics"
            );
        }
    }
    assert_eq!(headless, 1);

    let pdb = find(&base, "PodDisruptionBudget", "semroute");
    assert!(selects(
        &string_map(at(&pdb.doc, "spec.selector.matchLabels")),
        &labels
    ));
    let hpa = find(&base, "HorizontalPodAutoscaler", "semroute");
    assert_eq!(s(&hpa.doc, "apiVersion"), "autoscaling/v2");
    assert_eq!(s(&hpa.doc, "spec.scaleTargetRef.kind"), "Deployment");
    assert_eq!(s(&hpa.doc, "spec.scaleTargetRef.apiVersion"), "apps/v1");
    assert_eq!(s(&hpa.doc, "spec.scaleTargetRef.name"), "semroute");
    let min = at(&hpa.doc, "spec.minReplicas").as_u64().unwrap();
    let max = at(&hpa.doc, "spec.maxReplicas").as_u64().unwrap();
    assert!(
        min >= 2 && max >= min,
        "no single point of failure: {min}..{max}"
    );
    let unavailable = at(&pdb.doc, "spec.maxUnavailable").as_u64().unwrap();
    assert!(min > unavailable, "a drain leaves a replica serving");
    assert!(
        at(&r.deployment, "spec.replicas").is_null(),
        "the HPA owns the replica count"
    );
    assert_eq!(
        s(&r.deployment, "spec.template.spec.serviceAccountName"),
        find(&base, "ServiceAccount", "semroute").name()
    );
}

#[test]
fn ports_match_the_serve_flags_and_probes_point_at_declared_ports() {
    let base = render(&base_dir());
    let r = router(&base);
    let args = r.args();
    assert!(
        at(&r.container, "command").is_null(),
        "the image's ENTRYPOINT is the binary; the Deployment sets args only"
    );
    assert_eq!(args[0], "serve");
    let ports = r.ports();
    assert_eq!(ports.len(), LISTEN_FLAGS.len());
    for (f, name) in LISTEN_FLAGS {
        let addr: SocketAddr = flag(&args, f)
            .unwrap_or_else(|| panic!("the Deployment sets {f}"))
            .parse()
            .unwrap();
        // The kubelet probes the pod's IP and Services forward to it: loopback would be unreachable.
        assert!(
            addr.ip().is_unspecified(),
            "{f} {addr} binds every interface"
        );
        assert_eq!(
            Some(&addr.port()),
            ports.get(name),
            "{f} is the `{name}` port"
        );
    }
    for probe in ["readinessProbe", "livenessProbe"] {
        let p = at(&r.container, probe);
        assert!(p.is_mapping(), "the container has a {probe}");
        let port = if !at(p, "httpGet").is_null() {
            at(p, "httpGet.port")
        } else if !at(p, "grpc").is_null() {
            at(p, "grpc.port")
        } else {
            panic!("{probe}: only httpGet and grpc probes are checked here")
        };
        r.resolve_port(port);
    }
    let grpc = at(&r.container, "readinessProbe.grpc");
    if !grpc.is_null() {
        assert_eq!(at(grpc, "port").as_u64(), Some(ports["grpc"] as u64));
        assert_eq!(s(grpc, "service"), semroute::grpc::ROUTER_SERVICE_NAME);
    }
    // The scrape annotations name the metrics listener.
    let ann = string_map(at(&r.deployment, "spec.template.metadata.annotations"));
    assert_eq!(ann["prometheus.io/scrape"], "true");
    assert_eq!(ann["prometheus.io/port"], ports["metrics"].to_string());
    assert_eq!(ann["prometheus.io/path"], "/metrics");

    // Every flag the Deployment passes is one `semroute serve` knows (the live test runs them too).
    let help = Command::new(env!("CARGO_BIN_EXE_semroute"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    for a in args.iter().filter(|a| a.starts_with("--")) {
        let name = a.split('=').next().unwrap();
        assert!(
            help.contains(&format!("{name} ")) || help.contains(&format!("{name}\n")),
            "`semroute serve` has no {name}"
        );
    }
}

#[test]
fn config_and_keys_mount_where_the_args_point() {
    let base = render(&base_dir());
    let r = router(&base);
    let args = r.args();
    let mounts = r.mounts();
    // The mount a path lies under, with its volume.
    let mount_of = |path: &str| -> (String, String, bool) {
        mounts
            .iter()
            .filter(|(_, (m, _))| Path::new(path).starts_with(m))
            .max_by_key(|(_, (m, _))| m.len())
            .map(|(v, (m, ro))| (v.clone(), m.clone(), *ro))
            .unwrap_or_else(|| panic!("{path} is on no volume (the root filesystem is read-only)"))
    };
    // No mount inside a ConfigMap or Secret mount: the kubelet cannot create a mount point in those
    // read-only folders.
    for (v, (m, _)) in &mounts {
        for (w, (n, _)) in &mounts {
            if v != w && Path::new(n).starts_with(m) {
                panic!("mount {n} lies inside mount {m}");
            }
        }
    }

    let config = flag(&args, "--config").expect("--config");
    let (vol, mount, ro) = mount_of(config);
    assert!(ro, "the config mount is read-only");
    let cm_name = s(r.volume(&vol), "configMap.name");
    let cm = find(&base, "ConfigMap", cm_name);
    let key = Path::new(config)
        .strip_prefix(&mount)
        .unwrap()
        .to_str()
        .unwrap();
    let data = string_map(at(&cm.doc, "data"));
    let routes = data
        .get(key)
        .unwrap_or_else(|| panic!("ConfigMap {cm_name} has no key `{key}` for --config {config}"));
    // The routes the pod starts with are a valid config, with the same encoder the image ships.
    let parsed = semroute::config::parse_str(routes, "configmap routes.yaml")
        .unwrap_or_else(|e| panic!("the ConfigMap's routes.yaml: {e}"));
    assert_eq!(
        Path::new(&parsed.encoder.model).file_name(),
        image().model_dest.file_name(),
        "encoder.model names the model folder the image carries"
    );
    assert!(
        parsed.providers.iter().all(|p| p.api_key_file.is_none()),
        "provider keys come from the provider-keys Secret as environment variables"
    );

    let keys = flag(&args, "--keys").expect("--keys: client keys in a Secret");
    let (vol, mount, ro) = mount_of(keys);
    assert!(ro);
    let secret_name = s(r.volume(&vol), "secret.secretName");
    let secret = find(&base, "Secret", secret_name);
    let key = Path::new(keys)
        .strip_prefix(&mount)
        .unwrap()
        .to_str()
        .unwrap();
    let file = string_map(at(&secret.doc, "stringData"));
    let file = file
        .get(key)
        .unwrap_or_else(|| panic!("Secret {secret_name} has no key `{key}`"));
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("keys.yaml"), file).unwrap();
    let access = semroute::access::Access::from_file(&tmp.path().join("keys.yaml"))
        .unwrap_or_else(|e| panic!("the example keys file: {e}"));
    assert!(
        access.ring().required,
        "the shipped keys file requires keys"
    );

    // Provider keys: the env Secret carries every api_key_env the ConfigMap's providers name.
    let env_secrets: Vec<&str> = seq(&r.container, "envFrom")
        .iter()
        .map(|e| s(e, "secretRef.name"))
        .collect();
    let provider_env: BTreeSet<String> = env_secrets
        .iter()
        .flat_map(|n| string_map(at(&find(&base, "Secret", n).doc, "stringData")).into_keys())
        .collect();
    for p in &parsed.providers {
        if let Some(var) = &p.api_key_env {
            assert!(provider_env.contains(var), "no Secret entry for {var}");
        }
    }

    // The data directory is writable, on an emptyDir.
    let data_dir =
        flag(&args, "--data-dir").expect("--data-dir (the default is beside the read-only config)");
    let (vol, _, ro) = mount_of(data_dir);
    assert!(!ro && r.volume(&vol).get("emptyDir").is_some());
    // --watch needs a folder mount, which `mounts()` checked (no subPath).
    assert!(args.iter().any(|a| a == "--watch"));
}

#[test]
fn pod_and_image_run_as_non_root_with_a_read_only_root() {
    let base = render(&base_dir());
    let r = router(&base);
    let img = image();
    assert_ne!(img.user, 0, "the image's USER is not root");
    let pod = at(&r.deployment, "spec.template.spec.securityContext");
    assert_eq!(at(pod, "runAsNonRoot").as_bool(), Some(true));
    assert_eq!(
        at(pod, "runAsUser").as_u64(),
        Some(img.user as u64),
        "the pod runs as the image's user"
    );
    assert_eq!(s(pod, "seccompProfile.type"), "RuntimeDefault");
    assert_eq!(
        at(
            &r.deployment,
            "spec.template.spec.automountServiceAccountToken"
        )
        .as_bool(),
        Some(false)
    );
    let c = at(&r.container, "securityContext");
    assert_eq!(at(c, "runAsNonRoot").as_bool(), Some(true));
    assert_eq!(at(c, "readOnlyRootFilesystem").as_bool(), Some(true));
    assert_eq!(at(c, "allowPrivilegeEscalation").as_bool(), Some(false));
    assert_eq!(seq(c, "capabilities.drop"), [Value::String("ALL".into())]);
}

#[test]
fn resources_fit_the_measured_footprint_and_the_thread_count() {
    let base = render(&base_dir());
    let r = router(&base);
    let res = at(&r.container, "resources");
    let cpu_req = cpu_millis(at(res, "requests.cpu"));
    let cpu_lim = cpu_millis(at(res, "limits.cpu"));
    let mem_req = quantity(at(res, "requests.memory"));
    let mem_lim = quantity(at(res, "limits.memory"));
    assert_eq!(
        cpu_req, cpu_lim,
        "Guaranteed QoS: CPU requests equal limits"
    );
    assert_eq!(
        mem_req, mem_lim,
        "Guaranteed QoS: memory requests equal limits"
    );
    // One forward-pass thread per core the container gets.
    let threads: f64 = flag(&r.args(), "--model-threads")
        .expect("--model-threads")
        .parse()
        .unwrap();
    assert_eq!(threads * 1000.0, cpu_req);
    // docs/benchmarks.md: 220 MB resident at the start-up peak with the shipped routes; keep 2x headroom.
    assert!(mem_lim >= 2.0 * 220e6, "memory limit {mem_lim} bytes");
    // The grace period covers the server's 30 s drain plus preStop.
    let grace = at(
        &r.deployment,
        "spec.template.spec.terminationGracePeriodSeconds",
    )
    .as_u64()
    .unwrap();
    let pre_stop = at(&r.container, "lifecycle.preStop.sleep.seconds")
        .as_u64()
        .unwrap_or(0);
    assert!(
        grace >= 30 + pre_stop + 2,
        "terminationGracePeriodSeconds {grace}"
    );
}

#[test]
fn dockerfile_matches_the_deployment() {
    let base = render(&base_dir());
    let r = router(&base);
    let img = image();
    let ports: BTreeSet<u16> = r.ports().into_values().collect();
    assert_eq!(img.expose, ports, "EXPOSE lists the container ports");
    assert_eq!(
        img.entrypoint,
        std::slice::from_ref(&img.binary_dest),
        "ENTRYPOINT is the binary"
    );
    // The image's own CMD serves on the same ports as the Deployment.
    for (f, name) in LISTEN_FLAGS {
        let addr: SocketAddr = flag(&img.cmd, f).unwrap().parse().unwrap();
        assert!(addr.ip().is_unspecified());
        assert_eq!(addr.port(), r.ports()[name], "CMD {f}");
    }
    // HEALTHCHECK: the binary's own probe (no shell, no curl) against a path the HTTP face serves, on
    // the port CMD gives it; the live test runs it.
    assert_eq!(img.healthcheck[0], img.binary_dest);
    assert_eq!(img.healthcheck[1], "probe");
    let url = reqwest::Url::parse(&img.healthcheck[2]).unwrap();
    assert_eq!(url.host_str(), Some("127.0.0.1"));
    assert_eq!(url.port(), Some(r.ports()["http"]));
    // The model: fetched by the repository's script in the model stage, into the folder the runtime
    // stage copies, which $SEMROUTE_MODELS_DIR (or the working directory's models/) finds.
    let stages = dockerfile();
    let model = stage_named(&stages, "model");
    let run = last(model, "RUN").expect("the model stage runs fetch.sh");
    assert!(run.args.contains("models/fetch.sh"), "{}", run.args);
    let models_dir = img.env.get("SEMROUTE_MODELS_DIR").map(PathBuf::from);
    assert!(
        models_dir.as_deref() == img.model_dest.parent()
            || img.model_dest.parent() == Some(&img.workdir.join("models")),
        "the model at {} is where resolution looks",
        img.model_dest.display()
    );
    assert_eq!(img.env.get("HF_HUB_OFFLINE").map(String::as_str), Some("1"));
    // The builder builds what the lock file says.
    let builder = stage_named(&stages, "builder");
    assert!(builder
        .iter()
        .any(|i| i.keyword == "RUN" && i.args.contains("cargo build --release --locked")));

    // The build context leaves out build outputs and model weights (the model is fetched in the build).
    let ignore = std::fs::read_to_string(deploy_dir().join("Dockerfile.dockerignore")).unwrap();
    let rules: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for must in [
        "target",
        ".git",
        "models/*",
        "*.safetensors",
        "!models/fetch.sh",
    ] {
        assert!(
            rules.contains(&must),
            "Dockerfile.dockerignore lacks `{must}`"
        );
    }
}

#[test]
fn envoy_balances_over_the_headless_service() {
    let base = render(&base_dir());
    let r = router(&base);
    let headless = of_kind(&base, "Service")
        .into_iter()
        .find(|s| at(&s.doc, "spec.clusterIP").as_str() == Some("None"))
        .unwrap();
    let envoy = &yaml_docs(&deploy_dir().join("envoy/envoy.yaml"))[0];
    let clusters = seq(envoy, "static_resources.clusters");
    assert_eq!(clusters.len(), 1);
    let c = &clusters[0];
    // STRICT_DNS keeps every address the headless name resolves to (LOGICAL_DNS would keep one).
    assert_eq!(s(c, "type"), "STRICT_DNS");
    let endpoint = &seq(&seq(c, "load_assignment.endpoints")[0], "lb_endpoints")[0];
    let addr = at(endpoint, "endpoint.address.socket_address");
    assert!(
        s(addr, "address").starts_with(&format!("{}.", headless.name())),
        "Envoy resolves the headless Service: {}",
        s(addr, "address")
    );
    let svc_port = seq(&headless.doc, "spec.ports")[0].clone();
    assert_eq!(
        at(addr, "port_value").as_u64(),
        at(&svc_port, "port").as_u64()
    );
    assert_eq!(
        r.resolve_port(at(&svc_port, "targetPort")),
        r.ports()["grpc"]
    );
    // gRPC needs HTTP/2 to the upstream; Envoy speaks HTTP/1.1 to clusters unless told otherwise.
    let h2 = c
        .get("typed_extension_protocol_options")
        .and_then(|o| o.get("envoy.extensions.upstreams.http.v3.HttpProtocolOptions"))
        .and_then(|o| o.get("explicit_http_config"))
        .and_then(|o| o.get("http2_protocol_options"));
    assert!(h2.is_some(), "the cluster speaks HTTP/2 to semroute");
    assert_eq!(
        s(
            &seq(c, "health_checks")[0],
            "grpc_health_check.service_name"
        ),
        semroute::grpc::ROUTER_SERVICE_NAME
    );
}

#[test]
fn redis_overlay_adds_a_reachable_non_root_store() {
    let objects = render(&overlay_dir());
    let base = render(&base_dir());
    assert_eq!(
        objects.len(),
        base.len() + 3,
        "the base plus Deployment, Service, NetworkPolicy"
    );
    let dep = find(&objects, "Deployment", "semroute-redis");
    let labels = string_map(at(&dep.doc, "spec.template.metadata.labels"));
    assert!(selects(
        &string_map(at(&dep.doc, "spec.selector.matchLabels")),
        &labels
    ));
    let svc = find(&objects, "Service", "semroute-redis");
    assert!(selects(&string_map(at(&svc.doc, "spec.selector")), &labels));
    let c = &seq(&dep.doc, "spec.template.spec.containers")[0];
    let port_names: BTreeMap<&str, u64> = seq(c, "ports")
        .iter()
        .map(|p| (s(p, "name"), at(p, "containerPort").as_u64().unwrap()))
        .collect();
    let sp = &seq(&svc.doc, "spec.ports")[0];
    assert_eq!(port_names.get(s(sp, "targetPort")), Some(&6379));
    assert_eq!(
        at(&dep.doc, "spec.template.spec.securityContext.runAsNonRoot").as_bool(),
        Some(true)
    );
    assert_eq!(
        at(c, "securityContext.readOnlyRootFilesystem").as_bool(),
        Some(true)
    );
    // Router pods (and only they) may reach it, by the labels the router's pods really carry.
    let np = find(&objects, "NetworkPolicy", "semroute-redis");
    assert!(selects(
        &string_map(at(&np.doc, "spec.podSelector.matchLabels")),
        &labels
    ));
    let from = string_map(at(
        &seq(&seq(&np.doc, "spec.ingress")[0], "from")[0],
        "podSelector.matchLabels",
    ));
    assert!(selects(&from, &router(&base).pod_labels()));
}

/// A YAML value mentions `word` as a key or inside a string (embedded routes.yaml included); comments
/// are not values, so a note about the key does not count.
fn mentions(v: &Value, word: &str) -> bool {
    match v {
        Value::String(s) => s.contains(word),
        Value::Sequence(items) => items.iter().any(|i| mentions(i, word)),
        Value::Mapping(m) => m
            .iter()
            .any(|(k, v)| mentions(k, word) || mentions(v, word)),
        Value::Tagged(t) => mentions(&t.value, word),
        _ => false,
    }
}

/// The cluster work (issue 21) adds `cluster.redis_url` to the config; the overlay must then point the
/// router at its Redis. This fails on either half alone, so the two land together.
#[test]
fn redis_overlay_wiring_follows_the_config_schema() {
    let base = render(&base_dir());
    let routes = string_map(at(&find(&base, "ConfigMap", "semroute-routes").doc, "data"))
        .remove("routes.yaml")
        .unwrap();
    let with_cluster = format!("{routes}\ncluster:\n  redis_url: redis://semroute-redis:6379\n");
    let schema_has_it = semroute::config::parse_str(&with_cluster, "routes.yaml").is_ok();
    let overlay_sets_it = std::fs::read_dir(overlay_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .any(|p| yaml_docs(&p).iter().any(|d| mentions(d, "redis_url")));
    assert_eq!(
        schema_has_it, overlay_sets_it,
        "config accepts cluster.redis_url: {schema_has_it}; the Redis overlay sets it: {overlay_sets_it}. \
         Patch the overlay's routes (deploy/k8s/overlays/redis) when the schema gains the key."
    );
    // The rendered overlay serves the base's routes, in cluster mode against the overlay's Redis.
    let overlay = render(&overlay_dir());
    let text = string_map(at(
        &find(&overlay, "ConfigMap", "semroute-routes").doc,
        "data",
    ))
    .remove("routes.yaml")
    .unwrap();
    let clustered = semroute::config::parse_str(&text, "overlay routes.yaml").unwrap();
    let plain = semroute::config::parse_str(&routes, "base routes.yaml").unwrap();
    let cluster = clustered
        .cluster
        .clone()
        .expect("the overlay sets cluster:");
    assert_eq!(
        cluster.redis_url.as_deref(),
        Some("redis://semroute-redis:6379")
    );
    let svc = find(&overlay, "Service", "semroute-redis");
    assert_eq!(
        at(&seq(&svc.doc, "spec.ports")[0], "port").as_u64(),
        Some(6379)
    );
    assert_eq!(
        semroute::config::Config {
            cluster: None,
            ..clustered
        },
        plain,
        "the overlay's routes.yaml is the base's plus `cluster:` (the patch repeats it: keep them equal)"
    );
}

// ---------------------------------------------------------------------------------------------------
// The pod, live

/// A loopback port nobody listens on at the moment it is returned.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `path` (absolute, inside the container) under `root`.
fn rerooted(root: &Path, path: &str) -> PathBuf {
    root.join(Path::new(path).strip_prefix("/").unwrap())
}

/// The running binary; killed when dropped, so a failed assertion leaves no process behind.
struct Pod {
    child: Child,
    log: PathBuf,
    _root: tempfile::TempDir,
    root: PathBuf,
    /// Loopback port by container port.
    port: BTreeMap<u16, u16>,
}

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Pod {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn url(&self, container_port: u16, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port[&container_port])
    }
}

/// Lays out the pod's filesystem under a temporary root (the image's working directory and model, every
/// volume where it mounts: ConfigMap and Secret keys as files, emptyDirs as folders), builds its
/// environment (the image's ENV, then the container's env and envFrom Secrets; paths re-rooted) and starts
/// the binary with the Deployment's args, absolute paths re-rooted and listen addresses moved to free
/// loopback ports.
fn start_pod(objects: &[Object], r: &Router, img: &Image) -> Pod {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    std::fs::create_dir_all(rerooted(&root, img.workdir.to_str().unwrap())).unwrap();
    let model = rerooted(&root, img.model_dest.to_str().unwrap());
    std::fs::create_dir_all(model.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(common::model_dir(), &model).unwrap();

    for (vol, (mount, _)) in r.mounts() {
        let dir = rerooted(&root, &mount);
        std::fs::create_dir_all(&dir).unwrap();
        let v = r.volume(&vol);
        let files = if let Some(cm) = v.get("configMap") {
            string_map(at(&find(objects, "ConfigMap", s(cm, "name")).doc, "data"))
        } else if let Some(sec) = v.get("secret") {
            string_map(at(
                &find(objects, "Secret", s(sec, "secretName")).doc,
                "stringData",
            ))
        } else {
            assert!(
                v.get("emptyDir").is_some(),
                "volume {vol}: unsupported kind"
            );
            BTreeMap::new()
        };
        assert!(
            at(v, "configMap.items").is_null() && at(v, "secret.items").is_null(),
            "items are not modelled"
        );
        for (k, text) in files {
            std::fs::write(dir.join(k), text).unwrap();
        }
    }

    let reroot_value = |v: &str| -> String {
        if v.starts_with('/') {
            rerooted(&root, v).display().to_string()
        } else {
            v.to_string()
        }
    };
    let mut env: BTreeMap<String, String> = img
        .env
        .iter()
        .map(|(k, v)| (k.clone(), reroot_value(v)))
        .collect();
    for e in seq(&r.container, "env") {
        env.insert(s(e, "name").to_string(), reroot_value(s(e, "value")));
    }
    for e in seq(&r.container, "envFrom") {
        let secret = find(objects, "Secret", s(e, "secretRef.name"));
        env.extend(string_map(at(&secret.doc, "stringData")));
    }

    let mut port = BTreeMap::new();
    let mut args = r.args();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].clone();
        if LISTEN_FLAGS.iter().any(|(f, _)| *f == a) {
            let addr: SocketAddr = args[i + 1].parse().unwrap();
            let local = free_port();
            port.insert(addr.port(), local);
            args[i + 1] = format!("127.0.0.1:{local}");
            i += 2;
            continue;
        }
        if a.starts_with('/') {
            args[i] = reroot_value(&a);
        }
        i += 1;
    }
    let log = root.join("semroute.log");
    let child = Command::new(env!("CARGO_BIN_EXE_semroute"))
        .args(&args)
        .env_clear()
        .envs(&env)
        .current_dir(rerooted(&root, img.workdir.to_str().unwrap()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    Pod {
        child,
        log,
        _root: tmp,
        root,
        port,
    }
}

/// Runs one probe as the kubelet would; `Ok` when it passes.
async fn run_probe(pod: &Pod, r: &Router, probe: &Value) -> Result<(), String> {
    if let Some(h) = probe.get("httpGet") {
        let port = r.resolve_port(at(h, "port"));
        let url = pod.url(port, s(h, "path"));
        let resp = reqwest::Client::new()
            .get(&url)
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        // The kubelet counts 200..400 as success.
        if (200..400).contains(&resp.status().as_u16()) {
            Ok(())
        } else {
            Err(format!("{url}: {}", resp.status()))
        }
    } else if let Some(g) = probe.get("grpc") {
        use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
        let port = r.resolve_port(at(g, "port"));
        let endpoint = pod.url(port, "");
        let ch = common::channel(&endpoint)
            .await
            .map_err(|e| e.to_string())?;
        let status = HealthClient::new(ch)
            .check(HealthCheckRequest {
                service: at(g, "service").as_str().unwrap_or("").to_string(),
            })
            .await
            .map_err(|e| e.to_string())?
            .into_inner()
            .status;
        if status == 1 {
            Ok(())
        } else {
            Err(format!("gRPC health status {status}"))
        }
    } else {
        Err(format!("unsupported probe {probe:?}"))
    }
}

/// Runs `probe` until it passes, for at most `limit`.
async fn until_passes(pod: &mut Pod, r: &Router, probe: &Value, what: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let last = run_probe(pod, r, probe).await;
        if last.is_ok() {
            return;
        }
        if let Ok(Some(status)) = pod.child.try_wait() {
            panic!(
                "the pod's process exited ({status}) before its {what} passed:\n{}",
                pod.log()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not pass within {limit:?}: {last:?}\n{}",
            pod.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pod_starts_from_the_manifests_and_passes_its_probes() {
    let base = render(&base_dir());
    let r = router(&base);
    let img = image();
    let mut pod = start_pod(&base, &r, &img);
    let http = r.ports()["http"];

    // Liveness answers from the first moment, readiness once the model and the index are up.
    let liveness = at(&r.container, "livenessProbe").clone();
    let readiness = at(&r.container, "readinessProbe").clone();
    until_passes(
        &mut pod,
        &r,
        &liveness,
        "livenessProbe",
        Duration::from_secs(30),
    )
    .await;
    until_passes(
        &mut pod,
        &r,
        &readiness,
        "readinessProbe",
        Duration::from_secs(90),
    )
    .await;
    run_probe(&pod, &r, &liveness).await.unwrap();
    // Both faces agree on readiness: the HTTP face's /readyz is the Docker health check's target.
    let ready = reqwest::get(pod.url(http, "/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);

    // The scrape the annotations describe.
    let ann = string_map(at(&r.deployment, "spec.template.metadata.annotations"));
    let metrics_port: u16 = ann["prometheus.io/port"].parse().unwrap();
    let scrape = reqwest::get(pod.url(metrics_port, &ann["prometheus.io/path"]))
        .await
        .unwrap();
    assert_eq!(scrape.status(), 200);
    assert!(scrape.text().await.unwrap().contains("semroute_build_info"));

    // Docker's HEALTHCHECK command, run as Docker would (the image's binary is this binary).
    let hc_url = reqwest::Url::parse(&img.healthcheck[2]).unwrap();
    let local = pod.url(hc_url.port().unwrap(), hc_url.path());
    // Blocking is fine here: the server is another process, and the commands end within their timeout.
    let probe = |url: String| {
        Command::new(env!("CARGO_BIN_EXE_semroute"))
            .args(&img.healthcheck[1..2])
            .arg(url)
            .args(&img.healthcheck[3..])
            .env_clear()
            .output()
            .unwrap()
    };
    let ok = probe(local);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let down = probe(format!("http://127.0.0.1:{}/readyz", free_port()));
    assert!(
        !down.status.success(),
        "the health check fails when nothing answers"
    );

    // The client keys Secret is in force: as shipped it holds no keys, so the API refuses everyone.
    let client = reqwest::Client::new();
    let body = serde_json::json!({"text": "write a python function that reverses a linked list"});
    let refused = client
        .post(pod.url(http, "/v1/route"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    // A key added to the mounted file (what the kubelet does when the Secret changes) is picked up
    // without a restart, and the ConfigMap's routes answer.
    let keys_file = rerooted(&pod.root, flag(&r.args(), "--keys").unwrap());
    let created = Command::new(env!("CARGO_BIN_EXE_semroute"))
        .args(["keys", "--file"])
        .arg(&keys_file)
        .args(["create", "deploy-test"])
        .env_clear()
        .output()
        .unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let key = String::from_utf8(created.stdout)
        .unwrap()
        .trim()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(15);
    let decision: serde_json::Value = loop {
        let resp = client
            .post(pod.url(http, "/v1/route"))
            .bearer_auth(&key)
            .json(&body)
            .send()
            .await
            .unwrap();
        if resp.status() == 200 {
            break resp.json().await.unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "the new key was not accepted: {}\n{}",
            resp.status(),
            pod.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(decision["route"], "code", "{decision}");

    // SIGTERM (what the kubelet sends after preStop) drains and exits cleanly, well within the grace period.
    let grace = at(
        &r.deployment,
        "spec.template.spec.terminationGracePeriodSeconds",
    )
    .as_u64()
    .unwrap();
    let pid = pod.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(grace);
    let status = loop {
        if let Some(status) = pod.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "no exit within the grace period");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        status.success(),
        "exit after SIGTERM: {status}\n{}",
        pod.log()
    );
}
