//! [`Custom`]: a proxy started with `ProxyOptions` the test edits (bind addresses,
//! connection limit), for what [`super::Proxy`]'s builder does not expose.

use super::config::{service_host, Config};
use super::control::{FakeControl, TRUST_DOMAIN};
use super::proxy::NAMESPACE;
use super::within;
use std::collections::HashMap;
use std::net::SocketAddr;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use weft_model::{Endpoint, Inbound, Listener, ListenerKind, ProxyConfig, RouteTable};
use weft_proxy::{Event, EventSink, ProxyOptions, Role};

/// A running proxy with hand-picked options. Dropping it shuts it down.
pub struct Custom {
    pub workload: String,
    pub identity: String,
    pub admin: SocketAddr,
    pub inbound: Option<SocketAddr>,
    pub outbound: Option<SocketAddr>,
    /// The merged metrics page, when the options asked for one.
    pub merged_metrics: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    _events: mpsc::UnboundedReceiver<Event>,
}

/// The options [`super::Proxy`] starts a sidecar with, for `edit` to change.
pub fn sidecar_options(control: &FakeControl, workload: &str) -> ProxyOptions {
    ProxyOptions {
        role: Role::Sidecar,
        workload: workload.into(),
        namespace: NAMESPACE.into(),
        control: control.target(),
        token: None,
        app: None,
        bind_ip: [127, 0, 0, 1].into(),
        port_map: HashMap::new(),
        admin_listen: None,
        inbound_listen: None,
        outbound_listen: None,
        max_connections: weft_proxy::state::MAX_DOWNSTREAM_CONNECTIONS,
        telemetry: true,
        merged_metrics: None,
        spiffe_socket: None,
        workload_api_socket: None,
        credentials_dir: None,
        dns_server: None,
        events: EventSink::Stdout,
    }
}

impl Custom {
    /// Starts a proxy with `opts` (its event sink replaced) and waits for `Ready`.
    pub async fn start(mut opts: ProxyOptions) -> Custom {
        let (tx, mut events) = mpsc::unbounded_channel();
        opts.events = EventSink::Channel(tx);
        let workload = opts.workload.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let mut task = tokio::spawn(weft_proxy::run(opts, async move {
            let _ = stopped.await;
        }));
        let ready = within(&format!("proxy {workload} to be ready"), async {
            while let Some(e) = events.recv().await {
                if let e @ Event::Ready { .. } = e {
                    return e;
                }
            }
            match (&mut task).await {
                Ok(Ok(())) => panic!("proxy {workload} returned before Ready"),
                Ok(Err(e)) => panic!("proxy {workload} failed: {e:#}"),
                Err(e) => panic!("proxy {workload} task failed: {e}"),
            }
        })
        .await;
        let Event::Ready {
            identity,
            admin,
            inbound,
            outbound,
            merged_metrics,
            ..
        } = ready
        else {
            unreachable!()
        };
        let parse = |a: &str| a.parse::<SocketAddr>().expect("event addresses parse");
        Custom {
            workload,
            identity,
            admin: parse(&admin),
            inbound: inbound.as_deref().map(parse),
            outbound: outbound.as_deref().map(parse),
            merged_metrics: merged_metrics.as_deref().map(parse),
            stop: Some(stop),
            task: Some(task),
            _events: events,
        }
    }

    pub fn outbound(&self) -> SocketAddr {
        self.outbound.expect("a sidecar has an outbound listener")
    }

    pub fn inbound(&self) -> SocketAddr {
        self.inbound.expect("a sidecar has an inbound listener")
    }

    /// What [`Config::sidecar`] builds for a harness [`super::Proxy`].
    pub fn sidecar_config(&self) -> Config {
        let mut c = ProxyConfig {
            inbound: Some(Inbound {
                workload: self.workload.clone(),
                namespace: NAMESPACE.into(),
                identity: self.identity.clone(),
                trust_domain: TRUST_DOMAIN.into(),
                services: vec![service_host(&self.workload, NAMESPACE)],
                version: None,
                app_http2: false,
                tcp_ports: vec![],
                // The harness's sidecars are STRICT unless a test says otherwise.
                mtls: weft_model::mtls::InboundMtls {
                    mode: weft_model::mtls::InboundMode::Strict,
                    ports: Default::default(),
                },
                ports: vec![],
                limits: Default::default(),
                max_requests: None,
                app_ports: Default::default(),
            }),
            ..Default::default()
        };
        c.listeners.push(Listener {
            name: "outbound".into(),
            kind: ListenerKind::Outbound,
            port: 0,
            route_table: "outbound".into(),
            tls: None,
        });
        c.routes.insert("outbound".into(), RouteTable::default());
        Config(c)
    }

    /// The endpoint this sidecar offers to peers.
    pub fn endpoint(&self) -> Endpoint {
        Endpoint {
            address: self.inbound().to_string(),
            identity: self.identity.clone(),
            workload: self.workload.clone(),
            version: None,
            meta: Default::default(),
            plaintext: false,
            priority: 0,
            sni: None,
        }
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

impl Drop for Custom {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
