//! Reference checks: gateways, destination hosts and subsets, DestinationRule hosts and
//! subsets, Gateway selectors — each with a config that triggers it and one that does not.

mod common;
use common::*;

#[test]
fn base_fixture_and_necpgame_example_are_clean() {
    assert_eq!(analyze(BASE), vec![]);
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/necpgame");
    let loaded = weft_api::load_path(std::path::Path::new(dir));
    assert!(loaded.resources.len() > 10);
    let findings = weft_analyze::findings_for(&loaded);
    assert!(
        findings
            .iter()
            .all(|f| f.code == weft_analyze::NOT_ENFORCED
                && f.severity == weft_analyze::Severity::Info),
        "only what is not enforced yet: {findings:#?}"
    );
}

#[test]
fn wa0101_unknown_gateway() {
    let yaml = base_replacing("gateways: [gw]", "gateways: [gw-1]");
    let f = only(&analyze(&yaml), "WA0101");
    assert_eq!(f.severity, weft_analyze::Severity::Error);
    assert_eq!(f.resource.as_deref(), Some("VirtualService/shop/front"));
    assert!(
        f.message.contains("`gw-1` (shop/gw-1) does not exist"),
        "{f:?}"
    );
    assert!(f.suggestion.unwrap().contains("did you mean `gw`?"));
    assert_eq!((f.line, f.column), line_col(&yaml, "gw-1"));

    // Qualified references, `mesh` and match-level gateways that exist are fine.
    let ok = base_replacing("gateways: [gw]", "gateways: [shop/gw, mesh]");
    assert_eq!(analyze(&ok), vec![]);
    let bad_match = base_replacing(
        "- uri: {prefix: /reviews}",
        "- uri: {prefix: /reviews}\n      gateways: [other/gw]",
    );
    let f = only(&analyze(&bad_match), "WA0101");
    assert!(f.message.contains("other/gw"), "{f:?}");
}

#[test]
fn wa0102_unknown_destination_host() {
    let yaml = base_replacing("{host: ratings}", "{host: ratingz}");
    let f = only(&analyze(&yaml), "WA0102");
    assert!(
        f.message.contains("ratingz.shop.svc.cluster.local"),
        "{f:?}"
    );
    assert_eq!(f.suggestion.as_deref(), Some("did you mean `ratings`?"));
    assert_eq!((f.line, f.column), line_col(&yaml, "ratingz"));

    // An external host with a ServiceEntry (and a wildcard one) resolves.
    let external = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: ext, namespace: shop}\nspec:\n  hosts: ['*.example.org']\n  ports: [{number: 443, name: tls, protocol: TLS}]\n";
    let yaml = format!(
        "{}---\n{external}",
        base_replacing("{host: ratings}", "{host: api.example.org}")
    );
    assert_eq!(analyze(&yaml), vec![]);

    // A ServiceEntry not exported to the VirtualService's namespace does not count.
    let private = base_replacing(
        "hosts: [ratings.shop.svc.cluster.local]",
        "hosts: [ratings.shop.svc.cluster.local]\n  exportTo: [other]",
    );
    let f = only(&analyze(&private), "WA0102");
    assert!(
        f.message.contains("not exported to namespace shop"),
        "{f:?}"
    );
}

#[test]
fn wa0103_undefined_subset() {
    let yaml = base_replacing("subset: v2}", "subset: v3}");
    let f = only(&analyze(&yaml), "WA0103");
    assert!(f.message.contains("subset `v3` is not defined"), "{f:?}");
    assert!(f.suggestion.unwrap().contains("`v1`, `v2`"));
    assert_eq!((f.line, f.column), line_col(&yaml, "v3}"));

    // A subset on a host without any DestinationRule.
    let yaml = base_replacing("{host: ratings}", "{host: ratings, subset: v1}");
    let f = only(&analyze(&yaml), "WA0103");
    assert!(f.message.contains("no DestinationRule"), "{f:?}");

    // Defined subsets (base) are fine.
    assert!(with_code(&analyze(BASE), "WA0103").is_empty());
}

#[test]
fn wa0104_subset_selects_no_endpoint() {
    let yaml = base_replacing("labels: {version: v2}", "labels: {version: v3}");
    let f = only(&analyze(&yaml), "WA0104");
    assert_eq!(f.severity, weft_analyze::Severity::Warning);
    assert!(
        f.message
            .contains("subset `v2` (version=v3) selects no endpoint"),
        "{f:?}"
    );
    assert!(f.suggestion.unwrap().contains("version=v1"));

    // Inline endpoints count as endpoints.
    let inline = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: db, namespace: shop}\nspec:\n  hosts: [db.shop.svc.cluster.local]\n  resolution: STATIC\n  ports: [{number: 5432, name: tcp, protocol: TCP}]\n  endpoints: [{address: 10.0.0.1, labels: {role: primary}}]\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: db, namespace: shop}\nspec:\n  host: db\n  subsets: [{name: primary, labels: {role: primary}}]\n";
    assert_eq!(analyze_with(inline), vec![]);
    let f = only(
        &analyze_with(&inline.replace(
            "name: primary, labels: {role: primary}",
            "name: primary, labels: {role: replica}",
        )),
        "WA0104",
    );
    assert!(f.message.contains("`primary`"), "{f:?}");
}

#[test]
fn wa0114_destination_rule_for_unknown_host() {
    let yaml = base_replacing("  host: reviews\n", "  host: reveiws\n");
    let findings = analyze(&yaml);
    // The rule applies to nothing, and the route's subsets are now undefined.
    assert_eq!(with_code(&findings, "WA0114").len(), 1, "{findings:#?}");
    assert_eq!(with_code(&findings, "WA0103").len(), 2, "{findings:#?}");
    assert!(with_code(&analyze(BASE), "WA0114").is_empty());
}

#[test]
fn wa0106_gateway_selector_matches_no_workload() {
    let yaml = base_replacing(
        "selector: {istio: ingressgateway}",
        "selector: {istio: ingress-gateway}",
    );
    let f = only(&analyze(&yaml), "WA0106");
    assert!(
        f.message
            .contains("{istio=ingress-gateway} matches no workload"),
        "{f:?}"
    );
    assert!(f.suggestion.unwrap().contains("istio=ingressgateway"));
    assert_eq!(
        (f.line, f.column),
        line_col(&yaml, "{istio: ingress-gateway}")
    );
    // Gateways select workloads in every namespace (the base's is in istio-system).
    assert!(with_code(&analyze(BASE), "WA0106").is_empty());
}

#[test]
fn wa0118_unknown_or_hosted_delegate() {
    let root = "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: root, namespace: shop}\nspec:\n  hosts: [reviews]\n  http:\n  - match: [{uri: {prefix: /v2}}]\n    delegate: {name: reviews-v2}\n";
    let f = only(&analyze_with(root), "WA0118");
    assert_eq!(f.severity, weft_analyze::Severity::Error);
    assert_eq!(f.resource.as_deref(), Some("VirtualService/shop/root"));
    assert!(
        f.message.contains(
            "delegate VirtualService `shop/reviews-v2` does not exist: this route is dropped"
        ),
        "{f:?}"
    );
    // A delegate without hosts is fine; one with hosts cannot be a delegate.
    let delegate = "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews-v2, namespace: shop}\nspec:\n  http:\n  - route: [{destination: {host: reviews}}]\n";
    assert!(
        with_code(&analyze_with(&format!("{root}{delegate}")), "WA0118").is_empty(),
        "an existing delegate"
    );
    let hosted = delegate.replace("spec:\n", "spec:\n  hosts: [other]\n");
    let f = only(&analyze_with(&format!("{root}{hosted}")), "WA0118");
    assert!(f.message.contains("has hosts"), "{f:?}");
}
