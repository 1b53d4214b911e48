//! VirtualService rules, as istio/istio's `ValidateVirtualService`,
//! `validateGatewayNames`, `validateRouteDestinations` and `validateDestination`
//! (`pkg/config/validation/validation.go`): hosts (including overlaps), gateways,
//! delegation, destinations and weights. HTTP routes live in `http_route`, TLS/TCP routes
//! in `l4_routes`.

use std::net::IpAddr;

use std::collections::BTreeMap;

use super::common::{
    domain_host, export_to, host, hosts_overlap, is_auto_passthrough_sni, is_dns_label,
    is_dns_name, is_namespace, is_wildcard_domain, k8s_labels, port,
};
use super::http_route::http_route;
use super::l4_routes;
use super::{Errs, WarningKind};
use crate::{Destination, Resource, RouteDestination, VirtualService};

pub(super) fn validate(r: &Resource, vs: &VirtualService, errs: &mut Errs) {
    let delegate = vs.hosts.is_empty();
    let applies_to_mesh = vs.gateways.is_empty() || vs.gateways.iter().any(|g| g == "mesh");
    if delegate {
        if !vs.gateways.is_empty() {
            errs.key("spec.gateways", "a delegate VirtualService (no hosts) must not set gateways; add hosts or remove gateways");
        }
        if !vs.tcp.is_empty() || !vs.tls.is_empty() {
            let at = if vs.tcp.is_empty() {
                "spec.tls"
            } else {
                "spec.tcp"
            };
            errs.key(at, "a delegate VirtualService (no hosts) may only contain http routes; move tcp/tls routes to the root VirtualService");
        }
    }
    let sni_on_gateway = !applies_to_mesh && has_sni(vs);
    for (i, h) in vs.hosts.iter().enumerate() {
        let at = format!("spec.hosts[{i}]");
        if sni_on_gateway && is_auto_passthrough_sni(h) {
            continue;
        }
        if h == "*" && applies_to_mesh {
            errs.at(at, "host \"*\" is not allowed when the VirtualService applies to the mesh (no gateways => mesh); list the hosts, or bind it to a gateway only");
        } else {
            host(errs, &at, h);
        }
    }
    overlapping_hosts(errs, &vs.hosts, applies_to_mesh);
    for (i, g) in vs.gateways.iter().enumerate() {
        gateway_name(errs, &format!("spec.gateways[{i}]"), g);
    }
    if vs.http.is_empty() && vs.tls.is_empty() && vs.tcp.is_empty() {
        errs.key(
            "spec",
            "virtual service must have at least one http, tcp or tls route",
        );
    }
    export_to(errs, &vs.export_to, r.namespace(), false);
    for (i, h) in vs.http.iter().enumerate() {
        http_route(
            errs,
            &format!("spec.http[{i}]"),
            h,
            delegate,
            applies_to_mesh,
        );
    }
    l4_routes::validate(errs, vs);
}

/// Istio's `isSniHost`: some TLS route matches on SNI.
fn has_sni(vs: &VirtualService) -> bool {
    vs.tls
        .iter()
        .any(|t| t.r#match.iter().any(|m| !m.sni_hosts.is_empty()))
}

/// Istio rejects hosts that duplicate or overlap within one VirtualService
/// (`*.foo.bar` with `*.bar`, `a.bar` with `*.bar`, `*` with anything); only
/// checked when every host is well-formed, as Istio does.
fn overlapping_hosts(errs: &mut Errs, hosts: &[String], applies_to_mesh: bool) {
    let valid = hosts.iter().all(|h| {
        !(h == "*" && applies_to_mesh)
            && (is_wildcard_domain(h) || h.parse::<IpAddr>().is_ok() || is_auto_passthrough_sni(h))
    });
    if !valid {
        return;
    }
    for (j, hj) in hosts.iter().enumerate() {
        if let Some(hi) = hosts[..j].iter().find(|hi| hosts_overlap(hi, hj)) {
            let what = if hi == hj { "duplicates" } else { "overlaps" };
            errs.at(
                format!("spec.hosts[{j}]"),
                format!("host {hj:?} {what} host {hi:?} of this VirtualService: list each host once and do not combine a wildcard with hosts it covers (keep the broader one or split into separate VirtualServices)"),
            );
        }
    }
}

/// Istio's `validateGatewayNames`: `mesh`, `namespace/name` (two DNS labels) or a bare
/// name; the legacy `name.namespace` form is accepted with a warning.
pub(super) fn gateway_name(errs: &mut Errs, at: &str, g: &str) {
    if g == "mesh" {
        return;
    }
    if g.contains('*') {
        errs.at(at, format!("gateway reference {g:?} is not allowed (wildcard gateway names are invalid); name the gateway as `namespace/name` or `name`"));
        return;
    }
    match g.split_once('/') {
        Some((ns, name)) => {
            if !is_namespace(ns) || !is_dns_label(name) {
                errs.at(at, format!("gateway reference {g:?} is not valid: `namespace/name` takes two DNS-1123 labels (no dots)"));
            }
        }
        None if !is_dns_name(g) => {
            errs.at(at, format!("gateway name {g:?} is not a valid name: use `mesh`, `name` or `namespace/name` with DNS-1123 names"));
        }
        None => {
            if let Some((name, ns)) = g.split_once('.') {
                let ns = ns.split('.').next().unwrap_or_default();
                errs.warn(WarningKind::Istio, at, format!("using legacy gatewayName format {g:?}; prefer the <namespace>/<name> format: \"{ns}/{name}\""));
            }
        }
    }
}

pub(super) fn l4_common(
    errs: &mut Errs,
    at: &str,
    p: Option<u32>,
    (gateways, labels): (&[String], &BTreeMap<String, String>),
    ns: Option<&str>,
) {
    if let Some(p) = p {
        port(errs, &format!("{at}.port"), p);
    }
    k8s_labels(errs, &format!("{at}.sourceLabels"), labels);
    for (k, g) in gateways.iter().enumerate() {
        gateway_name(errs, &format!("{at}.gateways[{k}]"), g);
    }
    if let Some(ns) = ns {
        if !is_namespace(ns) {
            errs.at(format!("{at}.sourceNamespace"), format!("match.sourceNamespace {ns:?} is not a valid DNS-1123 label (letters, digits and `-`)"));
        }
    }
}

pub(super) fn routes(errs: &mut Errs, at: &str, what: &str, route: &[RouteDestination]) {
    if route.is_empty() {
        errs.key(format!("{at}.route"), format!("{what} route must have at least one destination; add a route with a destination host"));
    }
    let weights: Vec<i32> = route.iter().map(|d| d.weight.unwrap_or(0)).collect();
    weight_rules(errs, at, &weights);
    for (j, d) in route.iter().enumerate() {
        destination(
            errs,
            &format!("{at}.route[{j}].destination"),
            &d.destination,
        );
    }
}

/// Istio's `validateDestination`: a host that is not `*`, a DNS-label subset, a port.
pub(super) fn destination(errs: &mut Errs, dat: &str, d: &Destination) {
    let hat = format!("{dat}.host");
    if d.host.is_empty() {
        errs.key(hat, "each destination must have a host: name the service");
    } else if d.host == "*" {
        errs.at(hat, "invalid destination host \"*\": a destination names one service (e.g. reviews.prod.svc.cluster.local)");
    } else {
        domain_host(errs, &hat, &d.host);
    }
    if let Some(s) = &d.subset {
        if !is_dns_label(s) {
            errs.at(
                format!("{dat}.subset"),
                format!(
                    "subset name {s:?} is invalid: a subset name is a non-empty DNS-1123 label"
                ),
            );
        }
    }
    if let Some(p) = d.port.as_ref().and_then(|p| p.number) {
        port(errs, &format!("{dat}.port.number"), p);
    }
}

pub(super) fn weight_rules(errs: &mut Errs, at: &str, weights: &[i32]) {
    for (j, w) in weights.iter().enumerate() {
        if *w < 0 {
            errs.at(
                format!("{at}.route[{j}].weight"),
                format!("weight {w} is negative: weights are relative shares, use 0 or more"),
            );
        }
    }
    if weights.len() > 1 && weights.iter().all(|w| *w == 0) {
        errs.at(
            format!("{at}.route"),
            "all weights are 0 with several destinations: at least one needs a weight above 0",
        );
    }
    let total: i64 = weights.iter().map(|w| i64::from((*w).max(0))).sum();
    if weights.len() > 1 && total > i64::from(u32::MAX) {
        errs.at(
            format!("{at}.route"),
            format!("weights add up to {total}, more than the proxy limit of {}: scale them down (they are relative shares)", u32::MAX),
        );
    }
}
