//! What `weft status` shows of the running mesh: every process with its role, pid,
//! restarts and addresses (admin, inbound, outbound, merged metrics, gateway ports, the
//! Workload API socket) and what the config loads but does not enforce.

use super::{Mesh, Role};
use crate::status::{MeshStatus, ProcStatus};
use serde_json::Value;

impl Mesh {
    pub(crate) fn status(&self) -> MeshStatus {
        MeshStatus {
            config_dir: self.opts.config_dir.display().to_string(),
            supervisor_pid: std::process::id(),
            not_enforced: self.not_enforced.clone(),
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
                                    [
                                        "grpc",
                                        "admin",
                                        "inbound",
                                        "outbound",
                                        "address",
                                        "merged_metrics",
                                    ]
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
                                .chain(p.tcp.iter().map(|(k, a)| (k.clone(), a.clone())))
                                .chain((p.role == Role::Sidecar).then(|| {
                                    let socket = self.workload_api_socket(&p.name);
                                    ("workload_api".into(), socket.display().to_string())
                                }))
                                .collect()
                        })
                        .unwrap_or_default(),
                })
                .collect(),
        }
    }
}

impl Mesh {
    /// The first sidecar (in start order) with the labelled TCP listener (`tcp/<host>:<port>`):
    /// (its name, the listener's address).
    pub(crate) fn first_sidecar_listener(&self, label: &str) -> Option<(String, String)> {
        self.procs
            .iter()
            .filter(|p| p.role == Role::Sidecar)
            .find_map(|p| Some((p.name.clone(), p.tcp.get(label)?.clone())))
    }
}
