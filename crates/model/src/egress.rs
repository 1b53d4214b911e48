//! Services outside the mesh: ServiceEntries without a `workloadSelector` (MESH_EXTERNAL
//! ones, and MESH_INTERNAL ones that list their endpoints), reached directly — no mTLS,
//! no tunnel — with their `resolution` (NONE, STATIC, DNS, DNS_ROUND_ROBIN), a
//! DestinationRule's TLS origination (`tls.mode` SIMPLE / MUTUAL), and the sidecar's
//! `outboundTrafficPolicy` (ALLOW_ANY's passthrough cluster, REGISTRY_ONLY's 502).

use crate::config::{Cluster, Endpoint};
use crate::registry::selects;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use weft_api::{ClientTlsMode, ClientTlsSettings, Resource, Spec};

/// Istio's name for the cluster ALLOW_ANY sends unknown hosts to.
pub const PASSTHROUGH_CLUSTER: &str = "PassthroughCluster";

/// How a cluster outside the mesh is reached.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Egress {
    pub resolution: Resolution,
    /// TLS origination (DestinationRule `tls.mode` SIMPLE or MUTUAL); none = plaintext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<OriginTls>,
}

/// Where a cluster outside the mesh connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// The destination the app asked for (ServiceEntry `resolution: NONE`, and the
    /// passthrough cluster): the request's authority, or the service host of a TCP
    /// listener — resolved by DNS when it is a name.
    #[default]
    OriginalDestination,
    /// The endpoints' IP addresses (`STATIC`).
    Static,
    /// Each endpoint's name (the host itself without endpoints) resolved when a
    /// connection is made; connections spread over every address it resolves to (`DNS`).
    Dns,
    /// As `Dns`, but only the first address an answer lists is used (`DNS_ROUND_ROBIN`,
    /// Envoy's LOGICAL_DNS).
    DnsRoundRobin,
}

/// DestinationRule TLS origination, with Istio's defaults (certificate verified against
/// the system's roots and the SNI unless told otherwise).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OriginTls {
    /// `caCertificates` file; none = the system's root certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificates: Option<String>,
    /// MUTUAL: `clientCertificate` and `privateKey` files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
    /// `sni`; none = the endpoint's host name (the service host for IP endpoints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// The server certificate must carry one of these (DNS names or IPs); empty = the SNI.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<String>,
    /// `insecureSkipVerify`: the server certificate is not checked at all.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_verify: bool,
}

/// A service outside the mesh, as its ServiceEntry describes it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct External {
    pub resolution: Resolution,
    /// `endpoints[]`; empty = the host itself (DNS) or the app's destination (NONE).
    pub endpoints: Vec<weft_api::WorkloadEntry>,
    /// Each service port's name and `targetPort`.
    pub ports: BTreeMap<u32, (String, Option<u32>)>,
}

/// Whether a ServiceEntry describes a service outside the mesh (it selects no mesh
/// workloads), and if so how it resolves. DYNAMIC_DNS is not built (reported).
pub(crate) fn external_of(se: &weft_api::ServiceEntry) -> Option<External> {
    if se.workload_selector.is_some() {
        return None;
    }
    let resolution = match se.resolution.unwrap_or_default() {
        weft_api::Resolution::None => Resolution::OriginalDestination,
        weft_api::Resolution::Static => Resolution::Static,
        weft_api::Resolution::Dns => Resolution::Dns,
        weft_api::Resolution::DnsRoundRobin => Resolution::DnsRoundRobin,
        weft_api::Resolution::DynamicDns => return None,
    };
    Some(External {
        resolution,
        endpoints: se.endpoints.clone(),
        ports: se
            .ports
            .iter()
            .map(|p| (p.number, (p.name.clone(), p.target_port)))
            .collect(),
    })
}

/// `host:port`, bracketing IPv6 addresses.
fn join(host: &str, port: u32) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The endpoints of the cluster for service `host` on `port` (its subset's labels
/// selecting among `endpoints[]` by their labels).
pub(crate) fn endpoints(
    ext: &External,
    host: &str,
    port: u32,
    subset: &BTreeMap<String, String>,
) -> Vec<Endpoint> {
    let (name, target) = ext.ports.get(&port).cloned().unwrap_or_default();
    let endpoint = |address: String| Endpoint {
        workload: host.to_string(),
        meta: crate::WorkloadMeta::from_labels(host, &BTreeMap::new()),
        address,
        plaintext: true,
        ..Default::default()
    };
    if ext.endpoints.is_empty() {
        return match ext.resolution {
            Resolution::Static => Vec::new(),
            _ if !subset.is_empty() => Vec::new(),
            _ => vec![endpoint(join(host, target.unwrap_or(port)))],
        };
    }
    ext.endpoints
        .iter()
        .filter(|e| selects(subset, &e.labels))
        .filter_map(|e| {
            let addr = e.address.as_deref()?;
            // Unix-socket endpoints are not reachable this way.
            if addr.starts_with("unix://") {
                return None;
            }
            let p = e.ports.get(&name).copied().or(target).unwrap_or(port);
            let mut ep = endpoint(join(addr, p));
            ep.version = e.labels.get("version").cloned();
            Some(ep)
        })
        .collect()
}

/// TLS origination from a DestinationRule's `tls` (SIMPLE or MUTUAL).
pub(crate) fn origin_tls(tls: Option<&ClientTlsSettings>) -> Option<OriginTls> {
    let t = tls?;
    if !matches!(t.mode, Some(ClientTlsMode::Simple | ClientTlsMode::Mutual)) {
        return None;
    }
    let mutual = t.mode == Some(ClientTlsMode::Mutual);
    Some(OriginTls {
        ca_certificates: t.ca_certificates.clone().filter(|s| !s.is_empty()),
        client_certificate: t.client_certificate.clone().filter(|_| mutual),
        private_key: t.private_key.clone().filter(|_| mutual),
        sni: t.sni.clone().filter(|s| !s.is_empty()),
        subject_alt_names: t.subject_alt_names.clone(),
        insecure_skip_verify: t.insecure_skip_verify == Some(true),
    })
}

/// The sidecar's `outboundTrafficPolicy`: the Sidecar's that applies, else MeshConfig's,
/// else Istio's default ALLOW_ANY.
pub(crate) fn allow_any(resources: &[Resource], sidecar: Option<&weft_api::Sidecar>) -> bool {
    let from_sidecar = sidecar
        .and_then(|s| s.outbound_traffic_policy.as_ref())
        .map(|p| p.mode.unwrap_or_default());
    let from_mesh = || {
        crate::mesh::mesh_config(resources)
            .and_then(|mc| mc.outbound_traffic_policy.as_ref())
            .map(|p| p.mode.unwrap_or_default())
    };
    from_sidecar
        .or_else(from_mesh)
        .is_none_or(|m| m == weft_api::OutboundTrafficMode::AllowAny)
}

/// Istio's PassthroughCluster: every request goes where it was addressed, directly; its
/// connections idle out after 5 minutes, as istiod sets for it (`passthroughHttpProtocolOptions`).
pub fn passthrough_cluster() -> Cluster {
    let limits = crate::pool::PoolLimits {
        idle_timeout_ms: Some(300_000),
        ..Default::default()
    };
    Cluster {
        name: PASSTHROUGH_CLUSTER.into(),
        service: PASSTHROUGH_CLUSTER.into(),
        endpoints: vec![Endpoint {
            workload: PASSTHROUGH_CLUSTER.into(),
            plaintext: true,
            ..Default::default()
        }],
        egress: Some(Egress::default()),
        limits,
        ..Default::default()
    }
}

/// The hosts of services outside the mesh, as the config declares them (for reports).
pub(crate) fn external_hosts(resources: &[Resource]) -> Vec<String> {
    resources
        .iter()
        .filter_map(|r| match &r.spec {
            Spec::ServiceEntry(se) if external_of(se).is_some() => Some(
                se.hosts
                    .iter()
                    .map(|h| crate::registry::fqdn(h, r.namespace()))
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        })
        .flatten()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (address, ports by name, version label)
    type Ep<'a> = (&'a str, &'a [(&'a str, u32)], &'a str);

    fn ext(resolution: Resolution, endpoints: &[Ep]) -> External {
        External {
            resolution,
            endpoints: endpoints
                .iter()
                .map(|(a, ports, version)| weft_api::WorkloadEntry {
                    address: Some(a.to_string()),
                    ports: ports.iter().map(|(n, p)| (n.to_string(), *p)).collect(),
                    labels: [("version".to_string(), version.to_string())].into(),
                    ..Default::default()
                })
                .collect(),
            ports: [(6379, ("tcp-redis".to_string(), None))].into(),
        }
    }

    fn addrs(eps: &[Endpoint]) -> Vec<&str> {
        eps.iter().map(|e| e.address.as_str()).collect()
    }

    #[test]
    fn endpoints_by_resolution_port_name_and_subset() {
        let none = BTreeMap::new();
        let dns = ext(Resolution::Dns, &[]);
        assert_eq!(
            addrs(&endpoints(&dns, "redis.example", 6379, &none)),
            ["redis.example:6379"],
            "DNS without endpoints resolves the host itself"
        );
        let st = ext(
            Resolution::Static,
            &[
                ("10.0.0.1", &[("tcp-redis", 7000)], "v1"),
                ("::1", &[], "v2"),
            ],
        );
        assert_eq!(
            addrs(&endpoints(&st, "redis.example", 6379, &none)),
            ["10.0.0.1:7000", "[::1]:6379"],
            "an endpoint's port by the port's name, else the service port"
        );
        let v2 = [("version".to_string(), "v2".to_string())].into();
        assert_eq!(
            addrs(&endpoints(&st, "redis.example", 6379, &v2)),
            ["[::1]:6379"]
        );
        assert!(endpoints(&ext(Resolution::Static, &[]), "h", 6379, &none).is_empty());
        assert!(
            endpoints(&st, "redis.example", 6379, &none)
                .iter()
                .all(|e| e.plaintext && e.tls_identity().is_empty()),
            "no mesh mTLS outside the mesh"
        );
    }

    #[test]
    fn origination_only_for_simple_and_mutual() {
        let mut t = ClientTlsSettings {
            mode: Some(ClientTlsMode::Simple),
            client_certificate: Some("c.pem".into()),
            sni: Some("api.example".into()),
            ..Default::default()
        };
        let o = origin_tls(Some(&t)).expect("SIMPLE originates");
        assert_eq!(o.sni.as_deref(), Some("api.example"));
        assert_eq!(
            o.client_certificate, None,
            "SIMPLE sends no client certificate"
        );
        t.mode = Some(ClientTlsMode::Mutual);
        assert_eq!(
            origin_tls(Some(&t)).unwrap().client_certificate.as_deref(),
            Some("c.pem")
        );
        t.mode = Some(ClientTlsMode::IstioMutual);
        assert_eq!(origin_tls(Some(&t)), None);
    }
}
