//! The compiled route table of one listener: virtual hosts chosen by authority (Envoy's
//! domain order), routes tried in order (first match wins), weighted destinations.

use super::matcher::{CompiledMatch, Matcher, RequestView};
use super::rewrite::UriMatched;
use std::collections::BTreeMap;
use weft_model::Route;

/// A compiled route.
#[derive(Debug)]
pub struct CompiledRoute {
    pub spec: Route,
    matches: Vec<CompiledMatch>,
    total_weight: u32,
    pub rewrite: Option<crate::route::rewrite::CompiledRewrite>,
    /// CORS allowed-origin matchers, compiled.
    pub cors_origins: Vec<Matcher>,
}

impl CompiledRoute {
    /// Weighted pick of a destination (`None` when every weight is 0).
    pub fn pick_destination(
        &self,
        rng: &mut fastrand::Rng,
    ) -> Option<&weft_model::WeightedCluster> {
        if self.total_weight == 0 {
            return None;
        }
        let mut n = rng.u32(0..self.total_weight);
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

    /// Whether the route applies, and how its URI condition matched (for prefix rewrites).
    fn matched(&self, req: &RequestView) -> Option<UriMatched> {
        if self.matches.is_empty() {
            return Some(UriMatched::Unconditioned);
        }
        let m = self.matches.iter().find(|m| m.matches(req))?;
        Some(match &m.uri {
            None => UriMatched::Unconditioned,
            Some(Matcher::Prefix(p)) => UriMatched::Prefix(p.len()),
            Some(_) => UriMatched::Whole,
        })
    }
}

/// A compiled virtual host.
#[derive(Debug)]
pub struct VirtualHost {
    pub name: String,
    domains: Vec<String>,
    pub routes: Vec<CompiledRoute>,
    /// Envoy's `require_tls: ALL` (Gateway `httpsRedirect`).
    pub require_tls: bool,
}

/// A route table, looked up by authority. Virtual hosts are shared with the table of the
/// previous config when unchanged (a push compiles only what changed).
#[derive(Debug, Default)]
pub struct RouteTable {
    pub vhosts: Vec<std::sync::Arc<VirtualHost>>,
}

impl RouteTable {
    /// Envoy's domain order: exact (`host:port` over the bare host), then longest suffix
    /// wildcard, then `*`.
    pub fn vhost(&self, authority: &str) -> Option<&VirtualHost> {
        let host = strip_port(authority);
        let mut best: Option<(&VirtualHost, usize)> = None;
        for v in &self.vhosts {
            for d in &v.domains {
                // `host:port` exactly beats the bare host (a service's other port).
                let score = if d.eq_ignore_ascii_case(authority) {
                    usize::MAX
                } else if d.eq_ignore_ascii_case(host) {
                    usize::MAX - 1
                } else if d == "*" {
                    1
                } else if let Some(suffix) = d.strip_prefix('*') {
                    if ends_with_ignore_case(host, suffix) {
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

fn ends_with_ignore_case(s: &str, suffix: &str) -> bool {
    s.len() >= suffix.len()
        && s.as_bytes()[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
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

impl VirtualHost {
    fn build(
        v: &weft_model::VirtualHost,
        clusters: &BTreeMap<String, weft_model::Cluster>,
    ) -> Result<VirtualHost, String> {
        Ok(VirtualHost {
            name: v.name.clone(),
            domains: v.domains.iter().map(|d| d.to_ascii_lowercase()).collect(),
            routes: v
                .routes
                .iter()
                .map(|r| CompiledRoute::build(r, clusters))
                .collect::<Result<_, String>>()?,
            require_tls: v.require_tls,
        })
    }

    /// True when this is what compiling `v` gives now: the same spec, and every cluster
    /// its routes name still in the config (a missing one is an error `build` reports).
    fn compiled_from(
        &self,
        v: &weft_model::VirtualHost,
        clusters: &BTreeMap<String, weft_model::Cluster>,
    ) -> bool {
        self.name == v.name
            && self.require_tls == v.require_tls
            && self.domains.len() == v.domains.len()
            && self
                .domains
                .iter()
                .zip(&v.domains)
                .all(|(a, b)| a.eq_ignore_ascii_case(b))
            && self.routes.len() == v.routes.len()
            && self.routes.iter().zip(&v.routes).all(|(c, r)| {
                c.spec == *r
                    && r.destinations
                        .iter()
                        .all(|d| clusters.contains_key(&d.cluster))
            })
    }

    /// First matching route wins; also says how its URI condition matched.
    pub fn route(&self, req: &RequestView) -> Option<(&CompiledRoute, UriMatched)> {
        self.routes
            .iter()
            .find_map(|r| r.matched(req).map(|how| (r, how)))
    }
}

impl CompiledRoute {
    /// Compiles one route; its destinations must name clusters of the config.
    fn build(
        r: &Route,
        clusters: &BTreeMap<String, weft_model::Cluster>,
    ) -> Result<CompiledRoute, String> {
        if let Some(d) = r
            .destinations
            .iter()
            .find(|d| !clusters.contains_key(&d.cluster))
        {
            return Err(format!(
                "route {} refers to unknown cluster {}",
                r.name, d.cluster
            ));
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
            .ok_or_else(|| format!("route {}: total weight exceeds {}", r.name, u32::MAX))?;
        let rewrite = r
            .rewrite
            .as_ref()
            .map(crate::route::rewrite::CompiledRewrite::build)
            .transpose()
            .map_err(|e| format!("route {}: {e}", r.name))?;
        let cors_origins = r
            .cors
            .iter()
            .flat_map(|c| c.allow_origins.iter())
            .map(|m| Matcher::build(m, false))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("route {} corsPolicy: {e}", r.name))?;
        Ok(CompiledRoute {
            spec: r.clone(),
            matches,
            total_weight,
            rewrite,
            cors_origins,
        })
    }
}

impl RouteTable {
    /// Compiles a pushed route table.
    pub fn build(
        table: &weft_model::RouteTable,
        clusters: &BTreeMap<String, weft_model::Cluster>,
        previous: Option<&RouteTable>,
    ) -> Result<RouteTable, String> {
        let before: std::collections::HashMap<&str, &std::sync::Arc<VirtualHost>> = previous
            .map(|p| p.vhosts.iter().map(|v| (v.name.as_str(), v)).collect())
            .unwrap_or_default();
        let vhosts = table
            .virtual_hosts
            .iter()
            .map(|v| match before.get(v.name.as_str()) {
                Some(old) if old.compiled_from(v, clusters) => Ok(std::sync::Arc::clone(old)),
                _ => VirtualHost::build(v, clusters).map(std::sync::Arc::new),
            })
            .collect::<Result<_, String>>()?;
        Ok(RouteTable { vhosts })
    }
}
