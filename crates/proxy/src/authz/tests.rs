//! Istio's AuthorizationPolicy semantics, rule by rule, without sockets.

use super::*;
use http::HeaderMap;
use weft_model::{AuthzField, AuthzPolicy, AuthzRule};

fn f(attr: AuthzAttr, values: &[&str], not_values: &[&str]) -> AuthzField {
    AuthzField {
        attr,
        values: values.iter().map(|s| s.to_string()).collect(),
        not_values: not_values.iter().map(|s| s.to_string()).collect(),
    }
}

fn policy(name: &str, action: AuthzAction, rules: Vec<AuthzRule>) -> AuthzPolicy {
    AuthzPolicy {
        name: name.into(),
        action,
        dry_run: false,
        rules,
        provider: None,
    }
}

fn rule_from(fields: Vec<AuthzField>) -> AuthzRule {
    AuthzRule {
        from: vec![fields],
        ..Default::default()
    }
}

fn rule_to(fields: Vec<AuthzField>) -> AuthzRule {
    AuthzRule {
        to: vec![fields],
        ..Default::default()
    }
}

fn engine(policies: Vec<AuthzPolicy>) -> Engine {
    Engine::build(&Authz {
        policies,
        providers: vec![],
    })
    .expect("policies compile")
}

struct Req {
    peer: Option<&'static str>,
    method: &'static str,
    path: &'static str,
    host: &'static str,
    port: u16,
    source: IpAddr,
    remote: IpAddr,
    headers: HeaderMap,
}

fn req() -> Req {
    Req {
        peer: Some("spiffe://cluster.local/ns/necpgame/sa/matchmaking"),
        method: "GET",
        path: "/api/v1/player/7?full=1",
        host: "player.necpgame.svc.cluster.local",
        port: 8080,
        source: [127, 0, 0, 1].into(),
        remote: [203, 0, 113, 9].into(),
        headers: HeaderMap::new(),
    }
}

impl Req {
    fn denied(&self, e: &Engine) -> Option<String> {
        self.verdict(e).denied
    }

    fn verdict(&self, e: &Engine) -> Verdict {
        e.evaluate(&Input {
            peer: self.peer,
            source_ip: self.source,
            remote_ip: self.remote,
            destination_ip: [127, 0, 0, 1].into(),
            destination_port: self.port,
            host: self.host,
            method: self.method,
            path: self.path,
            headers: &self.headers,
            sni: None,
            jwt: None,
        })
    }
}

#[test]
fn no_policy_allows_and_a_policy_without_rules_allows_nothing() {
    assert_eq!(req().denied(&engine(vec![])), None);
    let allow_nothing = engine(vec![policy("ns.allow-nothing", AuthzAction::Allow, vec![])]);
    assert_eq!(
        req().denied(&allow_nothing).as_deref(),
        Some("no ALLOW policy matched")
    );
    // A DENY policy without rules matches nothing: it denies nothing.
    let deny_nothing = engine(vec![policy("ns.d", AuthzAction::Deny, vec![])]);
    assert_eq!(req().denied(&deny_nothing), None);
    // `rules: [{}]` matches everything.
    let allow_all = engine(vec![policy(
        "ns.a",
        AuthzAction::Allow,
        vec![AuthzRule::default()],
    )]);
    assert_eq!(req().denied(&allow_all), None);
}

#[test]
fn deny_wins_over_allow_and_one_matching_allow_suffices() {
    let get = rule_to(vec![f(AuthzAttr::Method, &["GET"], &[])]);
    let e = engine(vec![
        policy("ns.allow-get", AuthzAction::Allow, vec![get.clone()]),
        policy(
            "ns.allow-post",
            AuthzAction::Allow,
            vec![rule_to(vec![f(AuthzAttr::Method, &["POST"], &[])])],
        ),
        policy(
            "ns.deny-admin",
            AuthzAction::Deny,
            vec![rule_to(vec![f(AuthzAttr::Path, &["/admin*"], &[])])],
        ),
    ]);
    assert_eq!(req().denied(&e), None);
    let post = Req {
        method: "POST",
        ..req()
    };
    assert_eq!(post.denied(&e), None);
    let delete = Req {
        method: "DELETE",
        ..req()
    };
    assert_eq!(
        delete.denied(&e).as_deref(),
        Some("no ALLOW policy matched")
    );
    let admin = Req {
        path: "/admin/users",
        ..req()
    };
    assert_eq!(admin.denied(&e).as_deref(), Some("ns.deny-admin"));
}

#[test]
fn principals_and_namespaces_take_istio_string_forms() {
    let allow = |values: &[&str]| {
        engine(vec![policy(
            "ns.p",
            AuthzAction::Allow,
            vec![rule_from(vec![f(AuthzAttr::Principal, values, &[])])],
        )])
    };
    let r = req();
    assert_eq!(
        r.denied(&allow(&["cluster.local/ns/necpgame/sa/matchmaking"])),
        None
    );
    assert_eq!(r.denied(&allow(&["cluster.local/ns/necpgame/*"])), None);
    assert_eq!(r.denied(&allow(&["*/sa/matchmaking"])), None);
    assert_eq!(r.denied(&allow(&["*"])), None);
    assert!(
        r.denied(&allow(&[
            "spiffe://cluster.local/ns/necpgame/sa/matchmaking"
        ]))
        .is_some(),
        "principals are compared without spiffe://"
    );
    assert!(r
        .denied(&allow(&["cluster.local/ns/necpgame/sa/player"]))
        .is_some());
    // No mTLS peer: `*` (any authenticated peer) does not match.
    let plain = Req {
        peer: None,
        ..req()
    };
    assert!(plain.denied(&allow(&["*"])).is_some());

    let ns = |values: &[&str], not: &[&str]| {
        engine(vec![policy(
            "ns.n",
            AuthzAction::Allow,
            vec![rule_from(vec![f(AuthzAttr::Namespace, values, not)])],
        )])
    };
    assert_eq!(r.denied(&ns(&["necpgame"], &[])), None);
    assert_eq!(r.denied(&ns(&["necp*"], &[])), None);
    assert!(r.denied(&ns(&["istio-system"], &[])).is_some());
    assert!(r.denied(&ns(&[], &["necpgame"])).is_some());
    // notNamespaces with no peer: nothing to exclude, the field holds.
    assert_eq!(plain.denied(&ns(&[], &["necpgame"])), None);
    // values and notValues in one field both apply.
    assert!(r.denied(&ns(&["necp*"], &["necpgame"])).is_some());
}

#[test]
fn service_accounts_compare_namespace_and_name() {
    let e = engine(vec![policy(
        "ns.sa",
        AuthzAction::Allow,
        vec![rule_from(vec![f(
            AuthzAttr::ServiceAccount,
            &["necpgame/matchmaking"],
            &[],
        )])],
    )]);
    assert_eq!(req().denied(&e), None);
    let other = Req {
        peer: Some("spiffe://cluster.local/ns/other/sa/matchmaking"),
        ..req()
    };
    assert!(other.denied(&e).is_some());
}

#[test]
fn paths_ignore_the_query_and_take_templates() {
    let allow = |paths: &[&str]| {
        engine(vec![policy(
            "ns.p",
            AuthzAction::Allow,
            vec![rule_to(vec![f(AuthzAttr::Path, paths, &[])])],
        )])
    };
    let at = |path: &'static str| Req { path, ..req() };
    assert_eq!(
        at("/api/v1/player/7?full=1").denied(&allow(&["/api/v1/player/7"])),
        None
    );
    assert_eq!(at("/api/v1/player/7").denied(&allow(&["/api/v1/*"])), None);
    assert_eq!(at("/x/healthz").denied(&allow(&["*/healthz"])), None);
    let one = allow(&["/api/{*}/player"]);
    assert_eq!(at("/api/v1/player").denied(&one), None);
    assert!(
        at("/api/v1/v2/player").denied(&one).is_some(),
        "{{*}} is one segment"
    );
    assert!(
        at("/api//player").denied(&one).is_some(),
        "{{*}} is not empty"
    );
    let rest = allow(&["/api/{**}"]);
    assert_eq!(at("/api/v1/player/7").denied(&rest), None);
    assert_eq!(at("/api/").denied(&rest), None);
    assert!(at("/apix/v1").denied(&rest).is_some());
    let mid = allow(&["/a/{**}/z"]);
    assert_eq!(at("/a/b/c/z").denied(&mid), None);
    assert!(at("/a/b/c/y").denied(&mid).is_some());
    // Paths are case-sensitive.
    assert!(at("/API/v1/player/7").denied(&allow(&["/api/*"])).is_some());
}

#[test]
fn hosts_are_case_insensitive_ports_and_ips_are_exact_or_cidr() {
    let to = |fields: Vec<AuthzField>| {
        engine(vec![policy(
            "ns.t",
            AuthzAction::Allow,
            vec![rule_to(fields)],
        )])
    };
    let r = req();
    assert_eq!(
        r.denied(&to(vec![f(
            AuthzAttr::Host,
            &["PLAYER.necpgame.svc.cluster.local"],
            &[]
        )])),
        None
    );
    assert_eq!(
        r.denied(&to(vec![f(AuthzAttr::Host, &["*.svc.cluster.local"], &[])])),
        None
    );
    assert!(r
        .denied(&to(vec![f(AuthzAttr::Host, &["inventory.*"], &[])]))
        .is_some());
    assert_eq!(
        r.denied(&to(vec![f(AuthzAttr::Port, &["8080"], &[])])),
        None
    );
    assert!(r
        .denied(&to(vec![f(AuthzAttr::Port, &["9090"], &[])]))
        .is_some());
    assert!(r
        .denied(&to(vec![f(AuthzAttr::Port, &[], &["8080"])]))
        .is_some());

    let from = |attr: AuthzAttr, v: &[&str], not: &[&str]| {
        engine(vec![policy(
            "ns.f",
            AuthzAction::Allow,
            vec![rule_from(vec![f(attr, v, not)])],
        )])
    };
    assert_eq!(
        r.denied(&from(AuthzAttr::SourceIp, &["127.0.0.0/8"], &[])),
        None
    );
    assert_eq!(
        r.denied(&from(AuthzAttr::SourceIp, &["127.0.0.1"], &[])),
        None
    );
    assert!(r
        .denied(&from(AuthzAttr::SourceIp, &["10.0.0.0/8"], &[]))
        .is_some());
    assert_eq!(
        r.denied(&from(AuthzAttr::RemoteIp, &["203.0.113.0/24"], &[])),
        None
    );
    assert!(r
        .denied(&from(AuthzAttr::RemoteIp, &[], &["203.0.113.9"]))
        .is_some());
    assert!(Engine::build(&Authz {
        providers: vec![],
        policies: vec![policy(
            "ns.bad",
            AuthzAction::Allow,
            vec![rule_from(vec![f(AuthzAttr::SourceIp, &["300.1.1.1"], &[])])]
        )]
    })
    .is_err());
}

#[test]
fn when_conditions_all_hold_and_any_from_or_to_alternative_does() {
    let mut r = req();
    r.headers
        .append("x-player-tier", "premium".parse().unwrap());
    r.headers.append("x-player-tier", "beta".parse().unwrap());
    let rule = AuthzRule {
        from: vec![
            vec![f(AuthzAttr::Namespace, &["istio-system"], &[])],
            vec![f(AuthzAttr::Principal, &["*/sa/matchmaking"], &[])],
        ],
        to: vec![
            vec![f(AuthzAttr::Method, &["POST"], &[])],
            vec![
                f(AuthzAttr::Method, &["GET"], &[]),
                f(AuthzAttr::Path, &["/api/*"], &[]),
            ],
        ],
        when: vec![
            f(AuthzAttr::Header("x-player-tier".into()), &["beta"], &[]),
            f(AuthzAttr::Header("x-debug".into()), &[], &["*"]),
        ],
    };
    let e = engine(vec![policy("ns.w", AuthzAction::Allow, vec![rule])]);
    assert!(
        r.denied(&e).is_some(),
        "a header sent twice is matched as `premium,beta`"
    );
    r.headers.remove("x-player-tier");
    r.headers.insert("x-player-tier", "beta".parse().unwrap());
    assert_eq!(r.denied(&e), None);
    r.headers.insert("x-debug", "1".parse().unwrap());
    assert!(
        r.denied(&e).is_some(),
        "notValues * excludes a present header"
    );
    // JWT attributes are absent until RequestAuthentication is built.
    let jwt = engine(vec![policy(
        "ns.j",
        AuthzAction::Allow,
        vec![rule_from(vec![f(AuthzAttr::RequestPrincipal, &["*"], &[])])],
    )]);
    assert!(req().denied(&jwt).is_some());
}

#[test]
fn dry_run_policies_are_evaluated_on_the_side_and_never_enforced() {
    let mut deny = policy(
        "ns.dry-deny",
        AuthzAction::Deny,
        vec![rule_to(vec![f(AuthzAttr::Method, &["GET"], &[])])],
    );
    deny.dry_run = true;
    let e = engine(vec![deny.clone()]);
    let v = req().verdict(&e);
    assert_eq!(v.denied, None);
    let shadow = |action, policy: Option<&str>, denied| Shadow {
        action,
        policy: policy.map(str::to_string),
        denied,
    };
    assert_eq!(
        v.shadow,
        [shadow(AuthzAction::Deny, Some("ns.dry-deny"), true)]
    );
    let post = Req {
        method: "POST",
        ..req()
    };
    assert_eq!(
        post.verdict(&e).shadow,
        [shadow(AuthzAction::Deny, None, false)]
    );

    let mut allow = policy("ns.dry-allow", AuthzAction::Allow, vec![]);
    allow.dry_run = true;
    let e = engine(vec![allow.clone(), deny]);
    let v = req().verdict(&e);
    assert_eq!(
        v.denied, None,
        "a dry-run ALLOW does not make ALLOW policies exist"
    );
    assert_eq!(
        v.shadow,
        [
            shadow(AuthzAction::Deny, Some("ns.dry-deny"), true),
            shadow(AuthzAction::Allow, None, true)
        ]
    );
    // A request an enforced DENY refuses never reaches the ALLOW shadow.
    let e = engine(vec![
        allow,
        policy("ns.deny-all", AuthzAction::Deny, vec![AuthzRule::default()]),
    ]);
    let v = req().verdict(&e);
    assert_eq!(v.denied.as_deref(), Some("ns.deny-all"));
    assert!(v.shadow.is_empty());
}

#[test]
fn header_and_namespace_forms() {
    let when = |attr: AuthzAttr, v: &[&str]| {
        engine(vec![policy(
            "ns.w",
            AuthzAction::Allow,
            vec![AuthzRule {
                when: vec![f(attr, v, &[])],
                ..Default::default()
            }],
        )])
    };
    let mut r = req();
    r.headers.insert("x-empty", "".parse().unwrap());
    assert_eq!(
        r.denied(&when(AuthzAttr::Header("x-empty".into()), &["*"])),
        None,
        "`*` is presence, even empty"
    );
    assert!(r
        .denied(&when(AuthzAttr::Header("x-none".into()), &["*"]))
        .is_some());
    assert_eq!(r.denied(&when(AuthzAttr::Namespace, &["ne*game"])), None);
    assert_eq!(
        r.denied(&when(AuthzAttr::Namespace, &["*cpga*"])),
        None,
        "`*` at both ends"
    );
    assert!(r.denied(&when(AuthzAttr::Namespace, &["*prod*"])).is_some());
    assert!(r.denied(&when(AuthzAttr::Namespace, &["ne*x"])).is_some());
    // Hosts are the authority as sent: the port is not stripped.
    let host =
        |h: &'static str, v: &[&str]| Req { host: h, ..req() }.denied(&when(AuthzAttr::Host, v));
    assert!(host("example.com:8080", &["example.com"]).is_some());
    assert_eq!(host("example.com:8080", &["example.com:*"]), None);
    assert_eq!(host("example.com", &["EXAMPLE.com"]), None);
}

#[test]
fn pseudo_headers_are_the_requests_authority_method_and_path() {
    let when = |name: &str, v: &[&str]| {
        engine(vec![policy(
            "ns.w",
            AuthzAction::Allow,
            vec![AuthzRule {
                when: vec![f(AuthzAttr::Header(name.into()), v, &[])],
                ..Default::default()
            }],
        )])
    };
    let r = req();
    assert_eq!(r.denied(&when(":authority", &["player.*"])), None);
    assert!(r.denied(&when(":authority", &["inventory.*"])).is_some());
    assert_eq!(r.denied(&when(":method", &["GET"])), None);
    assert!(r.denied(&when(":method", &["POST"])).is_some());
    // `:path` keeps the query string, as Envoy's does.
    assert_eq!(r.denied(&when(":path", &["/api/v1/player/7?full=1"])), None);
    assert!(r.denied(&when(":path", &["/api/v1/player/7"])).is_some());
}

#[test]
fn audit_marks_without_deciding() {
    let e = engine(vec![policy(
        "ns.audit",
        AuthzAction::Audit,
        vec![AuthzRule::default()],
    )]);
    let v = req().verdict(&e);
    assert!(v.audit);
    assert_eq!(v.denied, None);
}
