//! The Istio kinds watched on Kubernetes: each of weft's kinds at every apiVersion Istio's
//! CRDs serve, with the CRD's plural (the URL path segment).

use kube::discovery::ApiResource;
use weft_api::Kind;

/// The plural Istio's CRD declares for a kind.
pub fn plural(kind: Kind) -> &'static str {
    match kind {
        Kind::VirtualService => "virtualservices",
        Kind::DestinationRule => "destinationrules",
        Kind::Gateway => "gateways",
        Kind::ServiceEntry => "serviceentries",
        Kind::WorkloadEntry => "workloadentries",
        Kind::Sidecar => "sidecars",
        Kind::PeerAuthentication => "peerauthentications",
        Kind::AuthorizationPolicy => "authorizationpolicies",
        Kind::RequestAuthentication => "requestauthentications",
        Kind::Telemetry => "telemetries",
        Kind::WorkloadGroup => "workloadgroups",
        Kind::MeshConfig => "",
    }
}

/// Every (kind, served version) pair, storage version first within a kind.
pub fn istio_resources() -> Vec<(Kind, ApiResource)> {
    Kind::ALL
        .iter()
        .flat_map(|kind| {
            kind.versions().iter().map(move |version| {
                let group = kind.group();
                (
                    *kind,
                    ApiResource {
                        group: group.into(),
                        version: (*version).into(),
                        api_version: format!("{group}/{version}"),
                        kind: kind.as_str().into(),
                        plural: plural(*kind).into(),
                    },
                )
            })
        })
        .collect()
}
