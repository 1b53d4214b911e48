//! The simulated proxies: each is a real gRPC client of the control plane's `Mesh`
//! service on its own TCP connection. It says hello (a sidecar of one generated
//! WorkloadEntry, with a fake inbound address that nothing dials), records every push it
//! receives (time, size, version, which watched strings it mentions) and ACKs it. Like a
//! real proxy it reconnects with backoff (100 ms → 2 s) when a stream fails. A proxy is
//! disconnected by closing its side of the stream and waiting until the control plane
//! has ended its side, which it does once it has forgotten the proxy.

mod stream;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Who a simulated proxy is.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The node id (`sidecar~<workload>.<namespace>`), the key of `converged` events.
    pub id: String,
    pub workload: String,
    pub namespace: String,
}

impl Identity {
    pub fn sidecar(workload: String, namespace: String) -> Identity {
        let id = format!("sidecar~{workload}.{namespace}");
        Identity {
            id,
            workload,
            namespace,
        }
    }
}

/// A string every received push is searched for (an endpoint address), and the change
/// that introduced it.
#[derive(Debug, Clone)]
pub struct Watch {
    pub change: usize,
    pub needle: String,
}

/// One push as a simulated proxy received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub proxy: usize,
    pub at: Instant,
    pub bytes: usize,
    /// The changes whose watched string the push mentions.
    pub mentions: Vec<usize>,
}

/// A proxy's current session (one `connect`, retries included).
#[derive(Debug, Default)]
struct Current {
    session: u64,
    /// The control plane has accepted the stream, and it is not being closed.
    live: bool,
    /// The last version received on the live stream.
    version: Option<String>,
    first_push: Option<Instant>,
}

#[derive(Debug, Default)]
struct Log {
    pushes: Vec<Received>,
    current: Vec<Current>,
    failures: Vec<String>,
}

struct Shared {
    control: String,
    who: Vec<Identity>,
    log: Mutex<Log>,
    watches: RwLock<Arc<Vec<Watch>>>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().expect("log poisoned")
    }
}

struct Session {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// All simulated proxies.
pub struct Fleet {
    shared: Arc<Shared>,
    slots: Vec<tokio::sync::Mutex<Option<Session>>>,
    next_session: AtomicU64,
}

impl Fleet {
    /// A fleet of proxies (none connected yet) for the control plane at `control`.
    pub fn new(control: String, who: Vec<Identity>) -> Fleet {
        let log = Log {
            current: who.iter().map(|_| Current::default()).collect(),
            ..Log::default()
        };
        let slots = who.iter().map(|_| tokio::sync::Mutex::new(None)).collect();
        let shared = Shared {
            control,
            who,
            log: Mutex::new(log),
            watches: Default::default(),
        };
        Fleet {
            shared: Arc::new(shared),
            slots,
            next_session: AtomicU64::new(1),
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Starts a session for `proxy` (which has none) announcing `inbound`; returns when
    /// it started connecting.
    pub async fn connect(&self, proxy: usize, inbound: String) -> Instant {
        let mut slot = self.slots[proxy].lock().await;
        self.start(&mut slot, proxy, inbound)
    }

    /// Ends `proxy`'s session: once this returns, the control plane has forgotten it.
    pub async fn disconnect(&self, proxy: usize, timeout: Duration) -> anyhow::Result<()> {
        let mut slot = self.slots[proxy].lock().await;
        self.stop(&mut slot, proxy, timeout).await
    }

    /// Disconnects `proxy` and connects it again announcing `inbound`; returns when the
    /// new session started connecting.
    pub async fn reconnect(
        &self,
        proxy: usize,
        inbound: String,
        timeout: Duration,
    ) -> anyhow::Result<Instant> {
        let mut slot = self.slots[proxy].lock().await;
        self.stop(&mut slot, proxy, timeout).await?;
        Ok(self.start(&mut slot, proxy, inbound))
    }

    fn start(&self, slot: &mut Option<Session>, proxy: usize, inbound: String) -> Instant {
        assert!(slot.is_none(), "proxy {proxy} is already connected");
        let session = self.next_session.fetch_add(1, Ordering::Relaxed);
        self.shared.lock().current[proxy] = Current {
            session,
            ..Current::default()
        };
        let (stop, stopped) = watch::channel(false);
        let shared = self.shared.clone();
        let task = tokio::spawn(stream::run(shared, proxy, session, inbound, stopped));
        *slot = Some(Session { stop, task });
        Instant::now()
    }

    async fn stop(
        &self,
        slot: &mut Option<Session>,
        proxy: usize,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let Some(session) = slot.take() else {
            return Ok(());
        };
        let _ = session.stop.send(true);
        let abort = session.task.abort_handle();
        if tokio::time::timeout(timeout, session.task).await.is_err() {
            abort.abort();
            anyhow::bail!(
                "{}: the control plane did not end its stream within {} s of the proxy closing it",
                self.shared.who[proxy].id,
                timeout.as_secs()
            );
        }
        Ok(())
    }

    /// Strings to look for in every push from now on (replacing earlier ones).
    pub fn set_watches(&self, watches: Vec<Watch>) {
        *self.shared.watches.write().expect("watches poisoned") = Arc::new(watches);
    }

    /// Adds one string to look for.
    pub fn add_watch(&self, watch: Watch) {
        let mut watches = self.shared.watches.write().expect("watches poisoned");
        let mut next = watches.as_ref().clone();
        next.push(watch);
        *watches = Arc::new(next);
    }

    /// True when a `converged` event's proxies are exactly this fleet, every proxy
    /// connected, each at the version it last received.
    pub fn converged(&self, proxies: &BTreeMap<String, String>) -> bool {
        let log = self.shared.lock();
        proxies.len() == self.len()
            && log.current.iter().zip(&self.shared.who).all(|(c, who)| {
                c.live && c.version.is_some() && proxies.get(&who.id) == c.version.as_ref()
            })
    }

    /// Every push received at or after `since`, in order of receipt.
    pub fn pushes_since(&self, since: Instant) -> Vec<Received> {
        let log = self.shared.lock();
        let mut out: Vec<Received> = log
            .pushes
            .iter()
            .filter(|r| r.at >= since)
            .cloned()
            .collect();
        out.sort_by_key(|r| r.at);
        out
    }

    /// True when any push was received at or after `since`.
    pub fn pushed_since(&self, since: Instant) -> bool {
        self.shared
            .lock()
            .pushes
            .iter()
            .rev()
            .any(|r| r.at >= since)
    }

    /// When `proxy`'s current session received its first config.
    pub fn first_push(&self, proxy: usize) -> Option<Instant> {
        self.shared.lock().current[proxy].first_push
    }

    /// How many sessions failed or were refused a config, and the first few reasons.
    pub fn failures(&self) -> (usize, Vec<String>) {
        let log = self.shared.lock();
        (
            log.failures.len(),
            log.failures.iter().take(3).cloned().collect(),
        )
    }

    /// The proxy's identity.
    pub fn who(&self, proxy: usize) -> &Identity {
        &self.shared.who[proxy]
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for slot in &self.slots {
            if let Ok(mut slot) = slot.try_lock() {
                if let Some(s) = slot.take() {
                    s.task.abort();
                }
            }
        }
    }
}
