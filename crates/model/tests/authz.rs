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

/// Loads `text` (which must be valid) and compiles the proxy of `workload`.
fn compile_in(
    text: &str,
    trust_domain: &str,
    role: Role,
    workload: &str,
    namespace: &str,
) -> ProxyConfig {
    let loaded = weft_api::load_str(text, "mesh.yaml");
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let errors = weft_api::validate_all(&loaded.resources);
    assert!(errors.is_empty(), "{errors:?}");
    let reg = Registry::build(&loaded.resources, &[]);
    compile(
        &loaded.resources,
        &reg,
        trust_domain,
        &ProxyRef {
            role,
            workload: workload.into(),
            namespace: namespace.into(),
        },
    )
    .expect("compiles")
}

fn config(role: Role, workload: &str, namespace: &str) -> ProxyConfig {
    compile_in(MESH, "cluster.local", role, workload, namespace)
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
            "game.player-from-matchmaking",
            // No MeshConfig declares its provider: it denies what it matches, as Istio's
            // bad CUSTOM actions do.
            "game.ext-deny-due-to-bad-CUSTOM-action"
        ]
    );
    let bad = player.authz.policies.last().unwrap();
    assert_eq!(bad.action, AuthzAction::Deny);
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
    // JWT attributes (request.auth.*, requestPrincipals) are enforced now.
    assert!(
        !reported
            .iter()
            .any(|(r, _)| *r == "AuthorizationPolicy/game/player-from-matchmaking"),
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

const MESH_CONFIG: &str = r#"
---
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |-
    rootNamespace: game
    enableTracing: true
    pathNormalization:
      normalization: MERGE_SLASHES
    defaultConfig:
      gatewayTopology: {numTrustedProxies: 2}
      holdApplicationUntilProxyStarts: true
    extensionProviders:
    - name: my-authz
      envoyExtAuthzHttp: {service: authz.game.svc.cluster.local, port: 9000}
    - name: otel
      opentelemetry: {service: otel.svc, port: 4317}
"#;

fn with_mesh_config(role: Role, workload: &str, namespace: &str) -> ProxyConfig {
    compile_in(
        &format!("{MESH}{MESH_CONFIG}"),
        "cluster.local",
        role,
        workload,
        namespace,
    )
}

#[test]
fn mesh_config_moves_the_root_namespace_and_sets_what_proxies_apply() {
    // With rootNamespace `game`, game's policies apply mesh-wide and istio-system's are an
    // ordinary namespace's.
    let shop = with_mesh_config(Role::Sidecar, "shop-v1", "shop");
    assert_eq!(names(&shop), ["game.allow-nothing", "game.ext"]);
    // The CUSTOM policy asks the declared HTTP authorizer, whose cluster the proxy gets.
    let ext = &shop.authz.policies[1];
    assert_eq!(
        (ext.action, ext.provider.as_deref()),
        (AuthzAction::Custom, Some("my-authz"))
    );
    let p = &shop.authz.providers[0];
    assert_eq!(p.cluster, "outbound|9000||authz.game.svc.cluster.local");
    assert_eq!(
        (p.timeout_ms, p.status_on_error, p.fail_open),
        (600_000, 403, false)
    );
    assert!(
        shop.clusters.contains_key(&p.cluster),
        "{:?}",
        shop.clusters.keys()
    );
    let gw = with_mesh_config(Role::Gateway, "gw", "istio-system");
    assert_eq!(
        names(&gw),
        [
            "istio-system.mesh-deny-debug",
            "istio-system.ingress-only-get",
            "game.allow-nothing",
            "game.ext"
        ]
    );
    assert_eq!(
        gw.mesh,
        mesh::MeshOptions {
            path_normalization: mesh::PathNormalization::MergeSlashes,
            num_trusted_proxies: 2,
        }
    );
    let reported: Vec<&str> = shop
        .not_enforced
        .iter()
        .filter(|n| n.resource == "MeshConfig/istio-system/istio")
        .map(|n| n.what.as_str())
        .collect();
    assert_eq!(
        reported,
        [
            "MeshConfig enableTracing (the legacy Zipkin tracer of defaultConfig.tracing is not built: name an opentelemetry or zipkin extension provider in Telemetry tracing or defaultProviders.tracing)",
            "MeshConfig defaultConfig.holdApplicationUntilProxyStarts",
        ]
    );
}

#[test]
fn a_broken_mesh_config_is_refused_where_it_is_written() {
    let bad = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\ndata:\n  mesh: |-\n    rootNamespace: game\n    pathNormalization: {normalization: SOMETIMES}\n";
    let loaded = weft_api::load_str(bad, "istio.yaml");
    let text: Vec<String> = loaded.errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(text.len(), 1, "{text:?}");
    assert!(text[0].starts_with("istio.yaml:"), "{text:?}");
    assert!(text[0].contains("SOMETIMES"), "{text:?}");
    let provider = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\ndata:\n  mesh: |-\n    extensionProviders:\n    - name: a\n      envoyExtAuthzHttp: {service: '', port: 0, pathPrefix: check}\n";
    let loaded = weft_api::load_str(provider, "istio.yaml");
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let errors: Vec<String> = weft_api::validate_all(&loaded.resources)
        .iter()
        .map(|e| e.to_string())
        .collect();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(
        errors.iter().any(|e| e.contains("service is required")),
        "{errors:?}"
    );
    // Other ConfigMaps are not MeshConfig.
    let other = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app-settings, namespace: game}\ndata: {mesh: 'not yaml: ['}\n";
    let loaded = weft_api::load_str(other, "cm.yaml");
    assert!(loaded.errors.is_empty() && loaded.resources.is_empty());
}

#[test]
fn principals_written_for_cluster_local_also_name_the_mesh_trust_domain() {
    let cfg = compile_in(MESH, "game.example", Role::Sidecar, "player-v1", "game");
    let dry = cfg
        .authz
        .policies
        .iter()
        .find(|p| p.name == "game.player-from-matchmaking")
        .unwrap();
    assert_eq!(
        dry.rules[0].from[0][0].values,
        [
            "cluster.local/ns/game/sa/matchmaking".to_string(),
            "game.example/ns/game/sa/matchmaking".to_string()
        ]
    );
}
