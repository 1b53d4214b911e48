//! A real Prometheus (Debian's package) scrapes a running `weft up` mesh through the
//! file_sd target list `weft up` writes, while this test drives traffic it measures
//! itself. Through PromQL: request rate, error rate (half of leaderboard's requests are
//! fault-aborted, deterministically, by a header) and p99 latency per service match what
//! the test measured; the app metrics a sidecar merges are there; and every query of
//! Istio's own Grafana dashboards (`../shared/istio-dashboards`) parses and returns data,
//! TCP panels included (player and inventory get an opaque TCP port the player's sidecar
//! carries HTTP bytes over), except the panels that are empty on Istio too (client-side
//! mTLS) and those about plaintext TCP callers, which weft's inbound does not take.

mod common;

use common::prometheus::Prometheus;
use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Requests to leaderboard with `x-fail: yes` are answered 503 by a fault abort.
const FAIL_ROUTE: &str = "  - name: leaderboard-fail
    match:
    - uri: {prefix: /api/v1/leaderboard}
      headers:
        x-fail: {exact: \"yes\"}
    fault:
      abort:
        httpStatus: 503
        percentage: {value: 100}
    route:
    - destination: {host: leaderboard}
  - name: leaderboard
";

/// (service, gateway path, headers) of one gateway request.
type Call = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

/// One round of gateway traffic.
const ROUND: [Call; 4] = [
    ("player", "/api/v1/player/me", &[]),
    ("inventory", "/api/v1/inventory/items", &[]),
    ("leaderboard", "/api/v1/leaderboard/top", &[]),
    (
        "leaderboard",
        "/api/v1/leaderboard/top",
        &[("x-fail", "yes")],
    ),
];
/// How long the measured traffic runs, and the pause between rounds (about 100 req/s).
const TRAFFIC: Duration = Duration::from_secs(10);
const PACE: Duration = Duration::from_millis(40);
const PLAYER_OUTBOUND_TO_INVENTORY: &str =
    "http://inventory.necpgame.svc.cluster.local:8080/api/v1/inventory/items";

/// What the test measured per service (through the gateway).
#[derive(Default, Debug)]
struct Measured {
    count: u64,
    errors: u64,
    latencies_ms: Vec<f64>,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The player takes plaintext too (so the dashboards' non-mTLS panels have callers).
const PLAYER_PERMISSIVE: &str = "---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: player-permissive
  namespace: necpgame
spec:
  selector:
    matchLabels: {app: player}
  mtls:
    mode: PERMISSIVE
";

/// The player's calls to inventory with `x-fail: yes` are fault-aborted by its sidecar:
/// requests that never reach an endpoint (no destination principal, as on Istio).
const INVENTORY_FAULTS: &str = "---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: inventory-faults
  namespace: necpgame
spec:
  hosts: [inventory]
  http:
  - match:
    - headers:
        x-fail: {exact: \"yes\"}
    fault:
      abort:
        httpStatus: 503
        percentage: {value: 100}
    route:
    - destination: {host: inventory}
  - route:
    - destination: {host: inventory}
";

/// Lets the player open TCP connections to port 9000 of player and inventory (the
/// NECPGAME policies allow HTTP only: their rules name methods, which TCP skips).
const TCP_ALLOW: &str = "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: player-tcp-9000, namespace: necpgame}
spec:
  action: ALLOW
  rules:
  - from: [{source: {principals: [cluster.local/ns/necpgame/sa/player]}}]
    to: [{operation: {ports: [\"9000\"]}}]
";

/// The opaque TCP port added to player and inventory (served by the same demo app).
const TCP_PORT: &str = "  - {number: 9000, name: tcp-raw, protocol: TCP}\n";

fn edit_config(dir: &Path) {
    std::fs::write(dir.join("inventory-faults.yaml"), INVENTORY_FAULTS).unwrap();
    std::fs::write(dir.join("tcp-allow.yaml"), TCP_ALLOW).unwrap();
    for host in ["player", "inventory"] {
        let ports = format!("  hosts: [{host}.necpgame.svc.cluster.local]\n  location: MESH_INTERNAL\n  resolution: STATIC\n  ports:\n  - {{number: 8080, name: http, protocol: HTTP}}\n");
        edit(
            &dir.join("registry.yaml"),
            &ports,
            &format!("{ports}{TCP_PORT}"),
        );
    }
    let pa = dir.join("peer-authentication.yaml");
    let text = std::fs::read_to_string(&pa).unwrap();
    std::fs::write(&pa, format!("{text}\n{PLAYER_PERMISSIVE}")).unwrap();
    edit(
        &dir.join("istio-gateway.yaml"),
        "  - name: leaderboard\n",
        FAIL_ROUTE,
    );
    // The player's app metrics are merged into its sidecar's page (Istio's annotations).
    edit(
        &dir.join("registry.yaml"),
        "    weft.dev/demo-latency: 2ms\n",
        "    weft.dev/demo-latency: 2ms\n    prometheus.io/scrape: \"true\"\n",
    );
}

/// What each round asks over opaque TCP (port 9000) through the player's sidecar:
/// (service, path); HTTP/1.1 bytes the TCP listeners carry unchanged.
const OVER_TCP: [(&str, &str); 2] = [
    ("player", "/api/v1/player/me"),
    ("inventory", "/api/v1/inventory/items"),
];

/// One round: every gateway request of [`ROUND`], the player app calling inventory
/// through its sidecar (so player-v1 has outbound traffic, as the workload dashboard shows),
/// and TCP connections from the player's sidecar to player and inventory.
fn round(
    gw: &mut HttpConn,
    player_out: &mut HttpConn,
    plain: &mut HttpConn,
    tcp: &mut [HttpConn; 2],
    m: Option<&mut BTreeMap<&'static str, Measured>>,
) {
    let mut m = m;
    for (service, path, headers) in ROUND {
        let t = Instant::now();
        let r = gw
            .get_retry_closed(GAME_HOST, path, headers)
            .expect("a gateway request");
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        let want = if headers.is_empty() { 200 } else { 503 };
        assert_eq!(r.status, want, "{service} {path} {headers:?}: {}", r.body);
        if let Some(m) = m.as_deref_mut() {
            let e = m.entry(service).or_default();
            e.count += 1;
            e.errors += u64::from(r.status >= 500);
            e.latencies_ms.push(ms);
        }
    }
    let r = player_out
        .get_retry_closed(
            &format!("{INVENTORY_HOST}:8080"),
            PLAYER_OUTBOUND_TO_INVENTORY,
            &[],
        )
        .expect("player's call to inventory");
    assert_eq!(r.status, 200, "player -> inventory: {}", r.body);
    let r = player_out
        .get_retry_closed(
            &format!("{INVENTORY_HOST}:8080"),
            PLAYER_OUTBOUND_TO_INVENTORY,
            &[("x-fail", "yes")],
        )
        .expect("player's aborted call to inventory");
    assert_eq!(r.status, 503, "player -> inventory, aborted: {}", r.body);
    // A caller outside the mesh, in plaintext: no principal, so the namespace's ALLOW
    // policies refuse it (403), counted with connection_security_policy="none".
    let r = plain
        .get_retry_closed(
            "player.necpgame.svc.cluster.local:8080",
            "/api/v1/player/me",
            &[],
        )
        .expect("a plaintext call to player");
    assert_eq!(r.status, 403, "plaintext -> player: {}", r.body);
    for (conn, (host, path)) in tcp.iter_mut().zip(OVER_TCP) {
        let r = conn
            .get_retry_closed(host, path, &[])
            .expect("an HTTP request over TCP");
        assert_eq!(r.status, 200, "TCP -> {host}: {}", r.body);
    }
}

const GATEWAY_SOURCE: &str = r#"reporter="source",source_workload="istio-ingressgateway""#;

fn gateway_total(prom: &Prometheus) -> f64 {
    let q = format!("sum(istio_requests_total{{{GATEWAY_SOURCE}}})");
    prom.by_label(&q, "", None).first().map_or(0.0, |(_, v)| *v)
}

/// Envoy's default buckets, as the proxies export them.
const BUCKETS: [f64; 19] = [
    0.5, 1., 5., 10., 25., 50., 100., 250., 500., 1000., 2500., 5000., 10000., 30000., 60000.,
    300000., 600000., 1800000., 3600000.,
];

fn bucket_of(ms: f64) -> usize {
    BUCKETS
        .iter()
        .position(|b| ms <= *b)
        .unwrap_or(BUCKETS.len())
}

fn p99(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    // The smallest value with at least 99% of the requests at or below it.
    v[((v.len() as f64 * 0.99).ceil() as usize).clamp(1, v.len()) - 1]
}

#[test]
fn prometheus_scrapes_the_mesh_and_istios_dashboards_read_it() {
    let mesh = Mesh::up_with("prometheus", edit_config);
    // What `weft up` wrote: a file_sd target per proxy and a valid sample config.
    let prom_dir = mesh.state_dir.join("prometheus");
    let targets: Value =
        serde_json::from_str(&std::fs::read_to_string(prom_dir.join("targets.json")).unwrap())
            .unwrap();
    let targets = targets.as_array().unwrap();
    assert_eq!(
        targets.len(),
        6,
        "five sidecars and the gateway: {targets:?}"
    );
    let player = targets
        .iter()
        .find(|t| t["labels"]["workload"] == "player-v1")
        .unwrap();
    assert_eq!(player["labels"]["namespace"], "necpgame");
    assert_eq!(player["labels"]["role"], "sidecar");
    assert_eq!(
        player["targets"][0],
        mesh.addr(PLAYER_SIDECAR, "merged_metrics").as_str()
    );
    let sample = prom_dir.join("prometheus.yml");
    let check = run("promtool", &["check", "config", sample.to_str().unwrap()]);
    assert!(
        check.status.success(),
        "promtool rejects weft's prometheus.yml: {}{}",
        stdout_of(&check),
        String::from_utf8_lossy(&check.stderr)
    );
    // The test's Prometheus: weft's sample config, scraping every second.
    let dir = TempDir::new("prometheus-config");
    let config = dir.path().join("prometheus.yml");
    let yml = std::fs::read_to_string(&sample)
        .unwrap()
        .replace("5s", "1s");
    std::fs::write(&config, yml).unwrap();
    let prom = Prometheus::start(&config);
    poll_until(
        "Prometheus to scrape all six proxies",
        Duration::from_secs(60),
        || {
            let t = prom.api("targets", &[]);
            let active = t["data"]["activeTargets"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            (active.len() == 6 && active.iter().all(|a| a["health"] == "up")).then_some(())
        },
    );

    let mut gw = HttpConn::connect(&mesh.gateway()).unwrap();
    let mut player_out = HttpConn::connect(&mesh.addr(PLAYER_SIDECAR, "outbound")).unwrap();
    let mut plain = HttpConn::connect(&mesh.addr(PLAYER_SIDECAR, "inbound")).unwrap();
    let mut tcp = OVER_TCP.map(|(service, _)| {
        let listener = format!("tcp/{service}.necpgame.svc.cluster.local:9000");
        HttpConn::connect(&mesh.addr(PLAYER_SIDECAR, &listener)).unwrap()
    });
    // Warm up: every series exists and is scraped before the measured window starts.
    round(&mut gw, &mut player_out, &mut plain, &mut tcp, None);
    poll_until(
        "Prometheus to see the warm-up",
        Duration::from_secs(30),
        || (gateway_total(&prom) >= ROUND.len() as f64).then_some(()),
    );
    let warm = gateway_total(&prom);
    let t0 = unix_now();
    let mut measured: BTreeMap<&'static str, Measured> = BTreeMap::new();
    let started = Instant::now();
    while started.elapsed() < TRAFFIC {
        round(
            &mut gw,
            &mut player_out,
            &mut plain,
            &mut tcp,
            Some(&mut measured),
        );
        // Pacing the generator, not waiting on anything.
        std::thread::sleep(PACE);
    }
    let t1 = unix_now();
    let sent: u64 = measured.values().map(|m| m.count).sum();
    poll_until(
        "Prometheus to have scraped every measured request",
        Duration::from_secs(30),
        || (gateway_total(&prom) == warm + sent as f64 && unix_now() > t1 + 2.5).then_some(()),
    );
    // Evaluated 2.5 s after the traffic, over a window that starts 2 s before it: both
    // ends of the window have flat samples, so the counters' increase is exactly what was
    // sent, and rate() = increase / window. Prometheus extrapolates the increase from the
    // first and last sample inside the window to its ends, by at most one scrape interval
    // (1 s) at each: the rate is at most 2 s / window high. With a ~14.5 s window that is
    // < 14%, hence the 15% tolerance.
    let at = t1 + 2.5;
    let window = (at - t0 + 2.0).ceil();
    let rates = prom.by_label(
        &format!("sum by (destination_service_name) (rate(istio_requests_total{{{GATEWAY_SOURCE}}}[{window}s]))"),
        "destination_service_name",
        Some(at),
    );
    let errors = prom.by_label(
        &format!("sum by (destination_service_name) (rate(istio_requests_total{{{GATEWAY_SOURCE},response_code=~\"5..\"}}[{window}s])) / sum by (destination_service_name) (rate(istio_requests_total{{{GATEWAY_SOURCE}}}[{window}s]))"),
        "destination_service_name",
        Some(at),
    );
    let p99s = prom.by_label(
        &format!("histogram_quantile(0.99, sum by (le, destination_service_name) (rate(istio_request_duration_milliseconds_bucket{{{GATEWAY_SOURCE}}}[{window}s])))"),
        "destination_service_name",
        Some(at),
    );
    let get = |v: &[(String, f64)], s: &str| v.iter().find(|(k, _)| k == s).map(|(_, v)| *v);
    for (service, m) in &measured {
        let want_rate = m.count as f64 / window;
        let rate =
            get(&rates, service).unwrap_or_else(|| panic!("no rate for {service}: {rates:?}"));
        eprintln!(
            "{service}: rate {rate:.2}/s (measured {want_rate:.2}/s), {} requests, {} errors",
            m.count, m.errors
        );
        assert!(
            (rate - want_rate).abs() <= 0.15 * want_rate,
            "{service}: rate {rate} vs measured {want_rate}"
        );
        // The same samples divide out: the error ratio is exact up to float rounding.
        let want_err = m.errors as f64 / m.count as f64;
        let err = get(&errors, service).unwrap_or(0.0);
        assert!(
            (err - want_err).abs() < 0.01,
            "{service}: error rate {err} vs measured {want_err}"
        );
        // The gateway's clock runs inside the client's, but Prometheus's window also holds
        // the warm-up round the test did not time, so under load the gateway's p99 can land
        // one bucket above the client's as well as one below; inside a bucket
        // histogram_quantile interpolates, so a bucket is as exact as it gets.
        let want_p99 = p99(&m.latencies_ms);
        let got = get(&p99s, service).unwrap_or_else(|| panic!("no p99 for {service}: {p99s:?}"));
        let (b_got, b_want) = (bucket_of(got), bucket_of(want_p99));
        eprintln!("{service}: p99 {got:.2} ms (measured {want_p99:.2} ms)");
        assert!(
            b_got.abs_diff(b_want) <= 1,
            "{service}: p99 {got} ms (bucket {b_got}) vs measured {want_p99} ms (bucket {b_want})"
        );
    }
    assert!(
        measured["leaderboard"].errors * 2 == measured["leaderboard"].count,
        "half of leaderboard's requests were aborted"
    );
    // The player app's own metrics, merged by its sidecar, with file_sd's labels.
    let app = prom.by_label(
        r#"demo_app_requests_total{namespace="necpgame",workload="player-v1",role="sidecar"}"#,
        "service",
        None,
    );
    assert!(
        matches!(app.as_slice(), [(s, n)] if s == "player" && *n > 0.0),
        "{app:?}"
    );

    dashboards(&prom);
    weft_dashboards(&prom);
}

/// Every Prometheus query of Istio's dashboards, with their template variables filled in
/// for NECPGAME (service player, workload player-v1 which also calls inventory).
fn dashboards(prom: &Prometheus) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/istio-dashboards");
    let mut all = 0;
    let mut with_data = 0;
    let mut tcp_empty = Vec::new();
    let mut plaintext_tcp_empty = Vec::new();
    let mut http_empty = Vec::new();
    let mut client_mtls_empty = Vec::new();
    let mut unparsed = Vec::new();
    for file in [
        "istio-mesh-dashboard.gen.json",
        "istio-service-dashboard.json",
        "istio-workload-dashboard.json",
    ] {
        let text = std::fs::read_to_string(dir.join(file))
            .unwrap_or_else(|e| panic!("reading {file} from {}: {e}", dir.display()));
        let d: Value = serde_json::from_str(&text).unwrap();
        let mut exprs = Vec::new();
        collect(&d, &mut exprs);
        for (title, expr) in exprs {
            let q = fill(&expr);
            all += 1;
            match prom.query(&q, None) {
                Err(e) => unparsed.push(format!("{file} / {title}: {e}\n  {q}")),
                Ok(r) if !r.is_empty() => with_data += 1,
                // A plaintext TCP caller reported by the server: weft's inbound listener
                // serves plaintext callers as HTTP only, so no such series exists.
                Ok(_) if plaintext_tcp_at_server(&q) => {
                    plaintext_tcp_empty.push(format!("{file} / {title}"))
                }
                // Istio's proxies set connection_security_policy only when they are the
                // server (istio/proxy istio_stats.cc); a client reports "unknown", so
                // these panels are empty on Istio too, and must be on weft.
                Ok(_) if client_side_mtls(&q) => {
                    client_mtls_empty.push(format!("{file} / {title}"))
                }
                Ok(_) if q.contains("istio_tcp_") => {
                    tcp_empty.push(format!("{file} / {title}\n  {q}"))
                }
                Ok(_) => http_empty.push(format!("{file} / {title}\n  {q}")),
            }
        }
    }
    eprintln!("Istio dashboards: {with_data} of {all} queries returned data");
    eprintln!(
        "without data: {} client-side mTLS panels (empty on Istio too), {} about plaintext TCP callers",
        client_mtls_empty.len(),
        plaintext_tcp_empty.len()
    );
    for t in &plaintext_tcp_empty {
        eprintln!("  {t}");
    }
    assert!(
        all >= 159,
        "every query of the three dashboards was sent ({all})"
    );
    assert!(
        unparsed.is_empty(),
        "queries Prometheus refused:\n{}",
        unparsed.join("\n")
    );
    assert!(
        http_empty.is_empty(),
        "HTTP/gRPC queries without data:\n{}",
        http_empty.join("\n")
    );
    assert!(
        tcp_empty.is_empty(),
        "TCP queries without data:\n{}",
        tcp_empty.join("\n")
    );
    assert_eq!(
        with_data + plaintext_tcp_empty.len() + client_mtls_empty.len(),
        all
    );
}

/// A query about TCP series the server reports for callers without mTLS.
fn plaintext_tcp_at_server(q: &str) -> bool {
    q.contains("istio_tcp_")
        && q.contains(r#"reporter="destination""#)
        && q.contains(r#"connection_security_policy!="mutual_tls""#)
}

/// A query about the source reporter's mTLS series only.
fn client_side_mtls(q: &str) -> bool {
    q.contains(r#"reporter="source""#) && q.contains(r#"connection_security_policy="mutual_tls""#)
}

/// Grafana's template variables, filled in for NECPGAME (service player, workload player-v1
/// which also calls inventory); `$__rate_interval` covers the traffic just sent.
const VARS: [(&str, &str); 12] = [
    ("__rate_interval", "1m"),
    ("qrep", "source|destination"),
    ("service", "player.necpgame.svc.cluster.local"),
    ("namespace", "necpgame"),
    ("workload", "player-v1"),
    ("srcns", "istio-system|necpgame"),
    ("srcwl", "istio-ingressgateway|player-v1"),
    ("dstns", "necpgame"),
    ("dstwl", "player-v1|inventory-v1|inventory-v2"),
    ("dstsvc", "inventory.necpgame.svc.cluster.local"),
    ("srccluster", "Kubernetes"),
    ("dstcluster", "Kubernetes"),
];

/// `expr` with every `$var` / `${var}` of [`VARS`] replaced (longest names first).
fn fill(expr: &str) -> String {
    let mut q = expr.to_string();
    let mut sorted = VARS;
    sorted.sort_by_key(|(k, _)| std::cmp::Reverse(k.len()));
    for (k, v) in sorted {
        q = q
            .replace(&format!("${{{k}}}"), v)
            .replace(&format!("${k}"), v);
    }
    assert!(!q.contains('$'), "a template variable left in {q}");
    q
}

/// weft's own dashboards (`examples/grafana/`): every query parses and returns data.
fn weft_dashboards(prom: &Prometheus) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/grafana");
    let mut all = 0;
    for file in ["weft-mesh.json", "weft-service.json", "weft-workload.json"] {
        let d: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(file)).unwrap()).unwrap();
        let mut exprs = Vec::new();
        collect(&d, &mut exprs);
        for (title, expr) in exprs {
            let q = fill(&expr);
            let r = prom
                .query(&q, None)
                .unwrap_or_else(|e| panic!("{file} / {title}: {e}\n  {q}"));
            assert!(!r.is_empty(), "{file} / {title}: no data\n  {q}");
            all += 1;
        }
    }
    eprintln!("weft's dashboards: all {all} queries returned data");
    assert!(all >= 30, "{all} queries");
}

/// (panel title, expr) of every panel target, rows' nested panels included.
fn collect(v: &Value, out: &mut Vec<(String, String)>) {
    for p in v["panels"].as_array().into_iter().flatten() {
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(e) = t["expr"].as_str() {
                out.push((p["title"].as_str().unwrap_or("").to_string(), e.to_string()));
            }
        }
        collect(p, out);
    }
}
