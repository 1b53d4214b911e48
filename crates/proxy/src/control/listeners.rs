//! Gateway listeners and TCP listeners follow the config, in two phases so a rejected push
//! changes nothing: [`prepare`] binds every new Gateway server port (on the address the
//! operator mapped it to, or an ephemeral port on `--bind-ip`) and every new sidecar
//! outbound TCP listener (an ephemeral loopback port) without touching the running ones;
//! after the new runtime is swapped in, [`commit`] starts serving the new ports, reports
//! them, and closes ports the config no longer has.

use crate::events::Event;
use crate::http::{server::serve_plaintext, Conn, Side};
use crate::state::ProxyState;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tracing::info;
use weft_model::{ListenerKind, ProxyConfig};

/// What a bound listener serves.
enum Serves {
    /// HTTP with this route table.
    Http(String),
    /// Opaque TCP, routed by the TCP listener of this name.
    Tcp,
    /// HTTPS: TLS terminated by the listener's chains, then HTTP.
    Https,
}

/// Listeners bound for a config that is not live yet.
pub struct Prepared {
    new: Vec<(String, u32, Serves, TcpListener)>,
    stale: Vec<String>,
}

/// Binds the config's new gateway ports. Fails (NACK) if one cannot be bound; then every
/// port bound so far is closed again and the running listeners are untouched.
pub async fn prepare(state: &Arc<ProxyState>, config: &ProxyConfig) -> Result<Prepared, String> {
    let tasks = state.gateway_tasks.lock().await;
    let wanted: Vec<(&str, u32, Option<&str>, Serves)> = config
        .listeners
        .iter()
        .filter(|l| l.kind == ListenerKind::Gateway)
        .map(|l| {
            let serves = match l.tls {
                Some(_) => Serves::Https,
                None => Serves::Http(l.route_table.clone()),
            };
            (l.name.as_str(), l.port, None, serves)
        })
        .chain(config.tcp_listeners.iter().map(|l| {
            // A sidecar's TCP listeners are for its own app: loopback unless a Sidecar
            // egress listener binds them.
            let bind = match l.kind {
                ListenerKind::Gateway => None,
                ListenerKind::Outbound => Some(l.bind.as_deref().unwrap_or("127.0.0.1:0")),
            };
            (l.name.as_str(), l.port, bind, Serves::Tcp)
        }))
        .collect();
    let stale = tasks
        .keys()
        .filter(|name| !wanted.iter().any(|l| l.0 == name.as_str()))
        .cloned()
        .collect();
    let mut new = Vec::new();
    for (name, port, bind, serves) in wanted {
        if tasks.contains_key(name) {
            continue;
        }
        let addr: SocketAddr = match bind {
            None => state
                .port_map
                .get(&port)
                .copied()
                .unwrap_or_else(|| (state.bind_ip, 0).into()),
            Some(b) => b.parse().map_err(|_| {
                format!("listener {name}: bind address {b:?} is not ip:port (Sidecar egress bind)")
            })?,
        };
        let listener = crate::tcp::bind(addr)
            .map_err(|e| format!("cannot bind listener {name} (port {port}) on {addr}: {e}"))?;
        new.push((name.to_string(), port, serves, listener));
    }
    Ok(Prepared { new, stale })
}

/// Serves the prepared listeners and closes the stale ones (call after the swap).
pub async fn commit(state: &Arc<ProxyState>, prepared: Prepared) {
    let mut tasks = state.gateway_tasks.lock().await;
    for name in prepared.stale {
        if let Some(task) = tasks.remove(&name) {
            task.abort();
        }
        state.bound.lock().expect("bound poisoned").remove(&name);
        info!(listener = %name, "gateway listener closed");
    }
    for (name, port, serves, listener) in prepared.new {
        let local = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        info!(listener = %name, port, address = %local, "listener bound");
        state
            .bound
            .lock()
            .expect("bound poisoned")
            .insert(name.clone(), local.clone());
        let https = matches!(serves, Serves::Https);
        let task = match serves {
            Serves::Http(table) => tokio::spawn(serve_plaintext(
                listener,
                state.clone(),
                Conn::listener(Side::Gateway, &table, u16::try_from(port).ok()),
            )),
            Serves::Https => tokio::spawn(crate::gateway_tls::serve(
                listener,
                state.clone(),
                name.clone(),
                port,
            )),
            Serves::Tcp => tokio::spawn(crate::tcp::outbound::serve(
                listener,
                state.clone(),
                name.clone(),
            )),
        };
        tasks.insert(name.clone(), task);
        state.emit(Event::Listener {
            name,
            port,
            address: local,
            https,
        });
    }
}
