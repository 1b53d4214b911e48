//! Gateway HTTPS servers through real sockets and real TLS: SIMPLE with a certificate per
//! host chosen by SNI (and no SNI refused when no server takes any name), HTTP/2 and
//! HTTP/1.1 by ALPN into the same pipeline (`x-forwarded-proto: https`), MUTUAL (no client
//! certificate: the handshake fails; a certificate whose SAN is not allowed: fails; a good
//! one: the request passes with Istio's gateway XFCC), `httpsRedirect` (301), a missing
//! credential leaving only that server unserved, and certificate rotation by file without
//! dropping an open connection.

mod support;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use support::*;
use weft_model::gateway_tls::{
    CertSource, ClientValidation, ServerTls, TlsChain, TlsMode, TlsVersion,
};
use weft_model::{Endpoint, Listener, ListenerKind};

/// A temporary folder, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new() -> Dir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("gwtls-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A CA that signs server and client certificates (as the secure-gateways task's openssl
/// commands make them).
struct Ca {
    pem: String,
    der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

struct Leaf {
    cert_pem: String,
    key_pem: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = p.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            der: cert.der().clone(),
            issuer: Issuer::new(p, key),
        }
    }

    fn leaf(&self, cn: &str, sans: Vec<SanType>) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.subject_alt_names = sans;
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    fn server(&self, host: &str) -> Leaf {
        self.leaf(host, vec![SanType::DnsName(host.try_into().unwrap())])
    }
}

/// Writes `<dir>/<name>/tls.crt|tls.key` (+ `ca.crt`), Istio's TLS Secret keys as files.
fn credential(dir: &Path, name: &str, leaf: &Leaf, ca: Option<&Ca>) {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    // Written to a temporary name and renamed, as a Secret volume update swaps files.
    for (file, body) in [("tls.crt", &leaf.cert_pem), ("tls.key", &leaf.key_pem)]
        .into_iter()
        .chain(ca.map(|c| ("ca.crt", &c.pem)))
    {
        let tmp = d.join(format!(".{file}.tmp"));
        std::fs::write(&tmp, body).unwrap();
        std::fs::rename(&tmp, d.join(file)).unwrap();
    }
}

fn chain(name: &str, sni: &[&str], mode: TlsMode, client: Option<ClientValidation>) -> TlsChain {
    TlsChain {
        name: format!("test/gw/{name}"),
        sni: sni.iter().map(|s| s.to_string()).collect(),
        route_table: format!("gateway_443|{name}"),
        mode,
        certificate: CertSource::Credential { name: name.into() },
        client,
        versions: vec![TlsVersion::Tls12, TlsVersion::Tls13],
        tls12_suites: vec![],
    }
}

/// A gateway whose HTTPS port 443 has `chains`, each routing every host to `app`
/// directly (a plaintext endpoint, so the app sees the gateway's own headers).
async fn gateway(
    control: &FakeControl,
    creds: &Path,
    app: &App,
    chains: Vec<TlsChain>,
) -> (Proxy, SocketAddr) {
    gateway_with(control, creds, app, chains, weft_model::Authz::default()).await
}

/// [`gateway`] with AuthorizationPolicies on the gateway.
async fn gateway_with(
    control: &FakeControl,
    creds: &Path,
    app: &App,
    chains: Vec<TlsChain>,
    authz: weft_model::Authz,
) -> (Proxy, SocketAddr) {
    let mut gw = Proxy::gateway("ingress")
        .credentials_dir(creds)
        .start(control)
        .await;
    let host = service_host("web", NAMESPACE);
    let mut c = cluster(&host, 80, vec![]);
    c.endpoints = vec![Endpoint {
        address: app.addr.to_string(),
        identity: String::new(),
        workload: "web".into(),
        version: None,
        meta: Default::default(),
        plaintext: true,
        priority: 0,
        sni: None,
    }];
    let mut cfg = Config::gateway().cluster(c.clone());
    for ch in &chains {
        cfg = cfg.table_route(&ch.route_table, "*", route_to(&c.name));
    }
    let mut cfg = cfg.build();
    cfg.listeners.push(Listener {
        name: "gateway_https_443".into(),
        kind: ListenerKind::Gateway,
        port: 443,
        route_table: "gateway_https_443".into(),
        tls: Some(ServerTls { chains }),
    });
    cfg.authz = authz;
    control.push_acked("ingress", &cfg).await;
    let addr = gw.listener("gateway_https_443").await;
    (gw, addr)
}

/// A TLS client trusting `ca`, asking for `sni`, offering `alpn`, with an optional client
/// certificate.
fn client(ca: &Ca, alpn: &[&[u8]], cert: Option<&Leaf>) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut cfg = match cert {
        Some(l) => b
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(l.cert_pem.as_bytes())
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_slice(l.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => b.with_no_client_auth(),
    };
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

use rustls::pki_types::pem::PemObject;

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// The handshake, or its error as text. TLS 1.3 reports a refused client certificate
/// only after the handshake, so a failure may also show on the first read.
async fn connect(
    addr: SocketAddr,
    c: &tokio_rustls::TlsConnector,
    sni: &str,
) -> Result<Tls, String> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from(sni.to_string()).unwrap();
    within("TLS handshake", c.connect(name, tcp))
        .await
        .map_err(|e| e.to_string())
}

/// One GET over the connection (HTTP/2 if ALPN chose it), status and the app's record.
async fn get_over(tls: Tls, host: &str, path: &str) -> Result<u16, String> {
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let io = TokioIo::new(tls);
    let req = |uri: String| {
        http::Request::builder()
            .uri(uri)
            .header("host", host)
            .body(Empty::<Bytes>::new())
            .unwrap()
    };
    let resp = if h2 {
        let (mut s, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        s.send_request(req(format!("https://{host}{path}"))).await
    } else {
        let (mut s, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        s.send_request(req(path.to_string())).await
    }
    .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let _ = resp.into_body().collect().await;
    Ok(status)
}

async fn get_tls(
    addr: SocketAddr,
    c: &tokio_rustls::TlsConnector,
    sni: &str,
    path: &str,
) -> Result<u16, String> {
    let tls = connect(addr, c, sni).await?;
    within("HTTPS request", get_over(tls, sni, path)).await
}

#[tokio::test]
async fn simple_tls_picks_each_hosts_certificate_by_sni_and_speaks_h2_and_http1() {
    let creds = Dir::new();
    let ca = Ca::new("example.com root");
    credential(&creds.0, "a-cred", &ca.server("a.example.com"), None);
    credential(&creds.0, "b-cred", &ca.server("b.example.com"), None);
    let app = App::echo("web").await;
    let control = FakeControl::start().await;
    let chains = vec![
        chain("a-cred", &["a.example.com"], TlsMode::Simple, None),
        chain("b-cred", &["b.example.com"], TlsMode::Simple, None),
        // Its credential folder does not exist: only this server is unserved.
        chain("missing-cred", &["c.example.com"], TlsMode::Simple, None),
    ];
    let (mut gw, addr) = gateway(&control, &creds.0, &app, chains).await;
    let said = gw.unserved("test/gw/missing-cred").await;
    assert!(
        said.contains("missing-cred") && said.contains("tls.crt"),
        "{said}"
    );

    // The client checks the certificate's name: each host got its own certificate.
    let h1 = client(&ca, &[b"http/1.1"], None);
    assert_eq!(get_tls(addr, &h1, "a.example.com", "/a").await, Ok(200));
    let seen = app.last();
    assert_eq!(seen.path, "/a");
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
    assert_eq!(seen.header("x-forwarded-client-cert"), None);

    let h2 = client(&ca, &[b"h2", b"http/1.1"], None);
    let tls = connect(addr, &h2, "b.example.com")
        .await
        .expect("handshake for b");
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(&b"h2"[..]),
        "ALPN chose h2"
    );
    assert_eq!(
        within("h2 request", get_over(tls, "b.example.com", "/b")).await,
        Ok(200)
    );
    assert_eq!(app.last().path, "/b");
    // Telemetry as on a plain gateway port: the source reporter, HTTP/1.1 and HTTP/2
    // both `request_protocol="http"`, the client side's `connection_security_policy`.
    let labels = [
        ("reporter", "source"),
        ("request_protocol", "http"),
        ("response_code", "200"),
        ("connection_security_policy", "unknown"),
    ];
    let s = requests_total(gw.admin, &labels, 2.0).await;
    assert_eq!(sample_sum(&s, "istio_requests_total", &labels), 2.0, "{s}");

    // c.example.com's credential is missing and no server takes any name: no handshake.
    let err = connect(addr, &h1, "c.example.com").await.err();
    assert!(
        err.is_some(),
        "a server without its credential is not served"
    );
    let err = connect(addr, &h1, "other.example.com").await.err();
    assert!(err.is_some(), "a name no server has gets no handshake");
    // The a.example.com certificate does not pass for b (the SNI picked b's).
    let only_a = client(&Ca::new("unrelated"), &[b"http/1.1"], None);
    assert!(
        connect(addr, &only_a, "a.example.com").await.is_err(),
        "an untrusted CA fails"
    );

    // The credential appears: the server is served from its next handshake on.
    credential(&creds.0, "missing-cred", &ca.server("c.example.com"), None);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if get_tls(addr, &h1, "c.example.com", "/c").await == Ok(200) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new credential was never served"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn mutual_tls_requires_a_client_certificate_with_an_allowed_san() {
    let creds = Dir::new();
    let ca = Ca::new("example.com root");
    credential(&creds.0, "m-cred", &ca.server("m.example.com"), Some(&ca));
    let app = App::echo("web").await;
    let control = FakeControl::start().await;
    let validation = ClientValidation {
        ca_credential: Some("m-cred".into()),
        subject_alt_names: vec!["client.example.com".into()],
        ..Default::default()
    };
    let chains = vec![chain(
        "m-cred",
        &["m.example.com"],
        TlsMode::Mutual,
        Some(validation),
    )];
    let (_gw, addr) = gateway(&control, &creds.0, &app, chains).await;

    let none = client(&ca, &[b"http/1.1"], None);
    let refused = get_tls(addr, &none, "m.example.com", "/").await;
    assert!(
        refused.is_err(),
        "no client certificate: refused, got {refused:?}"
    );

    let wrong = ca.leaf(
        "other",
        vec![SanType::DnsName("other.example.com".try_into().unwrap())],
    );
    let refused = get_tls(
        addr,
        &client(&ca, &[b"http/1.1"], Some(&wrong)),
        "m.example.com",
        "/",
    )
    .await;
    assert!(
        refused.is_err(),
        "a SAN not in subjectAltNames: refused, got {refused:?}"
    );

    let other_ca = Ca::new("another root");
    let stranger = other_ca.leaf(
        "client",
        vec![SanType::DnsName("client.example.com".try_into().unwrap())],
    );
    let refused = get_tls(
        addr,
        &client(&ca, &[b"http/1.1"], Some(&stranger)),
        "m.example.com",
        "/",
    )
    .await;
    assert!(
        refused.is_err(),
        "a certificate from another CA: refused, got {refused:?}"
    );

    let good = ca.leaf(
        "client",
        vec![
            SanType::DnsName("client.example.com".try_into().unwrap()),
            SanType::URI("spiffe://example.com/client".try_into().unwrap()),
        ],
    );
    let ok = get_tls(
        addr,
        &client(&ca, &[b"http/1.1"], Some(&good)),
        "m.example.com",
        "/in",
    )
    .await;
    assert_eq!(ok, Ok(200));
    let xfcc = app
        .last()
        .header("x-forwarded-client-cert")
        .map(str::to_string);
    let xfcc = xfcc.expect("the gateway forwards the client certificate");
    assert!(xfcc.starts_with("Hash="), "{xfcc}");
    assert!(xfcc.contains(";Subject=\"CN=client\""), "{xfcc}");
    assert!(
        xfcc.contains(";URI=spiffe://example.com/client;DNS=client.example.com"),
        "{xfcc}"
    );
}

#[tokio::test]
async fn a_rotated_certificate_is_served_to_new_connections_and_open_ones_stay() {
    let creds = Dir::new();
    let old_ca = Ca::new("old root");
    credential(&creds.0, "r-cred", &old_ca.server("r.example.com"), None);
    let app = App::echo("web").await;
    let control = FakeControl::start().await;
    let chains = vec![chain("r-cred", &["r.example.com"], TlsMode::Simple, None)];
    let (_gw, addr) = gateway(&control, &creds.0, &app, chains).await;
    let old = client(&old_ca, &[b"h2"], None);
    let open = connect(addr, &old, "r.example.com")
        .await
        .expect("old certificate");
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(open))
            .await
            .unwrap();
    tokio::spawn(conn);

    let new_ca = Ca::new("new root");
    credential(&creds.0, "r-cred", &new_ca.server("r.example.com"), None);
    let new = client(&new_ca, &[b"http/1.1"], None);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while connect(addr, &new, "r.example.com").await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rotated certificate was never served"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        connect(addr, &old, "r.example.com").await.is_err(),
        "new handshakes get the new one"
    );
    // The connection opened before the rotation still carries requests.
    let req = http::Request::builder()
        .uri("https://r.example.com/still")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = within("request on the old connection", sender.send_request(req))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(app.last().path, "/still");
}

#[tokio::test]
async fn https_redirect_answers_301_to_https() {
    let app = App::echo("web").await;
    let control = FakeControl::start().await;
    let mut gw = Proxy::gateway("ingress").start(&control).await;
    let host = service_host("web", NAMESPACE);
    let c = cluster(&host, 80, vec![]);
    let mut cfg = Config::gateway()
        .gateway_route(80, "secure.example.com", route_to(&c.name))
        .gateway_route(80, "plain.example.com", route_to(&c.name))
        .cluster(c)
        .build();
    let table = cfg.routes.get_mut("gateway_80").unwrap();
    table.virtual_hosts[0].require_tls = true;
    control.push_acked("ingress", &cfg).await;
    let port80 = gw.listener("gateway_80").await;
    let resp = get(port80, "secure.example.com:8080", "/login?next=1").await;
    assert_eq!(resp.status, 301, "{}", resp.body);
    assert_eq!(
        resp.headers.get("location").map(|v| v.to_str().unwrap()),
        Some("https://secure.example.com:8080/login?next=1")
    );
    assert_eq!(app.count(), 0);
    // The other host of the port is not redirected (no endpoint: 503).
    assert_ne!(get(port80, "plain.example.com", "/").await.status, 301);
    let _ = app;
}

/// A TCP echo server (the app behind a sidecar).
async fn echo_app() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, task)
}

#[tokio::test]
async fn a_tls_server_terminates_then_its_tcp_route_carries_the_bytes_to_the_mesh() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const PORT: u32 = 5432;
    let creds = Dir::new();
    let ca = Ca::new("example.com root");
    credential(&creds.0, "db-cred", &ca.server("db.example.com"), None);
    let (app, _app) = echo_app().await;
    let control = FakeControl::start().await;
    let server = Proxy::sidecar("db").app(app).start(&control).await;
    let mut scfg = Config::sidecar(&server).build();
    let inbound = scfg.inbound.as_mut().unwrap();
    inbound.ports = vec![PORT];
    inbound.tcp_ports = vec![PORT];
    control.push_acked("db", &scfg).await;

    let mut gw = Proxy::gateway("ingress")
        .credentials_dir(&creds.0)
        .start(&control)
        .await;
    let c = cluster(
        &service_host("db", NAMESPACE),
        PORT,
        vec![endpoint(&server)],
    );
    let mut cfg = Config::gateway().cluster(c.clone()).build();
    cfg.tcp_listeners = vec![weft_model::L4Listener {
        name: "gateway_tcp_5432".into(),
        kind: ListenerKind::Gateway,
        port: PORT,
        service: None,
        sni: false,
        bind: None,
        routes: vec![weft_model::L4Route {
            name: "db/tcp[0]".into(),
            matches: vec![],
            destinations: vec![weft_model::WeightedCluster {
                cluster: c.name.clone(),
                weight: 100,
                ..Default::default()
            }],
            origin: "harness".into(),
        }],
        tls: Some(ServerTls {
            chains: vec![chain("db-cred", &["db.example.com"], TlsMode::Simple, None)],
        }),
    }];
    control.push_acked("ingress", &cfg).await;
    let addr = gw.listener("gateway_tcp_5432").await;

    let mut tls = connect(addr, &client(&ca, &[], None), "db.example.com")
        .await
        .expect("the gateway terminates TLS with db.example.com's certificate");
    tls.write_all(b"SELECT 1").await.unwrap();
    let mut back = [0u8; 8];
    within("the echo through the mesh", tls.read_exact(&mut back))
        .await
        .unwrap();
    assert_eq!(
        &back, b"SELECT 1",
        "the app got the decrypted bytes and they came back"
    );
    assert!(connect(addr, &client(&ca, &[], None), "other.example.com")
        .await
        .is_err());
}

#[tokio::test]
async fn optional_mutual_takes_clients_with_and_without_a_certificate() {
    let creds = Dir::new();
    let ca = Ca::new("example.com root");
    credential(&creds.0, "o-cred", &ca.server("o.example.com"), Some(&ca));
    let app = App::echo("web").await;
    let control = FakeControl::start().await;
    let v = ClientValidation {
        ca_credential: Some("o-cred".into()),
        ..Default::default()
    };
    let chains = vec![chain(
        "o-cred",
        &["o.example.com"],
        TlsMode::OptionalMutual,
        Some(v),
    )];
    let (_gw, addr) = gateway(&control, &creds.0, &app, chains).await;
    let none = client(&ca, &[b"http/1.1"], None);
    assert_eq!(
        get_tls(addr, &none, "o.example.com", "/anon").await,
        Ok(200)
    );
    assert_eq!(app.last().header("x-forwarded-client-cert"), None);
    let leaf = ca.leaf(
        "c",
        vec![SanType::DnsName("c.example.com".try_into().unwrap())],
    );
    let with = client(&ca, &[b"http/1.1"], Some(&leaf));
    assert_eq!(
        get_tls(addr, &with, "o.example.com", "/named").await,
        Ok(200)
    );
    let xfcc = app
        .last()
        .header("x-forwarded-client-cert")
        .map(str::to_string);
    assert!(xfcc.is_some_and(|x| x.ends_with(";DNS=c.example.com")));
    // A certificate the CA did not sign is still refused.
    let stranger = Ca::new("other").leaf("s", vec![]);
    let refused = get_tls(
        addr,
        &client(&ca, &[b"http/1.1"], Some(&stranger)),
        "o.example.com",
        "/",
    )
    .await;
    assert!(refused.is_err(), "{refused:?}");
}

#[tokio::test]
async fn istio_mutual_takes_mesh_workloads_with_their_identity() {
    let app = App::echo("web").await;
    let control = FakeControl::start().await;
    let mut mesh = chain("mesh", &[], TlsMode::IstioMutual, None);
    mesh.certificate = CertSource::Mesh;
    let creds = Dir::new();
    let (gw, addr) = gateway(&control, &creds.0, &app, vec![mesh]).await;
    // A sidecar whose route for egress.example.com goes to the gateway over the mesh's mTLS
    // (Istio's egress gateway with ISTIO_MUTUAL).
    let client = Proxy::sidecar("client").start(&control).await;
    let host = "egress.example.com";
    let c = cluster(
        host,
        443,
        vec![Endpoint {
            address: addr.to_string(),
            identity: gw.identity.clone(),
            workload: "ingress".into(),
            version: None,
            meta: Default::default(),
            plaintext: false,
            priority: 0,
            sni: None,
        }],
    );
    let cfg = Config::sidecar(&client)
        .route(host, route_to(&c.name))
        .cluster(c)
        .build();
    control.push_acked("client", &cfg).await;
    let resp = get(client.outbound(), host, "/via-gateway").await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let seen = app.last();
    assert_eq!(seen.path, "/via-gateway");
    let xfcc = seen.header("x-forwarded-client-cert").unwrap_or_default();
    assert!(
        xfcc.contains(&format!(";URI={}", client.identity)),
        "{xfcc}"
    );
    // A client without a mesh certificate is refused.
    let outsider = client_for_any_server();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("egress.example.com").unwrap();
    let handshake = within("handshake", outsider.connect(name, tcp)).await;
    let refused = match handshake {
        Err(_) => true,
        Ok(tls) => get_over(tls, host, "/").await.is_err(),
    };
    assert!(refused, "ISTIO_MUTUAL requires a mesh certificate");
}

/// A TLS client with no certificate that accepts any server (to reach the handshake).
fn client_for_any_server() -> tokio_rustls::TlsConnector {
    #[derive(Debug)]
    struct Any;
    impl rustls::client::danger::ServerCertVerifier for Any {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            rustls::crypto::ring::default_provider()
                .signature_verification_algorithms
                .supported_schemes()
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Any))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

#[tokio::test]
async fn a_client_certificate_is_the_source_principal_authorization_judges() {
    use weft_model::{AuthzAction, AuthzAttr, AuthzField, AuthzPolicy, AuthzRule};
    let creds = Dir::new();
    let ca = Ca::new("example.com root");
    credential(&creds.0, "p-cred", &ca.server("p.example.com"), Some(&ca));
    let app = App::echo("web").await;
    let control = FakeControl::start().await;
    let v = ClientValidation {
        ca_credential: Some("p-cred".into()),
        ..Default::default()
    };
    // Istio's principals are the SPIFFE id without `spiffe://`.
    let authz = weft_model::Authz {
        policies: vec![AuthzPolicy {
            name: "istio-system.partners".into(),
            action: AuthzAction::Allow,
            dry_run: false,
            rules: vec![AuthzRule {
                from: vec![vec![AuthzField {
                    attr: AuthzAttr::Principal,
                    values: vec!["example.com/partner".into()],
                    not_values: vec![],
                }]],
                ..Default::default()
            }],
            provider: None,
        }],
        providers: vec![],
    };
    let chains = vec![chain(
        "p-cred",
        &["p.example.com"],
        TlsMode::Mutual,
        Some(v),
    )];
    let (_gw, addr) = gateway_with(&control, &creds.0, &app, chains, authz).await;
    let cert = |uri: &str| ca.leaf("c", vec![SanType::URI(uri.try_into().unwrap())]);
    let partner = client(
        &ca,
        &[b"http/1.1"],
        Some(&cert("spiffe://example.com/partner")),
    );
    assert_eq!(get_tls(addr, &partner, "p.example.com", "/").await, Ok(200));
    let other = client(
        &ca,
        &[b"http/1.1"],
        Some(&cert("spiffe://example.com/other")),
    );
    assert_eq!(get_tls(addr, &other, "p.example.com", "/").await, Ok(403));
    assert_eq!(app.count(), 1);
}
