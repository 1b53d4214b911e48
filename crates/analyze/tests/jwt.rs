//! WA0117 (istioctl IST0149): JWT claim-based routing on a gateway that no
//! RequestAuthentication selects, with a config that triggers it and ones that do not.

mod common;
use common::*;
use weft_analyze::Severity;

const CLAIM_ROUTE: &str = "\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: by-group, namespace: shop}
spec:
  hosts: [admin.example.com]
  gateways: [gw]
  http:
  - match:
    - headers:
        \"@request.auth.claims.groups\": {exact: admin}
    route:
    - destination: {host: reviews}
";

const JWT: &str = "\
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  jwtRules: [{issuer: me, jwks: '{\"keys\": []}'}]
";

#[test]
fn wa0117_claim_routes_need_a_request_authentication_on_the_gateway() {
    let yaml = base_replacing(
        "hosts: [shop.example.com]\n---",
        "hosts: [shop.example.com, admin.example.com]\n---",
    );
    let f = only(&analyze(&format!("{yaml}---\n{CLAIM_ROUTE}")), "WA0117");
    assert_eq!(f.severity, Severity::Error);
    assert_eq!(f.resource.as_deref(), Some("VirtualService/shop/by-group"));
    assert!(
        f.message
            .contains("istio-system/ingress behind gateway shop/gw"),
        "{f:?}"
    );
    assert_eq!(weft_analyze::istio_code("WA0117"), Some("IST0149"));
    // With a RequestAuthentication selecting the gateway's workload: clean.
    let clean = analyze(&format!("{yaml}---\n{CLAIM_ROUTE}---\n{JWT}"));
    assert!(with_code(&clean, "WA0117").is_empty(), "{clean:#?}");
    // One that selects something else does not count.
    let other = JWT.replace("istio: ingressgateway", "app: reviews");
    let findings = analyze(&format!("{yaml}---\n{CLAIM_ROUTE}---\n{other}"));
    assert_eq!(with_code(&findings, "WA0117").len(), 1, "{findings:#?}");
}
