//! The local-mesh supervisor behind `weft up`: runs a whole mesh on one machine as separate OS processes — control plane,
//! gateways, and per workload an app plus its sidecar — waits until traffic can flow,
//! restarts any process that dies (on the same addresses), optionally drives traffic, and
//! stops everything it started on shutdown.

use crate::plan::{App, Plan};
use crate::process::{self, Msg, Running};
use crate::status::{MeshStatus, ProcStatus};
use anyhow::bail;
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
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
    pub traffic: Option<TrafficOptions>,
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
    exits: VecDeque<Instant>,
    given_up: bool,
}

/// The supervisor of one local mesh.
pub struct Mesh {
    pub(crate) opts: UpOptions,
    pub(crate) procs: Vec<Proc>,
    tx: mpsc::UnboundedSender<Msg>,
    pub(crate) rx: mpsc::UnboundedReceiver<Msg>,
    shutting_down: bool,
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
            exits: VecDeque::new(),
            given_up: false,
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
            procs.push(mk(
                format!("app-{}.{}", w.name, w.namespace),
                Role::App,
                wl.clone(),
                Some(w.app.clone()),
            ));
            procs.push(mk(
                format!("sidecar-{}.{}", w.name, w.namespace),
                Role::Sidecar,
                wl,
                None,
            ));
        }
        Mesh {
            opts,
            procs,
            tx,
            rx,
            shutting_down: false,
        }
    }

    pub(crate) fn control_addr(&self) -> String {
        field(&self.procs[0].ready, "grpc").unwrap_or_default()
    }

    fn app_addr(&self, workload: &(String, String)) -> Option<String> {
        let p = self
            .procs
            .iter()
            .find(|p| p.role == Role::App && p.workload.as_ref() == Some(workload))?;
        match &p.app {
            Some(App::Command { address, .. }) => Some(address.clone()),
            _ => field(&p.ready, "address"),
        }
    }

    /// Program and arguments for (re)starting process `i`, reusing its previous addresses.
    fn command(&self, i: usize) -> (PathBuf, Vec<String>) {
        let p = &self.procs[i];
        let s = |v: &str| v.to_string();
        let weft = self.opts.weft.clone();
        let prev = |k: &str| field(&p.ready, k).unwrap_or_else(|| "127.0.0.1:0".into());
        let (name, ns) = p.workload.clone().unwrap_or_default();
        let mut args = match p.role {
            Role::Control => vec![
                s("control"),
                s("--config"),
                self.opts.config_dir.display().to_string(),
                s("--state-dir"),
                self.opts.state_dir.display().to_string(),
                s("--listen"),
                prev("grpc"),
                s("--trust-domain"),
                self.opts.trust_domain.clone(),
            ]
            .into_iter()
            .chain(self.opts.ca_files.iter().flat_map(|(c, k)| {
                [
                    s("--ca-cert"),
                    c.display().to_string(),
                    s("--ca-key"),
                    k.display().to_string(),
                ]
            }))
            .collect(),
            Role::Gateway | Role::Sidecar => {
                let mut a = vec![
                    s("proxy"),
                    s("--role"),
                    s(p.role.as_str()),
                    s("--workload"),
                    name.clone(),
                    s("--namespace"),
                    ns.clone(),
                ];
                a.extend([
                    s("--control"),
                    self.control_addr(),
                    s("--admin-listen"),
                    prev("admin"),
                ]);
                for (port, addr) in &p.listeners {
                    a.extend([s("--port"), format!("{port}={addr}")]);
                }
                if p.role == Role::Sidecar {
                    let app = self.app_addr(&(name, ns)).unwrap_or_default();
                    a.extend([
                        s("--app"),
                        app,
                        s("--inbound-listen"),
                        prev("inbound"),
                        s("--outbound-listen"),
                        prev("outbound"),
                    ]);
                }
                a
            }
            Role::App => match &p.app {
                Some(App::Demo {
                    service,
                    version,
                    latency,
                    error_rate,
                    identity,
                }) => vec![
                    s("demo-app"),
                    s("--service"),
                    service.clone(),
                    s("--version"),
                    version.clone(),
                    s("--latency-ms"),
                    latency.as_millis().to_string(),
                    s("--error-rate"),
                    error_rate.to_string(),
                    s("--identity"),
                    identity.clone(),
                    s("--listen"),
                    prev("address"),
                ],
                Some(App::Command { command, .. }) => {
                    return (PathBuf::from("/bin/sh"), vec![s("-c"), command.clone()])
                }
                None => vec![],
            },
        };
        args.push(s("--exit-with-parent"));
        (weft, args)
    }

    fn start(&mut self, i: usize) -> anyhow::Result<()> {
        let (program, args) = self.command(i);
        let p = &mut self.procs[i];
        p.generation += 1;
        let log = process::log_path(&self.opts.state_dir, &p.name);
        p.running = Some(process::spawn(
            &p.name,
            p.generation,
            &program,
            &args,
            &log,
            self.tx.clone(),
        )?);
        Ok(())
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
                            p.listeners.insert(port as u32, addr.to_string());
                        }
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
                        eprintln!("weft: config reloaded ({} resources)", event["resources"])
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
                if self.shutting_down {
                    return;
                }
                let p = &mut self.procs[i];
                let now = Instant::now();
                p.exits.push_back(now);
                while p
                    .exits
                    .front()
                    .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(30))
                {
                    p.exits.pop_front();
                }
                if p.exits.len() > 5 {
                    p.given_up = true;
                    eprintln!(
                        "weft: {} {} exited ({status}) 6 times in 30s; not restarting it. Logs: {}",
                        p.role.as_str(),
                        p.name,
                        process::log_path(&self.opts.state_dir, &p.name).display()
                    );
                    return;
                }
                p.restarts += 1;
                eprintln!(
                    "weft: {} {} exited ({status}); restarting it (restart #{})",
                    p.role.as_str(),
                    p.name,
                    p.restarts
                );
                if let Err(e) = self.start(i) {
                    eprintln!("weft: restarting {name} failed: {e:#}");
                }
                let _ = self.write_status();
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
        if matches!(self.procs[i].app, Some(App::Command { .. })) {
            return Ok(());
        }
        self.wait_for(&format!("{name} to start"), START_TIMEOUT, |m| {
            m.procs[i].ready.is_some()
        })
        .await
    }

    /// Every gateway listens, and knows an endpoint for every running sidecar.
    pub(crate) async fn converge(&mut self) -> anyhow::Result<()> {
        self.wait_for("gateways to receive their config", START_TIMEOUT, |m| {
            m.procs
                .iter()
                .filter(|p| p.role == Role::Gateway)
                .all(|p| !p.listeners.is_empty())
        })
        .await?;
        let inbound: Vec<String> = self
            .procs
            .iter()
            .filter(|p| p.role == Role::Sidecar)
            .filter_map(|p| field(&p.ready, "inbound"))
            .collect();
        let admins: Vec<String> = self
            .procs
            .iter()
            .filter(|p| p.role == Role::Gateway)
            .filter_map(|p| field(&p.ready, "admin"))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        for admin in admins {
            loop {
                let dump = crate::status::http_get(&admin, "/config_dump")
                    .await
                    .unwrap_or_default();
                let missing: Vec<&String> = inbound
                    .iter()
                    .filter(|a| !dump.contains(a.as_str()))
                    .collect();
                if missing.is_empty() {
                    break;
                }
                if Instant::now() > deadline {
                    eprintln!("weft: gateway at {admin} has no route to sidecars {missing:?} (not behind any gateway route?)");
                    break;
                }
                // Readiness probe of another process: poll its admin endpoint.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    pub(crate) fn status(&self) -> MeshStatus {
        MeshStatus {
            config_dir: self.opts.config_dir.display().to_string(),
            supervisor_pid: std::process::id(),
            processes: self
                .procs
                .iter()
                .map(|p| ProcStatus {
                    name: p.name.clone(),
                    role: p.role.as_str().into(),
                    pid: p.running.as_ref().map(|r| r.pid),
                    restarts: p.restarts,
                    addresses: p
                        .ready
                        .as_ref()
                        .and_then(Value::as_object)
                        .map(|o| {
                            o.iter()
                                .filter(|(k, v)| {
                                    ["grpc", "admin", "inbound", "outbound", "address"]
                                        .contains(&k.as_str())
                                        && v.is_string()
                                })
                                .map(|(k, v)| {
                                    (k.clone(), v.as_str().unwrap_or_default().to_string())
                                })
                                .chain(
                                    p.listeners
                                        .iter()
                                        .map(|(port, a)| (format!("port {port}"), a.clone())),
                                )
                                .collect()
                        })
                        .unwrap_or_default(),
                })
                .collect(),
        }
    }

    pub(crate) fn write_status(&self) -> anyhow::Result<()> {
        crate::status::write(&self.opts.state_dir, &self.status())
    }

    pub(crate) fn gateway_urls(&self) -> Vec<(u32, String)> {
        self.procs
            .iter()
            .filter(|p| p.role == Role::Gateway)
            .flat_map(|p| {
                p.listeners
                    .iter()
                    .map(|(port, a)| (*port, format!("http://{a}")))
            })
            .collect()
    }

    pub(crate) async fn shutdown(&mut self) {
        self.shutting_down = true;
        for p in &mut self.procs {
            if let Some(r) = p.running.as_mut() {
                r.kill();
            }
        }
        let _ = self
            .wait_for("processes to stop", Duration::from_secs(5), |m| {
                m.procs.iter().all(|p| p.running.is_none())
            })
            .await;
        let _ = self.write_status();
    }
}
