//! Istio's egress tasks on the real binary, with real servers outside the mesh and real
//! clients: `weft up --dns-server` pointed at a real dnsmasq that resolves the
//! ServiceEntries' `*.data.example` / `*.tls.example` names to 127.0.0.1;
//! - a real `redis-server` and a real PostgreSQL 15 (`initdb` + `postgres`, as an
//!   unprivileged user when the test runs as root) outside the mesh, reached with
//!   `redis-cli` and `psql` through a client sidecar's Sidecar egress listeners (`bind` +
//!   `port`, MESH_EXTERNAL ServiceEntries with `resolution: DNS` and `targetPort`), with the
//!   client sidecar's Istio TCP metrics for those destinations, labelled as Istio labels
//!   services outside the mesh;
//! - `outboundTrafficPolicy` on the sidecar's HTTP outbound listener: ALLOW_ANY (the
//!   default) passes an unknown host through to where it was addressed, a MeshConfig's
//!   REGISTRY_ONLY (applied live) answers 502 while a registered host still gets through,
//!   and a Sidecar's ALLOW_ANY overrides the mesh's REGISTRY_ONLY;
//! - TLS origination (Istio's egress-tls-origination task shape): plain HTTP from the app,
//!   HTTPS to a real server whose certificate comes from a CA the test makes with the
//!   `openssl` CLI (DestinationRule `tls.mode: SIMPLE` + `caCertificates`), and
//!   DestinationRules whose `sni` / `subjectAltNames` do not match the certificate (503).
//!
//! Every server is a real process the test starts on a free port and stops on drop; the
//! file takes about 5 s.

mod common;

use common::*;
use std::io::Write;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const CLIENT_SIDECAR: &str = "sidecar-client.egress";
const DNSMASQ: &str = "/usr/sbin/dnsmasq";
const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
/// How long a server outside the mesh may take to come up, and a live edit to apply.
const WAIT: Duration = Duration::from_secs(30);

/// The client app: a command with a sidecar (its app port is never dialled).
const CLIENT: &str = r#"---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: client
  namespace: egress
  annotations:
    weft.dev/run: command
    weft.dev/command: "exec sleep 100000"
    weft.dev/app-address: "127.0.0.1:9"
spec: {address: 127.0.0.1, serviceAccount: client, labels: {app: client}}
"#;

/// An HTTP/1.1 server (HTTPS with `cert key`) on a free loopback port; every GET answers
/// 200 with JSON naming the server, the Host it got and the SNI of the TLS handshake.
/// Says where with a `ready` event.
const HTTP_SERVER: &str = r#"
import http.server, json, ssl, sys
name = sys.argv[1]
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = json.dumps({"server": name, "host": self.headers.get("Host"), "path": self.path,
                           "sni": getattr(self.connection, "sni", None)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
if len(sys.argv) > 3:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[2], sys.argv[3])
    def remember(sock, sni, _ctx):
        sock.sni = sni
    ctx.sni_callback = remember
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
print(json.dumps({"event": "ready", "address": "127.0.0.1:%d" % server.server_address[1]}), flush=True)
server.serve_forever()
"#;

// ---------------------------------------------------------------------------------------
// Addresses

/// A TCP port on `ip` nobody listens on right now (bound, then released).
fn free_port(ip: Ipv4Addr) -> u16 {
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|e| panic!("binding {ip}:0: {e}"))
        .port()
}

/// A port free on 127.0.0.1 for both TCP and UDP (for the DNS server).
fn free_udp_tcp_port() -> u16 {
    poll_until("a port free for TCP and UDP", WAIT, || {
        let port = free_port(Ipv4Addr::LOCALHOST);
        UdpSocket::bind((Ipv4Addr::LOCALHOST, port))
            .ok()
            .map(|_| port)
    })
}

/// A loopback address other tests are unlikely to use (127.0.0.20 … 127.0.0.249), for
/// the Sidecar's `bind`; checked bindable.
fn loopback_for_bind() -> Ipv4Addr {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let seed = nanos ^ std::process::id().wrapping_mul(2_654_435_761);
    let ip = Ipv4Addr::new(127, 0, 0, 20 + (seed % 230) as u8);
    TcpListener::bind((ip, 0)).unwrap_or_else(|e| panic!("binding {ip}:0: {e}"));
    ip
}

// ---------------------------------------------------------------------------------------
// Servers outside the mesh

/// A real dnsmasq answering `name -> 127.0.0.1` for each of `names` (and nothing else)
/// on 127.0.0.1:`port` (UDP and TCP); returned once it answers a query.
struct Dns {
    _child: ChildGuard,
    _dir: TempDir,
    addr: String,
}

fn dnsmasq(names: &[&str]) -> Dns {
    assert!(
        Path::new(DNSMASQ).exists(),
        "{DNSMASQ} is missing (Debian's dnsmasq-base; .ci/run installs it)"
    );
    let dir = TempDir::new("egress-dns");
    let port = free_udp_tcp_port();
    let mut cmd = Command::new(DNSMASQ);
    cmd.args([
        "--no-daemon",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--bind-interfaces",
        "--listen-address=127.0.0.1",
        &format!("--port={port}"),
        &format!("--pid-file={}", dir.path().join("dnsmasq.pid").display()),
        "--log-facility=-",
        "--log-queries",
    ]);
    for name in names {
        cmd.arg(format!("--address=/{name}/127.0.0.1"));
    }
    let (mut child, _out, err) = ChildGuard::spawn(&mut cmd);
    let addr = format!("127.0.0.1:{port}");
    poll_until("dnsmasq to answer a query", WAIT, || {
        if let Some(status) = child.child.try_wait().unwrap() {
            panic!("dnsmasq exited ({status}): {}", err.text());
        }
        (dns_query(&addr, names[0]) == Some(Ipv4Addr::LOCALHOST)).then_some(())
    });
    Dns {
        _child: child,
        _dir: dir,
        addr,
    }
}

/// The first A record a DNS server at `server` gives for `name` (one UDP query).
fn dns_query(server: &str, name: &str) -> Option<Ipv4Addr> {
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).ok()?;
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .ok()?;
    // id 0x7765, RD, one question.
    let mut q = vec![0x77, 0x65, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]); // root, type A, class IN
    sock.send_to(&q, server).ok()?;
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).ok()?;
    let r = &buf[..n];
    let answers = u16::from_be_bytes([*r.get(6)?, *r.get(7)?]);
    // Same id, a response, rcode 0, an answer; the one A record's address ends it.
    if r[..2] != q[..2] || r[2] & 0x80 == 0 || r[3] & 0x0f != 0 || answers == 0 || n < 4 {
        return None;
    }
    Some(Ipv4Addr::new(r[n - 4], r[n - 3], r[n - 2], r[n - 1]))
}

/// A real redis-server on 127.0.0.1 (not a mesh workload), once it accepts connections.
fn redis_server() -> (ChildGuard, u16) {
    let port = free_port(Ipv4Addr::LOCALHOST);
    let (mut child, _out, _err) = ChildGuard::spawn(Command::new("redis-server").args([
        "--bind",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--save",
        "",
        "--appendonly",
        "no",
    ]));
    let addr = format!("127.0.0.1:{port}");
    poll_until("redis-server to answer PING", WAIT, || {
        assert!(
            child.child.try_wait().unwrap().is_none(),
            "redis-server exited"
        );
        (ping(&addr) == "PONG").then_some(())
    });
    (child, port)
}

/// A real PostgreSQL 15 cluster (trust auth) on 127.0.0.1:`port`, stopped (fast
/// shutdown) on drop. Run as `postgres` when the test runs as root: postgres refuses root.
struct Postgres {
    child: ChildGuard,
    port: u16,
    _dir: TempDir,
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGINT: fast shutdown (SIGTERM, ChildGuard's, waits for clients to leave).
        if self.child.child.try_wait().ok().flatten().is_none() {
            signal(self.child.child.id(), "INT");
        }
    }
}

fn is_root() -> bool {
    stdout_of(&run("id", &["-u"])).trim() == "0"
}

/// `program` from PostgreSQL's bin dir, as the `postgres` user when we are root.
fn pg_command(program: &str) -> Command {
    let path = format!("{PG_BIN}/{program}");
    if is_root() {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
            &path,
        ]);
        c
    } else {
        Command::new(path)
    }
}

fn postgres_server() -> Postgres {
    assert!(
        Path::new(PG_BIN).join("postgres").exists(),
        "{PG_BIN}/postgres is missing (Debian's postgresql; .ci/run installs it)"
    );
    let dir = TempDir::new("egress-pg");
    let data = dir.path().join("data");
    if is_root() {
        let out = run(
            "chown",
            &["postgres:postgres", dir.path().to_str().unwrap()],
        );
        assert!(out.status.success(), "chown: {out:?}");
    }
    let out = pg_command("initdb")
        .args(["-D", data.to_str().unwrap()])
        .args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
            "--locale=C",
            "-E",
            "UTF8",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "initdb: {}{}",
        stdout_of(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    let port = free_port(Ipv4Addr::LOCALHOST);
    let (mut child, _out, err) = ChildGuard::spawn(
        pg_command("postgres")
            .args(["-D", data.to_str().unwrap()])
            .args(["-k", dir.path().to_str().unwrap()])
            .args(["-p", &port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]),
    );
    poll_until("postgres to answer a query", WAIT, || {
        if let Some(status) = child.child.try_wait().unwrap() {
            panic!("postgres exited ({status}): {}", err.text());
        }
        psql("127.0.0.1", port, "select 1")
            .ok()
            .filter(|s| s == "1")
    });
    Postgres {
        child,
        port,
        _dir: dir,
    }
}

/// `psql -Atc SQL` against `host:port` as `postgres`: its output, or its error.
fn psql(host: &str, port: u16, sql: &str) -> Result<String, String> {
    let conn = format!("host={host} port={port} user=postgres dbname=postgres connect_timeout=10");
    let out = run("psql", &[&conn, "-v", "ON_ERROR_STOP=1", "-Atc", sql]);
    if out.status.success() {
        Ok(stdout_of(&out).trim_end_matches('\n').to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// `python3 HTTP_SERVER args…`, once it said where it listens.
fn http_server(script: &Path, args: &[&str]) -> (ChildGuard, String) {
    let (child, out, _err) = ChildGuard::spawn(Command::new("python3").arg(script).args(args));
    let addr = out.wait_for("the HTTP server's ready event", 0, WAIT, |t| {
        t.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["event"] == "ready")
            .and_then(|v| v["address"].as_str().map(str::to_string))
    });
    (child, addr)
}

// ---------------------------------------------------------------------------------------
// Clients

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

/// `curl -H 'Host: HOST' http://OUTBOUND/PATH`: (status, body).
fn curl_host(outbound: &str, host: &str, path: &str) -> (u16, String) {
    let out = curl(&[
        "-s",
        "--max-time",
        "20",
        "-w",
        "\n%{http_code}",
        "-H",
        &format!("Host: {host}"),
        &format!("http://{outbound}{path}"),
    ]);
    let text = stdout_of(&out);
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// The sample lines of `metric` in `exposition` whose labels include `label`.
fn samples<'a>(exposition: &'a str, metric: &str, label: &str) -> Vec<&'a str> {
    exposition
        .lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")) && l.contains(label))
        .collect()
}

// ---------------------------------------------------------------------------------------
// 1. Redis and PostgreSQL outside the mesh, through Sidecar egress listeners

fn tcp_config(bind: Ipv4Addr, redis: (u16, u16), postgres: (u16, u16)) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: redis, namespace: egress}}
spec:
  hosts: [redis.data.example]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{{number: {rb}, name: tcp-redis, protocol: TCP, targetPort: {rp}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: postgres, namespace: egress}}
spec:
  hosts: [postgres.data.example]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{{number: {pb}, name: tcp-postgres, protocol: TCP, targetPort: {pp}}}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: client, namespace: egress}}
spec:
  workloadSelector: {{labels: {{app: client}}}}
  egress:
  - port: {{number: {rb}, protocol: TCP, name: tcp-redis}}
    bind: {bind}
    hosts: ["./redis.data.example"]
  - port: {{number: {pb}, protocol: TCP, name: tcp-postgres}}
    bind: {bind}
    hosts: ["./postgres.data.example"]
{CLIENT}"#,
        rb = redis.0,
        rp = redis.1,
        pb = postgres.0,
        pp = postgres.1,
    )
}

/// The TCP egress setup: dnsmasq, redis-server and postgres outside the mesh, and a mesh
/// whose client sidecar has Sidecar egress listeners for both at `bind`.
struct TcpEgress {
    // Dropped first: the mesh stops before the servers it reaches.
    mesh: Mesh,
    bind: Ipv4Addr,
    /// The Sidecar's listeners: `bind:redis_bind`, `bind:pg_bind`.
    redis: String,
    redis_port: u16,
    pg_bind: u16,
    pg: Postgres,
    _redis: ChildGuard,
    _dns: Dns,
}

fn tcp_egress(tag: &str) -> TcpEgress {
    let serial = serial();
    let dns = dnsmasq(&["redis.data.example", "postgres.data.example"]);
    let (redis_child, redis_port) = redis_server();
    let pg = postgres_server();
    let bind = loopback_for_bind();
    let redis_bind = free_port(bind);
    let pg_bind = free_port(bind);
    let config = tcp_config(bind, (redis_bind, redis_port), (pg_bind, pg.port));
    let mesh = Mesh::up_holding(serial, tag, &["--dns-server", &dns.addr], |dir| {
        std::fs::remove_dir_all(dir).unwrap();
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("egress.yaml"), config).unwrap();
    });
    // The Sidecar's egress listeners are at the fixed addresses it names.
    let redis = format!("{bind}:{redis_bind}");
    assert_eq!(
        mesh.addr(
            CLIENT_SIDECAR,
            &format!("tcp/redis.data.example:{redis_bind}")
        ),
        redis
    );
    assert_eq!(
        mesh.addr(
            CLIENT_SIDECAR,
            &format!("tcp/postgres.data.example:{pg_bind}")
        ),
        format!("{bind}:{pg_bind}")
    );
    TcpEgress {
        mesh,
        bind,
        redis,
        redis_port,
        pg_bind,
        pg,
        _redis: redis_child,
        _dns: dns,
    }
}

#[test]
fn redis_and_postgres_outside_the_mesh_through_sidecar_egress_listeners() {
    let t = tcp_egress("egress-tcp");
    let (mesh, bind, redis, redis_port, pg_bind, pg) = (
        &t.mesh,
        t.bind,
        t.redis.as_str(),
        t.redis_port,
        t.pg_bind,
        &t.pg,
    );

    // Redis: redis-cli -> the client's sidecar at bind:B -> (dnsmasq) -> redis-server.
    let mut connections = 0;
    poll_until("redis to answer PING through the sidecar", WAIT, || {
        connections += 1;
        (ping(redis) == "PONG").then_some(())
    });
    let (ok, out) = redis_cli(redis, &["SET", "greeting", "hello egress"], None);
    assert!(
        ok && String::from_utf8_lossy(&out).trim() == "OK",
        "{out:?}"
    );
    let (_, out) = redis_cli(redis, &["GET", "greeting"], None);
    assert_eq!(String::from_utf8_lossy(&out).trim(), "hello egress");
    let big: Vec<u8> = (0..1024 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
    let (ok, _) = redis_cli(redis, &["-x", "SET", "big"], Some(&big));
    assert!(ok);
    let (_, out) = redis_cli(redis, &["GET", "big"], None);
    assert_eq!(out.len(), big.len() + 1, "the 1 MiB value and a newline");
    assert!(
        out[..big.len()] == big[..],
        "the value comes back unchanged"
    );
    connections += 4;
    // It is the real server outside the mesh that holds the keys.
    let (_, out) = redis_cli(&format!("127.0.0.1:{redis_port}"), &["STRLEN", "big"], None);
    assert_eq!(String::from_utf8_lossy(&out).trim(), "1048576");

    // The client sidecar's Istio TCP metrics count those bytes and connections.
    let admin = mesh.addr(CLIENT_SIDECAR, "admin");
    let svc = ("destination_service", "redis.data.example");
    let source = ("reporter", "source");
    let stats = poll_until("the TCP metrics of the closed connections", WAIT, || {
        let stats = admin_get(&admin, "/stats/prometheus");
        let up = metric_sum(&stats, "istio_tcp_received_bytes_total", &[source, svc]);
        let down = metric_sum(&stats, "istio_tcp_sent_bytes_total", &[source, svc]);
        let closed = metric_sum(&stats, "istio_tcp_connections_closed_total", &[source, svc]);
        (up > 1024.0 * 1024.0 && down > 1024.0 * 1024.0 && closed >= 4.0).then_some(stats)
    });
    let opened = metric_sum(&stats, "istio_tcp_connections_opened_total", &[source, svc]);
    assert!(
        (5.0..=connections as f64).contains(&opened),
        "{opened} connections opened, {connections} made\n{stats}"
    );
    for metric in [
        "istio_tcp_sent_bytes_total",
        "istio_tcp_received_bytes_total",
        "istio_tcp_connections_opened_total",
    ] {
        let lines = samples(&stats, metric, "destination_service=\"redis.data.example\"");
        eprintln!("{}", lines.join("\n"));
        assert!(!lines.is_empty(), "no {metric} for redis.data.example");
        for l in lines {
            // What weft gets right; the destination's other labels are Istio's only in
            // `external_destination_metric_labels_are_istios` below.
            for label in [
                "source_workload=\"client\"",
                "source_workload_namespace=\"egress\"",
                "source_principal=\"spiffe://cluster.local/ns/egress/sa/client\"",
                "request_protocol=\"tcp\"",
                "response_flags=\"-\"",
            ] {
                assert!(l.contains(label), "{label} not in {l}");
            }
        }
    }

    // PostgreSQL: psql -> the client's sidecar at bind:B2 -> (dnsmasq) -> postgres.
    let answer = poll_until("postgres to answer through the sidecar", WAIT, || {
        psql(&bind.to_string(), pg_bind, "select 40+2").ok()
    });
    assert_eq!(answer, "42");
    let rows = psql(
        &bind.to_string(),
        pg_bind,
        "create table items (id int primary key, name text); \
         insert into items values (1, 'sword'), (2, 'shield'); \
         select name from items order by id",
    )
    .unwrap();
    // psql 15+ prints every statement's result of a multi-statement -c.
    assert_eq!(rows, "CREATE TABLE\nINSERT 0 2\nsword\nshield");
    let rows = psql(&bind.to_string(), pg_bind, "select count(*) from items").unwrap();
    assert_eq!(rows, "2");
    // About a MiB back from the server, unchanged.
    let big = psql(&bind.to_string(), pg_bind, "select repeat('ab', 500000)").unwrap();
    assert_eq!(big.len(), 1_000_000);
    assert!(big.bytes().enumerate().all(|(i, b)| b == b"ab"[i % 2]));
    // The table is in the real server.
    assert_eq!(
        psql(
            "127.0.0.1",
            pg.port,
            "select string_agg(name, ',' order by id) from items"
        )
        .unwrap(),
        "sword,shield"
    );
    let stats = poll_until("the postgres TCP metrics", WAIT, || {
        let stats = admin_get(&admin, "/stats/prometheus");
        let pg_svc = ("destination_service", "postgres.data.example");
        let down = metric_sum(&stats, "istio_tcp_sent_bytes_total", &[source, pg_svc]);
        (down > 1_000_000.0).then_some(stats)
    });
    let opened = metric_sum(
        &stats,
        "istio_tcp_connections_opened_total",
        &[source, ("destination_service", "postgres.data.example")],
    );
    assert!(opened >= 4.0, "{opened}\n{stats}");
}

/// Istio labels a service outside the mesh by its ServiceEntry (cluster metadata
/// `services[].name` is the host, `namespace` the ServiceEntry's) and, with no peer
/// metadata from the other side, knows no destination workload: e.g. istio/istio#15188's
/// `destination_service="httpbin.org",destination_service_name="httpbin.org",
/// destination_service_namespace="default",destination_workload="unknown",
/// destination_workload_namespace="unknown",destination_app="unknown",
/// destination_principal="unknown"`.
#[test]
fn external_destination_metric_labels_are_istios() {
    let t = tcp_egress("egress-labels");
    poll_until("redis to answer PING through the sidecar", WAIT, || {
        (ping(&t.redis) == "PONG").then_some(())
    });
    let admin = t.mesh.addr(CLIENT_SIDECAR, "admin");
    let stats = poll_until("the TCP metrics of the PING", WAIT, || {
        let stats = admin_get(&admin, "/stats/prometheus");
        let closed = metric_sum(
            &stats,
            "istio_tcp_connections_closed_total",
            &[("destination_service", "redis.data.example")],
        );
        (closed >= 1.0).then_some(stats)
    });
    let lines = samples(
        &stats,
        "istio_tcp_connections_opened_total",
        "destination_service=\"redis.data.example\"",
    );
    assert!(!lines.is_empty(), "{stats}");
    for l in lines {
        for label in [
            "destination_service_name=\"redis.data.example\"",
            "destination_service_namespace=\"egress\"",
            "destination_workload=\"unknown\"",
            "destination_workload_namespace=\"unknown\"",
            "destination_app=\"unknown\"",
            "destination_principal=\"unknown\"",
            "destination_canonical_service=\"unknown\"",
            "destination_cluster=\"unknown\"",
        ] {
            assert!(l.contains(label), "{label} not in {l}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// 2. outboundTrafficPolicy: ALLOW_ANY, MeshConfig REGISTRY_ONLY, a Sidecar's override

const HTTP_ENTRY: &str = r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: http-data, namespace: egress}
spec:
  hosts: [http.data.example]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{number: 80, name: http, protocol: HTTP, targetPort: TARGET}]
"#;

#[test]
fn outbound_traffic_policy_allow_any_registry_only_and_a_sidecar_override() {
    let serial = serial();
    let scripts = TempDir::new("egress-policy-scripts");
    let script = scripts.path().join("http_server.py");
    std::fs::write(&script, HTTP_SERVER).unwrap();
    let dns = dnsmasq(&["http.data.example"]);
    let (_server, server) = http_server(&script, &["local"]);
    let server_port = server.rsplit_once(':').unwrap().1.to_string();
    let entry = HTTP_ENTRY.replace("TARGET", &server_port);
    let mesh = Mesh::up_holding(
        serial,
        "egress-policy",
        &["--dns-server", &dns.addr],
        |dir| {
            std::fs::remove_dir_all(dir).unwrap();
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(dir.join("egress.yaml"), format!("{entry}{CLIENT}")).unwrap();
        },
    );
    let outbound = mesh.addr(CLIENT_SIDECAR, "outbound");

    // ALLOW_ANY (no MeshConfig, no Sidecar): a host the registry does not know goes where
    // the app addressed it.
    let (code, body) = curl_host(&outbound, &server, "/unknown");
    assert_eq!(code, 200, "{body}");
    let got = json(&body);
    assert_eq!(got["server"], "local");
    assert_eq!(got["host"], server.as_str());
    assert_eq!(got["path"], "/unknown");
    // The registered host: resolved by dnsmasq, its targetPort dialled.
    let (code, body) = curl_host(&outbound, "http.data.example", "/registered");
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body)["host"], "http.data.example");

    // MeshConfig REGISTRY_ONLY, applied live: the unknown host is blocked (502) ...
    std::fs::write(
        mesh.config_file("mesh.yaml"),
        r#"apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |-
    outboundTrafficPolicy: {mode: REGISTRY_ONLY}
"#,
    )
    .unwrap();
    let body = poll_until("REGISTRY_ONLY to block the unknown host", WAIT, || {
        let (code, body) = curl_host(&outbound, &server, "/unknown");
        assert!(code == 200 || code == 502, "{code}: {body}");
        (code == 502).then_some(body)
    });
    assert!(
        !body.contains("\"server\""),
        "blocked, not forwarded: {body}"
    );
    // ... while the registered host still gets through.
    let (code, body) = curl_host(&outbound, "http.data.example", "/registered");
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body)["server"], "local");

    // A Sidecar for the client with ALLOW_ANY overrides the mesh's REGISTRY_ONLY.
    std::fs::write(
        mesh.config_file("sidecar.yaml"),
        r#"apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: client, namespace: egress}
spec:
  workloadSelector: {labels: {app: client}}
  outboundTrafficPolicy: {mode: ALLOW_ANY}
"#,
    )
    .unwrap();
    let body = poll_until("the Sidecar's ALLOW_ANY to pass it again", WAIT, || {
        let (code, body) = curl_host(&outbound, &server, "/unknown");
        assert!(code == 200 || code == 502, "{code}: {body}");
        (code == 200).then_some(body)
    });
    assert_eq!(json(&body)["server"], "local");
    let (code, _) = curl_host(&outbound, "http.data.example", "/registered");
    assert_eq!(code, 200);

    // The client sidecar's request metrics: the registered host by its name, the 502s.
    let stats = admin_get(&mesh.addr(CLIENT_SIDECAR, "admin"), "/stats/prometheus");
    let registered = metric_sum(
        &stats,
        "istio_requests_total",
        &[
            ("reporter", "source"),
            ("destination_service", "http.data.example"),
            ("response_code", "200"),
        ],
    );
    assert!(registered >= 3.0, "{registered}\n{stats}");
    let blocked = metric_sum(
        &stats,
        "istio_requests_total",
        &[("reporter", "source"), ("response_code", "502")],
    );
    assert!(blocked >= 1.0, "{stats}");
    for l in stats
        .lines()
        .filter(|l| l.starts_with("istio_requests_total{"))
    {
        eprintln!("{l}");
    }
}

// ---------------------------------------------------------------------------------------
// 3. TLS origination

/// `openssl ARGS` in `dir`, which must succeed.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("running openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`ca.pem`) and a server certificate for `api.tls.example` it signed
/// (`server.pem`, `server.key`), P-256 keys.
fn certificates(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut args = vec![
        "req",
        "-x509",
        "-days",
        "2",
        "-subj",
        "/CN=weft e2e egress CA",
    ];
    args.extend(ec);
    args.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(dir, &args);
    let mut args = vec!["req", "-subj", "/CN=api.tls.example"];
    args.extend(ec);
    args.extend(["-keyout", "server.key", "-out", "server.csr"]);
    openssl(dir, &args);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:api.tls.example\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-sha256",
            "-days",
            "2",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-set_serial",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ],
    );
}

fn tls_rule(ca: &Path, extra: &str) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: api-tls, namespace: egress}}
spec:
  host: api.tls.example
  trafficPolicy:
    tls:
      mode: SIMPLE
      caCertificates: {}{extra}
"#,
        ca.display()
    )
}

#[test]
fn tls_origination_to_a_service_outside_the_mesh() {
    let serial = serial();
    let dir = TempDir::new("egress-tls-files");
    certificates(dir.path());
    let script = dir.path().join("http_server.py");
    std::fs::write(&script, HTTP_SERVER).unwrap();
    let dns = dnsmasq(&["api.tls.example"]);
    let cert = dir.path().join("server.pem");
    let key = dir.path().join("server.key");
    let (_server, server) = http_server(
        &script,
        &["tls", cert.to_str().unwrap(), key.to_str().unwrap()],
    );
    let server_port = server.rsplit_once(':').unwrap().1.to_string();
    // The server speaks only TLS, with a certificate curl trusts from our CA.
    let direct = curl(&[
        "-s",
        "--cacert",
        dir.path().join("ca.pem").to_str().unwrap(),
        "--resolve",
        &format!("api.tls.example:{server_port}:127.0.0.1"),
        &format!("https://api.tls.example:{server_port}/direct"),
    ]);
    assert_eq!(json(&stdout_of(&direct))["sni"], "api.tls.example");

    let ca = dir.path().join("ca.pem");
    let entry = format!(
        r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: api-tls, namespace: egress}}
spec:
  hosts: [api.tls.example]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{{number: 80, name: http, protocol: HTTP, targetPort: {server_port}}}]
"#
    );
    let rule = tls_rule(&ca, "");
    let mesh = Mesh::up_holding(serial, "egress-tls", &["--dns-server", &dns.addr], |dir| {
        std::fs::remove_dir_all(dir).unwrap();
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("egress.yaml"), format!("{entry}{CLIENT}")).unwrap();
        std::fs::write(dir.join("rule.yaml"), rule).unwrap();
    });
    let outbound = mesh.addr(CLIENT_SIDECAR, "outbound");
    let rule_file = mesh.config_file("rule.yaml");

    // Plain HTTP from the app, HTTPS (SNI api.tls.example, certificate verified) out.
    let (code, body) = curl_host(&outbound, "api.tls.example", "/originated");
    assert_eq!(code, 200, "{body}");
    let got = json(&body);
    assert_eq!(got["server"], "tls");
    assert_eq!(got["sni"], "api.tls.example");
    assert_eq!(got["host"], "api.tls.example");
    assert_eq!(got["path"], "/originated");

    // Each change applied live; the request alternates between failing and passing.
    let expect = |what: &str, want: u16| {
        poll_until(what, WAIT, || {
            let (code, body) = curl_host(&outbound, "api.tls.example", "/originated");
            assert!(code == 200 || code == 503, "{what}: {code} {body}");
            (code == want).then_some(body)
        })
    };
    // An SNI the certificate does not carry: verification fails, 503.
    replace_file(&rule_file, &tls_rule(&ca, "\n      sni: wrong.tls.example"));
    let body = expect("the SNI mismatch to fail the origination", 503);
    assert!(body.contains("TLS origination"), "{body}");
    assert!(body.contains("wrong.tls.example"), "{body}");
    // The same SNI with subjectAltNames that the certificate carries: accepted (the SANs
    // are what is checked), and the server saw the configured SNI.
    replace_file(
        &rule_file,
        &tls_rule(
            &ca,
            "\n      sni: wrong.tls.example\n      subjectAltNames: [api.tls.example]",
        ),
    );
    let body = expect("subjectAltNames matching the certificate", 200);
    assert_eq!(json(&body)["sni"], "wrong.tls.example");
    // subjectAltNames the certificate does not carry: 503.
    replace_file(
        &rule_file,
        &tls_rule(&ca, "\n      subjectAltNames: [other.tls.example]"),
    );
    let body = expect("subjectAltNames not matching the certificate", 503);
    assert!(body.contains("TLS origination"), "{body}");
    // Back to the task's rule: 200 again.
    replace_file(&rule_file, &tls_rule(&ca, ""));
    let body = expect("the task's rule to pass again", 200);
    assert_eq!(json(&body)["sni"], "api.tls.example");
}

// ---------------------------------------------------------------------------------------
// 4. Istio's egress-gateway task: the sidecar sends the request to the egress gateway,
//    which sends it on to the service outside the mesh.

const EGRESS_GATEWAY: &str = r#"---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: istio-egressgateway
  namespace: istio-system
  annotations: {weft.dev/role: gateway}
spec:
  address: 127.0.0.1
  labels: {istio: egressgateway, app: istio-egressgateway}
  serviceAccount: istio-egressgateway
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: istio-egressgateway, namespace: istio-system}
spec:
  hosts: [istio-egressgateway.istio-system.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{number: 80, name: http2, protocol: HTTP2}]
  workloadSelector: {labels: {istio: egressgateway}}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: istio-egressgateway, namespace: egress}
spec:
  selector: {istio: egressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [http.data.example]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: egressgateway-for-data, namespace: egress}
spec:
  host: istio-egressgateway.istio-system.svc.cluster.local
  subsets: [{name: data}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: direct-data-through-egress-gateway, namespace: egress}
spec:
  hosts: [http.data.example]
  gateways: [istio-egressgateway, mesh]
  http:
  - match: [{gateways: [mesh], port: 80}]
    route:
    - destination: {host: istio-egressgateway.istio-system.svc.cluster.local, subset: data, port: {number: 80}}
      weight: 100
  - match: [{gateways: [istio-egressgateway], port: 80}]
    route:
    - destination: {host: http.data.example, port: {number: 80}}
      weight: 100
"#;

/// What a gateway test's mesh needs alive: the DNS server, the server outside the mesh
/// and its script folder.
struct Outside {
    _dns: Dns,
    _server: ChildGuard,
    _scripts: TempDir,
}

/// A mesh with the client, `http.data.example` outside it (resolved by a dnsmasq) and
/// the egress-gateway config `gateway`.
fn egress_gateway_mesh(tag: &str, gateway: &str) -> (Mesh, Outside) {
    let serial = serial();
    let scripts = TempDir::new(&format!("{tag}-scripts"));
    let script = scripts.path().join("http_server.py");
    std::fs::write(&script, HTTP_SERVER).unwrap();
    let dns = dnsmasq(&["http.data.example"]);
    let (server, addr) = http_server(&script, &["outside"]);
    let server_port = addr.rsplit_once(':').unwrap().1.to_string();
    let entry = HTTP_ENTRY.replace("TARGET", &server_port);
    let mesh = Mesh::up_holding(serial, tag, &["--dns-server", &dns.addr], |dir| {
        std::fs::remove_dir_all(dir).unwrap();
        std::fs::create_dir_all(dir).unwrap();
        let config = format!("{entry}{CLIENT}{gateway}");
        std::fs::write(dir.join("egress.yaml"), config).unwrap();
    });
    let outside = Outside {
        _dns: dns,
        _server: server,
        _scripts: scripts,
    };
    (mesh, outside)
}

/// The body of `GET path` for `http.data.example` through the client's sidecar, once it
/// passes: the gateway reports where its server is once it serves it; until then the
/// sidecar's route has no endpoint (503).
fn through_the_gateway(mesh: &Mesh, path: &str) -> String {
    let outbound = mesh.addr(CLIENT_SIDECAR, "outbound");
    poll_until(
        "the request to pass through the egress gateway",
        WAIT,
        || {
            let (code, body) = curl_host(&outbound, "http.data.example", path);
            assert!(code == 200 || code == 503, "{code}: {body}");
            (code == 200).then_some(body)
        },
    )
}

#[test]
fn the_egress_gateway_task_sends_sidecar_traffic_through_the_gateway() {
    let (mesh, _outside) = egress_gateway_mesh("egress-gateway", EGRESS_GATEWAY);
    let body = through_the_gateway(&mesh, "/through");
    let got = json(&body);
    assert_eq!(got["server"], "outside");
    assert_eq!(got["host"], "http.data.example");
    assert_eq!(got["path"], "/through");
    // Both hops counted: the sidecar sent it to the gateway's service, the gateway to the
    // service outside the mesh.
    let sidecar = admin_get(&mesh.addr(CLIENT_SIDECAR, "admin"), "/stats/prometheus");
    let to_gateway = [
        ("reporter", "source"),
        (
            "destination_service",
            "istio-egressgateway.istio-system.svc.cluster.local",
        ),
        ("destination_workload", "istio-egressgateway"),
        ("response_code", "200"),
    ];
    assert!(
        metric_sum(&sidecar, "istio_requests_total", &to_gateway) >= 1.0,
        "{sidecar}"
    );
    let gateway_admin = mesh.addr("gateway-istio-egressgateway.istio-system", "admin");
    let gateway = poll_until("the gateway's count", WAIT, || {
        let stats = admin_get(&gateway_admin, "/stats/prometheus");
        let out = [
            ("destination_service", "http.data.example"),
            ("destination_workload", "unknown"),
            ("response_code", "200"),
        ];
        (metric_sum(&stats, "istio_requests_total", &out) >= 1.0).then_some(stats)
    });
    assert!(
        gateway.contains("source_workload=\"istio-egressgateway\""),
        "{gateway}"
    );
}

/// The task's mutual-TLS variant: the sidecar reaches the egress gateway's port 443 with
/// the mesh's mTLS (ISTIO_MUTUAL, SNI the external host), the gateway's ISTIO_MUTUAL
/// server takes it and sends it on.
const EGRESS_GATEWAY_MTLS: &str = r#"---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: istio-egressgateway
  namespace: istio-system
  annotations: {weft.dev/role: gateway}
spec:
  address: 127.0.0.1
  labels: {istio: egressgateway, app: istio-egressgateway}
  serviceAccount: istio-egressgateway
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: istio-egressgateway, namespace: istio-system}
spec:
  hosts: [istio-egressgateway.istio-system.svc.cluster.local]
  location: MESH_INTERNAL
  ports:
  - {number: 80, name: http2, protocol: HTTP2}
  - {number: 443, name: https, protocol: HTTPS}
  workloadSelector: {labels: {istio: egressgateway}}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: istio-egressgateway, namespace: egress}
spec:
  selector: {istio: egressgateway}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [http.data.example]
    tls: {mode: ISTIO_MUTUAL}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: egressgateway-for-data, namespace: egress}
spec:
  host: istio-egressgateway.istio-system.svc.cluster.local
  subsets:
  - name: data
    trafficPolicy:
      portLevelSettings:
      - port: {number: 443}
        tls: {mode: ISTIO_MUTUAL, sni: http.data.example}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: direct-data-through-egress-gateway, namespace: egress}
spec:
  hosts: [http.data.example]
  gateways: [istio-egressgateway, mesh]
  http:
  - match: [{gateways: [mesh], port: 80}]
    route:
    - destination: {host: istio-egressgateway.istio-system.svc.cluster.local, subset: data, port: {number: 443}}
  - match: [{gateways: [istio-egressgateway], port: 443}]
    route:
    - destination: {host: http.data.example, port: {number: 80}}
"#;

#[test]
fn the_egress_gateway_task_with_mutual_tls_from_the_sidecar() {
    let (mesh, _outside) = egress_gateway_mesh("egress-gateway-mtls", EGRESS_GATEWAY_MTLS);
    let body = through_the_gateway(&mesh, "/mtls");
    let got = json(&body);
    assert_eq!(got["server"], "outside");
    assert_eq!(got["path"], "/mtls");
    // The gateway saw the sidecar's mesh identity on its ISTIO_MUTUAL server.
    let gateway_admin = mesh.addr("gateway-istio-egressgateway.istio-system", "admin");
    let stats = admin_get(&gateway_admin, "/stats/prometheus");
    let from_client = [
        ("reporter", "source"),
        ("destination_service", "http.data.example"),
        ("source_workload", "istio-egressgateway"),
        ("response_code", "200"),
    ];
    assert!(
        metric_sum(&stats, "istio_requests_total", &from_client) >= 1.0,
        "{stats}"
    );
    let sidecar = admin_get(&mesh.addr(CLIENT_SIDECAR, "admin"), "/stats/prometheus");
    let mtls = [
        ("reporter", "source"),
        (
            "destination_service",
            "istio-egressgateway.istio-system.svc.cluster.local",
        ),
        (
            "destination_principal",
            "spiffe://cluster.local/ns/istio-system/sa/istio-egressgateway",
        ),
        ("response_code", "200"),
    ];
    assert!(
        metric_sum(&sidecar, "istio_requests_total", &mtls) >= 1.0,
        "{sidecar}"
    );
}
