//! weft's data plane: a sidecar or gateway proxy. Gets its certificate (CSR to the control
//! plane's CA) and its config (gRPC stream), then serves: plaintext HTTP listeners toward
//! the mesh (gateway ports, sidecar outbound), the mTLS inbound listener (sidecars), and
//! the admin/metrics endpoint. Lifecycle events go to stdout as JSON lines for supervisors.
#![forbid(unsafe_code)]

pub mod admin;
pub mod forward;
pub mod inbound;
pub mod lb;
pub mod listeners;
pub mod metrics;
pub mod outbound;
mod replay;
pub mod rewrite;
pub mod runtime;
pub mod serve;
pub mod tls;
pub mod upstream;
pub mod xds;

use anyhow::Context;
use arc_swap::ArcSwap;
use http::{Response, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing::{info, warn};
use upstream::Body;
use weft_protocol::{pb, ControlClient};

/// Carries source workload metadata from the calling proxy to the called one (the role of
/// Istio's `x-envoy-peer-metadata`); removed before the request reaches the app.
pub const PEER_HEADER: &str = "x-weft-peer";

/// Sidecar or gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Sidecar,
    Gateway,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Sidecar => "sidecar",
            Role::Gateway => "gateway",
        }
    }
}

/// How to run a proxy.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    pub role: Role,
    pub workload: String,
    pub namespace: String,
    /// Control plane gRPC address, `host:port`.
    pub control: String,
    /// Bearer token the control plane requires (`--token-file`), if any.
    pub token: Option<String>,
    /// The local app (sidecars): `host:port`.
    pub app: Option<String>,
    /// IP all listeners bind on (port 0 unless mapped).
    pub bind_ip: IpAddr,
    /// Fixed binds for gateway ports (`80 -> 0.0.0.0:8080`); others get an ephemeral port.
    pub port_map: HashMap<u32, SocketAddr>,
    /// Fixed addresses for the admin, inbound and outbound listeners (a restarted proxy
    /// comes back on the same ones); `None` = `bind_ip:0`.
    pub admin_listen: Option<SocketAddr>,
    pub inbound_listen: Option<SocketAddr>,
    pub outbound_listen: Option<SocketAddr>,
    /// Where lifecycle events go: stdout JSON lines (for supervisors) or a channel (for a
    /// proxy running inside a test).
    pub events: EventSink,
}

/// Where a proxy reports its lifecycle events.
#[derive(Debug, Clone, Default)]
pub enum EventSink {
    /// One JSON line per event on stdout.
    #[default]
    Stdout,
    /// Sent on a channel (in-process proxies).
    Channel(tokio::sync::mpsc::UnboundedSender<Event>),
}

impl EventSink {
    fn send(&self, e: Event) {
        match self {
            EventSink::Stdout => {
                println!("{}", serde_json::to_string(&e).expect("events serialize"))
            }
            EventSink::Channel(tx) => {
                let _ = tx.send(e);
            }
        }
    }
}

/// A lifecycle event, printed to stdout as one JSON line.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Ready {
        role: String,
        workload: String,
        namespace: String,
        identity: String,
        admin: String,
        inbound: Option<String>,
        outbound: Option<String>,
    },
    Listener {
        name: String,
        port: u32,
        address: String,
    },
    Connected {
        control: String,
    },
}

/// State shared by every listener and task of one proxy.
pub struct Shared {
    pub node: pb::Node,
    pub runtime: ArcSwap<runtime::Runtime>,
    pub metrics: metrics::Metrics,
    pub pool: upstream::PeerPool,
    pub tls: Arc<tls::TlsState>,
    pub app_addr: Option<String>,
    pub app_client: Client<HttpConnector, Body>,
    /// HTTP/2 prior knowledge to the app (services with `GRPC`/`HTTP2` ports).
    pub app_client_h2: Client<HttpConnector, Body>,
    pub bound: Mutex<BTreeMap<String, String>>,
    pub gateway_tasks: tokio::sync::Mutex<HashMap<String, JoinHandle<()>>>,
    pub port_map: HashMap<u32, SocketAddr>,
    pub bind_ip: IpAddr,
    pub events: EventSink,
}

impl Shared {
    /// This proxy's SPIFFE id.
    pub fn identity_uri(&self) -> String {
        self.tls.current.load().uri.clone()
    }

    /// The `version` label of this workload, from the config.
    pub fn own_version(&self) -> String {
        self.runtime
            .load()
            .config
            .inbound
            .as_ref()
            .and_then(|i| i.version.clone())
            .unwrap_or_else(|| "unknown".into())
    }

    /// Prints a lifecycle event line.
    pub fn emit(&self, e: Event) {
        self.events.send(e);
    }
}

/// A locally generated response (Envoy-style plain text body).
pub fn local_response(status: StatusCode, msg: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain")
        .header("server", "weft")
        .body(outbound::full(format!("{msg}\n")))
        .expect("static response parts are valid")
}

/// Where the control plane is and how to authenticate to it.
#[derive(Debug, Clone)]
pub struct ControlTarget {
    pub addr: String,
    pub token: Option<String>,
}

async fn connect_control(control: &ControlTarget) -> ControlClient {
    let mut backoff = Duration::from_millis(50);
    loop {
        match weft_protocol::auth::connect(&control.addr, control.token.as_deref()).await {
            Ok(c) => return c,
            Err(e) => {
                warn!(control = %control.addr, error = %e, "control plane not reachable yet; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// Runs a proxy until `shutdown` resolves.
pub async fn run(opts: ProxyOptions, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    weft_identity::install_default_provider();
    let mut node = pb::Node {
        id: format!(
            "{}~{}.{}",
            opts.role.as_str(),
            opts.workload,
            opts.namespace
        ),
        role: opts.role.as_str().into(),
        workload: opts.workload.clone(),
        namespace: opts.namespace.clone(),
        inbound_addr: String::new(),
        build_version: env!("CARGO_PKG_VERSION").into(),
        config_version: String::new(),
    };
    let control = ControlTarget {
        addr: opts.control.clone(),
        token: opts.token.clone(),
    };
    let mut client = connect_control(&control).await;
    let creds = tls::fetch(&mut client, &node)
        .await
        .context("getting this workload's certificate")?;
    info!(identity = %creds.identity.spiffe_id(), "certificate issued");
    let tls = tls::TlsState::new(creds);

    let any: SocketAddr = (opts.bind_ip, 0).into();
    let bind = |a: Option<SocketAddr>, what: &'static str| async move {
        let a = a.unwrap_or(any);
        TcpListener::bind(a)
            .await
            .with_context(|| format!("binding the {what} listener on {a}"))
    };
    let admin = bind(opts.admin_listen, "admin").await?;
    let (inbound, outbound) = match opts.role {
        Role::Sidecar => (
            Some(bind(opts.inbound_listen, "inbound").await?),
            Some(bind(opts.outbound_listen, "outbound").await?),
        ),
        Role::Gateway => (None, None),
    };
    let addr = |l: &Option<TcpListener>| {
        l.as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.to_string())
    };
    node.inbound_addr = addr(&inbound).unwrap_or_default();
    let shared = Arc::new(Shared {
        node,
        runtime: ArcSwap::from_pointee(runtime::Runtime::default()),
        metrics: metrics::Metrics::new(),
        pool: upstream::PeerPool::new(tls.clone()),
        tls: tls.clone(),
        app_addr: opts.app.clone(),
        app_client: Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build_http(),
        app_client_h2: Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build_http(),
        bound: Mutex::new(BTreeMap::new()),
        gateway_tasks: tokio::sync::Mutex::new(HashMap::new()),
        port_map: opts.port_map.clone(),
        bind_ip: opts.bind_ip,
        events: opts.events.clone(),
    });
    let admin_addr = admin.local_addr()?.to_string();
    let mut tasks = vec![tokio::spawn(admin::serve(admin, shared.clone()))];
    let ready = Event::Ready {
        role: opts.role.as_str().into(),
        workload: opts.workload.clone(),
        namespace: opts.namespace.clone(),
        identity: shared.identity_uri(),
        admin: admin_addr,
        inbound: addr(&inbound),
        outbound: addr(&outbound),
    };
    if let Some(l) = inbound {
        tasks.push(tokio::spawn(inbound::serve(l, shared.clone())));
    }
    if let Some(l) = outbound {
        tasks.push(tokio::spawn(outbound::serve(
            l,
            shared.clone(),
            "outbound".into(),
        )));
    }
    shared.emit(ready);
    tasks.push(tokio::spawn(xds::run(shared.clone(), control.clone())));
    tasks.push(tokio::spawn(renew(shared.clone(), control)));
    shutdown.await;
    info!("shutting down");
    for t in tasks {
        t.abort();
    }
    for (_, t) in shared.gateway_tasks.lock().await.drain() {
        t.abort();
    }
    Ok(())
}

/// Renews the certificate at half its lifetime; on failure keeps the current one and retries.
async fn renew(shared: Arc<Shared>, control: ControlTarget) {
    loop {
        let not_after = shared.tls.current.load().identity.not_after();
        tokio::time::sleep(tls::renew_after(not_after)).await;
        let mut client = connect_control(&control).await;
        match tls::fetch(&mut client, &shared.node).await {
            Ok(creds) => {
                info!(identity = %creds.identity.spiffe_id(), "certificate renewed");
                shared.tls.current.store(Arc::new(creds));
            }
            Err(e) => {
                warn!(error = %e, "certificate renewal failed; keeping the current certificate")
            }
        }
    }
}
