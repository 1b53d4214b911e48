//! Which AuthorizationPolicies reach which proxy (Istio's scoping), in the form the proxy
//! evaluates, and what of them is reported as not enforced.

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
kind: AuthorizationPolicy
metadata: {name: mesh-deny-debug, namespace: istio-system}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: [/debug*]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ingress-only-get, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  rules: [{to: [{operation: {methods: [GET]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-nothing, namespace: game}
spec: {}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: player-from-matchmaking
  namespace: game
  annotations: {istio.io/dry-run: "true"}
spec:
  selector: {matchLabels: {app: player}}
  rules:
  - from:
    - source: {principals: [cluster.local/ns/game/sa/matchmaking]}
    - source: {serviceAccounts: [matchmaking, other/bot]}
    when:
    - {key: "request.headers[X-Tier]", values: [gold]}
    - {key: "request.auth.claims[groups][admin]", values: ["true"]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: only-v2, namespace: game}
spec:
  selector: {matchLabels: {version: v2}}
  rules: [{}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: on-a-gateway-api-gateway, namespace: game}
spec:
  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: web}]
  action: DENY
  rules: [{}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext, namespace: game}
spec:
  action: CUSTOM
  provider: {name: my-authz}
  rules: [{to: [{operation: {paths: [/admin]}}]}]
"#;

fn config(role: Role, workload: &str, namespace: &str) -> ProxyConfig {
    let loaded = weft_api::load_str(MESH, "mesh.yaml");
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let errors = weft_api::validate_all(&loaded.resources);
    assert!(errors.is_empty(), "{errors:?}");
    let reg = Registry::build(&loaded.resources, &[]);
    compile(
        &loaded.resources,
        &reg,
        "cluster.local",
        &ProxyRef {
            role,
            workload: workload.into(),
            namespace: namespace.into(),
        },
    )
    .expect("compiles")
}

fn names(cfg: &ProxyConfig) -> Vec<&str> {
    cfg.authz.policies.iter().map(|p| p.name.as_str()).collect()
}

#[test]
fn policies_apply_by_root_namespace_namespace_and_selector() {
    let player = config(Role::Sidecar, "player-v1", "game");
    assert_eq!(
        names(&player),
        [
            "istio-system.mesh-deny-debug",
            "game.allow-nothing",
            "game.player-from-matchmaking"
        ]
    );
    // Another namespace gets only the mesh-wide policy.
    assert_eq!(
        names(&config(Role::Sidecar, "shop-v1", "shop")),
        ["istio-system.mesh-deny-debug"]
    );
    // The gateway: mesh-wide, and the root-namespace policy that selects it.
    assert_eq!(
        names(&config(Role::Gateway, "gw", "istio-system")),
        [
            "istio-system.mesh-deny-debug",
            "istio-system.ingress-only-get"
        ]
    );
}

#[test]
fn rules_become_uniform_fields() {
    let player = config(Role::Sidecar, "player-v1", "game");
    let p = &player.authz.policies;
    assert_eq!(p[0].action, AuthzAction::Deny);
    assert_eq!(
        p[0].rules[0].to[0],
        [AuthzField {
            attr: AuthzAttr::Path,
            values: vec!["/debug*".into()],
            not_values: vec![],
        }]
    );
    // `spec: {}`: an ALLOW policy without rules, which matches nothing.
    assert_eq!(p[1].action, AuthzAction::Allow);
    assert!(p[1].rules.is_empty());
    let dry = &p[2];
    assert!(dry.dry_run);
    let rule = &dry.rules[0];
    assert_eq!(rule.from.len(), 2);
    assert_eq!(rule.from[0][0].attr, AuthzAttr::Principal);
    // Bare service accounts are in the policy's namespace.
    assert_eq!(
        rule.from[1][0].values,
        ["game/matchmaking".to_string(), "other/bot".to_string()]
    );
    assert_eq!(rule.when[0].attr, AuthzAttr::Header("x-tier".into()));
    assert_eq!(
        rule.when[1].attr,
        AuthzAttr::AuthClaim(vec!["groups".into(), "admin".into()])
    );
}

#[test]
fn what_is_not_built_is_reported_by_name() {
    let player = config(Role::Sidecar, "player-v1", "game");
    let reported: Vec<(&str, &str)> = player
        .not_enforced
        .iter()
        .filter(|n| n.resource.starts_with("AuthorizationPolicy/"))
        .map(|n| (n.resource.as_str(), n.what.as_str()))
        .collect();
    let has = |resource: &str, what: &str| {
        reported
            .iter()
            .any(|(r, w)| *r == resource && w.starts_with(what))
    };
    assert!(
        has("AuthorizationPolicy/game/ext", "action CUSTOM"),
        "{reported:#?}"
    );
    assert!(
        has(
            "AuthorizationPolicy/game/on-a-gateway-api-gateway",
            "targetRef"
        ),
        "{reported:#?}"
    );
    assert!(
        has(
            "AuthorizationPolicy/game/player-from-matchmaking",
            "rules[0] when[1] request.auth.claims[groups][admin] (JWT"
        ),
        "{reported:#?}"
    );
    // Enforced policies are not reported.
    assert!(!reported
        .iter()
        .any(|(r, _)| *r == "AuthorizationPolicy/game/allow-nothing"));
    // The CUSTOM and targetRef policies are not applied at all.
    assert!(!names(&player)
        .iter()
        .any(|n| n.ends_with(".ext") || n.contains("gateway-api")));
}
