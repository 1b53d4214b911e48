//! The CRDs' size and range limits (`crates/api/src/validate/crd_limits.rs`): a resource past
//! one is refused at the offending field's path, one step inside the limit loads, and a
//! field weft already checks more specifically gets one error, not two.

use weft_api::{load_str, validate_all};

fn errors(kind_api: (&str, &str), spec: &str) -> Vec<(String, String)> {
    let (api, kind) = kind_api;
    let yaml = format!(
        "apiVersion: {api}\nkind: {kind}\nmetadata: {{name: x, namespace: ns}}\nspec:\n{spec}"
    );
    let loaded = load_str(&yaml, "t.yaml");
    assert!(loaded.errors.is_empty(), "load errors {:?}", loaded.errors);
    validate_all(&loaded.resources)
        .into_iter()
        .map(|e| (e.path, e.message))
        .collect()
}

const WE: (&str, &str) = ("networking.istio.io/v1", "WorkloadEntry");
const SE: (&str, &str) = ("networking.istio.io/v1", "ServiceEntry");
const DR: (&str, &str) = ("networking.istio.io/v1", "DestinationRule");
const AP: (&str, &str) = ("security.istio.io/v1", "AuthorizationPolicy");
const RA: (&str, &str) = ("security.istio.io/v1", "RequestAuthentication");

#[track_caller]
fn one_error(errs: &[(String, String)], path: &str, gist: &str) {
    assert_eq!(errs.len(), 1, "expected one error at {path}: {errs:?}");
    assert_eq!(errs[0].0, path, "{errs:?}");
    assert!(errs[0].1.contains(gist), "{gist:?} missing: {errs:?}");
    assert!(errs[0].1.contains("the CRD's limit"), "{errs:?}");
}

#[test]
fn a_service_account_is_at_most_253_characters() {
    let at = |n: usize| format!("  address: 10.0.0.1\n  serviceAccount: {}\n", "a".repeat(n));
    assert!(errors(WE, &at(253)).is_empty());
    one_error(
        &errors(WE, &at(254)),
        "spec.serviceAccount",
        "has 254 characters, at most 253 allowed",
    );
}

#[test]
fn an_endpoints_locality_is_at_most_2048_characters_at_its_own_index() {
    let spec = format!(
        "  hosts: [a.example.com]\n  location: MESH_EXTERNAL\n  resolution: STATIC\n  ports: [{{number: 80, name: http, protocol: HTTP}}]\n  endpoints:\n  - address: 10.0.0.1\n  - address: 10.0.0.2\n    locality: {}\n",
        "r/".repeat(1025)
    );
    one_error(
        &errors(SE, &spec),
        "spec.endpoints[1].locality",
        "has 2050 characters, at most 2048 allowed",
    );
}

#[test]
fn jwt_rules_limit_uri_length_and_space_delimited_claims() {
    let uri = format!("https://example.com/{}", "k".repeat(2030));
    let rule = |uri: &str, claims: usize| {
        let claims: Vec<String> = (0..claims).map(|i| format!("c{i}")).collect();
        format!(
            "  jwtRules:\n  - issuer: https://example.com\n    jwksUri: {uri}\n    spaceDelimitedClaims: [{}]\n",
            claims.join(", ")
        )
    };
    assert!(errors(RA, &rule("https://example.com/k", 64)).is_empty());
    one_error(
        &errors(RA, &rule(&uri, 1)),
        "spec.jwtRules[0].jwksUri",
        "has 2050 characters, at most 2048 allowed",
    );
    one_error(
        &errors(RA, &rule("https://example.com/k", 65)),
        "spec.jwtRules[0].spaceDelimitedClaims",
        "has 65 entries, at most 64 allowed",
    );
}

#[test]
fn service_account_sources_weft_checks_itself_keep_one_error() {
    let policy = |list: &str| {
        format!("  rules:\n  - from:\n    - source:\n        serviceAccounts: [{list}]\n")
    };
    let many: Vec<String> = (0..16).map(|i| format!("ns/sa{i}")).collect();
    assert!(errors(AP, &policy(&many.join(", "))).is_empty());
    let long = format!("ns/{}", "s".repeat(318));
    let errs = errors(AP, &policy(&long));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].0, "spec.rules[0].from[0].source.serviceAccounts[0]");
}

#[test]
fn bounded_numbers_in_subset_policies() {
    let spec = |code: u32| {
        format!("  host: a\n  subsets:\n  - name: v1\n    labels: {{version: v1}}\n    trafficPolicy:\n      loadBalancer: {{simple: ROUND_ROBIN, zoneAwareLbSetting: {{minClusterSize: {code}}}}}\n")
    };
    assert!(errors(DR, &spec(1)).is_empty());
    one_error(
        &errors(DR, &spec(0)),
        "spec.subsets[0].trafficPolicy.loadBalancer.zoneAwareLbSetting.minClusterSize",
        "is 0, at least 1 allowed",
    );
}

#[test]
fn a_limit_weft_checks_itself_gives_one_error() {
    // Selector values and the serviceAccounts count: weft's own checks say it; the CRD's
    // limit on the same path adds nothing.
    let spec = format!(
        "  selector:\n    matchLabels: {{app: {}}}\n  action: ALLOW\n  rules: [{{}}]\n",
        "v".repeat(64)
    );
    let errs = errors(AP, &spec);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].0, "spec.selector.matchLabels.app");
    assert!(!errs[0].1.contains("the CRD's limit"), "{errs:?}");
    let many: Vec<String> = (0..17).map(|i| format!("ns/sa{i}")).collect();
    let spec = format!(
        "  rules:\n  - from:\n    - source:\n        serviceAccounts: [{}]\n",
        many.join(", ")
    );
    let errs = errors(AP, &spec);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].0, "spec.rules[0].from[0].source.serviceAccounts");
}
