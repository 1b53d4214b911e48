//! Semantic rules ported from Istio's validation: for each rule, one config that
//! must be rejected (checking the error's path, position and message gist) and
//! a near miss that must be accepted.

use weft_api::{load_str, validate_all, ValidationError};

/// Loads `yaml` (which must parse cleanly) and validates it.
fn errors(yaml: &str) -> Vec<ValidationError> {
    let loaded = load_str(yaml, "t.yaml");
    assert!(loaded.errors.is_empty(), "load errors: {:?}", loaded.errors);
    assert_eq!(loaded.resources.len(), 1, "expected exactly one resource");
    validate_all(&loaded.resources)
}

fn render(errs: &[ValidationError]) -> String {
    errs.iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Exactly one error, at `path` (and `line`), whose message contains every gist.
#[track_caller]
fn rejected(yaml: &str, path: &str, line: usize, gist: &[&str]) {
    let errs = errors(yaml);
    assert_eq!(errs.len(), 1, "expected one error:\n{}", render(&errs));
    let e = &errs[0];
    assert_eq!(e.path, path, "{e}");
    assert_eq!(e.line, line, "{e}");
    for g in gist {
        assert!(e.message.contains(g), "{g:?} missing from: {e}");
    }
}

#[track_caller]
fn accepted(yaml: &str) {
    let errs = errors(yaml);
    assert!(errs.is_empty(), "unexpected errors:\n{}", render(&errs));
}

fn vs(spec: &str) -> String {
    format!("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: v, namespace: ns}}\nspec:\n{spec}")
}

// ---------------------------------------------------------------- VirtualService

#[test]
fn vs_overlapping_wildcard_hosts_rejected() {
    let y = vs(
        "  hosts: [\"*.foo.bar\", \"*.bar\"]\n  http:\n  - route:\n    - destination: {host: a}\n",
    );
    rejected(
        &y,
        "spec.hosts[1]",
        5,
        &["\"*.bar\" overlaps host \"*.foo.bar\""],
    );
}

#[test]
fn vs_duplicate_and_covered_hosts_rejected() {
    let y = vs("  hosts: [a.bar, \"*.bar\"]\n  http:\n  - route:\n    - destination: {host: a}\n");
    rejected(&y, "spec.hosts[1]", 5, &["overlaps host \"a.bar\""]);
    let y = vs("  hosts: [a.bar, a.bar]\n  http:\n  - route:\n    - destination: {host: a}\n");
    rejected(&y, "spec.hosts[1]", 5, &["duplicates host \"a.bar\""]);
}

#[test]
fn vs_distinct_hosts_accepted() {
    // `*.foo.bar` does not cover `foo.bar`, and `*.bar` does not cover `bar.com`.
    accepted(&vs(
        "  hosts: [\"*.foo.bar\", foo.bar, bar.com]\n  http:\n  - route:\n    - destination: {host: a}\n",
    ));
}

#[test]
fn vs_source_labels_with_mesh_accepted() {
    accepted(&vs("  hosts: [a.example.com]\n  gateways: [ingress, mesh]\n  http:\n  - match:\n    - sourceLabels: {app: x}\n    route:\n    - destination: {host: a}\n"));
    accepted(&vs("  hosts: [a.example.com]\n  gateways: [ingress]\n  http:\n  - match:\n    - sourceLabels: {app: x}\n      gateways: [mesh]\n    route:\n    - destination: {host: a}\n"));
}

#[test]
fn vs_sni_host_outside_hosts_rejected() {
    let y = vs("  hosts: [\"*.example.com\"]\n  tls:\n  - match:\n    - sniHosts: [login.example.org]\n    route:\n    - destination: {host: a}\n");
    rejected(
        &y,
        "spec.tls[0].match[0].sniHosts[0]",
        8,
        &[
            "\"login.example.org\" is not a compatible subset",
            "*.example.com",
        ],
    );
    // A wildcard SNI is not within a plain host.
    let y = vs("  hosts: [a.example.com]\n  tls:\n  - match:\n    - sniHosts: [\"*.example.com\"]\n    route:\n    - destination: {host: a}\n");
    rejected(
        &y,
        "spec.tls[0].match[0].sniHosts[0]",
        8,
        &["not a compatible subset"],
    );
}

#[test]
fn vs_sni_host_within_hosts_accepted() {
    accepted(&vs("  hosts: [\"*.example.com\"]\n  tls:\n  - match:\n    - sniHosts: [login.example.com, \"*.a.example.com\"]\n    route:\n    - destination: {host: a}\n"));
}

#[test]
fn delegate_vs_with_gateways_rejected() {
    let y = vs("  gateways: [ingress]\n  http:\n  - route:\n    - destination: {host: a}\n");
    rejected(
        &y,
        "spec.gateways",
        5,
        &["delegate VirtualService (no hosts) must not set gateways"],
    );
    accepted(&vs("  http:\n  - route:\n    - destination: {host: a}\n"));
}

// ---------------------------------------------------------- AuthorizationPolicy

fn ap(spec: &str) -> String {
    format!("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: p, namespace: ns}}\nspec:\n{spec}")
}

#[test]
fn custom_with_identity_fields_rejected() {
    let y = ap("  action: CUSTOM\n  provider: {name: ext}\n  rules:\n  - from:\n    - source:\n        principals: [cluster.local/ns/a/sa/b]\n");
    rejected(
        &y,
        "spec.rules[0].from[0].source.principals",
        10,
        &["principals is not supported with action CUSTOM"],
    );
    let y = ap("  action: CUSTOM\n  provider: {name: ext}\n  rules:\n  - when:\n    - key: request.auth.claims[iss]\n      values: [x]\n");
    rejected(
        &y,
        "spec.rules[0].when[0].key",
        9,
        &["\"request.auth.claims[iss]\" is not supported with action CUSTOM"],
    );
}

#[test]
fn custom_with_request_attributes_and_allow_with_identity_accepted() {
    accepted(&ap("  action: CUSTOM\n  provider: {name: ext}\n  rules:\n  - from:\n    - source:\n        ipBlocks: [10.0.0.0/8]\n    to:\n    - operation: {paths: [\"/admin/{**}\"]}\n    when:\n    - key: request.headers[x-user]\n      values: [a]\n"));
    accepted(&ap("  rules:\n  - from:\n    - source:\n        principals: [cluster.local/ns/a/sa/b]\n        requestPrincipals: [\"*\"]\n"));
}

#[test]
fn bad_path_templates_rejected() {
    let cases = [
        ("/a/{**}/{*}", "{**} must be the last operator"),
        ("/a/{x}", "contains '{' or '}'"),
        ("/a/*/{*}", "segment \"*\" is not a valid literal"),
        ("/a//{*}", "segment \"\" is not a valid literal"),
    ];
    for (path, gist) in cases {
        let y = ap(&format!(
            "  rules:\n  - to:\n    - operation:\n        notPaths: [\"{path}\"]\n"
        ));
        rejected(&y, "spec.rules[0].to[0].operation.notPaths[0]", 8, &[gist]);
    }
}

#[test]
fn good_paths_accepted() {
    // Literal segments after `{**}` are fine (only operators must not follow it);
    // `*` prefix/suffix matching is untouched when no template is used.
    accepted(&ap("  rules:\n  - to:\n    - operation:\n        paths: [\"/{*}/reviews/{**}\", \"/a/{**}/b\", \"/api/*\", \"*\", \"/x:y@z/{*}\"]\n"));
}

// ----------------------------------------------------------------- targetRefs

#[test]
fn unsupported_target_kind_rejected() {
    let y = ap("  targetRefs:\n  - group: networking.istio.io\n    kind: Gateway\n    name: gw\n");
    rejected(
        &y,
        "spec.targetRefs[0].kind",
        7,
        &[
            "unsupported targetRef \"networking.istio.io\"/Gateway",
            "belongs to group gateway.networking.k8s.io",
        ],
    );
    let y = ap("  targetRef:\n    kind: Deployment\n    name: d\n");
    rejected(
        &y,
        "spec.targetRef.kind",
        6,
        &["unsupported targetRef \"\"/Deployment"],
    );
}

#[test]
fn cross_namespace_target_rejected() {
    let y = ap(
        "  targetRefs:\n  - kind: Service\n    group: \"\"\n    name: s\n    namespace: other\n",
    );
    rejected(
        &y,
        "spec.targetRefs[0].namespace",
        9,
        &["namespace must not be set", "cross-namespace"],
    );
}

#[test]
fn supported_targets_accepted() {
    accepted(&ap("  targetRefs:\n  - {group: gateway.networking.k8s.io, kind: Gateway, name: gw}\n  - {group: gateway.networking.k8s.io, kind: GatewayClass, name: istio-waypoint}\n  - {group: \"\", kind: Service, name: s}\n  - {group: core, kind: Service, name: s2}\n  - {group: networking.istio.io, kind: ServiceEntry, name: se, namespace: \"\"}\n"));
}

// -------------------------------------------------------------------- Gateway

fn gw(tls: &str) -> String {
    format!("apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: g, namespace: ns}}\nspec:\n  servers:\n  - port: {{number: 443, name: https, protocol: HTTPS}}\n    hosts: [a.example.com]\n    tls:\n      mode: SIMPLE\n      credentialName: cert\n{tls}")
}

#[test]
fn inverted_tls_versions_rejected() {
    let y = gw("      minProtocolVersion: TLSV1_3\n      maxProtocolVersion: TLSV1_2\n");
    rejected(
        &y,
        "spec.servers[0].tls.minProtocolVersion",
        11,
        &["TLSV1_3 is higher than maxProtocolVersion TLSV1_2"],
    );
}

#[test]
fn ordered_or_auto_tls_versions_accepted() {
    accepted(&gw(
        "      minProtocolVersion: TLSV1_2\n      maxProtocolVersion: TLSV1_2\n",
    ));
    accepted(&gw(
        "      minProtocolVersion: TLSV1_3\n      maxProtocolVersion: TLS_AUTO\n",
    ));
    // Istio only warns about (and ignores) unknown cipher suites.
    accepted(&gw(
        "      cipherSuites: [ECDHE-RSA-AES128-GCM-SHA256, NOT-A-CIPHER]\n",
    ));
}

// --------------------------------------------------------------- ServiceEntry

fn se(spec: &str) -> String {
    format!("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: s, namespace: ns}}\nspec:\n{spec}")
}

#[test]
fn several_hosts_on_tcp_port_rejected() {
    let y = se("  hosts: [a.example.com, b.example.com]\n  resolution: DNS\n  ports:\n  - {number: 443, name: tls, protocol: TLS}\n  - {number: 5432, name: pg, protocol: TCP}\n");
    rejected(
        &y,
        "spec.ports[1].protocol",
        9,
        &[
            "multiple hosts provided with non-HTTP, non-TLS ports",
            "resolution DNS",
        ],
    );
    // An unset protocol is not HTTP/TLS either.
    let y = se("  hosts: [a.example.com, b.example.com]\n  resolution: DNS\n  ports:\n  - number: 5432\n    name: pg\n");
    rejected(&y, "spec.ports[0]", 8, &["no protocol (plain TCP)"]);
}

#[test]
fn several_hosts_near_misses_accepted() {
    // Resolution NONE ignores the hosts when forwarding.
    accepted(&se("  hosts: [a.example.com, b.example.com]\n  addresses: [10.0.0.1]\n  ports:\n  - {number: 5432, name: pg, protocol: TCP}\n"));
    // HTTP and TLS ports can be told apart by authority/SNI.
    accepted(&se("  hosts: [a.example.com, b.example.com]\n  resolution: DNS\n  ports:\n  - {number: 80, name: http, protocol: http}\n  - {number: 443, name: tls, protocol: TLS}\n  - {number: 8080, name: grpc, protocol: GRPC}\n"));
    // One host may use TCP with DNS resolution.
    accepted(&se("  hosts: [a.example.com]\n  resolution: DNS\n  ports:\n  - {number: 5432, name: pg, protocol: TCP}\n"));
}

// ------------------------------------------------------------ DestinationRule

fn dr(ch: &str) -> String {
    format!("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: d, namespace: ns}}\nspec:\n  host: a\n  trafficPolicy:\n    loadBalancer:\n      consistentHash:\n        useSourceIp: true\n{ch}")
}

#[test]
fn maglev_table_size_rejected() {
    let at = "spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize";
    rejected(
        &dr("        maglev: {tableSize: 65536}\n"),
        at,
        10,
        &["65536 must be a prime number"],
    );
    // Odd composite (101 × 9901).
    rejected(
        &dr("        maglev: {tableSize: 1000001}\n"),
        at,
        10,
        &["1000001 must be a prime number"],
    );
    rejected(
        &dr("        maglev: {tableSize: 5000011}\n"),
        at,
        10,
        &["must be less than 5000011"],
    );
    rejected(
        &dr("        maglev: {}\n"),
        "spec.trafficPolicy.loadBalancer.consistentHash.maglev",
        10,
        &["maglev.tableSize must be set"],
    );
}

#[test]
fn deprecated_ring_size_with_algorithm_rejected() {
    rejected(
        &dr("        minimumRingSize: 1024\n        maglev: {tableSize: 65537}\n"),
        "spec.trafficPolicy.loadBalancer.consistentHash.minimumRingSize",
        10,
        &["only one of the deprecated minimumRingSize or ringHash/maglev"],
    );
}

#[test]
fn prime_maglev_and_lone_ring_size_accepted() {
    accepted(&dr("        maglev: {tableSize: 65537}\n"));
    accepted(&dr("        maglev: {tableSize: 4999999}\n"));
    accepted(&dr("        minimumRingSize: 1024\n"));
    accepted(&dr("        ringHash: {minimumRingSize: 1024}\n"));
}

#[test]
fn weights_that_add_up_past_u32_are_rejected() {
    let y = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs, namespace: prod}\nspec:\n  hosts: [a]\n  http:\n  - route:\n    - destination: {host: a}\n      weight: 2147483647\n    - destination: {host: b}\n      weight: 2147483647\n    - destination: {host: c}\n      weight: 2\n";
    let loaded = weft_api::load_str(y, "w.yaml");
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let errs = weft_api::validate_all(&loaded.resources);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].path, "spec.http[0].route");
    assert!(
        errs[0].message.contains("weights add up to 4294967296"),
        "{}",
        errs[0]
    );
    let ok = y.replace("weight: 2\n", "weight: 1\n");
    let loaded = weft_api::load_str(&ok, "w.yaml");
    assert!(
        weft_api::validate_all(&loaded.resources).is_empty(),
        "exactly u32::MAX is fine"
    );
}

// ---- WorkloadGroup (istio/istio ValidateWorkloadGroup) ----

const WG: &str = "apiVersion: networking.istio.io/v1\nkind: WorkloadGroup\nmetadata: {name: reviews, namespace: bookinfo}\nspec:\n";

#[test]
fn workload_group_needs_a_template_and_valid_labels() {
    accepted(&format!(
        "{WG}  metadata: {{labels: {{app: reviews}}, annotations: {{owner: team-a}}}}\n  template: {{ports: {{http: 9080}}, serviceAccount: reviews}}\n"
    ));
    rejected(
        &format!("{WG}  metadata: {{labels: {{app: reviews}}}}\n"),
        "spec",
        4,
        &["template is required"],
    );
    let errs = errors(&format!(
        "{WG}  metadata: {{labels: {{'bad key!': x}}}}\n  template: {{}}\n"
    ));
    assert_eq!(errs.len(), 1, "{}", render(&errs));
}

#[test]
fn workload_group_probes_as_istio_checks_them() {
    let with = |probe: &str| format!("{WG}  template: {{}}\n  probe:\n{probe}");
    accepted(&with("    periodSeconds: 5\n    httpGet: {path: /ready, port: 8080, scheme: HTTPS, httpHeaders: [{name: x-probe, value: '1'}]}\n"));
    accepted(&with("    tcpSocket: {port: 3306}\n"));
    accepted(&with("    exec: {command: [cat, /tmp/healthy]}\n"));
    rejected(
        &with("    periodSeconds: -1\n    tcpSocket: {port: 80}\n"),
        "spec.probe.periodSeconds",
        7,
        &["non-negative"],
    );
    rejected(
        &with("    httpGet: {port: 0}\n"),
        "spec.probe.httpGet.port",
        7,
        &["1..65535"],
    );
    rejected(
        &with("    httpGet: {port: 80, scheme: ftp}\n"),
        "spec.probe.httpGet.scheme",
        7,
        &["HTTPS"],
    );
    rejected(
        &with("    exec: {command: []}\n"),
        "spec.probe.exec",
        7,
        &["exec.command is required"],
    );
    rejected(
        &with("    timeoutSeconds: 3\n"),
        "spec.probe",
        6,
        &["health check method"],
    );
    rejected(
        &with("    tcpSocket: {port: 80}\n    exec: {command: [\"true\"]}\n"),
        "spec.probe",
        6,
        &["only one of"],
    );
}

#[test]
fn workload_entry_labels_follow_kubernetes_syntax() {
    let we = |labels: &str| {
        format!("apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {{name: w, namespace: ns}}\nspec:\n  address: 10.0.0.1\n  labels: {labels}\n")
    };
    accepted(&we(
        "{app: reviews, version: v1, app.kubernetes.io/part-of: shop, empty: ''}",
    ));
    rejected(
        &we("{'app!': x}"),
        "spec.labels.app!",
        6,
        &["invalid label key"],
    );
    rejected(
        &we("{app: 'has space'}"),
        "spec.labels.app",
        6,
        &["invalid label value"],
    );
}
