//! `weft up` from start to stop: load and plan the folder, start every process through the
//! supervisor, wait until traffic can flow, print the summary, optionally drive traffic, and
//! stop everything on shutdown.

use crate::mesh::{Mesh, UpOptions};
use anyhow::Context;
use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

/// Runs the mesh until `shutdown` resolves (or the traffic run ends). Returns the exit code.
pub async fn up(opts: UpOptions, shutdown: impl Future<Output = ()>) -> anyhow::Result<i32> {
    up_with(opts, shutdown, None).await
}

/// [`up`], and once the mesh is ready, `egress`'s checks through its sidecars (`weft
/// demo`): a failed check makes the exit code non-zero.
pub(crate) async fn up_with(
    opts: UpOptions,
    shutdown: impl Future<Output = ()>,
    egress: Option<&crate::demo_egress::DemoEgress>,
) -> anyhow::Result<i32> {
    let weft_api::ValidConfig {
        resources,
        unsupported,
        warnings,
    } = weft_api::load_valid_report(&opts.config_dir).map_err(|errors| {
        anyhow::anyhow!(
            "the mesh config in {} does not load:\n  {}",
            opts.config_dir.display(),
            errors.join("\n  ")
        )
    })?;
    if !warnings.is_empty() {
        eprintln!(
            "weft: config warnings ({} items; Istio accepts these too, and says this about them):",
            warnings.len()
        );
        for w in &warnings {
            eprintln!("  {w}");
        }
    }
    let plan = crate::plan::plan(&resources, &opts.trust_domain)
        .map_err(|e| anyhow::anyhow!("{}", e.join("\n")))?;
    let not_enforced: Vec<String> = weft_model::not_enforced(&resources)
        .iter()
        .map(|n| format!("{} ({}): {}", n.resource, n.location, n.what))
        .chain(unsupported)
        .collect();
    if !not_enforced.is_empty() {
        eprintln!("weft: loaded but not enforced yet ({} items; weft does not implement these semantics yet):", not_enforced.len());
        for n in &not_enforced {
            eprintln!("  {n}");
        }
    }
    std::fs::create_dir_all(opts.state_dir.join("logs"))
        .with_context(|| format!("creating {}", opts.state_dir.display()))?;
    let mut mesh = Mesh::new(opts.clone(), &plan);
    mesh.not_enforced = not_enforced;
    // Fresh secrets per run, one per proxy: only processes started by this supervisor (or
    // the same user, who can read the 0600 files) can talk to this mesh's control plane,
    // and each token admits only the proxy it was made for.
    mesh.create_tokens().with_context(|| {
        format!(
            "creating the proxies' tokens in {}",
            mesh.opts.state_dir.display()
        )
    })?;
    mesh.create_socket_dir()?;
    tokio::pin!(shutdown);
    let started = async {
        for i in mesh.start_order() {
            mesh.start_and_wait(i).await?;
        }
        mesh.converge().await
    };
    let result = tokio::select! {
        biased;
        _ = &mut shutdown => Err(anyhow::anyhow!("interrupted while starting")),
        r = started => r,
    };
    if let Err(e) = result {
        mesh.shutdown().await;
        return Err(e);
    }
    // Whatever happens from here on, stop every process (and process group) we started.
    let result = run(&mut mesh, &resources, shutdown, egress).await;
    eprintln!("weft: stopping the mesh");
    mesh.shutdown().await;
    result
}

/// The mesh is up: print the summary, drive traffic if asked, supervise until `shutdown`.
async fn run(
    mesh: &mut Mesh,
    resources: &[weft_api::Resource],
    shutdown: impl Future<Output = ()>,
    egress: Option<&crate::demo_egress::DemoEgress>,
) -> anyhow::Result<i32> {
    tokio::pin!(shutdown);
    let opts = mesh.opts.clone();
    mesh.write_status()?;
    mesh.write_prometheus()?;
    let dashboard = start_dashboard(&opts.state_dir).await;
    print_summary(mesh, dashboard.as_ref().map(|d| d.1));
    let egress_ok = match egress {
        Some(e) => e.check(mesh).await,
        None => true,
    };

    let mut traffic = None;
    let urls = mesh.gateway_urls();
    let http_url = urls.iter().find(|(_, u)| u.starts_with("http://"));
    if let (Some(t), Some((_, url))) = (&opts.traffic, http_url) {
        let routes = crate::routes::load_routes(resources);
        let target = url
            .trim_start_matches("http://")
            .parse()
            .context("gateway address")?;
        let cfg = weft_demo::LoadConfig {
            target,
            routes,
            rps: t.rps,
            concurrency: 8,
            duration: t.duration,
            report_every: Duration::from_secs(1),
        };
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(weft_demo::run_load(cfg, std::io::stdout(), async move {
            let _ = stop_rx.await;
        }));
        traffic = Some((task, stop_tx));
    }
    let mut code = 0;
    loop {
        // Shutdown first: once it is asked for, no exit is handled as a reason to restart.
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            msg = mesh.rx.recv() => mesh.handle(msg.expect("the supervisor holds a sender")),
            r = async { (&mut traffic.as_mut().expect("guarded").0).await }, if traffic.is_some() => {
                traffic = None;
                let summary = r.context("traffic generator")??;
                println!("\nfinal ({:.1}s):\n{}", summary.elapsed.as_secs_f64(), weft_demo::render_table(&summary));
                let ok = summary.total > 0 && summary.success_ratio() >= 0.99;
                println!("success {:.2}% over {} requests: {}", summary.success_ratio() * 100.0, summary.total, if ok { "PASS (>= 99%)" } else { "FAIL (< 99%)" });
                code = if ok { 0 } else { 1 };
                break;
            }
        }
    }
    if let Some((task, stop)) = traffic {
        let _ = stop.send(());
        if let Ok(Ok(summary)) = task.await {
            println!(
                "\nfinal ({:.1}s):\n{}",
                summary.elapsed.as_secs_f64(),
                weft_demo::render_table(&summary)
            );
        }
    }
    if !egress_ok {
        println!("egress: a check through a sidecar failed (see above)");
        code = code.max(1);
    }
    Ok(code)
}

/// A task aborted when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Serves the mesh's dashboard on a free loopback port for as long as the mesh runs;
/// `None` (logged) if it cannot bind.
async fn start_dashboard(
    state_dir: &std::path::Path,
) -> Option<(AbortOnDrop, std::net::SocketAddr)> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let state_dir = state_dir.to_path_buf();
    let task = tokio::spawn(async move {
        let listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        if let Err(e) = crate::dashboard::serve(&state_dir, listen, |a| {
            let _ = tx.send(a);
        })
        .await
        {
            eprintln!("weft: the dashboard is not served: {e:#}");
        }
    });
    let addr = rx.await.ok()?;
    Some((AbortOnDrop(task), addr))
}

fn print_summary(mesh: &Mesh, dashboard: Option<std::net::SocketAddr>) {
    let status = mesh.status();
    println!(
        "weft: mesh up from {} (state: {})",
        mesh.opts.config_dir.display(),
        mesh.opts.state_dir.display()
    );
    print!("{}", crate::status::render(&status));
    for (port, url) in mesh.gateway_urls() {
        println!("gateway port {port}: {url}");
        if let (Some(h), Some(addr)) = (&mesh.opts.https_hint, url.strip_prefix("https://")) {
            println!("  {}", h.curl(addr));
        }
    }
    let dashboard = dashboard.map(|a| format!("http://{a}/"));
    if let Some(url) = &dashboard {
        println!("dashboard: {url}");
    }
    let event = serde_json::json!({
        "event": "mesh_ready",
        "dashboard": dashboard,
        "state_dir": mesh.opts.state_dir,
        "control": mesh.control_addr(),
        "gateways": mesh.gateway_urls().into_iter().map(|(p, u)| (p.to_string(), u)).collect::<BTreeMap<_, _>>(),
        "processes": status.processes,
    });
    // The machine-readable line is for programs driving `weft up` (tests, scripts); a
    // person at a terminal gets only the table above.
    if !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        println!("{event}");
    }
}
