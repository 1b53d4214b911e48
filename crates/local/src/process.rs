//! Child processes of a local mesh: spawn with piped stdio, turn JSON event lines on stdout
//! into messages, keep stderr in a per-process log file, report exits. Children are started
//! with `--exit-with-parent` and a piped stdin, so they exit when the supervisor goes away.

use anyhow::Context;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

/// What a child process tells the supervisor.
#[derive(Debug)]
pub enum Msg {
    /// A JSON event line from the child's stdout.
    Event {
        name: String,
        generation: u64,
        event: Value,
    },
    /// The child exited.
    Exited {
        name: String,
        generation: u64,
        status: String,
    },
}

/// A running child.
pub struct Running {
    pub pid: u32,
    pub generation: u64,
    /// Dropping this closes the child's stdin, which makes it exit.
    _stdin: Option<ChildStdin>,
    kill: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Running {
    /// Kills the child now (SIGKILL) and closes its stdin.
    pub fn kill(&mut self) {
        if let Some(k) = self.kill.take() {
            let _ = k.send(());
        }
        self._stdin = None;
    }
}

/// Spawns `program args`, logging stderr to `log` and sending events/exit to `tx`.
pub fn spawn(
    name: &str,
    generation: u64,
    program: &Path,
    args: &[String],
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
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log_file))
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {name}: {} {}", program.display(), args.join(" ")))?;
    let pid = child.id().unwrap_or(0);
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
            s = child.wait() => s,
            _ = kill_rx => {
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
        generation,
        _stdin: stdin,
        kill: Some(kill_tx),
    })
}

/// `<state>/logs/<name>.log`
pub fn log_path(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join("logs").join(format!("{name}.log"))
}
