//! Opaque TCP on the real binary: a real `redis-server` as a mesh workload reached with
//! `redis-cli` through another workload's sidecar (PING, SET/GET, a 1 MiB value), Istio's
//! TCP traffic-shifting task (tcp-echo v1/v2, 80/20 over 100 connections), Istio's TCP
//! metrics, and an AuthorizationPolicy that denies the TCP caller (applied live).

mod common;

use common::*;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const CLIENT_SIDECAR: &str = "sidecar-client.tcp";
const REDIS_SIDECAR: &str = "sidecar-redis.tcp";

/// Starts the command it is given on a free loopback port (`--port P` appended) and says
/// where with a `ready` event once the port accepts connections; lives as long as it.
const LAUNCHER: &str = r#"
import json, socket, subprocess, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
port = s.getsockname()[1]
s.close()
child = subprocess.Popen(sys.argv[1:] + ["--port", str(port)])
deadline = time.time() + 20
while time.time() < deadline and child.poll() is None:
    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
        break
    except OSError:
        time.sleep(0.02)
print(json.dumps({"event": "ready", "address": "127.0.0.1:%d" % port}), flush=True)
sys.exit(child.wait())
"#;

/// Istio's tcp-echo: answers each line with `<version> <line>`.
const ECHO: &str = r#"
import json, socketserver, sys
prefix = sys.argv[1]
class Echo(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            self.wfile.write(prefix.encode() + b" " + line)
            self.wfile.flush()
server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Echo)
print(json.dumps({"event": "ready", "address": "127.0.0.1:%d" % server.server_address[1]}), flush=True)
server.serve_forever()
"#;

fn config(launcher: &Path, echo: &Path) -> String {
    let (launcher, echo) = (launcher.display(), echo.display());
    let workload = |name: &str, labels: &str, command: &str| {
        format!(
            r#"---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: {name}
  namespace: tcp
  annotations:
    weft.dev/run: command
    weft.dev/command: "{command}"
spec: {{address: 127.0.0.1, serviceAccount: {name}, labels: {labels}}}
"#
        )
    };
    let mut out = String::from(
        r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: redis, namespace: tcp}
spec:
  hosts: [redis.tcp.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{number: 6379, name: tcp-redis, protocol: TCP}]
  workloadSelector: {labels: {app: redis}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: tcp-echo, namespace: tcp}
spec:
  hosts: [tcp-echo.tcp.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{number: 9000, name: tcp, protocol: TCP}]
  workloadSelector: {labels: {app: tcp-echo}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: tcp-echo-destination, namespace: tcp}
spec:
  host: tcp-echo
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: tcp-echo, namespace: tcp}
spec:
  hosts: [tcp-echo]
  tcp:
  - match:
    - port: 9000
    route:
    - destination: {host: tcp-echo, port: {number: 9000}, subset: v1}
      weight: 80
    - destination: {host: tcp-echo, port: {number: 9000}, subset: v2}
      weight: 20
"#,
    );
    out += &workload(
        "redis",
        "{app: redis}",
        &format!("exec python3 {launcher} redis-server --bind 127.0.0.1 --save '' --appendonly no"),
    );
    out += &workload(
        "tcp-echo-v1",
        "{app: tcp-echo, version: v1}",
        &format!("exec python3 {echo} v1"),
    );
    out += &workload(
        "tcp-echo-v2",
        "{app: tcp-echo, version: v2}",
        &format!("exec python3 {echo} v2"),
    );
    out += r#"---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: client
  namespace: tcp
  annotations:
    weft.dev/run: command
    weft.dev/command: "exec sleep 100000"
    weft.dev/app-address: "127.0.0.1:9"
spec: {address: 127.0.0.1, serviceAccount: client, labels: {app: client}}
"#;
    out
}

fn redis_cli(addr: &str, args: &[&str], stdin: Option<&[u8]>) -> (bool, Vec<u8>) {
    let (host, port) = addr.rsplit_once(':').unwrap();
    let mut child = Command::new("redis-cli")
        .args(["-h", host, "-p", port, "--raw"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("redis-cli (Debian's redis-tools) is installed");
    let mut input = child.stdin.take().unwrap();
    if let Some(data) = stdin {
        input.write_all(data).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    (out.status.success(), out.stdout)
}

fn ping(addr: &str) -> String {
    let (_, out) = redis_cli(addr, &["PING"], None);
    String::from_utf8_lossy(&out).trim().to_string()
}

#[test]
fn tcp_services_through_the_mesh_redis_traffic_shifting_and_authorization() {
    let scripts = TempDir::new("tcp-scripts");
    let launcher = scripts.path().join("launcher.py");
    let echo = scripts.path().join("echo.py");
    std::fs::write(&launcher, LAUNCHER).unwrap();
    std::fs::write(&echo, ECHO).unwrap();
    let mesh = Mesh::up_with("tcp", |dir| {
        std::fs::remove_dir_all(dir).unwrap();
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("tcp.yaml"), config(&launcher, &echo)).unwrap();
    });
    let redis = mesh.addr(CLIENT_SIDECAR, "tcp/redis.tcp.svc.cluster.local:6379");
    let tcp_echo = mesh.addr(CLIENT_SIDECAR, "tcp/tcp-echo.tcp.svc.cluster.local:9000");

    // redis-cli on the client's side of its sidecar -> mTLS tunnel -> redis' sidecar -> redis.
    poll_until("redis to answer PING", Duration::from_secs(20), || {
        (ping(&redis) == "PONG").then_some(())
    });
    let (ok, out) = redis_cli(&redis, &["SET", "greeting", "hello mesh"], None);
    assert!(ok && String::from_utf8_lossy(&out).trim() == "OK");
    let (_, out) = redis_cli(&redis, &["GET", "greeting"], None);
    assert_eq!(String::from_utf8_lossy(&out).trim(), "hello mesh");
    let big: Vec<u8> = (0..1024 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
    let (ok, _) = redis_cli(&redis, &["-x", "SET", "big"], Some(&big));
    assert!(ok);
    let (_, out) = redis_cli(&redis, &["GET", "big"], None);
    assert_eq!(out.len(), big.len() + 1, "the 1 MiB value and a newline");
    assert!(
        out[..big.len()] == big[..],
        "the value comes back unchanged"
    );
    let (_, out) = redis_cli(&redis, &["STRLEN", "big"], None);
    assert_eq!(String::from_utf8_lossy(&out).trim(), "1048576");

    // Istio's TCP metrics count the bytes on both sidecars.
    let client_admin = mesh.addr(CLIENT_SIDECAR, "admin");
    let redis_admin = mesh.addr(REDIS_SIDECAR, "admin");
    let svc = ("destination_service", "redis.tcp.svc.cluster.local");
    let stats = admin_get(&client_admin, "/stats/prometheus");
    let sent_up = metric_sum(
        &stats,
        "istio_tcp_received_bytes_total",
        &[("reporter", "source"), svc],
    );
    assert!(sent_up > 1024.0 * 1024.0, "{sent_up} bytes\n{stats}");
    let down = metric_sum(
        &stats,
        "istio_tcp_sent_bytes_total",
        &[("reporter", "source"), svc],
    );
    assert!(down > 1024.0 * 1024.0, "{down} bytes");
    let stats = admin_get(&redis_admin, "/stats/prometheus");
    let opened = metric_sum(
        &stats,
        "istio_tcp_connections_opened_total",
        &[
            ("reporter", "destination"),
            ("source_workload", "client"),
            svc,
        ],
    );
    assert!(opened >= 5.0, "{opened} connections\n{stats}");

    // Istio's TCP traffic shifting: 80/20 over 100 connections (within 5).
    let mut v1 = 0;
    for i in 0..100 {
        let s = std::net::TcpStream::connect(&tcp_echo).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        (&s).write_all(format!("hello {i}\n").as_bytes()).unwrap();
        let mut line = String::new();
        BufReader::new(&s).read_line(&mut line).unwrap();
        match line.trim_end().split_once(' ') {
            Some(("v1", rest)) => {
                assert_eq!(rest, format!("hello {i}"));
                v1 += 1;
            }
            Some(("v2", rest)) => assert_eq!(rest, format!("hello {i}")),
            _ => panic!("connection {i}: unexpected answer {line:?}"),
        }
    }
    assert!(
        (75..=85).contains(&v1),
        "80/20 over 100 connections: {v1} to v1"
    );

    // An AuthorizationPolicy that denies the client's principal closes its connections.
    std::fs::write(
        mesh.config_dir.join("deny.yaml"),
        r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-client, namespace: tcp}
spec:
  selector: {matchLabels: {app: redis}}
  action: DENY
  rules: [{from: [{source: {principals: ["cluster.local/ns/tcp/sa/client"]}}]}]
"#,
    )
    .unwrap();
    poll_until(
        "the DENY policy to close redis-cli's connection",
        Duration::from_secs(20),
        || (ping(&redis) != "PONG").then_some(()),
    );
    let stats = admin_get(&redis_admin, "/stats/prometheus");
    let denied = metric_sum(
        &stats,
        "weft_authorization_decisions_total",
        &[("policy", "tcp.deny-client"), ("decision", "denied")],
    );
    assert!(denied >= 1.0, "{stats}");
    // The echo service is not covered by the policy.
    let s = std::net::TcpStream::connect(&tcp_echo).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    (&s).write_all(b"still here\n").unwrap();
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).unwrap();
    assert!(line.ends_with(" still here\n"), "{line:?}");
}
