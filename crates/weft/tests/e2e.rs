//! End-to-end tests of the real `weft` binary: `weft up` runs the NECPGAME example mesh
//! (examples/necpgame) as separate processes on loopback, and the tests drive it the way a
//! user would — curl and openssl against the gateway, sidecars and admin endpoints, config
//! edits in the watched folder, kill -9 on mesh processes, `weft status`.
//!
//! Every test that starts a mesh holds a process-wide lock (one ~12-process mesh at a time)
//! and stops everything it started when its `Mesh` guard drops. Nothing sleeps to
//! synchronize: tests poll an observable condition (output, status, responses) with a
//! deadline.
//!
//! Proxy behaviour that needs no whole mesh (route actions, retries, outlier detection,
//! load balancing) is tested in process instead: crates/proxy/tests/harness_*.rs.

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};
use weft_demo::{LoadConfig, LoadRoute, Summary};

const INVENTORY_PATH: &str = "/api/v1/inventory/items";

/// The `inventory` route's 80/20 split in examples/necpgame/istio-gateway.yaml …
const SPLIT_80_20: &str = "    - destination: {host: inventory, subset: v1}
      weight: 80
    - destination: {host: inventory, subset: v2}
      weight: 20
";
/// … and the edit that sends all of it to v2.
const ALL_TO_V2: &str = "    - destination: {host: inventory, subset: v2}
      weight: 100
";

// ---------------------------------------------------------------------------------------
// Helpers specific to these tests

/// A curl request through the gateway: (status, body).
fn curl_gateway(gateway: &str, path: &str, headers: &[&str]) -> (u16, String) {
    let url = format!("http://{gateway}{path}");
    let host = format!("Host: {GAME_HOST}");
    let mut args = vec![
        "-sS",
        "-m",
        "10",
        "-H",
        host.as_str(),
        "-w",
        "\n%{http_code}",
    ];
    for h in headers {
        args.extend(["-H", h]);
    }
    args.push(&url);
    let out = curl(&args);
    assert!(
        out.status.success(),
        "curl {url} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = stdout_of(&out);
    let (body, code) = text.rsplit_once('\n').expect("curl -w output");
    (code.trim().parse().expect("http code"), body.to_string())
}

/// Paced background traffic through the gateway (weft_demo::run_load on its own runtime).
struct Load {
    rt: tokio::runtime::Runtime,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<Summary>>>,
}

impl Load {
    fn start(gateway: &str, paths: &[&str], rps: u32) -> Load {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let routes = paths
            .iter()
            .map(|p| LoadRoute {
                name: p.to_string(),
                authority: GAME_HOST.into(),
                path: p.to_string(),
                headers: vec![],
            })
            .collect();
        let cfg = LoadConfig {
            target: gateway.parse().unwrap(),
            routes,
            rps,
            concurrency: 4,
            duration: None,
            report_every: Duration::ZERO,
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = rt.spawn(weft_demo::run_load(cfg, std::io::sink(), async move {
            let _ = stopped.await;
        }));
        Load {
            rt,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops the load and returns its whole-run summary.
    fn finish(mut self) -> Summary {
        let _ = self.stop.take().unwrap().send(());
        let task = self.task.take().unwrap();
        self.rt
            .block_on(task)
            .expect("load task")
            .expect("load run")
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Every request of the background load succeeded; on failure, shows the gateway's
/// non-200 request counts (code and response flags).
fn assert_no_failures(mesh: &Mesh, s: &Summary, min_requests: u64) {
    let versions: Vec<_> = s
        .routes
        .iter()
        .map(|r| (&r.name, r.requests, r.successes, &r.versions, &r.errors))
        .collect();
    eprintln!(
        "background load: {} requests, {} successes in {:.1}s; per route: {versions:?}",
        s.total,
        s.successes,
        s.elapsed.as_secs_f64()
    );
    assert!(
        s.total >= min_requests,
        "background load sent only {} requests (expected >= {min_requests})",
        s.total
    );
    if s.successes != s.total {
        let stats = admin_get(&mesh.gateway_admin(), "/stats/prometheus");
        let failed: Vec<&str> = stats
            .lines()
            .filter(|l| {
                l.starts_with("istio_requests_total{") && !l.contains("response_code=\"200\"")
            })
            .collect();
        panic!("background load had {} failed requests: errors {:?}, per route {versions:?}; gateway non-200 counters:\n{}", s.total - s.successes, s.errors(), failed.join("\n"));
    }
}

/// Sends requests on `conn` until 20 in a row come from v2; returns when that streak began,
/// measured from `since`. Fails on any non-200 or after `timeout`.
fn time_until_all_v2(conn: &mut HttpConn, since: Instant, timeout: Duration) -> Duration {
    let mut streak = 0;
    let mut streak_start = since;
    let mut seen = BTreeMap::<String, u32>::new();
    loop {
        assert!(
            since.elapsed() < timeout,
            "requests did not consistently reach v2 within {timeout:?}; versions seen: {seen:?}"
        );
        let sent = Instant::now();
        let r = conn
            .get_retry_closed(GAME_HOST, INVENTORY_PATH, &[])
            .expect("request through the gateway");
        assert_eq!(
            r.status, 200,
            "request during the config change failed: {}",
            r.body
        );
        *seen.entry(r.version().to_string()).or_default() += 1;
        if r.version() == "v2" {
            if streak == 0 {
                streak_start = sent;
            }
            streak += 1;
            if streak == 20 {
                return streak_start.duration_since(since);
            }
        } else {
            streak = 0;
        }
    }
}

/// `n` requests to the inventory route: all must be 200; returns the count per version.
fn inventory_versions(
    conn: &mut HttpConn,
    n: usize,
    headers: &[(&str, &str)],
) -> BTreeMap<String, usize> {
    let mut versions = BTreeMap::new();
    for i in 0..n {
        let r = conn
            .get_retry_closed(GAME_HOST, INVENTORY_PATH, headers)
            .unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert_eq!(r.status, 200, "request {i}: {}", r.body);
        *versions.entry(r.version().to_string()).or_default() += 1;
    }
    versions
}

fn vs_all_to_v2(original: &str) -> String {
    assert!(
        original.contains(SPLIT_80_20),
        "istio-gateway.yaml no longer has the 80/20 inventory split this test edits"
    );
    original.replace(SPLIT_80_20, ALL_TO_V2)
}

fn spiffe(sa: &str) -> String {
    format!("spiffe://cluster.local/ns/necpgame/sa/{sa}")
}

// ---------------------------------------------------------------------------------------
// 1. weft demo

#[test]
fn demo_runs_and_exits_zero() {
    let _serial = serial();
    let dir = TempDir::new("demo");
    let state = dir.path().join("state");
    let (mut child, stdout, stderr) = ChildGuard::spawn(
        Command::new(WEFT)
            .args(["demo", "--duration", "10", "--state-dir"])
            .arg(&state),
    );
    let status = child.wait_timeout(Duration::from_secs(120));
    // The pipe closes once weft and every child that inherited it have exited.
    let text = stdout.wait_closed(Duration::from_secs(10));
    assert!(
        status.success(),
        "weft demo exited with {status}\nstdout:\n{text}\nstderr:\n{}",
        stderr.text()
    );
    let last = text
        .lines()
        .rev()
        .find(|l| l.starts_with("success"))
        .unwrap_or_default();
    assert!(
        last.contains("PASS"),
        "no PASS line in weft demo's output:\n{text}"
    );
    // Its processes are gone too.
    let status: Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("mesh.json")).unwrap()).unwrap();
    let pids: Vec<u32> = status["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["pid"].as_u64())
        .map(|p| p as u32)
        .collect();
    poll_until(
        "the demo's processes to exit",
        Duration::from_secs(10),
        || pids.iter().all(|p| !alive(*p)).then_some(()),
    );
}

// ---------------------------------------------------------------------------------------
// 2. Gateway routing by path

#[test]
fn gateway_routes_by_path() {
    let mesh = Mesh::up("routing");
    let gw = mesh.gateway();
    for (path, service) in [
        ("/api/v1/player/42", "player"),
        ("/api/v1/leaderboard/top", "leaderboard"),
        ("/api/v1/matchmaking/queue", "matchmaking"),
        ("/api/v1/inventory/items", "inventory"),
    ] {
        let (code, body) = curl_gateway(&gw, path, &[]);
        assert_eq!(code, 200, "{path}: {body}");
        let v: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body}"));
        assert_eq!(
            v["service"], service,
            "{path} reached the wrong service: {body}"
        );
        assert_eq!(v["path"], path, "{path}: the app saw another path: {body}");
        assert_eq!(
            v["peer"], "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway",
            "{path}: {body}"
        );
    }
    let (code, body) = curl_gateway(&gw, "/api/v2/nothing-here", &[]);
    assert_eq!(code, 404, "unknown path: {body}");
    assert!(body.contains("no route"), "404 body: {body}");
    // A Host no Gateway server accepts is not routed either.
    let out = curl(&[
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-H",
        "Host: elsewhere.example",
        &format!("http://{gw}/api/v1/player/1"),
    ]);
    assert_eq!(stdout_of(&out), "404", "unknown Host");
}

// ---------------------------------------------------------------------------------------
// 3. Header match

#[test]
fn premium_header_routes_to_inventory_v2() {
    let mesh = Mesh::up("premium");
    let dir = TempDir::new("premium-curl");
    let url = format!("http://{}{INVENTORY_PATH}", mesh.gateway());
    let config: String = (0..20)
        .map(|_| format!("url = \"{url}\"\noutput = \"/dev/null\"\n"))
        .collect();
    let config_file = dir.path().join("urls.curlrc");
    std::fs::write(&config_file, config).unwrap();
    let host = format!("Host: {GAME_HOST}");
    let out = curl(&[
        "-sS",
        "-m",
        "20",
        "-H",
        &host,
        "-H",
        "x-player-tier: premium",
        "-w",
        "%{http_code} %header{x-weft-version}\n",
        "-K",
        config_file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<String> = stdout_of(&out).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 20, "expected 20 responses: {lines:?}");
    assert!(
        lines.iter().all(|l| l == "200 v2"),
        "premium requests must all land on inventory v2: {lines:?}"
    );
}

// ---------------------------------------------------------------------------------------
// 4. Weighted split

#[test]
fn inventory_split_is_80_20() {
    let mesh = Mesh::up("split");
    let mut conn = HttpConn::connect(&mesh.gateway()).unwrap();
    let versions = inventory_versions(&mut conn, 1000, &[]);
    let v1 = versions.get("v1").copied().unwrap_or(0);
    let v2 = versions.get("v2").copied().unwrap_or(0);
    assert_eq!(
        v1 + v2,
        1000,
        "responses from neither v1 nor v2: {versions:?}"
    );
    let share = v1 as f64 / 1000.0;
    eprintln!("split: {versions:?} (v1 share {share:.3})");
    assert!(
        (0.75..=0.85).contains(&share),
        "v1 share {share:.3} is outside 0.75..=0.85: {versions:?}"
    );
}

// ---------------------------------------------------------------------------------------
// 5. STRICT mTLS: plaintext is refused

#[test]
fn sidecar_inbound_refuses_plaintext() {
    let mesh = Mesh::up("plaintext");
    let inbound = mesh.addr(INVENTORY_V1_SIDECAR, "inbound");

    let out = curl(&[
        "-s",
        "-m",
        "5",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("http://{inbound}/api/v1/inventory"),
    ]);
    assert!(
        !out.status.success(),
        "plaintext curl to the mTLS inbound succeeded: {}",
        stdout_of(&out)
    );
    assert_eq!(
        stdout_of(&out),
        "000",
        "plaintext curl got an HTTP status from the mTLS inbound"
    );

    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(&inbound).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tcp.write_all(
        format!("GET /api/v1/inventory HTTP/1.1\r\nHost: {INVENTORY_HOST}\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let mut got = Vec::new();
    let end = tcp.read_to_end(&mut got);
    assert!(
        !matches!(&end, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "the inbound neither answered nor closed a plaintext connection within 5s"
    );
    let text = String::from_utf8_lossy(&got);
    assert!(
        !text.contains("HTTP/"),
        "plaintext request got HTTP bytes back: {text:?}"
    );

    // Positive control: the same port works over mTLS (gateway -> inventory-v1's sidecar).
    let mut conn = HttpConn::connect(&mesh.gateway()).unwrap();
    poll_until(
        "a response from inventory v1",
        Duration::from_secs(10),
        || (conn.get(GAME_HOST, INVENTORY_PATH, &[]).unwrap().version() == "v1").then_some(()),
    );
}

// ---------------------------------------------------------------------------------------
// 6. The certificate a sidecar presents

#[test]
fn sidecar_certificate_is_spiffe_and_chains_to_the_mesh_root() {
    let mesh = Mesh::up("certs");
    let dir = TempDir::new("certs-openssl");
    let inbound = mesh.addr(INVENTORY_V1_SIDECAR, "inbound");
    let out = run("openssl", &["s_client", "-connect", &inbound, "-showcerts"]);
    let text = stdout_of(&out);
    let begin = text
        .find("-----BEGIN CERTIFICATE-----")
        .unwrap_or_else(|| panic!("no certificate from {inbound}: {text}"));
    let end = text[begin..].find("-----END CERTIFICATE-----").unwrap()
        + begin
        + "-----END CERTIFICATE-----".len();
    let leaf = dir.path().join("leaf.pem");
    std::fs::write(&leaf, format!("{}\n", &text[begin..end])).unwrap();
    let leaf = leaf.to_str().unwrap();

    let san = run(
        "openssl",
        &["x509", "-in", leaf, "-noout", "-ext", "subjectAltName"],
    );
    assert!(
        san.status.success(),
        "openssl x509: {}",
        String::from_utf8_lossy(&san.stderr)
    );
    let san = stdout_of(&san);
    assert!(
        san.contains(&format!("URI:{}", spiffe("inventory"))),
        "leaf SAN: {san}"
    );

    let root = mesh.state_dir.join("ca/root-cert.pem");
    let ok = run(
        "openssl",
        &["verify", "-CAfile", root.to_str().unwrap(), leaf],
    );
    assert!(
        ok.status.success(),
        "leaf does not verify against the mesh root: {}{}",
        stdout_of(&ok),
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(stdout_of(&ok).contains(": OK"), "{}", stdout_of(&ok));

    // Sanity: an unrelated CA does not vouch for it.
    let (key, ca) = (
        dir.path().join("other-key.pem"),
        dir.path().join("other-ca.pem"),
    );
    let gen = run(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            ca.to_str().unwrap(),
            "-subj",
            "/CN=unrelated test CA",
            "-days",
            "1",
        ],
    );
    assert!(
        gen.status.success(),
        "generating a CA: {}",
        String::from_utf8_lossy(&gen.stderr)
    );
    let bad = run(
        "openssl",
        &["verify", "-CAfile", ca.to_str().unwrap(), leaf],
    );
    assert!(
        !bad.status.success(),
        "leaf verified against an unrelated CA: {}",
        stdout_of(&bad)
    );
}

// ---------------------------------------------------------------------------------------
// 7. Editing a VirtualService in the running mesh

#[test]
fn virtual_service_edit_applies_fast_and_broken_edit_is_rejected() {
    let mesh = Mesh::up("vs-edit");
    let gw = mesh.gateway();
    let mut conn = HttpConn::connect(&gw).unwrap();
    let before = inventory_versions(&mut conn, 100, &[]);
    assert!(
        before.len() == 2,
        "before the edit both versions serve: {before:?}"
    );

    let load = Load::start(&gw, &[INVENTORY_PATH], 100);
    // The load is flowing before the edit: the gateway has counted some of its requests.
    poll_until(
        "the background load to reach the gateway",
        Duration::from_secs(10),
        || {
            let stats = admin_get(&mesh.gateway_admin(), "/stats/prometheus");
            (metric_sum(&stats, "istio_requests_total", &[("response_code", "200")]) > 120.0)
                .then_some(())
        },
    );

    let file = mesh.config_file("istio-gateway.yaml");
    let original = std::fs::read_to_string(&file).unwrap();
    let edited = vs_all_to_v2(&original);
    let mark = mesh.stderr.len();
    replace_file(&file, &edited);
    let renamed = Instant::now();
    let took = time_until_all_v2(&mut conn, renamed, Duration::from_secs(10));
    eprintln!(
        "all-v2 edit took effect {:.0} ms after the rename",
        took.as_secs_f64() * 1000.0
    );
    assert!(
        took < Duration::from_secs(1),
        "the VirtualService edit took {took:?} to take effect"
    );
    mesh.stderr
        .wait_contains(mark, Duration::from_secs(5), &["weft: config reloaded"]);
    let after = inventory_versions(&mut conn, 50, &[]);
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        ["v2"],
        "after the edit: {after:?}"
    );

    // A broken edit (unknown field) is rejected with file:line:col; routing stays.
    let marker = "    - destination: {host: leaderboard}\n";
    assert!(edited.contains(marker));
    let broken = edited.replace(marker, &format!("{marker}      bogus: 1\n"));
    let line = broken.lines().position(|l| l == "      bogus: 1").unwrap() + 1;
    let mark = mesh.stderr.len();
    replace_file(&file, &broken);
    let expect = format!("istio-gateway.yaml:{line}:7: unknown field `bogus`");
    let err = mesh.stderr.wait_contains(
        mark,
        Duration::from_secs(5),
        &[
            "weft: config change rejected; the last good config stays in force:",
            &expect,
        ],
    );
    eprintln!("rejection: {}", err.trim());
    assert!(
        !err.contains("config reloaded"),
        "a broken edit was reloaded: {err}"
    );
    let after = inventory_versions(&mut conn, 50, &[]);
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        ["v2"],
        "after the rejected edit: {after:?}"
    );

    // A semantically invalid match (exact and prefix at once) is rejected too.
    let broken = edited.replace(
        "- uri: {prefix: /api/v1/leaderboard}",
        "- uri: {exact: /a, prefix: /b}",
    );
    assert_ne!(broken, edited);
    let (line, col) = broken
        .lines()
        .enumerate()
        .find_map(|(i, l)| Some((i + 1, l.find("{exact: /a")? + 1)))
        .unwrap();
    let at = format!("istio-gateway.yaml:{line}:{col}: ");
    let mark = mesh.stderr.len();
    replace_file(&file, &broken);
    let err = mesh.stderr.wait_contains(
        mark,
        Duration::from_secs(5),
        &[
            "weft: config change rejected",
            &at,
            "only one of exact, prefix or regex",
        ],
    );
    eprintln!("rejection: {}", err.trim());
    assert!(
        !err.contains("config reloaded"),
        "a broken edit was reloaded: {err}"
    );
    let after = inventory_versions(&mut conn, 50, &[]);
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        ["v2"],
        "after the rejected edit: {after:?}"
    );
    let (code, body) = curl_gateway(&gw, "/api/v1/leaderboard/top", &[]);
    assert_eq!(
        code, 200,
        "leaderboard route after the rejected edit: {body}"
    );

    assert_no_failures(&mesh, &load.finish(), 50);
}

// ---------------------------------------------------------------------------------------
// 8. Killing the control plane

#[test]
fn control_plane_restart_keeps_traffic_and_pushes() {
    let mesh = Mesh::up("control-kill");
    let gw = mesh.gateway();
    let load = Load::start(&gw, &[INVENTORY_PATH, "/api/v1/leaderboard/top"], 100);
    let mut conn = HttpConn::connect(&gw).unwrap();
    inventory_versions(&mut conn, 10, &[]);

    let proxies: Vec<String> = mesh
        .names()
        .into_iter()
        .filter(|n| n.starts_with("sidecar-") || n.starts_with("gateway-"))
        .collect();
    let connects = |name: &str| mesh.log(name).matches("connected to control plane").count();
    for p in &proxies {
        assert_eq!(connects(p), 1, "{p} connected once at startup");
    }

    // One proxy is slow to reconnect (frozen while the control plane restarts): the others
    // must not lose its endpoint meanwhile.
    let slow = PLAYER_SIDECAR;
    let frozen = Frozen::new(mesh.pid(slow));

    let old = mesh.pid("control");
    let mark = mesh.stderr.len();
    signal(old, "KILL");
    mesh.stderr.wait_contains(
        mark,
        Duration::from_secs(10),
        &["weft: control control exited (signal: 9 (SIGKILL)); restarting it (restart #1)"],
    );
    let others: Vec<&String> = proxies.iter().filter(|p| p.as_str() != slow).collect();
    poll_until(
        "the other proxies to reconnect to the restarted control plane",
        Duration::from_secs(15),
        || others.iter().all(|p| connects(p) >= 2).then_some(()),
    );
    drop(frozen);

    // Traffic keeps flowing, to every route, while the slow proxy reconnects …
    let routes = [
        "/api/v1/player/1",
        "/api/v1/leaderboard/top",
        "/api/v1/matchmaking/queue",
        INVENTORY_PATH,
    ];
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut sent = 0;
    loop {
        for path in routes {
            let r = conn
                .get_retry_closed(GAME_HOST, path, &[])
                .expect("request through the gateway");
            assert_eq!(
                r.status, 200,
                "{path} failed after the control plane restarted (request {sent}): {}",
                r.body
            );
            sent += 1;
        }
        if sent % 20 == 0 && connects(slow) >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{slow} did not reconnect to the restarted control plane within 15s"
        );
    }
    // … and after that.
    for i in 0..100 {
        let path = routes[i % routes.len()];
        let r = conn
            .get(GAME_HOST, path, &[])
            .expect("request through the gateway");
        assert_eq!(
            r.status, 200,
            "{path} failed after the control plane restarted: {}",
            r.body
        );
    }
    eprintln!("{sent} requests until {slow} reconnected");

    let status = poll_until(
        "weft status to show the restarted control plane",
        Duration::from_secs(10),
        || {
            let v = mesh.status_json();
            let c = v["processes"]
                .as_array()?
                .iter()
                .find(|p| p["name"] == "control")?
                .clone();
            (c["restarts"] == 1 && c["running"] == true && c["pid"].as_u64() != Some(old as u64))
                .then_some(c)
        },
    );
    assert_eq!(
        status["addresses"]["grpc"],
        mesh.addr("control", "grpc"),
        "the control plane came back on another address"
    );

    // Pushes still reach the proxies: the edit takes effect at the gateway.
    let file = mesh.config_file("istio-gateway.yaml");
    let mark = mesh.stderr.len();
    replace_file(
        &file,
        &vs_all_to_v2(&std::fs::read_to_string(&file).unwrap()),
    );
    let took = time_until_all_v2(&mut conn, Instant::now(), Duration::from_secs(10));
    eprintln!(
        "edit after the control restart took effect after {:.0} ms",
        took.as_secs_f64() * 1000.0
    );
    mesh.stderr
        .wait_contains(mark, Duration::from_secs(5), &["weft: config reloaded"]);

    assert_no_failures(&mesh, &load.finish(), 20);
}

/// A process stopped with SIGSTOP, continued (SIGCONT) on drop.
struct Frozen(u32);

impl Frozen {
    fn new(pid: u32) -> Frozen {
        signal(pid, "STOP");
        Frozen(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        signal(self.0, "CONT");
    }
}

// ---------------------------------------------------------------------------------------
// 9. Killing one sidecar

#[test]
fn killed_sidecar_is_restarted_and_serves_again() {
    let mesh = Mesh::up("sidecar-kill");
    let old = mesh.pid(INVENTORY_V1_SIDECAR);
    let inbound = mesh.addr(INVENTORY_V1_SIDECAR, "inbound");
    let mark = mesh.stderr.len();
    signal(old, "KILL");
    mesh.stderr.wait_contains(mark, Duration::from_secs(10), &["weft: sidecar sidecar-inventory-v1.necpgame exited (signal: 9 (SIGKILL)); restarting it (restart #1)"]);

    let entry = poll_until(
        "weft status to show the restarted sidecar",
        Duration::from_secs(10),
        || {
            let v = mesh.status_json();
            let p = v["processes"]
                .as_array()?
                .iter()
                .find(|p| p["name"] == INVENTORY_V1_SIDECAR)?
                .clone();
            (p["restarts"] == 1
                && p["running"] == true
                && p["pid"].as_u64().is_some_and(|p| p != old as u64))
            .then_some(p)
        },
    );
    let new = entry["pid"].as_u64().unwrap() as u32;
    assert!(alive(new), "the new sidecar pid {new} is not alive");
    assert!(!alive(old), "the killed sidecar pid {old} is still alive");
    assert_eq!(
        entry["addresses"]["inbound"],
        inbound.as_str(),
        "restarted sidecar moved to another inbound address"
    );
    let v = mesh.status_json();
    for p in v["processes"].as_array().unwrap() {
        assert_eq!(
            p["running"], true,
            "{} not running after the sidecar restart",
            p["name"]
        );
        if p["name"] != INVENTORY_V1_SIDECAR {
            assert_eq!(p["restarts"], 0, "{} restarted too", p["name"]);
        }
    }

    // Requests to inventory-v1 (80% of the split route) succeed again …
    let mut conn = HttpConn::connect(&mesh.gateway()).unwrap();
    poll_until(
        "a 200 from inventory v1 through the gateway",
        Duration::from_secs(15),
        || {
            let r = conn.get_retry_closed(GAME_HOST, INVENTORY_PATH, &[]).ok()?;
            (r.status == 200 && r.version() == "v1").then_some(())
        },
    );
    // … and keep succeeding.
    let versions = inventory_versions(&mut conn, 100, &[]);
    assert!(
        versions.get("v1").copied().unwrap_or(0) > 50,
        "inventory v1 should take ~80%: {versions:?}"
    );
    // Sidecar to sidecar as well: player's outbound reaches inventory with player's identity.
    let outbound = mesh.addr(PLAYER_SIDECAR, "outbound");
    let mut via_player = HttpConn::connect(&outbound).unwrap();
    for _ in 0..10 {
        let r = via_player.get(INVENTORY_HOST, "/x", &[]).unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
    }
}

// ---------------------------------------------------------------------------------------
// 10. Metrics

#[test]
fn istio_request_metrics_on_gateway_and_sidecar() {
    let mesh = Mesh::up("metrics");
    let mut conn = HttpConn::connect(&mesh.gateway()).unwrap();
    // 20 requests, and more until inventory-v1 has served some (80% each).
    let mut versions = inventory_versions(&mut conn, 20, &[]);
    while !versions.contains_key("v1") {
        assert!(
            versions.values().sum::<usize>() < 200,
            "no request reached inventory v1: {versions:?}"
        );
        for (k, n) in inventory_versions(&mut conn, 1, &[]) {
            *versions.entry(k).or_default() += n;
        }
    }
    let inventory_ok = versions.values().sum::<usize>() as f64;
    let v1_ok = versions["v1"] as f64;
    let r = conn.get(GAME_HOST, "/no/such/route", &[]).unwrap();
    assert_eq!(r.status, 404);

    // A request is counted when its response body is done, which can be a moment after
    // the client has read it: wait until the counters settle.
    let want = inventory_ok;
    let gw = poll_until("the gateway's counters", Duration::from_secs(10), || {
        let gw = admin_get(&mesh.gateway_admin(), "/stats/prometheus");
        let ok = [
            ("reporter", "source"),
            ("destination_service", INVENTORY_HOST),
            ("response_code", "200"),
        ];
        let nr = [
            ("reporter", "source"),
            ("response_code", "404"),
            ("response_flags", "NR"),
        ];
        (metric_sum(&gw, "istio_requests_total", &ok) >= want
            && metric_sum(&gw, "istio_requests_total", &nr) >= 1.0)
            .then_some(gw)
    });
    let source_ok = [
        ("reporter", "source"),
        ("destination_service", INVENTORY_HOST),
        ("response_code", "200"),
        ("source_workload", "istio-ingressgateway"),
    ];
    assert_eq!(
        metric_sum(&gw, "istio_requests_total", &source_ok),
        inventory_ok,
        "gateway istio_requests_total for inventory 200s:\n{gw}"
    );
    let nr = [
        ("reporter", "source"),
        ("response_code", "404"),
        ("response_flags", "NR"),
    ];
    assert_eq!(
        metric_sum(&gw, "istio_requests_total", &nr),
        1.0,
        "gateway 404 NR count:\n{gw}"
    );

    let side = poll_until("inventory-v1's counters", Duration::from_secs(10), || {
        let side = admin_get(
            &mesh.addr(INVENTORY_V1_SIDECAR, "admin"),
            "/stats/prometheus",
        );
        let ok = [("reporter", "destination"), ("response_code", "200")];
        (metric_sum(&side, "istio_requests_total", &ok) >= v1_ok).then_some(side)
    });
    let dest_ok = [
        ("reporter", "destination"),
        ("source_workload", "istio-ingressgateway"),
        ("destination_service", INVENTORY_HOST),
        ("destination_workload", "inventory-v1"),
        ("response_code", "200"),
        ("connection_security_policy", "mutual_tls"),
    ];
    assert_eq!(
        metric_sum(&side, "istio_requests_total", &dest_ok),
        v1_ok,
        "inventory-v1 sidecar istio_requests_total:\n{side}"
    );
    assert!(
        side.contains("istio_request_duration_milliseconds"),
        "no duration histogram:\n{side}"
    );

    // The admin endpoint's other views answer too.
    let dump: Value =
        serde_json::from_str(&admin_get(&mesh.gateway_admin(), "/config_dump")).unwrap();
    assert!(
        dump["version"].as_str().is_some_and(|v| !v.is_empty()),
        "config_dump version: {dump}"
    );
    let certs: Value = serde_json::from_str(&admin_get(
        &mesh.addr(INVENTORY_V1_SIDECAR, "admin"),
        "/certs",
    ))
    .unwrap();
    assert_eq!(certs["identity"], spiffe("inventory").as_str());
    assert_eq!(admin_get(&mesh.gateway_admin(), "/ready").trim(), "ready");
}

// ---------------------------------------------------------------------------------------
// 11. Sidecar outbound, as the app sees it

#[test]
fn sidecar_outbound_http1_and_h2c_carry_the_caller_identity() {
    let mesh = Mesh::up("outbound");
    let outbound = mesh.addr(PLAYER_SIDECAR, "outbound");
    let url = format!("http://{outbound}/api/items?x=1");
    let host = format!("Host: {INVENTORY_HOST}");
    for (proto, flag, expect_version) in [
        ("HTTP/1.1", "--http1.1", "1.1"),
        ("h2c", "--http2-prior-knowledge", "2"),
    ] {
        let out = curl(&[
            "-sS",
            "-m",
            "10",
            flag,
            "-H",
            &host,
            "-w",
            "\n%{http_code} %{http_version}",
            &url,
        ]);
        assert!(
            out.status.success(),
            "{proto}: curl failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = stdout_of(&out);
        let (body, tail) = text.rsplit_once('\n').unwrap();
        assert_eq!(tail, format!("200 {expect_version}"), "{proto}: {text}");
        let v: Value = serde_json::from_str(body)
            .unwrap_or_else(|e| panic!("{proto}: not JSON ({e}): {body}"));
        assert_eq!(v["service"], "inventory", "{proto}: {body}");
        assert_eq!(v["path"], "/api/items?x=1", "{proto}: {body}");
        assert_eq!(
            v["peer"],
            spiffe("player").as_str(),
            "{proto}: the app saw another caller: {body}"
        );
        assert_eq!(
            v["identity"],
            spiffe("inventory").as_str(),
            "{proto}: {body}"
        );
        let xfcc = v["headers"]["x-forwarded-client-cert"]
            .as_str()
            .unwrap_or_default();
        assert_eq!(
            xfcc,
            format!("By={};URI={}", spiffe("inventory"), spiffe("player")),
            "{proto}: {body}"
        );
    }
    // A host the registry does not know passes through (Istio's default ALLOW_ANY): to
    // where the app addressed it, which here does not resolve.
    let out = curl(&[
        "-s",
        "-w",
        "\n%{http_code}",
        "-H",
        "Host: nowhere.necpgame.svc.cluster.local",
        &url,
    ]);
    let text = stdout_of(&out);
    assert!(text.ends_with("\n503"), "{text}");
    assert!(
        text.contains("resolving nowhere.necpgame.svc.cluster.local"),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------
// 12. weft status

#[test]
fn weft_status_lists_every_process_running() {
    let mesh = Mesh::up("status");
    let names = mesh.names();
    // The built-in demo apps learn where to listen as every app does: WEFT_APP_ADDRESS.
    let app = mesh.pid("app-player-v1.necpgame");
    let environ = std::fs::read(format!("/proc/{app}/environ")).unwrap_or_default();
    let cmdline = std::fs::read(format!("/proc/{app}/cmdline")).unwrap_or_default();
    let env_vars: Vec<String> = environ
        .split(|b| *b == 0)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    assert!(
        env_vars
            .iter()
            .any(|v| v.starts_with("WEFT_APP_ADDRESS=127.0.0.1:")),
        "{env_vars:?}"
    );
    assert!(
        !String::from_utf8_lossy(&cmdline).contains("--listen"),
        "no --listen flag: {}",
        String::from_utf8_lossy(&cmdline)
    );
    assert_eq!(
        names.len(),
        12,
        "control + gateway + 5 apps + 5 sidecars: {names:?}"
    );

    let out = run(
        WEFT,
        &["status", "--state-dir", mesh.state_dir.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "weft status: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = stdout_of(&out);
    assert!(
        text.contains(&format!("supervisor pid {} running", mesh.child.child.id())),
        "{text}"
    );
    for name in &names {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name.as_str()))
            .unwrap_or_else(|| panic!("{name} missing from weft status:\n{text}"));
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            cols.get(2).copied(),
            Some(mesh.pid(name).to_string().as_str()),
            "{line}"
        );
        assert_eq!(cols.get(3).copied(), Some("running"), "{line}");
    }

    let v = mesh.status_json();
    assert_eq!(v["supervisor_running"], true);
    let procs = v["processes"].as_array().unwrap();
    assert_eq!(procs.len(), names.len());
    for p in procs {
        assert_eq!(p["running"], true, "{p}");
        assert_eq!(p["restarts"], 0, "{p}");
        assert!(alive(p["pid"].as_u64().unwrap() as u32), "{p}");
    }
}

#[test]
fn grpc_and_http2_ports_get_http2_to_the_app() {
    // Declare inventory's port as GRPC: its sidecars must speak HTTP/2 to the app (Istio's
    // inbound cluster follows the port protocol); player stays on HTTP/1.1.
    let mesh = Mesh::up_with("grpc", |dir| {
        let from = "name: http, protocol: HTTP}\n  workloadSelector:\n    labels: {app: inventory}";
        edit(
            &dir.join("registry.yaml"),
            from,
            &from.replace("name: http, protocol: HTTP", "name: grpc, protocol: GRPC"),
        );
    });
    let gw = mesh.gateway();
    let (code, body) = curl_gateway(&gw, "/api/v1/inventory/items", &["x-player-tier: premium"]);
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["protocol"], "HTTP/2.0",
        "inventory's app must get HTTP/2: {body}"
    );
    let (code, body) = curl_gateway(&gw, "/api/v1/player/1", &[]);
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["protocol"], "HTTP/1.1",
        "player's app stays on HTTP/1.1: {body}"
    );
    // A gRPC request (content-type) is labelled as such on both sides.
    let (code, body) = curl_gateway(
        &gw,
        "/api/v1/inventory/items",
        &["x-player-tier: premium", "content-type: application/grpc"],
    );
    assert_eq!(code, 200, "{body}");
    let stats = admin_get(
        &mesh.addr("sidecar-inventory-v2.necpgame", "admin"),
        "/stats/prometheus",
    );
    assert!(
        stats.lines().any(|l| l.starts_with("istio_requests_total{")
            && l.contains("reporter=\"destination\"")
            && l.contains("request_protocol=\"grpc\"")),
        "no grpc-labelled request on inventory-v2's sidecar:\n{stats}"
    );
}

#[test]
fn proxy_config_shows_what_a_proxy_has() {
    let mesh = Mesh::up("proxy-config");
    let state = mesh.state_dir.display().to_string();
    let run_pc = |args: &[&str]| {
        let mut all = vec!["proxy-config"];
        all.extend_from_slice(args);
        all.extend(["--state-dir", state.as_str()]);
        let out = run(WEFT, &all);
        assert!(
            out.status.success(),
            "weft {all:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout_of(&out)
    };
    let listeners = run_pc(&["listeners", "ingressgateway"]);
    assert!(listeners.contains("gateway_80"), "{listeners}");
    let routes = run_pc(&["routes", "ingressgateway"]);
    assert!(
        routes.contains("inventory-premium")
            && routes.contains("outbound|8080|v2|inventory.necpgame.svc.cluster.local:100"),
        "{routes}"
    );
    let endpoints = run_pc(&["endpoints", "ingressgateway"]);
    let inbound = mesh.addr(INVENTORY_V1_SIDECAR, "inbound");
    assert!(
        endpoints.lines().any(|l| l.starts_with(&inbound)
            && l.contains("HEALTHY")
            && l.contains("sa/inventory")),
        "{endpoints}"
    );
    let certs: Value =
        serde_json::from_str(&run_pc(&["certs", "inventory-v1", "--output", "json"])).unwrap();
    assert_eq!(
        certs["identity"],
        "spiffe://cluster.local/ns/necpgame/sa/inventory"
    );
    // An ambiguous name is an error that lists the candidates.
    let out = run(
        WEFT,
        &[
            "proxy-config",
            "clusters",
            "inventory",
            "--state-dir",
            state.as_str(),
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("matches several proxies"));
}

#[test]
fn a_live_config_change_reports_what_it_does_not_enforce_in_the_terminal_and_in_status() {
    // Something not enforced from the start: a WorkloadGroup (not built).
    let mesh = Mesh::up_with("not-enforced-live", |dir| {
        std::fs::write(dir.join("workload-group.yaml"), WORKLOAD_GROUP).expect("writing");
    });
    let from = mesh.stderr.len();
    std::fs::write(
        mesh.config_file("telemetry.yaml"),
        "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: mesh-logs, namespace: necpgame}\nspec:\n  metrics:\n  - reportingInterval: 15s\n",
    )
    .expect("writing telemetry.yaml");
    let terminal = mesh.stderr.wait_contains(
        from,
        Duration::from_secs(20),
        &[
            "the new config loads but does not enforce yet",
            "Telemetry/necpgame/mesh-logs (",
        ],
    );
    assert!(
        !terminal.contains("Some("),
        "no Rust debug text:\n{terminal}"
    );
    let state = mesh.state_dir.to_str().unwrap().to_string();
    let text = poll_until(
        "weft status to list the Telemetry",
        Duration::from_secs(10),
        || {
            let out = run(WEFT, &["status", "--state-dir", &state]);
            let text = stdout_of(&out);
            text.contains("Telemetry/necpgame/mesh-logs")
                .then_some(text)
        },
    );
    assert!(text.contains("loaded but not enforced yet"), "{text}");
    assert!(
        text.contains("WorkloadGroup/necpgame/bots"),
        "what was not enforced before the change is still listed:\n{text}"
    );
    let json = mesh.status_json();
    let listed: Vec<&str> = json["not_enforced"]
        .as_array()
        .expect("not_enforced in weft status --output json")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        listed
            .iter()
            .any(|l| l.starts_with("Telemetry/necpgame/mesh-logs (")),
        "{listed:?}"
    );
}

#[test]
fn a_gateway_that_no_gateway_resource_selects_yet_starts_idle() {
    // Istio allows a gateway deployment before any Gateway selects it: weft up must come
    // up (the gateway idle, with no port open) instead of failing.
    let mesh = Mesh::up_with("idle-gateway", |dir| {
        let path = dir.join("istio-gateway.yaml");
        let text = std::fs::read_to_string(&path).expect("gateway file");
        let (_, rest) = text
            .split_once("\n---\n")
            .expect("the Gateway document comes first");
        replace_file(&path, rest);
    });
    let gateways = mesh.ready["gateways"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    assert!(gateways.is_empty(), "no Gateway, no port: {gateways:?}");
    let status = mesh.status_json();
    let gw = status["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| {
            p["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("gateway-"))
        })
        .expect("the gateway process");
    assert_eq!(gw["running"], true, "{status}");
}

#[test]
fn a_request_the_client_abandons_is_counted_dc_with_code_0_by_the_gateway() {
    let mesh = Mesh::up_with("abandoned", |dir| {
        edit(
            &dir.join("registry.yaml"),
            "weft.dev/demo-latency: 2ms",
            "weft.dev/demo-latency: 3s",
        )
    });
    let host = format!("Host: {GAME_HOST}");
    let url = format!("http://{}/api/v1/player/me", mesh.gateway());
    let out = curl(&["-sS", "-m", "0.5", "-H", &host, &url]);
    assert!(
        !out.status.success(),
        "curl must give up before the slow player answers"
    );
    let admin = mesh.gateway_admin();
    poll_until(
        "the gateway to count the abandoned request",
        Duration::from_secs(10),
        || {
            let m = admin_get(&admin, "/stats/prometheus");
            let dc = [
                ("response_code", "0"),
                ("response_flags", "DC"),
                ("destination_service_name", "player"),
            ];
            (metric_sum(&m, "istio_requests_total", &dc) >= 1.0).then_some(())
        },
    );
}

#[test]
fn a_tcp_gateway_server_is_opened_for_tcp_never_as_http() {
    let mesh = Mesh::up_with("tcp-gateway", |dir| {
        edit(
            &dir.join("istio-gateway.yaml"),
            "    hosts: [game.necpgame.local]\n",
            "    hosts: [game.necpgame.local]\n  - port: {number: 31400, name: tcp, protocol: TCP}\n    hosts: [\"*\"]\n",
        )
    });
    let gateways = mesh.ready["gateways"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    assert!(gateways.contains_key("80"), "{gateways:?}");
    let tcp = gateways["31400"].as_str().unwrap_or_default();
    let addr = tcp
        .strip_prefix("tcp://")
        .unwrap_or_else(|| panic!("a TCP server is never served as HTTP: {gateways:?}"));
    // No VirtualService routes TCP on it: an HTTP request gets no HTTP answer, the
    // connection is closed.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut back = Vec::new();
    let _ = s.read_to_end(&mut back);
    assert!(back.is_empty(), "{}", String::from_utf8_lossy(&back));
    let terminal = mesh.stderr.text();
    assert!(
        !terminal.contains("servers[1].port.protocol TCP"),
        "the TCP server is built, not reported:\n{terminal}"
    );
}

/// A WorkloadGroup: loaded, not built (reported as not enforced).
const WORKLOAD_GROUP: &str = "apiVersion: networking.istio.io/v1\nkind: WorkloadGroup\nmetadata: {name: bots, namespace: necpgame}\nspec:\n  metadata: {labels: {app: bots}}\n  template: {serviceAccount: bots}\n";

#[test]
fn weft_analyze_reads_the_config_of_a_running_mesh() {
    let mesh = Mesh::up_with("analyze-live", |dir| {
        std::fs::write(dir.join("workload-group.yaml"), WORKLOAD_GROUP).expect("writing");
    });
    let state = mesh.state_dir.to_str().unwrap().to_string();
    let out = run(WEFT, &["analyze", "--state-dir", &state]);
    let text = stdout_of(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let served = mesh.config_dir.join("istio-gateway.yaml");
    assert!(
        text.contains("0 errors, 0 warnings") && text.contains("info[WA0200]: WorkloadGroup"),
        "{text}"
    );
    assert!(
        text.contains(mesh.config_dir.to_str().unwrap()),
        "the served folder ({}) is what was analyzed:\n{text}",
        served.display()
    );
    // A broken edit of the live folder is caught by analyze before anything else.
    edit(
        &served,
        "gateways: [necpgame-gateway]",
        "gateways: [necpgame-gw]",
    );
    let out = run(WEFT, &["analyze", "--state-dir", &state]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout_of(&out));
    assert!(stdout_of(&out).contains("error[WA0101]"));
}

#[test]
fn a_command_app_is_told_where_its_sidecar_listens_and_reaches_services_by_name() {
    let mut env_file = std::path::PathBuf::new();
    let mesh = Mesh::up_with("app-env", |dir| {
        env_file = dir.join("caller-env.txt");
        std::fs::write(
            dir.join("caller.yaml"),
            format!(
                "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: caller\n  namespace: necpgame\n  annotations:\n    weft.dev/run: command\n    weft.dev/command: \"env > {} && exec sleep 1000\"\n    weft.dev/app-address: \"127.0.0.1:9\"\nspec: {{address: 127.0.0.1, labels: {{app: caller}}}}\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: caller-reads-inventory, namespace: necpgame}}\nspec:\n  selector: {{matchLabels: {{app: inventory}}}}\n  rules: [{{from: [{{source: {{principals: [cluster.local/ns/necpgame/sa/default]}}}}]}}]\n",
                env_file.display()
            ),
        )
        .expect("writing caller.yaml");
    });
    let env = poll_until(
        "the command app to write its environment",
        Duration::from_secs(10),
        || {
            std::fs::read_to_string(&env_file)
                .ok()
                .filter(|t| t.contains("WEFT_OUTBOUND="))
        },
    );
    let var = |k: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("{k} is not set:\n{env}"))
            .to_string()
    };
    let outbound = mesh.addr("sidecar-caller.necpgame", "outbound");
    assert_eq!(var("WEFT_OUTBOUND"), outbound);
    assert_eq!(var("HTTP_PROXY"), format!("http://{outbound}"));
    assert_eq!(var("http_proxy"), format!("http://{outbound}"));
    assert_eq!(var("PORT"), "9");
    // What an app's HTTP client does with HTTP_PROXY: absolute-form through the sidecar,
    // to a mesh service by name, over mTLS to its workload.
    let out = curl(&[
        "-sS",
        "-m",
        "10",
        "-x",
        &var("HTTP_PROXY"),
        "http://inventory.necpgame.svc.cluster.local:8080/api/v1/inventory/items",
    ]);
    let body = stdout_of(&out);
    assert!(
        out.status.success(),
        "{body}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(body.contains("inventory"), "{body}");
    assert!(
        body.contains("spiffe://cluster.local/ns/necpgame/sa/"),
        "the inventory app names the caller's identity: {body}"
    );
}
