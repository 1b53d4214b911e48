//! The local-mesh supervisor behind `weft up`: runs a whole mesh on one machine as separate OS processes — control plane,
//! gateways, and per workload an app plus its sidecar — waits until traffic can flow,
//! restarts any process that dies (on the same addresses, after a backoff: see
//! [`crate::restart`]), optionally drives traffic, and stops everything it started on
//! shutdown.

mod command;
mod prometheus;
mod sockets;
mod view;

use crate::plan::{App, Plan};
use crate::process::{self, Msg, Running};
use crate::restart::{Backoff, Decision};
use anyhow::bail;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How to run a local mesh.
#[derive(Debug, Clone)]
pub struct UpOptions {
    pub config_dir: PathBuf,
    pub state_dir: PathBuf,
    /// The weft executable children are started from.
    pub weft: PathBuf,
    pub trust_domain: String,
    /// A user-given CA (cert, key) for the control plane instead of a generated root.
    pub ca_files: Option<(PathBuf, PathBuf)>,
    /// Istio's plug-in CA folder for the control plane (`--cacerts`).
    pub cacerts: Option<PathBuf>,
    /// Lifetime of workload certificates (the control plane's `--cert-ttl-secs`).
    pub cert_ttl: Duration,
    pub traffic: Option<TrafficOptions>,
    /// Printed with the HTTPS gateway ports: how to reach them with curl.
    pub https_hint: Option<crate::examples::HttpsHint>,
    /// The DNS server every proxy resolves external names with (`--dns-server`).
    pub dns_server: Option<std::net::SocketAddr>,
}

/// The built-in traffic generator's settings.
#[derive(Debug, Clone)]
pub struct TrafficOptions {
    pub rps: u32,
    /// Run this long, print the final table and exit (0 only if success >= 99%).
    pub duration: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Control,
    Gateway,
    App,
    Sidecar,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Control => "control",
            Role::Gateway => "gateway",
            Role::App => "app",
            Role::Sidecar => "sidecar",
        }
    }
}

pub(crate) struct Proc {
    name: String,
    role: Role,
    workload: Option<(String, String)>,
    app: Option<App>,
    running: Option<Running>,
    generation: u64,
    restarts: u32,
    ready: Option<Value>,
    listeners: BTreeMap<u32, String>,
    /// Labelled listeners -> address: TCP ones by [`crate::status::tcp_label`], HTTPS
    /// gateway ports as `https/<port>`.
    tcp: BTreeMap<String, String>,
    /// The config version a proxy last said it applied.
    applied: Option<u64>,
    backoff: Backoff,
    given_up: bool,
    /// A sidecar merges its app's metrics from here.
    app_metrics: Option<crate::plan::AppMetrics>,
}

/// The supervisor of one local mesh.
pub struct Mesh {
    pub(crate) opts: UpOptions,
    pub(crate) procs: Vec<Proc>,
    tx: mpsc::UnboundedSender<Msg>,
    pub(crate) rx: mpsc::UnboundedReceiver<Msg>,
    shutting_down: bool,
    /// What the running config loads but does not enforce yet (for `weft status`).
    pub(crate) not_enforced: Vec<String>,
    /// The control plane's last report that every connected proxy accepted its latest
    /// config: proxy id -> version.
    converged: BTreeMap<String, u64>,
}

const START_TIMEOUT: Duration = Duration::from_secs(30);

fn field(v: &Option<Value>, key: &str) -> Option<String> {
    v.as_ref()?.get(key)?.as_str().map(str::to_string)
}

impl Mesh {
    pub(crate) fn new(opts: UpOptions, plan: &Plan) -> Mesh {
        let (tx, rx) = mpsc::unbounded_channel();
        let mk = |name: String, role, workload, app| Proc {
            name,
            role,
            workload,
            app,
            running: None,
            generation: 0,
            restarts: 0,
            ready: None,
            listeners: BTreeMap::new(),
            tcp: BTreeMap::new(),
            applied: None,
            backoff: Backoff::default(),
            given_up: false,
            app_metrics: None,
        };
        let mut procs = vec![mk("control".into(), Role::Control, None, None)];
        for g in &plan.gateways {
            procs.push(mk(
                format!("gateway-{}.{}", g.name, g.namespace),
                Role::Gateway,
                Some((g.name.clone(), g.namespace.clone())),
                None,
            ));
        }
        for w in &plan.workloads {
            let wl = Some((w.name.clone(), w.namespace.clone()));
            let app = mk(
                format!("app-{}.{}", w.name, w.namespace),
                Role::App,
                wl.clone(),
                Some(w.app.clone()),
            );
            let mut sidecar = mk(
                format!("sidecar-{}.{}", w.name, w.namespace),
                Role::Sidecar,
                wl,
                None,
            );
            sidecar.app_metrics = w.metrics.clone();
            procs.extend([app, sidecar]);
        }
        Mesh {
            opts,
            procs,
            tx,
            rx,
            shutting_down: false,
            not_enforced: Vec::new(),
            converged: BTreeMap::new(),
        }
    }

    /// The order processes first start in: as listed, except that a command app with a
    /// configured address starts after its sidecar. It listens where its config says, so
    /// its sidecar can start first and the app is told the outbound address the sidecar
    /// actually bound (no port picked ahead that something else could take meanwhile). A
    /// demo app, or a command app without an address, reports the address it bound, which
    /// its sidecar needs, so it starts first (and is not told its sidecar's outbound).
    pub(crate) fn start_order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.procs.len()).collect();
        for i in 0..order.len().saturating_sub(1) {
            let (a, b) = (&self.procs[order[i]], &self.procs[order[i + 1]]);
            if matches!(
                a.app,
                Some(App::Command {
                    address: Some(_),
                    ..
                })
            ) && b.role == Role::Sidecar
                && a.workload == b.workload
            {
                order.swap(i, i + 1);
            }
        }
        order
    }

    pub(crate) fn control_addr(&self) -> String {
        field(&self.procs[0].ready, "grpc").unwrap_or_default()
    }

    fn start(&mut self, i: usize) -> anyhow::Result<()> {
        let (program, args) = self.command(i);
        let env = self.env(i);
        let p = &mut self.procs[i];
        p.generation += 1;
        let log = process::log_path(&self.opts.state_dir, &p.name);
        p.running = Some(process::spawn(
            &p.name,
            p.generation,
            &program,
            &args,
            &env,
            &log,
            self.tx.clone(),
        )?);
        p.backoff.started(Instant::now());
        Ok(())
    }

    /// Process `i` exited or failed to start (`what` says which): restart it after its
    /// backoff, or give up on it. Never while shutting down.
    fn exited(&mut self, i: usize, what: &str) {
        if self.shutting_down {
            return;
        }
        let p = &mut self.procs[i];
        let log = process::log_path(&self.opts.state_dir, &p.name);
        match p.backoff.exited(Instant::now()) {
            Decision::GiveUp => {
                p.given_up = true;
                eprintln!(
                    "weft: {} {} {what}; that is {} exits within {:?}, not restarting it. Logs: {}",
                    p.role.as_str(),
                    p.name,
                    crate::restart::MAX_EXITS,
                    crate::restart::EXIT_WINDOW,
                    log.display()
                );
            }
            Decision::RestartIn(delay) => {
                p.restarts += 1;
                eprintln!(
                    "weft: {} {} {what}; restarting it (restart #{}) in {delay:?}",
                    p.role.as_str(),
                    p.name,
                    p.restarts
                );
                let (tx, name, generation) = (self.tx.clone(), p.name.clone(), p.generation);
                // A timer, not synchronization: the restart itself happens in `handle`.
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = tx.send(Msg::Restart { name, generation });
                });
            }
        }
        let _ = self.write_status();
    }

    pub(crate) fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Event {
                name,
                generation,
                event,
            } => {
                let Some(p) = self
                    .procs
                    .iter_mut()
                    .find(|p| p.name == name && p.generation == generation)
                else {
                    return;
                };
                match event.get("event").and_then(Value::as_str) {
                    Some("ready") => p.ready = Some(event),
                    Some("listener") => {
                        if let (Some(port), Some(addr)) =
                            (event["port"].as_u64(), event["address"].as_str())
                        {
                            let name = event["name"].as_str().unwrap_or_default();
                            if let Some(tcp) = crate::status::tcp_label(name, port) {
                                p.tcp.insert(tcp, addr.to_string());
                            }
                            if event["https"].as_bool() == Some(true) {
                                p.tcp.insert(format!("https/{port}"), addr.to_string());
                            }
                            // Gateway ports (HTTP and TCP) come back on the same address.
                            if !name.starts_with("outbound_tcp|") {
                                p.listeners.insert(port as u32, addr.to_string());
                            }
                        }
                    }
                    Some("config_applied") if p.role != Role::Control => {
                        p.applied = event["version"].as_str().and_then(|v| v.parse().ok());
                    }
                    Some("converged") => {
                        self.converged = event["proxies"]
                            .as_object()
                            .into_iter()
                            .flatten()
                            .filter_map(|(id, v)| Some((id.clone(), v.as_str()?.parse().ok()?)))
                            .collect();
                    }
                    Some("tls_server_unserved") => {
                        eprintln!(
                            "weft: {} does not serve the TLS server {} on {}: {}",
                            p.name,
                            event["server"].as_str().unwrap_or_default(),
                            event["listener"].as_str().unwrap_or_default(),
                            event["error"].as_str().unwrap_or_default()
                        );
                    }
                    Some("push_rejected") => {
                        eprintln!(
                            "weft: {} rejected config {} and keeps its last good one: {}",
                            p.name,
                            event["version"].as_str().unwrap_or_default(),
                            event["error"].as_str().unwrap_or_default()
                        );
                    }
                    Some("proxy_unserved") => {
                        eprintln!(
                            "weft: the control plane cannot serve {} its config: {}",
                            event["proxy"].as_str().unwrap_or_default(),
                            event["reason"].as_str().unwrap_or_default()
                        );
                    }
                    Some("config_rejected") => {
                        eprintln!(
                            "weft: config change rejected; the last good config stays in force:"
                        );
                        for e in event["errors"].as_array().into_iter().flatten() {
                            eprintln!("  {}", e.as_str().unwrap_or_default());
                        }
                    }
                    Some("config_applied") => {
                        eprintln!("weft: config reloaded ({} resources)", event["resources"]);
                        let lines = |key: &str| -> Vec<String> {
                            event[key]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .filter_map(|v| v.as_str().map(str::to_string))
                                .collect()
                        };
                        let new = lines("not_enforced_new");
                        if !new.is_empty() {
                            eprintln!("weft: the new config loads but does not enforce yet:");
                            for n in &new {
                                eprintln!("  {n}");
                            }
                        }
                        self.not_enforced = lines("not_enforced");
                        let _ = self.write_status();
                    }
                    _ => {}
                }
            }
            Msg::Exited {
                name,
                generation,
                status,
            } => {
                let Some(i) = self
                    .procs
                    .iter()
                    .position(|p| p.name == name && p.generation == generation)
                else {
                    return;
                };
                self.procs[i].running = None;
                self.exited(i, &format!("exited ({status})"));
            }
            Msg::Restart { name, generation } => {
                let Some(i) = self.procs.iter().position(|p| {
                    p.name == name
                        && p.generation == generation
                        && p.running.is_none()
                        && !p.given_up
                }) else {
                    return;
                };
                if self.shutting_down {
                    return;
                }
                match self.start(i) {
                    Ok(()) => {
                        let _ = self.write_status();
                    }
                    Err(e) => self.exited(i, &format!("failed to start ({e:#})")),
                }
            }
        }
    }

    /// Processes messages until `cond` holds, or fails after `timeout`.
    async fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        cond: impl Fn(&Mesh) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        while !cond(self) {
            if let Some(p) = self.procs.iter().find(|p| p.given_up) {
                bail!(
                    "{} {} keeps exiting; see {}",
                    p.role.as_str(),
                    p.name,
                    process::log_path(&self.opts.state_dir, &p.name).display()
                );
            }
            tokio::select! {
                msg = self.rx.recv() => self.handle(msg.expect("the supervisor holds a sender")),
                _ = tokio::time::sleep_until(deadline) => bail!("timed out after {timeout:?} waiting for {what}; logs are in {}", self.opts.state_dir.join("logs").display()),
            }
        }
        Ok(())
    }

    pub(crate) async fn start_and_wait(&mut self, i: usize) -> anyhow::Result<()> {
        self.start(i)?;
        let name = self.procs[i].name.clone();
        if matches!(
            self.procs[i].app,
            Some(App::Command {
                address: Some(_),
                ..
            })
        ) {
            return Ok(());
        }
        self.wait_for(&format!("{name} to start"), START_TIMEOUT, |m| {
            m.procs[i].ready.is_some()
        })
        .await
    }

    /// Every proxy has accepted the latest config the control plane sent it (with every
    /// running sidecar registered) and has reported applying it — its gateway listeners
    /// included. A gateway that no Gateway selects yet converges with no listener (idle).
    pub(crate) async fn converge(&mut self) -> anyhow::Result<()> {
        self.wait_for("every proxy to accept its config", START_TIMEOUT, |m| {
            m.converged_now()
        })
        .await
    }

    fn converged_now(&self) -> bool {
        let proxies: Vec<&Proc> = self
            .procs
            .iter()
            .filter(|p| matches!(p.role, Role::Gateway | Role::Sidecar))
            .collect();
        proxies.len() == self.converged.len()
            && proxies.iter().all(|p| {
                let Some((name, ns)) = &p.workload else {
                    return false;
                };
                let id = format!("{}~{name}.{ns}", p.role.as_str());
                matches!(
                    (self.converged.get(&id), p.applied),
                    (Some(want), Some(have)) if have >= *want
                )
            })
    }

    pub(crate) fn write_status(&self) -> anyhow::Result<()> {
        crate::status::write(&self.opts.state_dir, &self.status())
    }

    pub(crate) fn gateway_urls(&self) -> Vec<(u32, String)> {
        self.procs
            .iter()
            .filter(|p| p.role == Role::Gateway)
            .flat_map(|p| {
                p.listeners.iter().map(|(port, a)| {
                    let scheme = if p.tcp.contains_key(&format!("tcp/{port}")) {
                        "tcp"
                    } else if p.tcp.contains_key(&format!("https/{port}")) {
                        "https"
                    } else {
                        "http"
                    };
                    (*port, format!("{scheme}://{a}"))
                })
            })
            .collect()
    }

    /// Kills every process group, waits (up to 5 s) until every child is reaped, and writes
    /// the final status. Pending restarts are dropped. This is the only way command apps
    /// (`sh -c`, not watching their stdin) are stopped: if the supervisor is SIGKILLed instead,
    /// their process groups keep running (see [`crate::process`]).
    pub(crate) async fn shutdown(&mut self) {
        self.shutting_down = true;
        for p in &mut self.procs {
            if let Some(r) = p.running.as_mut() {
                r.kill();
            }
        }
        // Not `wait_for`: that gives up as soon as some process was given up on, and then the
        // runtime could end before the kills above have run.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.procs.iter().any(|p| p.running.is_some()) {
            tokio::select! {
                msg = self.rx.recv() => self.handle(msg.expect("the supervisor holds a sender")),
                _ = tokio::time::sleep_until(deadline) => {
                    eprintln!("weft: some processes did not stop within 5s");
                    break;
                }
            }
        }
        let _ = self.write_status();
        self.remove_sockets();
    }
}
