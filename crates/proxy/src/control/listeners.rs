//! Gateway listeners follow the config, in two phases so a rejected push changes nothing:
//! [`prepare`] binds every new Gateway server port (on the address the operator mapped it
//! to, or an ephemeral loopback port) without touching the running ones; after the new
//! runtime is swapped in, [`commit`] starts serving the new ports, reports them, and closes
//! ports the config no longer has.

use crate::events::Event;
use crate::http::{server::serve_plaintext, Conn, Side};
use crate::state::ProxyState;
use std::sync::Arc;
use tokio::net::TcpListener;
use tracing::info;
use weft_model::{ListenerKind, ProxyConfig};

/// Listeners bound for a config that is not live yet.
pub struct Prepared {
    new: Vec<(String, u32, String, TcpListener)>,
    stale: Vec<String>,
}

/// Binds the config's new gateway ports. Fails (NACK) if one cannot be bound; then every
/// port bound so far is closed again and the running listeners are untouched.
pub async fn prepare(state: &Arc<ProxyState>, config: &ProxyConfig) -> Result<Prepared, String> {
    let tasks = state.gateway_tasks.lock().await;
    let wanted: Vec<_> = config
        .listeners
        .iter()
        .filter(|l| l.kind == ListenerKind::Gateway)
        .collect();
    let stale = tasks
        .keys()
        .filter(|name| !wanted.iter().any(|l| &&l.name == name))
        .cloned()
        .collect();
    let mut new = Vec::new();
    for l in wanted {
        if tasks.contains_key(&l.name) {
            continue;
        }
        let addr = state
            .port_map
            .get(&l.port)
            .copied()
            .unwrap_or_else(|| (state.bind_ip, 0).into());
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot bind gateway port {} on {addr}: {e}", l.port))?;
        new.push((l.name.clone(), l.port, l.route_table.clone(), listener));
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
    for (name, port, table, listener) in prepared.new {
        let local = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        info!(listener = %name, port, address = %local, "gateway listener bound");
        state
            .bound
            .lock()
            .expect("bound poisoned")
            .insert(name.clone(), local.clone());
        tasks.insert(
            name.clone(),
            tokio::spawn(serve_plaintext(
                listener,
                state.clone(),
                Conn::listener(Side::Gateway, &table, u16::try_from(port).ok()),
            )),
        );
        state.emit(Event::Listener {
            name,
            port,
            address: local,
        });
    }
}
