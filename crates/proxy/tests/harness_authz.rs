//! AuthorizationPolicy enforcement in running proxies: on a sidecar's inbound side (the
//! mTLS peer's principal, paths after normalization, the 403 and its metrics, dry-run) and
//! at a gateway (ipBlocks and remoteIpBlocks against a spoofed X-Forwarded-For).

mod support;

use http::Request;
use http_body_util::Full;
use support::*;
use weft_model::{Authz, AuthzAction, AuthzAttr, AuthzField, AuthzPolicy, AuthzRule};

const CLIENT_PRINCIPAL: &str = "cluster.local/ns/test/sa/client";

fn f(attr: AuthzAttr, values: &[&str]) -> AuthzField {
    AuthzField {
        attr,
        values: values.iter().map(|s| s.to_string()).collect(),
        not_values: vec![],
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

/// Pushes `policies` to the pair's server sidecar.
async fn protect(pair: &Pair, policies: Vec<AuthzPolicy>) {
    let mut cfg = Config::sidecar(&pair.server).build();
    cfg.authz = Authz {
        policies,
        providers: vec![],
    };
    pair.control.push_acked("server", &cfg).await;
}

/// Allow GET under /api/ from the client's principal; deny /admin and everything under it.
fn api_policies(principal: &str) -> Vec<AuthzPolicy> {
    vec![
        policy(
            "test.allow-api",
            AuthzAction::Allow,
            vec![AuthzRule {
                from: vec![vec![f(AuthzAttr::Principal, &[principal])]],
                to: vec![vec![
                    f(AuthzAttr::Method, &["GET"]),
                    f(AuthzAttr::Path, &["/api/*", "/admin", "/admin/*"]),
                ]],
                when: vec![],
            }],
        ),
        policy(
            "test.deny-admin",
            AuthzAction::Deny,
            vec![AuthzRule {
                to: vec![vec![f(AuthzAttr::Path, &["/admin", "/admin/*"])]],
                ..Default::default()
            }],
        ),
    ]
}

#[tokio::test]
async fn inbound_policies_allow_and_deny_by_principal_method_and_path() {
    let app = App::echo("server-app").await;
    let pair = Pair::start(&app, |r| r).await;
    protect(&pair, api_policies(CLIENT_PRINCIPAL)).await;

    let ok = pair.get("/api/items?x=1").await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let not_allowed = pair.get("/other").await;
    assert_eq!(not_allowed.status, 403);
    assert_eq!(not_allowed.body, "RBAC: access denied");
    let post = send(
        pair.client.outbound(),
        Request::post("/api/items")
            .header("host", &pair.host)
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(post.status, 403, "only GET is allowed");
    assert_eq!(app.count(), 1, "denied requests never reach the app");

    // The server counted the denials (Envoy has no flag for them: `-`), and which policy decided.
    let stats = requests_total(
        pair.server.admin,
        &[
            ("reporter", "destination"),
            ("response_code", "403"),
            ("response_flags", "-"),
            ("source_principal", &format!("spiffe://{CLIENT_PRINCIPAL}")),
        ],
        2.0,
    )
    .await;
    assert_eq!(
        sample_sum(
            &stats,
            "weft_authorization_decisions_total",
            &[
                ("policy", "no ALLOW policy matched"),
                ("decision", "denied"),
                ("dry_run", "false")
            ]
        ),
        2.0,
        "{stats}"
    );

    // Another principal is not allowed at all.
    protect(&pair, api_policies("cluster.local/ns/test/sa/someone-else")).await;
    assert_eq!(pair.get("/api/items").await.status, 403);
}

#[tokio::test]
async fn admin_cannot_be_reached_by_another_spelling_of_its_path() {
    let app = App::echo("server-app").await;
    let pair = Pair::start(&app, |r| r).await;
    protect(&pair, api_policies(CLIENT_PRINCIPAL)).await;
    for path in [
        "/admin",
        "/admin/",
        "/admin/users",
        "/api/../admin",
        "/api/./../admin/users",
        "/./admin",
        "/%61dmin",
        "/%2e%2e/admin",
        "/api/%2E%2E/admin",
        "/admin?x=/api/y",
        "/admin#/api/y",
        "/api\\..\\admin",
    ] {
        let resp = pair.get(path).await;
        assert_eq!(resp.status, 403, "{path} must be denied: {}", resp.body);
    }
    assert_eq!(
        app.count(),
        0,
        "nothing reached the app: {:?}",
        app.requests()
    );
}

#[tokio::test]
async fn dry_run_policies_decide_nothing_but_are_counted() {
    let app = App::echo("server-app").await;
    let pair = Pair::start(&app, |r| r).await;
    let mut deny_all = policy(
        "test.would-deny",
        AuthzAction::Deny,
        vec![AuthzRule::default()],
    );
    deny_all.dry_run = true;
    protect(&pair, vec![deny_all]).await;
    for _ in 0..3 {
        assert_eq!(pair.get("/api/items").await.status, 200);
    }
    let stats = requests_total(pair.server.admin, &[("response_code", "200")], 3.0).await;
    assert_eq!(
        sample_sum(
            &stats,
            "weft_authorization_decisions_total",
            &[
                ("policy", "test.would-deny"),
                ("decision", "denied"),
                ("dry_run", "true")
            ]
        ),
        3.0,
        "{stats}"
    );
}

#[tokio::test]
async fn grpc_requests_are_denied_with_permission_denied() {
    let app = App::echo("server-app").await;
    let pair = Pair::start(&app, |r| r).await;
    protect(
        &pair,
        vec![policy("test.allow-nothing", AuthzAction::Allow, vec![])],
    )
    .await;
    let resp = send(
        pair.client.outbound(),
        Request::post("/pkg.Svc/Method")
            .header("host", &pair.host)
            .header("content-type", "application/grpc")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("grpc-status"), Some("7"));
    assert_eq!(resp.header("grpc-message"), Some("RBAC: access denied"));
}

/// A gateway routing `shop.example.com` on port 80 to a sidecar in front of `app`, and the
/// gateway's config (pushed by the caller, with its policies).
async fn gateway_to(app: &App) -> (FakeControl, Proxy, Proxy, weft_model::ProxyConfig) {
    let control = FakeControl::start().await;
    let web = Proxy::sidecar("web").app(app.addr).start(&control).await;
    let gw = Proxy::gateway("ingress").start(&control).await;
    control
        .push_acked("web", &Config::sidecar(&web).build())
        .await;
    let c = cluster(&service_host("web", NAMESPACE), 80, vec![endpoint(&web)]);
    let cfg = Config::gateway()
        .gateway_route(80, "shop.example.com", route_to(&c.name))
        .cluster(c)
        .build();
    (control, web, gw, cfg)
}

#[tokio::test]
async fn a_gateway_judges_the_client_address_and_ignores_a_spoofed_forwarded_for() {
    let app = App::echo("web-app").await;
    let (control, _web, mut gw, mut cfg) = gateway_to(&app).await;
    // Only clients from 203.0.113.0/24 (the original client, remote.ip), and only on the
    // gateway's port 80 (the configured port, wherever the listener is bound).
    cfg.authz.policies = vec![policy(
        "istio-system.partners-only",
        AuthzAction::Allow,
        vec![AuthzRule {
            from: vec![vec![f(AuthzAttr::RemoteIp, &["203.0.113.0/24"])]],
            to: vec![vec![f(AuthzAttr::Port, &["80"])]],
            ..Default::default()
        }],
    )];
    control.push_acked("ingress", &cfg).await;
    let port80 = gw.listener("gateway_80").await;
    let spoofed = send(
        port80,
        Request::get("/")
            .header("host", "shop.example.com")
            .header("x-forwarded-for", "203.0.113.7")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(
        spoofed.status, 403,
        "with no trusted hops the client is the peer (127.0.0.1), whatever it claims"
    );

    // ipBlocks: the connection's own address.
    cfg.authz.policies = vec![policy(
        "istio-system.loopback",
        AuthzAction::Allow,
        vec![AuthzRule {
            from: vec![vec![f(AuthzAttr::SourceIp, &["127.0.0.0/8"])]],
            ..Default::default()
        }],
    )];
    control.push_acked("ingress", &cfg).await;
    let ok = get(port80, "shop.example.com", "/").await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(app.count(), 1);
}

#[tokio::test]
async fn mesh_path_normalization_closes_doubled_and_escaped_slashes() {
    use weft_model::mesh::{MeshOptions, PathNormalization};
    let app = App::echo("server-app").await;
    let pair = Pair::start(&app, |r| r).await;
    let push = |mode| {
        let mut cfg = Config::sidecar(&pair.server).build();
        cfg.authz = Authz {
            policies: api_policies(CLIENT_PRINCIPAL),
            providers: vec![],
        };
        cfg.mesh = MeshOptions {
            path_normalization: mode,
            num_trusted_proxies: 0,
        };
        cfg
    };
    // Istio's default (BASE) keeps `//admin` as sent: an exact `/admin` rule does not see
    // it (the ALLOW list doesn't either, so it is still refused here).
    pair.control
        .push_acked("server", &push(PathNormalization::MergeSlashes))
        .await;
    // (Envoy resolves dot segments before merging: `/api//..//admin` is `/api/admin`.)
    for path in ["//admin", "/.//admin", "///admin/users"] {
        let resp = pair.get(path).await;
        assert_eq!(resp.status, 403, "{path}: {}", resp.body);
    }
    assert_eq!(pair.get("/api//items").await.status, 200);
    assert_eq!(
        app.last().path,
        "/api/items",
        "merged before the app sees it"
    );
    pair.control
        .push_acked("server", &push(PathNormalization::DecodeAndMergeSlashes))
        .await;
    for path in ["/admin%2Fusers", "/api%2F..%2Fadmin", "/admin%5cusers"] {
        let resp = pair.get(path).await;
        assert_eq!(resp.status, 403, "{path}: {}", resp.body);
    }
    assert_eq!(app.count(), 1, "only the allowed request reached the app");
}

#[tokio::test]
async fn a_gateway_behind_trusted_proxies_judges_the_forwarded_client() {
    let app = App::echo("web-app").await;
    let (control, _web, mut gw, mut cfg) = gateway_to(&app).await;
    cfg.mesh.num_trusted_proxies = 1;
    cfg.authz.policies = vec![policy(
        "istio-system.partners-only",
        AuthzAction::Allow,
        vec![AuthzRule {
            from: vec![vec![f(AuthzAttr::RemoteIp, &["203.0.113.0/24"])]],
            ..Default::default()
        }],
    )];
    control.push_acked("ingress", &cfg).await;
    let port80 = gw.listener("gateway_80").await;
    let via = |xff: &str| {
        send(
            port80,
            Request::get("/")
                .header("host", "shop.example.com")
                .header("x-forwarded-for", xff)
                .body(Full::default())
                .unwrap(),
        )
    };
    // One trusted hop (a load balancer in front): the client is the rightmost entry.
    assert_eq!(via("198.51.100.1, 203.0.113.7").await.status, 200);
    assert_eq!(via("203.0.113.7, 198.51.100.1").await.status, 403);
    assert_eq!(app.count(), 1);
}

/// Istio's ext-authz sample, as a scripted app: allows requests with `x-ext-authz: allow`
/// (adding `x-ext-authz-check-result: allowed` for the upstream), denies the rest with 403.
async fn sample_authorizer() -> App {
    App::start("ext-authz", |_, seen| {
        if seen.header("x-ext-authz") == Some("allow") {
            Reply::status(200)
                .header("x-ext-authz-check-result", "allowed")
                .header("x-ext-authz-received-path", &seen.path)
        } else if seen.header("x-ext-authz") == Some("crash") {
            Reply::status(500)
        } else {
            Reply::status(403)
                .header("x-ext-authz-check-result", "denied")
                .body(
                    "denied by ext_authz for not found header `x-ext-authz: allow` in the request",
                )
        }
    })
    .await
}

fn provider(cluster: &str, fail_open: bool) -> weft_model::ExtAuthzProvider {
    weft_model::ExtAuthzProvider {
        name: "sample-ext-authz".into(),
        cluster: cluster.into(),
        authority: "ext-authz.test.svc.cluster.local:8000".into(),
        timeout_ms: 2000,
        path_prefix: "/check".into(),
        fail_open,
        status_on_error: 403,
        include_request_headers: vec!["x-ext-authz".into()],
        additional_headers: vec![("x-added-by-mesh".into(), "yes".into())],
        headers_to_upstream_on_allow: vec!["x-ext-authz-check-*".into()],
        headers_to_downstream_on_deny: vec!["x-ext-authz-check-result".into()],
        headers_to_downstream_on_allow: vec![],
    }
}

#[tokio::test]
async fn custom_policies_ask_an_external_authorizer_first() {
    let app = App::echo("server-app").await;
    let authorizer = sample_authorizer().await;
    let pair = Pair::start(&app, |r| r).await;
    let authz_sidecar = Proxy::sidecar("ext-authz")
        .app(authorizer.addr)
        .start(&pair.control)
        .await;
    pair.control
        .push_acked("ext-authz", &Config::sidecar(&authz_sidecar).build())
        .await;
    let c = cluster(
        &service_host("ext-authz", NAMESPACE),
        8000,
        vec![endpoint(&authz_sidecar)],
    );
    let push = |fail_open: bool| {
        let mut cfg = Config::sidecar(&pair.server).cluster(c.clone()).build();
        let mut custom = policy(
            "test.ext-authz",
            AuthzAction::Custom,
            vec![AuthzRule {
                to: vec![vec![f(AuthzAttr::Path, &["/headers*"])]],
                ..Default::default()
            }],
        );
        custom.provider = Some("sample-ext-authz".into());
        // A DENY evaluated after the authorizer: it sees the header the authorizer added.
        let deny = policy(
            "test.deny-after-allow",
            AuthzAction::Deny,
            vec![AuthzRule {
                when: vec![
                    f(
                        AuthzAttr::Header("x-ext-authz-check-result".into()),
                        &["allowed"],
                    ),
                    f(AuthzAttr::Header("x-also".into()), &["deny-me"]),
                ],
                ..Default::default()
            }],
        );
        cfg.authz = Authz {
            policies: vec![custom, deny],
            providers: vec![provider(&c.name, fail_open)],
        };
        cfg
    };
    pair.control.push_acked("server", &push(false)).await;
    let with = |path: &str, headers: &[(&str, &str)]| {
        let mut b = Request::get(path).header("host", &pair.host);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        send(pair.client.outbound(), b.body(Full::default()).unwrap())
    };

    // Allowed: the app gets the authorizer's header; the check saw prefix + path + query.
    let ok = with("/headers?q=1", &[("x-ext-authz", "allow")]).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let seen = app.last();
    assert_eq!(seen.header("x-ext-authz-check-result"), Some("allowed"));
    let check = authorizer.last();
    assert_eq!(check.path, "/check/headers?q=1");
    assert_eq!(check.method, "GET");
    assert_eq!(check.header("x-added-by-mesh"), Some("yes"));
    assert_eq!(check.header("x-ext-authz"), Some("allow"));

    // Denied: the authorizer's status, listed headers and body reach the client.
    let denied = with("/headers", &[]).await;
    assert_eq!(denied.status, 403);
    assert_eq!(denied.header("x-ext-authz-check-result"), Some("denied"));
    assert!(
        denied.body.starts_with("denied by ext_authz"),
        "{}",
        denied.body
    );
    // A path no CUSTOM rule matches is not sent to the authorizer.
    let checks = authorizer.count();
    assert_eq!(with("/other", &[]).await.status, 200);
    assert_eq!(authorizer.count(), checks);
    // DENY runs after the authorizer's allow and sees what it added.
    let both = with(
        "/headers",
        &[("x-ext-authz", "allow"), ("x-also", "deny-me")],
    )
    .await;
    assert_eq!(
        (both.status, both.body.as_str()),
        (403, "RBAC: access denied")
    );

    // The authorizer failing: statusOnError (403), no body, flag UAEX; or fail open.
    let crashed = with("/headers", &[("x-ext-authz", "crash")]).await;
    assert_eq!((crashed.status, crashed.body.as_str()), (403, ""));
    requests_total(
        pair.server.admin,
        &[("response_code", "403"), ("response_flags", "UAEX")],
        2.0,
    )
    .await;
    pair.control.push_acked("server", &push(true)).await;
    assert_eq!(
        with("/headers", &[("x-ext-authz", "crash")]).await.status,
        200
    );
}

#[tokio::test]
async fn a_caller_cannot_pick_a_port_to_escape_a_port_rule() {
    let app = App::echo("server-app").await;
    let pair = Pair::start(&app, |r| r).await;
    let push = |ports: Vec<u32>| {
        let mut cfg = Config::sidecar(&pair.server).build();
        cfg.inbound.as_mut().unwrap().ports = ports;
        cfg.authz = Authz {
            policies: vec![policy(
                "test.no-admin-port",
                AuthzAction::Deny,
                vec![AuthzRule {
                    to: vec![vec![f(AuthzAttr::Port, &["9090"])]],
                    ..Default::default()
                }],
            )],
            providers: vec![],
        };
        cfg
    };
    let with_host = |host: String| {
        send(
            pair.client.outbound(),
            Request::get("/x")
                .header("host", host)
                .body(Full::default())
                .unwrap(),
        )
    };
    // One port: whatever port the authority names, the request is for that port.
    pair.control.push_acked("server", &push(vec![9090])).await;
    for host in [
        format!("{}:9090", pair.host),
        format!("{}:1", pair.host),
        pair.host.clone(),
    ] {
        assert_eq!(with_host(host.clone()).await.status, 403, "{host}");
    }
    // Two ports: each is judged as itself; a port the workload does not serve is refused.
    pair.control
        .push_acked("server", &push(vec![8080, 9090]))
        .await;
    assert_eq!(with_host(format!("{}:9090", pair.host)).await.status, 403);
    assert_eq!(with_host(format!("{}:8080", pair.host)).await.status, 200);
    let bogus = with_host(format!("{}:1", pair.host)).await;
    assert_eq!(bogus.status, 400, "{}", bogus.body);
    assert_eq!(app.count(), 1);
    // The port the calling proxy called decides (as a connection's destination port does
    // for Envoy): a client whose cluster is port 9090 is judged there, whatever its
    // authority says, and one whose authority names no port is not refused.
    let to = |port: u32| {
        let c = cluster(&pair.host, port, vec![endpoint(&pair.server)]);
        Config::sidecar(&pair.client)
            .route(&pair.host, route_to(&c.name))
            .cluster(c)
            .build()
    };
    pair.control.push_acked("client", &to(9090)).await;
    for host in [pair.host.clone(), format!("{}:8080", pair.host)] {
        assert_eq!(with_host(host.clone()).await.status, 403, "{host}");
    }
    pair.control.push_acked("client", &to(8080)).await;
    assert_eq!(with_host(pair.host.clone()).await.status, 200);
}
