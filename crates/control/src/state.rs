//! The control plane's state, under one lock: the last good resources (with what every
//! proxy's compile shares, prepared once), the registry (kept up to date as proxies come
//! and go), the JWKS fetched for them, the connected proxies and what each was last sent,
//! and what changed since the last push cycle. Changes only mark what they reach; the push
//! cycle ([`crate::push`]) compiles outside the lock.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};
use tracing::{info, warn};
use weft_api::Resource;
use weft_model::deps::{Change, View};
use weft_model::{FetchedJwks, LiveProxy, Prepared, ProxyConfig, ProxyRef, Registry, Role};
use weft_protocol::delta::Desired;
use weft_protocol::pb;

/// Sender half of one proxy's push stream: a single slot holding the newest state, so
/// pushes to a slow proxy coalesce and the latest one is never lost (the stream sends the
/// delta from what it last sent, [`weft_protocol::delta::Sent`]).
pub type PushTx = watch::Sender<Option<Arc<Desired>>>;

pub(crate) struct Conn {
    pub node: pb::Node,
    pub proxy: ProxyRef,
    pub tx: PushTx,
    pub last_sent: Option<ProxyConfig>,
    /// What the last compiled config depended on; `None` until the first compile.
    pub view: Option<View>,
    /// The version last pushed, and the last one the proxy accepted.
    pub sent_version: Option<String>,
    pub acked_version: Option<String>,
    /// A gateway's server ports and where they are served (from its ACKs).
    pub listeners: BTreeMap<u32, String>,
    /// When the change behind the last push was made (until its ACK).
    pub changed_at: Option<Instant>,
}

pub(crate) struct Inner {
    pub resources: Arc<Vec<Resource>>,
    pub prepared: Arc<Prepared>,
    pub registry: Arc<Registry>,
    pub conns: HashMap<u64, Conn>,
    next_conn: u64,
    pub version: u64,
    /// What changed since the last push cycle took its snapshot.
    pub pending: Change,
    /// Connections to compile in the next cycle whatever changed (new ones).
    pub pending_conns: BTreeSet<u64>,
    /// Marks so far; a cycle serves every mark made before its snapshot.
    pub requested: u64,
    pub grace_over: bool,
    /// When the oldest change not yet taken by a cycle was marked.
    pub pending_since: Option<Instant>,
}

/// Shared control-plane state.
pub struct State {
    pub(crate) inner: Mutex<Inner>,
    pub trust_domain: String,
    started: Instant,
    /// Largest push sent; a larger config is replaced by a push saying why.
    pub(crate) max_push_bytes: usize,
    /// Wakes the push cycle.
    pub(crate) wake: Arc<Notify>,
    /// The last mark a finished cycle served ([`State::flush`]).
    pub(crate) done: watch::Sender<u64>,
    pub metrics: Arc<crate::metrics::ControlMetrics>,
}

/// After a (re)start, proxies that already serve a config are not pushed to for this long,
/// so they keep their complete config while the other proxies reconnect (their backoff is
/// at most 2 s).
pub const RECONNECT_GRACE: Duration = Duration::from_secs(3);

impl State {
    /// The state for `resources`, with its push cycle running on the current tokio runtime.
    pub fn new(resources: Vec<Resource>, trust_domain: &str, max_push_bytes: usize) -> Arc<State> {
        let registry = Registry::build(&resources, &[]);
        let state = Arc::new(State {
            inner: Mutex::new(Inner {
                prepared: Arc::new(Prepared::new(&resources)),
                resources: Arc::new(resources),
                registry: Arc::new(registry),
                conns: HashMap::new(),
                next_conn: 0,
                version: 0,
                pending: Change::default(),
                pending_conns: BTreeSet::new(),
                requested: 0,
                grace_over: false,
                pending_since: None,
            }),
            trust_domain: trust_domain.into(),
            started: Instant::now(),
            max_push_bytes,
            wake: Arc::new(Notify::new()),
            done: watch::Sender::new(0),
            metrics: Default::default(),
        });
        tokio::spawn(crate::push::run(Arc::downgrade(&state), state.wake.clone()));
        state
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().expect("state poisoned")
    }

    /// Records that `change` (and the connections in `conns`) need a push cycle.
    fn mark(&self, inner: &mut Inner, change: Change, conns: impl IntoIterator<Item = u64>) {
        inner.pending.merge(change);
        inner.pending_conns.extend(conns);
        inner.pending_since.get_or_insert_with(Instant::now);
        self.metrics.connected.set(inner.conns.len() as i64);
        inner.requested += 1;
        self.wake.notify_one();
    }

    /// Whether the reconnect grace is still on.
    pub(crate) fn in_grace(&self, inner: &Inner) -> bool {
        !inner.grace_over && self.started.elapsed() < RECONNECT_GRACE
    }

    /// The last good resources.
    pub fn resources(&self) -> Arc<Vec<Resource>> {
        self.lock().resources.clone()
    }

    /// What every proxy's compile shares for the current resources (their not-enforced
    /// report among it).
    pub fn prepared(&self) -> Arc<Prepared> {
        self.lock().prepared.clone()
    }

    /// Replaces the resources (already validated); the proxies they reach get a push.
    pub fn set_resources(&self, resources: Vec<Resource>) {
        let prepared = Arc::new(Prepared::new(&resources));
        let mut inner = self.lock();
        let registry = Registry::build(&resources, &live(&inner));
        let change = Change::between(&inner.resources, &resources, &inner.registry, &registry);
        inner.resources = Arc::new(resources);
        inner.prepared = prepared;
        inner.registry = Arc::new(registry);
        self.mark(&mut inner, change, []);
    }

    /// Replaces the fetched JWKS documents; every proxy is compiled again.
    pub fn set_jwks(&self, jwks: FetchedJwks) {
        let mut inner = self.lock();
        if inner.registry.jwks == jwks {
            return;
        }
        Arc::make_mut(&mut inner.registry).jwks = jwks;
        self.mark(&mut inner, Change::everything(), []);
    }

    /// Registers a proxy stream; returns its id. A second proxy for a workload instance
    /// that already has a connected one is refused (never swapped in for it): the error
    /// says which.
    pub fn connect(&self, node: pb::Node, tx: PushTx) -> Result<u64, String> {
        let mut inner = self.lock();
        let taken = inner.conns.values().any(|c| {
            c.node.role == node.role
                && c.node.namespace == node.namespace
                && c.node.workload == node.workload
        });
        if taken {
            warn!(proxy = %node.id, "refused: this workload already has a connected proxy");
            return Err(format!(
                "{} {}/{} already has a connected proxy; a second one is refused (stop the first, or give this one its own WorkloadEntry)",
                node.role, node.namespace, node.workload
            ));
        }
        let id = inner.next_conn;
        inner.next_conn += 1;
        info!(proxy = %node.id, inbound = %node.inbound_addr, "proxy connected");
        let role = match node.role.as_str() {
            "gateway" => Role::Gateway,
            _ => Role::Sidecar,
        };
        let proxy = ProxyRef {
            role,
            workload: node.workload.clone(),
            namespace: node.namespace.clone(),
        };
        let (ns, workload) = (node.namespace.clone(), node.workload.clone());
        inner.conns.insert(
            id,
            Conn {
                node,
                proxy,
                tx,
                last_sent: None,
                view: None,
                sent_version: None,
                acked_version: None,
                listeners: BTreeMap::new(),
                changed_at: None,
            },
        );
        let change = refresh_live(&mut inner, &ns, &workload);
        self.mark(&mut inner, change, [id]);
        Ok(id)
    }

    /// Forgets a proxy stream (its endpoints leave every other proxy's config).
    pub fn disconnect(&self, id: u64) {
        let mut inner = self.lock();
        let Some(c) = inner.conns.remove(&id) else {
            return;
        };
        info!(proxy = %c.node.id, "proxy disconnected");
        let change = refresh_live(&mut inner, &c.node.namespace, &c.node.workload);
        self.mark(&mut inner, change, []);
    }

    /// Records where a gateway serves its ports; a change reaches the proxies whose
    /// services it backs (an egress gateway's endpoints).
    pub fn set_listeners(&self, id: u64, listeners: BTreeMap<u32, String>) {
        let mut inner = self.lock();
        let Some(conn) = inner.conns.get_mut(&id) else {
            return;
        };
        if conn.listeners == listeners {
            return;
        }
        info!(proxy = %conn.node.id, ?listeners, "gateway listeners");
        conn.listeners = listeners;
        let (ns, workload) = (conn.node.namespace.clone(), conn.node.workload.clone());
        let change = refresh_live(&mut inner, &ns, &workload);
        self.mark(&mut inner, change, []);
    }

    /// Records a proxy's ACK. Returns every connected proxy's id and version when, with
    /// this ACK, each of them has accepted the latest config it was sent (the mesh has
    /// converged); `None` otherwise.
    pub fn ack(&self, id: u64, version: &str) -> Option<Vec<(String, String)>> {
        let mut inner = self.lock();
        let conn = inner.conns.get_mut(&id)?;
        conn.acked_version = Some(version.to_string());
        if conn.sent_version == conn.acked_version {
            if let Some(at) = conn.changed_at.take() {
                self.metrics.convergence.observe(at.elapsed().as_secs_f64());
            }
        }
        let converged = inner
            .conns
            .values()
            .all(|c| c.sent_version.is_some() && c.sent_version == c.acked_version);
        converged.then(|| {
            inner
                .conns
                .values()
                .map(|c| {
                    (
                        c.node.id.clone(),
                        c.acked_version.clone().unwrap_or_default(),
                    )
                })
                .collect()
        })
    }

    /// Number of connected proxies.
    pub fn connected(&self) -> usize {
        self.lock().conns.len()
    }

    /// Ends the reconnect grace (called once it has passed; tests call it early) and
    /// pushes to the proxies it held back.
    pub fn push_now(&self) {
        let mut inner = self.lock();
        inner.grace_over = true;
        let waiting: Vec<u64> = inner
            .conns
            .iter()
            .filter(|(_, c)| c.last_sent.is_none())
            .map(|(id, _)| *id)
            .collect();
        self.mark(&mut inner, Change::default(), waiting);
    }

    /// Waits until a push cycle has served every change made before this call.
    pub async fn flush(&self) {
        let target = {
            let mut inner = self.lock();
            inner.requested += 1;
            inner.requested
        };
        self.wake.notify_one();
        let mut done = self.done.subscribe();
        let _ = done.wait_for(|d| *d >= target).await;
    }
}

impl Drop for State {
    fn drop(&mut self) {
        // Ends the push cycle's task.
        self.wake.notify_one();
    }
}

/// The live proxies, oldest connection first (when two streams claim one workload, the
/// registry takes the newest).
fn live(inner: &Inner) -> Vec<LiveProxy> {
    live_of(inner, |_| true)
}

fn live_of(inner: &Inner, keep: impl Fn(&Conn) -> bool) -> Vec<LiveProxy> {
    let mut conns: Vec<(&u64, &Conn)> = inner.conns.iter().filter(|(_, c)| keep(c)).collect();
    conns.sort_by_key(|(id, _)| **id);
    conns
        .into_iter()
        .map(|(_, c)| LiveProxy {
            workload: c.node.workload.clone(),
            namespace: c.node.namespace.clone(),
            inbound_addr: c.node.inbound_addr.clone(),
            listeners: c.listeners.clone(),
        })
        .collect()
}

/// Sets where one workload's proxy is in the registry (the newest stream with an inbound
/// address or listeners wins, as [`Registry::build`] decides) and says what that reaches.
fn refresh_live(inner: &mut Inner, namespace: &str, workload: &str) -> Change {
    let key = (namespace.to_string(), workload.to_string());
    let streams = live_of(inner, |c| {
        c.node.namespace == namespace && c.node.workload == workload
    });
    let inbound = streams
        .iter()
        .rfind(|p| !p.inbound_addr.is_empty())
        .map(|p| p.inbound_addr.clone());
    let listeners = streams
        .iter()
        .rfind(|p| !p.listeners.is_empty())
        .map(|p| p.listeners.clone())
        .unwrap_or_default();
    let Some(w) = inner.registry.workloads.get(&key) else {
        return Change::default();
    };
    if w.inbound_addr == inbound && w.gateway_listeners == listeners {
        return Change::default();
    }
    let registry = Arc::make_mut(&mut inner.registry);
    let w = registry.workloads.get_mut(&key).expect("checked above");
    w.inbound_addr = inbound;
    w.gateway_listeners = listeners;
    Change::endpoint(&inner.registry, namespace, workload)
}
