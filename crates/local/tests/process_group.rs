//! Every child leads its own process group, and stopping it (or its exiting) takes down
//! what it started: a `sh -c` command app's background server must not outlive it.

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;
use tokio::sync::mpsc;
use weft_local::process::{self, Msg, Running};

/// Starts `sh -c SCRIPT` through the supervisor's spawn. SCRIPT runs `sleep 1000` in the
/// background with its stdout on `fifo` and reports `$!` in a ready event; returns the
/// child, the message channel, the grandchild's pid, and the FIFO's read end (open, so the
/// grandchild is running).
async fn spawn_with_grandchild(
    dir: &Path,
    fifo: &Path,
    rest: &str,
    guard: &mut GroupGuard,
) -> (Running, mpsc::UnboundedReceiver<Msg>, u32, std::fs::File) {
    mkfifo(fifo);
    let script = format!(
        r#"sleep 1000 >'{}' & echo "{{\"event\":\"ready\",\"grandchild\":$!}}"; {rest}"#,
        fifo.display()
    );
    let (tx, mut rx) = mpsc::unbounded_channel();
    let running = process::spawn(
        "app-test",
        1,
        Path::new("/bin/sh"),
        &["-c".to_string(), script],
        &[],
        &dir.join("app-test.log"),
        tx,
    )
    .unwrap();
    guard.0.push(running.pgid);
    assert_eq!(running.pgid, running.pid, "the child leads its own group");
    let event = match recv(&mut rx).await {
        Msg::Event { event, .. } => event,
        other => panic!("expected the ready event, got {other:?}"),
    };
    let grandchild = event["grandchild"].as_u64().map(|p| p as u32);
    let grandchild = grandchild.unwrap_or_else(|| panic!("no grandchild pid in {event}"));
    let reader = open_reader(fifo).await;
    let (_, pgrp, _) = stat(grandchild).expect("the grandchild runs");
    assert_eq!(pgrp, running.pgid, "the grandchild is in the child's group");
    assert!(live(grandchild));
    assert!(
        stat(running.pid).is_some_and(|(_, pg, _)| pg != std::process::id()),
        "the child is not in the test's process group"
    );
    (running, rx, grandchild, reader)
}

async fn recv(rx: &mut mpsc::UnboundedReceiver<Msg>) -> Msg {
    tokio::time::timeout(TIMEOUT, rx.recv())
        .await
        .expect("timed out waiting for a message from the child")
        .expect("the channel stays open")
}

async fn recv_exit(rx: &mut mpsc::UnboundedReceiver<Msg>) -> String {
    loop {
        match recv(rx).await {
            Msg::Exited { status, .. } => return status,
            Msg::Event { event, .. } => assert!(event.get("event").is_some_and(Value::is_string)),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn killing_a_child_kills_its_whole_process_group() {
    let dir = TempDir::new("pgroup-kill");
    let mut guard = GroupGuard::default();
    let (mut running, mut rx, grandchild, reader) = spawn_with_grandchild(
        &dir.path,
        &dir.path.join("grandchild.fifo"),
        "sleep 1000",
        &mut guard,
    )
    .await;

    running.kill();
    let status = recv_exit(&mut rx).await;
    assert!(status.contains("SIGKILL"), "{status}");
    // EOF: the grandchild, the FIFO's only writer, is dead.
    wait_for_writers_to_exit(reader).await;
    assert!(!live(grandchild), "the grandchild {grandchild} survived");
    assert!(!live(running.pid), "the child {} survived", running.pid);
    assert_eq!(group_gone(running.pgid).await, Vec::<u32>::new());
    guard.disarm();
}

#[tokio::test]
async fn a_child_exiting_by_itself_takes_its_group_along() {
    let dir = TempDir::new("pgroup-exit");
    let mut guard = GroupGuard::default();
    // The shell waits until the test writes a line to `ctl`, then exits with 3, leaving its
    // background sleep behind (as a crashing `sh -c 'server & ...'` app would).
    let ctl = dir.path.join("ctl.fifo");
    mkfifo(&ctl);
    let rest = format!("read line <'{}'; exit 3", ctl.display());
    let (running, mut rx, grandchild, reader) = spawn_with_grandchild(
        &dir.path,
        &dir.path.join("grandchild.fifo"),
        &rest,
        &mut guard,
    )
    .await;

    let ctl_path = ctl.clone();
    blocking("the shell to open its control FIFO", move || {
        std::fs::write(ctl_path, "go\n")
    })
    .await
    .unwrap();
    let status = recv_exit(&mut rx).await;
    assert!(status.contains("exit status: 3"), "{status}");
    wait_for_writers_to_exit(reader).await;
    assert!(!live(grandchild), "the grandchild {grandchild} survived");
    assert_eq!(group_gone(running.pgid).await, Vec::<u32>::new());
    guard.disarm();
}

#[tokio::test]
async fn kill_group_refuses_our_own_group_and_init() {
    assert!(!process::kill_group(0).await);
    assert!(!process::kill_group(1).await);
}
