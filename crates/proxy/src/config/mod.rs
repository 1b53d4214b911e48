//! The active config: the runtime form of a pushed [`ProxyConfig`] — validated, regexes
//! compiled, virtual hosts indexed, LB state per cluster. Built off the hot path on every
//! push and swapped in atomically; a config that fails to build is NACKed and never
//! replaces the running one.

mod labels;

pub use labels::{OwnLabels, Who};

use crate::route::RouteTable;
use crate::upstream::{LbState, LiveCluster};
use std::collections::HashMap;
use std::sync::Arc;
use weft_model::ProxyConfig;

/// Everything the data path reads, swapped as one unit.
#[derive(Debug, Default)]
pub struct ActiveConfig {
    pub version: String,
    pub config: ProxyConfig,
    pub tables: HashMap<String, RouteTable>,
    pub clusters: HashMap<String, LiveCluster>,
    /// This proxy's own labels (telemetry).
    pub own: OwnLabels,
    /// The AuthorizationPolicies of this workload, compiled.
    pub authz: crate::authz::Engine,
    /// The same policies as they apply to opaque TCP connections (HTTP-only fields
    /// skipped or dropped as Istio's TCP filter does: `weft_model::authz_tcp`).
    pub authz_tcp: crate::authz::Engine,
    /// The compiled routes of each TCP listener, by listener name.
    pub l4: HashMap<String, crate::tcp::L4Table>,
    /// The RequestAuthentications (JWT rules and keys) of this workload, compiled.
    pub authn: crate::authn::Engine,
    /// Tracing and access logs per side (set by the control stream, which owns the
    /// export queues and log writers).
    pub telemetry: crate::telemetry::observe::Compiled,
    /// The inbound cluster's circuit breakers (sidecar → app), kept across pushes while
    /// its limits are unchanged.
    pub inbound_limits: Arc<crate::upstream::ClusterLimits>,
}

impl ActiveConfig {
    /// Validates and compiles a pushed config. LB state of clusters whose spec did not
    /// change is carried over from `previous`.
    pub fn build(
        version: &str,
        config: ProxyConfig,
        previous: &ActiveConfig,
        who: &Who,
    ) -> Result<ActiveConfig, String> {
        let mut tables = HashMap::new();
        for (name, table) in &config.routes {
            tables.insert(name.clone(), RouteTable::build(table, &config.clusters)?);
        }
        for l in &config.listeners {
            // An HTTPS listener's requests use the route table of their TLS chain.
            let named: Vec<&String> = match &l.tls {
                Some(t) => t.chains.iter().map(|c| &c.route_table).collect(),
                None => vec![&l.route_table],
            };
            if let Some(missing) = named.into_iter().find(|t| !tables.contains_key(*t)) {
                return Err(format!(
                    "listener {} refers to unknown route table {missing}",
                    l.name
                ));
            }
        }
        let own = labels::own(&config, who);
        let authz = crate::authz::Engine::build(&config.authz)?;
        let authz_tcp =
            crate::authz::Engine::build(&weft_model::authz_tcp::for_tcp(&config.authz))?;
        let l4 = config
            .tcp_listeners
            .iter()
            .map(|l| {
                Ok((
                    l.name.clone(),
                    crate::tcp::L4Table::build(l, |c| config.clusters.contains_key(c))?,
                ))
            })
            .collect::<Result<HashMap<_, _>, String>>()?;
        let authn = crate::authn::Engine::build(&config.authn)?;
        let clusters = config
            .clusters
            .iter()
            .map(|(name, c)| {
                let old = previous.clusters.get(name).filter(|old| old.spec == *c);
                let lb = match old {
                    Some(old) => old.lb.clone(),
                    None => Arc::new(LbState::new(c)),
                };
                // Connections to a service outside the mesh stay pooled while it is
                // unchanged (its TLS files are read again when it changes).
                let egress = match old {
                    Some(old) => old.egress.clone(),
                    None => crate::upstream::egress::EgressCluster::build(c)?,
                };
                let live = LiveCluster {
                    spec: c.clone(),
                    lb,
                    labels: labels::cluster(c, &own, who),
                    opts: crate::upstream::ConnOpts::of(c),
                    egress,
                };
                Ok((name.clone(), live))
            })
            .collect::<Result<HashMap<_, _>, String>>()?;
        let limits_of = |c: &ProxyConfig| {
            c.inbound
                .as_ref()
                .map(|i| (i.limits.clone(), i.max_requests))
        };
        let inbound_limits = match limits_of(&previous.config) {
            Some(old) if Some(&old) == limits_of(&config).as_ref() => {
                previous.inbound_limits.clone()
            }
            _ => {
                let (limits, max) = limits_of(&config).unwrap_or_default();
                Arc::new(crate::upstream::ClusterLimits::new(&limits).with_max_requests(max))
            }
        };
        Ok(ActiveConfig {
            inbound_limits,
            version: version.to_string(),
            config,
            tables,
            clusters,
            own,
            authz,
            authz_tcp,
            l4,
            authn,
            telemetry: Default::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::RequestView;
    use weft_model::{
        Cluster, HeaderMatcher, Route, RouteMatch, StringMatcher, VirtualHost as ModelVhost,
        WeightedCluster,
    };

    fn config(domains: &[(&str, &str)], m: RouteMatch) -> ProxyConfig {
        let mut cfg = ProxyConfig::default();
        let mut table = weft_model::RouteTable::default();
        for (name, domain) in domains {
            table.virtual_hosts.push(ModelVhost {
                require_tls: false,
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

    fn who() -> Who<'static> {
        static METRICS: std::sync::LazyLock<crate::telemetry::Metrics> =
            std::sync::LazyLock::new(crate::telemetry::Metrics::new);
        Who {
            workload: "w",
            namespace: "ns",
            principal: "spiffe://cluster.local/ns/ns/sa/w",
            metrics: &METRICS,
        }
    }

    fn view<'a>(path: &'a str, headers: &'a http::HeaderMap) -> RequestView<'a> {
        RequestView {
            path,
            scheme: "http",
            method: "GET",
            authority: "x",
            headers,
            source_ip: std::net::Ipv6Addr::LOCALHOST.into(),
            claims: None,
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
        let rt = ActiveConfig::build("1", cfg, &ActiveConfig::default(), &who()).unwrap();
        let t = &rt.tables["t"];
        assert_eq!(t.vhost("api.example.com:8080").unwrap().name, "exact");
        assert_eq!(t.vhost("web.example.com").unwrap().name, "suffix");
        assert_eq!(t.vhost("elsewhere.org").unwrap().name, "any");
        // A service's other port: `host:port` beats the bare host, whichever comes first.
        let cfg = config(
            &[
                ("default", "api.example.com"),
                ("admin", "api.example.com:9090"),
            ],
            RouteMatch::default(),
        );
        let rt = ActiveConfig::build("1", cfg, &ActiveConfig::default(), &who()).unwrap();
        let t = &rt.tables["t"];
        assert_eq!(t.vhost("api.example.com:9090").unwrap().name, "admin");
        assert_eq!(t.vhost("api.example.com:8080").unwrap().name, "default");
        assert_eq!(t.vhost("api.example.com").unwrap().name, "default");
    }

    #[test]
    fn regex_matches_whole_path_without_query() {
        let m = RouteMatch {
            uri: Some(StringMatcher::Regex("/items/[0-9]+".into())),
            ..Default::default()
        };
        let rt = ActiveConfig::build(
            "1",
            config(&[("a", "*")], m),
            &ActiveConfig::default(),
            &who(),
        )
        .unwrap();
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
        let rt = ActiveConfig::build(
            "1",
            config(&[("a", "*")], m),
            &ActiveConfig::default(),
            &who(),
        )
        .unwrap();
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
        let rt = ActiveConfig::build(
            "1",
            config(&[("a", "*")], m),
            &ActiveConfig::default(),
            &who(),
        )
        .unwrap();
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
        let err = ActiveConfig::build("1", cfg, &ActiveConfig::default(), &who()).unwrap_err();
        assert!(err.contains("total weight"), "{err}");
    }

    #[test]
    fn bad_config_is_rejected_with_a_reason() {
        let m = RouteMatch {
            uri: Some(StringMatcher::Regex("([".into())),
            ..Default::default()
        };
        let err = ActiveConfig::build(
            "1",
            config(&[("a", "*")], m),
            &ActiveConfig::default(),
            &who(),
        )
        .unwrap_err();
        assert!(err.contains("regex"), "{err}");
        let mut cfg = config(&[("a", "*")], RouteMatch::default());
        cfg.clusters.clear();
        let err = ActiveConfig::build("2", cfg, &ActiveConfig::default(), &who()).unwrap_err();
        assert!(err.contains("unknown cluster c"), "{err}");
    }

    #[test]
    fn lb_state_survives_unchanged_clusters() {
        let cfg = config(&[("a", "*")], RouteMatch::default());
        let first =
            ActiveConfig::build("1", cfg.clone(), &ActiveConfig::default(), &who()).unwrap();
        let second = ActiveConfig::build("2", cfg, &first, &who()).unwrap();
        assert!(Arc::ptr_eq(
            &first.clusters["c"].lb,
            &second.clusters["c"].lb
        ));
    }
}
