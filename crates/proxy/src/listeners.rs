//! Gateway listeners follow the config: a Gateway server port that appears is bound (on the
//! address the operator mapped it to, or an ephemeral loopback port) and reported; one that
//! disappears is closed.

use crate::{Event, Shared};
use std::sync::Arc;
use tokio::net::TcpListener;
use tracing::info;
use weft_model::{ListenerKind, ProxyConfig};

/// Binds new gateway ports and closes removed ones. Fails (NACK) if a port cannot be bound.
pub async fn reconcile(shared: &Arc<Shared>, config: &ProxyConfig) -> Result<(), String> {
    let mut tasks = shared.gateway_tasks.lock().await;
    let wanted: Vec<_> = config
        .listeners
        .iter()
        .filter(|l| l.kind == ListenerKind::Gateway)
        .collect();
    let stale: Vec<String> = tasks
        .keys()
        .filter(|name| !wanted.iter().any(|l| &&l.name == name))
        .cloned()
        .collect();
    for name in stale {
        if let Some(task) = tasks.remove(&name) {
            task.abort();
        }
        shared.bound.lock().expect("bound poisoned").remove(&name);
        info!(listener = %name, "gateway listener closed");
    }
    for l in wanted {
        if tasks.contains_key(&l.name) {
            continue;
        }
        let addr = shared
            .port_map
            .get(&l.port)
            .copied()
            .unwrap_or_else(|| (shared.bind_ip, 0).into());
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot bind gateway port {} on {addr}: {e}", l.port))?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        info!(listener = %l.name, port = l.port, address = %local, "gateway listener bound");
        shared
            .bound
            .lock()
            .expect("bound poisoned")
            .insert(l.name.clone(), local.to_string());
        shared.emit(Event::Listener {
            name: l.name.clone(),
            port: l.port,
            address: local.to_string(),
        });
        tasks.insert(
            l.name.clone(),
            tokio::spawn(crate::outbound::serve(
                listener,
                shared.clone(),
                l.route_table.clone(),
            )),
        );
    }
    Ok(())
}
