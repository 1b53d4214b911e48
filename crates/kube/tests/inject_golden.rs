//! Golden tests of sidecar injection, one folder per case under `tests/inject/`:
//! `in.yaml` (the objects), `namespace.yaml` when the namespace's labels are known (the
//! webhook's view; without it the case is `weft inject`'s manual injection), and the
//! expected `out.yaml` and `notes.txt`. `WEFT_UPDATE_GOLDEN=1` rewrites the expectations;
//! the asserts below check what each case is about either way.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use weft_kube::inject::{inject_template, template_of, InjectOptions, HEALTH_PORT};

fn case_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/inject")
        .join(name)
}

/// Runs a case: the injected stream and its notes.
fn run(name: &str) -> (Vec<Value>, String, String) {
    let dir = case_dir(name);
    let input = std::fs::read_to_string(dir.join("in.yaml")).unwrap();
    let opts = InjectOptions::default();
    let (docs, text, notes) = match std::fs::read_to_string(dir.join("namespace.yaml")) {
        Err(_) => {
            let (text, notes) = weft_kube::manual::inject_yaml(&input, &opts).unwrap();
            let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
            (docs, text, notes)
        }
        Ok(ns) => {
            let ns: Value = serde_saphyr::from_str(&ns).unwrap();
            let labels: BTreeMap<String, String> =
                serde_json::from_value(ns["metadata"]["labels"].clone()).unwrap_or_default();
            let mut docs: Vec<Value> = serde_saphyr::from_multiple(&input).unwrap();
            let mut notes = Vec::new();
            for doc in &mut docs {
                let namespace = doc["metadata"]["namespace"].as_str().unwrap().to_string();
                let template = template_of(doc).unwrap();
                let r = inject_template(template, &namespace, Some(&labels), &opts);
                notes.push(format!("injected={} ({})", r.injected, r.reason));
                notes.extend(r.warnings);
            }
            let text = docs
                .iter()
                .map(|d| weft_kube::manual::to_yaml(d).unwrap())
                .collect::<Vec<_>>()
                .join("---\n");
            (docs, text, notes)
        }
    };
    let notes = notes.join("\n") + "\n";
    for (file, got) in [("out.yaml", &text), ("notes.txt", &notes)] {
        let path = dir.join(file);
        if std::env::var_os("WEFT_UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, got).unwrap();
        }
        let want = std::fs::read_to_string(&path).unwrap_or_else(|_| {
            panic!(
                "{} is missing; run with WEFT_UPDATE_GOLDEN=1",
                path.display()
            )
        });
        assert_eq!(got, &want, "{name}: {file} differs from the golden file");
    }
    (docs, text, notes)
}

fn input(name: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(case_dir(name).join("in.yaml")).unwrap();
    serde_saphyr::from_multiple(&text).unwrap()
}

fn init_containers(doc: &mut Value) -> Vec<Value> {
    template_of(doc).unwrap()["spec"]["initContainers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn args(c: &Value) -> Vec<String> {
    serde_json::from_value(c["args"].clone()).unwrap()
}

/// The flag's value in an argument list.
fn flag(args: &[String], name: &str) -> Option<String> {
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1).cloned()
}

/// Checks the parts of an injected pod every case shares: capture first, then weft as a
/// native sidecar, ready on 15021, its identity the pod's service account.
fn assert_injected(doc: &mut Value) {
    let inits = init_containers(doc);
    assert_eq!(inits[0]["name"], "istio-init");
    assert_eq!(args(&inits[0])[0], "iptables");
    let proxy = &inits[1];
    assert_eq!(proxy["name"], "istio-proxy");
    assert_eq!(proxy["restartPolicy"], "Always", "a native sidecar");
    assert_eq!(proxy["readinessProbe"]["httpGet"]["port"], HEALTH_PORT);
    assert_eq!(proxy["readinessProbe"]["httpGet"]["path"], "/healthz/ready");
    let env = proxy["env"].as_array().unwrap();
    assert!(env.iter().any(|e| e["name"] == "SERVICE_ACCOUNT"
        && e["valueFrom"]["fieldRef"]["fieldPath"] == "spec.serviceAccountName"));
    assert_eq!(proxy["securityContext"]["runAsUser"], 1337);
    let t = template_of(doc).unwrap();
    assert!(t["metadata"]["annotations"]["sidecar.istio.io/status"].is_string());
    assert_eq!(
        t["metadata"]["labels"]["security.istio.io/tlsMode"],
        "istio"
    );
}

fn assert_unchanged(name: &str, docs: &[Value]) {
    assert_eq!(docs, input(name), "{name}: the pod is left as it was");
}

#[test]
fn namespace_label_enabled_injects() {
    let (mut docs, _, notes) = run("label_on");
    assert_injected(&mut docs[0]);
    assert!(notes.contains("istio-injection=enabled"), "{notes}");
}

#[test]
fn namespace_without_the_label_is_not_injected() {
    let (docs, _, _) = run("label_off");
    assert_unchanged("label_off", &docs);
}

#[test]
fn namespace_label_disabled_wins_over_the_pod_label() {
    let (docs, _, notes) = run("ns_disabled_pod_label_true");
    assert_unchanged("ns_disabled_pod_label_true", &docs);
    assert!(notes.contains("istio-injection=disabled"), "{notes}");
}

#[test]
fn pod_label_false_overrides_the_namespace_label() {
    let (docs, _, notes) = run("pod_label_false");
    assert_unchanged("pod_label_false", &docs);
    assert!(
        notes.contains("pod label sidecar.istio.io/inject=false"),
        "{notes}"
    );
}

#[test]
fn annotation_override_injects_with_the_annotated_resources() {
    let (mut docs, _, notes) = run("annotation_override");
    assert_injected(&mut docs[0]);
    assert!(
        notes.contains("pod annotation sidecar.istio.io/inject=true"),
        "{notes}"
    );
    let proxy = &init_containers(&mut docs[0])[1];
    assert_eq!(proxy["resources"]["requests"]["cpu"], "50m");
    assert_eq!(proxy["resources"]["requests"]["memory"], "64Mi");
    assert_eq!(proxy["resources"]["limits"]["memory"], "256Mi");
    assert_eq!(
        proxy["resources"]["limits"]["cpu"], "2000m",
        "Istio's default"
    );
}

#[test]
fn native_sidecar_starts_before_the_apps_init_containers() {
    let (mut docs, _, _) = run("native_sidecar");
    assert_injected(&mut docs[0]);
    let names: Vec<Value> = init_containers(&mut docs[0])
        .iter()
        .map(|c| c["name"].clone())
        .collect();
    assert_eq!(names, ["istio-init", "istio-proxy", "migrate"]);
    let proxy = &init_containers(&mut docs[0])[1];
    assert_eq!(
        flag(&args(proxy), "--app").as_deref(),
        Some("127.0.0.1:8080")
    );
    let t = template_of(&mut docs[0]).unwrap();
    assert_eq!(
        t["metadata"]["labels"]["service.istio.io/canonical-name"],
        "inventory"
    );
    assert_eq!(
        t["metadata"]["labels"]["service.istio.io/canonical-revision"],
        "v2"
    );
}

#[test]
fn excluded_ports_and_ranges_reach_the_capture_step() {
    let (mut docs, _, notes) = run("excluded_ports");
    assert_eq!(
        docs[0],
        input("excluded_ports")[0],
        "the Service passes through"
    );
    assert_injected(&mut docs[1]);
    let capture = args(&init_containers(&mut docs[1])[0]);
    assert_eq!(
        flag(&capture, "-d").as_deref(),
        Some("15090,15021,15020,8081,9090")
    );
    assert_eq!(flag(&capture, "-o").as_deref(), Some("5432,6379"));
    assert_eq!(flag(&capture, "-b").as_deref(), Some("8080,8081"));
    assert_eq!(
        flag(&capture, "-x").as_deref(),
        Some("10.0.0.0/8,169.254.169.254/32")
    );
    assert_eq!(flag(&capture, "-i").as_deref(), Some("*"));
    assert_eq!(flag(&capture, "-u").as_deref(), Some("1337"));
    assert!(
        notes.contains("proxy.istio.io/config is not applied"),
        "{notes}"
    );
}
