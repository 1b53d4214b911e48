//! Helpers for the supervisor tests: temp dirs, FIFOs that report when their writer dies,
//! /proc inspection and a guard that kills leftover process groups when a test fails.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// How long a test waits for anything before failing.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(what: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "weft-local-{what}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir { path }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Creates a named pipe at `path`.
pub fn mkfifo(path: &Path) {
    let ok = Command::new("mkfifo").arg(path).status().unwrap().success();
    assert!(ok, "mkfifo {}", path.display());
}

/// Runs blocking `f` on its own thread (not the runtime's blocking pool, so a thread stuck
/// on a FIFO cannot hold up the runtime's shutdown), failing after [`TIMEOUT`].
pub async fn blocking<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    tokio::time::timeout(TIMEOUT, rx)
        .await
        .unwrap_or_else(|_| panic!("timed out after {TIMEOUT:?} waiting for {what}"))
        .unwrap()
}

/// Opens the read end of FIFO `path`; returns once a process has opened its write end.
pub async fn open_reader(path: &Path) -> std::fs::File {
    let p = path.to_path_buf();
    blocking("a writer to open the FIFO", move || std::fs::File::open(p))
        .await
        .unwrap()
}

/// Reads `reader` to the end: returns once every process holding the write end has exited.
pub async fn wait_for_writers_to_exit(mut reader: std::fs::File) {
    let read = blocking("the FIFO's writers to exit", move || {
        let mut buf = Vec::new();
        reader.read_to_end(&mut buf).map(|_| buf)
    })
    .await
    .unwrap();
    assert!(read.is_empty(), "unexpected FIFO data {read:?}");
}

/// (state, process group, flags) of `pid`, from /proc/PID/stat.
pub fn stat(pid: u32) -> Option<(char, u32, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = text.rsplit_once(") ")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some((
        f.first()?.chars().next()?,
        f.get(2)?.parse().ok()?,
        f.get(6)?.parse().ok()?,
    ))
}

/// Is `pid` a live process: present, not a zombie, and not already exiting (PF_EXITING,
/// set before a dying process releases its files)?
pub fn live(pid: u32) -> bool {
    const PF_EXITING: u64 = 0x4;
    stat(pid)
        .is_some_and(|(state, _, flags)| !matches!(state, 'Z' | 'X') && flags & PF_EXITING == 0)
}

/// The live processes in process group `pgid`.
pub fn live_members(pgid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| stat(pid).is_some_and(|(_, pg, _)| pg == pgid) && live(pid))
        .collect()
}

/// Waits (bounded) until no live process is left in group `pgid`, and returns what is left
/// then: a SIGKILLed group's members die asynchronously, one may still be on its way out
/// when the leader has already been reaped.
pub async fn group_gone(pgid: u32) -> Vec<u32> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let left = live_members(pgid);
        if left.is_empty() || std::time::Instant::now() > deadline {
            return left;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// SIGKILLs process group `pgid` (if it still exists).
pub fn kill_group(pgid: u32) {
    assert!(pgid > 1, "refusing to kill process group {pgid}");
    let _ = Command::new("/bin/kill")
        .args(["-s", "KILL", "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
}

/// Kills the process groups it holds on drop, so a failing test leaves nothing running.
/// Call [`GroupGuard::disarm`] once the test has seen them gone.
#[derive(Default)]
pub struct GroupGuard(pub Vec<u32>);

impl GroupGuard {
    pub fn disarm(mut self) {
        self.0.clear();
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        for &pgid in &self.0 {
            kill_group(pgid);
        }
    }
}
