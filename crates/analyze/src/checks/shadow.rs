//! Shadowed HTTP routes (WA0112) and shadowed match entries (WA0113): routes are tried in
//! order and the first match wins, so a route whose every match entry is covered by an
//! earlier route's entry can never be used. Only certain coverage is reported: prefix
//! and exact containment, identical regexes, header/query subsets, equal ports, source
//! labels, source namespaces and gateways; anything else is assumed to be reachable.

use std::collections::BTreeMap;

use weft_api::{HttpMatchRequest, HttpRoute, Resource, Spec, StringMatch, VirtualService};

use super::{at, vs_gateways};
use crate::finding::*;
use crate::index::Index;

pub(super) fn check(ix: &Index<'_>, out: &mut Vec<Finding>) {
    for r in ix.res {
        if let Spec::VirtualService(vs) = &r.spec {
            virtual_service(r, vs, out);
        }
    }
}

/// A match entry with the gateways it applies to.
struct Entry<'a> {
    m: &'a HttpMatchRequest,
    gateways: Vec<&'a str>,
}

fn entries<'a>(
    route: &'a HttpRoute,
    default: &'a HttpMatchRequest,
    vs_gws: &'a [String],
) -> Vec<Entry<'a>> {
    let all: Vec<&HttpMatchRequest> = if route.r#match.is_empty() {
        vec![default]
    } else {
        route.r#match.iter().collect()
    };
    all.into_iter()
        .map(|m| Entry {
            m,
            gateways: if m.gateways.is_empty() {
                vs_gws.iter().map(String::as_str).collect()
            } else {
                m.gateways.iter().map(String::as_str).collect()
            },
        })
        .collect()
}

fn route_name(route: &HttpRoute, i: usize) -> String {
    match &route.name {
        Some(n) => format!("route `{n}` (spec.http[{i}])"),
        None => format!("route spec.http[{i}]"),
    }
}

fn virtual_service(r: &Resource, vs: &VirtualService, out: &mut Vec<Finding>) {
    let default = HttpMatchRequest::default();
    let vs_gws = vs_gateways(vs);
    let routes: Vec<Vec<Entry<'_>>> = vs
        .http
        .iter()
        .map(|h| entries(h, &default, &vs_gws))
        .collect();
    for (i, later) in routes.iter().enumerate() {
        // For each entry of route i, the first earlier route that covers it.
        let cover: Vec<Option<usize>> = later
            .iter()
            .map(|b| {
                (0..i).find(|&j| {
                    vs.http[j].delegate.is_none() // delegated routes may fall through
                        && routes[j].iter().any(|a| entry_covers(a, b))
                })
            })
            .collect();
        let name = route_name(&vs.http[i], i);
        if cover.iter().all(Option::is_some) {
            let j = cover[0].unwrap_or_default();
            let why = if vs.http[j].r#match.is_empty() {
                "has no match conditions, so it takes every request".to_owned()
            } else {
                "matches every request this route matches".to_owned()
            };
            out.push(at(
                r,
                &format!("spec.http[{i}]"),
                SHADOWED_ROUTE,
                Severity::Warning,
                format!("{name} can never match: {} {why}", route_name(&vs.http[j], j)),
                Some(format!("move this route above spec.http[{j}] (routes are tried in order, first match wins), or narrow the earlier route's match")),
            ));
            continue;
        }
        for (k, c) in cover.iter().enumerate() {
            if let Some(j) = c {
                out.push(at(
                    r,
                    &format!("spec.http[{i}].match[{k}]"),
                    SHADOWED_MATCH,
                    Severity::Info,
                    format!(
                        "match[{k}] of {name} never applies: {} already matches every such request",
                        route_name(&vs.http[*j], *j)
                    ),
                    Some("remove this match entry, or move the route above the earlier one".into()),
                ));
            }
        }
    }
}

/// One normalised string condition.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cond<'a> {
    /// No condition: anything (including absence) matches.
    Any,
    /// `{}` (headers/query parameters): present with any value.
    Present,
    Exact(&'a str),
    Prefix(&'a str),
    Regex(&'a str),
    /// Several or unusual fields set: never reasoned about.
    Unknown,
}

fn cond(sm: Option<&StringMatch>, empty_is_presence: bool) -> Cond<'_> {
    let Some(sm) = sm else {
        return Cond::Any;
    };
    match (&sm.exact, &sm.prefix, &sm.regex) {
        (Some(e), None, None) => Cond::Exact(e),
        (None, Some(p), None) => Cond::Prefix(p),
        (None, None, Some(x)) => Cond::Regex(x),
        (None, None, None) if empty_is_presence => Cond::Present,
        _ => Cond::Unknown,
    }
}

/// Does every value accepted by `b` also satisfy `a`? `ci`: `a` ignores case.
fn cond_covers(a: Cond<'_>, b: Cond<'_>, ci: bool) -> bool {
    let starts = |s: &str, p: &str| {
        if ci {
            s.to_lowercase().starts_with(&p.to_lowercase())
        } else {
            s.starts_with(p)
        }
    };
    let eq = |x: &str, y: &str| {
        if ci {
            x.to_lowercase() == y.to_lowercase()
        } else {
            x == y
        }
    };
    match (a, b) {
        (Cond::Any, _) => true,
        (_, Cond::Unknown) | (Cond::Unknown, _) => false,
        // Present (and everything else) requires a value that `Any` does not guarantee.
        (_, Cond::Any) => false,
        (Cond::Present, _) => true,
        (Cond::Regex(".*"), Cond::Exact(_) | Cond::Prefix(_) | Cond::Regex(_)) => true,
        (Cond::Prefix(p), Cond::Exact(s) | Cond::Prefix(s)) => starts(s, p),
        (Cond::Prefix(""), _) => true,
        (Cond::Exact(x), Cond::Exact(y)) => eq(x, y),
        (Cond::Regex(x), Cond::Regex(y)) => x == y,
        _ => false,
    }
}

/// Every `a` condition keyed by name is covered by `b`'s condition of the same name.
fn map_covers(a: &BTreeMap<String, StringMatch>, b: &BTreeMap<String, StringMatch>) -> bool {
    a.iter().all(|(k, am)| {
        let bm = b.get(k);
        // A header/parameter absent from `b` is unconstrained there; only "no condition" covers it.
        bm.is_some() && cond_covers(cond(Some(am), true), cond(bm, true), false)
    })
}

/// Does match entry `a` accept every request entry `b` accepts?
fn entry_covers(a: &Entry<'_>, b: &Entry<'_>) -> bool {
    let (am, bm) = (a.m, b.m);
    let a_ci = am.ignore_uri_case.unwrap_or(false);
    let b_ci = bm.ignore_uri_case.unwrap_or(false);
    let uri_ok = match cond(am.uri.as_ref(), false) {
        Cond::Any => true,
        Cond::Prefix("") => true,
        a_uri => (a_ci || !b_ci) && cond_covers(a_uri, cond(bm.uri.as_ref(), false), a_ci),
    };
    uri_ok
        && [
            (&am.scheme, &bm.scheme),
            (&am.method, &bm.method),
            (&am.authority, &bm.authority),
        ]
        .iter()
        .all(|(x, y)| cond_covers(cond(x.as_ref(), false), cond(y.as_ref(), false), false))
        && map_covers(&am.headers, &bm.headers)
        && map_covers(&am.query_params, &bm.query_params)
        && am
            .without_headers
            .iter()
            .all(|(k, v)| bm.without_headers.get(k) == Some(v))
        && am.port.is_none_or(|p| bm.port == Some(p))
        && am
            .source_labels
            .iter()
            .all(|(k, v)| bm.source_labels.get(k) == Some(v))
        && am
            .source_namespace
            .as_ref()
            .is_none_or(|n| bm.source_namespace.as_ref() == Some(n))
        && b.gateways.iter().all(|g| a.gateways.contains(g))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sm(kind: &str, v: &str) -> StringMatch {
        let mut m = StringMatch::default();
        match kind {
            "exact" => m.exact = Some(v.into()),
            "prefix" => m.prefix = Some(v.into()),
            _ => m.regex = Some(v.into()),
        }
        m
    }

    fn covers(a: &HttpMatchRequest, b: &HttpMatchRequest) -> bool {
        let g = vec!["mesh"];
        entry_covers(
            &Entry {
                m: a,
                gateways: g.clone(),
            },
            &Entry { m: b, gateways: g },
        )
    }

    #[test]
    fn uri_containment() {
        let uri = |k, v| HttpMatchRequest {
            uri: Some(sm(k, v)),
            ..Default::default()
        };
        assert!(covers(&uri("prefix", "/api"), &uri("prefix", "/api/v1")));
        assert!(covers(&uri("prefix", "/api"), &uri("exact", "/api/x")));
        assert!(!covers(&uri("prefix", "/api/v1"), &uri("prefix", "/api")));
        assert!(!covers(&uri("prefix", "/api"), &uri("regex", "/api.*")));
        assert!(covers(&uri("regex", "/a.*"), &uri("regex", "/a.*")));
        assert!(covers(&uri("prefix", ""), &HttpMatchRequest::default()));
        assert!(!covers(&uri("prefix", "/"), &HttpMatchRequest::default()));
        let mut ci = uri("prefix", "/API");
        ci.ignore_uri_case = Some(true);
        assert!(covers(&ci, &uri("prefix", "/api/v1")));
        assert!(!covers(&uri("prefix", "/api"), &ci));
    }

    #[test]
    fn headers_and_other_conditions() {
        let mut a = HttpMatchRequest::default();
        a.headers.insert("x-user".into(), StringMatch::default());
        let mut b = HttpMatchRequest::default();
        assert!(!covers(&a, &b), "b does not require the header");
        b.headers.insert("x-user".into(), sm("exact", "bob"));
        b.port = Some(8080);
        assert!(covers(&a, &b), "presence covers any value");
        a.port = Some(9090);
        assert!(!covers(&a, &b));
        a.port = None;
        a.without_headers
            .insert("x-debug".into(), StringMatch::default());
        assert!(
            !covers(&a, &b),
            "a negation in a is not known to hold for b"
        );
    }
}
