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
    /// This workload's app, canonical service and revision, cluster.
    pub meta: weft_model::WorkloadMeta,
}

/// This proxy's workload meta, with Istio's defaults for what its labels do not say.
fn meta(config: &ProxyConfig, who: &Who) -> weft_model::WorkloadMeta {
    let mut m = config.workload_meta.or_defaults(who.workload);
    if config.workload_meta.version.is_empty() {
        if let Some(v) = config.inbound.as_ref().and_then(|i| i.version.clone()) {
            m.version = v;
        }
    }
    m
}

/// This proxy's own side of the labels.
pub fn own(config: &ProxyConfig, who: &Who) -> OwnLabels {
    let m = meta(config, who);
    let source = PeerLabels {
        reporter: "source".into(),
        source_workload: who.workload.into(),
        source_canonical_service: m.canonical_service.clone(),
        source_canonical_revision: m.canonical_revision.clone(),
        source_workload_namespace: who.namespace.into(),
        source_principal: who.principal.into(),
        source_app: m.app.clone(),
        source_version: m.version.clone(),
        source_cluster: m.cluster.clone(),
        connection_security_policy: "unknown".into(),
        // No destination is known (no route, a direct response, REGISTRY_ONLY's 502):
        // Istio's `unknown`s.
        destination_workload: "unknown".into(),
        destination_workload_namespace: "unknown".into(),
        destination_principal: "unknown".into(),
        destination_app: "unknown".into(),
        destination_version: "unknown".into(),
        destination_service: "unknown".into(),
        destination_service_name: "unknown".into(),
        destination_service_namespace: "unknown".into(),
        destination_canonical_service: "unknown".into(),
        destination_canonical_revision: "latest".into(),
        destination_cluster: "unknown".into(),
    };
    let destination = PeerLabels {
        reporter: "destination".into(),
        destination_workload: who.workload.into(),
        destination_workload_namespace: who.namespace.into(),
        destination_principal: who.principal.into(),
        destination_app: m.app.clone(),
        destination_version: m.version.clone(),
        destination_canonical_service: m.canonical_service.clone(),
        destination_canonical_revision: m.canonical_revision.clone(),
        destination_cluster: m.cluster.clone(),
        connection_security_policy: "mutual_tls".into(),
        ..Default::default()
    };
    let unknown = || "unknown".to_string();
    let mut plaintext = PeerLabels {
        source_workload: unknown(),
        source_canonical_service: unknown(),
        // Istio's default revision for a peer it knows nothing about.
        source_canonical_revision: "latest".into(),
        source_workload_namespace: unknown(),
        source_principal: unknown(),
        source_app: unknown(),
        source_version: unknown(),
        source_cluster: unknown(),
        destination_service: unknown(),
        destination_service_name: unknown(),
        destination_service_namespace: unknown(),
        connection_security_policy: "none".into(),
        ..destination.clone()
    };
    // A caller outside the mesh sends no peer metadata; a workload that backs one service
    // knows which one it is being called as.
    if let Some([only]) = config.inbound.as_ref().map(|i| i.services.as_slice()) {
        plaintext.set_service(only);
    }
    OwnLabels {
        source: who.metrics.intern(source),
        destination,
        meta: m,
        plaintext: who.metrics.intern(plaintext),
    }
}

/// A cluster's labels, as the source reporter.
pub fn cluster(c: &Cluster, own: &OwnLabels, who: &Who) -> ClusterLabels {
    let mut base = PeerLabels::clone(&own.source);
    base.set_service(&c.service);
    if c.egress.is_some() {
        // A service outside the mesh: Istio names it by its host, in the namespace of
        // its ServiceEntry.
        base.destination_service_name = c.service.clone();
        base.destination_service_namespace = match c.namespace.as_str() {
            "" => "unknown".into(),
            ns => ns.to_string(),
        };
    }
    let unknown = || "unknown".to_string();
    // Before an endpoint is picked, Istio knows the service but no workload.
    base.destination_workload = unknown();
    base.destination_workload_namespace = unknown();
    base.destination_principal = unknown();
    base.destination_version = unknown();
    base.destination_app = unknown();
    base.destination_canonical_service = unknown();
    base.destination_canonical_revision = "latest".into();
    base.destination_cluster = unknown();
    let endpoints = c
        .endpoints
        .iter()
        .map(|e| {
            let mut l = base.clone();
            // Outside the mesh there is no workload to name: Istio reports `unknown`.
            if c.egress.is_some() {
                return who.metrics.intern(l);
            }
            let m = e.meta.or_defaults(&e.workload);
            l.destination_workload = e.workload.clone();
            l.destination_workload_namespace = c.namespace.clone();
            l.destination_principal = e.identity.clone();
            l.destination_version = e.version.clone().unwrap_or_else(unknown);
            l.destination_app = m.app;
            l.destination_canonical_service = m.canonical_service;
            l.destination_canonical_revision = m.canonical_revision;
            l.destination_cluster = m.cluster;
            who.metrics.intern(l)
        })
        .collect();
    let peer_header = crate::telemetry::peer::peer_metadata(
        who.workload,
        who.namespace,
        &own.meta,
        &c.service,
        c.port,
    );
    ClusterLabels {
        cluster: who.metrics.intern(base),
        endpoints,
        peer_header,
        stats: who.metrics.cluster_stats(&c.name),
    }
}
