//! Unit tests of the active config: route tables, validation, state carried across pushes.

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
    let first = ActiveConfig::build("1", cfg.clone(), &ActiveConfig::default(), &who()).unwrap();
    let second = ActiveConfig::build("2", cfg, &first, &who()).unwrap();
    assert!(Arc::ptr_eq(
        &first.clusters["c"].lb,
        &second.clusters["c"].lb
    ));
}

/// A cluster "c" of the given endpoints with outlier detection ejecting on one 5xx.
fn with_endpoints(ports: &[u16], base_ejection_ms: u64) -> ProxyConfig {
    let mut cfg = config(&[("a", "*")], RouteMatch::default());
    let c = cfg.clusters.get_mut("c").unwrap();
    c.endpoints = ports
        .iter()
        .map(|p| weft_model::Endpoint {
            address: format!("127.0.0.1:{p}"),
            ..Default::default()
        })
        .collect();
    c.outlier = Some(weft_model::Outlier {
        consecutive_5xx: 1,
        consecutive_gateway: 0,
        base_ejection_ms,
        interval_ms: 10_000,
        max_ejection_percent: 100,
        min_health_percent: 0,
        split_local_origin: false,
        consecutive_local_origin: 5,
    });
    cfg
}

/// Ejects 127.0.0.1:1 in `active`'s cluster "c" (one 503 from it).
fn eject_first(active: &ActiveConfig) {
    let lb = &active.clusters["c"].lb;
    let pick = std::iter::repeat_with(|| lb.pick().unwrap())
        .find(|p| p.endpoint.address == "127.0.0.1:1")
        .unwrap();
    lb.report(&pick, crate::upstream::Outcome::Status(503));
    assert_eq!(lb.ejected(), ["127.0.0.1:1"]);
}

#[tokio::test(start_paused = true)]
async fn outlier_ejections_survive_an_unrelated_endpoint_joining_or_leaving() {
    let first = ActiveConfig::build(
        "1",
        with_endpoints(&[1, 2], 30_000),
        &ActiveConfig::default(),
        &who(),
    )
    .unwrap();
    eject_first(&first);
    let held = first.clusters["c"].lb.pick().unwrap(); // in flight across the push
    let joined = ActiveConfig::build("2", with_endpoints(&[1, 2, 3], 30_000), &first, &who());
    let joined = joined.unwrap();
    let lb = &joined.clusters["c"].lb;
    assert_eq!(lb.ejected(), ["127.0.0.1:1"], "the ejection is kept");
    assert_eq!(
        lb.snapshot(),
        (3, 2, 1),
        "3 endpoints, 2 up, the held request counted"
    );
    drop(held);
    assert_eq!(lb.snapshot().2, 0);
    // Never picked while ejected; back when its ejection time is over.
    assert!((0..50).all(|_| lb.pick().unwrap().endpoint.address != "127.0.0.1:1"));
    tokio::time::advance(std::time::Duration::from_secs(31)).await;
    assert!(lb.ejected().is_empty());
    // An endpoint leaving keeps the others' state too.
    eject_first(&joined);
    let left = ActiveConfig::build("3", with_endpoints(&[1, 3], 30_000), &joined, &who());
    assert_eq!(left.unwrap().clusters["c"].lb.ejected(), ["127.0.0.1:1"]);
}

#[tokio::test(start_paused = true)]
async fn a_changed_cluster_setting_starts_fresh_state() {
    let first = ActiveConfig::build(
        "1",
        with_endpoints(&[1, 2], 30_000),
        &ActiveConfig::default(),
        &who(),
    )
    .unwrap();
    eject_first(&first);
    // Another outlier setting is a new cluster (Envoy's CDS update), as before.
    let changed = ActiveConfig::build("2", with_endpoints(&[1, 2], 60_000), &first, &who());
    assert!(changed.unwrap().clusters["c"].lb.ejected().is_empty());
    // An endpoint that left and came back is a new host.
    let gone = ActiveConfig::build("3", with_endpoints(&[2], 30_000), &first, &who()).unwrap();
    let back = ActiveConfig::build("4", with_endpoints(&[1, 2], 30_000), &gone, &who());
    assert!(back.unwrap().clusters["c"].lb.ejected().is_empty());
}

#[test]
fn unchanged_virtual_hosts_keep_their_compiled_form() {
    let m = RouteMatch {
        uri: Some(StringMatcher::Regex("/api/[0-9]+".into())),
        ..Default::default()
    };
    let cfg = config(&[("a", "a.example"), ("b", "b.example")], m);
    let first = ActiveConfig::build("1", cfg.clone(), &ActiveConfig::default(), &who()).unwrap();
    let mut edited = cfg.clone();
    let table = edited.routes.get_mut("t").unwrap();
    table.virtual_hosts[1].routes[0].timeout_ms = Some(250);
    let second = ActiveConfig::build("2", edited, &first, &who()).unwrap();
    let (old, new) = (&first.tables["t"].vhosts, &second.tables["t"].vhosts);
    assert!(Arc::ptr_eq(&old[0], &new[0]), "a.example unchanged: shared");
    assert!(
        !Arc::ptr_eq(&old[1], &new[1]),
        "b.example edited: compiled again"
    );
    assert_eq!(new[1].routes[0].spec.timeout_ms, Some(250));
    // A shared virtual host still answers, and a cluster it needs going away is the
    // same error as without sharing.
    let headers = http::HeaderMap::new();
    let vh = second.tables["t"].vhost("a.example").unwrap();
    assert!(vh.route(&view("/api/7", &headers)).is_some());
    let mut gone = cfg;
    gone.clusters.clear();
    let err = ActiveConfig::build("3", gone, &second, &who()).unwrap_err();
    assert!(err.contains("unknown cluster c"), "{err}");
}
