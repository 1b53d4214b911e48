//! Which proxies a change reaches: the control plane's dependency index. A [`Change`] says
//! what changed (service hosts, workloads, namespaces, or "everything"); a proxy's [`View`]
//! says what its last config depended on (the hosts its Sidecar scope admits, the hosts of
//! the clusters it holds, its own workload). Only proxies a change reaches are compiled
//! again; the rest keep their config untouched.
//!
//! The index may over-approximate (a reached proxy whose config comes out equal is simply
//! not pushed) but never under-approximate: any kind whose effect is not narrowed here
//! reaches every proxy.

use crate::compile::{ProxyRef, Role};
use crate::config::ProxyConfig;
use crate::registry::{fqdn, Registry};
use std::collections::{BTreeMap, BTreeSet};
use weft_api::{Resource, Spec};

/// What changed between two pushes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Change {
    /// Everything may have changed (a policy kind, MeshConfig, JWKS, a Sidecar…).
    pub all: bool,
    /// Services whose routes, rules or endpoints changed: (host, namespace).
    pub hosts: BTreeSet<(String, String)>,
    /// Workloads (namespace, name) whose own proxy must be compiled again.
    pub workloads: BTreeSet<(String, String)>,
    /// Namespaces whose proxies must be compiled again (a ServiceEntry's selector picks
    /// its namespace's workloads, so their inbound side may change).
    pub namespaces: BTreeSet<String>,
}

impl Change {
    /// Everything changed.
    pub fn everything() -> Change {
        Change {
            all: true,
            ..Change::default()
        }
    }

    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        !self.all
            && self.hosts.is_empty()
            && self.workloads.is_empty()
            && self.namespaces.is_empty()
    }

    /// Adds what `other` changed.
    pub fn merge(&mut self, other: Change) {
        self.all |= other.all;
        self.hosts.extend(other.hosts);
        self.workloads.extend(other.workloads);
        self.namespaces.extend(other.namespaces);
    }

    /// A workload's proxy came, went or moved (its inbound address or a gateway's
    /// listeners): the services it backs and its own proxy.
    pub fn endpoint(registry: &Registry, namespace: &str, workload: &str) -> Change {
        let key = (namespace.to_string(), workload.to_string());
        let hosts = registry
            .backed_by(&key)
            .map(|s| (s.host.clone(), s.namespace.clone()))
            .collect();
        Change {
            hosts,
            workloads: BTreeSet::from([key]),
            ..Change::default()
        }
    }

    /// What differs between two resource sets, with the registries built from each.
    pub fn between(
        old: &[Resource],
        new: &[Resource],
        old_registry: &Registry,
        new_registry: &Registry,
    ) -> Change {
        let before: BTreeMap<String, &Resource> = old.iter().map(|r| (r.key(), r)).collect();
        let after: BTreeMap<String, &Resource> = new.iter().map(|r| (r.key(), r)).collect();
        let mut change = Change::default();
        let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
        for key in keys {
            let (a, b) = (before.get(key), after.get(key));
            if a == b {
                continue;
            }
            for r in a.into_iter().chain(b) {
                change.merge(of_resource(r, &[old_registry, new_registry]));
            }
        }
        change
    }
}

/// The service namespace of `host` in each registry that has it (a host can move: its
/// ServiceEntry goes to another namespace, or the first of two declaring it goes), else
/// the resource's namespace.
fn host_ns(host: String, ns: &str, registries: &[&Registry]) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = registries
        .iter()
        .filter_map(|r| r.services.get(&host))
        .map(|s| (host.clone(), s.namespace.clone()))
        .collect();
    if found.is_empty() {
        found.push((host, ns.to_string()));
    }
    found
}

/// What one changed resource (its old or its new version) reaches.
fn of_resource(r: &Resource, registries: &[&Registry]) -> Change {
    let ns = r.namespace();
    let hosts = |hosts: &mut dyn Iterator<Item = &String>| -> BTreeSet<(String, String)> {
        hosts
            .flat_map(|h| host_ns(fqdn(h, ns), ns, registries))
            .collect()
    };
    match &r.spec {
        // A delegate (no hosts) reaches through its parents: every proxy, conservatively.
        Spec::VirtualService(vs) if vs.hosts.is_empty() => Change::everything(),
        Spec::VirtualService(vs) => Change {
            hosts: hosts(&mut vs.hosts.iter()),
            ..Change::default()
        },
        Spec::DestinationRule(dr) => Change {
            hosts: hosts(&mut std::iter::once(&dr.host)),
            ..Change::default()
        },
        Spec::ServiceEntry(se) => Change {
            hosts: hosts(&mut se.hosts.iter()),
            namespaces: BTreeSet::from([ns.to_string()]),
            ..Change::default()
        },
        // Its services (in either registry: labels may have moved it) and its own proxy.
        Spec::WorkloadEntry(_) => {
            let mut change = Change::default();
            for reg in registries {
                change.merge(Change::endpoint(reg, ns, r.name()));
            }
            change
        }
        // Gateways are compiled again on every change (see [`View::reached_by`]).
        Spec::Gateway(_) => Change::default(),
        _ => Change::everything(),
    }
}

/// What a proxy's last config depended on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    role: Role,
    workload: (String, String),
    /// The Sidecar egress scope; `None` sees every service.
    scope: Option<crate::sidecar::Scope>,
    /// Hosts of the clusters and TCP listeners in its last config (a route can reach a
    /// host the scope does not admit), and of the services it backs (a DestinationRule's
    /// pool limits shape its inbound side, whatever its scope admits).
    hosts: BTreeSet<String>,
}

impl View {
    /// The view of `proxy` whose compiled config is `cfg`.
    pub fn of(
        policies: &crate::Prepared,
        proxy: &ProxyRef,
        registry: &Registry,
        cfg: &ProxyConfig,
    ) -> View {
        let key = (proxy.namespace.clone(), proxy.workload.clone());
        let scope = match (proxy.role, registry.workloads.get(&key)) {
            (Role::Sidecar, Some(w)) => {
                let kinds = policies.policies();
                let root = crate::mesh::root_namespace(kinds);
                crate::sidecar::scope(crate::sidecar::applying(
                    kinds,
                    root,
                    &w.namespace,
                    &w.labels,
                ))
            }
            _ => None,
        };
        let clusters = cfg
            .clusters
            .keys()
            .filter_map(|c| crate::names::parse_cluster_name(c).map(|(_, _, host)| host));
        let services = cfg.tcp_listeners.iter().filter_map(|l| l.service.clone());
        let backed = cfg.inbound.iter().flat_map(|i| i.services.iter().cloned());
        View {
            role: proxy.role,
            workload: key,
            scope,
            hosts: clusters.chain(services).chain(backed).collect(),
        }
    }

    /// Whether `change` can alter this proxy's config.
    pub fn reached_by(&self, change: &Change) -> bool {
        if change.all || self.role == Role::Gateway {
            return true;
        }
        if change.workloads.contains(&self.workload) || change.namespaces.contains(&self.workload.0)
        {
            return true;
        }
        change.hosts.iter().any(|(host, ns)| {
            self.hosts.contains(host)
                || self
                    .scope
                    .as_ref()
                    .is_none_or(|s| s.admits_any_port(host, ns))
        })
    }
}
