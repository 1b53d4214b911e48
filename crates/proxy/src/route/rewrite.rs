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
