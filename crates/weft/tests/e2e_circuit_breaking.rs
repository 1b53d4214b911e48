//! Istio's circuit-breaking task on the real binary
//! (istio.io/latest/docs/tasks/traffic-management/circuit-breaking/): its DestinationRule
//! unchanged (`maxConnections: 1`, `http1MaxPendingRequests: 1`,
//! `maxRequestsPerConnection: 1`, outlier detection) on an httpbin service, driven by a
//! real load client — `h2load` (Debian's nghttp2-client) in HTTP/1.1 mode standing in for
//! fortio — through the client workload's sidecar. One client: every request succeeds;
//! three concurrent clients: some get 503 with flag UO, and the client sidecar's
//! `upstream_rq_pending_overflow` (the task's `istioctl` stats query, read here from
//! `/stats/prometheus`) counts exactly those.

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

const FORTIO_SIDECAR: &str = "sidecar-fortio.default";
const HOST: &str = "httpbin.default.svc.cluster.local";
const CLUSTER: &str = "outbound|8000||httpbin.default.svc.cluster.local";

/// httpbin as a mesh service, the fortio client workload, and the task's rule verbatim.
const CONFIG: &str = r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: httpbin, namespace: default}
spec:
  hosts: [httpbin.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 8000, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: httpbin}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: httpbin
  namespace: default
  annotations: {weft.dev/run: demo-app}
spec: {address: 127.0.0.1, serviceAccount: httpbin, labels: {app: httpbin, version: v1}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: fortio
  namespace: default
  annotations:
    weft.dev/run: command
    weft.dev/command: "exec sleep 100000"
    weft.dev/app-address: "127.0.0.1:9"
spec: {address: 127.0.0.1, serviceAccount: fortio, labels: {app: fortio}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: httpbin
spec:
  host: httpbin
  trafficPolicy:
    connectionPool:
      tcp:
        maxConnections: 1
      http:
        http1MaxPendingRequests: 1
        maxRequestsPerConnection: 1
    outlierDetection:
      consecutive5xxErrors: 1
      interval: 1s
      baseEjectionTime: 3m
      maxEjectionPercent: 100
"#;

/// (2xx, 5xx) answers of `h2load --h1 -c clients -n requests` against `outbound`.
fn h2load(outbound: &str, clients: u32, requests: u32) -> (u32, u32) {
    let out = Command::new("h2load")
        .args([
            "--h1",
            "-c",
            &clients.to_string(),
            "-n",
            &requests.to_string(),
        ])
        .args(["-H", &format!(":authority: {HOST}:8000")])
        .arg(format!("http://{outbound}/get"))
        .output()
        .expect("h2load (Debian's nghttp2-client) is installed");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "h2load failed:\n{text}");
    // "status codes: 17 2xx, 0 3xx, 0 4xx, 3 5xx"
    let line = text
        .lines()
        .find(|l| l.starts_with("status codes:"))
        .unwrap_or_else(|| panic!("no status codes in h2load's output:\n{text}"));
    let count = |class: &str| -> u32 {
        line.split(',')
            .find(|p| p.trim_end().ends_with(class))
            .and_then(|p| p.split_whitespace().rev().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {class} count in {line:?}"))
    };
    let (ok, failed) = (count("2xx"), count("5xx"));
    eprintln!("h2load -c {clients} -n {requests}: {ok} 2xx, {failed} 5xx");
    assert_eq!(ok + failed, requests, "every request answered:\n{text}");
    (ok, failed)
}

#[test]
fn istios_circuit_breaking_task_gives_503_uo_past_one_connection_and_one_pending() {
    let mesh = Mesh::up_with("circuit-breaking", |dir| {
        std::fs::remove_dir_all(dir).unwrap();
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("circuit-breaking.yaml"), CONFIG).unwrap();
    });
    let outbound = mesh.addr(FORTIO_SIDECAR, "outbound");
    let admin = mesh.addr(FORTIO_SIDECAR, "admin");
    // The demo app is up once it answers through the mesh.
    poll_until(
        "httpbin to answer through the mesh",
        Duration::from_secs(20),
        || {
            let r = http_get(&outbound, HOST, "/get", &[]);
            (r.status == 200).then_some(())
        },
    );
    // (upstream_rq_pending_overflow, 503s with flag UO, endpoints ejected) now.
    let counts = || {
        let stats = admin_get(&admin, "/stats/prometheus");
        let cluster = [("cluster_name", CLUSTER)];
        let uo = [
            ("reporter", "source"),
            ("response_code", "503"),
            ("response_flags", "UO"),
        ];
        (
            metric_sum(
                &stats,
                "envoy_cluster_upstream_rq_pending_overflow",
                &cluster,
            ),
            metric_sum(&stats, "istio_requests_total", &uo),
            metric_sum(
                &stats,
                "envoy_cluster_outlier_detection_ejections_active",
                &cluster,
            ),
            stats,
        )
    };
    // The task: one connection, 20 requests, all succeed.
    let (ok, failed) = h2load(&outbound, 1, 20);
    assert_eq!((ok, failed), (20, 0), "one client stays within the limits");
    assert_eq!(counts().0, 0.0);
    // Two concurrent connections: the task shows most succeed (each request needs a new
    // connection, and a request arriving while another waits for its connect overflows
    // the one pending place); how many is timing, so only the successes are asserted.
    let (ok, _) = h2load(&outbound, 2, 20);
    assert!(ok > 0, "two clients: some succeed");
    // Three concurrent connections, 30 requests: some overflow, each one counted.
    let (overflow_before, uo_before, _, _) = counts();
    let (ok, failed) = h2load(&outbound, 3, 30);
    assert!(ok > 0 && failed > 0, "{ok} succeeded, {failed} failed");
    let (overflow, uo, ejected, stats) = counts();
    assert_eq!(
        overflow - overflow_before,
        f64::from(failed),
        "every 503 was a pending overflow:\n{stats}"
    );
    assert_eq!(
        uo - uo_before,
        f64::from(failed),
        "each 503 carries flag UO:\n{stats}"
    );
    // The overflows are the client sidecar's own answers: the endpoint was not ejected.
    assert_eq!(ejected, 0.0, "{stats}");
    let (ok, failed) = h2load(&outbound, 1, 10);
    assert_eq!((ok, failed), (10, 0), "one client again: all succeed");
}
