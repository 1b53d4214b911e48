//! VirtualService delegation (`http[].delegate`): a root VirtualService's delegating route
//! is replaced, at its position, by the HTTP routes of the delegate VirtualService (one
//! with no `hosts`) merged into it. Owns the lookup of delegates and the merge rules, which
//! follow Istio's `mergeVirtualServices` (pilot/pkg/model/virtualservice_controller.go)
//! and `MergeHTTPRoutes` / `mergeHTTPRoute` / `mergeHTTPMatchRequests` /
//! `mergeHTTPMatchRequest` / `hasConflict` / `stringMatchConflict`
//! (pilot/pkg/model/virtualservice.go). Everything after the merge — per-proxy match
//! conditions, destinations, actions — is the ordinary route compilation in `vs_routes`.

use super::{origin, Builder};
use crate::matching::qualify;
use crate::registry::fqdn;
use std::borrow::Cow;
use std::collections::BTreeMap;
use weft_api::{
    Delegate, HttpMatchRequest, HttpRoute, Resource, Spec, StringMatch, VirtualService,
};

/// One HTTP route to compile: the VirtualService's own, or one merged from a delegate.
pub(super) struct HttpEntry<'a> {
    pub http: Cow<'a, HttpRoute>,
    /// The route's name when the HTTPRoute (and, merged, its root) has none.
    pub default_name: String,
    /// Where the route came from: the root, and the delegate it was merged from.
    pub origin: String,
}

impl<'a> Builder<'a> {
    /// `vs`'s HTTP routes in order, each delegating route replaced by its delegate's
    /// routes merged into it (Istio's `mergeVirtualServices`). A delegate that cannot be
    /// found drops the delegating route, as Istio does; the delegates used are recorded.
    pub(super) fn http_entries(
        &mut self,
        r: &'a Resource,
        vs: &'a VirtualService,
    ) -> Vec<HttpEntry<'a>> {
        let mut out = Vec::new();
        for (i, http) in vs.http.iter().enumerate() {
            let default_name = format!("{}/http[{i}]", r.name());
            let Some(delegate) = &http.delegate else {
                out.push(HttpEntry {
                    http: Cow::Borrowed(http),
                    default_name,
                    origin: origin(r),
                });
                continue;
            };
            let Some((dr, dvs)) = self.find_delegate(delegate, r.namespace()) else {
                continue;
            };
            self.used.insert(dr.key());
            // Istio resolves each VirtualService's short names in its own namespace
            // (`ResolveVirtualServiceShortnames`) before merging.
            let root = resolve(http, r.namespace());
            for (j, sub) in dvs.http.iter().enumerate() {
                // One level only: a delegate's own delegation is not followed (validation
                // rejects it; Istio would keep a route that goes nowhere).
                if sub.delegate.is_some() {
                    continue;
                }
                let Some(merged) = merge_http_route(&root, resolve(sub, dr.namespace())) else {
                    continue;
                };
                out.push(HttpEntry {
                    http: Cow::Owned(merged),
                    default_name: format!("{default_name}/{}/http[{j}]", dr.name()),
                    origin: format!("{} via {}", origin(r), origin(dr)),
                });
            }
        }
        out
    }

    /// The delegate VirtualService `d` names (its namespace defaults to the root's). Only
    /// VirtualServices without `hosts` are delegates (Istio's `delegateVirtualServices`).
    fn find_delegate(
        &self,
        d: &Delegate,
        root_ns: &str,
    ) -> Option<(&'a Resource, &'a VirtualService)> {
        let name = d.name.as_deref().filter(|n| !n.is_empty())?;
        let ns = d
            .namespace
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or(root_ns);
        self.resources.iter().find_map(|r| match &r.spec {
            Spec::VirtualService(vs)
                if vs.hosts.is_empty() && r.name() == name && r.namespace() == ns =>
            {
                Some((r, vs))
            }
            _ => None,
        })
    }
}

/// `http` with its short names resolved in namespace `ns`: match gateways become
/// `ns/name`, destination and mirror hosts FQDNs (`ResolveVirtualServiceShortnames`).
fn resolve(http: &HttpRoute, ns: &str) -> HttpRoute {
    let mut h = http.clone();
    for m in &mut h.r#match {
        for g in &mut m.gateways {
            *g = qualify(g, ns);
        }
    }
    for d in &mut h.route {
        d.destination.host = fqdn(&d.destination.host, ns);
    }
    if let Some(m) = &mut h.mirror {
        m.host = fqdn(&m.host, ns);
    }
    for m in &mut h.mirrors {
        m.destination.host = fqdn(&m.destination.host, ns);
    }
    h
}

/// Istio's `mergeHTTPRoute`: the delegate route with the root's matches merged into its
/// own, or `None` when they conflict. The delegate's destinations (and redirect) are
/// its own; rewrite, directResponse, timeout, retries, fault, mirror(s), mirror
/// percentage, corsPolicy and headers come from the root where the delegate has none.
fn merge_http_route(root: &HttpRoute, mut d: HttpRoute) -> Option<HttpRoute> {
    d.r#match = merge_matches(&root.r#match, &d.r#match)?;
    d.name = merged_name(root.name.as_deref(), d.name.as_deref());
    fn inherit<T: Clone>(own: &mut Option<T>, root: &Option<T>) {
        if own.is_none() {
            own.clone_from(root);
        }
    }
    inherit(&mut d.rewrite, &root.rewrite);
    inherit(&mut d.direct_response, &root.direct_response);
    inherit(&mut d.timeout, &root.timeout);
    inherit(&mut d.retries, &root.retries);
    inherit(&mut d.fault, &root.fault);
    inherit(&mut d.mirror, &root.mirror);
    inherit(&mut d.mirror_percent, &root.mirror_percent);
    inherit(&mut d.mirror_percentage, &root.mirror_percentage);
    inherit(&mut d.cors_policy, &root.cors_policy);
    if d.mirrors.is_empty() {
        d.mirrors.clone_from(&root.mirrors);
    }
    inherit(&mut d.headers, &root.headers);
    Some(d)
}

/// Istio's name merge (routes and matches): the delegate's, prefixed `root-` when both
/// are named; the root's when the delegate has none.
fn merged_name(root: Option<&str>, own: Option<&str>) -> Option<String> {
    let root = root.filter(|n| !n.is_empty());
    match own.filter(|n| !n.is_empty()) {
        None => root.map(str::to_string),
        Some(own) => Some(match root {
            Some(root) => format!("{root}-{own}"),
            None => own.to_string(),
        }),
    }
}

/// Istio's `mergeHTTPMatchRequests`: every delegate match merged with each root match it
/// does not conflict with (delegate order first, then root order); `None` (the delegate
/// route is dropped) when some delegate match conflicts with every root match.
fn merge_matches(
    root: &[HttpMatchRequest],
    delegate: &[HttpMatchRequest],
) -> Option<Vec<HttpMatchRequest>> {
    if root.is_empty() {
        return Some(delegate.to_vec());
    }
    if delegate.is_empty() {
        return Some(root.to_vec());
    }
    let mut out = Vec::new();
    for sub in delegate {
        let before = out.len();
        let compatible = root.iter().filter(|r| !has_conflict(r, sub));
        out.extend(compatible.map(|r| merge_match(r, sub)));
        if out.len() == before {
            return None;
        }
    }
    Some(out)
}

/// Istio's `mergeHTTPMatchRequest`: the delegate's match, each condition it leaves unset
/// taken from the root's; header, withoutHeaders, queryParams and sourceLabels maps are
/// unions (the delegate's entry wins on a shared key).
fn merge_match(root: &HttpMatchRequest, d: &HttpMatchRequest) -> HttpMatchRequest {
    let mut out = d.clone();
    out.name = merged_name(root.name.as_deref(), d.name.as_deref());
    for (own, root) in [
        (&mut out.uri, &root.uri),
        (&mut out.scheme, &root.scheme),
        (&mut out.method, &root.method),
        (&mut out.authority, &root.authority),
    ] {
        if own.is_none() {
            own.clone_from(root);
        }
    }
    out.headers = union(&root.headers, &d.headers);
    out.without_headers = union(&root.without_headers, &d.without_headers);
    out.query_params = union(&root.query_params, &d.query_params);
    if out.port.unwrap_or(0) == 0 {
        out.port = root.port;
    }
    out.source_labels = union(&root.source_labels, &d.source_labels);
    for (own, root) in [
        (&mut out.source_namespace, &root.source_namespace),
        (&mut out.stat_prefix, &root.stat_prefix),
    ] {
        if own.as_deref().unwrap_or_default().is_empty() {
            own.clone_from(root);
        }
    }
    if out.gateways.is_empty() {
        out.gateways.clone_from(&root.gateways);
    }
    out
}

fn union<V: Clone>(root: &BTreeMap<String, V>, own: &BTreeMap<String, V>) -> BTreeMap<String, V> {
    let mut out = root.clone();
    out.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
    out
}

/// Istio's `hasConflict`: whether a delegate match (`leaf`) contradicts a root match —
/// its uri, scheme, method, authority, headers, withoutHeaders and queryParams must lie
/// within the root's (`string_match_conflict`), ignoreUriCase must agree, port and
/// sourceNamespace equal the root's if it sets them, sourceLabels agree on shared keys,
/// and its gateways be among the root's.
fn has_conflict(root: &HttpMatchRequest, leaf: &HttpMatchRequest) -> bool {
    let fields = [
        (&root.uri, &leaf.uri),
        (&root.scheme, &leaf.scheme),
        (&root.method, &leaf.method),
        (&root.authority, &leaf.authority),
    ];
    if fields
        .iter()
        .any(|(r, l)| string_match_conflict(r.as_ref(), l.as_ref()))
    {
        return true;
    }
    let maps = [
        (&root.headers, &leaf.headers),
        (&root.without_headers, &leaf.without_headers),
        (&root.query_params, &leaf.query_params),
    ];
    let map_conflict = |(r, l): &(
        &BTreeMap<String, StringMatch>,
        &BTreeMap<String, StringMatch>,
    )| {
        l.iter()
            .any(|(k, v)| string_match_conflict(r.get(k), Some(v)))
    };
    if maps.iter().any(map_conflict) {
        return true;
    }
    if root.ignore_uri_case.unwrap_or(false) != leaf.ignore_uri_case.unwrap_or(false) {
        return true;
    }
    let (root_port, leaf_port) = (root.port.unwrap_or(0), leaf.port.unwrap_or(0));
    if root_port > 0 && leaf_port > 0 && root_port != leaf_port {
        return true;
    }
    let root_ns = root.source_namespace.as_deref().unwrap_or_default();
    if !root_ns.is_empty() && leaf.source_namespace.as_deref().unwrap_or_default() != root_ns {
        return true;
    }
    let mut labels = leaf.source_labels.iter();
    if labels.any(|(k, v)| root.source_labels.get(k).is_some_and(|r| r != v)) {
        return true;
    }
    if !root.gateways.is_empty() && !leaf.gateways.is_empty() {
        return root.gateways.len() < leaf.gateways.len()
            || leaf.gateways.iter().any(|g| !root.gateways.contains(g));
    }
    false
}

/// Istio's `stringMatchConflict`: no conflict when either side is unset; otherwise the
/// delegate's value must lie within the root's — an exact root only admits the same
/// exact value, a prefix root a prefix or exact value that starts with it; a regex on
/// either side (or a root that only asks for presence) admits nothing else.
fn string_match_conflict(root: Option<&StringMatch>, leaf: Option<&StringMatch>) -> bool {
    let (Some(root), Some(leaf)) = (root, leaf) else {
        return false;
    };
    // Go's getters: an empty string is an unset oneof.
    let get = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
    let (r_exact, r_prefix, r_regex) = (get(&root.exact), get(&root.prefix), get(&root.regex));
    let (l_exact, l_prefix, l_regex) = (get(&leaf.exact), get(&leaf.prefix), get(&leaf.regex));
    if r_regex.is_some() && (l_regex.is_some() || l_prefix.is_some() || l_exact.is_some()) {
        return true;
    }
    if l_regex.is_some() && (r_regex.is_some() || r_prefix.is_some() || r_exact.is_some()) {
        return true;
    }
    if let Some(exact) = r_exact {
        return l_prefix.is_some() || l_exact.as_ref() != Some(&exact);
    }
    if let Some(prefix) = r_prefix {
        if let Some(p) = l_prefix {
            return !p.starts_with(&prefix);
        }
        if let Some(e) = l_exact {
            return !e.starts_with(&prefix);
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sm(kind: &str, v: &str) -> Option<StringMatch> {
        let v = Some(v.to_string());
        Some(match kind {
            "exact" => StringMatch {
                exact: v,
                ..Default::default()
            },
            "prefix" => StringMatch {
                prefix: v,
                ..Default::default()
            },
            _ => StringMatch {
                regex: v,
                ..Default::default()
            },
        })
    }

    #[test]
    fn string_matches_conflict_as_in_istio() {
        let c = |r: Option<StringMatch>, l: Option<StringMatch>| {
            string_match_conflict(r.as_ref(), l.as_ref())
        };
        assert!(!c(None, sm("exact", "/a")));
        assert!(!c(sm("prefix", "/a"), None));
        assert!(!c(sm("prefix", "/a"), sm("prefix", "/a/b")));
        assert!(!c(sm("prefix", "/a"), sm("exact", "/a/b")));
        assert!(c(sm("prefix", "/a/b"), sm("prefix", "/a")));
        assert!(c(sm("prefix", "/a"), sm("regex", "/a.*")));
        assert!(c(sm("regex", "/a.*"), sm("regex", "/a.*")));
        assert!(!c(sm("exact", "/a"), sm("exact", "/a")));
        assert!(c(sm("exact", "/a"), sm("exact", "/b")));
        assert!(c(sm("exact", "/a"), sm("prefix", "/a")));
        // A root that only asks for presence admits no narrower value.
        assert!(c(Some(StringMatch::default()), sm("exact", "x")));
    }

    #[test]
    fn match_conditions_conflict_as_in_istio() {
        let m = |f: fn(&mut HttpMatchRequest)| {
            let mut m = HttpMatchRequest::default();
            f(&mut m);
            m
        };
        let none = HttpMatchRequest::default();
        let ns = m(|m| m.source_namespace = Some("a".into()));
        // A root's sourceNamespace must be repeated (or left out is a conflict too).
        assert!(has_conflict(&ns, &none));
        assert!(!has_conflict(&ns, &ns));
        assert!(!has_conflict(&none, &ns));
        let p80 = m(|m| m.port = Some(80));
        let p81 = m(|m| m.port = Some(81));
        assert!(has_conflict(&p80, &p81));
        assert!(!has_conflict(&p80, &none));
        let gw_ab = m(|m| m.gateways = vec!["ns/a".into(), "ns/b".into()]);
        let gw_a = m(|m| m.gateways = vec!["ns/a".into()]);
        assert!(!has_conflict(&gw_ab, &gw_a));
        assert!(has_conflict(&gw_a, &gw_ab));
        let ci = m(|m| m.ignore_uri_case = Some(true));
        assert!(has_conflict(&ci, &none));
        let v1 = m(|m| m.source_labels = [("v".into(), "1".into())].into());
        let v2 = m(|m| m.source_labels = [("v".into(), "2".into())].into());
        assert!(has_conflict(&v1, &v2));
        assert!(!has_conflict(&none, &v1));
    }

    #[test]
    fn names_join_root_first() {
        assert_eq!(merged_name(Some("r"), Some("d")).as_deref(), Some("r-d"));
        assert_eq!(merged_name(Some("r"), None).as_deref(), Some("r"));
        assert_eq!(merged_name(Some(""), Some("d")).as_deref(), Some("d"));
        assert_eq!(merged_name(None, None), None);
    }
}
