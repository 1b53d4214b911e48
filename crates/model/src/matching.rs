//! Turning Istio's HTTPMatchRequest into the proxy's [`RouteMatch`]. Conditions about the
//! client itself (`sourceLabels`, `sourceNamespace`, match-level `gateways`, `port`) are
//! decided here, per proxy, at compile time; the rest become request matchers. A match
//! that cannot apply to this proxy is dropped — never widened into match-everything.

use crate::config::{ClaimMatcher, HeaderMatcher, RouteMatch, StringMatcher};
use crate::registry::selects;
use std::collections::{BTreeMap, BTreeSet};

/// Who the routes are compiled for.
pub(crate) struct MatchCtx<'a> {
    /// The proxy's workload labels and namespace (for `sourceLabels`, `sourceNamespace`).
    pub labels: &'a BTreeMap<String, String>,
    pub namespace: &'a str,
    /// Gateways (`ns/name`) served on this listener; `None` for the sidecar (`mesh`).
    pub gateways: Option<&'a BTreeSet<String>>,
    /// The port the route is served for: gateway server port or service port.
    pub port: u32,
}

/// An Istio StringMatch; with none of exact/prefix/regex set it means "present".
pub(crate) fn string_matcher(m: &weft_api::StringMatch) -> StringMatcher {
    if let Some(v) = &m.exact {
        StringMatcher::Exact(v.clone())
    } else if let Some(v) = &m.prefix {
        StringMatcher::Prefix(v.clone())
    } else if let Some(v) = &m.regex {
        StringMatcher::Regex(v.clone())
    } else {
        StringMatcher::Present
    }
}

/// A VirtualService's gateway name as `namespace/name` (`mesh` kept as it is).
pub(crate) fn qualify(gateway: &str, vs_namespace: &str) -> String {
    if gateway.contains('/') || gateway == "mesh" {
        gateway.to_string()
    } else {
        format!("{vs_namespace}/{gateway}")
    }
}

/// Whether a match's conditions about the client (match-level `gateways`, `sourceLabels`,
/// `sourceNamespace`, `port`) hold for the proxy and listener `ctx` stands for.
pub(crate) fn client_applies(
    gateways: &[String],
    source_labels: &BTreeMap<String, String>,
    source_namespace: Option<&str>,
    port: Option<u32>,
    vs_namespace: &str,
    ctx: &MatchCtx,
) -> bool {
    if !gateways.is_empty() {
        let applies =
            gateways
                .iter()
                .map(|g| qualify(g, vs_namespace))
                .any(|g| match ctx.gateways {
                    None => g == "mesh",
                    Some(set) => set.contains(&g),
                });
        if !applies {
            return false;
        }
    }
    // As istiod does: the proxy's own labels (a gateway's too) must carry sourceLabels.
    selects(source_labels, ctx.labels)
        && source_namespace.is_none_or(|ns| ns == ctx.namespace)
        && port.is_none_or(|p| p == ctx.port)
}

/// The request matcher for `m`, or `None` when `m` can never apply to this proxy.
pub(crate) fn convert(
    m: &weft_api::HttpMatchRequest,
    vs_namespace: &str,
    ctx: &MatchCtx,
) -> Option<RouteMatch> {
    if !client_applies(
        &m.gateways,
        &m.source_labels,
        m.source_namespace.as_deref(),
        m.port,
        vs_namespace,
        ctx,
    ) {
        return None;
    }
    // `@request.auth.claims.*` names are conditions on the validated JWT, not headers.
    let headers = |map: &BTreeMap<String, weft_api::StringMatch>| -> Vec<HeaderMatcher> {
        map.iter()
            .filter(|(k, _)| weft_api::routing_claim(k).is_none())
            .map(|(k, v)| HeaderMatcher {
                name: k.to_ascii_lowercase(),
                matcher: string_matcher(v),
            })
            .collect()
    };
    let claims = |map: &BTreeMap<String, weft_api::StringMatch>| -> Vec<ClaimMatcher> {
        map.iter()
            .filter_map(|(k, v)| {
                Some(ClaimMatcher {
                    path: weft_api::routing_claim(k)?,
                    matcher: string_matcher(v),
                })
            })
            .collect()
    };
    Some(RouteMatch {
        uri: m.uri.as_ref().map(string_matcher),
        scheme: m.scheme.as_ref().map(string_matcher),
        method: m.method.as_ref().map(string_matcher),
        authority: m.authority.as_ref().map(string_matcher),
        headers: headers(&m.headers),
        without_headers: headers(&m.without_headers),
        claims: claims(&m.headers),
        without_claims: claims(&m.without_headers),
        query_params: m
            .query_params
            .iter()
            .map(|(k, v)| HeaderMatcher {
                name: k.clone(),
                matcher: string_matcher(v),
            })
            .collect(),
        ignore_uri_case: m.ignore_uri_case.unwrap_or(false),
    })
}

fn strip_ns(host: &str) -> &str {
    host.rsplit_once('/').map(|(_, h)| h).unwrap_or(host)
}

/// The domain a Gateway server host and a VirtualService host have in common — the
/// narrower of the two (Istio serves `foo.example.com` for server `foo.example.com` and
/// VirtualService `*.example.com`) — or `None` if they are disjoint.
pub(crate) fn host_intersection(server_host: &str, vs_host: &str) -> Option<String> {
    let s = strip_ns(server_host);
    if s == "*" || s == vs_host {
        return Some(vs_host.to_string());
    }
    if vs_host == "*" {
        return Some(s.to_string());
    }
    match (s.strip_prefix('*'), vs_host.strip_prefix('*')) {
        (Some(ss), Some(vs)) if vs.ends_with(ss) => Some(vs_host.to_string()),
        (Some(ss), Some(vs)) if ss.ends_with(vs) => Some(s.to_string()),
        (Some(ss), None) if vs_host.ends_with(ss) => Some(vs_host.to_string()),
        (None, Some(vs)) if s.ends_with(vs) => Some(s.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::host_intersection;

    #[test]
    fn intersections_take_the_narrower_host() {
        assert_eq!(
            host_intersection("*", "a.example.com").as_deref(),
            Some("a.example.com")
        );
        assert_eq!(
            host_intersection("ns/a.example.com", "*.example.com").as_deref(),
            Some("a.example.com")
        );
        assert_eq!(
            host_intersection("*.example.com", "a.example.com").as_deref(),
            Some("a.example.com")
        );
        assert_eq!(
            host_intersection("*.example.com", "*.a.example.com").as_deref(),
            Some("*.a.example.com")
        );
        assert_eq!(
            host_intersection("*.a.example.com", "*.example.com").as_deref(),
            Some("*.a.example.com")
        );
        assert_eq!(host_intersection("a.example.com", "b.example.com"), None);
        assert_eq!(host_intersection("*.example.org", "a.example.com"), None);
    }
}
