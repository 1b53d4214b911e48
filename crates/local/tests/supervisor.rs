//! The supervisor through `weft_local::up`, with a shell script standing in for the weft
//! executable: command-app process groups die on shutdown, nothing restarts while shutting
//! down, crash loops and failing starts are retried with backoff and then given up.

mod common;

use common::*;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use weft_local::UpOptions;

/// Writes a fake `weft` into `dir`: it appends "PID ROLE" to `dir/starts`, runs
/// `control_body` or `proxy_body` for its role, then runs until its stdin closes (as
/// `--exit-with-parent` does).
fn fake_weft(dir: &Path, control_body: &str, proxy_body: &str) -> PathBuf {
    let path = dir.join("weft");
    let script = format!(
        r#"#!/bin/sh
echo "$$ $1" >>'{starts}'
case "$1" in
  control) {control_body} ;;
  proxy) {proxy_body} ;;
esac
exec cat >/dev/null
"#,
        starts = dir.join("starts").display()
    );
    std::fs::write(&path, script).unwrap();
    let ok = std::process::Command::new("chmod")
        .arg("755")
        .arg(&path)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    path
}

/// A control plane that starts, and reports that the one sidecar accepted config version 1.
const CONTROL_READY: &str = r#"echo '{"event":"ready","grpc":"127.0.0.1:9"}'; echo '{"event":"converged","proxies":{"sidecar~pg.game":"1"}}'"#;
/// A proxy that starts and applies config version 1.
const PROXY_READY: &str = r#"echo '{"event":"ready","admin":"127.0.0.1:9","inbound":"127.0.0.1:9","outbound":"127.0.0.1:9"}'; echo '{"event":"config_applied","version":"1"}'"#;

/// A config folder with one `weft.dev/run: command` workload running `command`.
fn options(dir: &Path, weft: PathBuf, command: &str) -> UpOptions {
    let config = dir.join("config");
    std::fs::create_dir_all(&config).unwrap();
    let yaml = format!(
        r#"apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: pg
  namespace: game
  annotations:
    weft.dev/run: command
    weft.dev/command: "{command}"
    weft.dev/app-address: "127.0.0.1:9"
spec: {{address: 127.0.0.1, labels: {{app: pg}}}}
"#
    );
    std::fs::write(config.join("mesh.yaml"), yaml).unwrap();
    UpOptions {
        config_dir: config,
        state_dir: dir.join("state"),
        weft,
        trust_domain: "cluster.local".into(),
        ca_files: None,
        cacerts: None,
        cert_ttl: Duration::from_secs(86400),
        traffic: None,
        https_hint: None,
        dns_server: None,
    }
}

/// (pid, role) of every start of the fake weft.
fn starts(dir: &Path) -> Vec<(u32, String)> {
    std::fs::read_to_string(dir.join("starts"))
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let (pid, role) = l.split_once(' ').unwrap();
            (pid.parse().unwrap(), role.to_string())
        })
        .collect()
}

/// Kills the groups of the command apps recorded in `app-pids` when dropped (a failing test).
struct AppGroups(PathBuf);

impl Drop for AppGroups {
    fn drop(&mut self) {
        for pid in std::fs::read_to_string(&self.0).unwrap_or_default().lines() {
            if let Ok(pid) = pid.trim().parse() {
                kill_group(pid);
            }
        }
    }
}

/// A shutdown signal that fires once `stop` has fired and `ready(dir)` holds, where `dir`
/// holds the test's files and `state/mesh.json` (written once `weft up` is up, and on every
/// change). No polling: `up` polls its shutdown future on every wake-up and first thing in
/// each round of its supervision loop, right after handling a message.
fn stop_when(
    mut stop: tokio::sync::oneshot::Receiver<()>,
    dir: &Path,
    ready: fn(&Path) -> bool,
) -> impl Future<Output = ()> {
    let dir = dir.to_path_buf();
    let mut stopped = false;
    std::future::poll_fn(move |cx| {
        if !stopped {
            stopped = std::pin::Pin::new(&mut stop).poll(cx).is_ready();
        }
        if stopped && dir.join("state/mesh.json").exists() && ready(&dir) {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
}

/// Runs a mesh with a command app whose "server" is the shell's background child (like
/// `sh -c 'my-server & ...'`), stops it once `ready`, and checks that the server died with
/// the shell and everything else stopped. Returns the final status and the starts.
async fn up_then_stop(
    dir: &Path,
    proxy_body: &str,
    ready: fn(&Path) -> bool,
) -> (weft_local::status::MeshStatus, Vec<(u32, String)>) {
    let fifo = dir.join("server.fifo");
    mkfifo(&fifo);
    let app_pids = dir.join("app-pids");
    let _cleanup = AppGroups(app_pids.clone());
    let command = format!(
        "echo $$ >>{}; sleep 1000 >{} & sleep 1000",
        app_pids.display(),
        fifo.display()
    );
    let opts = options(dir, fake_weft(dir, CONTROL_READY, proxy_body), &command);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut up = tokio::spawn(weft_local::up(opts, stop_when(stopped, dir, ready)));

    // The read end opens once the server runs.
    let reader = tokio::select! {
        r = open_reader(&fifo) => r,
        r = &mut up => panic!("weft up ended early: {r:?}"),
    };
    let app: u32 = std::fs::read_to_string(&app_pids)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        stat(app).is_some_and(|(_, pgrp, _)| pgrp == app),
        "the app leads its group"
    );

    stop.send(()).unwrap();
    let code = tokio::time::timeout(TIMEOUT, up)
        .await
        .expect("weft up to stop")
        .unwrap()
        .unwrap();
    assert_eq!(code, 0, "stopped after starting up completely");
    assert!(
        stat(app).is_none(),
        "weft up returned before reaping the app"
    );
    // EOF: the server, the FIFO's only writer, was killed along with its shell.
    wait_for_writers_to_exit(reader).await;
    assert_eq!(group_gone(app).await, Vec::<u32>::new());

    let started = starts(dir);
    for (pid, role) in &started {
        assert!(!live(*pid), "{role} {pid} survived the shutdown");
    }
    let status = weft_local::status::read(&dir.join("state")).unwrap();
    let names: Vec<&str> = status.processes.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["control", "app-pg.game", "sidecar-pg.game"]);
    assert!(
        status.processes.iter().all(|p| p.pid.is_none()),
        "{status:?}"
    );
    (status, started)
}

fn roles(started: &[(u32, String)]) -> Vec<&str> {
    started.iter().map(|(_, r)| r.as_str()).collect()
}

#[tokio::test]
async fn shutdown_kills_command_app_groups_and_restarts_nothing() {
    let dir = TempDir::new("up-shutdown");
    let (status, started) = up_then_stop(&dir.path, PROXY_READY, |_| true).await;
    assert_eq!(
        roles(&started),
        ["control", "proxy"],
        "each started once, none restarted"
    );
    assert!(
        status.processes.iter().all(|p| p.restarts == 0),
        "{status:?}"
    );
}

#[tokio::test]
async fn shutdown_after_giving_up_on_a_process_still_stops_everything() {
    let dir = TempDir::new("up-given-up");
    // The sidecar reports ready, then crashes on every start.
    let crashing = format!("{PROXY_READY}; exit 3");
    // Stop once the sixth start has exited (given up on: its pid is gone from the status).
    let given_up = |dir: &Path| {
        let proxies = starts(dir).iter().filter(|(_, r)| r == "proxy").count();
        let status = weft_local::status::read(&dir.join("state")).unwrap();
        proxies == 6 && status.processes[2].pid.is_none()
    };
    let (status, started) = up_then_stop(&dir.path, &crashing, given_up).await;
    assert_eq!(
        roles(&started),
        ["control", "proxy", "proxy", "proxy", "proxy", "proxy", "proxy"]
    );
    let restarts: Vec<u32> = status.processes.iter().map(|p| p.restarts).collect();
    assert_eq!(restarts, [0, 0, 5]);
}

/// The sum of the backoffs before giving up: 100 + 200 + 400 + 800 + 1600 ms.
const BACKOFF_BEFORE_GIVING_UP: Duration = Duration::from_millis(3100);

async fn up_until_it_gives_up(dir: &Path, control_body: &str) -> (anyhow::Error, Duration) {
    let opts = options(dir, fake_weft(dir, control_body, PROXY_READY), "sleep 1000");
    let t = Instant::now();
    let err = tokio::time::timeout(TIMEOUT, weft_local::up(opts, std::future::pending()))
        .await
        .expect("weft up to give up")
        .expect_err("a control plane that never starts fails weft up");
    (err, t.elapsed())
}

#[tokio::test]
async fn a_crashing_process_is_restarted_with_backoff_then_given_up() {
    let dir = TempDir::new("up-crash-loop");
    let (err, took) = up_until_it_gives_up(&dir.path, "exit 3").await;
    assert!(
        err.to_string().contains("control control keeps exiting"),
        "{err:#}"
    );
    assert!(took >= BACKOFF_BEFORE_GIVING_UP, "gave up after {took:?}");
    let started = starts(&dir.path);
    assert_eq!(
        started.len(),
        6,
        "started once, restarted 5 times: {started:?}"
    );
    for (pid, _) in started {
        assert!(!live(pid));
    }
}

#[tokio::test]
async fn a_restart_that_cannot_spawn_is_retried_with_backoff_then_given_up() {
    let dir = TempDir::new("up-spawn-fails");
    // The first run deletes the executable: every restart fails to spawn.
    let (err, took) = up_until_it_gives_up(&dir.path, r#"rm -f "$0"; exit 3"#).await;
    assert!(
        err.to_string().contains("control control keeps exiting"),
        "{err:#}"
    );
    assert!(took >= BACKOFF_BEFORE_GIVING_UP, "gave up after {took:?}");
    assert_eq!(starts(&dir.path).len(), 1);
}

#[tokio::test]
async fn a_command_app_starts_after_its_sidecar_and_is_told_the_address_it_bound() {
    let dir = TempDir::new("up-app-env");
    let (env_file, fifo) = (dir.path.join("app-env"), dir.path.join("app.fifo"));
    mkfifo(&fifo);
    let app_pids = dir.path.join("app-pids");
    let _cleanup = AppGroups(app_pids.clone());
    // The fake sidecar reports the outbound address it "bound": the app must be told that
    // one, not a port picked before the sidecar ran. The FIFO opens once `env` has run.
    let command = format!(
        "echo $$ >>{}; env >{}; sleep 1000 >{}",
        app_pids.display(),
        env_file.display(),
        fifo.display()
    );
    let opts = options(
        &dir.path,
        fake_weft(&dir.path, CONTROL_READY, PROXY_READY),
        &command,
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut up = tokio::spawn(weft_local::up(
        opts,
        stop_when(stopped, &dir.path, |_| true),
    ));
    let _reader = tokio::select! {
        r = open_reader(&fifo) => r,
        r = &mut up => panic!("weft up ended early: {r:?}"),
    };
    stop.send(()).unwrap();
    let code = tokio::time::timeout(TIMEOUT, up)
        .await
        .expect("weft up to stop")
        .unwrap()
        .unwrap();
    assert_eq!(code, 0);
    let env = std::fs::read_to_string(&env_file).unwrap();
    for want in [
        "WEFT_OUTBOUND=127.0.0.1:9",
        "HTTP_PROXY=http://127.0.0.1:9",
        "PORT=9",
    ] {
        assert!(env.lines().any(|l| l == want), "{want} missing:\n{env}");
    }
    // The SPIFFE Workload API of its sidecar: an absolute unix:// URI (the standard's
    // form) in a folder only this user may enter.
    let socket = env
        .lines()
        .find_map(|l| l.strip_prefix("SPIFFE_ENDPOINT_SOCKET=unix://"))
        .unwrap_or_else(|| panic!("SPIFFE_ENDPOINT_SOCKET missing:\n{env}"));
    let socket = std::path::Path::new(socket);
    assert!(
        socket.is_absolute() && socket.ends_with("sidecar-pg.game.sock"),
        "{socket:?}"
    );
    assert!(socket.as_os_str().len() <= 103, "{socket:?}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(socket.parent().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
}
