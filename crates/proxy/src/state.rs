//! The state one proxy's listeners and tasks share: who it is, the active config (one
//! atomic swap per push), credentials, connection pools, the replay budget, metrics, and
//! the gateway listeners it has bound.

use crate::config::ActiveConfig;
use crate::telemetry::Metrics;
use crate::tls::TlsState;
use crate::upstream::{app::AppClient, PeerPool, ReplayBudget};
use crate::{Event, EventSink};
use arc_swap::ArcSwap;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use tokio::task::JoinHandle;
use weft_protocol::pb;

/// Bytes all in-flight requests may keep for retries and mirrors together.
pub const REPLAY_BUDGET_BYTES: usize = 64 * 1024 * 1024;

/// Shared by every listener and task of one proxy.
pub struct ProxyState {
    pub node: pb::Node,
    pub config: ArcSwap<ActiveConfig>,
    pub metrics: Arc<Metrics>,
    pub pool: Arc<PeerPool>,
    pub tls: Arc<TlsState>,
    pub app_addr: Option<String>,
    pub app: AppClient,
    pub replay_budget: ReplayBudget,
    /// Downstream connections open, against the proxy-wide limit.
    pub connections: crate::http::limits::ConnectionLimit,
    /// Bound gateway listeners: name -> local address.
    pub bound: Mutex<BTreeMap<String, String>>,
    pub gateway_tasks: tokio::sync::Mutex<HashMap<String, JoinHandle<()>>>,
    pub port_map: HashMap<u32, SocketAddr>,
    pub bind_ip: IpAddr,
    pub events: EventSink,
}

impl ProxyState {
    /// This proxy's SPIFFE id.
    pub fn identity_uri(&self) -> String {
        self.tls.current.load().uri.clone()
    }

    /// Reports a lifecycle event.
    pub fn emit(&self, e: Event) {
        self.events.send(e);
    }
}
