//! RequestAuthentication (JWT) in running proxies: a sidecar's inbound side refuses invalid
//! and expired tokens with Envoy's 401, lets a request without a token through to
//! authorization (which needs a request principal here: 403), forwards a valid one to the
//! app only when told to, copies claims into headers, finds tokens where the rule says,
//! picks keys by `kid`; a gateway routes on the validated token's claims.

mod support;

use http::Request;
use http_body_util::Full;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;
use std::time::{SystemTime, UNIX_EPOCH};
use support::*;
use weft_model::{
    Authn, AuthzAction, AuthzAttr, AuthzField, AuthzPolicy, AuthzRule, ClaimMatcher, JwtProvider,
    RouteMatch, StringMatcher, TokenLocation,
};

const K1: &str = include_str!("testdata/jwt/rsa-k1.pem");
const K2: &str = include_str!("testdata/jwt/rsa-k2.pem");
const OTHER: &str = include_str!("testdata/jwt/rsa-other.pem");
const JWKS: &str = include_str!("testdata/jwt/jwks.json");
const ISS: &str = "testing@secure.istio.io";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn sign(pem: &str, kid: &str, claims: serde_json::Value) -> String {
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some(kid.into());
    encode(
        &h,
        &claims,
        &EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn token(sub: &str, groups: &[&str]) -> String {
    sign(
        K1,
        "k1",
        json!({"iss": ISS, "sub": sub, "exp": now() + 600, "groups": groups}),
    )
}

fn rule() -> JwtProvider {
    JwtProvider {
        policy: "test.jwt".into(),
        issuer: ISS.into(),
        jwks: Some(JWKS.into()),
        locations: vec![
            TokenLocation::Header {
                name: "authorization".into(),
                prefix: "Bearer ".into(),
            },
            TokenLocation::Param("access_token".into()),
        ],
        space_delimited_claims: vec!["permission".into(), "scope".into()],
        ..Default::default()
    }
}

fn require(attr: AuthzAttr, values: &[&str]) -> Vec<AuthzPolicy> {
    vec![AuthzPolicy {
        name: "test.require-jwt".into(),
        action: AuthzAction::Allow,
        dry_run: false,
        rules: vec![AuthzRule {
            from: vec![vec![AuthzField {
                attr,
                values: values.iter().map(|s| s.to_string()).collect(),
                not_values: vec![],
            }]],
            ..Default::default()
        }],
        provider: None,
    }]
}

/// Pushes JWT rules (and policies) to the pair's server sidecar.
async fn protect(pair: &Pair, rules: Vec<JwtProvider>, policies: Vec<AuthzPolicy>) {
    let mut cfg = Config::sidecar(&pair.server).build();
    cfg.authn = Authn { rules };
    cfg.authz.policies = policies;
    pair.control.push_acked("server", &cfg).await;
}

async fn with_headers(pair: &Pair, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut b = Request::get(path).header("host", &pair.host);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(pair.client.outbound(), b.body(Full::default()).unwrap()).await
}

async fn bearer(pair: &Pair, path: &str, token: &str) -> Resp {
    with_headers(pair, path, &[("authorization", &format!("Bearer {token}"))]).await
}

#[tokio::test]
async fn invalid_expired_missing_and_valid_tokens_on_a_sidecar() {
    let app = App::echo("server-app").await;
    let pair = Pair::start(&app, |r| r).await;
    protect(
        &pair,
        vec![rule()],
        require(AuthzAttr::RequestPrincipal, &["*"]),
    )
    .await;

    let bad = bearer(&pair, "/headers", "deadbeef").await;
    assert_eq!(bad.status, 401, "{}", bad.body);
    assert_eq!(
        bad.body,
        "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"
    );
    let forged = bearer(&pair, "/headers", &sign(OTHER, "k1", json!({"iss": ISS}))).await;
    assert_eq!(
        (forged.status, forged.body.as_str()),
        (401, "Jwt verification fails")
    );
    assert_eq!(
        forged.header("www-authenticate"),
        Some(&*format!(
            "Bearer realm=\"https://{}/headers\", error=\"invalid_token\"",
            pair.host
        )),
        "Envoy's challenge names the request's URL"
    );
    let expired = sign(
        K1,
        "k1",
        json!({"iss": ISS, "sub": "a", "exp": now() - 3600}),
    );
    let expired = bearer(&pair, "/headers", &expired).await;
    assert_eq!(
        (expired.status, expired.body.as_str()),
        (401, "Jwt is expired")
    );
    let unknown = sign(K1, "k1", json!({"iss": "someone-else", "sub": "a"}));
    let unknown = bearer(&pair, "/headers", &unknown).await;
    assert_eq!(
        (unknown.status, unknown.body.as_str()),
        (401, "Jwt issuer is not configured")
    );

    // No token: authentication passes, the ALLOW policy needs a request principal.
    let missing = with_headers(&pair, "/headers", &[]).await;
    assert_eq!(
        (missing.status, missing.body.as_str()),
        (403, "RBAC: access denied")
    );
    assert_eq!(app.count(), 0, "nothing reached the app");

    let ok = bearer(&pair, "/headers", &token("alice", &[])).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(
        app.last().header("authorization"),
        None,
        "the token is not forwarded by default"
    );
    // From the query parameter: the parameter is taken off too.
    let q = with_headers(
        &pair,
        &format!("/q?access_token={}&x=1", token("a", &[])),
        &[],
    )
    .await;
    assert_eq!(q.status, 200, "{}", q.body);
    assert_eq!(app.last().path, "/q?x=1");

    protect(
        &pair,
        vec![JwtProvider {
            forward_original_token: true,
            ..rule()
        }],
        require(AuthzAttr::RequestPrincipal, &[&format!("{ISS}/alice")]),
    )
    .await;
    let t = token("alice", &[]);
    assert_eq!(bearer(&pair, "/headers", &t).await.status, 200);
    assert_eq!(
        app.last().header("authorization"),
        Some(&*format!("Bearer {t}")),
        "forwardOriginalToken keeps it"
    );
    assert_eq!(
        bearer(&pair, "/headers", &token("bob", &[])).await.status,
        403,
        "requestPrincipals names iss/sub"
    );
}

#[tokio::test]
async fn claims_decide_outputs_reach_the_app_and_tokens_come_from_custom_headers() {
    let app = App::echo("server-app").await;
    let pair = Pair::start(&app, |r| r).await;
    let custom = JwtProvider {
        locations: vec![TokenLocation::Header {
            name: "x-game-token".into(),
            prefix: "Token ".into(),
        }],
        output_claim_to_headers: vec![("x-jwt-sub".into(), "sub".into())],
        output_payload_to_header: Some("x-jwt-payload".into()),
        ..rule()
    };
    protect(
        &pair,
        vec![custom],
        require(AuthzAttr::AuthClaim(vec!["groups".into()]), &["admin"]),
    )
    .await;
    let admin = token("alice", &["dev", "admin"]);
    let ok = with_headers(
        &pair,
        "/admin",
        &[
            ("x-game-token", &format!("Token {admin}")),
            ("x-jwt-sub", "forged"),
        ],
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let seen = app.last();
    assert_eq!(
        seen.header("x-jwt-sub"),
        Some("alice"),
        "the claim, not the forgery"
    );
    assert_eq!(
        seen.header("x-jwt-payload"),
        admin.split('.').nth(1),
        "the payload, base64url"
    );
    assert_eq!(seen.header("x-game-token"), None);

    let dev = token("bob", &["dev"]);
    let denied = with_headers(
        &pair,
        "/admin",
        &[("x-game-token", &format!("Token {dev}"))],
    )
    .await;
    assert_eq!(denied.status, 403, "groups must contain admin");
    // The default location is not this rule's: a token there is no token.
    let elsewhere = bearer(&pair, "/admin", &admin).await;
    assert_eq!(elsewhere.status, 403);
}

#[tokio::test]
async fn keys_are_picked_by_kid_from_a_jwks_with_several() {
    let app = App::echo("server-app").await;
    let pair = Pair::start(&app, |r| r).await;
    protect(
        &pair,
        vec![rule()],
        require(AuthzAttr::RequestPrincipal, &["*"]),
    )
    .await;
    let claims = json!({"iss": ISS, "sub": "s", "exp": now() + 600});
    for (pem, kid) in [(K1, "k1"), (K2, "k2")] {
        let r = bearer(&pair, "/", &sign(pem, kid, claims.clone())).await;
        assert_eq!(r.status, 200, "{kid}: {}", r.body);
    }
    // k2's signature under k1's kid is checked with k1 only.
    let r = bearer(&pair, "/", &sign(K2, "k1", claims.clone())).await;
    assert_eq!((r.status, r.body.as_str()), (401, "Jwt verification fails"));
    let r = bearer(&pair, "/", &sign(K2, "k9", claims)).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (401, "Jwks doesn't have key to match kid or alg from Jwt")
    );
}

#[tokio::test]
async fn a_gateway_routes_on_the_validated_tokens_claims() {
    let admin_app = App::echo("admin-app").await;
    let web_app = App::echo("web-app").await;
    let control = FakeControl::start().await;
    let admin = Proxy::sidecar("admin")
        .app(admin_app.addr)
        .start(&control)
        .await;
    let web = Proxy::sidecar("web")
        .app(web_app.addr)
        .start(&control)
        .await;
    let mut gw = Proxy::gateway("ingress").start(&control).await;
    for p in [&admin, &web] {
        control
            .push_acked(&p.workload, &Config::sidecar(p).build())
            .await;
    }
    let a = cluster(
        &service_host("admin", NAMESPACE),
        80,
        vec![endpoint(&admin)],
    );
    let w = cluster(&service_host("web", NAMESPACE), 80, vec![endpoint(&web)]);
    let mut to_admin = route_to(&a.name);
    to_admin.matches = vec![RouteMatch {
        claims: vec![ClaimMatcher {
            path: vec!["groups".into()],
            matcher: StringMatcher::Exact("admin".into()),
        }],
        ..Default::default()
    }];
    let mut cfg = Config::gateway()
        .gateway_route(80, "shop.example.com", to_admin)
        .gateway_route(80, "shop.example.com", route_to(&w.name))
        .cluster(a)
        .cluster(w)
        .build();
    cfg.authn = Authn {
        rules: vec![rule()],
    };
    control.push_acked("ingress", &cfg).await;
    let port80 = gw.listener("gateway_80").await;
    let call = |token: Option<String>| {
        let mut b = Request::get("/").header("host", "shop.example.com");
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        send(port80, b.body(Full::default()).unwrap())
    };
    let r = call(Some(token("alice", &["admin"]))).await;
    assert_eq!(r.header(APP_HEADER), Some("admin-app"), "{}", r.body);
    let r = call(Some(token("bob", &["dev"]))).await;
    assert_eq!(r.header(APP_HEADER), Some("web-app"));
    let r = call(None).await;
    assert_eq!(r.header(APP_HEADER), Some("web-app"), "no token, no claims");
    // A client cannot claim a group by sending a header of that name.
    let r = send(
        port80,
        Request::get("/")
            .header("host", "shop.example.com")
            .header("x-groups", "admin")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(r.header(APP_HEADER), Some("web-app"));
    let bad = call(Some("deadbeef".into())).await;
    assert_eq!(bad.status, 401);
    assert_eq!(
        bad.header("www-authenticate"),
        Some("Bearer realm=\"http://shop.example.com/\", error=\"invalid_token\"")
    );
}
