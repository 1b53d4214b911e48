//! Which RequestAuthentications reach which proxy (Istio's scoping), the JWT rules pushed
//! (token locations with Envoy's defaults, inline or fetched JWKS, output headers, claims
//! normalized as lists), the remote JWKS the control plane must fetch, claim-based route
//! matches, and what is reported as not enforced.

use weft_model::*;

const MESH: &str = r#"
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: player-v1, namespace: game}
spec: {address: 127.0.0.1, labels: {app: player, version: v1}, serviceAccount: player}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: shop-v1, namespace: shop}
spec: {address: 127.0.0.1, labels: {app: shop}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: gw, namespace: istio-system}
spec: {address: 127.0.0.1, labels: {istio: ingressgateway}, serviceAccount: gw}
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: ingress-jwt, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  jwtRules:
  - issuer: "testing@secure.istio.io"
    jwksUri: "http://127.0.0.1:9/jwks.json"
    forwardOriginalToken: true
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: mesh-wide, namespace: istio-system}
spec:
  jwtRules:
  - issuer: "https://accounts.example.com"
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: player-jwt, namespace: game}
spec:
  selector: {matchLabels: {app: player}}
  jwtRules:
  - issuer: "game-issuer"
    audiences: [game]
    jwks: '{"keys": []}'
    fromHeaders: [{name: X-Game-Token, prefix: "Token "}]
    fromParams: [token]
    fromCookies: [session]
    outputPayloadToHeader: X-Jwt-Payload
    outputClaimToHeaders: [{header: X-Player, claim: sub}]
    spaceDelimitedClaims: [roles]
    timeout: 2s
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: other-namespace, namespace: shop}
spec:
  jwtRules: [{issuer: shop-issuer, jwks: '{"keys": []}'}]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: on-a-gateway-api-gateway, namespace: game}
spec:
  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: web}]
  jwtRules: [{issuer: never, jwks: '{"keys": []}', presence: REQUIRED}]
"#;

fn compiled(extra: &str, role: Role, workload: &str, ns: &str, jwks: FetchedJwks) -> ProxyConfig {
    let yaml = format!("{MESH}{extra}");
    let loaded = weft_api::load_str(&yaml, "mesh.yaml");
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let errors = weft_api::validate_all(&loaded.resources);
    assert!(errors.is_empty(), "{errors:?}");
    let mut reg = Registry::build(&loaded.resources, &[]);
    reg.jwks = jwks;
    compile(
        &loaded.resources,
        &reg,
        "cluster.local",
        &ProxyRef {
            role,
            workload: workload.into(),
            namespace: ns.into(),
        },
    )
    .expect("compiles")
}

fn issuers(cfg: &ProxyConfig) -> Vec<&str> {
    cfg.authn.rules.iter().map(|r| r.issuer.as_str()).collect()
}

#[test]
fn rules_apply_by_root_namespace_namespace_and_selector_sorted_by_issuer() {
    let player = compiled("", Role::Sidecar, "player-v1", "game", FetchedJwks::new());
    assert_eq!(
        issuers(&player),
        ["game-issuer", "https://accounts.example.com"]
    );
    let shop = compiled("", Role::Sidecar, "shop-v1", "shop", FetchedJwks::new());
    assert_eq!(
        issuers(&shop),
        ["https://accounts.example.com", "shop-issuer"]
    );
    let gw = compiled("", Role::Gateway, "gw", "istio-system", FetchedJwks::new());
    assert_eq!(
        issuers(&gw),
        ["https://accounts.example.com", "testing@secure.istio.io"],
        "a root-namespace selector picks the gateway; targetRefs attach to nothing"
    );
}

#[test]
fn a_rule_is_pushed_with_its_locations_headers_and_normalized_claims() {
    let player = compiled("", Role::Sidecar, "player-v1", "game", FetchedJwks::new());
    let rule = &player.authn.rules[0];
    assert_eq!(rule.policy, "game.player-jwt");
    assert_eq!(rule.audiences, ["game"]);
    assert_eq!(rule.jwks.as_deref(), Some(r#"{"keys": []}"#));
    assert_eq!(rule.jwks_uri, None, "inline keys are not fetched");
    assert_eq!(
        rule.locations,
        [
            TokenLocation::Header {
                name: "x-game-token".into(),
                prefix: "Token ".into()
            },
            TokenLocation::Param("token".into()),
            TokenLocation::Cookie("session".into()),
        ]
    );
    assert!(!rule.forward_original_token, "Istio's default");
    assert_eq!(
        rule.output_payload_to_header.as_deref(),
        Some("x-jwt-payload")
    );
    assert_eq!(
        rule.output_claim_to_headers,
        [("x-player".to_string(), "sub".to_string())]
    );
    assert_eq!(
        rule.space_delimited_claims,
        ["permission", "roles", "scope"],
        "scope and permission always, plus the rule's"
    );
    // Envoy's default locations when none are given.
    let mesh_rule = &player.authn.rules[1];
    assert_eq!(
        mesh_rule.locations,
        [
            TokenLocation::Header {
                name: "authorization".into(),
                prefix: "Bearer ".into()
            },
            TokenLocation::Param("access_token".into()),
        ]
    );
}

#[test]
fn remote_keys_are_named_for_the_control_plane_and_pushed_once_fetched() {
    let loaded = weft_api::load_str(MESH, "mesh.yaml");
    let remote = authn::remote_jwks(&loaded.resources);
    let uri_key = JwksKey {
        issuer: "testing@secure.istio.io".into(),
        uri: Some("http://127.0.0.1:9/jwks.json".into()),
    };
    let discovery = JwksKey {
        issuer: "https://accounts.example.com".into(),
        uri: None,
    };
    assert_eq!(
        remote.keys().cloned().collect::<Vec<_>>(),
        [discovery.clone(), uri_key.clone()],
        "inline JWKS need no fetch"
    );
    assert_eq!(remote[&uri_key], authn::DEFAULT_JWKS_TIMEOUT_MS);
    assert_eq!(
        discovery.url(),
        "https://accounts.example.com/.well-known/openid-configuration"
    );

    // Not fetched yet: the rule goes out without keys (its tokens fail, as in Istio).
    let gw = compiled("", Role::Gateway, "gw", "istio-system", FetchedJwks::new());
    let rule = &gw.authn.rules[1];
    assert_eq!(rule.jwks, None);
    assert_eq!(
        rule.jwks_uri.as_deref(),
        Some("http://127.0.0.1:9/jwks.json")
    );
    assert!(rule.forward_original_token);
    // Fetched: the document is pushed inline.
    let mut fetched = FetchedJwks::new();
    fetched.insert(uri_key, r#"{"keys":[{"kty":"oct","k":"AA"}]}"#.into());
    let gw = compiled("", Role::Gateway, "gw", "istio-system", fetched);
    assert_eq!(
        gw.authn.rules[1].jwks.as_deref(),
        Some(r#"{"keys":[{"kty":"oct","k":"AA"}]}"#)
    );
}

const CLAIM_ROUTES: &str = r#"
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: by-group, namespace: istio-system}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - name: admins
    match:
    - headers:
        "@request.auth.claims.groups": {exact: admin}
        "@request.auth.claims[org][Team]": {prefix: core}
        x-tier: {exact: gold}
      withoutHeaders:
        "@request.auth.claims.banned": {exact: "true"}
    route: [{destination: {host: player.game.svc.cluster.local}}]
"#;

#[test]
fn claim_header_matches_become_claim_conditions_with_their_case() {
    let gw = compiled(
        CLAIM_ROUTES,
        Role::Gateway,
        "gw",
        "istio-system",
        FetchedJwks::new(),
    );
    let route = &gw.routes["gateway_80"].virtual_hosts[0].routes[0];
    let m = &route.matches[0];
    assert_eq!(
        m.headers,
        [HeaderMatcher {
            name: "x-tier".into(),
            matcher: StringMatcher::Exact("gold".into())
        }],
        "claim names are not headers"
    );
    assert_eq!(
        m.claims,
        [
            ClaimMatcher {
                path: vec!["groups".into()],
                matcher: StringMatcher::Exact("admin".into())
            },
            ClaimMatcher {
                path: vec!["org".into(), "Team".into()],
                matcher: StringMatcher::Prefix("core".into())
            },
        ]
    );
    assert_eq!(
        m.without_claims,
        [ClaimMatcher {
            path: vec!["banned".into()],
            matcher: StringMatcher::Exact("true".into())
        }]
    );
}

#[test]
fn claim_routes_on_the_mesh_are_refused_as_istio_does() {
    let yaml = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: mesh-claims, namespace: game}
spec:
  hosts: [player]
  http:
  - match: [{withoutHeaders: {"@request.auth.claims[group]": {exact: a}}}]
    route: [{destination: {host: player}}]
"#;
    let loaded = weft_api::load_str(yaml, "vs.yaml");
    let errors = weft_api::validate_all(&loaded.resources);
    assert!(
        errors
            .iter()
            .any(|e| e.to_string().contains("only supported on gateways")),
        "{errors:?}"
    );
}

#[test]
fn what_is_not_built_is_reported_by_name_and_the_rest_is_not() {
    let player = compiled("", Role::Sidecar, "player-v1", "game", FetchedJwks::new());
    let reported: Vec<(&str, &str)> = player
        .not_enforced
        .iter()
        .filter(|n| n.resource.starts_with("RequestAuthentication/"))
        .map(|n| (n.resource.as_str(), n.what.as_str()))
        .collect();
    assert_eq!(
        reported,
        [
            (
                "RequestAuthentication/game/on-a-gateway-api-gateway",
                "targetRef/targetRefs (policies for Kubernetes Gateway API gateways and waypoints, which weft does not build; this policy applies to no proxy)"
            ),
            (
                "RequestAuthentication/game/on-a-gateway-api-gateway",
                "jwtRules[0].presence (not built: a missing token always passes authentication)"
            ),
        ],
        "enforced RequestAuthentications are not reported"
    );
}
