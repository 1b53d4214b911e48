//! What the active config precomputes for telemetry and peer metadata, so requests do not
//! build strings: the interned who-called-whom labels of each cluster and endpoint, the
//! peer-metadata header for each destination service, and this proxy's own side of the
//! labels for requests it receives.

use crate::telemetry::{ClusterLabels, Metrics, PeerLabels};
use std::sync::Arc;
use weft_model::{Cluster, ProxyConfig};

/// Who this proxy is.
pub struct Who<'a> {
    pub workload: &'a str,
    pub namespace: &'a str,
    /// This proxy's SPIFFE id.
    pub principal: &'a str,
    pub metrics: &'a Metrics,
}

/// This proxy's own labels.
#[derive(Debug, Clone, Default)]
pub struct OwnLabels {
    /// As the source of a request, before any destination is known (no route).
    pub source: Arc<PeerLabels>,
    /// As the destination of a request: the template each caller's labels fill in.
    pub destination: PeerLabels,
    /// As the destination of a plaintext request (PERMISSIVE or DISABLE): the caller is
    /// unknown and the connection is not mTLS.
    pub plaintext: Arc<PeerLabels>,
}

fn version(config: &ProxyConfig) -> String {
    config
        .inbound
        .as_ref()
        .and_then(|i| i.version.clone())
        .unwrap_or_else(|| "unknown".into())
}

/// This proxy's own side of the labels.
pub fn own(config: &ProxyConfig, who: &Who) -> OwnLabels {
    let version = version(config);
    let source = PeerLabels {
        reporter: "source".into(),
        source_workload: who.workload.into(),
        source_workload_namespace: who.namespace.into(),
        source_principal: who.principal.into(),
        source_version: version.clone(),
        connection_security_policy: "unknown".into(),
        ..Default::default()
    };
    let destination = PeerLabels {
        reporter: "destination".into(),
        destination_workload: who.workload.into(),
        destination_workload_namespace: who.namespace.into(),
        destination_principal: who.principal.into(),
        destination_version: version,
        connection_security_policy: "mutual_tls".into(),
        ..Default::default()
    };
    let plaintext = PeerLabels {
        source_workload: "unknown".into(),
        source_workload_namespace: "unknown".into(),
        source_principal: "unknown".into(),
        source_version: "unknown".into(),
        destination_service: "unknown".into(),
        destination_service_name: "unknown".into(),
        destination_service_namespace: "unknown".into(),
        connection_security_policy: "none".into(),
        ..destination.clone()
    };
    OwnLabels {
        source: who.metrics.intern(source),
        destination,
        plaintext: who.metrics.intern(plaintext),
    }
}

/// A cluster's labels, as the source reporter.
pub fn cluster(c: &Cluster, own: &OwnLabels, who: &Who) -> ClusterLabels {
    let mut base = PeerLabels::clone(&own.source);
    base.set_service(&c.service);
    let endpoints = c
        .endpoints
        .iter()
        .map(|e| {
            let mut l = base.clone();
            l.destination_workload = e.workload.clone();
            l.destination_workload_namespace = c.namespace.clone();
            l.destination_principal = e.identity.clone();
            l.destination_version = e.version.clone().unwrap_or_else(|| "unknown".into());
            who.metrics.intern(l)
        })
        .collect();
    let peer_header = crate::telemetry::peer::peer_metadata(
        who.workload,
        who.namespace,
        &own.source.source_version,
        &c.service,
    );
    ClusterLabels {
        cluster: who.metrics.intern(base),
        endpoints,
        peer_header,
    }
}
