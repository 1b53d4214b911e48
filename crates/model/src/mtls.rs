//! Mutual TLS between workloads, as Istio decides it. Server side: the PeerAuthentication
//! that governs a workload — workload-level (selector) over namespace-level over mesh-level
//! (root namespace), `UNSET` inheriting, per-port overrides — with Istio's default
//! PERMISSIVE. Client side (auto-mTLS): mTLS to every sidecar unless the server's mode is
//! DISABLE, or a DestinationRule's `tls.mode` says ISTIO_MUTUAL or DISABLE.

use crate::registry::selects;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use weft_api::{ClientTlsMode, MtlsMode, PeerAuthentication, Resource, Spec};

/// What a sidecar's inbound side accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InboundMode {
    /// mTLS only.
    Strict,
    /// mTLS and plaintext on the same port (Istio's default).
    #[default]
    Permissive,
    /// Plaintext only.
    Disable,
}

/// The inbound mode, with per-port overrides (PeerAuthentication `portLevelMtls`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct InboundMtls {
    pub mode: InboundMode,
    /// Service port -> mode, where it differs.
    #[serde(default)]
    pub ports: BTreeMap<u32, InboundMode>,
}

impl InboundMtls {
    /// The mode for requests to `port`.
    pub fn for_port(&self, port: u32) -> InboundMode {
        self.ports.get(&port).copied().unwrap_or(self.mode)
    }

    /// Whether any port accepts plaintext / mTLS.
    pub fn accepts_plaintext(&self) -> bool {
        self.mode != InboundMode::Strict || self.ports.values().any(|m| *m != InboundMode::Strict)
    }

    pub fn accepts_mtls(&self) -> bool {
        self.mode != InboundMode::Disable || self.ports.values().any(|m| *m != InboundMode::Disable)
    }
}

fn mode_of(m: Option<MtlsMode>) -> Option<InboundMode> {
    match m? {
        MtlsMode::Unset => None,
        MtlsMode::Strict => Some(InboundMode::Strict),
        MtlsMode::Permissive => Some(InboundMode::Permissive),
        MtlsMode::Disable => Some(InboundMode::Disable),
    }
}

/// The PeerAuthentication of the workload `(namespace, labels)`: the first matching
/// selector policy in its namespace, else its namespace's policy, else the mesh's.
pub fn inbound(
    resources: &[Resource],
    root_namespace: &str,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> (InboundMtls, Vec<String>) {
    let policies: Vec<(&Resource, &PeerAuthentication)> = resources
        .iter()
        .filter_map(|r| match &r.spec {
            Spec::PeerAuthentication(pa) => Some((r, pa)),
            _ => None,
        })
        .collect();
    let has_selector = |pa: &PeerAuthentication| {
        pa.selector
            .as_ref()
            .is_some_and(|s| !s.match_labels.is_empty())
    };
    let workload = policies.iter().find(|(r, pa)| {
        r.namespace() == namespace
            && pa
                .selector
                .as_ref()
                .is_some_and(|s| !s.match_labels.is_empty() && selects(&s.match_labels, labels))
    });
    let ns_wide = policies
        .iter()
        .find(|(r, pa)| r.namespace() == namespace && !has_selector(pa));
    let mesh_wide = policies
        .iter()
        .find(|(r, pa)| r.namespace() == root_namespace && !has_selector(pa));
    let mut used = Vec::new();
    let mut mode = None;
    for (r, pa) in [workload, ns_wide, mesh_wide].into_iter().flatten() {
        used.push(r.key());
        if let Some(m) = mode_of(pa.mtls.as_ref().and_then(|m| m.mode)) {
            mode = Some(m);
            break;
        }
    }
    let mode = mode.unwrap_or_default();
    // Port-level modes come from the workload-level policy (Istio allows them only there).
    let ports = workload
        .map(|(_, pa)| {
            pa.port_level_mtls
                .iter()
                .map(|(port, m)| (*port, mode_of(m.mode).unwrap_or(mode)))
                .filter(|(_, m)| *m != mode)
                .collect()
        })
        .unwrap_or_default();
    (InboundMtls { mode, ports }, used)
}

/// Auto-mTLS: does a client send plaintext to an endpoint whose workload accepts `server`
/// on `port`, given the DestinationRule's `tls.mode` (if any)?
pub fn client_plaintext(dr_tls: Option<ClientTlsMode>, server: &InboundMtls, port: u32) -> bool {
    match dr_tls {
        Some(ClientTlsMode::Disable) => true,
        // ISTIO_MUTUAL, and SIMPLE/MUTUAL (reported as not enforced): the mesh's mTLS.
        Some(_) => false,
        None => server.for_port(port) == InboundMode::Disable,
    }
}
