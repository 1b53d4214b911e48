//! The runtime form of a pushed [`ProxyConfig`]: validated, regexes compiled, virtual hosts
//! indexed, LB state per cluster. Built off the hot path on every push and swapped in
//! atomically; a config that fails to build is NACKed and never replaces the running one.

use crate::lb::LbState;
use regex::Regex;
use std::collections::HashMap;
use std::sync::Arc;
use weft_model::{Cluster, ProxyConfig, Route, RouteMatch, StringMatcher};

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
    fn build(m: &StringMatcher, ignore_case: bool) -> Result<Matcher, String> {
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
    uri: Option<Matcher>,
    scheme: Option<Matcher>,
    method: Option<Matcher>,
    authority: Option<Matcher>,
    headers: Named,
    without_headers: Named,
    query_params: Named,
    ignore_uri_case: bool,
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
}

impl CompiledMatch {
    fn build(m: &RouteMatch) -> Result<CompiledMatch, String> {
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

/// A compiled route.
#[derive(Debug)]
pub struct RuntimeRoute {
    pub spec: Route,
    matches: Vec<CompiledMatch>,
    total_weight: u32,
    pub rewrite: Option<crate::rewrite::CompiledRewrite>,
    /// CORS allowed-origin matchers, compiled.
    pub cors_origins: Vec<Matcher>,
}

impl RuntimeRoute {
    /// Weighted pick of a destination cluster name.
    pub fn pick_cluster(&self) -> Option<&weft_model::WeightedCluster> {
        if self.total_weight == 0 {
            return None;
        }
        let mut n = fastrand::u32(0..self.total_weight);
        for d in &self.spec.destinations {
            if n < d.weight {
                return Some(d);
            }
            n -= d.weight;
        }
        None
    }

    /// The request's origin if the route's CORS policy allows it.
    pub fn cors_allowed<'r>(&self, origin: &'r str) -> Option<&'r str> {
        self.cors_origins
            .iter()
            .any(|m| m.matches(origin))
            .then_some(origin)
    }

    /// How the first matching condition's URI matched (for prefix rewrites).
    pub fn uri_matched(&self, req: &RequestView) -> crate::rewrite::UriMatched {
        use crate::rewrite::UriMatched;
        match self
            .matches
            .iter()
            .find(|m| m.matches(req))
            .and_then(|m| m.uri.as_ref())
        {
            None => UriMatched::Unconditioned,
            Some(Matcher::Prefix(p)) => UriMatched::Prefix(p.len()),
            Some(_) => UriMatched::Whole,
        }
    }
}

/// A compiled virtual host.
#[derive(Debug)]
pub struct RuntimeVhost {
    pub name: String,
    domains: Vec<String>,
    pub routes: Vec<RuntimeRoute>,
}

/// A route table, looked up by authority.
#[derive(Debug, Default)]
pub struct RuntimeTable {
    pub vhosts: Vec<RuntimeVhost>,
}

impl RuntimeTable {
    /// Envoy's domain order: exact, then longest suffix wildcard, then `*`.
    pub fn vhost(&self, authority: &str) -> Option<&RuntimeVhost> {
        let host = strip_port(authority).to_ascii_lowercase();
        let mut best: Option<(&RuntimeVhost, usize)> = None;
        for v in &self.vhosts {
            for d in &v.domains {
                let score = if *d == host || *d == authority {
                    usize::MAX
                } else if d == "*" {
                    1
                } else if let Some(suffix) = d.strip_prefix('*') {
                    if host.ends_with(suffix) {
                        1 + suffix.len()
                    } else {
                        0
                    }
                } else {
                    0
                };
                if score > 0 && best.is_none_or(|(_, s)| score > s) {
                    best = Some((v, score));
                }
            }
        }
        best.map(|(v, _)| v)
    }
}

/// Splits an authority into host and port: `host:port`, `[v6]:port`, or no port at all
/// (IPv6 brackets stay on the host).
pub fn split_authority(authority: &str) -> (&str, Option<&str>) {
    let split = if authority.starts_with('[') {
        authority
            .rsplit_once("]:")
            .map(|(h, p)| (&authority[..h.len() + 1], p))
    } else {
        authority.rsplit_once(':')
    };
    match split {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    }
}

/// Drops `:port` from an authority (keeps IPv6 brackets intact).
pub fn strip_port(authority: &str) -> &str {
    split_authority(authority).0
}

impl RuntimeVhost {
    /// First matching route wins.
    pub fn route(&self, req: &RequestView) -> Option<&RuntimeRoute> {
        self.routes
            .iter()
            .find(|r| r.matches.is_empty() || r.matches.iter().any(|m| m.matches(req)))
    }
}

/// A cluster with its live LB state.
#[derive(Debug)]
pub struct RuntimeCluster {
    pub spec: Cluster,
    pub lb: Arc<LbState>,
}

/// Everything the data path reads, swapped as one unit.
#[derive(Debug, Default)]
pub struct Runtime {
    pub version: String,
    pub config: ProxyConfig,
    pub tables: HashMap<String, RuntimeTable>,
    pub clusters: HashMap<String, RuntimeCluster>,
}

impl Runtime {
    /// Validates and compiles a pushed config. LB state of clusters whose spec did not
    /// change is carried over from `previous`.
    pub fn build(
        version: &str,
        config: ProxyConfig,
        previous: &Runtime,
    ) -> Result<Runtime, String> {
        let mut tables = HashMap::new();
        for (name, table) in &config.routes {
            let mut vhosts = Vec::new();
            for v in &table.virtual_hosts {
                let mut routes = Vec::new();
                for r in &v.routes {
                    for d in &r.destinations {
                        if !config.clusters.contains_key(&d.cluster) {
                            return Err(format!(
                                "route {} refers to unknown cluster {}",
                                r.name, d.cluster
                            ));
                        }
                    }
                    let matches = r
                        .matches
                        .iter()
                        .map(CompiledMatch::build)
                        .collect::<Result<_, _>>()
                        .map_err(|e| format!("route {}: {e}", r.name))?;
                    let total_weight = r
                        .destinations
                        .iter()
                        .try_fold(0u32, |sum, d| sum.checked_add(d.weight))
                        .ok_or_else(|| {
                            format!("route {}: total weight exceeds {}", r.name, u32::MAX)
                        })?;
                    let rewrite = r
                        .rewrite
                        .as_ref()
                        .map(crate::rewrite::CompiledRewrite::build)
                        .transpose()
                        .map_err(|e| format!("route {}: {e}", r.name))?;
                    let cors_origins = r
                        .cors
                        .iter()
                        .flat_map(|c| c.allow_origins.iter())
                        .map(|m| Matcher::build(m, false))
                        .collect::<Result<_, _>>()
                        .map_err(|e| format!("route {} corsPolicy: {e}", r.name))?;
                    routes.push(RuntimeRoute {
                        spec: r.clone(),
                        matches,
                        total_weight,
                        rewrite,
                        cors_origins,
                    });
                }
                let domains = v.domains.iter().map(|d| d.to_ascii_lowercase()).collect();
                vhosts.push(RuntimeVhost {
                    name: v.name.clone(),
                    domains,
                    routes,
                });
            }
            tables.insert(name.clone(), RuntimeTable { vhosts });
        }
        for l in &config.listeners {
            if !tables.contains_key(&l.route_table) {
                return Err(format!(
                    "listener {} refers to unknown route table {}",
                    l.name, l.route_table
                ));
            }
        }
        let clusters = config
            .clusters
            .iter()
            .map(|(name, c)| {
                let lb = match previous.clusters.get(name) {
                    Some(old) if old.spec == *c => old.lb.clone(),
                    _ => Arc::new(LbState::new(c)),
                };
                (
                    name.clone(),
                    RuntimeCluster {
                        spec: c.clone(),
                        lb,
                    },
                )
            })
            .collect();
        Ok(Runtime {
            version: version.to_string(),
            config,
            tables,
            clusters,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_model::{HeaderMatcher, RouteTable, VirtualHost, WeightedCluster};

    fn config(domains: &[(&str, &str)], m: RouteMatch) -> ProxyConfig {
        let mut cfg = ProxyConfig::default();
        let mut table = RouteTable::default();
        for (name, domain) in domains {
            table.virtual_hosts.push(VirtualHost {
                name: name.to_string(),
                domains: vec![domain.to_string()],
                routes: vec![Route {
                    name: format!("r-{name}"),
                    matches: vec![m.clone()],
                    destinations: vec![WeightedCluster {
                        cluster: "c".into(),
                        weight: 1,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            });
        }
        cfg.routes.insert("t".into(), table);
        cfg.clusters.insert(
            "c".into(),
            Cluster {
                name: "c".into(),
                ..Default::default()
            },
        );
        cfg
    }

    fn view<'a>(path: &'a str, headers: &'a http::HeaderMap) -> RequestView<'a> {
        RequestView {
            path,
            scheme: "http",
            method: "GET",
            authority: "x",
            headers,
        }
    }

    #[test]
    fn domain_precedence_exact_then_longest_suffix_then_any() {
        let cfg = config(
            &[
                ("any", "*"),
                ("suffix", "*.example.com"),
                ("exact", "api.example.com"),
            ],
            RouteMatch::default(),
        );
        let rt = Runtime::build("1", cfg, &Runtime::default()).unwrap();
        let t = &rt.tables["t"];
        assert_eq!(t.vhost("api.example.com:8080").unwrap().name, "exact");
        assert_eq!(t.vhost("web.example.com").unwrap().name, "suffix");
        assert_eq!(t.vhost("elsewhere.org").unwrap().name, "any");
    }

    #[test]
    fn regex_matches_whole_path_without_query() {
        let m = RouteMatch {
            uri: Some(StringMatcher::Regex("/items/[0-9]+".into())),
            ..Default::default()
        };
        let rt = Runtime::build("1", config(&[("a", "*")], m), &Runtime::default()).unwrap();
        let vh = rt.tables["t"].vhost("x").unwrap();
        let h = http::HeaderMap::new();
        assert!(vh.route(&view("/items/42?full=1", &h)).is_some());
        assert!(
            vh.route(&view("/items/42/extra", &h)).is_none(),
            "regex applies to the whole path"
        );
    }

    #[test]
    fn headers_and_ignore_uri_case() {
        let m = RouteMatch {
            uri: Some(StringMatcher::Prefix("/API".into())),
            ignore_uri_case: true,
            headers: vec![HeaderMatcher {
                name: "x-tier".into(),
                matcher: StringMatcher::Exact("premium".into()),
            }],
            ..Default::default()
        };
        let rt = Runtime::build("1", config(&[("a", "*")], m), &Runtime::default()).unwrap();
        let vh = rt.tables["t"].vhost("x").unwrap();
        let mut h = http::HeaderMap::new();
        assert!(vh.route(&view("/api/x", &h)).is_none(), "header missing");
        h.insert("x-tier", "premium".parse().unwrap());
        assert!(vh.route(&view("/api/x", &h)).is_some());
        assert!(vh.route(&view("/other", &h)).is_none());
    }

    #[test]
    fn query_params_without_headers_and_presence() {
        let m = RouteMatch {
            query_params: vec![HeaderMatcher {
                name: "canary".into(),
                matcher: StringMatcher::Exact("true".into()),
            }],
            without_headers: vec![HeaderMatcher {
                name: "x-debug".into(),
                matcher: StringMatcher::Present,
            }],
            headers: vec![HeaderMatcher {
                name: "x-user".into(),
                matcher: StringMatcher::Present,
            }],
            ..Default::default()
        };
        let rt = Runtime::build("1", config(&[("a", "*")], m), &Runtime::default()).unwrap();
        let vh = rt.tables["t"].vhost("x").unwrap();
        let mut h = http::HeaderMap::new();
        h.insert("x-user", "".parse().unwrap());
        assert!(vh.route(&view("/p?a=1&canary=true", &h)).is_some());
        assert!(
            vh.route(&view("/p?canary=false", &h)).is_none(),
            "wrong value"
        );
        assert!(
            vh.route(&view("/p", &h)).is_none(),
            "a query match never matches a request without it"
        );
        h.insert("x-debug", "1".parse().unwrap());
        assert!(
            vh.route(&view("/p?canary=true", &h)).is_none(),
            "withoutHeaders excludes"
        );
        h.remove("x-debug");
        h.remove("x-user");
        assert!(
            vh.route(&view("/p?canary=true", &h)).is_none(),
            "presence required"
        );
    }

    #[test]
    fn weights_that_overflow_are_rejected_not_wrapped() {
        let mut cfg = config(&[("a", "*")], RouteMatch::default());
        let route = &mut cfg.routes.get_mut("t").unwrap().virtual_hosts[0].routes[0];
        route.destinations = vec![
            WeightedCluster {
                cluster: "c".into(),
                weight: u32::MAX,
                ..Default::default()
            },
            WeightedCluster {
                cluster: "c".into(),
                weight: 2,
                ..Default::default()
            },
        ];
        let err = Runtime::build("1", cfg, &Runtime::default()).unwrap_err();
        assert!(err.contains("total weight"), "{err}");
    }

    #[test]
    fn bad_config_is_rejected_with_a_reason() {
        let m = RouteMatch {
            uri: Some(StringMatcher::Regex("([".into())),
            ..Default::default()
        };
        let err = Runtime::build("1", config(&[("a", "*")], m), &Runtime::default()).unwrap_err();
        assert!(err.contains("regex"), "{err}");
        let mut cfg = config(&[("a", "*")], RouteMatch::default());
        cfg.clusters.clear();
        let err = Runtime::build("2", cfg, &Runtime::default()).unwrap_err();
        assert!(err.contains("unknown cluster c"), "{err}");
    }

    #[test]
    fn lb_state_survives_unchanged_clusters() {
        let cfg = config(&[("a", "*")], RouteMatch::default());
        let first = Runtime::build("1", cfg.clone(), &Runtime::default()).unwrap();
        let second = Runtime::build("2", cfg, &first).unwrap();
        assert!(Arc::ptr_eq(
            &first.clusters["c"].lb,
            &second.clusters["c"].lb
        ));
    }
}
