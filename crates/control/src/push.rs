//! The push cycle (istiod's debounced push queue): changes mark what they reach
//! ([`crate::state`]); once a burst of marks is over (5 ms without one, at most 100 ms
//! after the first, Istio's PILOT_DEBOUNCE_AFTER / PILOT_DEBOUNCE_MAX roles) one cycle
//! takes a snapshot under the lock, compiles the proxies the change reaches outside it,
//! and sends each proxy whose config changed its new one under the lock again. Connections
//! that came or went meanwhile are marked and served by the next cycle.

use crate::state::{Inner, State};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tracing::warn;
use weft_model::deps::View;
use weft_model::{compile_prepared, CompileError, Prepared, ProxyConfig, ProxyRef, Registry};
use weft_protocol::delta::Desired;

/// A burst of marks is over once none came for this long.
const QUIET: Duration = Duration::from_millis(5);
/// A steady stream of marks still pushes this often.
const MAX_SETTLE: Duration = Duration::from_millis(100);

/// Runs push cycles until the state is dropped.
/// It holds no strong reference while it waits: dropping the state (which wakes it) ends
/// the task.
pub(crate) async fn run(state: Weak<State>, wake: Arc<Notify>) {
    loop {
        wake.notified().await;
        let start = tokio::time::Instant::now();
        loop {
            let next = tokio::time::timeout(QUIET, wake.notified()).await;
            if next.is_err() || start.elapsed() >= MAX_SETTLE {
                break;
            }
        }
        let Some(s) = state.upgrade() else { return };
        // Compiling is CPU work: off the runtime's threads, so streams keep flowing.
        let _ = tokio::task::spawn_blocking(move || cycle(&s)).await;
    }
}

/// One proxy to compile, as the snapshot saw it.
struct Job {
    id: u64,
    proxy: ProxyRef,
    name: String,
}

/// What a cycle compiles from.
struct Snapshot {
    resources: Arc<Vec<weft_api::Resource>>,
    prepared: Arc<Prepared>,
    registry: Arc<Registry>,
    jobs: Vec<Job>,
    target: u64,
    /// When the oldest change this cycle serves was made.
    changed_at: Instant,
}

/// Takes what changed and picks the proxies it reaches.
fn snapshot(state: &State, inner: &mut Inner) -> Snapshot {
    let change = std::mem::take(&mut inner.pending);
    let fresh = std::mem::take(&mut inner.pending_conns);
    let in_grace = state.in_grace(inner);
    let changed_at = inner.pending_since.take().unwrap_or_else(Instant::now);
    state
        .metrics
        .queue
        .observe(changed_at.elapsed().as_secs_f64());
    let mut held = Vec::new();
    let jobs = inner
        .conns
        .iter()
        .filter(|(id, c)| {
            // A proxy that already serves a config waits for the others after a restart.
            if in_grace && !c.node.config_version.is_empty() && c.last_sent.is_none() {
                held.push(**id);
                return false;
            }
            fresh.contains(id) || c.view.as_ref().is_none_or(|v| v.reached_by(&change))
        })
        .map(|(id, c)| Job {
            id: *id,
            proxy: c.proxy.clone(),
            name: c.node.id.clone(),
        })
        .collect();
    inner.pending_conns.extend(held);
    Snapshot {
        resources: inner.resources.clone(),
        prepared: inner.prepared.clone(),
        registry: inner.registry.clone(),
        jobs,
        target: inner.requested,
        changed_at,
    }
}

/// A proxy's compiled config and what it depended on.
type Compiled = Result<(ProxyConfig, View), CompileError>;

/// One push cycle.
pub(crate) fn cycle(state: &State) {
    let snap = snapshot(state, &mut state.lock());
    let compiled: Vec<(u64, Compiled)> = snap
        .jobs
        .iter()
        .map(|job| {
            let cfg = compile_prepared(
                &snap.resources,
                &snap.prepared,
                &snap.registry,
                &state.trust_domain,
                &job.proxy,
            );
            let with_view = cfg.map(|cfg| {
                let view = View::of(&snap.prepared, &job.proxy, &snap.registry, &cfg);
                (cfg, view)
            });
            (job.id, with_view)
        })
        .collect();
    let mut inner = state.lock();
    for ((id, result), job) in compiled.into_iter().zip(&snap.jobs) {
        let (cfg, view) = match result {
            Ok(done) => done,
            Err(e) => {
                warn!(proxy = %job.name, error = %e, "cannot compile a config for this proxy");
                continue;
            }
        };
        send(&mut inner, id, cfg, view, snap.changed_at);
    }
    drop(inner);
    state.done.send_if_modified(|d| {
        let newer = snap.target > *d;
        *d = (*d).max(snap.target);
        newer
    });
}

/// Sends one proxy its config if it changed (and it is still connected).
fn send(inner: &mut Inner, id: u64, cfg: ProxyConfig, view: View, changed_at: Instant) {
    let mut version = inner.version;
    let Some(conn) = inner.conns.get_mut(&id) else {
        return;
    };
    conn.view = Some(view);
    if conn.last_sent.as_ref() == Some(&cfg) {
        return;
    }
    version += 1;
    let desired = Desired::new(&version.to_string(), &cfg);
    // Fails only once the stream is gone; disconnect() then forgets the proxy.
    let _ = conn.tx.send(Some(Arc::new(desired)));
    conn.last_sent = Some(cfg);
    conn.changed_at.get_or_insert(changed_at);
    conn.sent_version = Some(version.to_string());
    inner.version = version;
}
