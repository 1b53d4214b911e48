//! The control plane's own metrics (issue #11 item 6), read with curl from the real binary:
//! a connected gateway shows in `pilot_xds`, its first push is `full` and a later edit's
//! push `delta` in `pilot_xds_pushes`, and each ACK of a change lands in
//! `pilot_proxy_convergence_time`.

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

fn scrape(addr: &str) -> String {
    let out = Command::new("curl")
        .args(["-sf", &format!("http://{addr}/metrics")])
        .output()
        .expect("curl runs");
    assert!(out.status.success(), "curl failed: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The value of the first sample line starting with `series`.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}

#[test]
fn pushes_convergence_and_connected_proxies_are_counted() {
    let dir = TempDir::new("control-metrics");
    let config = dir.path().join("config");
    copy_dir(&examples_dir(), &config);
    let (mut control, out, _cerr) = ChildGuard::spawn(
        Command::new(WEFT)
            .args(["control", "--listen", "127.0.0.1:0"])
            .args(["--metrics-listen", "127.0.0.1:0"])
            .arg("--config")
            .arg(&config)
            .arg("--state-dir")
            .arg(dir.path().join("state")),
    );
    let ready = out.event("control ready", 0, "ready");
    let grpc = ready["grpc"].as_str().unwrap().to_string();
    let metrics = ready["metrics"]
        .as_str()
        .expect("metrics address")
        .to_string();
    let before = scrape(&metrics);
    assert_eq!(value(&before, "pilot_xds "), 0.0);

    let (mut proxy, pout, _perr) = ChildGuard::spawn(
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
    out.event("first convergence", 0, "converged");
    let first = scrape(&metrics);
    assert_eq!(value(&first, "pilot_xds "), 1.0);
    assert_eq!(value(&first, "pilot_xds_pushes_total{type=\"full\"} "), 1.0);
    assert_eq!(value(&first, "pilot_proxy_convergence_time_count "), 1.0);
    assert_eq!(value(&first, "pilot_total_xds_rejects_total "), 0.0);

    // An edit reaches the gateway as a delta, and its ACK is a second convergence.
    let (from, pfrom) = (out.len(), pout.len());
    edit(
        &config.join("istio-gateway.yaml"),
        "hosts: [game.necpgame.local]",
        "hosts: [game.necpgame.local, www.necpgame.local]",
    );
    pout.event("the edit applied", pfrom, "config_applied");
    out.event("converged after the edit", from, "converged");
    let after = scrape(&metrics);
    assert!(
        value(&after, "pilot_xds_pushes_total{type=\"delta\"} ") >= 1.0,
        "{after}"
    );
    assert_eq!(value(&after, "pilot_proxy_convergence_time_count "), 2.0);
    assert!(value(&after, "pilot_xds_config_size_bytes_count ") >= 2.0);
    proxy.stop(Duration::from_secs(10));
    control.stop(Duration::from_secs(10));
}
