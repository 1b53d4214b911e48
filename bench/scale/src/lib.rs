//! weft's control-plane scale benchmark: generates a mesh of N services as Istio YAML,
//! starts the real `weft control` on it, connects M simulated proxies (real gRPC streams,
//! one TCP connection each) and measures initial sync, one VirtualService change,
//! endpoint churn and a reconnect storm, with the control plane's CPU time and peak RSS.
#![forbid(unsafe_code)]

pub mod control;
pub mod mesh;
pub mod phases;
pub mod proxy_rss;
pub mod push;
pub mod report;
pub mod sim;

use anyhow::{bail, Context};
use phases::{Bench, Phase};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// One benchmark run (one N × M).
#[derive(Debug, Clone)]
pub struct Options {
    /// The `weft` binary whose control plane is measured.
    pub weft: PathBuf,
    pub services: usize,
    pub proxies: usize,
    /// Endpoint changes per second, and for how long.
    pub churn_rate: f64,
    pub churn_secs: f64,
    /// Per phase (and for the control plane's start).
    pub timeout: Duration,
}

impl Options {
    /// Number of endpoint changes of the churn phase (at least one).
    pub fn churn_changes(&self) -> usize {
        ((self.churn_rate * self.churn_secs).round() as usize).max(1)
    }

    fn check(&self) -> anyhow::Result<()> {
        if self.proxies == 0 || self.proxies > self.services {
            bail!("--proxies must be between 1 and --services ({}): each proxy fronts its own WorkloadEntry", self.services);
        }
        if self.proxies > phases::MAX_PROXIES {
            bail!("at most {} proxies", phases::MAX_PROXIES);
        }
        if !(self.churn_rate > 0.0 && self.churn_secs > 0.0)
            || self.churn_changes() > phases::MAX_CHANGES
        {
            bail!(
                "--churn-rate and --churn-secs must be positive, and make at most {} changes",
                phases::MAX_CHANGES
            );
        }
        Ok(())
    }
}

/// Everything one run measured.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub services: usize,
    pub proxies: usize,
    pub resources: usize,
    /// From spawning the control plane to its `ready` line, and its CPU seconds by then.
    pub startup: Duration,
    pub startup_cpu: Option<f64>,
    pub sync: Phase,
    pub vs_change: Phase,
    pub churn: Phase,
    pub reconnect: Phase,
    /// Control-plane CPU seconds over the whole run, and its peak RSS (KiB).
    pub total_cpu: Option<f64>,
    pub peak_rss_kib: Option<u64>,
}

impl RunResult {
    /// The phases, named as in the report.
    pub fn phases(&self) -> [(&'static str, &Phase); 4] {
        [
            ("initial sync", &self.sync),
            ("VirtualService change", &self.vs_change),
            ("endpoint churn", &self.churn),
            ("10 % reconnect", &self.reconnect),
        ]
    }
}

/// Generates the mesh, runs the control plane and the proxies, measures every phase.
/// A phase that does not converge is reported as such and the later ones are not run.
pub async fn run(opts: &Options) -> anyhow::Result<RunResult> {
    opts.check()?;
    let root = tempfile::Builder::new()
        .prefix("weft-scale-")
        .tempdir()
        .context("creating a temp folder")?;
    let mesh = mesh::generate(root.path(), opts.services).context("writing the mesh")?;
    let started = Instant::now();
    let mut control =
        control::Control::start(&opts.weft, &mesh.config, root.path(), opts.timeout).await?;
    let startup = started.elapsed();
    let startup_cpu = control.cpu_seconds();
    let who = (0..opts.proxies)
        .map(|i| sim::Identity::sidecar(mesh::workload(i), mesh::namespace(i)))
        .collect();
    let fleet = Arc::new(sim::Fleet::new(control.grpc.clone(), who));
    let mut bench = Bench {
        control: &mut control,
        fleet,
        mesh: &mesh,
        timeout: opts.timeout,
    };
    let sync = bench.initial_sync().await;
    let vs_change = if sync.converged() {
        bench.virtual_service_change().await
    } else {
        Phase::not_run()
    };
    let churn = if vs_change.converged() {
        bench
            .endpoint_churn(opts.churn_rate, opts.churn_changes())
            .await
    } else {
        Phase::not_run()
    };
    let reconnect = if churn.converged() {
        bench.reconnect_tenth().await
    } else {
        Phase::not_run()
    };
    drop(bench);
    let (total_cpu, peak_rss_kib) = (control.cpu_seconds(), control.peak_rss_kib());
    control.stop().await;
    Ok(RunResult {
        services: opts.services,
        proxies: opts.proxies,
        resources: mesh::resource_count(opts.services),
        startup,
        startup_cpu,
        sync,
        vs_change,
        churn,
        reconnect,
        total_cpu,
        peak_rss_kib,
    })
}

/// Finds the `weft` binary of a build profile: `$WEFT`, else beside the running
/// executable (or one folder up, for test binaries in `deps/`), else under
/// `$CARGO_TARGET_DIR` or the repository's `target/`.
pub fn find_weft(profile: &str) -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("WEFT").map(PathBuf::from) {
        return path
            .is_file()
            .then_some(path.clone())
            .ok_or_else(|| format!("WEFT={} is not a file", path.display()));
    }
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(PathBuf::from))
    {
        candidates.push(dir.join("weft"));
        if let Some(up) = dir.parent() {
            candidates.push(up.join("weft"));
        }
    }
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or(repo.join("target"));
    candidates.push(target.join(profile).join("weft"));
    candidates.retain(|c| c.parent().is_some_and(|d| d.ends_with(profile)));
    candidates.iter().find(|c| c.is_file()).cloned().ok_or_else(|| {
        let looked: Vec<String> = candidates.iter().map(|c| c.display().to_string()).collect();
        format!(
            "no {profile} weft binary (looked at {}): build it with `cargo build{} -p weft`, or set WEFT=/path/to/weft",
            looked.join(", "),
            if profile == "release" { " --release" } else { "" }
        )
    })
}
