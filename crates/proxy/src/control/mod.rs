//! Talking to the control plane: the config stream (say hello, apply each push — build
//! the active config, bind new gateway ports, swap atomically — answer ACK or NACK) and
//! the certificate (`certs`). On any stream failure the proxy keeps serving its last good
//! config and reconnects with backoff.

pub mod certs;
pub mod listeners;

use crate::config::ActiveConfig;
use crate::events::Event;
use crate::state::ProxyState;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tracing::{info, warn};
use weft_protocol::{pb, ControlClient};

/// Where the control plane is and how to authenticate to it.
#[derive(Debug, Clone)]
pub struct ControlTarget {
    pub addr: String,
    pub token: Option<String>,
}

/// Connects to the control plane, retrying with backoff until it answers.
pub async fn connect(control: &ControlTarget) -> ControlClient {
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

/// Runs forever: (re)connects to the control plane and applies pushes.
pub async fn run(state: Arc<ProxyState>, control: ControlTarget) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match session(&state, &control, &mut backoff).await {
            Ok(()) => {
                info!(control = %control.addr, "config stream closed by the control plane; reconnecting")
            }
            Err(e) => {
                warn!(control = %control.addr, error = %e, "config stream failed; serving last good config and reconnecting")
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
        if state.config.load().version.is_empty() {
            backoff = backoff.min(Duration::from_millis(500));
        }
    }
}

async fn session(
    state: &Arc<ProxyState>,
    control: &ControlTarget,
    backoff: &mut Duration,
) -> anyhow::Result<()> {
    let mut client = weft_protocol::auth::connect(&control.addr, control.token.as_deref())
        .await
        .map_err(anyhow::Error::msg)?;
    let (tx, rx) = mpsc::channel(8);
    tx.send(pb::ProxyMessage {
        msg: Some(pb::proxy_message::Msg::Hello(pb::Node {
            config_version: state.config.load().version.clone(),
            ..state.node.clone()
        })),
    })
    .await?;
    let mut pushes = client
        .stream_config(ReceiverStream::new(rx))
        .await?
        .into_inner();
    info!(control = %control.addr, "connected to control plane");
    // A working session resets the backoff: the next outage starts with quick retries.
    *backoff = Duration::from_millis(100);
    state.emit(Event::Connected {
        control: control.addr.clone(),
    });
    // What this stream has delivered: deltas apply on top of it.
    let mut received = weft_protocol::delta::Received::default();
    while let Some(push) = pushes.message().await? {
        let applied = match received.apply(&push) {
            Ok(None) => continue, // more messages of this version follow
            Ok(Some(config)) => apply(state, &push.version, config).await,
            Err(e) => Err(e),
        };
        let ack = match applied {
            Ok(()) => {
                info!(version = %push.version, "config applied");
                state.emit(Event::ConfigApplied {
                    version: push.version.clone(),
                });
                pb::Ack {
                    version: push.version.clone(),
                    accepted: true,
                    error: String::new(),
                    listeners: gateway_ports(state),
                }
            }
            Err(error) => {
                warn!(version = %push.version, %error, "config rejected (NACK); keeping the last good config");
                state.emit(Event::PushRejected {
                    version: push.version.clone(),
                    error: error.clone(),
                });
                pb::Ack {
                    version: push.version.clone(),
                    accepted: false,
                    error,
                    listeners: gateway_ports(state),
                }
            }
        };
        tx.send(pb::ProxyMessage {
            msg: Some(pb::proxy_message::Msg::Ack(ack)),
        })
        .await?;
    }
    Ok(())
}

/// Where each Gateway server port of the live config is served (`port` -> `host:port`; an
/// unspecified bind IP is reported as loopback): the control plane makes the gateway an
/// endpoint of the services that select it. Empty for sidecars.
fn gateway_ports(state: &ProxyState) -> std::collections::HashMap<u32, String> {
    let cfg = state.config.load();
    let bound = state.bound.lock().expect("bound poisoned");
    let gateway = |kind| kind == weft_model::ListenerKind::Gateway;
    let http = cfg.config.listeners.iter().filter(|l| gateway(l.kind));
    let tcp = cfg.config.tcp_listeners.iter().filter(|l| gateway(l.kind));
    http.map(|l| (l.port, &l.name))
        .chain(tcp.map(|l| (l.port, &l.name)))
        .filter_map(|(port, name)| {
            let addr: std::net::SocketAddr = bound.get(name)?.parse().ok()?;
            let ip = match addr.ip() {
                ip if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
                ip => ip,
            };
            Some((port, std::net::SocketAddr::new(ip, addr.port()).to_string()))
        })
        .collect()
}

async fn apply(
    state: &Arc<ProxyState>,
    version: &str,
    config: weft_model::ProxyConfig,
) -> Result<(), String> {
    let previous = state.config.load_full();
    let principal = state.identity_uri();
    let who = crate::config::Who {
        workload: &state.node.workload,
        namespace: &state.node.namespace,
        principal: &principal,
        metrics: &state.metrics,
    };
    let mut active = ActiveConfig::build(version, config, &previous, &who)?;
    active.telemetry = state
        .observe
        .compile(&active.config.telemetry, &state.node.id)?;
    // Bind new gateway ports first (a failure rejects the push and changes nothing) ...
    let listeners = listeners::prepare(state, &active.config).await?;
    for n in &active.config.not_enforced {
        if !previous.config.not_enforced.contains(n) {
            warn!(resource = %n.resource, location = %n.location, what = %n.what, "configured but not enforced yet");
        }
    }
    let live: HashSet<(String, String)> = active
        .config
        .clusters
        .values()
        .flat_map(|c| {
            c.endpoints
                .iter()
                .map(|e| (e.address.clone(), e.tls_identity().to_string()))
        })
        .collect();
    let [client, server] = state.metrics.set_rules(
        active.telemetry.client.metric_rules.clone(),
        active.telemetry.server.metric_rules.clone(),
    );
    // Requests carry the proxy's one copy of equal overrides, so their series stay cached.
    for (side, rules) in [
        (&mut active.telemetry.client, client),
        (&mut active.telemetry.server, server),
    ] {
        if let Some(s) = Arc::get_mut(side) {
            s.metric_rules = rules;
        }
    }
    state.config.store(Arc::new(active));
    state.metrics.config_applied(version);
    // ... and serve them only once their routes are live.
    listeners::commit(state, listeners).await;
    crate::gateway_tls::report_unserved(state);
    state.pool.retain(&live);
    Ok(())
}
