//! The clusters of a proxy's config: every cluster its routes, TCP listeners and
//! authorizers name, with endpoints (mesh workloads' sidecars, gateways' servers, or
//! services outside the mesh), the DestinationRule's LB, hash table, outlier detection,
//! pools and TLS, and locality priorities.

use super::Builder;
use crate::config::*;
use crate::names::parse_cluster_name;
use crate::policy::DrSettings;
use crate::registry::{selects, spiffe_id};
use std::collections::{BTreeMap, BTreeSet};

impl Builder<'_> {
    /// Locality failover: endpoint priorities from the client's and each endpoint's
    /// locality, when the cluster has outlier detection and the rule does not turn it off
    /// (`crate::locality`).
    fn prioritize(
        &self,
        endpoints: &mut [Endpoint],
        localities: &[Option<String>],
        outlier: bool,
        setting: Option<&weft_api::LocalityLbSetting>,
    ) {
        let enabled = setting.and_then(|s| s.enabled).unwrap_or(true);
        let Some(client) = self.locality.as_deref().filter(|_| outlier && enabled) else {
            return;
        };
        let client = crate::locality::Locality::parse(client);
        let failover = setting.map(|s| s.failover.as_slice()).unwrap_or_default();
        let mut ps: Vec<u32> = localities
            .iter()
            .map(|l| {
                let ep = crate::locality::Locality::parse(l.as_deref().unwrap_or_default());
                crate::locality::priority(&client, &ep, failover)
            })
            .collect();
        crate::locality::compact(&mut ps);
        for (e, p) in endpoints.iter_mut().zip(ps) {
            e.priority = p;
        }
    }

    /// Builds every cluster the routes refer to, with endpoints and LB policy.
    pub(super) fn clusters(&mut self, trust_domain: &str) {
        let names: BTreeSet<String> = self
            .cfg
            .routes
            .values()
            .flat_map(|t| t.virtual_hosts.iter())
            .flat_map(|v| v.routes.iter())
            .flat_map(|r| {
                r.destinations
                    .iter()
                    .map(|d| d.cluster.clone())
                    .chain(r.mirrors.iter().map(|m| m.cluster.clone()))
            })
            .chain(self.extra_clusters.iter().cloned())
            .chain(
                self.cfg
                    .tcp_listeners
                    .iter()
                    .flat_map(|l| l.routes.iter())
                    .flat_map(|r| r.destinations.iter().map(|d| d.cluster.clone())),
            )
            .collect();
        // Each endpoint workload's PeerAuthentication, looked up once (auto-mTLS).
        let mut servers: BTreeMap<(String, String), crate::mtls::InboundMtls> = BTreeMap::new();
        for name in names {
            if name == crate::egress::PASSTHROUGH_CLUSTER {
                let c = crate::egress::passthrough_cluster();
                self.cfg.clusters.insert(name, c);
                continue;
            }
            let Some((port, subset, host)) = parse_cluster_name(&name) else {
                continue;
            };
            let svc = self.registry.services.get(&host);
            let namespace = svc.map(|s| s.namespace.clone()).unwrap_or_default();
            let http2_port = svc.is_some_and(|s| s.http2);
            let DrSettings {
                labels: subset_labels,
                lb,
                hash,
                outlier,
                max_requests,
                max_requests_per_connection,
                tls,
                tls_settings,
                locality,
                hash_table,
                tcp,
                mut limits,
            } = crate::policy::destination_rule(
                self.prepared.destination_rules(self.resources, &host),
                &mut self.used,
                &namespace,
                Some(port),
                subset.as_deref(),
            );
            // Istio: an HTTP2/GRPC service port is always HTTP/2 upstream.
            let external = svc.and_then(|s| s.external.as_ref());
            limits.http2 |= http2_port;
            let mut endpoints = match external {
                Some(ext) => crate::egress::endpoints(ext, &host, port, &subset_labels),
                None => Vec::new(),
            };
            // The localities of the endpoints' workloads (none for services outside).
            let mut localities: Vec<Option<String>> = vec![None; endpoints.len()];
            let egress = external.map(|ext| crate::egress::Egress {
                resolution: ext.resolution,
                tls: crate::egress::origin_tls(tls_settings.as_ref()),
            });
            for key in svc.map(|s| s.workloads.as_slice()).unwrap_or_default() {
                let Some(w) = self.registry.workloads.get(key) else {
                    continue;
                };
                // A sidecar's mTLS inbound listener, or — a gateway selected by the
                // service (an egress gateway) — its server on this HTTP port, plaintext.
                // A gateway's server: plaintext on an HTTP port, or the mesh's mTLS to its
                // ISTIO_MUTUAL server when the DestinationRule says so (Istio's egress
                // gateway with mTLS), asking for the rule's `sni`.
                let http = svc.is_some_and(|s| s.protocol(port).is_http());
                let istio_mutual = tls == Some(weft_api::ClientTlsMode::IstioMutual);
                let (addr, gateway) = match (&w.inbound_addr, w.gateway_listeners.get(&port)) {
                    (Some(a), _) => (a, false),
                    (None, Some(a)) if http || istio_mutual => (a, true),
                    _ => continue,
                };
                if !selects(&subset_labels, &w.labels) {
                    continue;
                }
                let server = servers.entry(key.clone()).or_insert_with(|| {
                    crate::mtls::inbound(self.policies, self.root, &w.namespace, &w.labels).0
                });
                endpoints.push(Endpoint {
                    address: addr.clone(),
                    identity: spiffe_id(trust_domain, &w.namespace, &w.service_account),
                    workload: w.name.clone(),
                    version: w.labels.get("version").cloned(),
                    meta: crate::WorkloadMeta::from_labels(&w.name, &w.labels),
                    plaintext: (gateway && !istio_mutual)
                        || (!gateway && crate::mtls::client_plaintext(tls, server, port)),
                    sni: tls_settings
                        .as_ref()
                        .and_then(|t| t.sni.clone())
                        .filter(|_| gateway && istio_mutual),
                    priority: 0,
                });
                localities.push(w.locality.clone());
            }
            self.prioritize(
                &mut endpoints,
                &localities,
                outlier.is_some(),
                locality.as_ref(),
            );
            self.cfg.clusters.insert(
                name.clone(),
                Cluster {
                    name,
                    service: host,
                    namespace,
                    port,
                    subset,
                    lb,
                    endpoints,
                    hash,
                    hash_table,
                    outlier,
                    max_requests,
                    max_requests_per_connection,
                    tcp,
                    limits,
                    egress,
                },
            );
        }
    }
}
