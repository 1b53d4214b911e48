//! Services outside the mesh through real sockets and real TLS: a sidecar sends HTTP to an
//! external HTTPS server it originates TLS to (DestinationRule SIMPLE: the CA file, the
//! SNI checked against the certificate, `subjectAltNames` instead, `insecureSkipVerify`;
//! MUTUAL: the server demands the client certificate), as HTTP/1.1 with the app's `Host`
//! and without the mesh's metadata header; the passthrough cluster (ALLOW_ANY) sends an
//! unknown host where the app addressed it; REGISTRY_ONLY's 502; and opaque TCP to an
//! external server dialled directly, with no tunnel and no peer sidecar.

mod support;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use weft_model::{
    Cluster, DirectResponse, Egress, Endpoint, L4Listener, L4Route, ListenerKind, OriginTls,
    Resolution, Route, VirtualHost, WeightedCluster,
};

const HOST: &str = "api.partner.example";

/// A temporary folder, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new() -> Dir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("egress-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    fn write(&self, name: &str, body: &str) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, body).unwrap();
        p.display().to_string()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A CA, its PEM, and leaf certificates it signs.
struct Ca {
    pem: String,
    der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new() -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, "partner CA");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = p.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            der: cert.der().clone(),
            issuer: Issuer::new(p, key),
        }
    }

    /// (certificate PEM, key PEM) with one DNS SAN.
    fn leaf(&self, name: &str) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, name);
        p.subject_alt_names = vec![SanType::DnsName(name.try_into().unwrap())];
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// An HTTPS server outside the mesh: answers every request with what it saw (`Host`, the
/// SNI, whether a client certificate came, the mesh metadata header); with `client_ca`,
/// a client certificate from that CA is required.
struct TlsServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsServer {
    async fn start(ca: &Ca, client_ca: Option<&Ca>) -> TlsServer {
        let (cert, key) = ca.leaf(HOST);
        let chain = vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
        let builder = rustls::ServerConfig::builder();
        let builder = match client_ca {
            Some(c) => {
                let mut roots = rustls::RootCertStore::empty();
                roots.add(c.der.clone()).unwrap();
                let v = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
                    .build()
                    .unwrap();
                builder.with_client_cert_verifier(v)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_single_cert(chain, key).unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let (_, conn) = tls.get_ref();
                    let sni = conn.server_name().unwrap_or("-").to_string();
                    let client_cert = conn.peer_certificates().is_some();
                    let svc = hyper::service::service_fn(move |req: http::Request<_>| {
                        let h = |n: &str| {
                            req.headers()
                                .get(n)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("-")
                                .to_string()
                        };
                        let body = format!(
                            "host={} sni={sni} client_cert={client_cert} peer_header={} version={:?}",
                            req.uri().authority().map_or_else(|| h("host"), |a| a.to_string()),
                            h(weft_proxy::PEER_HEADER),
                            req.version()
                        );
                        async move {
                            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                                Bytes::from(body),
                            )))
                        }
                    });
                    let auto = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    );
                    let _ = auto.serve_connection(TokioIo::new(tls), svc).await;
                });
            }
        });
        TlsServer { addr, task }
    }
}

/// The cluster for `HOST:80` outside the mesh at `addr`, originating `tls`.
fn external(addr: SocketAddr, tls: Option<OriginTls>) -> Cluster {
    let mut c = cluster(
        HOST,
        80,
        vec![Endpoint {
            address: addr.to_string(),
            workload: HOST.into(),
            plaintext: true,
            ..Default::default()
        }],
    );
    c.egress = Some(Egress {
        resolution: Resolution::Static,
        tls,
    });
    c
}

/// A client sidecar whose outbound `HOST` goes to `c`.
async fn client_with(control: &FakeControl, c: Cluster) -> Proxy {
    let client = Proxy::sidecar("client").start(control).await;
    push(control, &client, c).await;
    client
}

async fn push(control: &FakeControl, client: &Proxy, c: Cluster) {
    let cfg = Config::sidecar(client)
        .route(HOST, route_to(&c.name))
        .cluster(c)
        .build();
    control.push_acked("client", &cfg).await;
}

#[tokio::test]
async fn simple_origination_verifies_the_server_against_the_ca_and_the_sni() {
    let ca = Ca::new();
    let server = TlsServer::start(&ca, None).await;
    let dir = Dir::new();
    let ca_file = dir.write("ca.pem", &ca.pem);
    let control = FakeControl::start().await;
    let tls = OriginTls {
        ca_certificates: Some(ca_file.clone()),
        ..Default::default()
    };
    let client = client_with(&control, external(server.addr, Some(tls.clone()))).await;
    let out = client.outbound.unwrap();

    let r = get(out, HOST, "/status").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body,
        format!("host={HOST} sni={HOST} client_cert=false peer_header=- version=HTTP/1.1"),
        "HTTP/1.1 with the app's Host, the SNI from the host name (the endpoint is an IP), no mesh metadata"
    );

    // An SNI the certificate does not carry: the handshake is refused, 503 says why.
    let wrong_sni = OriginTls {
        sni: Some("other.example".into()),
        ..tls.clone()
    };
    push(
        &control,
        &client,
        external(server.addr, Some(wrong_sni.clone())),
    )
    .await;
    let r = get(out, HOST, "/status").await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("TLS origination"), "{}", r.body);
    assert_eq!(r.header("x-envoy-response-flags"), None);

    // subjectAltNames replace the SNI check: the same SNI passes when the SAN matches...
    let by_san = OriginTls {
        subject_alt_names: vec![HOST.into()],
        ..wrong_sni.clone()
    };
    push(&control, &client, external(server.addr, Some(by_san))).await;
    let r = get(out, HOST, "/").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("sni=other.example"), "{}", r.body);
    // ...and fails when none does.
    let bad_san = OriginTls {
        subject_alt_names: vec!["nobody.example".into()],
        ..tls.clone()
    };
    push(&control, &client, external(server.addr, Some(bad_san))).await;
    assert_eq!(get(out, HOST, "/").await.status, 503);

    // A CA that did not sign the server's certificate: refused, unless verification is off.
    let other = dir.write("other-ca.pem", &Ca::new().pem);
    let untrusted = OriginTls {
        ca_certificates: Some(other),
        ..tls.clone()
    };
    push(
        &control,
        &client,
        external(server.addr, Some(untrusted.clone())),
    )
    .await;
    assert_eq!(get(out, HOST, "/").await.status, 503);
    let insecure = OriginTls {
        insecure_skip_verify: true,
        ..untrusted
    };
    push(&control, &client, external(server.addr, Some(insecure))).await;
    assert_eq!(get(out, HOST, "/").await.status, 200);

    // Without origination the sidecar speaks plaintext HTTP to the TLS port: no answer.
    push(&control, &client, external(server.addr, None)).await;
    assert_eq!(get(out, HOST, "/").await.status, 503);
}

#[tokio::test]
async fn a_grpc_port_outside_the_mesh_gets_http2_over_originated_tls() {
    let ca = Ca::new();
    let server = TlsServer::start(&ca, None).await;
    let dir = Dir::new();
    let tls = OriginTls {
        ca_certificates: Some(dir.write("ca.pem", &ca.pem)),
        ..Default::default()
    };
    let mut c = external(server.addr, Some(tls));
    c.limits.http2 = true;
    let control = FakeControl::start().await;
    let client = client_with(&control, c).await;
    let out = client.outbound.unwrap();
    for path in ["/a", "/b"] {
        let r = get(out, HOST, path).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(
            r.body,
            format!("host={HOST} sni={HOST} client_cert=false peer_header=- version=HTTP/2.0"),
            "ALPN h2, the authority from the app's Host, no mesh metadata"
        );
    }
}

#[tokio::test]
async fn mutual_origination_presents_the_client_certificate() {
    let ca = Ca::new();
    let server = TlsServer::start(&ca, Some(&ca)).await;
    let dir = Dir::new();
    let (cert, key) = ca.leaf("client.partner.example");
    let tls = OriginTls {
        ca_certificates: Some(dir.write("ca.pem", &ca.pem)),
        ..Default::default()
    };
    let control = FakeControl::start().await;
    let client = client_with(&control, external(server.addr, Some(tls.clone()))).await;
    let out = client.outbound.unwrap();
    let r = get(out, HOST, "/").await;
    assert_eq!(
        r.status, 503,
        "SIMPLE to a server that wants a client cert: {}",
        r.body
    );

    let mutual = OriginTls {
        client_certificate: Some(dir.write("client.pem", &cert)),
        private_key: Some(dir.write("client.key", &key)),
        ..tls
    };
    push(
        &control,
        &client,
        external(server.addr, Some(mutual.clone())),
    )
    .await;
    let r = get(out, HOST, "/").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("client_cert=true"), "{}", r.body);

    // A missing key file NACKs the push, naming the file; the last good config serves on.
    let broken = OriginTls {
        private_key: Some(dir.0.join("missing.key").display().to_string()),
        ..mutual
    };
    let cfg = Config::sidecar(&client)
        .route(HOST, route_to(&format!("outbound|80||{HOST}")))
        .cluster(external(server.addr, Some(broken)))
        .build();
    let version = control.push("client", &cfg);
    let why = control.nacked("client", &version).await;
    assert!(why.contains("missing.key"), "{why}");
    assert_eq!(get(out, HOST, "/").await.status, 200);
}

/// A sidecar whose outbound table has only Istio's catch-all virtual host.
async fn catch_all(control: &FakeControl, client: &Proxy, route: Route) {
    let mut cfg = Config::sidecar(client).build();
    if let Some(c) = route.destinations.first() {
        let pass = weft_model::egress::passthrough_cluster();
        assert_eq!(c.cluster, pass.name);
        cfg.clusters.insert(pass.name.clone(), pass);
    }
    let table = cfg.routes.get_mut("outbound").unwrap();
    table.virtual_hosts.push(VirtualHost {
        name: route.name.clone(),
        domains: vec!["*".into()],
        routes: vec![route],
        require_tls: false,
    });
    control.push_acked("client", &cfg).await;
}

#[tokio::test]
async fn allow_any_passes_unknown_hosts_through_and_registry_only_answers_502() {
    let app = App::echo("outside").await;
    let control = FakeControl::start().await;
    let client = Proxy::sidecar("client").start(&control).await;
    let out = client.outbound.unwrap();
    let allow_any = Route {
        name: "allow_any".into(),
        destinations: vec![WeightedCluster {
            cluster: weft_model::PASSTHROUGH_CLUSTER.into(),
            weight: 100,
            ..Default::default()
        }],
        ..Default::default()
    };
    catch_all(&control, &client, allow_any).await;
    let authority = app.addr.to_string();
    let r = get(out, &authority, "/anything?x=1").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let seen = app.last();
    assert_eq!(seen.path, "/anything?x=1");
    assert_eq!(seen.header("host"), Some(authority.as_str()));
    assert!(seen.header(weft_proxy::PEER_HEADER).is_none());
    requests_total(
        client.admin,
        &[
            ("destination_service", weft_model::PASSTHROUGH_CLUSTER),
            ("response_code", "200"),
        ],
        1.0,
    )
    .await;

    // Nothing listens there: 503, and the body names the address.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gone = closed.local_addr().unwrap().to_string();
    drop(closed);
    let r = get(out, &gone, "/").await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains(&gone), "{}", r.body);

    let block_all = Route {
        name: "block_all".into(),
        direct_response: Some(DirectResponse {
            status: 502,
            body: Vec::new(),
        }),
        ..Default::default()
    };
    catch_all(&control, &client, block_all).await;
    let before = app.count();
    assert_eq!(get(out, &authority, "/").await.status, 502);
    assert_eq!(app.count(), before, "nothing left the sidecar");
    // No destination is known: Istio's `unknown`s, not empty labels.
    requests_total(
        client.admin,
        &[
            ("response_code", "502"),
            ("destination_service", "unknown"),
            ("destination_workload", "unknown"),
            ("destination_canonical_revision", "latest"),
        ],
        1.0,
    )
    .await;
}

#[tokio::test]
async fn tcp_to_a_service_outside_the_mesh_is_dialled_directly() {
    let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_addr = echo.local_addr().unwrap();
    let echo_task = tokio::spawn(async move {
        while let Ok((mut s, _)) = echo.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let control = FakeControl::start().await;
    let mut client = Proxy::sidecar("client").start(&control).await;
    let mut c = external(echo_addr, None);
    c.name = format!("outbound|6379||{HOST}");
    c.port = 6379;
    let name = format!("outbound_tcp|6379|{HOST}");
    let mut cfg = Config::sidecar(&client).cluster(c.clone()).build();
    cfg.tcp_listeners = vec![L4Listener {
        name: name.clone(),
        kind: ListenerKind::Outbound,
        port: 6379,
        service: Some(HOST.into()),
        sni: false,
        bind: None,
        routes: vec![L4Route {
            name: "default".into(),
            matches: vec![],
            destinations: vec![WeightedCluster {
                cluster: c.name.clone(),
                weight: 100,
                ..Default::default()
            }],
            origin: "test".into(),
        }],
        tls: None,
    }];
    control.push_acked("client", &cfg).await;
    let addr = client.listener(&name).await;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"PING\r\n").await.unwrap();
    let mut got = [0u8; 6];
    s.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"PING\r\n");
    drop(s);
    let stats = poll_stats(client.admin, |s| {
        sample_sum(
            s,
            "istio_tcp_connections_closed_total",
            &[("destination_service", HOST)],
        ) >= 1.0
    })
    .await;
    assert_eq!(
        sample_sum(
            &stats,
            "istio_tcp_sent_bytes_total",
            &[("destination_service", HOST)]
        ),
        6.0,
        "{stats}"
    );
    // No workload outside the mesh: Istio's `unknown`s, the service named by its host.
    let outside = [
        ("destination_service", HOST),
        ("destination_service_name", HOST),
        ("destination_service_namespace", "partner"),
        ("destination_workload", "unknown"),
        ("destination_principal", "unknown"),
        ("destination_canonical_service", "unknown"),
    ];
    assert_eq!(
        sample_sum(&stats, "istio_tcp_connections_opened_total", &outside),
        1.0,
        "{stats}"
    );
    echo_task.abort();
}

/// The admin stats once `ready` holds for them.
async fn poll_stats(admin: SocketAddr, ready: impl Fn(&str) -> bool) -> String {
    for _ in 0..500 {
        let s = stats(admin).await;
        if ready(&s) {
            return s;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("stats never got there: {}", stats(admin).await);
}
