//! No silent wall (issue #11): a proxy whose config is larger than the control plane's push
//! limit is told so by name on both sides — a `proxy_unserved` event and log line on the
//! control plane, a NACK and a `push_rejected` event on the proxy — and its stream stays
//! up: when the config shrinks below the limit, the same stream delivers it, with no
//! reconnect.

mod common;

use common::*;
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

fn event(out: &Captured, what: &str, from: usize, name: &str) -> Value {
    out.wait_for(what, from, Duration::from_secs(30), |text| {
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["event"] == name)
    })
}

/// Just the gateway's WorkloadEntry: a config with no routes, well under the limit.
const SMALL: &str = r#"apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: istio-ingressgateway
  namespace: istio-system
  labels: {istio: ingressgateway}
  annotations: {weft.dev/role: gateway}
spec:
  address: 127.0.0.1
  serviceAccount: istio-ingressgateway
"#;

#[test]
fn a_config_over_the_push_limit_is_reported_on_both_sides_and_the_stream_stays_up() {
    let dir = TempDir::new("push-limit");
    let config = dir.path().join("config");
    copy_dir(&examples_dir(), &config);
    let (mut control, out, cerr) = ChildGuard::spawn(
        Command::new(WEFT)
            .args([
                "control",
                "--listen",
                "127.0.0.1:0",
                "--max-push-bytes",
                "2500",
            ])
            .arg("--config")
            .arg(&config)
            .arg("--state-dir")
            .arg(dir.path().join("state")),
    );
    let grpc = event(&out, "control ready", 0, "ready")["grpc"]
        .as_str()
        .unwrap()
        .to_string();
    let (mut proxy, pout, perr) = ChildGuard::spawn(
        Command::new(WEFT)
            .args([
                "proxy",
                "--role",
                "gateway",
                "--workload",
                "istio-ingressgateway",
            ])
            .args(["--namespace", "istio-system", "--control", &grpc]),
    );

    // The control plane names the proxy and says why ...
    let unserved = event(&out, "proxy_unserved", 0, "proxy_unserved");
    assert!(
        unserved["proxy"]
            .as_str()
            .unwrap()
            .contains("istio-ingressgateway"),
        "{unserved}"
    );
    let reason = unserved["reason"].as_str().unwrap();
    assert!(
        reason.contains("over the control plane's limit of 2500 bytes"),
        "{reason}"
    );
    // ... and so does the proxy, which keeps serving nothing rather than a partial config.
    let rejected = event(&pout, "push_rejected", 0, "push_rejected");
    assert!(
        rejected["error"]
            .as_str()
            .unwrap()
            .contains("the control plane cannot serve config"),
        "{rejected}"
    );
    cerr.wait_contains(
        0,
        Duration::from_secs(30),
        &["NACK", "over the control plane"],
    );

    // The same stream carries the next config once it fits.
    let applied_from = pout.len();
    for entry in std::fs::read_dir(&config).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    std::fs::write(config.join("gateway.yaml"), SMALL).unwrap();
    event(
        &pout,
        "the small config applied",
        applied_from,
        "config_applied",
    );
    let connects = pout
        .text()
        .lines()
        .filter(|l| l.contains("\"event\":\"connected\""))
        .count();
    assert_eq!(connects, 1, "the proxy reconnected:\n{}", perr.text());
    assert!(!perr.text().contains("reconnecting"), "{}", perr.text());
    proxy.stop(Duration::from_secs(10));
    control.stop(Duration::from_secs(10));
}
