//! Child processes of a local mesh: spawn with piped stdio, turn JSON event lines on stdout
//! into messages, keep stderr in a per-process log file, report exits.
//!
//! Every child is the leader of its own process group (so a Ctrl-C on the terminal reaches
//! only the supervisor, which then stops the mesh in order), and stopping a child kills its
//! whole group: a `weft.dev/run: command` app is started as `/bin/sh -c CMD`, and whatever
//! that shell starts must die with it, or it keeps the app's port and every restart fails
//! with "address in use". When a group leader exits by itself, the rest of its group is
//! killed too, for the same reason.
//!
//! Children started from the weft executable get `--exit-with-parent` and a piped stdin, so
//! they exit even when the supervisor is SIGKILLed. Command apps do not watch their stdin:
//! when the supervisor exits normally, its shutdown kills their groups, but a SIGKILLed
//! supervisor leaves command-app groups running (a known gap; stop them by hand, e.g.
//! `kill -- -PID` with the app's pid from `weft status`).

use anyhow::Context;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

/// What a child process (or a restart timer) tells the supervisor.
#[derive(Debug)]
pub enum Msg {
    /// A JSON event line from the child's stdout.
    Event {
        name: String,
        generation: u64,
        event: Value,
    },
    /// The child exited (and the rest of its process group was killed).
    Exited {
        name: String,
        generation: u64,
        status: String,
    },
    /// A restart backoff elapsed: start the process again, unless it was started since
    /// (its generation moved on) or the mesh is shutting down.
    Restart { name: String, generation: u64 },
}

/// A running child.
pub struct Running {
    pub pid: u32,
    /// The child's process group (its own pid: every child leads a group).
    pub pgid: u32,
    pub generation: u64,
    /// Dropping this closes the child's stdin, which makes weft children exit.
    _stdin: Option<ChildStdin>,
    /// Sending (or dropping) this kills the child's process group.
    kill: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Running {
    /// Kills the child's whole process group now (SIGKILL) and closes its stdin. The
    /// [`Msg::Exited`] follows once the child has been reaped.
    pub fn kill(&mut self) {
        if let Some(k) = self.kill.take() {
            let _ = k.send(());
        }
        self._stdin = None;
    }
}

/// Sends SIGKILL to every process in process group `pgid`; false if none was signalled.
/// Runs `/bin/kill` because this crate forbids the unsafe code a `killpg` call needs.
pub async fn kill_group(pgid: u32) -> bool {
    // Never 0 (our own group) or 1 (`kill -- -1` signals every process we may signal).
    if pgid <= 1 {
        return false;
    }
    tokio::process::Command::new("/bin/kill")
        .args(["-s", "KILL", "--", &format!("-{pgid}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success())
}

/// Spawns `program args` as the leader of a new process group, logging stderr to `log` and
/// sending events/exit to `tx`.
pub fn spawn(
    name: &str,
    generation: u64,
    program: &Path,
    args: &[String],
    env: &[(String, String)],
    log: &Path,
    tx: mpsc::UnboundedSender<Msg>,
) -> anyhow::Result<Running> {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening log file {}", log.display()))?;
    let mut child: Child = Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log_file))
        // Its own process group: no terminal SIGINT, and one `kill` reaches what it starts.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {name}: {} {}", program.display(), args.join(" ")))?;
    let pid = child.id().unwrap_or(0);
    let pgid = pid;
    let stdin = child.stdin.take();
    let stdout = child.stdout.take().expect("stdout is piped");
    let (kill_tx, kill_rx) = tokio::sync::oneshot::channel::<()>();
    let owned = name.to_string();
    let events = tx.clone();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Ok(event) = serde_json::from_str::<Value>(&line) {
                if event.get("event").is_some() {
                    let _ = events.send(Msg::Event {
                        name: owned.clone(),
                        generation,
                        event,
                    });
                }
            }
        }
    });
    let owned = name.to_string();
    tokio::spawn(async move {
        let status = tokio::select! {
            s = child.wait() => {
                // The leader is gone (reaped); kill what it left in its group. Nothing else can
                // have taken the pgid: Linux does not reuse a pid while a group of that id has
                // members, and with no members left the kill finds nobody (barring a pid
                // wrap-around within these microseconds).
                kill_group(pgid).await;
                s
            }
            // Also when the `Running` is dropped: the sender closes.
            _ = kill_rx => {
                // The leader is not reaped yet (at most a zombie), so the group id is still ours.
                kill_group(pgid).await;
                let _ = child.start_kill();
                child.wait().await
            }
        };
        let status = match status {
            Ok(s) => s.to_string(),
            Err(e) => format!("unknown ({e})"),
        };
        let _ = tx.send(Msg::Exited {
            name: owned,
            generation,
            status,
        });
    });
    Ok(Running {
        pid,
        pgid,
        generation,
        _stdin: stdin,
        kill: Some(kill_tx),
    })
}

/// `<state>/logs/<name>.log`
pub fn log_path(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join("logs").join(format!("{name}.log"))
}
