//! The state file of a running local mesh (`<state>/mesh.json`) and `weft status`: every
//! process with its role, pid, liveness, restarts and addresses.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One supervised process.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProcStatus {
    pub name: String,
    pub role: String,
    pub pid: Option<u32>,
    pub restarts: u32,
    pub addresses: BTreeMap<String, String>,
}

/// The whole mesh.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MeshStatus {
    pub config_dir: String,
    pub supervisor_pid: u32,
    pub processes: Vec<ProcStatus>,
    /// What the running config loads but does not enforce yet
    /// (`Kind/ns/name (file:line): what`).
    #[serde(default)]
    pub not_enforced: Vec<String>,
}

/// Writes `<state>/mesh.json` atomically.
pub fn write(state_dir: &Path, status: &MeshStatus) -> anyhow::Result<()> {
    let tmp = state_dir.join("mesh.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(status)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, state_dir.join("mesh.json")).context("replacing mesh.json")?;
    Ok(())
}

/// Reads `<state>/mesh.json`.
pub fn read(state_dir: &Path) -> anyhow::Result<MeshStatus> {
    let path = state_dir.join("mesh.json");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "no mesh state at {} (is `weft up` running with this --state-dir?)",
            path.display()
        )
    })?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a weft mesh state file", path.display()))
}

/// Is `pid` a live process? (Linux: /proc)
pub fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// A text table of the processes.
pub fn render(status: &MeshStatus) -> String {
    let mut out = format!(
        "{:<8} {:<44} {:>8} {:<8} {:>8}  addresses\n",
        "ROLE", "NAME", "PID", "STATE", "RESTARTS"
    );
    for p in &status.processes {
        let state = match p.pid {
            Some(pid) if alive(pid) => "running",
            _ => "stopped",
        };
        let addrs: Vec<String> = p
            .addresses
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let pid = p.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "{:<8} {:<44} {:>8} {:<8} {:>8}  {}\n",
            p.role,
            p.name,
            pid,
            state,
            p.restarts,
            addrs.join(" ")
        ));
    }
    out
}

/// How `weft status` names a TCP listener among a process's addresses: `tcp/<host>:<port>`
/// (a sidecar's, where its app reaches that service port) or `tcp/<port>` (a gateway's TCP
/// or PASSTHROUGH server); `None` for HTTP listeners.
pub(crate) fn tcp_label(name: &str, port: u64) -> Option<String> {
    if let Some((_, host)) = name
        .strip_prefix("outbound_tcp|")
        .and_then(|r| r.split_once('|'))
    {
        return Some(format!("tcp/{host}:{port}"));
    }
    // Gateway TCP servers and PASSTHROUGH (TLS by SNI) servers.
    (name.starts_with("gateway_tcp_") || name.starts_with("gateway_tls_"))
        .then(|| format!("tcp/{port}"))
}

/// `weft status`: the table, or JSON with a `running` flag per process.
pub fn status_command(state_dir: &Path, json: bool) -> anyhow::Result<String> {
    let status = read(state_dir)?;
    if json {
        let mut v = serde_json::to_value(&status)?;
        v["supervisor_running"] = alive(status.supervisor_pid).into();
        for (p, s) in v["processes"]
            .as_array_mut()
            .into_iter()
            .flatten()
            .zip(&status.processes)
        {
            p["running"] = s.pid.is_some_and(alive).into();
        }
        return Ok(serde_json::to_string_pretty(&v)?);
    }
    let sup = if alive(status.supervisor_pid) {
        "running"
    } else {
        "not running"
    };
    let mut out = format!(
        "mesh from {} (supervisor pid {} {sup})\n{}",
        status.config_dir,
        status.supervisor_pid,
        render(&status)
    );
    if !status.not_enforced.is_empty() {
        out.push_str(&format!(
            "\nloaded but not enforced yet ({} items; weft does not implement these semantics yet):\n",
            status.not_enforced.len()
        ));
        for n in &status.not_enforced {
            out.push_str(&format!("  {n}\n"));
        }
    }
    Ok(out)
}

/// Minimal HTTP/1.0 GET against a local admin endpoint; the body as text.
pub async fn http_get(addr: &str, path: &str) -> anyhow::Result<String> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).await?;
    Ok(buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default())
}
