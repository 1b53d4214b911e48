//! `weft-scale`: the control-plane scale benchmark's command line. One run
//! (`--services N --proxies M`) or the matrix (1000 × 100, then 10000 × 1000); prints the
//! date, machine, commit, a markdown table and per-run details. Ctrl-C stops the control
//! plane it started.
#![forbid(unsafe_code)]

use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;
use weft_scale_bench::{find_weft, report, run, Options, RunResult};

/// Measures weft's control plane: a generated mesh of N services, the real `weft
/// control`, M simulated proxies on real gRPC streams.
#[derive(Parser)]
#[command(name = "weft-scale")]
struct Args {
    /// Services in the generated mesh (10 per namespace).
    #[arg(long, default_value_t = 1000)]
    services: usize,
    /// Simulated proxies, each the sidecar of its own WorkloadEntry (at most --services).
    #[arg(long, default_value_t = 100)]
    proxies: usize,
    /// Run 1000 × 100, then 10000 × 1000 (instead of --services/--proxies).
    #[arg(long, conflicts_with_all = ["services", "proxies"])]
    matrix: bool,
    /// Endpoint changes per second during the churn phase.
    #[arg(long, default_value_t = 10.0)]
    churn_rate: f64,
    /// How long the churn phase makes changes, in seconds.
    #[arg(long, default_value_t = 5.0)]
    churn_secs: f64,
    /// Per-phase timeout in seconds: a phase that has not converged by then is reported
    /// as such.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
    /// Instead: one real `weft proxy`, Sidecar-scoped to ten hosts, in a mesh of 10 and of
    /// 10,000 services; prints its RSS in each (it should not grow with the mesh).
    #[arg(long, conflicts_with_all = ["services", "proxies", "matrix"])]
    proxy_rss: bool,
    /// The weft binary (default: $WEFT, else the release `weft` beside this binary).
    #[arg(long)]
    weft: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let weft = match args.weft.clone() {
        Some(path) => path,
        None => find_weft("release").map_err(anyhow::Error::msg)?,
    };
    if args.proxy_rss {
        return proxy_rss(&weft, Duration::from_secs(args.timeout_secs)).await;
    }
    let sizes = if args.matrix {
        vec![(1000, 100), (10_000, 1000)]
    } else {
        vec![(args.services, args.proxies)]
    };
    let options = sizes.into_iter().map(|(services, proxies)| Options {
        weft: weft.clone(),
        services,
        proxies,
        churn_rate: args.churn_rate,
        churn_secs: args.churn_secs,
        timeout: Duration::from_secs(args.timeout_secs),
    });
    let options: Vec<Options> = options.collect();
    tokio::select! {
        r = run_all(&options) => r,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted; the control plane was stopped"),
    }
}

async fn proxy_rss(weft: &std::path::Path, timeout: Duration) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for services in [10, 10_000] {
        eprintln!("weft-scale: one proxy in a mesh of {services} services");
        rows.push(weft_scale_bench::proxy_rss::measure(weft, services, timeout).await?);
    }
    let command: Vec<String> = std::env::args().collect();
    println!("{}command: {}\n", report::header(), command.join(" "));
    println!("{}", weft_scale_bench::proxy_rss::table(&rows));
    Ok(())
}

async fn run_all(options: &[Options]) -> anyhow::Result<()> {
    let header = report::header();
    let mut runs: Vec<RunResult> = Vec::new();
    for opts in options {
        eprintln!(
            "weft-scale: {} services × {} proxies, churn {} changes at {}/s, timeout {} s, control plane {}",
            opts.services,
            opts.proxies,
            opts.churn_changes(),
            opts.churn_rate,
            opts.timeout.as_secs(),
            opts.weft.display()
        );
        let result = run(opts).await?;
        eprint!("{}", report::details(&result));
        runs.push(result);
    }
    let command: Vec<String> = std::env::args().collect();
    println!("{header}command: {}\n", command.join(" "));
    println!("{}", report::table(&runs));
    for r in &runs {
        println!("{}", report::details(r));
    }
    Ok(())
}
