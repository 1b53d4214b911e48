//! Helpers for the end-to-end tests of the real `weft` binary: temp dirs, a running
//! `weft up` mesh (stopped on drop), waiting on a child's output, a tiny HTTP/1.1 client
//! and wrappers around the `curl` / `openssl` / `kill` CLIs.
#![allow(dead_code)]

pub mod prometheus;

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const WEFT: &str = env!("CARGO_BIN_EXE_weft");
/// The gateway's virtual host in examples/necpgame/istio-gateway.yaml.
pub const GAME_HOST: &str = "game.necpgame.local";
pub const INVENTORY_HOST: &str = "inventory.necpgame.svc.cluster.local";
pub const INVENTORY_V1_SIDECAR: &str = "sidecar-inventory-v1.necpgame";
pub const PLAYER_SIDECAR: &str = "sidecar-player-v1.necpgame";
pub const GATEWAY: &str = "gateway-istio-ingressgateway.istio-system";

/// How long `weft up` may take until `mesh_ready`.
const MESH_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Interval between polls of an observable condition.
const POLL: Duration = Duration::from_millis(20);

/// Each mesh is ~12 processes and the machine is small: one mesh at a time.
static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Polls `f` until it returns `Some`, panicking with `what` after `timeout`.
pub fn poll_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(POLL);
    }
}

// ---------------------------------------------------------------------------------------
// Temp dirs

/// A fresh directory under the system temp dir, removed on drop (kept when
/// `WEFT_E2E_KEEP` is set, for debugging).
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("weft-e2e-{tag}-{}-{n}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("WEFT_E2E_KEEP").is_some() {
            eprintln!("keeping {}", self.path.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in
        std::fs::read_dir(from).unwrap_or_else(|e| panic!("reading {}: {e}", from.display()))
    {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/necpgame")
}

/// In a copied config file, replaces `from` — which must be there — with `to`.
pub fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(
        text.contains(from),
        "{} changed shape: {from:?} is not in it",
        path.display()
    );
    std::fs::write(path, text.replace(from, to)).unwrap();
}

/// Replaces `path` atomically (write a hidden temp file next to it, then rename), the way
/// editors and `kubectl`-style tools do. The hidden name keeps the loader from reading it.
pub fn replace_file(path: &Path, contents: &str) {
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

// ---------------------------------------------------------------------------------------
// Child output

/// Text a child writes to a pipe, collected by a thread; tests can wait on it.
#[derive(Default)]
pub struct Pipe {
    state: Mutex<(String, bool)>,
    changed: Condvar,
}

pub type Captured = Arc<Pipe>;

impl Pipe {
    /// Starts a thread that appends every line of `r` and marks EOF.
    pub fn pump(r: impl Read + Send + 'static) -> Captured {
        let out = Arc::new(Pipe::default());
        let o = out.clone();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(r);
            let mut line = String::new();
            loop {
                line.clear();
                match lines.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        o.state.lock().unwrap().0.push_str(&line);
                        o.changed.notify_all();
                    }
                }
            }
            o.state.lock().unwrap().1 = true;
            o.changed.notify_all();
        });
        out
    }

    pub fn text(&self) -> String {
        self.state.lock().unwrap().0.clone()
    }

    pub fn len(&self) -> usize {
        self.state.lock().unwrap().0.len()
    }

    /// Waits (30 s at most) for the first JSON event line named `name` from byte `from` on.
    #[allow(dead_code)]
    pub fn event(&self, what: &str, from: usize, name: &str) -> Value {
        self.wait_for(what, from, Duration::from_secs(30), |text| {
            text.lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|v| v["event"] == name)
        })
    }

    /// Waits until `pred` returns `Some` for the text from byte `from` on.
    pub fn wait_for<T>(
        &self,
        what: &str,
        from: usize,
        timeout: Duration,
        pred: impl Fn(&str) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        let mut guard = self.state.lock().unwrap();
        loop {
            if let Some(v) = pred(guard.0.get(from..).unwrap_or("")) {
                return v;
            }
            let now = Instant::now();
            assert!(
                !guard.1,
                "the process closed its output before {what}; it wrote:\n{}",
                guard.0
            );
            assert!(
                now < deadline,
                "timed out after {timeout:?} waiting for {what}; output so far:\n{}",
                guard.0
            );
            guard = self.changed.wait_timeout(guard, deadline - now).unwrap().0;
        }
    }

    /// Waits until the writer closed the pipe (the process and its children exited).
    pub fn wait_closed(&self, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let mut guard = self.state.lock().unwrap();
        while !guard.1 {
            let now = Instant::now();
            assert!(
                now < deadline,
                "timed out after {timeout:?} waiting for the output to close"
            );
            guard = self.changed.wait_timeout(guard, deadline - now).unwrap().0;
        }
        guard.0.clone()
    }

    /// Waits until the text from byte `from` on contains every one of `needles`.
    pub fn wait_contains(&self, from: usize, timeout: Duration, needles: &[&str]) -> String {
        let what = format!("output containing {needles:?}");
        self.wait_for(&what, from, timeout, |t| {
            needles.iter().all(|n| t.contains(n)).then(|| t.to_string())
        })
    }
}

// ---------------------------------------------------------------------------------------
// Processes

pub fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("running kill");
    assert!(status.success(), "kill -{sig} {pid} failed");
}

/// Is `pid` a live (not zombie) process?
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// A child process killed (and waited for) on drop.
pub struct ChildGuard {
    pub child: Child,
}

impl ChildGuard {
    pub fn spawn(cmd: &mut Command) -> (ChildGuard, Captured, Captured) {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting weft");
        let stdout: ChildStdout = child.stdout.take().unwrap();
        let stderr: ChildStderr = child.stderr.take().unwrap();
        (ChildGuard { child }, Pipe::pump(stdout), Pipe::pump(stderr))
    }

    /// Waits for exit, failing after `timeout`.
    pub fn wait_timeout(&mut self, timeout: Duration) -> std::process::ExitStatus {
        poll_until("the process to exit", timeout, || {
            self.child.try_wait().unwrap()
        })
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL; always reaps.
    pub fn stop(&mut self, grace: Duration) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        signal(self.child.id(), "TERM");
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(POLL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(10));
    }
}

pub fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"))
}

pub fn curl(args: &[&str]) -> Output {
    run("curl", args)
}

pub fn stdout_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

// ---------------------------------------------------------------------------------------
// A running mesh

/// `weft up` on a private copy of examples/necpgame. Dropping it stops the mesh (SIGTERM,
/// then SIGKILL) and waits until every process it started is gone.
pub struct Mesh {
    pub child: ChildGuard,
    pub stdout: Captured,
    pub stderr: Captured,
    /// The `mesh_ready` event.
    pub ready: Value,
    pub config_dir: PathBuf,
    pub state_dir: PathBuf,
    _dir: TempDir,
    _serial: MutexGuard<'static, ()>,
}

impl Mesh {
    pub fn up(tag: &str) -> Mesh {
        Mesh::up_with(tag, |_| {})
    }

    /// Like [`Mesh::up`], after `edit` changed the copied config folder.
    pub fn up_with(tag: &str, edit: impl FnOnce(&Path)) -> Mesh {
        Mesh::up_with_args(tag, &[], edit)
    }

    /// Like [`Mesh::up_with`], with more `weft up` arguments.
    pub fn up_with_args(tag: &str, args: &[&str], edit: impl FnOnce(&Path)) -> Mesh {
        Mesh::up_holding(serial(), tag, args, edit)
    }

    /// Like [`Mesh::up_with_args`], for a test that took [`serial`] itself (to start the
    /// servers its mesh needs first); the mesh holds the guard until it is dropped.
    pub fn up_holding(
        serial: MutexGuard<'static, ()>,
        tag: &str,
        args: &[&str],
        edit: impl FnOnce(&Path),
    ) -> Mesh {
        let dir = TempDir::new(tag);
        let config_dir = dir.path().join("config");
        let state_dir = dir.path().join("state");
        copy_dir(&examples_dir(), &config_dir);
        edit(&config_dir);
        let (child, stdout, stderr) = ChildGuard::spawn(
            Command::new(WEFT)
                .arg("up")
                .arg(&config_dir)
                .arg("--state-dir")
                .arg(&state_dir)
                .args(args),
        );
        let mut mesh = Mesh {
            child,
            stdout,
            stderr,
            ready: Value::Null,
            config_dir,
            state_dir,
            _dir: dir,
            _serial: serial,
        };
        let started = Instant::now();
        let stderr = mesh.stderr.clone();
        mesh.ready = mesh
            .stdout
            .wait_for("mesh_ready", 0, MESH_READY_TIMEOUT, |text| {
                text.lines()
                    .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                    .find(|v| v["event"] == "mesh_ready")
                    .or_else(|| {
                        // Fail fast (with the reason) if `weft up` already exited.
                        let err = stderr.text();
                        assert!(!err.contains("weft: error"), "weft up failed:\n{err}");
                        None
                    })
            });
        eprintln!(
            "[{tag}] mesh ready in {:.2}s",
            started.elapsed().as_secs_f64()
        );
        mesh
    }

    pub fn process(&self, name: &str) -> &Value {
        self.ready["processes"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == name))
            .unwrap_or_else(|| panic!("no process {name} in mesh_ready: {}", self.ready))
    }

    pub fn addr(&self, name: &str, key: &str) -> String {
        self.process(name)["addresses"][key]
            .as_str()
            .unwrap_or_else(|| panic!("{name} has no {key} address"))
            .to_string()
    }

    pub fn pid(&self, name: &str) -> u32 {
        self.process(name)["pid"]
            .as_u64()
            .unwrap_or_else(|| panic!("{name} has no pid")) as u32
    }

    /// `127.0.0.1:P` of the gateway's port 80.
    pub fn gateway(&self) -> String {
        let url = self.ready["gateways"]["80"]
            .as_str()
            .expect("gateway port 80 in mesh_ready");
        url.strip_prefix("http://")
            .expect("http:// URL")
            .to_string()
    }

    pub fn gateway_admin(&self) -> String {
        self.addr(GATEWAY, "admin")
    }

    pub fn names(&self) -> Vec<String> {
        self.ready["processes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect()
    }

    /// `weft status --state-dir S --output json`.
    pub fn status_json(&self) -> Value {
        let out = run(
            WEFT,
            &[
                "status",
                "--state-dir",
                self.state_dir.to_str().unwrap(),
                "--output",
                "json",
            ],
        );
        assert!(
            out.status.success(),
            "weft status failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "weft status --output json is not JSON ({e}): {}",
                stdout_of(&out)
            )
        })
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.state_dir.join("logs").join(format!("{name}.log")))
            .unwrap_or_default()
    }

    pub fn config_file(&self, name: &str) -> PathBuf {
        self.config_dir.join(name)
    }

    /// Every pid the mesh ever reported (mesh_ready plus the current mesh.json).
    fn all_pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self.ready["processes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["pid"].as_u64())
            .map(|p| p as u32)
            .collect();
        if let Ok(text) = std::fs::read_to_string(self.state_dir.join("mesh.json")) {
            if let Ok(v) = serde_json::from_str::<Value>(&text) {
                pids.extend(
                    v["processes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|p| p["pid"].as_u64())
                        .map(|p| p as u32),
                );
            }
        }
        pids
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        let pids = self.all_pids();
        self.child.stop(Duration::from_secs(10));
        // `weft up` waits for its children; SIGKILL'd, they exit when their stdin closes.
        let deadline = Instant::now() + Duration::from_secs(10);
        while pids.iter().any(|p| alive(*p)) && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
        let left: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
        if std::thread::panicking() {
            eprintln!("--- weft up stderr ---\n{}", self.stderr.text());
            print_log_tails(&self.state_dir.join("logs"));
        } else {
            assert!(
                left.is_empty(),
                "mesh processes still running after weft up stopped: {left:?}"
            );
        }
    }
}

/// The last lines of every log in `dir` (the temporary folder is gone after the test).
fn print_log_tails(dir: &Path) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(15)..];
        eprintln!(
            "--- {} (last {} lines) ---\n{}",
            f.display(),
            tail.len(),
            tail.join("\n")
        );
    }
}

// ---------------------------------------------------------------------------------------
// HTTP/1.1 over std TcpStream (keep-alive), for request counts too large for one curl each

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn version(&self) -> &str {
        self.header("x-weft-version").unwrap_or("")
    }
}

pub struct HttpConn {
    addr: String,
    reader: BufReader<TcpStream>,
}

impl HttpConn {
    pub fn connect(addr: &str) -> std::io::Result<HttpConn> {
        let s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.set_write_timeout(Some(Duration::from_secs(10)))?;
        s.set_nodelay(true)?;
        Ok(HttpConn {
            addr: addr.to_string(),
            reader: BufReader::new(s),
        })
    }

    pub fn get(
        &mut self,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> std::io::Result<Resp> {
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: weft-e2e\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        self.reader.get_mut().write_all(req.as_bytes())?;
        self.read_response()
    }

    /// Like `get`, reconnecting once if the kept-alive connection was closed under us.
    pub fn get_retry_closed(
        &mut self,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> std::io::Result<Resp> {
        match self.get(host, path, headers) {
            Ok(r) => Ok(r),
            Err(_) => {
                *self = HttpConn::connect(&self.addr)?;
                self.get(host, path, headers)
            }
        }
    }

    fn read_line(&mut self) -> std::io::Result<String> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    }

    fn read_response(&mut self) -> std::io::Result<Resp> {
        let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
        let status_line = self.read_line()?;
        let status = status_line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|r| r.get(..3))
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
        let mut headers = Vec::new();
        loop {
            let line = self.read_line()?;
            if line.is_empty() {
                break;
            }
            let (k, v) = line
                .split_once(':')
                .ok_or_else(|| bad(format!("bad header {line:?}")))?;
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
        let get = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.clone())
        };
        let mut body = Vec::new();
        if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            loop {
                let size = self.read_line()?;
                let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
                    .map_err(|e| bad(format!("chunk size: {e}")))?;
                let mut chunk = vec![0; size + 2];
                self.reader.read_exact(&mut chunk)?;
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        } else if let Some(len) = get("content-length") {
            let len: usize = len
                .parse()
                .map_err(|e| bad(format!("content-length: {e}")))?;
            body.resize(len, 0);
            self.reader.read_exact(&mut body)?;
        } else if status != 204 && status != 304 {
            self.reader.read_to_end(&mut body)?;
        }
        Ok(Resp {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

/// One request on a fresh connection.
pub fn http_get(addr: &str, host: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    HttpConn::connect(addr)
        .and_then(|mut c| c.get(host, path, headers))
        .unwrap_or_else(|e| panic!("GET http://{addr}{path} (Host: {host}): {e}"))
}

/// An admin endpoint's body.
pub fn admin_get(admin: &str, path: &str) -> String {
    let r = http_get(admin, admin, path, &[]);
    assert_eq!(r.status, 200, "admin {admin}{path}: {}", r.body);
    r.body
}

/// Sums the samples of `metric` whose labels include every `label="value"` in `labels`.
pub fn metric_sum(exposition: &str, metric: &str, labels: &[(&str, &str)]) -> f64 {
    exposition
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(metric)?;
            // A sample without labels: `name value`.
            match rest.strip_prefix('{') {
                Some(r) => r.rsplit_once("} "),
                None => rest.strip_prefix(' ').map(|v| ("", v)),
            }
        })
        .filter(|(lbls, _)| {
            labels
                .iter()
                .all(|(k, v)| lbls.split(',').any(|kv| kv == format!("{k}=\"{v}\"")))
        })
        .filter_map(|(_, value)| value.split_whitespace().next()?.parse::<f64>().ok())
        .sum()
}
