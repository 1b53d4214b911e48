//! Conflict and policy checks: VirtualService and ServiceEntry host conflicts, mTLS
//! conflicts, AuthorizationPolicy references, dead destinations, and loader/validation
//! errors as findings — each with a config that triggers it and one that does not.

mod common;
use common::*;
use weft_analyze::Severity;

const SECOND_VS: &str = "\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: front-2, namespace: shop}
spec:
  hosts: [shop.example.com]
  gateways: [gw]
  http:
  - route:
    - destination: {host: reviews}
";

#[test]
fn wa0105_conflicting_virtual_services() {
    let f = only(&analyze_with(SECOND_VS), "WA0105");
    assert_eq!(
        f.severity,
        Severity::Warning,
        "merged on a gateway: a warning"
    );
    assert_eq!(f.resource.as_deref(), Some("VirtualService/shop/front-2"));
    assert!(f.message.contains("VirtualService shop/front"), "{f:?}");

    // On the mesh gateway only one VirtualService per host is used: an error.
    let mesh = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r1, namespace: shop}\nspec:\n  hosts: [ratings]\n  http: [{route: [{destination: {host: ratings}}]}]\n";
    let findings = analyze_with(&format!(
        "{mesh}---\n{}",
        mesh.replace("r1", "r2")
            .replace("[ratings]", "[ratings.shop.svc.cluster.local]")
    ));
    let f = only(&findings, "WA0105");
    assert_eq!(f.severity, Severity::Error);

    // Other gateway, or exports to disjoint namespaces: no conflict.
    assert_eq!(analyze_with(&SECOND_VS.replace("[gw]", "[mesh]")), vec![]);
    let a = mesh.replace("http:", "exportTo: [.]\n  http:");
    let b = a
        .replace("r1", "r2")
        .replace("namespace: shop", "namespace: web")
        .replace("[ratings]", "[ratings.shop.svc.cluster.local]");
    let findings = analyze_with(&format!("{a}---\n{b}"));
    assert!(with_code(&findings, "WA0105").is_empty(), "{findings:#?}");
}

#[test]
fn wa0107_mtls_conflict() {
    let pa = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: shop}\nspec:\n  mtls: {mode: STRICT}\n";
    let dr = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: ratings, namespace: shop}\nspec:\n  host: ratings\n  trafficPolicy:\n    tls: {mode: DISABLE}\n";
    let yaml = format!("{BASE}---\n{pa}---\n{dr}");
    let f = only(&analyze(&yaml), "WA0107");
    assert_eq!(f.resource.as_deref(), Some("DestinationRule/shop/ratings"));
    assert!(
        f.message
            .contains("requires mTLS (STRICT, from PeerAuthentication shop/default"),
        "{f:?}"
    );
    assert_eq!((f.line, f.column), line_col(&yaml, "DISABLE}"));

    // Mesh-wide STRICT (root namespace) applies too.
    let mesh_pa = pa.replace("namespace: shop", "namespace: istio-system");
    assert_eq!(
        with_code(&analyze_with(&format!("{mesh_pa}---\n{dr}")), "WA0107").len(),
        1
    );
    // PERMISSIVE: no conflict; a workload-level PERMISSIVE overrides the namespace's STRICT.
    assert_eq!(
        analyze_with(&format!("{}---\n{dr}", pa.replace("STRICT", "PERMISSIVE"))),
        vec![]
    );
    let wl = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: ratings, namespace: shop}\nspec:\n  selector: {matchLabels: {app: ratings}}\n  mtls: {mode: PERMISSIVE}\n";
    assert_eq!(analyze_with(&format!("{pa}---\n{wl}---\n{dr}")), vec![]);
    // ISTIO_MUTUAL to a plaintext-only workload is the mirror conflict.
    let f = only(
        &analyze_with(&format!(
            "{}---\n{}",
            pa.replace("STRICT", "DISABLE"),
            dr.replace("DISABLE", "ISTIO_MUTUAL")
        )),
        "WA0107",
    );
    assert!(f.message.contains("accepts only plaintext"), "{f:?}");
}

#[test]
fn wa0108_wa0109_authorization_references() {
    let ap = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: reviews, namespace: shop}\nspec:\n  selector: {matchLabels: {app: reviews}}\n  rules:\n  - from:\n    - source:\n        principals: [cluster.local/ns/shop/sa/ratings, cluster.local/ns/istio-system/sa/ingress]\n    - source:\n        namespaces: [shop, 'istio-*']\n";
    assert_eq!(analyze_with(ap), vec![]);

    let bad = ap
        .replace("sa/ratings", "sa/ratnigs")
        .replace("[shop, 'istio-*']", "[shpo, 'prod-*']");
    let findings = analyze_with(&bad);
    let ns = with_code(&findings, "WA0108");
    assert_eq!(ns.len(), 2, "{findings:#?}");
    assert_eq!(ns[0].suggestion.as_deref(), Some("did you mean `shop`?"));
    let p = with_code(&findings, "WA0109");
    assert_eq!(p.len(), 1, "{findings:#?}");
    assert!(
        p[0].message
            .contains("no workload in `shop` has service account `ratnigs`"),
        "{p:?}"
    );
    assert!(p[0]
        .suggestion
        .as_deref()
        .unwrap()
        .contains("did you mean service account `ratings`"));
    let full = format!("{BASE}---\n{bad}");
    assert_eq!(
        (p[0].line, p[0].column),
        line_col(&full, "cluster.local/ns/shop/sa/ratnigs")
    );

    // serviceAccounts (`ns/sa` or `sa` in the policy's namespace) and `when` keys too.
    let sa = ap.replace(
        "        namespaces: [shop, 'istio-*']\n",
        "        serviceAccounts: [reviews, istio-system/nobody]\n    when:\n    - key: source.namespace\n      values: [nowhere]\n",
    );
    let findings = analyze_with(&sa);
    assert_eq!(with_code(&findings, "WA0109").len(), 1, "{findings:#?}");
    assert_eq!(with_code(&findings, "WA0108").len(), 1, "{findings:#?}");
}

#[test]
fn wa0110_service_entry_host_collision() {
    let se = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: ext-a, namespace: shop}\nspec:\n  hosts: [api.example.org]\n  ports: [{number: 443, name: tls, protocol: TLS}]\n";
    let other = se
        .replace("ext-a", "ext-b")
        .replace("namespace: shop", "namespace: web");
    let f = only(&analyze_with(&format!("{se}---\n{other}")), "WA0110");
    assert_eq!(f.resource.as_deref(), Some("ServiceEntry/web/ext-b"));
    assert!(f.message.contains("ServiceEntry shop/ext-a"), "{f:?}");
    // Each private to its own namespace: no collision.
    let private = |s: &str| s.replace("  ports:", "  exportTo: [.]\n  ports:");
    assert_eq!(
        analyze_with(&format!("{}---\n{}", private(se), private(&other))),
        vec![]
    );
}

#[test]
fn wa0111_dead_destination() {
    let yaml = base_replacing("weight: 10", "weight: 0");
    let f = only(&analyze(&yaml), "WA0111");
    assert!(
        f.message
            .contains("`reviews` subset `v2` has weight 0 while the others sum to 90"),
        "{f:?}"
    );
    assert_eq!((f.line, f.column), line_col(&yaml, "0\n  - route"));
    // A missing weight next to a weighted destination is 0 too.
    let yaml = base_replacing("\n      weight: 10", "");
    assert!(only(&analyze(&yaml), "WA0111")
        .message
        .contains("has no weight"));
    // A single destination gets everything regardless of its weight.
    assert!(with_code(&analyze(BASE), "WA0111").is_empty());
}

#[test]
fn wa0001_wa0002_load_and_validation_errors_are_findings() {
    let yaml = base_replacing("  gateways: [gw]\n", "  gateways: [gw]\n  bogus: 1\n");
    let loaded = weft_api::load_str(&yaml, "broken.yaml");
    let findings = weft_analyze::findings_for(&loaded);
    let f = with_code(&findings, "WA0001");
    assert_eq!(f.len(), 1, "{findings:#?}");
    assert_eq!(
        (f[0].file.as_str(), f[0].line, f[0].column),
        ("broken.yaml", line_col(&yaml, "bogus").0, 3)
    );
    assert!(f[0].message.contains("unknown field `bogus`"));

    let yaml = base_replacing("weight: 10", "weight: -10");
    let findings = analyze(&yaml);
    let v = with_code(&findings, "WA0002");
    assert!(!v.is_empty(), "{findings:#?}");
    assert_eq!(v[0].severity, Severity::Error);
    assert_eq!(v[0].line, line_col(&yaml, "-10").0, "{v:?}");
}

#[test]
fn wa0200_says_what_is_loaded_but_not_enforced() {
    let ap = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: ext, namespace: shop}\nspec: {action: CUSTOM, provider: {name: x}, rules: [{}]}\n";
    let all = analyze_all(&format!("{BASE}---\n{ap}"));
    let infos = with_code(&all, "WA0200");
    let f = infos
        .iter()
        .find(|f| f.resource.as_deref() == Some("AuthorizationPolicy/shop/ext"))
        .unwrap_or_else(|| panic!("{all:#?}"));
    assert_eq!(f.severity, Severity::Info);
    assert!(f.message.contains("not enforced yet"), "{f:?}");
    assert!(f.line > 1, "points at the resource: {f:?}");
}

#[test]
fn wa0003_wa0116_what_istio_accepts_gets_a_warning_not_an_error() {
    let dr = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: old, namespace: shop}\nspec:\n  host: reviews\n  trafficPolicy:\n    outlierDetection: {consecutiveErrors: 5}\n";
    let f = only(&analyze_with(dr), "WA0003");
    assert_eq!(f.severity, Severity::Warning);
    assert!(
        f.message.contains("consecutiveErrors is deprecated"),
        "{f:?}"
    );
    assert_eq!(weft_analyze::istio_code(f.code), Some("IST0002"));

    // Istio only checks bind when a port is set: weft loads it and warns.
    let sc = "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: s, namespace: shop}\nspec:\n  egress:\n  - bind: 127.0.0.1\n    hosts: [\"./*\"]\n";
    let f = only(&analyze_with(sc), "WA0116");
    assert_eq!(f.severity, Severity::Warning);
    assert!(
        f.message.contains("bind without a port is ignored"),
        "{f:?}"
    );
}
