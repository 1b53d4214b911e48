//! Which configuration applies to a workload, with the file:line each resource came from:
//! the services it backs (ServiceEntries selecting it), the VirtualServices and
//! DestinationRules for those hosts (and Gateways those VirtualServices bind to), and the
//! policies that select it or cover its namespace or the whole mesh.

use super::graph::Node;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use weft_api::{to_yaml_like_json, Resource, Spec};
use weft_model::registry::{fqdn, selects};

/// The mesh-wide namespace (MeshConfig rootNamespace's default).
const ROOT_NAMESPACE: &str = "istio-system";

/// One resource that applies, and why.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Applies {
    /// `Kind/namespace/name`.
    pub resource: String,
    /// `file:line`.
    pub source: String,
    pub why: String,
}

/// The workloads the config defines, as graph nodes (services they back included).
pub fn nodes(resources: &[Resource]) -> Vec<Node> {
    resources
        .iter()
        .filter_map(|r| {
            let Spec::WorkloadEntry(we) = &r.spec else {
                return None;
            };
            let ns = r.namespace();
            let gateway = r
                .metadata
                .annotations
                .get("weft.dev/role")
                .is_some_and(|v| v == "gateway");
            Some(Node {
                id: format!("{}.{ns}", r.name()),
                name: r.name().to_string(),
                namespace: ns.to_string(),
                kind: if gateway { "gateway" } else { "workload" }.into(),
                services: services_of(resources, ns, &we.labels),
            })
        })
        .collect()
}

/// Hosts of the ServiceEntries in `ns` whose workloadSelector selects `labels`.
fn services_of(resources: &[Resource], ns: &str, labels: &BTreeMap<String, String>) -> Vec<String> {
    let mut hosts = Vec::new();
    for r in resources.iter().filter(|r| r.namespace() == ns) {
        if let Spec::ServiceEntry(se) = &r.spec {
            if se
                .workload_selector
                .as_ref()
                .is_some_and(|s| selects(&s.labels, labels))
            {
                hosts.extend(se.hosts.iter().map(|h| fqdn(h, ns)));
            }
        }
    }
    hosts
}

/// Every string value under a key named `key` anywhere in `v`.
fn strings_under(v: &Value, key: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k == key, x) {
                    (true, Value::String(s)) => out.push(s.clone()),
                    (true, Value::Array(a)) => {
                        out.extend(a.iter().filter_map(|s| s.as_str().map(String::from)))
                    }
                    _ => strings_under(x, key, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| strings_under(x, key, out)),
        _ => {}
    }
}

/// The labels a policy's selector asks for: `selector.matchLabels` (security kinds,
/// Telemetry) or `workloadSelector.labels` (Sidecar); `None` when it has no selector.
fn selector_of(spec: &Value) -> Option<BTreeMap<String, String>> {
    let labels = spec
        .pointer("/selector/matchLabels")
        .or_else(|| spec.pointer("/workloadSelector/labels"))?;
    serde_json::from_value(labels.clone()).ok()
}

/// What applies to the workload `id` (`name.namespace`).
pub fn applying(resources: &[Resource], id: &str) -> Vec<Applies> {
    let Some(we_res) = resources.iter().find(|r| {
        matches!(r.spec, Spec::WorkloadEntry(_)) && format!("{}.{}", r.name(), r.namespace()) == id
    }) else {
        return Vec::new();
    };
    let Spec::WorkloadEntry(we) = &we_res.spec else {
        return Vec::new();
    };
    let ns = we_res.namespace();
    let hosts = services_of(resources, ns, &we.labels);
    let mut out = vec![entry(we_res, "this workload".into())];
    let mut gateways = Vec::new();
    for r in resources {
        let rns = r.namespace();
        let spec = to_yaml_like_json(r)["spec"].clone();
        let why = match &r.spec {
            Spec::ServiceEntry(_) => {
                let mut defined = Vec::new();
                strings_under(&spec, "hosts", &mut defined);
                let mine: Vec<String> = defined
                    .into_iter()
                    .map(|h| fqdn(&h, rns))
                    .filter(|h| hosts.contains(h))
                    .collect();
                (!mine.is_empty()).then(|| format!("defines {}", mine.join(", ")))
            }
            Spec::VirtualService(vs) => {
                let named = |list: Vec<String>| -> Vec<String> {
                    list.into_iter()
                        .map(|h| fqdn(&h, rns))
                        .filter(|h| hosts.contains(h))
                        .collect()
                };
                let routed = named(vs.hosts.clone());
                let mut dests = Vec::new();
                strings_under(&spec, "host", &mut dests);
                let to = named(dests);
                if !routed.is_empty() || !to.is_empty() {
                    gateways.extend(vs.gateways.iter().map(|g| match g.split_once('/') {
                        Some((gns, name)) => (gns.to_string(), name.to_string()),
                        None => (rns.to_string(), g.clone()),
                    }));
                }
                match (routed.is_empty(), to.is_empty()) {
                    (false, _) => Some(format!("routes requests for {}", routed.join(", "))),
                    (true, false) => Some(format!("sends traffic to {}", to[0])),
                    _ => None,
                }
            }
            Spec::DestinationRule(dr) => hosts
                .contains(&fqdn(&dr.host, rns))
                .then(|| format!("traffic policy for {}", dr.host)),
            Spec::AuthorizationPolicy(_)
            | Spec::PeerAuthentication(_)
            | Spec::RequestAuthentication(_)
            | Spec::Telemetry(_)
            | Spec::Sidecar(_) => match selector_of(&spec) {
                Some(sel) if rns == ns && selects(&sel, &we.labels) => {
                    Some("selects this workload".into())
                }
                Some(_) => None,
                None if rns == ns => Some(format!("applies to namespace {ns}")),
                None if rns == ROOT_NAMESPACE => Some("applies mesh-wide".into()),
                None => None,
            },
            _ => None,
        };
        if let Some(why) = why {
            out.push(entry(r, why));
        }
    }
    for r in resources {
        if matches!(r.spec, Spec::Gateway(_))
            && gateways
                .iter()
                .any(|(gns, name)| gns == r.namespace() && name == r.name())
        {
            out.push(entry(
                r,
                "a VirtualService for this workload's hosts binds to it".into(),
            ));
        }
    }
    out
}

fn entry(r: &Resource, why: String) -> Applies {
    Applies {
        resource: r.key(),
        source: r.source.to_string(),
        why,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_necpgame_player_sees_its_service_routes_and_policies() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/necpgame");
        let loaded = weft_api::load_path(std::path::Path::new(dir));
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        let nodes = nodes(&loaded.resources);
        let player = nodes
            .iter()
            .find(|n| n.services.iter().any(|s| s.starts_with("player.")))
            .expect("a workload backing player");
        let applies = applying(&loaded.resources, &player.id);
        let kinds: Vec<&str> = applies
            .iter()
            .map(|a| a.resource.split('/').next().unwrap_or(""))
            .collect();
        for kind in [
            "WorkloadEntry",
            "ServiceEntry",
            "VirtualService",
            "PeerAuthentication",
        ] {
            assert!(kinds.contains(&kind), "{kind} missing from {applies:#?}");
        }
        assert!(
            applies.iter().all(|a| a.source.contains(".yaml:")),
            "every entry has file:line: {applies:#?}"
        );
    }
}
