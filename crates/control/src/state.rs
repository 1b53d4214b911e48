//! The control plane's state, under one lock: the last good resources, the JWKS fetched for
//! them, the connected proxies, and what each was last sent. Any change (config reload, proxy connect or
//! disconnect) recompiles every proxy and pushes only configs that changed.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tracing::{info, warn};
use weft_api::Resource;
use weft_model::{compile, FetchedJwks, LiveProxy, ProxyConfig, ProxyRef, Registry, Role};
use weft_protocol::{encode_config, pb};

/// Sender half of one proxy's push stream: a single slot holding the newest config, so
/// pushes to a slow proxy coalesce and the latest one is never lost.
pub type PushTx = watch::Sender<Option<pb::ConfigPush>>;

struct Conn {
    node: pb::Node,
    tx: PushTx,
    last_sent: Option<ProxyConfig>,
    /// The version last pushed, and the last one the proxy accepted.
    sent_version: Option<String>,
    acked_version: Option<String>,
    /// A gateway's server ports and where they are served (from its ACKs).
    listeners: BTreeMap<u32, String>,
}

struct Inner {
    resources: Arc<Vec<Resource>>,
    /// The JWKS fetched for RequestAuthentication `jwksUri`s ([`crate::jwks`]).
    jwks: FetchedJwks,
    conns: HashMap<u64, Conn>,
    next_conn: u64,
    version: u64,
}

/// Shared control-plane state.
pub struct State {
    inner: Mutex<Inner>,
    pub trust_domain: String,
    started: Instant,
    /// Largest push sent; a larger config is replaced by a push saying why.
    max_push_bytes: usize,
}

/// After a (re)start, proxies that already serve a config are not pushed to for this long,
/// so they keep their complete config while the other proxies reconnect (their backoff is
/// at most 2 s).
pub const RECONNECT_GRACE: Duration = Duration::from_secs(3);

impl State {
    pub fn new(resources: Vec<Resource>, trust_domain: &str, max_push_bytes: usize) -> Arc<State> {
        Arc::new(State {
            inner: Mutex::new(Inner {
                resources: Arc::new(resources),
                jwks: FetchedJwks::new(),
                conns: HashMap::new(),
                next_conn: 0,
                version: 0,
            }),
            trust_domain: trust_domain.into(),
            started: Instant::now(),
            max_push_bytes,
        })
    }

    /// The last good resources.
    pub fn resources(&self) -> Arc<Vec<Resource>> {
        self.inner.lock().expect("state poisoned").resources.clone()
    }

    /// Replaces the resources (already validated) and pushes what changed.
    pub fn set_resources(&self, resources: Vec<Resource>) {
        let mut inner = self.inner.lock().expect("state poisoned");
        inner.resources = Arc::new(resources);
        self.push_all(&mut inner);
    }

    /// Replaces the fetched JWKS documents and pushes what changed.
    pub fn set_jwks(&self, jwks: FetchedJwks) {
        let mut inner = self.inner.lock().expect("state poisoned");
        if inner.jwks == jwks {
            return;
        }
        inner.jwks = jwks;
        self.push_all(&mut inner);
    }

    /// Registers a proxy stream; returns its id.
    /// Registers a proxy stream. A second proxy for a workload instance that already has a
    /// connected one is refused (never swapped in for it): the error says which.
    pub fn connect(&self, node: pb::Node, tx: PushTx) -> Result<u64, String> {
        let mut inner = self.inner.lock().expect("state poisoned");
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
        inner.conns.insert(
            id,
            Conn {
                node,
                tx,
                last_sent: None,
                sent_version: None,
                acked_version: None,
                listeners: BTreeMap::new(),
            },
        );
        self.push_all(&mut inner);
        Ok(id)
    }

    /// Forgets a proxy stream (its endpoints leave every other proxy's config).
    pub fn disconnect(&self, id: u64) {
        let mut inner = self.inner.lock().expect("state poisoned");
        if let Some(c) = inner.conns.remove(&id) {
            info!(proxy = %c.node.id, "proxy disconnected");
        }
        self.push_all(&mut inner);
    }

    /// Records where a gateway serves its ports; a change reaches the proxies whose
    /// services it backs (an egress gateway's endpoints).
    pub fn set_listeners(&self, id: u64, listeners: BTreeMap<u32, String>) {
        let mut inner = self.inner.lock().expect("state poisoned");
        let Some(conn) = inner.conns.get_mut(&id) else {
            return;
        };
        if conn.listeners == listeners {
            return;
        }
        info!(proxy = %conn.node.id, ?listeners, "gateway listeners");
        conn.listeners = listeners;
        self.push_all(&mut inner);
    }

    /// Records a proxy's ACK. Returns every connected proxy's id and version when, with
    /// this ACK, each of them has accepted the latest config it was sent (the mesh has
    /// converged); `None` otherwise.
    pub fn ack(&self, id: u64, version: &str) -> Option<Vec<(String, String)>> {
        let mut inner = self.inner.lock().expect("state poisoned");
        let conn = inner.conns.get_mut(&id)?;
        conn.acked_version = Some(version.to_string());
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
        self.inner.lock().expect("state poisoned").conns.len()
    }

    /// Pushes to everyone (called once the reconnect grace has passed).
    pub fn push_now(&self) {
        let mut inner = self.inner.lock().expect("state poisoned");
        let in_grace = self.started.elapsed() < RECONNECT_GRACE;
        self.push(&mut inner, in_grace);
    }

    /// Ends the reconnect grace now and pushes to everyone (tests, and operators who know
    /// every proxy is back).
    pub fn push_now_ignoring_grace(&self) {
        let mut inner = self.inner.lock().expect("state poisoned");
        self.push(&mut inner, false);
    }

    fn push_all(&self, inner: &mut Inner) {
        let in_grace = self.started.elapsed() < RECONNECT_GRACE;
        self.push(inner, in_grace);
    }

    fn push(&self, inner: &mut Inner, in_grace: bool) {
        // Oldest connection first: when two streams claim one workload (a restart racing
        // the old stream's teardown), the registry takes the newest.
        let mut conns: Vec<(&u64, &Conn)> = inner.conns.iter().collect();
        conns.sort_by_key(|(id, _)| **id);
        let live: Vec<LiveProxy> = conns
            .into_iter()
            .map(|(_, c)| LiveProxy {
                workload: c.node.workload.clone(),
                namespace: c.node.namespace.clone(),
                inbound_addr: c.node.inbound_addr.clone(),
                listeners: c.listeners.clone(),
            })
            .collect();
        let mut registry = Registry::build(&inner.resources, &live);
        registry.jwks = inner.jwks.clone();
        let resources = inner.resources.clone();
        let mut version = inner.version;
        for conn in inner.conns.values_mut() {
            if in_grace && !conn.node.config_version.is_empty() && conn.last_sent.is_none() {
                continue;
            }
            let role = if conn.node.role == "gateway" {
                Role::Gateway
            } else {
                Role::Sidecar
            };
            let proxy = ProxyRef {
                role,
                workload: conn.node.workload.clone(),
                namespace: conn.node.namespace.clone(),
            };
            let cfg = match compile(&resources, &registry, &self.trust_domain, &proxy) {
                Ok(cfg) => cfg,
                Err(e) => {
                    warn!(proxy = %conn.node.id, error = %e, "cannot compile a config for this proxy");
                    continue;
                }
            };
            if conn.last_sent.as_ref() == Some(&cfg) {
                continue;
            }
            version += 1;
            let push = encode_config(&version.to_string(), &cfg, self.max_push_bytes);
            if !push.error.is_empty() {
                warn!(proxy = %conn.node.id, reason = %push.error, "cannot serve this proxy its config");
                crate::emit(&crate::Event::ProxyUnserved {
                    proxy: conn.node.id.clone(),
                    reason: push.error.clone(),
                });
            }
            // Fails only once the stream is gone; disconnect() then forgets the proxy.
            let _ = conn.tx.send(Some(push));
            conn.last_sent = Some(cfg);
            conn.sent_version = Some(version.to_string());
        }
        inner.version = version;
    }
}
