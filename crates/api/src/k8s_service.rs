//! Kubernetes `Service` documents (`apiVersion: v1`) read as service definitions: what
//! Istio's registry takes from a Service — its host `name.namespace.svc.cluster.local`,
//! its ports (protocol from `appProtocol`, else the port name's prefix, as Istio selects
//! it) and its pod selector — becomes the same registry entry as a MESH_INTERNAL
//! ServiceEntry with a workloadSelector. The resource keeps `apiVersion: v1` so reports
//! can tell it came from a Service.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::common::WorkloadSelector;
use crate::service_entry::{Location, Resolution, ServiceEntry, ServicePort};

/// The parts of a Service weft reads (everything else is ignored, as it is Kubernetes').
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct K8sService {
    #[serde(default)]
    pub metadata: K8sMeta,
    #[serde(default)]
    pub spec: K8sSpec,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct K8sMeta {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct K8sSpec {
    #[serde(default)]
    pub ports: Vec<K8sPort>,
    #[serde(default)]
    pub selector: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct K8sPort {
    pub port: u32,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub app_protocol: Option<String>,
}

/// Istio's protocol selection for a Service port: `appProtocol`, else the name's prefix
/// (`http-…`, `grpc-…`, `tcp-…`); unknown means Istio sniffs (weft serves HTTP then).
fn protocol(p: &K8sPort) -> Option<String> {
    let declared = p
        .app_protocol
        .as_deref()
        .unwrap_or_else(|| p.name.split('-').next().unwrap_or(""));
    let proto = match declared.to_ascii_lowercase().as_str() {
        "http" => "HTTP",
        "http2" | "kubernetes.io/h2c" => "HTTP2",
        "grpc" => "GRPC",
        "grpc-web" => "GRPC-WEB",
        "https" => "HTTPS",
        "tls" => "TLS",
        "tcp" => "TCP",
        "mongo" => "MONGO",
        "redis" => "REDIS",
        "mysql" => "MYSQL",
        _ => return None,
    };
    Some(proto.to_string())
}

impl K8sService {
    /// The ServiceEntry spec Istio's registry would hold for this Service.
    pub(crate) fn to_service_entry(&self, namespace: &str) -> ServiceEntry {
        ServiceEntry {
            hosts: vec![format!(
                "{}.{namespace}.svc.cluster.local",
                self.metadata.name
            )],
            ports: self
                .spec
                .ports
                .iter()
                .map(|p| ServicePort {
                    number: p.port,
                    protocol: protocol(p),
                    name: if p.name.is_empty() {
                        format!("port-{}", p.port)
                    } else {
                        p.name.clone()
                    },
                    // targetPort names the pod's port; weft's workloads declare theirs.
                    target_port: None,
                })
                .collect(),
            location: Some(Location::MeshInternal),
            resolution: Some(Resolution::Static),
            workload_selector: (!self.spec.selector.is_empty()).then(|| WorkloadSelector {
                labels: self.spec.selector.clone(),
            }),
            ..Default::default()
        }
    }
}
