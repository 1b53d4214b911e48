//! The state one proxy's listeners and tasks share: who it is, the active config (one
//! atomic swap per push), credentials, connection pools, the replay budget, metrics, and
//! the gateway listeners it has bound.

use crate::config::ActiveConfig;
use crate::events::{Event, EventSink};
use crate::telemetry::Metrics;
use crate::tls::TlsState;
use crate::upstream::{app::AppClient, PeerPool, ReplayBudget};
use arc_swap::ArcSwap;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::task::JoinHandle;
use weft_protocol::pb;

/// Bytes all in-flight requests may keep for retries and mirrors together.
pub const REPLAY_BUDGET_BYTES: usize = 64 * 1024 * 1024;

/// Downstream connections one proxy serves at once (all listeners together).
pub const MAX_DOWNSTREAM_CONNECTIONS: usize = 16_384;

/// Counts open downstream connections against the limit.
#[derive(Debug, Clone)]
pub struct ConnectionLimit {
    open: Arc<AtomicUsize>,
    max: usize,
}

/// One admitted connection; dropping it frees its slot.
#[derive(Debug)]
pub struct Admitted(Arc<AtomicUsize>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ConnectionLimit {
    pub fn new(max: usize) -> ConnectionLimit {
        ConnectionLimit {
            open: Arc::new(AtomicUsize::new(0)),
            max,
        }
    }

    /// A slot for a new connection, or `None` at the limit.
    pub fn admit(&self) -> Option<Admitted> {
        let before = self.open.fetch_add(1, Ordering::AcqRel);
        let admitted = Admitted(self.open.clone());
        (before < self.max).then_some(admitted)
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

/// Shared by every listener and task of one proxy.
pub struct ProxyState {
    pub node: pb::Node,
    pub config: ArcSwap<ActiveConfig>,
    pub metrics: Arc<Metrics>,
    /// Span export queues and access log writers (shared by every push).
    pub observe: Arc<crate::telemetry::Observe>,
    pub pool: Arc<PeerPool>,
    pub tls: Arc<TlsState>,
    pub app_addr: Option<String>,
    pub app: AppClient,
    pub replay_budget: ReplayBudget,
    /// Downstream connections open, against the proxy-wide limit.
    pub connections: ConnectionLimit,
    /// Bound gateway listeners: name -> local address.
    pub bound: Mutex<BTreeMap<String, String>>,
    pub gateway_tasks: tokio::sync::Mutex<HashMap<String, JoinHandle<()>>>,
    pub port_map: HashMap<u32, SocketAddr>,
    pub bind_ip: IpAddr,
    pub events: EventSink,
    /// Gateway HTTPS chains' rustls configs, rebuilt when their files change.
    pub gateway_tls: crate::gateway_tls::TlsConfigs,
}

impl ProxyState {
    /// Where the app serves service `port`: a Sidecar ingress listener's `defaultEndpoint`
    /// for it (`0.0.0.0:P`/`[::]:P`: the app's host on port P), else the app's address
    /// (borrowed: the common case allocates nothing).
    pub fn app_for<'a>(
        &'a self,
        cfg: &'a crate::config::ActiveConfig,
        port: Option<u32>,
    ) -> Option<std::borrow::Cow<'a, str>> {
        let inbound = cfg.config.inbound.as_ref();
        let Some(to) = port.and_then(|p| inbound?.app_ports.get(&p)) else {
            return self.app_addr.as_deref().map(std::borrow::Cow::Borrowed);
        };
        let (host, p) = to.rsplit_once(':')?;
        if host == "0.0.0.0" || host == "[::]" {
            let app_host = self.app_addr.as_deref().and_then(|a| a.rsplit_once(':'));
            let app_host = app_host.map_or("127.0.0.1", |(h, _)| h);
            return Some(format!("{app_host}:{p}").into());
        }
        Some(to.as_str().into())
    }

    /// This proxy's SPIFFE id.
    pub fn identity_uri(&self) -> String {
        self.tls.current.load().uri.clone()
    }

    /// Reports a lifecycle event.
    pub fn emit(&self, e: Event) {
        self.events.send(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_admits_up_to_max_and_frees_slots() {
        let l = ConnectionLimit::new(2);
        let a = l.admit().expect("first");
        let _b = l.admit().expect("second");
        assert!(l.admit().is_none(), "third is over the limit");
        assert_eq!(l.open(), 2, "a refused attempt does not hold a slot");
        drop(a);
        assert!(l.admit().is_some());
    }
}
