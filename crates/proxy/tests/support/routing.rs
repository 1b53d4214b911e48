//! The NECPGAME example's ingress path (examples/necpgame), in one process: the ingress
//! gateway, workloads (app + sidecar) of the `necpgame` namespace, and configs named and
//! shaped the way `weft_model::compile` builds them for that example's YAML (the model
//! tests `necpgame_*` in crates/model/tests/compile.rs pin that translation). Also a
//! keep-alive client and chunked request bodies.

use super::client::Resp;
use super::config::{cluster, endpoint, istio_default_retry, service_host};
use super::control::{FakeControl, TRUST_DOMAIN};
use super::proxy::Proxy;
use super::{within, App, Config};
use bytes::Bytes;
use http::Request;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::task::JoinHandle;
use weft_model::{
    Cluster, Endpoint, LbPolicy, Listener, ListenerKind, ProxyConfig, Route, RouteMatch,
    RouteTable, StringMatcher, VirtualHost, WeightedCluster,
};

/// The Gateway's host (istio-gateway.yaml).
pub const GAME_HOST: &str = "game.necpgame.local";
pub const GAME_NS: &str = "necpgame";
/// The one virtual host of the gateway's port 80: the `necpgame-api` VirtualService.
pub const GAME_VS: &str = "VirtualService/necpgame/necpgame-api";
/// The ingress gateway's workload (registry.yaml).
pub const GATEWAY_WORKLOAD: &str = "istio-ingressgateway";

/// A workload `<service>-<version>` of `service` (service account `<service>`, as in
/// registry.yaml): its app and the sidecar in front of it.
pub struct Workload {
    pub name: String,
    pub service: String,
    pub version: String,
    pub app: App,
    pub sidecar: Proxy,
}

impl Workload {
    /// Starts the sidecar in front of `app` and pushes (and waits for the ACK of) the
    /// inbound side compile gives it.
    pub async fn start(control: &FakeControl, service: &str, version: &str, app: App) -> Workload {
        let name = format!("{service}-{version}");
        control.set_identity(
            &name,
            &weft_model::spiffe_id(TRUST_DOMAIN, GAME_NS, service),
        );
        let sidecar = Proxy::sidecar(&name)
            .namespace(GAME_NS)
            .app(app.addr)
            .start(control)
            .await;
        let mut cfg = Config::sidecar(&sidecar).build();
        let inbound = cfg.inbound.as_mut().expect("a sidecar config");
        inbound.services = vec![service_host(service, GAME_NS)];
        inbound.version = Some(version.into());
        control.push_acked(&name, &cfg).await;
        Workload {
            name,
            service: service.into(),
            version: version.into(),
            app,
            sidecar,
        }
    }

    /// Its endpoint in a cluster, as compile lists it.
    pub fn endpoint(&self) -> Endpoint {
        let mut e = endpoint(&self.sidecar);
        e.version = Some(self.version.clone());
        e
    }
}

/// `outbound|8080||<service>.necpgame.svc.cluster.local` over `workloads`, with `lb`
/// (the DestinationRule's `loadBalancer.simple`; LEAST_REQUEST without one).
pub fn game_cluster(service: &str, lb: LbPolicy, workloads: &[&Workload]) -> Cluster {
    let mut c = cluster(
        &service_host(service, GAME_NS),
        8080,
        workloads.iter().map(|w| w.endpoint()).collect(),
    );
    c.lb = lb;
    c
}

/// A route as compile makes it of an `http` entry named `name` with one `uri` match and
/// no timeout, retries or other actions: Istio's default retry policy, sending to
/// `cluster` (none for redirects and direct responses).
pub fn game_route(name: &str, uri: StringMatcher, cluster: Option<&str>) -> Route {
    Route {
        name: name.into(),
        matches: vec![RouteMatch {
            uri: Some(uri),
            ..Default::default()
        }],
        destinations: cluster
            .map(|c| WeightedCluster {
                cluster: c.into(),
                weight: 100,
                ..Default::default()
            })
            .into_iter()
            .collect(),
        retry: istio_default_retry(),
        origin: format!("{GAME_VS} (istio-gateway.yaml)"),
        ..Default::default()
    }
}

/// [`game_route`] with `match: [{uri: {prefix}}]` to one cluster.
pub fn prefix_route(name: &str, prefix: &str, cluster: &str) -> Route {
    game_route(name, StringMatcher::Prefix(prefix.into()), Some(cluster))
}

/// The gateway's config: listener `gateway_80`, one virtual host for [`GAME_HOST`] with
/// `routes` in order, and `clusters`.
pub fn gateway_config(routes: Vec<Route>, clusters: Vec<Cluster>) -> ProxyConfig {
    let table = RouteTable {
        virtual_hosts: vec![VirtualHost {
            name: GAME_VS.into(),
            domains: vec![GAME_HOST.into()],
            routes,
            require_tls: false,
        }],
    };
    ProxyConfig {
        listeners: vec![Listener {
            name: "gateway_80".into(),
            kind: ListenerKind::Gateway,
            port: 80,
            route_table: "gateway_80".into(),
            tls: None,
        }],
        routes: BTreeMap::from([("gateway_80".to_string(), table)]),
        clusters: clusters.into_iter().map(|c| (c.name.clone(), c)).collect(),
        ..Default::default()
    }
}

/// The ingress gateway (workload `istio-ingressgateway` in `istio-system`) serving a config.
pub struct Gateway {
    pub proxy: Proxy,
    /// Where its port 80 listens.
    pub addr: SocketAddr,
}

impl Gateway {
    /// Starts the gateway, pushes `cfg` and waits for the ACK and the `gateway_80` listener.
    pub async fn start(control: &FakeControl, cfg: &ProxyConfig) -> Gateway {
        let mut proxy = Proxy::gateway(GATEWAY_WORKLOAD)
            .namespace("istio-system")
            .start(control)
            .await;
        control.push_acked(GATEWAY_WORKLOAD, cfg).await;
        let addr = proxy.listener("gateway_80").await;
        Gateway { proxy, addr }
    }

    /// Pushes a new config and waits for its ACK.
    pub async fn push(&self, control: &FakeControl, cfg: &ProxyConfig) {
        control.push_acked(GATEWAY_WORKLOAD, cfg).await;
    }

    pub fn admin(&self) -> SocketAddr {
        self.proxy.admin
    }
}

/// The request body type of [`KeepAlive`].
pub type ReqBody = BoxBody<Bytes, Infallible>;

/// `method path` to [`GAME_HOST`] with `headers` and no body.
pub fn game_request(method: &str, path: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, GAME_HOST);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(Full::new(Bytes::new())).expect("a valid request")
}

/// `GET path` to [`GAME_HOST`] at `addr` over a fresh connection.
pub async fn game_get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Resp {
    super::send(addr, game_request("GET", path, headers)).await
}

/// A request body of these chunks, of unknown length: HTTP/1.1 sends it with
/// `transfer-encoding: chunked` (as gRPC and streaming clients do).
pub struct Chunked(VecDeque<Bytes>);

impl Chunked {
    pub fn new(chunks: &[&'static str]) -> Chunked {
        Chunked(
            chunks
                .iter()
                .map(|c| Bytes::from_static(c.as_bytes()))
                .collect(),
        )
    }
}

impl hyper::body::Body for Chunked {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }
}

/// One HTTP/1.1 connection that requests go out on one after another (keep-alive, as
/// curl and the e2e tests' `HttpConn` use it). A connection the server closes is a
/// failure, not silently replaced. Closed on drop.
pub struct KeepAlive {
    addr: SocketAddr,
    sender: hyper::client::conn::http1::SendRequest<ReqBody>,
    conn: JoinHandle<()>,
}

impl KeepAlive {
    pub async fn connect(addr: SocketAddr) -> KeepAlive {
        within(&format!("a connection to {addr}"), async {
            let tcp = tokio::net::TcpStream::connect(addr)
                .await
                .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
            let _ = tcp.set_nodelay(true);
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .unwrap_or_else(|e| panic!("handshake with {addr}: {e}"));
            let conn = tokio::spawn(async move {
                let _ = conn.await;
            });
            KeepAlive { addr, sender, conn }
        })
        .await
    }

    /// Sends `req` on this connection and reads the whole response.
    pub async fn send<B>(&mut self, req: Request<B>) -> Resp
    where
        B: hyper::body::Body<Data = Bytes, Error = Infallible> + Send + Sync + 'static,
    {
        let what = format!(
            "{} {} via {} (keep-alive)",
            req.method(),
            req.uri(),
            self.addr
        );
        let req = req.map(|b| b.boxed());
        within(&what, async {
            self.sender
                .ready()
                .await
                .unwrap_or_else(|e| panic!("{what}: the connection is gone: {e}"));
            let resp = self
                .sender
                .send_request(req)
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            let (parts, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .unwrap_or_else(|e| panic!("{what}: response body: {e}"))
                .to_bytes();
            Resp {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            }
        })
        .await
    }

    /// `GET path` to [`GAME_HOST`] with `headers`.
    pub async fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> Resp {
        self.send(game_request("GET", path, headers)).await
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.conn.abort();
    }
}
