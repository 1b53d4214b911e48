//! [`FakeControl`]: an in-process control plane (tonic `Mesh` service on `127.0.0.1:0`).

use super::within;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};
use weft_identity::{Ca, SpiffeId};
use weft_model::ProxyConfig;
use weft_protocol::auth::RequireToken;
use weft_protocol::{pb, Mesh, MeshServer};

/// The trust domain of every harness mesh.
pub const TRUST_DOMAIN: &str = "cluster.local";

/// What the fake control plane knows about one proxy (keyed by workload name).
#[derive(Default)]
struct Entry {
    /// The last hello on the config stream.
    node: Option<pb::Node>,
    /// The newest push, replayed to a (re)connecting proxy.
    latest: Option<pb::ConfigPush>,
    /// The live config stream, if the proxy is connected.
    conn: Option<mpsc::UnboundedSender<pb::ConfigPush>>,
    /// Every ACK/NACK received, in order.
    acks: Option<watch::Sender<Vec<pb::Ack>>>,
    /// Config streams opened so far.
    connections: Option<watch::Sender<u32>>,
}

impl Entry {
    fn acks(&mut self) -> &watch::Sender<Vec<pb::Ack>> {
        self.acks
            .get_or_insert_with(|| watch::channel(Vec::new()).0)
    }
    fn connections(&mut self) -> &watch::Sender<u32> {
        self.connections.get_or_insert_with(|| watch::channel(0).0)
    }
}

struct Inner {
    ca: Ca,
    cert_ttl: Duration,
    /// Identity overrides: workload -> SPIFFE id.
    identities: Mutex<HashMap<String, String>>,
    proxies: Mutex<HashMap<String, Entry>>,
    version: AtomicU64,
    shutdown: watch::Receiver<bool>,
}

impl Inner {
    fn with<R>(&self, who: &str, f: impl FnOnce(&mut Entry) -> R) -> R {
        let mut proxies = self.proxies.lock().unwrap();
        f(proxies.entry(workload_of(who).to_string()).or_default())
    }
}

/// `sidecar~client.test` -> `client`; a plain workload name is returned as is.
fn workload_of(who: &str) -> &str {
    match who.split_once('~') {
        Some((_, rest)) => rest.split_once('.').map_or(rest, |(w, _)| w),
        None => who,
    }
}

/// An in-process control plane: a CA that signs proxies' CSRs, per-proxy config pushes,
/// and a record of every ACK/NACK to wait on. Proxies are addressed by workload name (or
/// node id, `role~workload.namespace`), so a test gives each proxy a distinct workload.
/// Stopped on drop: the gRPC server stops accepting and every config stream ends.
pub struct FakeControl {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
    shutdown: watch::Sender<bool>,
}

/// How to start a [`FakeControl`].
pub struct ControlBuilder {
    token: Option<String>,
    cert_ttl: Duration,
}

impl ControlBuilder {
    /// Require this bearer token on every call (as `weft control --token-file` does).
    pub fn token(mut self, token: &str) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Lifetime of issued certificates (default 24 h; the proxy renews at half of it).
    pub fn cert_ttl(mut self, ttl: Duration) -> Self {
        self.cert_ttl = ttl;
        self
    }

    pub async fn start(self) -> FakeControl {
        let (shutdown, shutdown_rx) = watch::channel(false);
        let inner = Arc::new(Inner {
            ca: test_ca(),
            cert_ttl: self.cert_ttl,
            identities: Mutex::default(),
            proxies: Mutex::default(),
            version: AtomicU64::new(0),
            shutdown: shutdown_rx.clone(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake control plane");
        let addr = listener.local_addr().unwrap();
        let service = MeshServer::with_interceptor(
            Service(inner.clone()),
            RequireToken::new(self.token.clone()),
        );
        let mut stop = shutdown_rx;
        tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(incoming(listener), async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
        });
        FakeControl {
            addr,
            inner,
            shutdown,
        }
    }
}

impl FakeControl {
    /// A control plane without a token and with 24 h certificates.
    pub async fn start() -> FakeControl {
        FakeControl::builder().start().await
    }

    pub fn builder() -> ControlBuilder {
        ControlBuilder {
            token: None,
            cert_ttl: Duration::from_secs(24 * 3600),
        }
    }

    /// `host:port` for [`weft_proxy::ProxyOptions::control`].
    pub fn target(&self) -> String {
        self.addr.to_string()
    }

    /// The mesh root certificate (PEM).
    pub fn root_pem(&self) -> String {
        self.inner.ca.root_pem()
    }

    /// Issue `workload`'s certificates for `spiffe_id` instead of the default
    /// `spiffe://cluster.local/ns/<ns>/sa/<workload>`. Set it before the proxy starts.
    pub fn set_identity(&self, workload: &str, spiffe_id: &str) {
        self.inner
            .identities
            .lock()
            .unwrap()
            .insert(workload.into(), spiffe_id.into());
    }

    /// The identity a workload's certificate will carry.
    pub fn identity_of(&self, workload: &str, namespace: &str) -> String {
        self.inner
            .identities
            .lock()
            .unwrap()
            .get(workload)
            .cloned()
            .unwrap_or_else(|| format!("spiffe://{TRUST_DOMAIN}/ns/{namespace}/sa/{workload}"))
    }

    /// Pushes `config` to a proxy (now, or when it connects) and returns its version.
    pub fn push(&self, who: &str, config: &ProxyConfig) -> String {
        let version = self.next_version();
        self.push_raw(
            who,
            weft_protocol::encode_config(&version, config, weft_protocol::MAX_PUSH_BYTES),
        );
        version
    }

    /// Pushes a hand-made message (e.g. a payload that does not decode).
    pub fn push_raw(&self, who: &str, push: pb::ConfigPush) {
        self.inner.with(who, |e| {
            if let Some(conn) = &e.conn {
                let _ = conn.send(push.clone());
            }
            e.latest = Some(push);
        });
    }

    /// A fresh version string (monotonic per control plane).
    pub fn next_version(&self) -> String {
        (self.inner.version.fetch_add(1, Ordering::Relaxed) + 1).to_string()
    }

    /// Pushes and waits for the proxy to accept it.
    pub async fn push_acked(&self, who: &str, config: &ProxyConfig) -> String {
        let v = self.push(who, config);
        self.acked(who, &v).await;
        v
    }

    /// Waits until the proxy answered `version` with an ACK (panics on a NACK).
    pub async fn acked(&self, who: &str, version: &str) {
        let ack = self.answer(who, version).await;
        assert!(
            ack.accepted,
            "proxy {who} NACKed version {version}: {}",
            ack.error
        );
    }

    /// Waits until the proxy answered `version` with a NACK (panics on an ACK); returns
    /// the proxy's reason.
    pub async fn nacked(&self, who: &str, version: &str) -> String {
        let ack = self.answer(who, version).await;
        assert!(
            !ack.accepted,
            "proxy {who} accepted version {version}, expected a NACK"
        );
        ack.error
    }

    /// Waits for the proxy's answer to `version`.
    pub async fn answer(&self, who: &str, version: &str) -> pb::Ack {
        let mut rx = self.inner.with(who, |e| e.acks().subscribe());
        let what = format!("proxy {who} to answer config version {version}");
        within(&what, async {
            let acks = rx
                .wait_for(|acks| acks.iter().any(|a| a.version == version))
                .await
                .expect("the ack record lives as long as the control plane");
            acks.iter().find(|a| a.version == version).cloned().unwrap()
        })
        .await
    }

    /// Every answer the proxy gave so far, in order.
    pub fn answers(&self, who: &str) -> Vec<pb::Ack> {
        self.inner.with(who, |e| e.acks().borrow().clone())
    }

    /// Waits until the proxy has answered `n` pushes in all (replays included); returns
    /// the answers.
    pub async fn wait_answers(&self, who: &str, n: usize) -> Vec<pb::Ack> {
        let mut rx = self.inner.with(who, |e| e.acks().subscribe());
        within(&format!("proxy {who} to answer {n} pushes"), async {
            rx.wait_for(|a| a.len() >= n)
                .await
                .expect("record lives")
                .clone()
        })
        .await
    }

    /// Waits until the proxy has opened `n` config streams in all.
    pub async fn connections(&self, who: &str, n: u32) {
        let mut rx = self.inner.with(who, |e| e.connections().subscribe());
        within(&format!("proxy {who} to open config stream #{n}"), async {
            rx.wait_for(|c| *c >= n).await.expect("record lives");
        })
        .await
    }

    /// The hello the proxy sent on its last config stream.
    pub fn node(&self, who: &str) -> Option<pb::Node> {
        self.inner.with(who, |e| e.node.clone())
    }

    /// Ends the proxy's current config stream (the proxy reconnects with backoff).
    pub fn disconnect(&self, who: &str) {
        self.inner.with(who, |e| e.conn = None);
    }
}

impl Drop for FakeControl {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// Accepted connections with Nagle off. (With it on, a response written in several
/// small writes waits for a delayed ACK in real time: under paused tokio time the
/// runtime then sees no ready I/O and auto-advances the clock.)
fn incoming(
    listener: tokio::net::TcpListener,
) -> impl Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt;
    TcpListenerStream::new(listener).map(|s| {
        let s = s?;
        s.set_nodelay(true)?;
        Ok(s)
    })
}

/// A fresh self-signed mesh root, in memory.
fn test_ca() -> Ca {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "weft harness root");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).unwrap();
    Ca::from_pem(&cert.pem(), &key.serialize_pem(), None, None, TRUST_DOMAIN)
        .expect("the harness CA is valid")
}

struct Service(Arc<Inner>);

type PushStream = Pin<Box<dyn Stream<Item = Result<pb::ConfigPush, Status>> + Send>>;

#[tonic::async_trait]
impl Mesh for Service {
    type StreamConfigStream = PushStream;

    async fn stream_config(
        &self,
        req: Request<Streaming<pb::ProxyMessage>>,
    ) -> Result<Response<PushStream>, Status> {
        let mut inbound = req.into_inner();
        let first = inbound
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("stream closed before hello"))?;
        let Some(pb::proxy_message::Msg::Hello(node)) = first.msg else {
            return Err(Status::invalid_argument("first message must be hello"));
        };
        let who = node.workload.clone();
        let (tx, rx) = mpsc::unbounded_channel();
        let acks = self.0.with(&who, |e| {
            if let Some(latest) = &e.latest {
                let _ = tx.send(latest.clone());
            }
            e.conn = Some(tx);
            e.node = Some(node);
            e.connections().send_modify(|c| *c += 1);
            e.acks().clone()
        });
        let mut stop = self.0.shutdown.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => break,
                    msg = inbound.message() => match msg {
                        Ok(Some(pb::ProxyMessage { msg: Some(pb::proxy_message::Msg::Ack(ack)) })) => {
                            acks.send_modify(|a| a.push(ack));
                        }
                        Ok(Some(_)) => {}
                        Ok(None) | Err(_) => break,
                    },
                }
            }
        });
        // Ends when the test disconnects the proxy, a newer stream replaces this one, or
        // the control plane is dropped.
        let stop = self.0.shutdown.clone();
        let pushes = futures_util::stream::unfold((rx, stop), |(mut rx, mut stop)| async move {
            let push = tokio::select! {
                _ = stop.wait_for(|s| *s) => None,
                push = rx.recv() => push,
            };
            push.map(|p| (Ok(p), (rx, stop)))
        });
        Ok(Response::new(Box::pin(pushes)))
    }

    async fn create_certificate(
        &self,
        req: Request<pb::CertificateRequest>,
    ) -> Result<Response<pb::CertificateResponse>, Status> {
        let req = req.into_inner();
        let node = req
            .node
            .ok_or_else(|| Status::invalid_argument("certificate request without node"))?;
        let uri = self
            .0
            .identities
            .lock()
            .unwrap()
            .get(&node.workload)
            .cloned()
            .unwrap_or_else(|| {
                format!(
                    "spiffe://{TRUST_DOMAIN}/ns/{}/sa/{}",
                    node.namespace, node.workload
                )
            });
        let id = SpiffeId::parse(&uri).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let issued = self
            .0
            .ca
            .sign_csr(&req.csr_pem, &id, self.0.cert_ttl)
            .map_err(|e| Status::invalid_argument(format!("CSR rejected: {e}")))?;
        Ok(Response::new(pb::CertificateResponse {
            cert_chain_pem: issued.cert_chain_pem,
            root_pem: issued.root_pem,
            spiffe_id: id.to_string(),
            not_after_unix: issued
                .not_after
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0),
        }))
    }
}
