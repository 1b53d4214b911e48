//! VirtualService HTTP routes, as istio/istio's `validateHTTPRoute`,
//! `validateHTTPRouteConflict`, `validateHTTPRouteMatchRequest`, `validateHTTPRedirect`,
//! `validateHTTPRewrite`, `validateHTTPDirectResponse` and `validateDestination`
//! (`pkg/config/validation/virtualservice.go`, `validation.go`): route/redirect/
//! directResponse/delegate conflicts, matches, destinations, mirrors and header operations
//! (retries, faults and CORS live in `http_policies`).

use super::common::{duration, is_token, percent, port, regex, string_match, EmptyPrefix};
use super::headers::header_ops;
use super::http_policies::{cors, fault, retries};
use super::virtual_service::{destination, l4_common, weight_rules};
use super::{Errs, WarningKind};
use crate::{HttpMatchRequest, HttpRoute};

pub(super) fn http_route(errs: &mut Errs, at: &str, h: &HttpRoute, delegate_vs: bool, mesh: bool) {
    for (j, m) in h.r#match.iter().enumerate() {
        // Istio checks claims whenever the VirtualService is not gateway-bound, delegates
        // (which may not name gateways) included.
        http_match(errs, &format!("{at}.match[{j}]"), m, mesh);
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
    if h.direct_response.is_some() && h.redirect.is_none() {
        for (what, set) in [
            ("route", has_route),
            ("fault", h.fault.is_some()),
            ("rewrite", h.rewrite.is_some()),
        ] {
            if set {
                errs.key(
                    format!("{at}.directResponse"),
                    format!("HTTP route cannot contain both {what} and directResponse; remove one of them"),
                );
            }
        }
    }
    if let Some(d) = &h.direct_response {
        direct_response(errs, &format!("{at}.directResponse"), d);
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
        if let Some(sc) = rd
            .scheme
            .as_deref()
            .filter(|s| *s != "http" && *s != "https")
        {
            errs.at(
                format!("{rat}.scheme"),
                format!("invalid redirect scheme {sc:?}: must be \"http\" or \"https\""),
            );
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
            if rr.rewrite.as_deref().is_none_or(str::is_empty) {
                errs.key(
                    format!("{rat}.uriRegexRewrite"),
                    "uriRegexRewrite requires both match and rewrite: give the replacement (e.g. rewrite: /\\1)",
                );
            }
            match rr.r#match.as_deref().filter(|m| !m.is_empty()) {
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
        destination(errs, &format!("{at}.mirror"), m);
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
        destination(errs, &format!("{mat}.destination"), &m.destination);
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
        destination(errs, &format!("{dat}.destination"), &d.destination);
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
        header_match_name(errs, &hat, k);
        claim_on_mesh(errs, &hat, k, mesh);
        string_match(sm, &hat, "header", EmptyPrefix::Rejected, errs);
    }
    for (k, sm) in &m.without_headers {
        let hat = format!("{at}.withoutHeaders.{k}");
        header_match_name(errs, &hat, k);
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
    l4_common(
        errs,
        at,
        m.port,
        (&m.gateways, &m.source_labels),
        m.source_namespace.as_deref(),
    );
}

/// Istio's `ValidateHTTPHeaderNameOrJwtClaimRoute`: a header name (token characters), a
/// pseudo-header or `@request.auth.claims.…`.
fn header_match_name(errs: &mut Errs, at: &str, name: &str) {
    const PSEUDO: &[&str] = &[":method", ":scheme", ":authority", ":path", ":status"];
    if name.is_empty() {
        errs.key(at, "header match names must not be empty");
    } else if !is_token(name) && !PSEUDO.contains(&name) && crate::routing_claim(name).is_none() {
        errs.key(at, format!("header name {name:?} is not a valid header name (letters, digits and !#$%&'*+-.^_`|~), a pseudo-header or @request.auth.claims.<claim>"));
    }
}

/// Istio's `validateHTTPDirectResponse`: a status Envoy takes, a body under 1MB (a
/// warning above 100KB).
fn direct_response(errs: &mut Errs, at: &str, d: &crate::HttpDirectResponse) {
    if !(200..=599).contains(&d.status) {
        errs.at(
            format!("{at}.status"),
            format!("directResponse status {} is not in range 200-599", d.status),
        );
    }
    let Some(body) = &d.body else { return };
    let size = match (&body.string, &body.bytes) {
        (Some(s), _) => s.len(),
        (None, Some(b)) => b.len() / 4 * 3,
        (None, None) => 0,
    };
    if size > 1024 * 1024 {
        errs.at(format!("{at}.body"), format!("directResponse body of {size} bytes is too large: large direct responses impact control plane performance and must be less than 1MB; serve it from a workload"));
    } else if size > 100 * 1024 {
        errs.warn(WarningKind::Istio, format!("{at}.body"), format!("directResponse body of {size} bytes: large direct responses may impact control plane performance (Istio warns above 100KB)"));
    }
}
