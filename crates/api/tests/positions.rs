//! Positions of documents and errors reported by the loader.

use weft_api::{load_str, Kind, LoadError, MtlsMode, Spec};

fn only_error(errors: &[LoadError]) -> &LoadError {
    assert_eq!(
        errors.len(),
        1,
        "expected exactly one error, got {errors:#?}"
    );
    &errors[0]
}

const THREE_DOCS_UNKNOWN_FIELD: &str = "\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: gw
spec:
  servers: []
---
# a comment before the second document
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata:
  name: dr
spec:
  host: reviews
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: vs
  namespace: prod
spec:
  hosts: [reviews]
  http:
  - route:
    - destination:
        host: reviews
    foo: 1
";

#[test]
fn unknown_field_three_documents_in_is_reported_at_its_line_and_column() {
    let result = load_str(THREE_DOCS_UNKNOWN_FIELD, "three.yaml");
    let err = only_error(&result.errors);
    assert_eq!((err.line, err.column), (27, 5), "{err}");
    assert_eq!(err.file, "three.yaml");
    assert!(
        err.message
            .starts_with("unknown field `foo` in VirtualService.spec.http[0]; expected one of"),
        "{err}"
    );
    assert!(err.message.contains("`route`"), "{err}");
    assert!(err
        .to_string()
        .starts_with("three.yaml:27:5: unknown field `foo`"));
    // The two good documents still load, with their own sources.
    let lines: Vec<(Kind, usize)> = result
        .resources
        .iter()
        .map(|r| (r.kind, r.source.line))
        .collect();
    assert_eq!(lines, [(Kind::Gateway, 1), (Kind::DestinationRule, 9)]);
}

#[test]
fn wrong_enum_value_is_reported_at_the_value() {
    let text = "\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: pa
spec:
  mtls:
    mode: STRICTER
";
    let result = load_str(text, "pa.yaml");
    let err = only_error(&result.errors);
    assert_eq!((err.line, err.column), (7, 11), "{err}");
    assert_eq!(
        err.message,
        "unknown value `STRICTER` at PeerAuthentication.spec.mtls.mode; \
         expected one of `UNSET`, `DISABLE`, `PERMISSIVE`, `STRICT`"
    );
    assert!(result.resources.is_empty());
}

#[test]
fn wrong_type_is_reported_at_the_value() {
    let text = "\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: se}
spec:
  hosts: [a.example.com]
  ports:
  - number: eighty
    name: http
";
    let err = only_error(&load_str(text, "se.yaml").errors).clone();
    assert_eq!((err.line, err.column), (7, 13), "{err}");
    assert!(
        err.message.contains("ServiceEntry.spec.ports[0].number"),
        "{err}"
    );
}

#[test]
fn broken_second_document_does_not_stop_the_others() {
    let text = "\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: one
spec:
  mtls: {mode: STRICT}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: two
spec:
  mtls: {mode: STRICT
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: three
spec:
  portLevelMtls:
    8080: {mode: DISABLE}
";
    let result = load_str(text, "multi.yaml");
    let err = only_error(&result.errors);
    assert!(err.message.starts_with("invalid YAML"), "{err}");
    assert!((8..=14).contains(&err.line), "{err}");
    let names: Vec<&str> = result.resources.iter().map(|r| r.name()).collect();
    assert_eq!(names, ["one", "three"]);
    assert_eq!(result.resources[1].source.line, 15);
    let Spec::PeerAuthentication(pa) = &result.resources[1].spec else {
        panic!("not a PeerAuthentication");
    };
    assert_eq!(pa.port_level_mtls[&8080].mode, Some(MtlsMode::Disable));
}

#[test]
fn type_error_in_second_document_does_not_stop_the_others() {
    let text = "\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: a}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: b}
spec:
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: '*'
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: c}
";
    let result = load_str(text, "gw.yaml");
    let err = only_error(&result.errors);
    assert_eq!((err.line, err.column), (11, 12), "{err}");
    let names: Vec<&str> = result.resources.iter().map(|r| r.name()).collect();
    assert_eq!(names, ["a", "c"]);
}

#[test]
fn missing_name_and_bad_kind_and_version_are_errors() {
    let text = "\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  namespace: x
---
apiVersion: networking.istio.io/v1
kind: Gatway
metadata: {name: a}
---
apiVersion: networking.istio.io/v2
kind: Gateway
metadata: {name: a}
---
apiVersion: security.istio.io/v1
kind: Gateway
metadata: {name: a}
---
apiVersion: v1
kind: Service
metadata: {name: svc}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: k8s-gw}
";
    let result = load_str(text, "mixed.yaml");
    let found: Vec<(usize, usize)> = result.errors.iter().map(|e| (e.line, e.column)).collect();
    assert_eq!(
        found,
        [(3, 1), (7, 7), (10, 13), (15, 7)],
        "{:#?}",
        result.errors
    );
    assert!(result.errors[0].message.contains("metadata.name"));
    assert!(result.errors[1].message.contains("unknown kind `Gatway`"));
    assert!(result.errors[2].message.contains("unsupported apiVersion"));
    assert!(result.errors[3].message.contains("networking.istio.io"));
    // A Kubernetes Service is read as a service definition (a registry entry); the
    // Gateway API's Gateway is known but not supported: skipped, and said so.
    let services: Vec<(String, &str, usize)> = result
        .resources
        .iter()
        .map(|r| (r.key(), r.api_version.as_str(), r.source.line))
        .collect();
    assert_eq!(
        services,
        [("ServiceEntry/default/svc".to_string(), "v1", 18)]
    );
    let skipped: Vec<(&str, usize, bool)> = result
        .skipped
        .iter()
        .map(|s| (s.kind.as_str(), s.source.line, s.unsupported.is_some()))
        .collect();
    assert_eq!(skipped, [("Gateway", 22, true)]);
}

#[test]
fn empty_documents_and_comments_are_ignored() {
    let text = "# header\n---\n---\n# nothing\n...\n---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: default}\nspec:\n  outboundTrafficPolicy: {}\n";
    let result = load_str(text, "s.yaml");
    assert!(result.errors.is_empty(), "{:?}", result.errors);
    assert_eq!(result.resources.len(), 1);
    assert_eq!(result.resources[0].source.line, 7);
    assert_eq!(result.resources[0].key(), "Sidecar/default/default");
    assert!(load_str("", "e.yaml").resources.is_empty());
    assert!(load_str("", "e.yaml").errors.is_empty());
}

#[test]
fn unknown_top_level_and_metadata_fields() {
    let text = "\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: a
  labelz: {}
spec:
  host: a
";
    let err = only_error(&load_str(text, "m.yaml").errors).clone();
    assert_eq!((err.line, err.column), (5, 3), "{err}");
    assert!(err
        .message
        .starts_with("unknown field `labelz` in DestinationRule.metadata"));
}

// ---------------------------------------------------------------------------
// Node positions of loaded resources and validation errors located by them.

const THREE_DOCS_BAD_WEIGHT: &str = "\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ['*.example.com']
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: dr}
spec:
  host: reviews
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: vs
  namespace: prod
spec:
  hosts: [reviews]
  http:
  - match:
    - uri:
        exact: /a
    route:
    - destination: {host: reviews, subset: v1}
      weight: 10
    - destination: {host: reviews, subset: v2}
      weight:   -5
";

#[test]
fn position_of_finds_every_node_and_falls_back_to_ancestors() {
    let result = load_str(THREE_DOCS_BAD_WEIGHT, "w.yaml");
    assert!(result.errors.is_empty(), "{:?}", result.errors);
    let vs = &result.resources[2];
    assert_eq!(vs.position_of("metadata.name"), (18, 9));
    assert_eq!(vs.key_position_of("metadata.name"), (18, 3));
    assert_eq!(vs.position_of("spec.http[0].match[0].uri.exact"), (25, 16));
    assert_eq!(
        vs.key_position_of("spec.http[0].match[0].uri.exact"),
        (25, 9)
    );
    assert_eq!(vs.position_of("spec.http[0].route[1]"), (29, 7));
    assert_eq!(
        vs.position_of("spec.http[0].route[1].destination.subset"),
        (29, 44)
    );
    // Missing nodes fall back to the nearest written ancestor...
    assert_eq!(
        vs.position_of("spec.http[0].route[1].destination.port.number"),
        (29, 20)
    );
    assert_eq!(
        vs.position_of("spec.http[0].timeout"),
        vs.position_of("spec.http[0]")
    );
    assert_eq!(vs.position_of("spec.tcp[3]"), vs.position_of("spec"));
    // ...and, for a resource built in code, to its source line.
    let mut built = vs.clone();
    built.positions = Default::default();
    assert_eq!(built.position_of("spec.hosts[0]"), (vs.source.line, 1));
    // Positions never affect equality.
    assert_eq!(&built, vs);
    let gw = &result.resources[0];
    assert_eq!(gw.position_of("spec.servers[0].hosts[0]"), (7, 13));
    assert_eq!(gw.position_of("spec.servers[0].port.number"), (6, 20));
}

#[test]
fn validation_error_in_third_document_points_at_the_offending_field() {
    let result = load_str(THREE_DOCS_BAD_WEIGHT, "w.yaml");
    assert!(result.errors.is_empty(), "{:?}", result.errors);
    let errors = weft_api::validate_all(&result.resources);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let e = &errors[0];
    assert_eq!((e.line, e.column), (30, 17), "{e}");
    assert_eq!(e.path, "spec.http[0].route[1].weight");
    assert_eq!(e.resource, "VirtualService/prod/vs");
    assert_eq!(
        e.to_string(),
        "w.yaml:30:17: VirtualService/prod/vs: spec.http[0].route[1].weight: weight -5 is negative: \
         weights are relative shares, use 0 or more"
    );
}

#[test]
fn missing_field_errors_point_at_the_parent_key() {
    let text = "\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-all, namespace: foo}
spec:
  action: DENY
";
    let result = load_str(text, "ap.yaml");
    let errors = weft_api::validate_all(&result.resources);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!((errors[0].line, errors[0].column), (5, 3), "{}", errors[0]);
    assert!(errors[0].message.contains("DENY action without rules"));
}
