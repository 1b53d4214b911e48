//! Request rewriting and header operations, as Envoy applies Istio's `rewrite` and
//! `headers`: the URI rewrite replaces the matched prefix (the whole path for exact or
//! regex matches; the leading `/` when the route has no URI match — Envoy's
//! prefix_rewrite quirk Istio documents), `uriRegexRewrite` substitutes every match, and
//! header operations set, append and remove.

use http::{HeaderMap, HeaderName, HeaderValue};
use regex::Regex;
use weft_model::{HeaderOps, Rewrite};

/// How the route's URI condition matched the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UriMatched {
    /// A prefix of this many bytes.
    Prefix(usize),
    /// The whole path (exact or regex match).
    Whole,
    /// The route has no URI condition (Envoy's implicit prefix `/`).
    Unconditioned,
}

/// A validated rewrite.
#[derive(Debug)]
pub struct CompiledRewrite {
    uri: Option<String>,
    pub authority: Option<String>,
    regex: Option<(Regex, String)>,
}

impl CompiledRewrite {
    pub fn build(r: &Rewrite) -> Result<CompiledRewrite, String> {
        let regex = match &r.uri_regex {
            None => None,
            Some((pattern, replacement)) => {
                let re =
                    Regex::new(pattern).map_err(|e| format!("uriRegexRewrite {pattern:?}: {e}"))?;
                // RE2/Envoy `\1` becomes the regex crate's `${1}`.
                let mut template = String::new();
                let mut chars = replacement.chars().peekable();
                while let Some(c) = chars.next() {
                    match (c, chars.peek()) {
                        ('\\', Some(d)) if d.is_ascii_digit() => {
                            template.push_str(&format!("${{{d}}}"));
                            chars.next();
                        }
                        ('$', _) => template.push_str("$$"),
                        _ => template.push(c),
                    }
                }
                Some((re, template))
            }
        };
        Ok(CompiledRewrite {
            uri: r.uri.clone(),
            authority: r.authority.clone(),
            regex,
        })
    }

    /// The path-and-query to send upstream.
    pub fn path(&self, path_and_query: &str, matched: UriMatched) -> String {
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_and_query, None),
        };
        let mut new = path.to_string();
        if let Some((re, template)) = &self.regex {
            new = re.replace_all(path, template.as_str()).into_owned();
        } else if let Some(uri) = &self.uri {
            let rest = match matched {
                UriMatched::Prefix(n) => path.get(n..).unwrap_or(""),
                UriMatched::Whole => "",
                UriMatched::Unconditioned => path.get(1..).unwrap_or(""),
            };
            new = format!("{uri}{rest}");
        }
        if new.is_empty() {
            new.push('/');
        }
        match query {
            Some(q) => format!("{new}?{q}"),
            None => new,
        }
    }
}

/// Applies Istio header operations: remove, then set (overwrite), then add (append).
pub fn apply(headers: &mut HeaderMap, ops: &HeaderOps) {
    for name in &ops.remove {
        headers.remove(name.as_str());
    }
    for (name, value) in &ops.set {
        if let (Ok(n), Ok(v)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::from_str(value),
        ) {
            headers.insert(n, v);
        }
    }
    for (name, value) in &ops.add {
        if let (Ok(n), Ok(v)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::from_str(value),
        ) {
            headers.append(n, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rw(uri: Option<&str>, regex: Option<(&str, &str)>) -> CompiledRewrite {
        CompiledRewrite::build(&Rewrite {
            uri: uri.map(String::from),
            authority: None,
            uri_regex: regex.map(|(a, b)| (a.to_string(), b.to_string())),
        })
        .unwrap()
    }

    #[test]
    fn uri_rewrite_replaces_what_matched() {
        let r = rw(Some("/v2/items"), None);
        assert_eq!(
            r.path(
                "/api/v1/inventory/42?x=1",
                UriMatched::Prefix("/api/v1/inventory".len())
            ),
            "/v2/items/42?x=1"
        );
        assert_eq!(r.path("/exact", UriMatched::Whole), "/v2/items");
        assert_eq!(
            r.path("/foo", UriMatched::Unconditioned),
            "/v2/itemsfoo",
            "Envoy's implicit `/` prefix"
        );
        assert_eq!(
            rw(Some(""), None).path("/api", UriMatched::Prefix(4)),
            "/",
            "never an empty path"
        );
    }

    #[test]
    fn regex_rewrite_uses_groups() {
        let r = rw(None, Some(("^/service/([^/]+)(/.*)$", "\\2/instance/\\1")));
        assert_eq!(
            r.path("/service/foo/v1/api?q", UriMatched::Whole),
            "/v1/api/instance/foo?q"
        );
        assert!(CompiledRewrite::build(&Rewrite {
            uri_regex: Some(("(".into(), "x".into())),
            ..Default::default()
        })
        .is_err());
    }

    #[test]
    fn header_operations() {
        let mut h = HeaderMap::new();
        h.insert("x-old", "1".parse().unwrap());
        h.insert("x-set", "before".parse().unwrap());
        let ops = HeaderOps {
            set: vec![("x-set".into(), "after".into())],
            add: vec![("x-add".into(), "a".into()), ("x-add".into(), "b".into())],
            remove: vec!["x-old".into()],
        };
        apply(&mut h, &ops);
        assert!(h.get("x-old").is_none());
        assert_eq!(h["x-set"], "after");
        assert_eq!(h.get_all("x-add").iter().count(), 2);
    }
}

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
    let (req_host, req_port) = crate::runtime::split_authority(authority);
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

/// The answer to an allowed CORS preflight.
pub fn cors_preflight(c: &weft_model::Cors, origin: &str) -> http::Response<crate::upstream::Body> {
    let mut headers = HeaderMap::new();
    let mut put = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    };
    put("access-control-allow-origin", origin.to_string());
    if !c.allow_methods.is_empty() {
        put("access-control-allow-methods", c.allow_methods.join(","));
    }
    if !c.allow_headers.is_empty() {
        put("access-control-allow-headers", c.allow_headers.join(","));
    }
    if let Some(age) = c.max_age_secs {
        put("access-control-max-age", age.to_string());
    }
    if c.allow_credentials {
        put("access-control-allow-credentials", "true".into());
    }
    let mut resp = http::Response::new(crate::outbound::full(bytes::Bytes::new()));
    *resp.headers_mut() = headers;
    resp
}

/// CORS headers on an actual (non-preflight) response to an allowed origin.
pub fn cors_response_headers(c: &weft_model::Cors, origin: &str, headers: &mut HeaderMap) {
    if let Ok(v) = HeaderValue::from_str(origin) {
        headers.insert("access-control-allow-origin", v);
    }
    if c.allow_credentials {
        headers.insert(
            "access-control-allow-credentials",
            HeaderValue::from_static("true"),
        );
    }
    if !c.expose_headers.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&c.expose_headers.join(",")) {
            headers.insert("access-control-expose-headers", v);
        }
    }
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
