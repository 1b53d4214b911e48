//! Benchmark: how to carry opaque TCP between two sidecars. (a) `connect`: weft's own path
//! — the client sidecar's TCP listener opens an HTTP/2 CONNECT stream on its pooled mTLS
//! connection to the server sidecar (HBONE-style), whose inbound side authorizes it and
//! pipes it to the app; (b) `per-conn`: one fresh mTLS connection (TCP + TLS 1.3
//! handshake, same certificates and verifiers) per TCP connection, piped with the same
//! code. Both in one process on loopback, to a TCP echo app; CPU is the process's user +
//! system time (both proxies and the echo app together, so the ratios matter).
//!
//! `cargo run -p weft-proxy --example bench_tcp [-- MIB CONNS]` (default 64 MiB one
//! long connection, 300 short ones). Debug builds give rough ratios; numbers in
//! ARCHITECTURE.md ("TCP between sidecars").

use arc_swap::ArcSwap;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use weft_identity::{Ca, Identity, SpiffeId, WorkloadKey};
use weft_model::{
    Cluster, Endpoint, Inbound, L4Listener, L4Route, ListenerKind, ProxyConfig, WeightedCluster,
};
use weft_proxy::config::{ActiveConfig, Who};
use weft_proxy::state::{ConnectionLimit, ProxyState};
use weft_proxy::tls::{Credentials, TlsState};

const PORT: u32 = 9000;
const HOST: &str = "echo.bench.svc.cluster.local";

fn ca() -> Ca {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, KeyUsagePurpose};
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).unwrap();
    Ca::from_pem(
        &cert.pem(),
        &key.serialize_pem(),
        None,
        None,
        "cluster.local",
    )
    .unwrap()
}

fn creds(ca: &Ca, sa: &str) -> Credentials {
    let id = SpiffeId::new("cluster.local", "bench", sa).unwrap();
    let key = WorkloadKey::generate();
    let issued = ca
        .sign_csr(&key.csr_pem(&id).unwrap(), &id, Duration::from_secs(3600))
        .unwrap();
    Credentials::new(Identity::new(key, &issued.cert_chain_pem, &issued.root_pem).unwrap()).unwrap()
}

fn state(workload: &str, creds: Credentials, app: Option<String>) -> Arc<ProxyState> {
    let tls = TlsState::new(creds);
    Arc::new(ProxyState {
        node: weft_protocol::pb::Node {
            workload: workload.into(),
            namespace: "bench".into(),
            ..Default::default()
        },
        config: ArcSwap::from_pointee(ActiveConfig::default()),
        metrics: Arc::new(weft_proxy::telemetry::Metrics::new()),
        pool: Arc::new(weft_proxy::upstream::PeerPool::new(tls.clone())),
        tls,
        app_addr: app,
        app: Default::default(),
        replay_budget: weft_proxy::upstream::ReplayBudget::new(1 << 20),
        connections: ConnectionLimit::new(100_000),
        bound: Mutex::new(BTreeMap::new()),
        gateway_tasks: tokio::sync::Mutex::new(HashMap::new()),
        port_map: HashMap::new(),
        bind_ip: std::net::Ipv4Addr::LOCALHOST.into(),
        events: Default::default(),
        observe: Arc::default(),
        gateway_tls: Default::default(),
    })
}

fn apply(state: &ProxyState, cfg: ProxyConfig) {
    let principal = state.identity_uri();
    let who = Who {
        workload: &state.node.workload,
        namespace: "bench",
        principal: &principal,
        metrics: &state.metrics,
    };
    let active = ActiveConfig::build("1", cfg, &ActiveConfig::default(), &who).unwrap();
    state.config.store(Arc::new(active));
}

async fn echo_app() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// (a): two weft sidecars; returns the client's TCP listener address.
async fn connect_path(ca: &Ca, app: &str) -> String {
    let server = state("server", creds(ca, "server"), Some(app.into()));
    let server_id = server.identity_uri();
    apply(
        &server,
        ProxyConfig {
            inbound: Some(Inbound {
                workload: "server".into(),
                namespace: "bench".into(),
                identity: server_id.clone(),
                trust_domain: "cluster.local".into(),
                ports: vec![PORT],
                tcp_ports: vec![PORT],
                ..Default::default()
            }),
            ..Default::default()
        },
    );
    let inbound = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let inbound_addr = inbound.local_addr().unwrap().to_string();
    tokio::spawn(weft_proxy::http::inbound::serve(inbound, server));

    let client = state("client", creds(ca, "client"), None);
    let cluster = weft_model::cluster_name(PORT, None, HOST);
    let mut cfg = ProxyConfig::default();
    cfg.clusters.insert(
        cluster.clone(),
        Cluster {
            name: cluster.clone(),
            service: HOST.into(),
            namespace: "bench".into(),
            port: PORT,
            endpoints: vec![Endpoint {
                address: inbound_addr,
                identity: server_id,
                workload: "server".into(),
                ..Default::default()
            }],
            ..Default::default()
        },
    );
    let name = format!("outbound_tcp|{PORT}|{HOST}");
    cfg.tcp_listeners.push(L4Listener {
        name: name.clone(),
        kind: ListenerKind::Outbound,
        port: PORT,
        service: Some(HOST.into()),
        sni: false,
        bind: None,
        routes: vec![L4Route {
            name: "default".into(),
            matches: vec![],
            destinations: vec![WeightedCluster {
                cluster,
                weight: 100,
                ..Default::default()
            }],
            origin: "bench".into(),
        }],
        tls: None,
    });
    apply(&client, cfg);
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    tokio::spawn(weft_proxy::tcp::outbound::serve(l, client, name));
    addr
}

/// (b): a fresh mTLS connection per TCP connection, the same certificates and pipe.
async fn per_connection_path(ca: &Ca, app: &str) -> String {
    let server = creds(ca, "server");
    let server_id = server.uri.clone();
    let acceptor = tokio_rustls::TlsAcceptor::from(server.server.clone());
    let tls_l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tls_addr = tls_l.local_addr().unwrap().to_string();
    let metrics = Arc::new(weft_proxy::telemetry::Metrics::new());
    let (m, app) = (metrics.clone(), app.to_string());
    tokio::spawn(async move {
        while let Ok((s, _)) = tls_l.accept().await {
            let (acceptor, m, app) = (acceptor.clone(), m.clone(), app.clone());
            tokio::spawn(async move {
                let _ = s.set_nodelay(true);
                let Ok(tls) = acceptor.accept(s).await else {
                    return;
                };
                let up = TcpStream::connect(&app).await.unwrap();
                let mut rec = m.tcp.open(Default::default());
                weft_proxy::tcp::pipe::pipe(tls, up, &[], None, &mut rec).await;
            });
        }
    });
    let client = creds(ca, "client");
    let connector = tokio_rustls::TlsConnector::from(client.client_for(&server_id).unwrap());
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let (connector, m, tls_addr) = (connector.clone(), metrics.clone(), tls_addr.clone());
            tokio::spawn(async move {
                let tcp = TcpStream::connect(&tls_addr).await.unwrap();
                let _ = tcp.set_nodelay(true);
                let name = rustls::pki_types::ServerName::try_from("weft.mesh").unwrap();
                let Ok(tls) = connector.connect(name, tcp).await else {
                    return;
                };
                let mut rec = m.tcp.open(Default::default());
                weft_proxy::tcp::pipe::pipe(s, tls, &[], None, &mut rec).await;
            });
        }
    });
    addr
}

/// User + system CPU seconds of this process so far.
fn cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// One long connection: `mib` MiB up and echoed back.
async fn throughput(addr: &str, mib: usize) -> (f64, f64) {
    let (cpu0, t0) = (cpu(), Instant::now());
    let s = TcpStream::connect(addr).await.unwrap();
    let (mut r, mut w) = s.into_split();
    let total = mib << 20;
    let writer = tokio::spawn(async move {
        let chunk = vec![7u8; 64 * 1024];
        for _ in 0..total / chunk.len() {
            w.write_all(&chunk).await.unwrap();
        }
        w.shutdown().await.unwrap();
    });
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0;
    while got < total {
        let n = r.read(&mut buf).await.unwrap();
        assert!(n > 0, "the echo ended early at {got} bytes");
        got += n;
    }
    writer.await.unwrap();
    let secs = t0.elapsed().as_secs_f64();
    let gb = (2 * total) as f64 / 1e9;
    ((2 * total) as f64 / secs / 1e6, (cpu() - cpu0) / gb)
}

/// `n` short connections one after another: 100 bytes each way.
async fn connections(addr: &str, n: usize) -> (f64, f64) {
    let (cpu0, t0) = (cpu(), Instant::now());
    for _ in 0..n {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&[1u8; 100]).await.unwrap();
        let mut back = [0u8; 100];
        s.read_exact(&mut back).await.unwrap();
    }
    let secs = t0.elapsed().as_secs_f64();
    (n as f64 / secs, (cpu() - cpu0) * 1000.0 / n as f64)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    weft_identity::install_default_provider();
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (mib, conns) = (
        args.first().copied().unwrap_or(64),
        args.get(1).copied().unwrap_or(300),
    );
    let ca = ca();
    let app = echo_app().await;
    let paths = [
        (
            "connect (h2 CONNECT, pooled mTLS)",
            connect_path(&ca, &app).await,
        ),
        (
            "per-conn (one mTLS connection each)",
            per_connection_path(&ca, &app).await,
        ),
    ];
    println!("| path | MB/s (1 connection, {mib} MiB each way) | CPU s/GB | connections/s ({conns}, sequential) | CPU ms/connection |");
    println!("|---|---|---|---|---|");
    for (name, addr) in &paths {
        // Warm-up: the pooled connection is made once, as in a running mesh.
        connections(addr, 5).await;
        let (mbs, cpu_gb) = throughput(addr, mib).await;
        let (cps, cpu_conn) = connections(addr, conns).await;
        println!("| {name} | {mbs:.0} | {cpu_gb:.2} | {cps:.0} | {cpu_conn:.2} |");
    }
}
