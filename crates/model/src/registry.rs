//! The service registry, built from Istio's own kinds: ServiceEntry (hosts, ports,
//! workloadSelector) + WorkloadEntry (labels, serviceAccount), joined with the proxies that
//! are live right now (which tell where each workload's sidecar listens).

use std::collections::{BTreeMap, HashMap};
use weft_api::{Resource, Spec};

/// A sidecar or gateway the control plane currently has a stream with (callers pass them
/// oldest connection first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveProxy {
    pub workload: String,
    pub namespace: String,
    /// `host:port` of the sidecar's mTLS inbound listener; empty for gateways.
    pub inbound_addr: String,
    /// Gateways: where each Gateway server port is served.
    pub listeners: BTreeMap<u32, String>,
}

/// A workload (WorkloadEntry) and where its sidecar is, if it is live.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub service_account: String,
    pub inbound_addr: Option<String>,
    /// A live gateway's server ports and their addresses: it is an endpoint of the HTTP
    /// ports of services that select it (an egress gateway), reached in plaintext.
    pub gateway_listeners: BTreeMap<u32, String>,
    /// `region/zone/subzone` (WorkloadEntry `locality`).
    pub locality: Option<String>,
    /// `file:line` of the WorkloadEntry.
    pub location: String,
}

/// A mesh service (one ServiceEntry host).
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    /// Fully qualified host.
    pub host: String,
    pub namespace: String,
    /// Service port numbers, in declaration order.
    pub ports: Vec<u32>,
    /// A port declares HTTP/2 to the app (protocol `GRPC` or `HTTP2`).
    pub http2: bool,
    /// Each port's protocol (Istio's selection: declared, else the name's prefix).
    pub protocols: BTreeMap<u32, crate::protocol::Protocol>,
    /// Keys into [`Registry::workloads`] of the workloads that back it.
    pub workloads: Vec<(String, String)>,
    /// Outside the mesh (a ServiceEntry without workloadSelector): how it is reached.
    pub external: Option<crate::egress::External>,
}

/// All services and workloads, keyed for lookup.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Registry {
    pub services: BTreeMap<String, Service>,
    /// Keyed by (namespace, name).
    pub workloads: BTreeMap<(String, String), Workload>,
    /// The JWKS documents the control plane fetched for RequestAuthentication `jwksUri`s
    /// (not from the config: [`Registry::build`] leaves it empty, the control plane fills it).
    pub jwks: crate::authn::FetchedJwks,
    /// The hosts each workload backs (an index [`Registry::build`] keeps with `services`).
    by_workload: BTreeMap<(String, String), Vec<String>>,
    /// The hosts of each namespace's services (kept with `services`).
    by_namespace: BTreeMap<String, Vec<String>>,
}

/// Istio's short-name rule: a host without dots is in the namespace of the config object.
pub fn fqdn(host: &str, namespace: &str) -> String {
    if host.contains('.') || host == "*" {
        host.to_string()
    } else {
        format!("{host}.{namespace}.svc.cluster.local")
    }
}

/// `spiffe://<td>/ns/<ns>/sa/<sa>`.
pub fn spiffe_id(trust_domain: &str, namespace: &str, service_account: &str) -> String {
    format!("spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}")
}

/// True when every selector label is present with the same value.
pub fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

impl Service {
    /// The protocol of one of its ports (a port it does not declare is unknown).
    pub fn protocol(&self, port: u32) -> crate::protocol::Protocol {
        self.protocols
            .get(&port)
            .copied()
            .unwrap_or(crate::protocol::Protocol::Unknown)
    }

    /// Its ports served by the HTTP pipeline, in declaration order.
    pub fn http_ports(&self) -> impl Iterator<Item = u32> + '_ {
        self.ports
            .iter()
            .copied()
            .filter(|p| self.protocol(*p).is_http())
    }

    /// Its opaque TCP ports (TCP, TLS…), in declaration order.
    pub fn tcp_ports(&self) -> impl Iterator<Item = u32> + '_ {
        self.ports
            .iter()
            .copied()
            .filter(|p| self.protocol(*p).is_opaque())
    }
}

impl Registry {
    /// Builds the registry. MESH_INTERNAL (or unset location) ServiceEntries with a
    /// workloadSelector contribute mesh services; ServiceEntries without one contribute
    /// services outside the mesh ([`crate::egress`]); the rest are reported as not
    /// enforced.
    pub fn build(resources: &[Resource], live: &[LiveProxy]) -> Registry {
        let mut reg = Registry::default();
        // `live` is oldest first; the newest stream for a workload wins.
        let mut inbound: HashMap<(&str, &str), &str> = HashMap::new();
        let mut listeners: HashMap<(&str, &str), &BTreeMap<u32, String>> = HashMap::new();
        for p in live {
            let key = (p.namespace.as_str(), p.workload.as_str());
            if !p.inbound_addr.is_empty() {
                inbound.insert(key, &p.inbound_addr);
            }
            if !p.listeners.is_empty() {
                listeners.insert(key, &p.listeners);
            }
        }
        for r in resources {
            if let Spec::WorkloadEntry(we) = &r.spec {
                let ns = r.namespace().to_string();
                let key = (ns.as_str(), r.name());
                let inbound_addr = inbound.get(&key).map(|a| a.to_string());
                let gateway_listeners = listeners.get(&key).map(|l| (*l).clone());
                reg.workloads.insert(
                    (ns.clone(), r.name().to_string()),
                    Workload {
                        name: r.name().to_string(),
                        namespace: ns,
                        labels: we.labels.clone(),
                        service_account: we
                            .service_account
                            .clone()
                            .unwrap_or_else(|| "default".into()),
                        inbound_addr,
                        gateway_listeners: gateway_listeners.unwrap_or_default(),
                        locality: we.locality.clone().filter(|l| !l.is_empty()),
                        location: format!("{}:{}", r.source.file, r.source.line),
                    },
                );
            }
        }
        for r in resources {
            let Spec::ServiceEntry(se) = &r.spec else {
                continue;
            };
            let ns = r.namespace();
            let external = crate::egress::external_of(se);
            let selected = match (&se.workload_selector, &external) {
                (_, Some(_)) => None,
                (Some(sel), None) if se.location != Some(weft_api::Location::MeshExternal) => {
                    Some(sel)
                }
                _ => continue,
            };
            // Workloads are keyed by (namespace, name): a selector looks in its own
            // namespace's range only.
            let workloads: Vec<(String, String)> = match selected {
                None => Vec::new(),
                Some(sel) => reg
                    .workloads
                    .range((ns.to_string(), String::new())..)
                    .take_while(|((wns, _), _)| wns == ns)
                    .filter(|(_, w)| selects(&sel.labels, &w.labels))
                    .map(|(k, _)| k.clone())
                    .collect(),
            };
            for host in &se.hosts {
                let host = fqdn(host, ns);
                if !reg.services.contains_key(&host) {
                    let hosts = reg.by_namespace.entry(ns.to_string()).or_default();
                    hosts.push(host.clone());
                }
                let svc = reg.services.entry(host.clone()).or_insert_with(|| Service {
                    host,
                    namespace: ns.to_string(),
                    ports: Vec::new(),
                    http2: false,
                    protocols: BTreeMap::new(),
                    workloads: Vec::new(),
                    external: external.clone(),
                });
                for p in &se.ports {
                    if !svc.ports.contains(&p.number) {
                        svc.ports.push(p.number);
                    }
                    let proto = p.protocol.as_deref().unwrap_or("").to_ascii_uppercase();
                    svc.http2 |= proto == "GRPC" || proto == "HTTP2";
                    let selected =
                        crate::protocol::Protocol::of_port(p.protocol.as_deref(), &p.name);
                    svc.protocols.entry(p.number).or_insert(selected);
                }
                for w in &workloads {
                    if !svc.workloads.contains(w) {
                        svc.workloads.push(w.clone());
                        let hosts = reg.by_workload.entry(w.clone()).or_default();
                        hosts.push(svc.host.clone());
                    }
                }
            }
        }
        reg
    }

    /// The service ports (sorted, once each) of the services the workload `key` backs
    /// whose protocol passes `keep`.
    pub fn ports_of(
        &self,
        key: &(String, String),
        keep: impl Fn(crate::protocol::Protocol) -> bool,
    ) -> Vec<u32> {
        let mut ports: Vec<u32> = self
            .backed_by(key)
            .flat_map(|s| s.ports.iter().map(move |p| (*p, s.protocol(*p))))
            .filter(|(_, proto)| keep(*proto))
            .map(|(p, _)| p)
            .collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    /// Services backed by the given workload.
    pub fn services_of(&self, namespace: &str, name: &str) -> Vec<String> {
        let key = (namespace.to_string(), name.to_string());
        self.backed_by(&key).map(|s| s.host.clone()).collect()
    }

    /// The services of one namespace (in no particular order).
    pub fn in_namespace<'s>(&'s self, namespace: &str) -> impl Iterator<Item = &'s Service> {
        let hosts = self.by_namespace.get(namespace).into_iter().flatten();
        hosts.filter_map(|h| self.services.get(h))
    }

    /// The services the workload `key` backs, in host order.
    pub fn backed_by<'s>(&'s self, key: &(String, String)) -> impl Iterator<Item = &'s Service> {
        let mut hosts: Vec<&String> = self.by_workload.get(key).into_iter().flatten().collect();
        hosts.sort();
        hosts.into_iter().filter_map(|h| self.services.get(h))
    }
}
