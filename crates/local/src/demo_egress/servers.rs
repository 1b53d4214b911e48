//! Finding and starting the demo's servers outside the mesh: redis-server, PostgreSQL
//! (`initdb` + `postgres`, as the `postgres` user when the demo runs as root: postgres
//! refuses root), dnsmasq; and looking for a Kafka install.
//!
//! Each server leads its own process group (no terminal Ctrl-C reaches it; the demo stops
//! it), its stdout and stderr go to `<state>/logs/egress-<name>.log`.

use super::Kind;
use anyhow::{bail, Context};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// How long a server may take to answer after it was started.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running server outside the mesh.
pub(super) struct Server {
    name: &'static str,
    child: Child,
    /// The signal that stops it cleanly (PostgreSQL: INT, its fast shutdown).
    stop_signal: &'static str,
}

impl Server {
    pub(super) fn program(&self) -> &'static str {
        self.name
    }

    /// Sends the stop signal, waits up to 5 s, then kills the process group.
    pub(super) async fn stop(mut self) {
        let Some(pid) = self.child.id() else {
            return;
        };
        signal(pid, self.stop_signal).await;
        match tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await {
            Ok(_) => {
                // Whatever it left in its group.
                crate::process::kill_group(pid).await;
            }
            Err(_) => {
                tracing::warn!(
                    server = self.name,
                    pid,
                    "did not stop within 5s; killing it"
                );
                crate::process::kill_group(pid).await;
                let _ = self.child.kill().await;
            }
        }
        tracing::info!(server = self.name, pid, "stopped");
    }
}

/// What starting a service's server came to.
pub(super) enum Outcome {
    Started {
        server: Box<Server>,
        /// A folder to remove when the server is stopped.
        scratch: Option<PathBuf>,
    },
    Skipped(String),
}

async fn signal(pid: u32, sig: &str) {
    let _ = Command::new("/bin/kill")
        .args(["-s", sig, &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
}

/// `name` in one of `$PATH`'s folders.
pub(super) fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

pub(super) fn dnsmasq_program() -> Option<PathBuf> {
    let debian = PathBuf::from("/usr/sbin/dnsmasq");
    if debian.is_file() {
        return Some(debian);
    }
    on_path("dnsmasq")
}

/// The first 127.0.0.x (x from 2) other than `taken` where `port` can be bound now.
pub(super) fn free_loopback(port: u16, taken: &[Ipv4Addr]) -> Option<Ipv4Addr> {
    (2..=254)
        .map(|n| Ipv4Addr::new(127, 0, 0, n))
        .filter(|ip| !taken.contains(ip))
        .find(|ip| std::net::TcpListener::bind((*ip, port)).is_ok())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Spawns `program args` leading its own process group, output to the egress log.
fn spawn(
    name: &'static str,
    cmd: &mut Command,
    log_dir: &Path,
    stop_signal: &'static str,
) -> anyhow::Result<Server> {
    let log = log_dir.join(format!("egress-{name}.log"));
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .with_context(|| format!("opening log file {}", log.display()))?;
    let err = out.try_clone().context("duplicating a log file handle")?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("running {name}"))?;
    tracing::info!(server = name, pid = child.id(), log = %log.display(), "started");
    Ok(Server {
        name,
        child,
        stop_signal,
    })
}

/// Polls `ready` every 100 ms until it holds; fails if the server exits or time runs out.
async fn wait_ready<F, Fut>(server: &mut Server, log_dir: &Path, ready: F) -> anyhow::Result<()>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let log = log_dir.join(format!("egress-{}.log", server.name));
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = server.child.try_wait()? {
            bail!("{} exited ({status}); see {}", server.name, log.display());
        }
        if ready().await {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "{} did not answer within {READY_TIMEOUT:?}; see {}",
                server.name,
                log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts the server for `kind` on `addr`, data under `dir`, or says why it is skipped.
pub(super) async fn start(kind: Kind, addr: SocketAddr, dir: &Path) -> anyhow::Result<Outcome> {
    let logs = dir.parent().unwrap_or(dir).join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    match kind {
        Kind::Redis => redis(addr, dir, &logs).await,
        Kind::Postgres => postgres(addr, dir, &logs).await,
        Kind::Kafka => Ok(Outcome::Skipped(match kafka_install() {
            None => "Kafka not found: no $KAFKA_HOME/bin/kafka-server-start.sh and no kafka-server-start.sh on PATH".into(),
            Some(p) => format!("found {}, but the demo does not start Kafka yet", p.display()),
        })),
    }
}

fn kafka_install() -> Option<PathBuf> {
    std::env::var_os("KAFKA_HOME")
        .map(|h| PathBuf::from(h).join("bin/kafka-server-start.sh"))
        .filter(|p| p.is_file())
        .or_else(|| on_path("kafka-server-start.sh"))
}

async fn redis(addr: SocketAddr, dir: &Path, logs: &Path) -> anyhow::Result<Outcome> {
    let Some(program) = on_path("redis-server") else {
        return Ok(Outcome::Skipped("redis-server not found on PATH".into()));
    };
    let data = dir.join("redis");
    std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
    let mut cmd = Command::new(program);
    cmd.args(["--bind", &addr.ip().to_string()])
        .args(["--port", &addr.port().to_string()])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .arg("--dir")
        .arg(&data);
    let mut server = spawn("redis-server", &mut cmd, logs, "TERM")?;
    let target = addr.to_string();
    wait_ready(&mut server, logs, || {
        let t = target.clone();
        async move { super::check::redis_ping(&t).await.is_ok() }
    })
    .await?;
    Ok(Outcome::Started {
        server: Box::new(server),
        scratch: None,
    })
}

/// The bin folder of the newest PostgreSQL under /usr/lib/postgresql with initdb and postgres.
fn postgres_bin() -> Option<PathBuf> {
    let mut bins: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("postgres").is_file())
                .then_some((version, bin))
        })
        .collect();
    bins.sort();
    bins.pop().map(|(_, b)| b)
}

/// `program`, as the `postgres` user when `as_postgres`.
fn pg_command(bin: &Path, program: &str, as_postgres: bool) -> Command {
    let path = bin.join(program);
    if as_postgres {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
        ])
        .arg(path);
        c
    } else {
        Command::new(path)
    }
}

async fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success())
}

async fn postgres(addr: SocketAddr, dir: &Path, logs: &Path) -> anyhow::Result<Outcome> {
    let Some(bin) = postgres_bin() else {
        return Ok(Outcome::Skipped(
            "PostgreSQL not found (no /usr/lib/postgresql/*/bin with initdb and postgres)".into(),
        ));
    };
    let as_postgres = is_root();
    if as_postgres {
        if on_path("setpriv").is_none() {
            return Ok(Outcome::Skipped(
                "the demo runs as root, PostgreSQL refuses root, and setpriv is not found".into(),
            ));
        }
        if !succeeds(Command::new("id").args(["-u", "postgres"])).await {
            return Ok(Outcome::Skipped(
                "the demo runs as root, PostgreSQL refuses root, and there is no postgres user"
                    .into(),
            ));
        }
    }
    // A fresh cluster every run. As root, the folder belongs to `postgres`; if `postgres`
    // cannot reach the state dir (say, under /root), a folder in the temp dir instead.
    let mut root = dir.join("postgres");
    let mut scratch = None;
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    if as_postgres {
        chown_postgres(&root).await?;
        let reachable = succeeds(
            Command::new("setpriv")
                .args([
                    "--reuid=postgres",
                    "--regid=postgres",
                    "--init-groups",
                    "--",
                ])
                .args(["test", "-w"])
                .arg(&root),
        )
        .await;
        if !reachable {
            let _ = std::fs::remove_dir_all(&root);
            root = std::env::temp_dir().join(format!("weft-demo-postgres-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&root);
            std::fs::create_dir_all(&root)
                .with_context(|| format!("creating {}", root.display()))?;
            chown_postgres(&root).await?;
            tracing::info!(dir = %root.display(), "the postgres user cannot write the state dir; PostgreSQL's data is in the temp dir");
            scratch = Some(root.clone());
        }
    }
    let data = root.join("data");
    let out = pg_command(&bin, "initdb", as_postgres)
        .arg("-D")
        .arg(&data)
        .args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
            "--locale=C",
            "-E",
            "UTF8",
        ])
        .stdin(Stdio::null())
        .output()
        .await
        .context("running initdb")?;
    if !out.status.success() {
        bail!(
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut cmd = pg_command(&bin, "postgres", as_postgres);
    cmd.arg("-D")
        .arg(&data)
        .args(["-p", &addr.port().to_string()])
        .args(["-c", &format!("listen_addresses={}", addr.ip())])
        // No Unix socket: the state dir's path may be too long for one.
        .args(["-c", "unix_socket_directories=", "-c", "fsync=off"]);
    let mut server = spawn("postgres", &mut cmd, logs, "INT")?;
    let target = addr.to_string();
    wait_ready(&mut server, logs, || {
        let t = target.clone();
        async move { super::check::postgres_startup(&t).await.is_ok() }
    })
    .await?;
    Ok(Outcome::Started {
        server: Box::new(server),
        scratch,
    })
}

async fn chown_postgres(dir: &Path) -> anyhow::Result<()> {
    if !succeeds(Command::new("chown").arg("postgres:postgres").arg(dir)).await {
        bail!("could not give {} to the postgres user", dir.display());
    }
    Ok(())
}

/// dnsmasq on a free 127.0.0.1 port (UDP and TCP) answering each `name -> ip` and nothing
/// else; returned once it answers a query.
pub(super) async fn start_dnsmasq(
    program: &Path,
    names: &[(&str, Ipv4Addr)],
    dir: &Path,
) -> anyhow::Result<(Server, SocketAddr)> {
    let logs = dir.parent().unwrap_or(dir).join("logs");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let port = free_udp_tcp_port().context("no port is free for both UDP and TCP on 127.0.0.1")?;
    let mut cmd = Command::new(program);
    cmd.args([
        "--no-daemon",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--bind-interfaces",
        "--listen-address=127.0.0.1",
        &format!("--port={port}"),
        &format!("--pid-file={}", dir.join("dnsmasq.pid").display()),
        "--log-facility=-",
    ]);
    for (name, ip) in names {
        cmd.arg(format!("--address=/{name}/{ip}"));
    }
    let mut server = spawn("dnsmasq", &mut cmd, &logs, "TERM")?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let (name, ip) = *names.first().context("no names to resolve")?;
    wait_ready(&mut server, &logs, || async move {
        super::check::dns_query(addr, name).await == Some(ip)
    })
    .await?;
    Ok((server, addr))
}

fn free_udp_tcp_port() -> Option<u16> {
    (0..50).find_map(|_| {
        let port = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .ok()?
            .port();
        std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, port))
            .ok()
            .map(|_| port)
    })
}
