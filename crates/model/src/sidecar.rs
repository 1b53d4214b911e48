//! The Sidecar resource's egress listeners: their `hosts` scope what a sidecar's outbound
//! side holds (a service no listener admits gets no virtual host and no TCP listener —
//! requests for it meet the catch-all, as in Istio), and the explicit ones (Istio's
//! `bind` and `port`, the mode without traffic capture) put the sidecar's TCP listener for an
//! admitted service port at `bind:port` instead of an ephemeral loopback port, so an app
//! can be configured with a fixed address. Which Sidecar applies is Istio's rule: one in
//! the workload's namespace whose `workloadSelector` selects it, else that namespace's
//! Sidecar without a selector, else the root namespace's. Ingress listeners give the
//! app's address per port (`defaultEndpoint`).

use crate::registry::selects;
use std::collections::BTreeMap;
use weft_api::{Resource, Spec};

/// An egress listener with a fixed address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EgressBind {
    pub port: u32,
    pub bind: String,
    /// `namespace/dnsName` forms (the Sidecar's namespace for `.`).
    pub hosts: Vec<String>,
}

/// The Sidecar that applies to a sidecar, if any (resolved once per compile).
pub(crate) type Applying<'a> = Option<(&'a Resource, &'a weft_api::Sidecar)>;

/// The Sidecar that applies to a workload, by Istio's precedence.
pub(crate) fn applying<'a>(
    resources: &'a [Resource],
    root: &str,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> Option<(&'a Resource, &'a weft_api::Sidecar)> {
    let sidecars = || {
        resources.iter().filter_map(|r| match &r.spec {
            Spec::Sidecar(s) => Some((r, s)),
            _ => None,
        })
    };
    let selected = sidecars().find(|(r, s)| {
        r.namespace() == namespace
            && s.workload_selector
                .as_ref()
                .is_some_and(|sel| selects(&sel.labels, labels))
    });
    let in_ns =
        |ns: &str| sidecars().find(|(r, s)| r.namespace() == ns && s.workload_selector.is_none());
    selected
        .or_else(|| in_ns(namespace))
        .or_else(|| in_ns(root))
}

/// `hosts` entries in `namespace/dnsName` form (the Sidecar's namespace for `.`, any
/// namespace for a bare name).
fn qualified(r: &Resource, hosts: &[String]) -> Vec<String> {
    hosts
        .iter()
        .map(|h| match h.split_once('/') {
            Some((".", host)) => format!("{}/{host}", r.namespace()),
            Some(_) => h.clone(),
            None => format!("*/{h}"),
        })
        .collect()
}

/// What the egress listeners of the Sidecar that applies let a sidecar see: (port or
/// every port, `namespace/dnsName` hosts) per listener. `None`: no Sidecar applies, or it
/// has no egress listeners — every service is visible (Istio's default `*/*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Scope(Vec<(Option<u32>, Vec<String>)>);

pub(crate) fn scope(sidecar: Option<(&Resource, &weft_api::Sidecar)>) -> Option<Scope> {
    let (r, s) = sidecar?;
    if s.egress.is_empty() {
        return None;
    }
    let listeners = s
        .egress
        .iter()
        .map(|e| (e.port.as_ref().map(|p| p.number), qualified(r, &e.hosts)))
        .collect();
    Some(Scope(listeners))
}

impl Scope {
    /// Whether service `host` in `namespace` is visible on some port.
    pub(crate) fn admits_any_port(&self, host: &str, namespace: &str) -> bool {
        let hosts = self.0.iter().flat_map(|(_, hosts)| hosts);
        hosts.into_iter().any(|h| admits(h, host, namespace))
    }

    /// Whether service `host` in `namespace` is visible on one of `ports`.
    pub(crate) fn admits(&self, host: &str, namespace: &str, ports: &[u32]) -> bool {
        self.0.iter().any(|(port, hosts)| {
            port.is_none_or(|p| ports.contains(&p))
                && hosts.iter().any(|h| admits(h, host, namespace))
        })
    }
}

/// The services a scope can admit on some port, in host order (every service when no
/// Sidecar scopes the proxy). A namespace-bound pattern (`ns/…`) looks at that namespace's
/// services only, so a scoped proxy's compile grows with what it sees, not with the mesh.
pub(crate) fn visible<'r>(
    scope: Option<&Scope>,
    registry: &'r crate::Registry,
) -> Vec<&'r crate::registry::Service> {
    let Some(scope) = scope else {
        return registry.services.values().collect();
    };
    let mut hosts: std::collections::BTreeSet<&str> = Default::default();
    for pattern in scope.0.iter().flat_map(|(_, hosts)| hosts) {
        let Some((ns, _)) = pattern.split_once('/') else {
            continue;
        };
        let candidates: Box<dyn Iterator<Item = &crate::registry::Service>> = match ns {
            "*" => Box::new(registry.services.values()),
            ns => Box::new(registry.in_namespace(ns)),
        };
        for svc in candidates.filter(|s| admits(pattern, &s.host, &s.namespace)) {
            hosts.insert(&svc.host);
        }
    }
    hosts
        .into_iter()
        .filter_map(|h| registry.services.get(h))
        .collect()
}

/// The ingress listeners' `defaultEndpoint`s by port (`host:port` forms; Unix sockets are
/// reported, not built).
pub(crate) fn ingress_endpoints(
    sidecar: Option<(&Resource, &weft_api::Sidecar)>,
) -> BTreeMap<u32, String> {
    let Some((_, s)) = sidecar else {
        return BTreeMap::new();
    };
    s.ingress
        .iter()
        .filter_map(|i| {
            let port = i.port.as_ref()?.number;
            let to = i.default_endpoint.as_deref()?;
            (!to.starts_with("unix://")).then(|| (port, to.to_string()))
        })
        .collect()
}

/// The egress listeners with `bind` and `port` of the Sidecar that applies.
pub(crate) fn egress_binds(sidecar: Option<(&Resource, &weft_api::Sidecar)>) -> Vec<EgressBind> {
    let Some((r, s)) = sidecar else {
        return Vec::new();
    };
    s.egress
        .iter()
        .filter_map(|e| {
            let port = e.port.as_ref()?.number;
            let bind = e.bind.clone()?;
            let hosts = qualified(r, &e.hosts);
            Some(EgressBind { port, bind, hosts })
        })
        .collect()
}

/// Whether a `namespace/dnsName` egress host admits service `host` in `namespace`.
fn admits(pattern: &str, host: &str, namespace: &str) -> bool {
    let Some((ns, name)) = pattern.split_once('/') else {
        return false;
    };
    let ns_ok = ns == "*" || ns == namespace;
    let name_ok = match name.strip_prefix('*') {
        Some(suffix) => host.ends_with(suffix),
        None => name == host,
    };
    ns_ok && name_ok
}

/// The fixed address of the TCP listener for `host:port` (service in `namespace`), if an
/// egress listener gives one.
pub(crate) fn bind_for(
    binds: &[EgressBind],
    host: &str,
    namespace: &str,
    port: u32,
) -> Option<String> {
    let b = binds
        .iter()
        .find(|b| b.port == port && b.hosts.iter().any(|h| admits(h, host, namespace)))?;
    Some(if b.bind.contains(':') {
        format!("[{}]:{port}", b.bind)
    } else {
        format!("{}:{port}", b.bind)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind(port: u32, hosts: &[&str]) -> EgressBind {
        EgressBind {
            port,
            bind: "127.0.0.2".into(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
        }
    }

    #[test]
    fn the_scope_admits_by_host_namespace_and_port() {
        let s = Scope(vec![
            (None, vec!["shop/*".into(), "*/api.example".into()]),
            (Some(6379), vec!["data/redis.data.svc.cluster.local".into()]),
        ]);
        assert!(s.admits("web.shop.svc.cluster.local", "shop", &[8080]));
        assert!(!s.admits("web.other.svc.cluster.local", "other", &[8080]));
        assert!(s.admits("api.example", "partners", &[443]));
        let redis = "redis.data.svc.cluster.local";
        assert!(s.admits(redis, "data", &[6379, 6380]));
        assert!(
            !s.admits(redis, "data", &[6380]),
            "that listener's port only"
        );
    }

    #[test]
    fn egress_hosts_admit_by_namespace_and_name() {
        let host = "redis.data.svc.cluster.local";
        let binds = [bind(6379, &["data/redis.data.svc.cluster.local"])];
        assert_eq!(
            bind_for(&binds, host, "data", 6379).as_deref(),
            Some("127.0.0.2:6379")
        );
        assert_eq!(bind_for(&binds, host, "data", 6380), None, "another port");
        assert_eq!(
            bind_for(&binds, host, "other", 6379),
            None,
            "another namespace"
        );
        let any = [bind(6379, &["*/*.svc.cluster.local"])];
        assert!(bind_for(&any, host, "data", 6379).is_some());
        let none = [bind(6379, &["~/*"])];
        assert_eq!(
            bind_for(&none, host, "data", 6379),
            None,
            "`~` admits nothing"
        );
        let v6 = [EgressBind {
            bind: "::1".into(),
            ..bind(6379, &["*/*"])
        }];
        assert_eq!(
            bind_for(&v6, host, "data", 6379).as_deref(),
            Some("[::1]:6379")
        );
    }
}
