//! Unit tests of the route decision: every kind of local reply and forward plan, without
//! sockets.

use super::*;
use crate::reply::LocalReply;
use std::collections::BTreeMap;
use std::sync::Arc;
use weft_model::{
    Cluster, Cors, DirectResponse, Fault, HashKey, HeaderMatcher, Mirror, Redirect, Rewrite, Route,
    RouteMatch, StringMatcher, VirtualHost as Vh,
};

fn route(name: &str, m: Option<RouteMatch>, to: &[(&str, u32)]) -> Route {
    Route {
        name: name.into(),
        matches: m.into_iter().collect(),
        destinations: to
            .iter()
            .map(|(c, w)| WeightedCluster {
                cluster: c.to_string(),
                weight: *w,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn prefix(p: &str) -> Option<RouteMatch> {
    Some(RouteMatch {
        uri: Some(StringMatcher::Prefix(p.into())),
        ..Default::default()
    })
}

struct Fixture {
    table: RouteTable,
    clusters: HashMap<String, LiveCluster>,
}

fn fixture(routes: Vec<Route>, tweak: impl Fn(&mut Cluster)) -> Fixture {
    let mut specs = BTreeMap::new();
    for name in ["a", "b", "shadow"] {
        let mut c = Cluster {
            name: name.into(),
            service: format!("{name}.ns.svc.cluster.local"),
            ..Default::default()
        };
        tweak(&mut c);
        specs.insert(name.to_string(), c);
    }
    let model = weft_model::RouteTable {
        virtual_hosts: vec![Vh {
            name: "game".into(),
            domains: vec!["game.local".into()],
            routes,
            require_tls: false,
        }],
    };
    let table = RouteTable::build(&model, &specs, None).expect("table builds");
    let clusters = specs
        .into_iter()
        .map(|(n, spec)| {
            let lb = Arc::new(crate::upstream::LbState::new(&spec));
            (
                n,
                LiveCluster {
                    opts: crate::upstream::ConnOpts::of(&spec),
                    spec,
                    lb,
                    labels: Default::default(),
                    egress: None,
                },
            )
        })
        .collect();
    Fixture { table, clusters }
}

fn get<'a>(path: &'a str, headers: &'a http::HeaderMap) -> RequestView<'a> {
    RequestView {
        path,
        scheme: "http",
        method: "GET",
        authority: "game.local:8080",
        headers,
        source_ip: [10, 0, 0, 7].into(),
        claims: None,
    }
}

fn decide_once<'c>(f: &'c Fixture, view: &RequestView) -> Decision<'c> {
    decide(
        &f.table,
        &f.clusters,
        view,
        &mut fastrand::Rng::with_seed(7),
    )
}

fn reply(d: Decision) -> LocalReply {
    match d.action {
        Action::Reply(r) => r,
        Action::Forward(p) => panic!(
            "expected a local reply, got a forward to {}",
            p.cluster.spec.name
        ),
    }
}

fn plan(d: Decision) -> ForwardPlan {
    match d.action {
        Action::Forward(p) => p,
        Action::Reply(r) => panic!("expected a forward, got {r:?}"),
    }
}

#[test]
fn unknown_authority_and_unmatched_path_are_no_route() {
    let f = fixture(vec![route("api", prefix("/api"), &[("a", 1)])], |_| {});
    let h = http::HeaderMap::new();
    let mut v = get("/api/x", &h);
    v.authority = "elsewhere";
    let r = reply(decide_once(&f, &v));
    assert!(
        matches!(&r, LocalReply::NoRoute { detail } if detail.contains("no virtual host")),
        "{r:?}"
    );
    assert_eq!(r.flags().render(), "NR");
    let d = decide_once(&f, &get("/other", &h));
    assert!(d.route.is_none());
    assert!(matches!(reply(d), LocalReply::NoRoute { detail } if detail.contains("/other")));
}

#[test]
fn first_matching_route_forwards_with_its_policy() {
    let mut r = route("api", prefix("/api"), &[("b", 1)]);
    r.timeout_ms = Some(1500);
    r.retry.attempts = 3;
    let f = fixture(vec![r, route("all", None, &[("a", 1)])], |_| {});
    let h = http::HeaderMap::new();
    let p = plan(decide_once(&f, &get("/api/items", &h)));
    assert_eq!(p.cluster.spec.name, "b");
    assert_eq!(p.route.spec.name, "api");
    assert_eq!(p.timeout, Some(Duration::from_millis(1500)));
    assert_eq!(p.retry.attempts, 3);
    assert!(
        p.path.is_none() && p.authority.is_none(),
        "no rewrite, nothing copied"
    );
    assert_eq!(plan(decide_once(&f, &get("/", &h))).cluster.spec.name, "a");
}

#[test]
fn weights_split_and_zero_weight_is_no_destination() {
    let f = fixture(vec![route("split", None, &[("a", 80), ("b", 20)])], |_| {});
    let h = http::HeaderMap::new();
    let mut rng = fastrand::Rng::with_seed(1);
    let to_b = (0..1000)
        .filter(|_| {
            let d = decide(&f.table, &f.clusters, &get("/", &h), &mut rng);
            plan(d).cluster.spec.name == "b"
        })
        .count();
    assert!((150..250).contains(&to_b), "about 20% to b, got {to_b}");
    let f = fixture(vec![route("none", None, &[("a", 0)])], |_| {});
    let r = reply(decide_once(&f, &get("/", &h)));
    assert!(matches!(r, LocalReply::NoDestination { .. }));
    assert_eq!(r.flags().render(), "NR");
}

#[test]
fn redirect_and_direct_response_are_answered_locally() {
    let mut r = route("old", prefix("/old"), &[]);
    r.redirect = Some(Redirect {
        prefix_rewrite: Some("/new".into()),
        code: 302,
        ..Default::default()
    });
    let mut d = route("teapot", prefix("/tea"), &[]);
    d.direct_response = Some(DirectResponse {
        status: 418,
        body: b"short and stout".to_vec(),
    });
    let f = fixture(vec![r, d], |_| {});
    let h = http::HeaderMap::new();
    match reply(decide_once(&f, &get("/old/x?q=1", &h))) {
        LocalReply::Redirect { status, location } => {
            assert_eq!(status, 302);
            assert_eq!(location, "http://game.local:8080/new/x?q=1");
        }
        other => panic!("{other:?}"),
    }
    match reply(decide_once(&f, &get("/tea", &h))) {
        LocalReply::Direct { status, body } => {
            assert_eq!((status.as_u16(), &body[..]), (418, &b"short and stout"[..]));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn faults_delay_then_abort_or_forward() {
    let mut r = route("faulty", None, &[("a", 1)]);
    r.fault = Some(Fault {
        delay_ms: Some(250),
        delay_percent: 100.0,
        abort_status: Some(503),
        abort_percent: 100.0,
        ..Default::default()
    });
    let f = fixture(vec![r.clone()], |_| {});
    let h = http::HeaderMap::new();
    let d = decide_once(&f, &get("/", &h));
    assert_eq!(d.delay, Some(Duration::from_millis(250)));
    let abort = reply(d);
    assert!(matches!(abort, LocalReply::FaultAbort { status } if status == 503));
    assert_eq!(abort.flags().render(), "FI");
    r.fault = Some(Fault {
        abort_grpc: Some(14),
        abort_percent: 100.0,
        ..Default::default()
    });
    let f = fixture(vec![r.clone()], |_| {});
    let d = decide_once(&f, &get("/", &h));
    assert_eq!(d.delay, None);
    assert!(matches!(reply(d), LocalReply::FaultAbortGrpc { code: 14 }));
    r.fault = Some(Fault {
        delay_ms: Some(10),
        delay_percent: 100.0,
        abort_status: Some(500),
        abort_percent: 0.0,
        ..Default::default()
    });
    let f = fixture(vec![r], |_| {});
    let d = decide_once(&f, &get("/", &h));
    assert!(d.delay.is_some());
    assert_eq!(
        plan(d).cluster.spec.name,
        "a",
        "a delay alone still forwards"
    );
}

#[test]
fn cors_preflights_are_answered_and_origins_remembered() {
    let mut r = route("cors", None, &[("a", 1)]);
    r.cors = Some(Cors {
        allow_origins: vec![StringMatcher::Exact("https://play.local".into())],
        allow_methods: vec!["GET".into(), "POST".into()],
        forward_unmatched_preflights: false,
        ..Default::default()
    });
    let f = fixture(vec![r], |_| {});
    let mut h = http::HeaderMap::new();
    h.insert("origin", "https://play.local".parse().unwrap());
    h.insert("access-control-request-method", "POST".parse().unwrap());
    let mut v = get("/", &h);
    v.method = "OPTIONS";
    match reply(decide_once(&f, &v)) {
        LocalReply::CorsPreflight { headers } => {
            assert_eq!(headers["access-control-allow-origin"], "https://play.local");
            assert_eq!(headers["access-control-allow-methods"], "GET,POST");
        }
        other => panic!("{other:?}"),
    }
    let mut evil = h.clone();
    evil.insert("origin", "https://evil.example".parse().unwrap());
    let mut v = get("/", &evil);
    v.method = "OPTIONS";
    assert!(matches!(
        reply(decide_once(&f, &v)),
        LocalReply::CorsIgnored
    ));
    let d = decide_once(&f, &get("/", &h));
    assert_eq!(d.cors_origin.as_deref(), Some("https://play.local"));
    assert_eq!(
        plan(d).cluster.spec.name,
        "a",
        "an actual request is forwarded"
    );
}

#[test]
fn rewrites_hash_keys_and_mirrors_are_in_the_plan() {
    let mut r = route("rw", prefix("/api/v1"), &[("a", 1)]);
    r.rewrite = Some(Rewrite {
        uri: Some("/v2".into()),
        authority: Some("inventory.internal".into()),
        ..Default::default()
    });
    r.mirrors = vec![
        Mirror {
            cluster: "shadow".into(),
            percent: 100.0,
        },
        Mirror {
            cluster: "b".into(),
            percent: 0.0,
        },
    ];
    let f = fixture(vec![r], |c| {
        c.hash = Some(HashKey::Header("x-player".into()));
    });
    let mut h = http::HeaderMap::new();
    h.insert("x-player", "p-42".parse().unwrap());
    let p = plan(decide_once(&f, &get("/api/v1/items?x=1", &h)));
    assert_eq!(p.path.as_deref(), Some("/v2/items?x=1"));
    assert_eq!(p.authority.as_deref(), Some("inventory.internal"));
    assert_eq!(p.hash, Some(crate::upstream::stable_hash(b"p-42")));
    let mirrors: Vec<&str> = p.mirrors.iter().map(|m| m.spec.name.as_str()).collect();
    assert_eq!(mirrors, ["shadow"], "0% mirrors are never rolled");
    let p = plan(decide_once(
        &f,
        &get("/api/v1/items", &http::HeaderMap::new()),
    ));
    assert_eq!(
        p.hash, None,
        "no key, no hash: the pick is random, as in Envoy"
    );
}

#[test]
fn header_conditions_decide_between_routes() {
    let premium = Some(RouteMatch {
        headers: vec![HeaderMatcher {
            name: "x-player-tier".into(),
            matcher: StringMatcher::Exact("premium".into()),
        }],
        ..Default::default()
    });
    let f = fixture(
        vec![
            route("premium", premium, &[("b", 1)]),
            route("rest", None, &[("a", 1)]),
        ],
        |_| {},
    );
    let mut h = http::HeaderMap::new();
    assert_eq!(plan(decide_once(&f, &get("/", &h))).route.spec.name, "rest");
    h.insert("x-player-tier", "premium".parse().unwrap());
    assert_eq!(
        plan(decide_once(&f, &get("/", &h))).route.spec.name,
        "premium"
    );
}
