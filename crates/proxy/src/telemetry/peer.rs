//! Peer metadata between proxies (Istio's `x-envoy-peer-metadata` role): the value a
//! calling proxy sends with each request, and how the called proxy turns it into the
//! source labels of its metrics, trusting it only as far as the caller's certificate does.

use super::PeerLabels;
use http::HeaderValue;

/// Carries source workload metadata from the calling proxy to the called one; removed
/// before the request reaches the app.
pub const PEER_HEADER: &str = "x-weft-peer";

/// The peer-metadata value a calling proxy sends: who it is, and which service and port
/// it called (the port tells a server with several service ports which one was meant, as
/// the destination port of a connection does for Envoy).
pub fn peer_metadata(
    workload: &str,
    namespace: &str,
    meta: &weft_model::WorkloadMeta,
    service: &str,
    port: u32,
) -> HeaderValue {
    let v = format!(
        "source_workload={workload};source_namespace={namespace};source_version={};source_app={};source_canonical_service={};source_canonical_revision={};source_cluster={};destination_service={service};destination_port={port}",
        meta.version, meta.app, meta.canonical_service, meta.canonical_revision, meta.cluster
    );
    HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static(""))
}

/// The service port a calling proxy says it called (`destination_port=`), if any.
pub fn called_port(meta: &str) -> Option<u16> {
    meta.split(';')
        .find_map(|kv| kv.strip_prefix("destination_port="))
        .and_then(|p| p.parse().ok())
}

/// Fills source labels from the caller's peer metadata. The caller is only trusted about
/// what its certificate does not already say: a claimed namespace that differs from the
/// certificate's is ignored wholesale, and values are length-capped so a peer cannot blow
/// up metric cardinality with huge labels.
pub fn apply_peer_metadata(labels: &mut PeerLabels, meta: &str, peer_id: &str) {
    const MAX: usize = 253;
    let cert_ns = peer_id
        .split("/ns/")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or("");
    let mut claimed = PeerLabels::default();
    for kv in meta.split(';') {
        let Some((k, v)) = kv.split_once('=') else {
            continue;
        };
        if v.len() > MAX {
            continue;
        }
        let slot = match k {
            "source_workload" => &mut claimed.source_workload,
            "source_namespace" => &mut claimed.source_workload_namespace,
            "source_version" => &mut claimed.source_version,
            "source_app" => &mut claimed.source_app,
            "source_canonical_service" => &mut claimed.source_canonical_service,
            "source_canonical_revision" => &mut claimed.source_canonical_revision,
            "source_cluster" => &mut claimed.source_cluster,
            "destination_service" => &mut claimed.destination_service,
            _ => continue,
        };
        *slot = v.into();
    }
    let unknown = || "unknown".to_string();
    if claimed.source_workload_namespace != cert_ns {
        labels.source_workload = unknown();
        labels.source_workload_namespace = cert_ns.into();
        labels.source_app = unknown();
        labels.source_version = unknown();
        labels.source_canonical_service = unknown();
        labels.source_canonical_revision = "latest".into();
        labels.source_cluster = unknown();
        return;
    }
    let or_unknown = |v: String| if v.is_empty() { unknown() } else { v };
    labels.source_workload = claimed.source_workload;
    labels.source_workload_namespace = claimed.source_workload_namespace;
    labels.source_version = or_unknown(claimed.source_version);
    labels.source_app = or_unknown(claimed.source_app);
    labels.source_canonical_service = or_unknown(claimed.source_canonical_service);
    labels.source_canonical_revision = match claimed.source_canonical_revision {
        r if r.is_empty() => "latest".into(),
        r => r,
    };
    labels.source_cluster = or_unknown(claimed.source_cluster);
    labels.set_service(&claimed.destination_service);
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEER: &str = "spiffe://cluster.local/ns/game/sa/player";

    #[test]
    fn peer_metadata_is_used_when_it_agrees_with_the_certificate() {
        let mut l = PeerLabels::default();
        apply_peer_metadata(&mut l, "source_workload=player-v1;source_namespace=game;source_version=v1;source_app=player;source_canonical_service=player;source_canonical_revision=v1;source_cluster=Kubernetes;destination_service=inv.game.svc.cluster.local", PEER);
        assert_eq!(
            (
                l.source_app.as_str(),
                l.source_canonical_service.as_str(),
                l.source_canonical_revision.as_str(),
                l.source_cluster.as_str()
            ),
            ("player", "player", "v1", "Kubernetes")
        );
        assert_eq!(
            (
                l.source_workload.as_str(),
                l.source_workload_namespace.as_str()
            ),
            ("player-v1", "game")
        );
        assert_eq!(l.destination_service, "inv.game.svc.cluster.local");
    }

    #[test]
    fn a_namespace_the_certificate_does_not_back_is_ignored() {
        let mut l = PeerLabels::default();
        apply_peer_metadata(
            &mut l,
            "source_workload=admin;source_namespace=kube-system",
            PEER,
        );
        assert_eq!(
            (
                l.source_workload.as_str(),
                l.source_workload_namespace.as_str()
            ),
            ("unknown", "game")
        );
        let mut l = PeerLabels::default();
        let huge = format!(
            "source_workload={};source_namespace=game",
            "x".repeat(10_000)
        );
        apply_peer_metadata(&mut l, &huge, PEER);
        assert_eq!(l.source_workload, "", "oversized values are dropped");
    }
}
