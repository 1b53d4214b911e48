//! `weft control --config-source kubernetes` end to end, against a FAKE Kubernetes API
//! server (no real one can run on these machines; `fake_apiserver` speaks the real
//! list/watch protocol over HTTP with recorded objects): the control plane syncs from it
//! through a kubeconfig, serves a real sidecar proxy its config for a recorded Pod, pushes
//! an edit delivered as a watch event, and rejects an invalid VirtualService with
//! weft analyze's message while the last good config stays in force.

mod common;
#[allow(dead_code)]
#[path = "../../kube/tests/fake_apiserver/mod.rs"]
mod fake_apiserver;

use common::*;
use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;

fn recorded() -> Vec<Value> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../kube/tests/recorded/cluster.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn fake_api_server_control_plane_serves_a_pod_and_follows_watch_events() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(fake_apiserver::FakeApiServer::start(recorded()));
    let dir = TempDir::new("e2e-kube");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster: {{server: \"{}\"}}\n\
             contexts:\n- name: fake\n  context: {{cluster: fake, user: fake}}\ncurrent-context: fake\n\
             users:\n- name: fake\n  user: {{}}\n",
            server.url
        ),
    )
    .unwrap();
    let (mut control, out, cerr) = ChildGuard::spawn(
        Command::new(WEFT)
            .args(["control", "--listen", "127.0.0.1:0"])
            .args(["--config-source", "kubernetes", "--kubeconfig"])
            .arg(&kubeconfig)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .args(["--webhook-listen", "127.0.0.1:0"]),
    );
    let ready = out.event("control ready", 0, "ready");
    // 2 Services, 2 running Pods, VirtualService, DestinationRule, PeerAuthentication.
    assert_eq!(ready["resources"], 7, "{ready}\n{}", cerr.text());
    let grpc = ready["grpc"].as_str().unwrap().to_string();

    let (mut proxy, pout, perr) = ChildGuard::spawn(
        Command::new(WEFT)
            .args(["proxy", "--role", "sidecar"])
            .args([
                "--workload",
                "ratings-v1-5c9b7d6f4-8wq2m",
                "--namespace",
                "shop",
            ])
            .args(["--control", &grpc, "--app", "127.0.0.1:9"])
            .args([
                "--inbound-listen",
                "127.0.0.1:0",
                "--outbound-listen",
                "127.0.0.1:0",
            ])
            .args(["--admin-listen", "127.0.0.1:0"]),
    );
    let first = pout.event("the pod's config", 0, "config_applied");

    // An edit delivered as a watch event reaches the proxy as a new config.
    let mut vs = recorded()
        .into_iter()
        .find(|o| o["kind"] == "VirtualService")
        .unwrap();
    vs["spec"]["http"][0]["timeout"] = json!("5s");
    let (from, pfrom) = (out.len(), pout.len());
    server.apply(vs);
    out.event("the edit applied", from, "config_applied");
    let second = pout.event("the edited config", pfrom, "config_applied");
    assert_ne!(first["version"], second["version"], "{first} {second}");

    // An invalid VirtualService is rejected with weft analyze's message and reaches no proxy.
    let bad = json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "bad", "namespace": "shop"},
        "spec": {"hosts": ["ratings"], "http": [{"timeout": "2 seconds",
                 "route": [{"destination": {"host": "ratings"}}]}]}});
    let from = out.len();
    server.apply(bad);
    let rejected = out.event(
        "the invalid VirtualService rejected",
        from,
        "config_rejected",
    );
    let errors = rejected["errors"].as_array().unwrap();
    assert!(
        errors.iter().any(|e| e
            .as_str()
            .unwrap()
            .starts_with("VirtualService/shop/bad: spec.http[0].timeout: ")),
        "{rejected}"
    );

    // The injection webhook `weft control` serves: HTTPS with a certificate from the mesh
    // CA, the root `weft webhook-config` puts in the caBundle.
    let log = cerr.wait_contains(
        0,
        Duration::from_secs(30),
        &["sidecar injection webhook ready"],
    );
    let addr = log
        .lines()
        .find(|l| l.contains("sidecar injection webhook ready"))
        .and_then(|l| l.split("webhook=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no webhook address in {log}"))
        .trim_matches('"')
        .to_string();
    let port = addr.rsplit_once(':').unwrap().1;
    let config = run(
        WEFT,
        &[
            "webhook-config",
            "--state-dir",
            dir.path().join("state").to_str().unwrap(),
        ],
    );
    let config = stdout_of(&config);
    let config: Value = serde_saphyr::from_str(&config).unwrap();
    let bundle = config["webhooks"][0]["clientConfig"]["caBundle"]
        .as_str()
        .unwrap_or_else(|| panic!("no caBundle in {config}"));
    let root = dir.path().join("bundle.pem");
    let pem = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("echo {bundle} | base64 -d"))
        .output()
        .unwrap()
        .stdout;
    std::fs::write(&root, &pem).unwrap();
    let review = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../kube/tests/admission/review.json"),
    )
    .unwrap();
    let host = "weft-control.istio-system.svc";
    let answer = curl(&[
        "-sS",
        "--fail",
        "--cacert",
        root.to_str().unwrap(),
        "--resolve",
        &format!("{host}:{port}:127.0.0.1"),
        "-H",
        "content-type: application/json",
        "--data-binary",
        &review,
        &format!("https://{host}:{port}/inject"),
    ]);
    let answer: Value = serde_json::from_str(&stdout_of(&answer)).unwrap_or_else(|e| {
        let err = String::from_utf8_lossy(&answer.stderr);
        panic!("the webhook at {addr} answered no JSON ({e}): {err}")
    });
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    assert_eq!(answer["response"]["patchType"], "JSONPatch", "{answer}");

    proxy.stop(Duration::from_secs(10));
    control.stop(Duration::from_secs(10));
    let _ = perr;
}

#[test]
fn weft_install_containers_run_weft_with_flags_it_has() {
    let dir = TempDir::new("install");
    let state = dir.path().join("state");
    let out = run(WEFT, &["install", "--state-dir", state.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let docs: Vec<Value> = serde_saphyr::from_multiple(&stdout_of(&out)).unwrap();
    let mut checked = 0;
    for d in docs.iter().filter(|d| d["kind"] == "Deployment") {
        for c in d["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
        {
            let args: Vec<String> = serde_json::from_value(c["args"].clone()).unwrap();
            // clap reads every flag before `--help`: an unknown one fails the command.
            let mut argv: Vec<&str> = args.iter().map(String::as_str).collect();
            argv.push("--help");
            let o = run(WEFT, &argv);
            assert!(
                o.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 2, "the control plane and the ingress gateway");
    // The caBundle is the root the install keeps, as `weft webhook-config` prints it.
    let root = std::fs::read_to_string(state.join("ca/root-cert.pem")).unwrap();
    let hook = docs
        .iter()
        .find(|d| d["kind"] == "MutatingWebhookConfiguration")
        .unwrap();
    let bundle = hook["webhooks"][0]["clientConfig"]["caBundle"]
        .as_str()
        .unwrap();
    let decoded = Command::new("sh")
        .arg("-c")
        .arg(format!("echo {bundle} | base64 -d"))
        .output()
        .unwrap()
        .stdout;
    assert_eq!(String::from_utf8(decoded).unwrap(), root);
}

#[test]
fn weft_inject_sidecar_runs_weft_proxy_with_flags_it_has() {
    let input = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../kube/tests/inject/native_sidecar/in.yaml");
    let out = run(WEFT, &["inject", "-f", input.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let doc: Value = serde_saphyr::from_str(&stdout_of(&out)).unwrap();
    let proxy = &doc["spec"]["template"]["spec"]["initContainers"][1];
    assert_eq!(proxy["name"], "istio-proxy");
    let args: Vec<String> = serde_json::from_value(proxy["args"].clone()).unwrap();
    let mut argv: Vec<&str> = args.iter().map(String::as_str).collect();
    argv.push("--help");
    let o = run(WEFT, &argv);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}
