//! `weft dashboard` on a running NECPGAME mesh under generated traffic: its JSON shows
//! every workload, live edges with request rates, mTLS between sidecars and the config
//! that applies to a workload with file:line; headless Chromium (Debian's `chromium`)
//! renders the page, the DOM has every node and an edge label with numbers, and a
//! screenshot is saved.

mod common;

use common::*;
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

/// Debian's Chromium binary (`.ci/run` installs the `chromium` package).
const CHROMIUM: &str = "chromium";

fn get_json(addr: &str, path: &str) -> Value {
    let r = http_get(addr, "localhost", path, &[]);
    assert_eq!(r.status, 200, "GET {path}: {}", r.body);
    serde_json::from_str(&r.body)
        .unwrap_or_else(|e| panic!("GET {path} is not JSON ({e}): {}", r.body))
}

/// Runs headless Chromium on `url` with `args`, stopped if it takes past a minute.
fn chromium(url: &str, args: &[&str]) -> String {
    let tmp = TempDir::new("chromium-profile");
    let (mut child, stdout, stderr) = ChildGuard::spawn(
        Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--virtual-time-budget=6000",
                "--window-size=1400,720",
            ])
            .arg(format!("--user-data-dir={}", tmp.path().display()))
            .args(args)
            .arg(url),
    );
    let status = child.wait_timeout(Duration::from_secs(60));
    assert!(
        status.success(),
        "chromium failed ({status}):\n{}",
        stderr.text()
    );
    stdout.wait_closed(Duration::from_secs(10))
}

#[test]
fn the_dashboard_shows_the_live_mesh_and_the_config_of_a_workload() {
    assert!(
        Command::new(CHROMIUM).arg("--version").output().is_ok(),
        "Debian's chromium is needed (apt-get install chromium; .ci/run installs it)"
    );
    let mesh = Mesh::up_with_args("dashboard", &["--traffic"], |_| {});
    // `weft up` serves one itself.
    let own = mesh.ready["dashboard"]
        .as_str()
        .expect("mesh_ready names the dashboard");
    let own = own.trim_start_matches("http://").trim_end_matches('/');
    let page = http_get(own, "localhost", "/", &[]);
    assert!(
        page.status == 200 && page.body.contains("weft mesh"),
        "{}",
        page.body
    );

    let (_dash, out, _err) = ChildGuard::spawn(
        Command::new(WEFT)
            .args(["dashboard", "--listen", "127.0.0.1:0", "--state-dir"])
            .arg(&mesh.state_dir),
    );
    let addr = out.wait_for("the dashboard URL", 0, Duration::from_secs(30), |t| {
        let rest = t.split("dashboard: http://").nth(1)?;
        Some(rest.split('/').next()?.to_string())
    });

    // Live numbers need two scrapes of every proxy under traffic.
    let graph = poll_until("edges with traffic", Duration::from_secs(60), || {
        let g = get_json(&addr, "/api/graph");
        let edges = g["edges"].as_array()?;
        let live = |e: &&Value| e["rps"].as_f64().unwrap_or(0.0) > 0.0;
        let from_clients = edges.iter().filter(live).any(|e| e["source"] == "clients");
        let mesh_edge = edges
            .iter()
            .filter(live)
            .any(|e| e["source"] != "clients" && e["mtls"] == "mutual_tls");
        (from_clients && mesh_edge).then_some(g)
    });
    let nodes: Vec<&str> = graph["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["id"].as_str())
        .collect();
    let status = mesh.status_json();
    for p in status["processes"].as_array().unwrap() {
        // Every proxied workload is a node: `sidecar-<workload>.<ns>` / `gateway-<workload>.<ns>`.
        let name = p["name"].as_str().unwrap();
        if let Some(w) = name
            .strip_prefix("sidecar-")
            .or_else(|| name.strip_prefix("gateway-"))
        {
            assert!(nodes.contains(&w), "workload {w} missing from {nodes:?}");
        }
    }
    for svc in ["player", "inventory", "matchmaking", "leaderboard"] {
        assert!(
            graph["services"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["host"].as_str().is_some_and(|h| h.starts_with(svc))),
            "service {svc} missing: {}",
            graph["services"]
        );
    }
    let edge = graph["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["source"] != "clients" && e["rps"].as_f64().unwrap_or(0.0) > 0.0)
        .unwrap();
    assert!(
        edge["p99_ms"].as_f64().is_some(),
        "an edge with latency: {edge}"
    );
    assert!(edge["error_pct"].as_f64().is_some(), "{edge}");

    // The config that applies to the player workload, with where it was written.
    let player = nodes
        .iter()
        .find(|n| n.starts_with("player"))
        .expect("a player workload");
    let applies = get_json(&addr, &format!("/api/workload?id={player}"));
    let applies = applies.as_array().unwrap();
    for kind in ["WorkloadEntry/", "ServiceEntry/", "PeerAuthentication/"] {
        assert!(
            applies
                .iter()
                .any(|a| a["resource"].as_str().unwrap().starts_with(kind)),
            "{kind} missing from {applies:?}"
        );
    }
    assert!(applies
        .iter()
        .all(|a| a["source"].as_str().unwrap().contains(".yaml:")));

    // What a person sees: the page renders every node and live edge labels.
    let url = format!("http://{addr}/");
    let dom = chromium(&url, &["--dump-dom"]);
    for n in &nodes {
        assert!(
            dom.contains(&format!("data-id=\"{n}\"")),
            "node {n} not rendered; DOM:\n{dom}"
        );
    }
    assert!(
        dom.contains("class=\"edge-label") && dom.contains(" rps · "),
        "no edge label rendered; DOM:\n{dom}"
    );
    let linked = format!("{url}#workload={player}");
    let dom = chromium(&linked, &["--dump-dom"]);
    assert!(
        dom.contains("Config for ") && dom.contains("ServiceEntry/"),
        "the linked workload's config is not shown; DOM:\n{dom}"
    );
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    chromium(&linked, &[&format!("--screenshot={}", shot.display())]);
    let png = std::fs::read(&shot).expect("chromium wrote the screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a real screenshot"
    );
    eprintln!("screenshot: {}", shot.display());
}
