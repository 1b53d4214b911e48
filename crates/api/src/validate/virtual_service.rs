//! VirtualService rules: hosts (including overlaps), gateways, delegation, HTTP
//! routes (TLS/TCP routes live in `l4_routes`), matches, weights, retries, faults, mirrors, CORS, redirects, rewrites and
//! header operations.

use std::net::IpAddr;

use super::common::{
    duration, export_to, host, hosts_overlap, is_dns_name, is_namespace, is_wildcard_domain,
    percent, port, regex, string_match, EmptyPrefix,
};
use super::headers::header_ops;
use super::http_policies::{cors, fault, retries};
use super::l4_routes;
use super::Errs;
use crate::{HttpMatchRequest, HttpRoute, Resource, RouteDestination, VirtualService};

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
    for (i, h) in vs.hosts.iter().enumerate() {
        let at = format!("spec.hosts[{i}]");
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

/// Istio rejects hosts that duplicate or overlap within one VirtualService
/// (`*.foo.bar` with `*.bar`, `a.bar` with `*.bar`, `*` with anything); only
/// checked when every host is well-formed, as Istio does.
fn overlapping_hosts(errs: &mut Errs, hosts: &[String], applies_to_mesh: bool) {
    let valid = hosts.iter().all(|h| {
        !(h == "*" && applies_to_mesh) && (is_wildcard_domain(h) || h.parse::<IpAddr>().is_ok())
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

pub(super) fn gateway_name(errs: &mut Errs, at: &str, g: &str) {
    if g == "mesh" {
        return;
    }
    let (ns, name) = match g.split_once('/') {
        Some((ns, name)) => (Some(ns), name),
        None => (None, g),
    };
    if g.contains('*') {
        errs.at(at, format!("gateway reference {g:?} is not allowed (wildcard gateway names are invalid); name the gateway as `namespace/name` or `name`"));
    } else if ns.is_some_and(|ns| !is_namespace(ns)) || !is_dns_name(name) {
        errs.at(at, format!("gateway name {g:?} is not a valid name: use `mesh`, `name` or `namespace/name` with DNS-1123 names"));
    }
}

pub(super) fn l4_common(
    errs: &mut Errs,
    at: &str,
    p: Option<u32>,
    gateways: &[String],
    ns: Option<&str>,
) {
    if let Some(p) = p {
        port(errs, &format!("{at}.port"), p);
    }
    for (k, g) in gateways.iter().enumerate() {
        gateway_name(errs, &format!("{at}.gateways[{k}]"), g);
    }
    if let Some(ns) = ns {
        if !is_namespace(ns) {
            errs.at(format!("{at}.sourceNamespace"), format!("match.sourceNamespace {ns:?} is not a valid DNS-1123 label (lowercase letters, digits and `-`)"));
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
        let dat = format!("{at}.route[{j}].destination");
        host(errs, &format!("{dat}.host"), &d.destination.host);
        if let Some(p) = d.destination.port.as_ref().and_then(|p| p.number) {
            port(errs, &format!("{dat}.port.number"), p);
        }
    }
}

fn weight_rules(errs: &mut Errs, at: &str, weights: &[i32]) {
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

fn http_route(errs: &mut Errs, at: &str, h: &HttpRoute, delegate_vs: bool, mesh: bool) {
    for (j, m) in h.r#match.iter().enumerate() {
        http_match(errs, &format!("{at}.match[{j}]"), m, mesh && !delegate_vs);
    }
    let has_route = !h.route.is_empty();
    if h.delegate.is_some() {
        if has_route || h.redirect.is_some() {
            errs.key(format!("{at}.delegate"), "a root route that delegates must not also specify route/redirect; keep only delegate");
        }
        if delegate_vs {
            errs.key(
                format!("{at}.delegate"),
                "delegation is one level deep: a delegate VirtualService cannot delegate again",
            );
        }
    }
    if h.redirect.is_some() {
        if has_route {
            errs.key(
                format!("{at}.redirect"),
                "HTTP route cannot contain both route and redirect; remove one of them",
            );
        }
        if h.direct_response.is_some() {
            errs.key(
                format!("{at}.redirect"),
                "HTTP route cannot contain both redirect and directResponse",
            );
        }
        if h.fault.is_some() {
            errs.key(
                format!("{at}.fault"),
                "HTTP route cannot contain both fault and redirect",
            );
        }
        if h.rewrite.is_some() {
            errs.key(
                format!("{at}.rewrite"),
                "HTTP route cannot contain both rewrite and redirect",
            );
        }
    }
    if h.direct_response.is_some() && has_route {
        errs.key(
            format!("{at}.directResponse"),
            "HTTP route cannot contain both route and directResponse",
        );
    }
    if !has_route && h.redirect.is_none() && h.direct_response.is_none() && h.delegate.is_none() {
        errs.key(
            at,
            "HTTP route must have one of route, redirect, directResponse or delegate",
        );
    }
    if let Some(rd) = &h.redirect {
        let rat = format!("{at}.redirect");
        if rd.uri.is_some() && rd.prefix_rewrite.is_some() {
            errs.key(
                format!("{rat}.prefixRewrite"),
                "redirect: only one of uri or prefixRewrite may be set",
            );
        }
        if rd.port.is_some() && rd.derive_port.is_some() {
            errs.key(
                format!("{rat}.derivePort"),
                "redirect: only one of port or derivePort may be set",
            );
        }
        if let Some(p) = rd.port {
            port(errs, &format!("{rat}.port"), p);
        }
        if let Some(c) = rd.redirect_code {
            if !(300..=399).contains(&c) {
                errs.at(
                    format!("{rat}.redirectCode"),
                    format!("redirect code {c} must be within 300-399"),
                );
            }
        }
        if rd.uri.is_none()
            && rd.prefix_rewrite.is_none()
            && rd.authority.is_none()
            && rd.scheme.is_none()
            && rd.port.is_none()
            && rd.derive_port.is_none()
        {
            errs.key(
                &rat,
                "redirect must set at least one of uri, prefixRewrite, authority, scheme or port",
            );
        }
        if rd.prefix_rewrite.is_some() {
            for (j, m) in h.r#match.iter().enumerate() {
                if let Some(u) = &m.uri {
                    if u.prefix.is_none() {
                        errs.at(format!("{at}.match[{j}].uri"), "redirect.prefixRewrite requires a prefix (or absent) uri match; exact/regex uri match is rejected");
                    }
                }
            }
        }
    }
    if let Some(rw) = &h.rewrite {
        let rat = format!("{at}.rewrite");
        if rw.uri.is_some() && rw.uri_regex_rewrite.is_some() {
            errs.key(
                format!("{rat}.uriRegexRewrite"),
                "rewrite: only one of uri or uriRegexRewrite may be set",
            );
        }
        if rw.uri.is_none() && rw.authority.is_none() && rw.uri_regex_rewrite.is_none() {
            errs.key(
                &rat,
                "rewrite must set at least one of uri, authority or uriRegexRewrite",
            );
        }
        if let Some(rr) = &rw.uri_regex_rewrite {
            match &rr.r#match {
                Some(m) => regex(
                    errs,
                    &format!("{rat}.uriRegexRewrite.match"),
                    m,
                    "uriRegexRewrite",
                ),
                None => errs.key(
                    format!("{rat}.uriRegexRewrite"),
                    "uriRegexRewrite.match is required",
                ),
            }
        }
        if rw.authority.is_some() {
            let sets_authority = h
                .headers
                .as_ref()
                .and_then(|hd| hd.request.as_ref())
                .is_some_and(|req| {
                    req.set.keys().chain(req.add.keys()).any(|k| {
                        k.eq_ignore_ascii_case(":authority") || k.eq_ignore_ascii_case("host")
                    })
                });
            if sets_authority {
                errs.key(format!("{rat}.authority"), "cannot set :authority both via headers.request.set and rewrite.authority; keep one of them");
            }
        }
    }
    if let Some(t) = &h.timeout {
        duration(errs, &format!("{at}.timeout"), t, false);
    }
    if let Some(rt) = &h.retries {
        retries(errs, &format!("{at}.retries"), rt);
    }
    if let Some(f) = &h.fault {
        fault(errs, &format!("{at}.fault"), f);
    }
    if h.mirror.is_some() && !h.mirrors.is_empty() {
        errs.key(
            format!("{at}.mirrors"),
            "only one of mirror or mirrors may be set",
        );
    }
    if let Some(m) = &h.mirror {
        host(errs, &format!("{at}.mirror.host"), &m.host);
    }
    if let Some(v) = h.mirror_percentage.as_ref().and_then(|p| p.value) {
        percent(
            errs,
            &format!("{at}.mirrorPercentage.value"),
            "mirrorPercentage",
            v,
        );
    }
    if let Some(v) = h.mirror_percent {
        if v > 100 {
            errs.at(
                format!("{at}.mirrorPercent"),
                format!("mirrorPercent {v} must be within [0, 100]"),
            );
        }
    }
    for (j, m) in h.mirrors.iter().enumerate() {
        let mat = format!("{at}.mirrors[{j}]");
        host(
            errs,
            &format!("{mat}.destination.host"),
            &m.destination.host,
        );
        if let Some(v) = m.percentage.as_ref().and_then(|p| p.value) {
            percent(
                errs,
                &format!("{mat}.percentage.value"),
                "mirror percentage",
                v,
            );
        }
    }
    if let Some(c) = &h.cors_policy {
        cors(errs, &format!("{at}.corsPolicy"), c);
    }
    if let Some(hd) = &h.headers {
        header_ops(errs, &format!("{at}.headers"), hd);
    }
    let weights: Vec<i32> = h.route.iter().map(|d| d.weight.unwrap_or(0)).collect();
    weight_rules(errs, at, &weights);
    for (j, d) in h.route.iter().enumerate() {
        let dat = format!("{at}.route[{j}]");
        if d.destination.host.is_empty() {
            errs.key(
                format!("{dat}.destination.host"),
                "each HTTP route destination must have a destination (with host)",
            );
        } else {
            host(
                errs,
                &format!("{dat}.destination.host"),
                &d.destination.host,
            );
        }
        if let Some(p) = d.destination.port.as_ref().and_then(|p| p.number) {
            port(errs, &format!("{dat}.destination.port.number"), p);
        }
        if let Some(hd) = &d.headers {
            header_ops(errs, &format!("{dat}.headers"), hd);
        }
    }
}

/// Istio refuses JWT claim matches in a VirtualService bound to no gateway: sidecars
/// validate no tokens, so the claims never exist there.
fn claim_on_mesh(errs: &mut Errs, at: &str, name: &str, mesh: bool) {
    if mesh && crate::routing_claim(name).is_some() {
        errs.key(at, format!("JWT claim based routing (key: {name}) is only supported on gateways, not when the VirtualService applies to the mesh"));
    }
}

fn http_match(errs: &mut Errs, at: &str, m: &HttpMatchRequest, mesh: bool) {
    if let Some(u) = &m.uri {
        string_match(u, &format!("{at}.uri"), "uri", EmptyPrefix::Allowed, errs);
    }
    for (name, sm) in [
        ("method", &m.method),
        ("authority", &m.authority),
        ("scheme", &m.scheme),
    ] {
        if let Some(sm) = sm {
            string_match(
                sm,
                &format!("{at}.{name}"),
                name,
                EmptyPrefix::Rejected,
                errs,
            );
        }
    }
    for (k, sm) in &m.headers {
        let hat = format!("{at}.headers.{k}");
        if k.is_empty() {
            errs.key(&hat, "header match names must not be empty");
        }
        claim_on_mesh(errs, &hat, k, mesh);
        string_match(sm, &hat, "header", EmptyPrefix::Rejected, errs);
    }
    for (k, sm) in &m.without_headers {
        let hat = format!("{at}.withoutHeaders.{k}");
        claim_on_mesh(errs, &hat, k, mesh);
        if sm.regex.as_deref() == Some("*") {
            continue;
        }
        string_match(sm, &hat, "withoutHeaders", EmptyPrefix::Rejected, errs);
    }
    for (k, sm) in &m.query_params {
        string_match(
            sm,
            &format!("{at}.queryParams.{k}"),
            "queryParams",
            EmptyPrefix::Allowed,
            errs,
        );
    }
    l4_common(errs, at, m.port, &m.gateways, m.source_namespace.as_deref());
}
