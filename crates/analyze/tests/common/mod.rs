//! Shared fixtures for the analysis tests: a small clean mesh and helpers to run the
//! analysis on it with extra or replaced documents.
#![allow(dead_code)]

use weft_analyze::Finding;

/// A clean mesh: `reviews` (v1, v2) and `ratings` in namespace `shop`, an ingress
/// gateway workload in `istio-system`, a Gateway, a DestinationRule and a VirtualService.
pub const BASE: &str = "\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews.shop.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 8080, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ratings, namespace: shop}
spec:
  hosts: [ratings.shop.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 8080, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: ratings}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v1, namespace: shop}
spec: {address: 127.0.0.1, labels: {app: reviews, version: v1}, serviceAccount: reviews}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v2, namespace: shop}
spec: {address: 127.0.0.1, labels: {app: reviews, version: v2}, serviceAccount: reviews}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: ratings-v1, namespace: shop}
spec: {address: 127.0.0.1, labels: {app: ratings, version: v1}, serviceAccount: ratings}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: ingress, namespace: istio-system}
spec: {address: 127.0.0.1, labels: {istio: ingressgateway}, serviceAccount: ingress}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: shop}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [shop.example.com]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: shop}
spec:
  host: reviews
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: front, namespace: shop}
spec:
  hosts: [shop.example.com]
  gateways: [gw]
  http:
  - match:
    - uri: {prefix: /reviews}
    route:
    - destination: {host: reviews, subset: v1}
      weight: 90
    - destination: {host: reviews, subset: v2}
      weight: 10
  - route:
    - destination: {host: ratings}
";

/// Findings for `BASE` followed by `extra` documents.
pub fn analyze_with(extra: &str) -> Vec<Finding> {
    analyze(&format!("{BASE}---\n{extra}"))
}

/// Findings for a YAML stream, asserting it loads without errors; the not-enforced infos
/// (WA0200, tested on their own) are left out so checks can be asserted exactly.
pub fn analyze(yaml: &str) -> Vec<Finding> {
    analyze_all(yaml)
        .into_iter()
        .filter(|f| f.code != weft_analyze::NOT_ENFORCED)
        .collect()
}

/// Every finding for a YAML stream, asserting it loads without errors.
pub fn analyze_all(yaml: &str) -> Vec<Finding> {
    let loaded = weft_api::load_str(yaml, "test.yaml");
    assert!(
        loaded.errors.is_empty(),
        "load errors: {:#?}",
        loaded.errors
    );
    weft_analyze::findings_for(&loaded)
}

/// Findings with `code`.
pub fn with_code<'a>(findings: &'a [Finding], code: &str) -> Vec<&'a Finding> {
    findings.iter().filter(|f| f.code == code).collect()
}

/// Exactly one finding, with `code`; returns it.
pub fn only(findings: &[Finding], code: &str) -> Finding {
    assert_eq!(
        findings.len(),
        1,
        "expected exactly one {code}, got {findings:#?}"
    );
    assert_eq!(findings[0].code, code, "{findings:#?}");
    findings[0].clone()
}

/// BASE with `from` replaced by `to` (which must occur).
pub fn base_replacing(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "fixture has no {from:?}");
    BASE.replacen(from, to, 1)
}

/// 1-based (line, column) of the first occurrence of `needle` in `text`.
pub fn line_col(text: &str, needle: &str) -> (usize, usize) {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in text"));
    let line = text[..at].matches('\n').count() + 1;
    let col = at - text[..at].rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}
