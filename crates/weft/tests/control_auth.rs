//! The control plane's bootstrap token: proxies without it get no certificate and no
//! config; with it they get both.

mod common;

use common::*;
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

fn ready_line(out: &Captured, what: &str) -> Value {
    out.wait_for(what, 0, Duration::from_secs(30), |text| {
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["event"] == "ready")
    })
}

#[test]
fn proxies_need_the_control_plane_token() {
    let dir = TempDir::new("control-auth");
    let token = dir.path().join("token");
    std::fs::write(&token, "correct-horse-battery-staple\n").unwrap();
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "not-it\n").unwrap();
    let examples = examples_dir();
    let (mut control, out, _err) = ChildGuard::spawn(
        Command::new(WEFT)
            .args(["control", "--listen", "127.0.0.1:0", "--config"])
            .arg(&examples)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .arg("--token-file")
            .arg(&token),
    );
    let grpc = ready_line(&out, "control ready")["grpc"]
        .as_str()
        .unwrap()
        .to_string();

    // A gateway with the wrong token (or none) is refused and exits, saying why.
    for token_args in [
        vec!["--token-file".to_string(), wrong.display().to_string()],
        vec![],
    ] {
        let (mut proxy, _o, err) = ChildGuard::spawn(
            Command::new(WEFT)
                .args([
                    "proxy",
                    "--role",
                    "gateway",
                    "--workload",
                    "istio-ingressgateway",
                    "--namespace",
                    "istio-system",
                ])
                .args(["--control", &grpc])
                .args(&token_args),
        );
        let status = proxy.wait_timeout(Duration::from_secs(30));
        assert!(!status.success());
        let text = err.wait_closed(Duration::from_secs(10));
        assert!(
            text.contains("missing or wrong control-plane token"),
            "{text}"
        );
    }

    // With the token it gets its certificate and config.
    let (mut proxy, pout, _perr) = ChildGuard::spawn(
        Command::new(WEFT)
            .args([
                "proxy",
                "--role",
                "gateway",
                "--workload",
                "istio-ingressgateway",
                "--namespace",
                "istio-system",
            ])
            .args(["--control", &grpc, "--token-file"])
            .arg(&token),
    );
    let ready = ready_line(&pout, "gateway ready");
    assert_eq!(
        ready["identity"],
        "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway"
    );
    pout.wait_for("the gateway listener", 0, Duration::from_secs(30), |t| {
        t.contains("\"event\":\"listener\"").then_some(())
    });
    proxy.stop(Duration::from_secs(10));
    control.stop(Duration::from_secs(10));
}
