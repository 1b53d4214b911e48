//! weft's data plane: a sidecar or gateway proxy. Gets its certificate (CSR to the control
//! plane's CA) and its config (gRPC stream), then serves: plaintext HTTP listeners toward
//! the mesh (gateway ports, sidecar outbound), TCP listeners (gateway TCP servers, one per
//! service TCP port on a sidecar), the mTLS inbound listener (sidecars), the
//! admin/metrics endpoint (and Istio's merged metrics page), and optionally the SPIFFE Workload API for its app (a Unix socket). Lifecycle events go to stdout as JSON lines for supervisors.
#![forbid(unsafe_code)]

pub mod admin;
pub mod authn;
pub mod authz;
pub mod body;
pub mod config;
pub mod control;
pub mod events;
pub mod gateway_tls;
pub mod http;
pub mod merged;
pub mod reply;
pub mod route;
pub mod state;
pub mod stats;
pub mod tcp;
pub mod telemetry;
pub mod tls;
pub mod upstream;
pub mod workload_api;

use anyhow::Context;
use arc_swap::ArcSwap;
use state::ProxyState;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tracing::info;
use weft_protocol::pb;

pub use control::ControlTarget;
pub use events::{Event, EventSink};
pub use telemetry::PEER_HEADER;

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
    /// Downstream connections served at once, all listeners together (Envoy's overload
    /// manager `global_downstream_max_connections` role).
    pub max_connections: usize,
    /// Take this workload's identity from the SPIFFE Workload API at this Unix socket (a
    /// SPIRE agent's) instead of the control plane's CA.
    pub spiffe_socket: Option<std::path::PathBuf>,
    /// Serve the SPIFFE Workload API (this workload's X.509-SVID) on a Unix socket here.
    pub workload_api_socket: Option<std::path::PathBuf>,
    /// Record request metrics (off only to measure what telemetry costs).
    pub telemetry: bool,
    /// Serve Istio's merged metrics page (proxy + app, the agent's 15020) here.
    pub merged_metrics: Option<merged::MergedMetrics>,
    /// Where Gateway `credentialName`s are: one folder per name (`gateway_tls::configs`).
    pub credentials_dir: Option<std::path::PathBuf>,
    /// The DNS server names of services outside the mesh are resolved with; none = the
    /// system's (`/etc/resolv.conf`, `/etc/hosts`).
    pub dns_server: Option<SocketAddr>,
    /// Where lifecycle events go: stdout JSON lines (for supervisors) or a channel (for a
    /// proxy running inside a test).
    pub events: EventSink,
}

/// Runs a proxy until `shutdown` resolves.
pub async fn run(opts: ProxyOptions, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    weft_identity::install_default_provider();
    if let Some(server) = opts.dns_server {
        upstream::egress::dns::use_server(server);
    }
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
    let (creds, svids) = match &opts.spiffe_socket {
        Some(path) => {
            let (creds, svids) = workload_api::source::first(path)
                .await
                .context("getting this workload's SVID from the SPIFFE Workload API")?;
            info!(identity = %creds.identity.spiffe_id(), socket = %path.display(), "SVID from the Workload API");
            (creds, Some((path.clone(), svids)))
        }
        None => {
            let mut client = control::connect(&control).await;
            let creds = control::certs::fetch(&mut client, &node)
                .await
                .context("getting this workload's certificate")?;
            info!(identity = %creds.identity.spiffe_id(), "certificate issued");
            (creds, None)
        }
    };
    let tls = tls::TlsState::new(creds);

    // The inbound listener follows --bind-ip; the plaintext outbound listener and the
    // admin port stay on loopback unless their own address is given explicitly.
    let any: SocketAddr = (opts.bind_ip, 0).into();
    let loopback: SocketAddr = (std::net::Ipv4Addr::LOCALHOST, 0).into();
    let bind = |a: Option<SocketAddr>, default: SocketAddr, what: &'static str| async move {
        let a = a.unwrap_or(default);
        tcp::bind(a).with_context(|| format!("binding the {what} listener on {a}"))
    };
    let admin = bind(opts.admin_listen, loopback, "admin").await?;
    let (inbound, outbound) = match opts.role {
        Role::Sidecar => (
            Some(bind(opts.inbound_listen, any, "inbound").await?),
            Some(bind(opts.outbound_listen, loopback, "outbound").await?),
        ),
        Role::Gateway => (None, None),
    };
    let addr = |l: &Option<TcpListener>| {
        l.as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.to_string())
    };
    node.inbound_addr = addr(&inbound).unwrap_or_default();
    let merged = match &opts.merged_metrics {
        Some(m) => Some((
            bind(Some(m.listen), loopback, "merged metrics").await?,
            m.clone(),
        )),
        None => None,
    };
    let merged_addr = merged
        .as_ref()
        .and_then(|(l, _)| l.local_addr().ok())
        .map(|a| a.to_string());
    // Bound before Ready: an app started after its sidecar finds the socket there.
    let workload_api = match &opts.workload_api_socket {
        Some(path) => Some(workload_api::Endpoint::bind(path).await?),
        None => None,
    };
    let shared = Arc::new(ProxyState {
        node,
        config: ArcSwap::from_pointee(config::ActiveConfig::default()),
        metrics: Arc::new(telemetry::Metrics::with_recording(opts.telemetry)),
        observe: Arc::default(),
        pool: Arc::new(upstream::PeerPool::new(tls.clone())),
        tls: tls.clone(),
        app_addr: opts.app.clone(),
        app: upstream::app::AppClient::default(),
        replay_budget: upstream::ReplayBudget::new(state::REPLAY_BUDGET_BYTES),
        connections: state::ConnectionLimit::new(opts.max_connections),
        bound: Mutex::new(BTreeMap::new()),
        gateway_tasks: tokio::sync::Mutex::new(HashMap::new()),
        port_map: opts.port_map.clone(),
        bind_ip: opts.bind_ip,
        events: opts.events.clone(),
        gateway_tls: gateway_tls::TlsConfigs::new(opts.credentials_dir.clone()),
    });
    shared
        .metrics
        .certificate(shared.tls.current.load().identity.not_after(), false);
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
        merged_metrics: merged_addr,
    };
    if let Some((l, m)) = merged {
        tasks.push(tokio::spawn(merged::serve(l, shared.clone(), m)));
    }
    if let Some(l) = inbound {
        tasks.push(tokio::spawn(http::inbound::serve(l, shared.clone())));
    }
    if let Some(l) = outbound {
        let conn = http::Conn::listener(http::Side::Outbound, "outbound", None);
        tasks.push(tokio::spawn(http::server::serve_plaintext(
            l,
            shared.clone(),
            conn,
        )));
    }
    let (closing, closing_rx) = tokio::sync::watch::channel(false);
    let workload_api = workload_api.map(|api| tokio::spawn(api.serve(tls.clone(), closing_rx)));
    shared.emit(ready);
    tasks.push(tokio::spawn(control::run(shared.clone(), control.clone())));
    tasks.push(match svids {
        Some((path, svids)) => {
            tokio::spawn(workload_api::source::follow(shared.clone(), path, svids))
        }
        None => tokio::spawn(control::certs::renew(shared.clone(), control)),
    });
    shutdown.await;
    info!("shutting down");
    // Workload API streams end, its connections close and the socket file goes (bounded:
    // a client that never lets its connection go is cut off by the abort).
    closing.send_replace(true);
    if let Some(mut api) = workload_api {
        if tokio::time::timeout(std::time::Duration::from_secs(1), &mut api)
            .await
            .is_err()
        {
            api.abort();
        }
    }
    for t in tasks {
        t.abort();
    }
    for (_, t) in shared.gateway_tasks.lock().await.drain() {
        t.abort();
    }
    Ok(())
}
