//! Compiled request matchers: Istio's StringMatch (exact, prefix, regex, presence) and
//! HTTPMatchRequest (uri, scheme, method, authority, headers, withoutHeaders,
//! queryParams, and JWT claims), evaluated with Envoy's semantics over a [`RequestView`].

use regex::Regex;
use weft_model::{RouteMatch, StringMatcher};

/// A compiled string matcher.
#[derive(Debug)]
pub enum Matcher {
    Exact(String),
    Prefix(String),
    Regex(Regex),
    /// Any value (presence is checked by the caller).
    Present,
}

impl Matcher {
    pub(crate) fn build(m: &StringMatcher, ignore_case: bool) -> Result<Matcher, String> {
        Ok(match m {
            StringMatcher::Exact(s) if ignore_case => Matcher::Exact(s.to_ascii_lowercase()),
            StringMatcher::Prefix(s) if ignore_case => Matcher::Prefix(s.to_ascii_lowercase()),
            StringMatcher::Exact(s) => Matcher::Exact(s.clone()),
            StringMatcher::Prefix(s) => Matcher::Prefix(s.clone()),
            StringMatcher::Present => Matcher::Present,
            StringMatcher::Regex(r) => {
                let anchored = format!("^(?:{r})$");
                let anchored = if ignore_case {
                    format!("(?i){anchored}")
                } else {
                    anchored
                };
                Matcher::Regex(Regex::new(&anchored).map_err(|e| format!("regex {r:?}: {e}"))?)
            }
        })
    }

    /// Envoy semantics: exact/prefix case-sensitive, regex over the whole value.
    pub fn matches(&self, v: &str) -> bool {
        match self {
            Matcher::Exact(s) => v == s,
            Matcher::Prefix(s) => v.starts_with(s.as_str()),
            Matcher::Regex(r) => r.is_match(v),
            Matcher::Present => true,
        }
    }
}

type Named = Vec<(String, Matcher)>;

fn named(list: &[weft_model::HeaderMatcher]) -> Result<Named, String> {
    list.iter()
        .map(|h| Ok((h.name.clone(), Matcher::build(&h.matcher, false)?)))
        .collect()
}

/// A compiled request match.
#[derive(Debug)]
pub struct CompiledMatch {
    pub(crate) uri: Option<Matcher>,
    scheme: Option<Matcher>,
    method: Option<Matcher>,
    authority: Option<Matcher>,
    headers: Named,
    without_headers: Named,
    query_params: Named,
    claims: Vec<(Vec<String>, Matcher)>,
    without_claims: Vec<(Vec<String>, Matcher)>,
    ignore_uri_case: bool,
}

fn claim_matchers(
    list: &[weft_model::ClaimMatcher],
) -> Result<Vec<(Vec<String>, Matcher)>, String> {
    list.iter()
        .map(|c| Ok((c.path.clone(), Matcher::build(&c.matcher, false)?)))
        .collect()
}

/// What a route match looks at.
pub struct RequestView<'a> {
    /// Path and query, as received.
    pub path: &'a str,
    /// `http` on plaintext listeners.
    pub scheme: &'a str,
    pub method: &'a str,
    pub authority: &'a str,
    pub headers: &'a http::HeaderMap,
    /// The downstream peer's address (consistent hashing by source IP).
    pub source_ip: std::net::IpAddr,
    /// The claims of the request's validated JWT (gateways; `None` without one).
    pub claims: Option<&'a serde_json::Value>,
}

impl CompiledMatch {
    pub(crate) fn build(m: &RouteMatch) -> Result<CompiledMatch, String> {
        let opt =
            |m: &Option<StringMatcher>, ic| m.as_ref().map(|m| Matcher::build(m, ic)).transpose();
        Ok(CompiledMatch {
            uri: opt(&m.uri, m.ignore_uri_case)?,
            scheme: opt(&m.scheme, false)?,
            method: opt(&m.method, false)?,
            authority: opt(&m.authority, false)?,
            headers: named(&m.headers)?,
            without_headers: named(&m.without_headers)?,
            query_params: named(&m.query_params)?,
            claims: claim_matchers(&m.claims)?,
            without_claims: claim_matchers(&m.without_claims)?,
            ignore_uri_case: m.ignore_uri_case,
        })
    }

    pub fn matches(&self, req: &RequestView) -> bool {
        if let Some(m) = &self.uri {
            // Istio matches the path without the query string.
            let path = req.path.split('?').next().unwrap_or("");
            let ok = if self.ignore_uri_case {
                m.matches(&path.to_ascii_lowercase())
            } else {
                m.matches(path)
            };
            if !ok {
                return false;
            }
        }
        if self.method.as_ref().is_some_and(|m| !m.matches(req.method)) {
            return false;
        }
        if self.scheme.as_ref().is_some_and(|m| !m.matches(req.scheme)) {
            return false;
        }
        if self
            .authority
            .as_ref()
            .is_some_and(|m| !m.matches(req.authority))
        {
            return false;
        }
        let header = |name: &str, m: &Matcher| {
            req.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| m.matches(v))
        };
        // withoutHeaders: the route matches only if the header does NOT match (an absent
        // header does not match).
        if !self.headers.iter().all(|(n, m)| header(n, m))
            || self.without_headers.iter().any(|(n, m)| header(n, m))
        {
            return false;
        }
        // JWT claims (`@request.auth.claims.*`): a string claim, or a string in a list.
        let claim = |path: &[String], m: &Matcher| {
            req.claims
                .and_then(|c| crate::authn::claims::at(c, path))
                .is_some_and(|v| {
                    crate::authn::claims::strings(v)
                        .iter()
                        .any(|s| m.matches(s))
                })
        };
        if !self.claims.iter().all(|(p, m)| claim(p, m))
            || self.without_claims.iter().any(|(p, m)| claim(p, m))
        {
            return false;
        }
        if self.query_params.is_empty() {
            return true;
        }
        let query = req.path.split_once('?').map(|(_, q)| q).unwrap_or("");
        self.query_params.iter().all(|(name, m)| {
            query.split('&').any(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                k == name && m.matches(v)
            })
        })
    }
}
