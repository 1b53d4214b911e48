//! The `Location` of a VirtualService redirect, built as Envoy's redirect action does.

use super::rewrite::UriMatched;

/// The `Location` of an Istio redirect (Envoy's redirect action): path replaced (`uri`) or
/// prefix replaced (`prefixRewrite`), authority/scheme/port swapped as configured, the query
/// string kept.
pub fn redirect_location(
    r: &weft_model::Redirect,
    scheme: &str,
    authority: &str,
    path_and_query: &str,
    matched: UriMatched,
) -> String {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    let new_path = match (&r.uri, &r.prefix_rewrite) {
        (Some(uri), _) => uri.clone(),
        (None, Some(prefix)) => {
            let rest = match matched {
                UriMatched::Prefix(n) => path.get(n..).unwrap_or(""),
                UriMatched::Whole => "",
                UriMatched::Unconditioned => path.get(1..).unwrap_or(""),
            };
            format!("{prefix}{rest}")
        }
        (None, None) => path.to_string(),
    };
    let req_scheme = scheme;
    let scheme = r.scheme.as_deref().unwrap_or(scheme);
    let (req_host, req_port) = super::table::split_authority(authority);
    let host = r.authority.as_deref().unwrap_or(req_host);
    let default_port = |scheme: &str| match scheme {
        "https" => "443",
        _ => "80",
    };
    let port = match (r.port, r.port_from_request) {
        (Some(p), _) => Some(p.to_string()),
        (None, true) => req_port.map(str::to_string),
        // A new authority comes without the old port.
        (None, false) if r.authority.is_some() => None,
        // Envoy keeps the request's port unless it was the old scheme's default.
        (None, false) => req_port
            .filter(|p| *p != default_port(req_scheme))
            .map(str::to_string),
    };
    let port = port.filter(|p| p != default_port(scheme));
    let mut url = format!("{scheme}://{host}");
    if let Some(p) = port {
        url.push(':');
        url.push_str(&p);
    }
    url.push_str(if new_path.is_empty() { "/" } else { &new_path });
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    url
}

#[cfg(test)]
mod redirect_tests {
    use super::*;
    use weft_model::Redirect;

    #[test]
    fn redirect_locations() {
        let r = Redirect {
            uri: Some("/v2/new".into()),
            code: 301,
            ..Default::default()
        };
        assert_eq!(
            redirect_location(&r, "http", "game.local:8080", "/old?x=1", UriMatched::Whole),
            "http://game.local:8080/v2/new?x=1"
        );
        let r = Redirect {
            scheme: Some("https".into()),
            ..Default::default()
        };
        let loc = |a: &str| redirect_location(&r, "http", a, "/a", UriMatched::Unconditioned);
        assert_eq!(
            loc("game.local:8080"),
            "https://game.local:8080/a",
            "a non-default port is kept"
        );
        assert_eq!(
            loc("game.local:80"),
            "https://game.local/a",
            "the old scheme's default port is dropped"
        );
        assert_eq!(loc("[::1]"), "https://[::1]/a");
        assert_eq!(loc("[::1]:8080"), "https://[::1]:8080/a");
        let r = Redirect {
            prefix_rewrite: Some("/b".into()),
            authority: Some("other.local".into()),
            port: Some(9000),
            ..Default::default()
        };
        assert_eq!(
            redirect_location(&r, "http", "game.local", "/a/x", UriMatched::Prefix(2)),
            "http://other.local:9000/b/x"
        );
    }
}
