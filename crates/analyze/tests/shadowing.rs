//! Shadowed routes (WA0112) and shadowed match entries (WA0113): reported only when an
//! earlier route certainly matches first.

mod common;
use common::*;
use weft_analyze::Severity;

/// A VirtualService on the mesh with the given `http:` routes (indented by two spaces).
fn vs(routes: &str) -> String {
    format!(
        "{BASE}---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: r, namespace: shop}}\nspec:\n  hosts: [reviews]\n  http:\n{routes}"
    )
}

const ROUTE: &str = "    route: [{destination: {host: reviews}}]\n";

fn route(name: &str, matches: &str) -> String {
    if matches.is_empty() {
        format!("  - name: {name}\n{ROUTE}")
    } else {
        format!("  - name: {name}\n    match:\n{matches}{ROUTE}")
    }
}

#[test]
fn catch_all_route_shadows_everything_after_it() {
    let yaml = vs(&(route("all", "") + &route("api", "    - uri: {prefix: /api}\n")));
    let f = only(&analyze(&yaml), "WA0112");
    assert_eq!(f.severity, Severity::Warning);
    assert!(
        f.message.contains("route `api` (spec.http[1]) can never match: route `all` (spec.http[0]) has no match conditions"),
        "{f:?}"
    );
    assert_eq!(f.line, line_col(&yaml, "  - name: api").0);
    // The other way round is the intended order.
    let ok = vs(&(route("api", "    - uri: {prefix: /api}\n") + &route("all", "")));
    assert_eq!(analyze(&ok), vec![]);
}

#[test]
fn shorter_prefix_shadows_longer_prefix_and_exact() {
    let yaml = vs(&(route("api", "    - uri: {prefix: /api}\n")
        + &route(
            "v1",
            "    - uri: {prefix: /api/v1}\n    - uri: {exact: /api/health}\n",
        )));
    let f = only(&analyze(&yaml), "WA0112");
    assert!(
        f.message
            .contains("route `api` (spec.http[0]) matches every request"),
        "{f:?}"
    );
    // Longer prefix first is right.
    let ok = vs(&(route("v1", "    - uri: {prefix: /api/v1}\n")
        + &route("api", "    - uri: {prefix: /api}\n")));
    assert_eq!(analyze(&ok), vec![]);
}

#[test]
fn header_conditions_subset_shadows_and_extra_conditions_do_not() {
    // Earlier: any request with x-tier present; later: x-tier=gold AND a prefix.
    let earlier = "    - headers: {x-tier: {}}\n";
    let later = "    - uri: {prefix: /a}\n      headers: {x-tier: {exact: gold}}\n";
    let f = only(
        &analyze(&vs(&(route("tier", earlier) + &route("gold", later)))),
        "WA0112",
    );
    assert!(f.message.contains("route `gold`"), "{f:?}");
    // Earlier requires a header the later route does not: the later one is reachable.
    let ok = vs(&(route("gold", later) + &route("prefix", "    - uri: {prefix: /a}\n")));
    assert_eq!(analyze(&ok), vec![]);
    // Different methods, ports or regexes are never judged equal or covering.
    let ok = vs(&(route("get", "    - method: {exact: GET}\n")
        + &route("post", "    - method: {exact: POST}\n")));
    assert_eq!(analyze(&ok), vec![]);
    let ok =
        vs(&(route("re", "    - uri: {regex: '/a.*'}\n")
            + &route("p", "    - uri: {prefix: /a/b}\n")));
    assert_eq!(analyze(&ok), vec![]);
}

#[test]
fn ignore_uri_case_and_negations_are_conservative() {
    let ci = "    - uri: {prefix: /API}\n      ignoreUriCase: true\n";
    let f = only(
        &analyze(&vs(
            &(route("ci", ci) + &route("lower", "    - uri: {prefix: /api/x}\n"))
        )),
        "WA0112",
    );
    assert!(f.message.contains("route `lower`"), "{f:?}");
    // A case-sensitive prefix does not cover a case-insensitive one.
    let ok = vs(&(route("cs", "    - uri: {prefix: /api}\n")
        + &route("ci", ci.replace("/API", "/api/x").as_str())));
    assert_eq!(analyze(&ok), vec![]);
    // An earlier withoutHeaders condition is not known to hold for the later route.
    let neg = "    - uri: {prefix: /}\n      withoutHeaders: {x-debug: {}}\n";
    let ok = vs(&(route("neg", neg) + &route("x", "    - uri: {prefix: /x}\n")));
    assert_eq!(analyze(&ok), vec![]);
}

#[test]
fn wa0113_one_shadowed_match_entry() {
    let yaml = vs(&(route("api", "    - uri: {prefix: /api}\n")
        + &route(
            "mixed",
            "    - uri: {prefix: /api/v2}\n    - uri: {prefix: /web}\n",
        )));
    let f = only(&analyze(&yaml), "WA0113");
    assert_eq!(f.severity, Severity::Info);
    assert!(
        f.message
            .contains("match[0] of route `mixed` (spec.http[1]) never applies"),
        "{f:?}"
    );
    assert_eq!(f.line, line_col(&yaml, "- uri: {prefix: /api/v2}").0);
}

#[test]
fn gateway_scoped_matches_only_shadow_on_their_gateways() {
    // The earlier route only applies on `gw`; the later one also on `mesh`.
    let yaml = format!(
        "{BASE}---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: r, namespace: shop}}\nspec:\n  hosts: [reviews]\n  gateways: [gw, mesh]\n  http:\n{}{}",
        route("gw-only", "    - gateways: [gw]\n"),
        route("all", "")
    );
    assert_eq!(analyze(&yaml), vec![]);
}
