//! The real control plane as a child process: `weft control --config <dir> --listen
//! 127.0.0.1:0`, its JSON event lines read from stdout by a task, its log (stderr) in a
//! file, its CPU time and peak RSS read from /proc. The child is killed when this is
//! dropped (error, Ctrl-C) or stopped.

use anyhow::{bail, Context};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// One event line of the control plane, as far as the benchmark cares.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Ready {
        grpc: String,
    },
    /// Every connected proxy has ACKed the latest config it was sent: id -> version.
    Converged(BTreeMap<String, String>),
    ConfigApplied,
    ConfigRejected(String),
    ProxyUnserved(String),
    /// Stdout closed: the process is gone.
    Exited,
    Other,
}

/// A running `weft control`.
pub struct Control {
    child: Child,
    pid: u32,
    pub grpc: String,
    events: mpsc::UnboundedReceiver<Event>,
    log: PathBuf,
}

/// Parses one stdout line (non-JSON lines are `Other`).
pub fn parse_event(line: &str) -> Event {
    let Ok(v) = serde_json::from_str::<Value>(line) else {
        return Event::Other;
    };
    let text = |key: &str| v[key].as_str().unwrap_or_default().to_string();
    match v["event"].as_str() {
        Some("ready") => Event::Ready { grpc: text("grpc") },
        Some("converged") => {
            Event::Converged(serde_json::from_value(v["proxies"].clone()).unwrap_or_default())
        }
        Some("config_applied") => Event::ConfigApplied,
        Some("config_rejected") => Event::ConfigRejected(v["errors"].to_string()),
        Some("proxy_unserved") => {
            Event::ProxyUnserved(format!("{}: {}", text("proxy"), text("reason")))
        }
        _ => Event::Other,
    }
}

async fn read_events(stdout: ChildStdout, tx: mpsc::UnboundedSender<Event>) {
    let mut lines = BufReader::new(stdout).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if tx.send(parse_event(&line)).is_err() {
            return;
        }
    }
    let _ = tx.send(Event::Exited);
}

impl Control {
    /// Starts the control plane on `config` and waits (at most `timeout`) until it is ready.
    pub async fn start(
        weft: &Path,
        config: &Path,
        work: &Path,
        timeout: Duration,
    ) -> anyhow::Result<Control> {
        let log = work.join("control.log");
        let mut child = Command::new(weft)
            .arg("control")
            .arg("--config")
            .arg(config)
            .args(["--listen", "127.0.0.1:0", "--state-dir"])
            .arg(work.join("state"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", weft.display()))?;
        let pid = child.id().context("the control plane exited at once")?;
        let (tx, events) = mpsc::unbounded_channel();
        tokio::spawn(read_events(child.stdout.take().expect("piped"), tx));
        let mut control = Control {
            child,
            pid,
            grpc: String::new(),
            events,
            log,
        };
        control.wait_ready(Instant::now() + timeout).await?;
        Ok(control)
    }

    async fn wait_ready(&mut self, deadline: Instant) -> anyhow::Result<()> {
        loop {
            match self.next_event(deadline).await {
                Some(Event::Ready { grpc }) => {
                    self.grpc = grpc;
                    return Ok(());
                }
                Some(Event::Exited) => bail!(
                    "the control plane exited before it was ready:\n{}",
                    self.log_tail(20)
                ),
                Some(_) => {}
                None => bail!(
                    "the control plane was not ready in time:\n{}",
                    self.log_tail(20)
                ),
            }
        }
    }

    /// The next event, or `None` once `deadline` has passed.
    pub async fn next_event(&mut self, deadline: Instant) -> Option<Event> {
        match tokio::time::timeout_at(deadline, self.events.recv()).await {
            Ok(Some(e)) => Some(e),
            Ok(None) => Some(Event::Exited),
            Err(_) => None,
        }
    }

    /// CPU seconds the process has used so far (user + system, all threads).
    pub fn cpu_seconds(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).ok()?;
        cpu_of_stat(&stat, clock_ticks())
    }

    /// Peak resident set size (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        status_kib(self.pid, "VmHWM")
    }

    /// The last `n` lines of the control plane's log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Kills the process and waits for it.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`), in KiB.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// utime + stime of a `/proc/<pid>/stat` line, in seconds.
fn cpu_of_stat(stat: &str, ticks: f64) -> Option<f64> {
    // The command name (field 2) may hold spaces; the fields after it are plain.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / ticks)
}

/// Clock ticks per second of /proc times (`getconf CLK_TCK`; Linux's USER_HZ is 100).
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_parsed_from_the_control_planes_lines() {
        assert_eq!(
            parse_event(
                r#"{"event":"ready","role":"control","grpc":"127.0.0.1:4242","resources":3}"#
            ),
            Event::Ready {
                grpc: "127.0.0.1:4242".into()
            }
        );
        let converged = parse_event(r#"{"event":"converged","proxies":{"a":"3","b":"4"}}"#);
        let want = BTreeMap::from([("a".to_string(), "3".to_string()), ("b".into(), "4".into())]);
        assert_eq!(converged, Event::Converged(want));
        assert_eq!(
            parse_event(r#"{"event":"config_applied","resources":1}"#),
            Event::ConfigApplied
        );
        assert!(
            matches!(parse_event(r#"{"event":"config_rejected","errors":["x"]}"#), Event::ConfigRejected(e) if e.contains('x'))
        );
        assert_eq!(parse_event("not json"), Event::Other);
    }

    #[test]
    fn cpu_time_is_read_past_a_command_name_with_spaces() {
        let stat = "42 (weft (x) y) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 1 2 3";
        assert_eq!(cpu_of_stat(stat, 100.0), Some(3.0));
        let own = std::fs::read_to_string("/proc/self/stat").unwrap();
        assert!(cpu_of_stat(&own, clock_ticks()).is_some());
    }
}
