//! The Sidecar resource's explicit egress listeners (Istio's `bind` + `port`, the mode
//! without traffic capture): an egress listener with both, whose `hosts` admit a service,
//! puts the sidecar's TCP listener for that service port at `bind:port` instead of an
//! ephemeral loopback port, so an app can be configured with a fixed address. Which
//! Sidecar applies is Istio's rule: one in the workload's namespace whose
//! `workloadSelector` selects it, else that namespace's Sidecar without a selector, else
//! the root namespace's.

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
            let hosts = e
                .hosts
                .iter()
                .map(|h| match h.split_once('/') {
                    Some((".", host)) => format!("{}/{host}", r.namespace()),
                    Some(_) => h.clone(),
                    None => format!("*/{h}"),
                })
                .collect();
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
