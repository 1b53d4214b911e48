//! Opaque TCP through running proxies: an app's connection to its sidecar's TCP listener
//! for a service port, tunnelled (HTTP/2 CONNECT over the pooled mTLS connection) to the
//! server's sidecar and piped to a TCP app. Echo, half-close, idle timeout (paused time),
//! weighted `tcp` routes, SNI routing from a real ClientHello, maxConnections overflow,
//! authorization on TCP (allow and deny), gateway TCP servers, and Istio's TCP metrics.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use weft_model::{
    Authz, AuthzAction, AuthzAttr, AuthzField, AuthzPolicy, AuthzRule, Cluster, L4Listener,
    L4Match, L4Route, ListenerKind, ProxyConfig, WeightedCluster,
};

const PORT: u32 = 9000;
const CLIENT_PRINCIPAL: &str = "cluster.local/ns/test/sa/client";

/// A TCP app: greets each connection with `name\n` (unless empty), then echoes what it
/// reads and half-closes after the client does. Counts connections.
struct TcpApp {
    addr: SocketAddr,
    conns: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TcpApp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TcpApp {
    async fn start(name: &str) -> TcpApp {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let conns = Arc::new(AtomicUsize::new(0));
        let (count, greeting) = (conns.clone(), name.to_string());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = l.accept().await else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let greeting = greeting.clone();
                tokio::spawn(async move {
                    if !greeting.is_empty()
                        && s.write_all(format!("{greeting}\n").as_bytes())
                            .await
                            .is_err()
                    {
                        return;
                    }
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if s.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                    let _ = s.shutdown().await;
                });
            }
        });
        TcpApp { addr, conns, task }
    }

    fn connections(&self) -> usize {
        self.conns.load(Ordering::SeqCst)
    }
}

fn host() -> String {
    service_host("server", NAMESPACE)
}

fn listener_name() -> String {
    format!("outbound_tcp|{PORT}|{}", host())
}

fn l4_route(name: &str, matches: Vec<L4Match>, dests: &[(&str, u32)]) -> L4Route {
    L4Route {
        name: name.into(),
        matches,
        destinations: dests
            .iter()
            .map(|(c, w)| WeightedCluster {
                cluster: c.to_string(),
                weight: *w,
                ..Default::default()
            })
            .collect(),
        origin: "harness".into(),
    }
}

fn tcp_listener(kind: ListenerKind, name: &str, routes: Vec<L4Route>) -> L4Listener {
    L4Listener {
        name: name.into(),
        kind,
        port: PORT,
        service: Some(host()),
        sni: routes
            .iter()
            .any(|r| r.matches.iter().any(|m| !m.sni_hosts.is_empty())),
        bind: None,
        routes,
        tls: None,
    }
}

/// A server sidecar config whose workload serves TCP on [`PORT`].
fn tcp_server_config(p: &Proxy) -> ProxyConfig {
    let mut cfg = Config::sidecar(p).build();
    let inbound = cfg.inbound.as_mut().unwrap();
    inbound.ports = vec![PORT];
    inbound.tcp_ports = vec![PORT];
    cfg
}

/// Control, a server sidecar before `app`, and a client sidecar whose TCP listener for
/// `server:9000` routes to the server's cluster (adjusted by `tweak`).
struct TcpMesh {
    control: FakeControl,
    client: Proxy,
    server: Proxy,
    cluster: Cluster,
}

impl TcpMesh {
    async fn start(app: &TcpApp, tweak: impl FnOnce(&mut Cluster)) -> TcpMesh {
        let control = FakeControl::start().await;
        let server = Proxy::sidecar("server").app(app.addr).start(&control).await;
        let client = Proxy::sidecar("client").start(&control).await;
        control
            .push_acked("server", &tcp_server_config(&server))
            .await;
        let mut c = cluster(&host(), PORT, vec![endpoint(&server)]);
        tweak(&mut c);
        let mut m = TcpMesh {
            control,
            client,
            server,
            cluster: c,
        };
        let route = l4_route("default", vec![], &[(&m.cluster.name.clone(), 100)]);
        m.push_client(vec![route]).await;
        m
    }

    async fn push_client(&mut self, routes: Vec<L4Route>) {
        let mut cfg = Config::sidecar(&self.client)
            .cluster(self.cluster.clone())
            .build();
        cfg.tcp_listeners = vec![tcp_listener(
            ListenerKind::Outbound,
            &listener_name(),
            routes,
        )];
        self.control.push_acked("client", &cfg).await;
    }

    async fn connect(&mut self) -> TcpStream {
        let addr = self.client.listener(&listener_name()).await;
        TcpStream::connect(addr).await.unwrap()
    }
}

async fn read_line(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    within("a line from the app", async {
        while s.read(&mut b).await.unwrap_or(0) == 1 && b[0] != b'\n' {
            out.push(b[0]);
        }
    })
    .await;
    String::from_utf8(out).unwrap()
}

fn metric(stats: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    sample_sum(stats, name, labels)
}

#[tokio::test]
async fn echo_through_two_sidecars_half_close_and_metrics() {
    let app = TcpApp::start("").await;
    let mut mesh = TcpMesh::start(&app, |_| {}).await;
    let mut s = mesh.connect().await;
    // 1 MiB up, echoed back whole, then FIN one way: the other way stays open.
    let payload: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    let (mut r, mut w) = s.split();
    let send = async {
        w.write_all(&payload).await.unwrap();
        w.shutdown().await.unwrap();
    };
    let mut echoed = Vec::new();
    let recv = r.read_to_end(&mut echoed);
    let ((), n) = within("the echo", async { tokio::join!(send, recv) }).await;
    n.unwrap();
    assert_eq!(echoed.len(), payload.len());
    assert!(echoed == payload, "bytes arrive unchanged and in order");
    assert_eq!(app.connections(), 1);

    let n = payload.len() as f64;
    within("TCP metrics on both reporters", async {
        loop {
            let c = stats(mesh.client.admin).await;
            let srv = stats(mesh.server.admin).await;
            let src = [("reporter", "source"), ("request_protocol", "tcp")];
            let dst = [
                ("reporter", "destination"),
                (
                    "source_principal",
                    "spiffe://cluster.local/ns/test/sa/client",
                ),
                ("source_workload", "client"),
                ("connection_security_policy", "mutual_tls"),
            ];
            let done = metric(&c, "istio_tcp_received_bytes_total", &src) == n
                && metric(&c, "istio_tcp_sent_bytes_total", &src) == n
                && metric(&c, "istio_tcp_connections_opened_total", &src) == 1.0
                && metric(&c, "istio_tcp_connections_closed_total", &src) == 1.0
                && metric(&srv, "istio_tcp_received_bytes_total", &dst) == n
                && metric(&srv, "istio_tcp_sent_bytes_total", &dst) == n
                && metric(&srv, "istio_tcp_connections_closed_total", &dst) == 1.0;
            if done {
                assert!(c.contains(r#"destination_workload="server""#), "{c}");
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
}

#[tokio::test]
async fn the_downstream_keeps_receiving_after_the_upstream_half_closes() {
    // The app greets, echoes, and closes its side after ours; we close ours late.
    let app = TcpApp::start("hi").await;
    let mut mesh = TcpMesh::start(&app, |_| {}).await;
    let mut s = mesh.connect().await;
    assert_eq!(read_line(&mut s).await, "hi");
    s.write_all(b"one").await.unwrap();
    let mut buf = [0u8; 3];
    within("the echo", s.read_exact(&mut buf)).await.unwrap();
    assert_eq!(&buf, b"one");
    s.shutdown().await.unwrap();
    let mut rest = Vec::new();
    within("the app's FIN", s.read_to_end(&mut rest))
        .await
        .unwrap();
    assert!(rest.is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let app = TcpApp::start("hello").await;
    let mut mesh = TcpMesh::start(&app, |c| c.tcp.idle_timeout_ms = Some(30_000)).await;
    let mut s = mesh.connect().await;
    assert_eq!(read_line(&mut s).await, "hello");
    let quiet = tokio::time::Instant::now();
    let mut rest = Vec::new();
    within("the idle close", s.read_to_end(&mut rest))
        .await
        .ok();
    let waited = quiet.elapsed();
    assert!(
        waited >= std::time::Duration::from_secs(30) && waited < std::time::Duration::from_secs(40),
        "closed after {waited:?} of silence (idle timeout 30 s)"
    );
}

#[tokio::test]
async fn weighted_tcp_routes_split_connections() {
    let (v1, v2) = (TcpApp::start("v1").await, TcpApp::start("v2").await);
    let control = FakeControl::start().await;
    let s1 = Proxy::sidecar("server").app(v1.addr).start(&control).await;
    control.set_identity("server-v2", "spiffe://cluster.local/ns/test/sa/server");
    let s2 = Proxy::sidecar("server-v2")
        .app(v2.addr)
        .start(&control)
        .await;
    control.push_acked("server", &tcp_server_config(&s1)).await;
    control
        .push_acked("server-v2", &tcp_server_config(&s2))
        .await;
    let mut client = Proxy::sidecar("client").start(&control).await;
    let mut c1 = cluster(&host(), PORT, vec![endpoint(&s1)]);
    c1.name = format!("outbound|{PORT}|v1|{}", host());
    let mut c2 = cluster(&host(), PORT, vec![endpoint(&s2)]);
    c2.name = format!("outbound|{PORT}|v2|{}", host());
    let route = l4_route("shift", vec![], &[(&c1.name, 80), (&c2.name, 20)]);
    let mut cfg = Config::sidecar(&client).cluster(c1).cluster(c2).build();
    cfg.tcp_listeners = vec![tcp_listener(
        ListenerKind::Outbound,
        &listener_name(),
        vec![route],
    )];
    control.push_acked("client", &cfg).await;
    let addr = client.listener(&listener_name()).await;
    let mut to_v1 = 0;
    for _ in 0..200 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        if read_line(&mut s).await == "v1" {
            to_v1 += 1;
        }
    }
    // Weights follow a low-discrepancy sequence: exact to within two connections.
    assert!(
        (158..=162).contains(&to_v1),
        "80/20 over 200 connections: {to_v1} to v1"
    );
    assert_eq!(v1.connections() + v2.connections(), 200);
}

/// The ClientHello bytes a TLS client sends for `name`.
fn client_hello(name: &str) -> Vec<u8> {
    weft_identity::install_default_provider();
    let roots = rustls::RootCertStore::empty();
    let cfg = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let server = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(cfg), server).unwrap();
    let mut out = Vec::new();
    conn.write_tls(&mut out).unwrap();
    out
}

#[tokio::test]
async fn tls_routes_pick_the_destination_by_the_client_hello_sni() {
    let (a, b) = (TcpApp::start("").await, TcpApp::start("").await);
    let control = FakeControl::start().await;
    let sa = Proxy::sidecar("server").app(a.addr).start(&control).await;
    control.set_identity("server-b", "spiffe://cluster.local/ns/test/sa/server");
    let sb = Proxy::sidecar("server-b").app(b.addr).start(&control).await;
    control.push_acked("server", &tcp_server_config(&sa)).await;
    control
        .push_acked("server-b", &tcp_server_config(&sb))
        .await;
    let mut client = Proxy::sidecar("client").start(&control).await;
    let mut ca = cluster(&host(), PORT, vec![endpoint(&sa)]);
    ca.name = format!("outbound|{PORT}|a|{}", host());
    let mut cb = cluster(&host(), PORT, vec![endpoint(&sb)]);
    cb.name = format!("outbound|{PORT}|b|{}", host());
    let sni = |h: &str| L4Match {
        sni_hosts: vec![h.into()],
        destination_subnets: vec![],
    };
    let routes = vec![
        l4_route("a", vec![sni("a.example.com")], &[(&ca.name, 100)]),
        l4_route("b", vec![sni("*.example.com")], &[(&cb.name, 100)]),
    ];
    let mut cfg = Config::sidecar(&client).cluster(ca).cluster(cb).build();
    cfg.tcp_listeners = vec![tcp_listener(
        ListenerKind::Outbound,
        &listener_name(),
        routes,
    )];
    control.push_acked("client", &cfg).await;
    let addr = client.listener(&listener_name()).await;
    for (name, want_a) in [
        ("a.example.com", 1),
        ("b.example.com", 1),
        ("A.example.com", 2),
    ] {
        let hello = client_hello(name);
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&hello).await.unwrap();
        let mut back = vec![0u8; hello.len()];
        within("the ClientHello echoed", s.read_exact(&mut back))
            .await
            .unwrap();
        assert!(back == hello, "the ClientHello reaches the app unchanged");
        assert_eq!(a.connections(), want_a, "after {name}");
    }
    assert_eq!(b.connections(), 1);
    // Not TLS and no tcp route: the connection is closed, counted NR.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"PING\r\n").await.unwrap();
    let mut rest = Vec::new();
    let _ = within("the NR close", s.read_to_end(&mut rest)).await;
    assert!(rest.is_empty());
    let st = stats(client.admin).await;
    assert_eq!(
        metric(
            &st,
            "istio_tcp_connections_closed_total",
            &[("response_flags", "NR")]
        ),
        1.0,
        "{st}"
    );
}

#[tokio::test]
async fn max_connections_overflow_is_closed_and_counted_uo() {
    let app = TcpApp::start("hi").await;
    let mut mesh = TcpMesh::start(&app, |c| c.limits.max_connections = Some(1)).await;
    let mut first = mesh.connect().await;
    assert_eq!(read_line(&mut first).await, "hi");
    let mut second = mesh.connect().await;
    let mut rest = Vec::new();
    within("the overflow close", second.read_to_end(&mut rest))
        .await
        .unwrap();
    assert!(rest.is_empty(), "nothing reaches an overflowing connection");
    let st = stats(mesh.client.admin).await;
    assert_eq!(
        metric(
            &st,
            "istio_tcp_connections_closed_total",
            &[("response_flags", "UO")]
        ),
        1.0,
        "{st}"
    );
    assert_eq!(app.connections(), 1);
    drop(first);
    // Once the first is gone, a new one is carried.
    within("the slot to free", async {
        loop {
            let mut again = mesh.connect().await;
            let mut b = [0u8; 3];
            if again.read_exact(&mut b).await.is_ok() {
                assert_eq!(&b, b"hi\n");
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
}

fn field(attr: AuthzAttr, values: &[&str]) -> AuthzField {
    AuthzField {
        attr,
        values: values.iter().map(|s| s.to_string()).collect(),
        not_values: vec![],
    }
}

async fn protect(mesh: &TcpMesh, action: AuthzAction, rules: Vec<AuthzRule>) {
    let mut cfg = tcp_server_config(&mesh.server);
    cfg.authz = Authz {
        policies: vec![AuthzPolicy {
            name: "test.p".into(),
            action,
            dry_run: false,
            rules,
            provider: None,
        }],
        providers: vec![],
    };
    mesh.control.push_acked("server", &cfg).await;
}

/// Connects and reports whether the app's greeting came through.
async fn greeted(mesh: &mut TcpMesh) -> bool {
    let mut s = mesh.connect().await;
    let mut b = [0u8; 3];
    within("the greeting or the close", s.read_exact(&mut b))
        .await
        .is_ok()
}

#[tokio::test]
async fn authorization_on_tcp_allows_by_principal_and_port_and_denies_by_http_only_rules() {
    let app = TcpApp::start("hi").await;
    let mut mesh = TcpMesh::start(&app, |_| {}).await;
    let from_client = vec![vec![field(AuthzAttr::Principal, &[CLIENT_PRINCIPAL])]];
    protect(
        &mesh,
        AuthzAction::Allow,
        vec![AuthzRule {
            from: from_client.clone(),
            to: vec![vec![field(AuthzAttr::Port, &["9000"])]],
            when: vec![],
        }],
    )
    .await;
    assert!(greeted(&mut mesh).await, "principal and port allowed");

    // An ALLOW rule with an HTTP field is skipped on TCP: nothing is allowed.
    protect(
        &mesh,
        AuthzAction::Allow,
        vec![AuthzRule {
            from: from_client.clone(),
            to: vec![vec![field(AuthzAttr::Method, &["GET"])]],
            when: vec![],
        }],
    )
    .await;
    let before = app.connections();
    assert!(
        !greeted(&mut mesh).await,
        "an HTTP-only ALLOW rule allows no TCP"
    );
    assert_eq!(
        app.connections(),
        before,
        "a denied connection never reaches the app"
    );

    // A DENY rule's HTTP fields are dropped on TCP: it denies every connection it names.
    protect(
        &mesh,
        AuthzAction::Deny,
        vec![AuthzRule {
            from: from_client,
            to: vec![vec![field(AuthzAttr::Path, &["/admin"])]],
            when: vec![],
        }],
    )
    .await;
    assert!(
        !greeted(&mut mesh).await,
        "DENY with HTTP-only fields denies TCP"
    );
    let st = stats(mesh.server.admin).await;
    assert!(
        metric(
            &st,
            "weft_authorization_decisions_total",
            &[("policy", "test.p"), ("decision", "denied")]
        ) >= 1.0,
        "{st}"
    );

    // A DENY for another namespace leaves this caller alone.
    protect(
        &mesh,
        AuthzAction::Deny,
        vec![AuthzRule {
            from: vec![vec![field(AuthzAttr::Namespace, &["elsewhere"])]],
            to: vec![],
            when: vec![],
        }],
    )
    .await;
    assert!(greeted(&mut mesh).await);
}

#[tokio::test]
async fn a_gateway_tcp_server_routes_to_the_mesh() {
    let app = TcpApp::start("").await;
    let control = FakeControl::start().await;
    let server = Proxy::sidecar("server").app(app.addr).start(&control).await;
    control
        .push_acked("server", &tcp_server_config(&server))
        .await;
    let mut gw = Proxy::gateway("gw").start(&control).await;
    let c = cluster(&host(), PORT, vec![endpoint(&server)]);
    let route = l4_route("vs/tcp[0]", vec![], &[(&c.name, 100)]);
    let mut cfg = Config::gateway().cluster(c).build();
    let mut l = tcp_listener(ListenerKind::Gateway, "gateway_tcp_31400", vec![route]);
    l.port = 31400;
    l.service = None;
    cfg.tcp_listeners = vec![l];
    control.push_acked("gw", &cfg).await;
    let addr = gw.listener("gateway_tcp_31400").await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"through the gateway").await.unwrap();
    s.shutdown().await.unwrap();
    let mut back = Vec::new();
    within("the echo", s.read_to_end(&mut back)).await.unwrap();
    assert_eq!(back, b"through the gateway");
}

#[tokio::test]
async fn a_sidecar_egress_bind_places_the_tcp_listener_and_a_bad_one_is_nacked() {
    let app = TcpApp::start("bound").await;
    let mut mesh = TcpMesh::start(&app, |_| {}).await;
    // An address the OS just handed out (port 0), on another loopback address.
    let free = TcpListener::bind("127.0.0.2:0").await.unwrap();
    let at = free.local_addr().unwrap();
    drop(free);
    let mut cfg = Config::sidecar(&mesh.client)
        .cluster(mesh.cluster.clone())
        .build();
    let route = l4_route("default", vec![], &[(&mesh.cluster.name.clone(), 100)]);
    let mut l = tcp_listener(ListenerKind::Outbound, "outbound_tcp|bound", vec![route]);
    l.bind = Some(at.to_string());
    cfg.tcp_listeners = vec![l.clone()];
    mesh.control.push_acked("client", &cfg).await;
    assert_eq!(mesh.client.listener("outbound_tcp|bound").await, at);
    let mut s = TcpStream::connect(at).await.unwrap();
    assert_eq!(read_line(&mut s).await, "bound");

    l.name = "outbound_tcp|bad".into();
    l.bind = Some("not an address".into());
    cfg.tcp_listeners.push(l);
    let v = mesh.control.push("client", &cfg);
    let error = mesh.control.nacked("client", &v).await;
    assert!(error.contains("is not ip:port"), "{error}");
}

/// Telemetry metric overrides on TCP: the client side's `istio_tcp_sent_bytes` disabled and
/// `source_principal` removed from its other TCP metrics; the server side keeps Istio's.
#[tokio::test]
async fn metric_overrides_disable_and_remove_labels_of_tcp_metrics() {
    use weft_model::telemetry::metrics::{MetricOverride, MetricsSpec, TagOverride};
    let app = TcpApp::start("").await;
    let mut mesh = TcpMesh::start(&app, |_| {}).await;
    let removed = |metric: &str| MetricOverride {
        metric: metric.into(),
        disabled: false,
        tags: vec![TagOverride {
            name: "destination_principal".into(),
            value: None,
        }],
    };
    let mut cfg = Config::sidecar(&mesh.client)
        .cluster(mesh.cluster.clone())
        .build();
    cfg.tcp_listeners = vec![tcp_listener(
        ListenerKind::Outbound,
        &listener_name(),
        vec![l4_route(
            "default",
            vec![],
            &[(&mesh.cluster.name.clone(), 100)],
        )],
    )];
    cfg.telemetry.client.metrics = MetricsSpec {
        disabled: false,
        overrides: vec![
            removed("TCP_CLOSED_CONNECTIONS"),
            removed("TCP_OPENED_CONNECTIONS"),
            removed("TCP_RECEIVED_BYTES"),
            MetricOverride {
                metric: "TCP_SENT_BYTES".into(),
                disabled: true,
                tags: vec![],
            },
        ],
    };
    mesh.control.push_acked("client", &cfg).await;
    let mut s = mesh.connect().await;
    s.write_all(b"hello\n").await.unwrap();
    assert_eq!(read_line(&mut s).await, "hello");
    drop(s);
    let src = [("reporter", "source"), ("request_protocol", "tcp")];
    let c = within("the client's TCP metrics", async {
        loop {
            let c = stats(mesh.client.admin).await;
            if metric(&c, "istio_tcp_connections_closed_total", &src) == 1.0 {
                return c;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(
        metric(&c, "istio_tcp_received_bytes_total", &src),
        6.0,
        "{c}"
    );
    assert!(
        !c.lines()
            .any(|l| l.starts_with("istio_tcp_sent_bytes_total{")),
        "disabled:\n{c}"
    );
    for l in c.lines().filter(|l| l.starts_with("istio_tcp_")) {
        assert!(!l.contains("destination_principal="), "removed: {l}");
        assert!(l.contains(r#"destination_workload="server""#), "kept: {l}");
    }
    let srv = stats(mesh.server.admin).await;
    assert!(
        srv.lines()
            .any(|l| l.starts_with("istio_tcp_sent_bytes_total{")
                && l.contains("destination_principal=")),
        "the server side is standard:\n{srv}"
    );
}
