//! [`Proxy`]: a `weft_proxy::run` in a task of the test's runtime, with its addresses.

use super::control::FakeControl;
use super::within;
use std::collections::HashMap;
use std::net::SocketAddr;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use weft_proxy::{Event, EventSink, ProxyOptions, Role};

/// Namespace of harness workloads unless a test picks another.
pub const NAMESPACE: &str = "test";

/// How to start a [`Proxy`].
pub struct ProxyBuilder {
    role: Role,
    workload: String,
    namespace: String,
    app: Option<SocketAddr>,
    token: Option<String>,
    port_map: HashMap<u32, SocketAddr>,
    workload_api: Option<std::path::PathBuf>,
    spiffe_socket: Option<std::path::PathBuf>,
    credentials_dir: Option<std::path::PathBuf>,
}

impl ProxyBuilder {
    /// Resolve Gateway `credentialName`s in `dir`.
    pub fn credentials_dir(mut self, dir: &std::path::Path) -> Self {
        self.credentials_dir = Some(dir.to_path_buf());
        self
    }

    /// Take the identity from the SPIFFE Workload API at `path` (a SPIRE agent's).
    pub fn spiffe_socket(mut self, path: &std::path::Path) -> Self {
        self.spiffe_socket = Some(path.to_path_buf());
        self
    }

    /// Serve the SPIFFE Workload API on a Unix socket at `path`.
    pub fn workload_api(mut self, path: &std::path::Path) -> Self {
        self.workload_api = Some(path.to_path_buf());
        self
    }

    pub fn namespace(mut self, ns: &str) -> Self {
        self.namespace = ns.into();
        self
    }

    /// The local app this sidecar's inbound side forwards to.
    pub fn app(mut self, addr: SocketAddr) -> Self {
        self.app = Some(addr);
        self
    }

    /// The control-plane token the proxy sends.
    pub fn token(mut self, token: &str) -> Self {
        self.token = Some(token.into());
        self
    }

    /// A fixed bind for a gateway port (default: an ephemeral loopback port).
    pub fn map_port(mut self, port: u32, addr: SocketAddr) -> Self {
        self.port_map.insert(port, addr);
        self
    }

    /// Starts the proxy against `control` and waits for its `Ready` event (certificate
    /// issued, admin/inbound/outbound listeners bound; no config yet).
    pub async fn start(self, control: &FakeControl) -> Proxy {
        let workload = self.workload.clone();
        self.try_start(control)
            .await
            .unwrap_or_else(|e| panic!("proxy {workload} exited before it was ready: {e}"))
    }

    /// Like [`ProxyBuilder::start`], but returns `run`'s error if the proxy stops before
    /// it is ready (e.g. the control plane refused its certificate request).
    pub async fn try_start(self, control: &FakeControl) -> Result<Proxy, String> {
        let (tx, mut events) = mpsc::unbounded_channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let opts = ProxyOptions {
            role: self.role,
            workload: self.workload.clone(),
            namespace: self.namespace.clone(),
            control: control.target(),
            token: self.token,
            app: self.app.map(|a| a.to_string()),
            bind_ip: [127, 0, 0, 1].into(),
            port_map: self.port_map,
            admin_listen: None,
            inbound_listen: None,
            outbound_listen: None,
            max_connections: weft_proxy::state::MAX_DOWNSTREAM_CONNECTIONS,
            telemetry: true,
            merged_metrics: None,
            spiffe_socket: self.spiffe_socket,
            workload_api_socket: self.workload_api,
            credentials_dir: self.credentials_dir,
            dns_server: None,
            events: EventSink::Channel(tx),
        };
        let mut task = tokio::spawn(weft_proxy::run(opts, async move {
            let _ = stopped.await;
        }));
        let what = format!("proxy {} to be ready", self.workload);
        let ready = within(&what, async {
            // `run` owns the event sender: the channel closes only when it has returned.
            while let Some(e) = events.recv().await {
                if let e @ Event::Ready { .. } = e {
                    return Ok(e);
                }
            }
            Err(match (&mut task).await {
                Ok(Ok(())) => "run returned Ok before Ready".to_string(),
                Ok(Err(e)) => format!("{e:#}"),
                Err(e) => format!("the proxy task failed: {e}"),
            })
        })
        .await?;
        let Event::Ready {
            identity,
            admin,
            inbound,
            outbound,
            ..
        } = ready
        else {
            unreachable!()
        };
        let parse = |a: &str| a.parse::<SocketAddr>().expect("event addresses parse");
        Ok(Proxy {
            workload: self.workload,
            namespace: self.namespace,
            identity,
            admin: parse(&admin),
            inbound: inbound.as_deref().map(parse),
            outbound: outbound.as_deref().map(parse),
            events,
            listeners: HashMap::new(),
            connected: 0,
            unserved: Vec::new(),
            stop: Some(stop),
            task: Some(task),
        })
    }
}

/// A running in-process proxy. Dropping it shuts it down (`run`'s shutdown future
/// resolves and it aborts its listeners and config stream).
pub struct Proxy {
    pub workload: String,
    pub namespace: String,
    /// The SPIFFE id of its certificate.
    pub identity: String,
    pub admin: SocketAddr,
    /// Sidecars only.
    pub inbound: Option<SocketAddr>,
    pub outbound: Option<SocketAddr>,
    events: mpsc::UnboundedReceiver<Event>,
    /// Gateway listeners reported so far: name -> address.
    listeners: HashMap<String, SocketAddr>,
    connected: u32,
    /// `tls_server_unserved` events seen so far: (server, error).
    unserved: Vec<(String, String)>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Proxy {
    /// A sidecar for `workload` (namespace [`NAMESPACE`]).
    pub fn sidecar(workload: &str) -> ProxyBuilder {
        ProxyBuilder::new(Role::Sidecar, workload)
    }

    /// A gateway for `workload` (namespace [`NAMESPACE`]).
    pub fn gateway(workload: &str) -> ProxyBuilder {
        ProxyBuilder::new(Role::Gateway, workload)
    }

    /// The outbound listener (sidecars).
    pub fn outbound(&self) -> SocketAddr {
        self.outbound.expect("a sidecar has an outbound listener")
    }

    /// The mTLS inbound listener (sidecars).
    pub fn inbound(&self) -> SocketAddr {
        self.inbound.expect("a sidecar has an inbound listener")
    }

    /// Waits for the gateway listener `name` (e.g. `gateway_80`) to be bound and returns
    /// its address. Listeners are reported before the push that adds them is ACKed.
    pub async fn listener(&mut self, name: &str) -> SocketAddr {
        if let Some(a) = self.listeners.get(name) {
            return *a;
        }
        let what = format!("proxy {} to bind listener {name}", self.workload);
        within(&what, async {
            loop {
                self.next_event().await;
                if let Some(a) = self.listeners.get(name) {
                    return *a;
                }
            }
        })
        .await
    }

    /// Waits for the proxy's `n`-th `Connected` event (config stream established).
    pub async fn connected(&mut self, n: u32) {
        let what = format!("proxy {} to connect (#{n})", self.workload);
        within(&what, async {
            while self.connected < n {
                self.next_event().await;
            }
        })
        .await
    }

    async fn next_event(&mut self) {
        match self.events.recv().await {
            Some(Event::Listener { name, address, .. }) => {
                let a = address.parse().expect("listener address parses");
                self.listeners.insert(name, a);
            }
            Some(Event::Connected { .. }) => self.connected += 1,
            Some(Event::TlsServerUnserved { server, error, .. }) => {
                self.unserved.push((server, error))
            }
            Some(
                Event::Ready { .. } | Event::ConfigApplied { .. } | Event::PushRejected { .. },
            ) => {}
            None => panic!("proxy {} stopped", self.workload),
        }
    }

    /// The error of the first `tls_server_unserved` event for `server` (waits for it).
    pub async fn unserved(&mut self, server: &str) -> String {
        within(
            &format!("TLS server {server} to be reported unserved"),
            async {
                loop {
                    if let Some((_, e)) = self.unserved.iter().find(|(s, _)| s == server) {
                        return e.clone();
                    }
                    self.next_event().await;
                }
            },
        )
        .await
    }

    /// Stops the proxy and waits for `run` to return.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let r = within("the proxy to stop", task).await;
            r.expect("proxy task panicked").expect("proxy run failed");
        }
    }
}

impl ProxyBuilder {
    fn new(role: Role, workload: &str) -> ProxyBuilder {
        ProxyBuilder {
            role,
            workload: workload.into(),
            namespace: NAMESPACE.into(),
            app: None,
            token: None,
            port_map: HashMap::new(),
            workload_api: None,
            spiffe_socket: None,
            credentials_dir: None,
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
