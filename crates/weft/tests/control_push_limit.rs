//! No silent wall (issue #11): a proxy's config larger than the control plane's message
//! limit is delivered in several messages of one version; a single part of it that no
//! message can hold is named on both sides — a `proxy_unserved` event and log line on the
//! control plane, a NACK and a `push_rejected` event on the proxy — and the stream stays
//! up: when the part shrinks below the limit, the same stream delivers it, with no
//! reconnect.

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

/// A VirtualService on the example's gateway whose direct response has a body of `size`
/// bytes: its virtual host is one part of the gateway's config.
fn big_route(size: usize) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: banner, namespace: necpgame}}
spec:
  hosts: [banner.necpgame.local]
  gateways: [necpgame-gateway]
  http:
  - directResponse: {{status: 200, body: {{string: "{}"}}}}
"#,
        "x".repeat(size)
    )
}

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
                "6000",
            ])
            .arg("--config")
            .arg(&config)
            .arg("--state-dir")
            .arg(dir.path().join("state")),
    );
    let grpc = out.event("control ready", 0, "ready")["grpc"]
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

    // The example's gateway config is larger than 6000 bytes: it comes in pieces, whole.
    pout.event("the example config applied", 0, "config_applied");
    cerr.wait_contains(0, Duration::from_secs(30), &["split into", "messages"]);

    // One part no message can hold: the control plane names the proxy and the part ...
    edit(
        &config.join("istio-gateway.yaml"),
        "hosts: [game.necpgame.local]",
        "hosts: [game.necpgame.local, banner.necpgame.local]",
    );
    std::fs::write(config.join("banner.yaml"), big_route(8000)).unwrap();
    let unserved = out.event("proxy_unserved", 0, "proxy_unserved");
    assert!(
        unserved["proxy"]
            .as_str()
            .unwrap()
            .contains("istio-ingressgateway"),
        "{unserved}"
    );
    let reason = unserved["reason"].as_str().unwrap();
    assert!(
        reason.contains("part vhost/") && reason.contains("necpgame/banner"),
        "{reason}"
    );
    assert!(
        reason.contains("over the control plane's limit of 6000 bytes"),
        "{reason}"
    );
    // ... and so does the proxy, which keeps its last good config.
    let rejected = pout.event("push_rejected", 0, "push_rejected");
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
    std::fs::write(config.join("banner.yaml"), big_route(10)).unwrap();
    pout.event("the small config applied", applied_from, "config_applied");
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
