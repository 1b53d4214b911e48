//! Traffic generator for the demo mesh: sends paced HTTP/1.1 requests to the
//! gateway, round-robin over named routes, prints a live per-route table and
//! returns a whole-run [`Summary`].
//!
//! Pacing is open-loop-ish: a tokio interval computes how many requests are
//! due at `rps` since the start and hands them to `concurrency` workers. When
//! every worker is busy the backlog is capped at `concurrency` jobs, so an
//! overloaded target shows up as a lower req/s instead of an unbounded burst.

mod stats;
mod worker;

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{mpsc, Mutex};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

pub use stats::{render_table, RouteStats, Summary};

use stats::Recorder;
use worker::{build_request, run_worker, WorkerCtx, REQUEST_TIMEOUT};

/// How long in-flight requests may finish after the run stops.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// One kind of request the generator sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadRoute {
    /// Display name, e.g. `inventory (premium → v2)`.
    pub name: String,
    /// `Host` header (the mesh routes on it).
    pub authority: String,
    /// Path and query, e.g. `/api/v1/inventory/items`.
    pub path: String,
    /// Extra request headers, e.g. `("x-player-tier", "premium")`.
    pub headers: Vec<(String, String)>,
}

/// Load run configuration.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Where requests are sent (usually the ingress gateway).
    pub target: SocketAddr,
    /// Routes, used round-robin.
    pub routes: Vec<LoadRoute>,
    /// Total requests per second over all routes.
    pub rps: u32,
    /// Number of workers, each with one keep-alive connection (min 1).
    pub concurrency: usize,
    /// Run length; `None` runs until `shutdown`.
    pub duration: Option<Duration>,
    /// Interval of the live table written to `out` (zero disables it).
    pub report_every: Duration,
}

/// Runs the load until `cfg.duration` elapses or `shutdown` completes,
/// writing a live per-interval table to `out` every `cfg.report_every`.
///
/// Connection/protocol errors and timeouts count as failed requests (per
/// error kind in [`RouteStats::errors`]); they never abort the run. Errors are
/// returned only for invalid configuration or when writing to `out` fails.
pub async fn run_load(
    cfg: LoadConfig,
    mut out: impl Write + Send,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<Summary> {
    anyhow::ensure!(!cfg.routes.is_empty(), "load: no routes configured");
    anyhow::ensure!(cfg.rps > 0, "load: rps must be > 0");
    for r in &cfg.routes {
        build_request(r).with_context(|| format!("load: invalid route {:?}", r.name))?;
    }
    let concurrency = cfg.concurrency.max(1);
    let n_routes = cfg.routes.len();
    let recorder = Arc::new(Recorder::new(
        cfg.routes.iter().map(|r| r.name.clone()).collect(),
    ));
    let (tx, rx) = mpsc::channel::<usize>(concurrency);
    let stopping = Arc::new(AtomicBool::new(false));
    let ctx = Arc::new(WorkerCtx {
        target: cfg.target,
        routes: Arc::new(cfg.routes),
        jobs: Arc::new(Mutex::new(rx)),
        recorder: recorder.clone(),
        stopping: stopping.clone(),
    });
    let mut workers = JoinSet::new();
    for _ in 0..concurrency {
        workers.spawn(run_worker(ctx.clone()));
    }
    drop(ctx);

    let start = Instant::now();
    let tick = (Duration::from_secs(1) / cfg.rps).max(Duration::from_millis(1));
    let mut pacer = tokio::time::interval_at(start, tick);
    pacer.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let reporting = !cfg.report_every.is_zero();
    let report_every = if reporting {
        cfg.report_every
    } else {
        Duration::from_secs(3600)
    };
    let mut report = tokio::time::interval_at(start + report_every, report_every);
    report.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let deadline = async {
        match cfg.duration {
            Some(d) => tokio::time::sleep_until(start + d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline, shutdown);

    let backlog_cap = concurrency as u64;
    let mut sent: u64 = 0;
    let mut next_route = 0usize;
    let mut last_report = start;
    let mut write_err = None;
    loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            _ = &mut deadline => break,
            _ = report.tick(), if reporting => {
                let now = Instant::now();
                let interval = recorder.take_interval(now - last_report);
                let res = write_report(&mut out, now - start, &interval);
                last_report = now;
                if let Err(e) = res {
                    write_err = Some(e);
                    break;
                }
            }
            _ = pacer.tick() => {
                let due = (start.elapsed().as_secs_f64() * f64::from(cfg.rps)) as u64 + 1;
                if due.saturating_sub(sent) > backlog_cap {
                    sent = due - backlog_cap;
                }
                let mut closed = false;
                while sent < due {
                    match tx.try_send(next_route) {
                        Ok(()) => {
                            sent += 1;
                            next_route = (next_route + 1) % n_routes;
                        }
                        Err(mpsc::error::TrySendError::Full(_)) => break,
                        Err(mpsc::error::TrySendError::Closed(_)) => {
                            closed = true;
                            break;
                        }
                    }
                }
                if closed {
                    break;
                }
            }
        }
    }
    let elapsed = start.elapsed();
    stopping.store(true, Ordering::Relaxed);
    drop(tx);
    let grace = STOP_GRACE.min(REQUEST_TIMEOUT);
    let drained = tokio::time::timeout(grace, async {
        while workers.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::debug!("loadgen: aborting workers still in flight after grace period");
        workers.shutdown().await;
    }
    if let Some(e) = write_err {
        return Err(e);
    }
    Ok(recorder.total(elapsed))
}

fn write_report(out: &mut impl Write, at: Duration, s: &Summary) -> anyhow::Result<()> {
    writeln!(out, "[t={:.1}s]", at.as_secs_f64()).context("load: writing report")?;
    out.write_all(render_table(s).as_bytes())
        .context("load: writing report")?;
    writeln!(out).context("load: writing report")?;
    out.flush().context("load: writing report")
}
