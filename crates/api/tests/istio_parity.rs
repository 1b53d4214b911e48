//! Validation no stricter and no looser than Istio (`crates/api/VALIDATION.md`): for each
//! rule weft added (Istio rejects, weft accepted) a YAML snippet that must be rejected with
//! its reason, and for each rule weft loosened (Istio accepts, weft rejected) one that must
//! load — clean or with the warning Istio gives — as corpus-style cases.

use weft_api::{load_str, validate_all_with_warnings, WarningKind};

/// What one case must produce.
enum Expect {
    /// Exactly one error, at this path, whose message contains the gist.
    Error(&'static str, &'static str),
    /// No error, and a warning of this kind at this path containing the gist.
    Warn(WarningKind, &'static str, &'static str),
    /// Neither errors nor warnings.
    Clean,
}
use Expect::*;

fn doc(api: &str, kind: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: {api}\nkind: {kind}\nmetadata: {{name: {name}, namespace: ns}}\nspec:\n{spec}"
    )
}
fn gw(spec: &str) -> String {
    doc("networking.istio.io/v1", "Gateway", "gw", spec)
}
fn vs(spec: &str) -> String {
    doc("networking.istio.io/v1", "VirtualService", "v", spec)
}
fn dr(spec: &str) -> String {
    doc("networking.istio.io/v1", "DestinationRule", "d", spec)
}
fn sc(spec: &str) -> String {
    doc("networking.istio.io/v1", "Sidecar", "s", spec)
}
fn se(spec: &str) -> String {
    doc("networking.istio.io/v1", "ServiceEntry", "e", spec)
}
fn we(spec: &str) -> String {
    doc("networking.istio.io/v1", "WorkloadEntry", "w", spec)
}
fn ap(spec: &str) -> String {
    doc("security.istio.io/v1", "AuthorizationPolicy", "p", spec)
}
fn ra(spec: &str) -> String {
    doc("security.istio.io/v1", "RequestAuthentication", "r", spec)
}
fn tel(spec: &str) -> String {
    doc("telemetry.istio.io/v1", "Telemetry", "t", spec)
}

/// A VirtualService with one HTTP route whose body is `route` (indented as a route).
fn route(route: &str) -> String {
    vs(&format!("  hosts: [a.example.com]\n  http:\n  - {route}\n"))
}
const DEST: &str = "route:\n    - destination: {host: a}";
const SERVER: &str = "  servers:\n  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [a.example.com]\n    tls:\n";

#[track_caller]
fn check(name: &str, yaml: &str, expect: Expect) {
    let loaded = load_str(yaml, "t.yaml");
    assert!(
        loaded.errors.is_empty(),
        "{name}: load errors {:?}",
        loaded.errors
    );
    let (errors, warnings) = validate_all_with_warnings(&loaded.resources);
    let shown = || {
        errors
            .iter()
            .map(|e| e.to_string())
            .chain(warnings.iter().map(|w| w.to_string()))
            .collect::<Vec<_>>()
            .join("\n  ")
    };
    match expect {
        Error(path, gist) => {
            assert_eq!(
                errors.len(),
                1,
                "{name}: expected one error:\n  {}",
                shown()
            );
            assert_eq!(errors[0].path, path, "{name}: {}", shown());
            assert!(
                errors[0].message.contains(gist),
                "{name}: {gist:?} missing:\n  {}",
                shown()
            );
        }
        Warn(kind, path, gist) => {
            assert!(
                errors.is_empty(),
                "{name}: expected no error:\n  {}",
                shown()
            );
            let hit = warnings
                .iter()
                .any(|w| w.kind == kind && w.at.path == path && w.at.message.contains(gist));
            assert!(
                hit,
                "{name}: no {kind:?} warning at {path} with {gist:?}:\n  {}",
                shown()
            );
        }
        Clean => assert!(
            errors.is_empty() && warnings.is_empty(),
            "{name}: expected clean:\n  {}",
            shown()
        ),
    }
}

#[test]
fn gateway_rules_istio_has() {
    let srv = |port: &str, tls: &str| {
        gw(&format!(
            "  servers:\n  - port: {port}\n    hosts: [a.example.com]\n{tls}"
        ))
    };
    check(
        "port name required",
        &srv("{number: 80, protocol: HTTP}", ""),
        Error("spec.servers[0].port", "port name must be set"),
    );
    check(
        "targetPort",
        &srv(
            "{number: 80, name: h, protocol: HTTP, targetPort: 8080}",
            "",
        ),
        Error(
            "spec.servers[0].port.targetPort",
            "targetPort has no impact on Gateways",
        ),
    );
    check(
        "TLS on TCP",
        &srv(
            "{number: 31400, name: t, protocol: TCP}",
            "    tls: {mode: SIMPLE, credentialName: c}\n",
        ),
        Error(
            "spec.servers[0].tls",
            "a TCP server cannot have TLS settings",
        ),
    );
    check(
        "HTTP with certificate",
        &srv(
            "{number: 80, name: h, protocol: HTTP}",
            "    tls: {httpsRedirect: true, serverCertificate: /c.pem}\n",
        ),
        Error(
            "spec.servers[0].tls",
            "plain HTTP server cannot have TLS settings",
        ),
    );
    check("MUTUAL tlsCertificates need CA", &gw(&format!("{SERVER}      mode: MUTUAL\n      tlsCertificates: [{{serverCertificate: /c.pem, privateKey: /k.pem}}]\n")), Error("spec.servers[0].tls", "requires caCertificates"));
    check(
        "tlsCertificates entry needs key",
        &gw(&format!(
            "{SERVER}      mode: SIMPLE\n      tlsCertificates: [{{serverCertificate: /c.pem}}]\n"
        )),
        Error(
            "spec.servers[0].tls.tlsCertificates[0]",
            "serverCertificate and a privateKey",
        ),
    );
    check("caCrl with SIMPLE", &gw(&format!("{SERVER}      mode: SIMPLE\n      serverCertificate: /c.pem\n      privateKey: /k.pem\n      caCrl: /crl.pem\n")), Error("spec.servers[0].tls.caCrl", "not supported with SIMPLE"));
    check(
        "caCrl with credentialName",
        &gw(&format!(
            "{SERVER}      mode: MUTUAL\n      credentialName: c\n      caCrl: /crl.pem\n"
        )),
        Error(
            "spec.servers[0].tls.caCrl",
            "not supported with credentialName",
        ),
    );
    check(
        "credentialName and credentialNames",
        &gw(&format!(
            "{SERVER}      mode: SIMPLE\n      credentialName: c\n      credentialNames: [d]\n"
        )),
        Error(
            "spec.servers[0].tls",
            "only one of credentialName or credentialNames",
        ),
    );
    check(
        "name with a dot",
        &doc(
            "networking.istio.io/v1",
            "Gateway",
            "my.gw",
            "  servers:\n  - port: {number: 80, name: h, protocol: HTTP}\n    hosts: ['*']\n",
        ),
        Error("metadata.name", "invalid gateway name"),
    );
    check("bind to a directory", &gw("  servers:\n  - port: {number: 0, name: u, protocol: HTTP}\n    bind: unix:///var/run/\n    hosts: ['*']\n"), Error("spec.servers[0].bind", "not a valid IP address or unix socket"));
}

#[test]
fn gateway_rules_istio_accepts() {
    let srv = |port: &str, tls: &str| {
        gw(&format!(
            "  servers:\n  - port: {port}\n    hosts: [a.example.com]\n{tls}"
        ))
    };
    check("UDP and HTTP_PROXY protocols", &gw("  servers:\n  - port: {number: 53, name: dns, protocol: UDP}\n    hosts: [a.example.com]\n  - port: {number: 8080, name: p, protocol: HTTP_PROXY}\n    hosts: [a.example.com]\n"), Clean);
    check(
        "HTTP with passthrough TLS",
        &srv(
            "{number: 80, name: h, protocol: HTTP}",
            "    tls: {mode: PASSTHROUGH, httpsRedirect: true}\n",
        ),
        Clean,
    );
    check("credentialName with a lone certificate", &gw(&format!("{SERVER}      mode: SIMPLE\n      credentialName: c\n      serverCertificate: /c.pem\n")), Clean);
    check(
        "httpsRedirect on HTTPS",
        &gw(&format!(
            "{SERVER}      mode: SIMPLE\n      credentialName: c\n      httpsRedirect: true\n"
        )),
        Clean,
    );
    check("httpsRedirect on TLS passthrough", &gw("  servers:\n  - port: {number: 443, name: tls, protocol: TLS}\n    hosts: [a.example.com]\n    tls: {mode: PASSTHROUGH, httpsRedirect: true}\n"), Clean);
    check("passthrough with certificates", &gw("  servers:\n  - port: {number: 443, name: tls, protocol: TLS}\n    hosts: [a.example.com]\n    tls: {mode: PASSTHROUGH, credentialName: c}\n"), Warn(WarningKind::Istio, "spec.servers[0].tls", "does not use certificates"));
    check("old TLS without ciphers", &gw(&format!("{SERVER}      mode: SIMPLE\n      credentialName: c\n      minProtocolVersion: TLSV1_0\n")), Warn(WarningKind::Istio, "spec.servers[0].tls.minProtocolVersion", "require setting compatible cipherSuites"));
    check("invalid cipher", &gw(&format!("{SERVER}      mode: SIMPLE\n      credentialName: c\n      cipherSuites: [NOT-A-CIPHER, AES128-SHA, AES128-SHA]\n")), Warn(WarningKind::Istio, "spec.servers[0].tls.cipherSuites", "ignoring invalid cipher suites: NOT-A-CIPHER"));
    check("duplicate server names", &gw("  servers:\n  - port: {number: 80, name: a, protocol: HTTP}\n    hosts: ['*']\n    name: s\n  - port: {number: 81, name: b, protocol: HTTP}\n    hosts: ['*']\n    name: s\n"), Warn(WarningKind::Istio, "spec.servers[1].name", "used twice"));
}

#[test]
fn virtual_service_rules_istio_has() {
    check(
        "bad header match name",
        &route(&format!(
            "match:\n    - headers: {{\"bad header\": {{exact: x}}}}\n    {DEST}"
        )),
        Error(
            "spec.http[0].match[0].headers.bad header",
            "not a valid header name",
        ),
    );
    let long = "a".repeat(1025);
    check(
        "regex too large",
        &route(&format!("match:\n    - uri: {{regex: {long}}}\n    {DEST}")),
        Error("spec.http[0].match[0].uri.regex", "too large"),
    );
    check(
        "directResponse and fault",
        &route("directResponse: {status: 503}\n    fault: {abort: {httpStatus: 500}}"),
        Error(
            "spec.http[0].directResponse",
            "both fault and directResponse",
        ),
    );
    check(
        "directResponse status",
        &route("directResponse: {status: 700}"),
        Error("spec.http[0].directResponse.status", "not in range 200-599"),
    );
    check(
        "destination host *",
        &route("route:\n    - destination: {host: \"*\"}"),
        Error(
            "spec.http[0].route[0].destination.host",
            "invalid destination host",
        ),
    );
    check(
        "subset name",
        &route("route:\n    - destination: {host: a, subset: v1.2}"),
        Error(
            "spec.http[0].route[0].destination.subset",
            "subset name \"v1.2\" is invalid",
        ),
    );
    check(
        "redirect scheme",
        &route("redirect: {scheme: ftp, uri: /x}"),
        Error(
            "spec.http[0].redirect.scheme",
            "must be \"http\" or \"https\"",
        ),
    );
    check(
        "uriRegexRewrite without rewrite",
        &route(&format!(
            "rewrite: {{uriRegexRewrite: {{match: ^/a}}}}\n    {DEST}"
        )),
        Error(
            "spec.http[0].rewrite.uriRegexRewrite",
            "both match and rewrite",
        ),
    );
    check(
        "CORS header name",
        &route(&format!(
            "corsPolicy: {{allowHeaders: [\"a b\"]}}\n    {DEST}"
        )),
        Error(
            "spec.http[0].corsPolicy.allowHeaders[0]",
            "not a valid header name",
        ),
    );
    check(
        "CORS maxAge in ms",
        &route(&format!("corsPolicy: {{maxAge: 1500ms}}\n    {DEST}")),
        Error("spec.http[0].corsPolicy.maxAge", "accurate only to seconds"),
    );
    check(
        "retries with attempts 0",
        &route(&format!("retries: {{retryOn: 5xx}}\n    {DEST}")),
        Error("spec.http[0].retries.attempts", "attempts are set to 0"),
    );
    check(
        "retryOn with a space",
        &route(&format!(
            "retries: {{attempts: 2, retryOn: \"5xx, reset\"}}\n    {DEST}"
        )),
        Error(
            "spec.http[0].retries.retryOn",
            "unknown policy (\" reset\")",
        ),
    );
    check(
        "retryOn unknown status",
        &route(&format!(
            "retries: {{attempts: 2, retryOn: \"599\"}}\n    {DEST}"
        )),
        Error(
            "spec.http[0].retries.retryOn",
            "599 is not a known HTTP status code",
        ),
    );
    check(
        "grpcStatus name",
        &route(&format!(
            "fault: {{abort: {{grpcStatus: NOPE}}}}\n    {DEST}"
        )),
        Error("spec.http[0].fault.abort.grpcStatus", "is not supported"),
    );
    check(
        "http2Error",
        &route(&format!(
            "fault: {{abort: {{http2Error: REFUSED_STREAM}}}}\n    {DEST}"
        )),
        Error("spec.http[0].fault.abort.http2Error", "not supported yet"),
    );
    check(
        "exponentialDelay",
        &route(&format!(
            "fault: {{delay: {{exponentialDelay: 1s}}}}\n    {DEST}"
        )),
        Error(
            "spec.http[0].fault.delay.exponentialDelay",
            "not supported yet",
        ),
    );
    check(
        "tiny percentage",
        &route(&format!(
            "fault: {{abort: {{httpStatus: 500, percentage: {{value: 0.00001}}}}}}\n    {DEST}"
        )),
        Error("spec.http[0].fault.abort.percentage.value", "[0.0001, 100]"),
    );
    check(
        "sourceLabels",
        &route(&format!(
            "match:\n    - sourceLabels: {{\"-bad\": x}}\n    {DEST}"
        )),
        Error(
            "spec.http[0].match[0].sourceLabels.-bad",
            "invalid label key",
        ),
    );
    check(
        "gateway ns/name with a dot",
        &vs(&format!(
            "  hosts: [a.example.com]\n  gateways: [ns/my.gw]\n  http:\n  - {DEST}\n"
        )),
        Error("spec.gateways[0]", "two DNS-1123 labels"),
    );
    check(
        "header value control character",
        &route(&format!(
            "headers: {{request: {{set: {{x-a: \"a\\u0001b\"}}}}}}\n    {DEST}"
        )),
        Error("spec.http[0].headers.request.set.x-a", "control character"),
    );
}

#[test]
fn virtual_service_rules_istio_accepts() {
    check(
        "Host set on requests",
        &route(&format!(
            "headers: {{request: {{set: {{Host: b.example.com}}}}}}\n    {DEST}"
        )),
        Clean,
    );
    check(
        "abort without type",
        &route(&format!(
            "fault: {{abort: {{percentage: {{value: 10}}}}}}\n    {DEST}"
        )),
        Warn(
            WarningKind::Istio,
            "spec.http[0].fault.abort",
            "error type not set",
        ),
    );
    check(
        "delay without type",
        &route(&format!(
            "fault: {{delay: {{percentage: {{value: 10}}}}}}\n    {DEST}"
        )),
        Warn(
            WarningKind::Istio,
            "spec.http[0].fault.delay",
            "without fixedDelay",
        ),
    );
    check(
        "legacy gateway name",
        &vs(&format!(
            "  hosts: [a.example.com]\n  gateways: [gw.istio-system]\n  http:\n  - {DEST}\n"
        )),
        Warn(
            WarningKind::Istio,
            "spec.gateways[0]",
            "prefer the <namespace>/<name> format: \"istio-system/gw\"",
        ),
    );
    check("IP SNI", &vs("  hosts: [a.example.com]\n  tls:\n  - match:\n    - sniHosts: [10.0.0.1]\n    route:\n    - destination: {host: a}\n"), Warn(WarningKind::Istio, "spec.tls[0].match[0].sniHosts[0]", "goes against the SNI spec"));
    check(
        "mirrorPercent deprecated",
        &route(&format!(
            "mirror: {{host: b}}\n    mirrorPercent: 50\n    {DEST}"
        )),
        Warn(
            WarningKind::Deprecated,
            "spec.http[0].mirrorPercent",
            "use \"mirrorPercentage\"",
        ),
    );
    check(
        "delay.percent deprecated",
        &route(&format!(
            "fault: {{delay: {{fixedDelay: 1s, percent: 150}}}}\n    {DEST}"
        )),
        Warn(
            WarningKind::Deprecated,
            "spec.http[0].fault.delay.percent",
            "use HTTPRoute.fault.delay.percentage",
        ),
    );
    check(
        "uppercase sourceNamespace",
        &route(&format!("match:\n    - sourceNamespace: Prod\n    {DEST}")),
        Clean,
    );
    check(
        "large directResponse",
        &route(&format!(
            "directResponse: {{status: 200, body: {{string: {}}}}}",
            "x".repeat(200 * 1024)
        )),
        Warn(
            WarningKind::Istio,
            "spec.http[0].directResponse.body",
            "may impact control plane performance",
        ),
    );
}

#[test]
fn destination_rule_rules_istio_has() {
    check(
        "empty trafficPolicy",
        &dr("  host: a\n  trafficPolicy: {}\n"),
        Error("spec.trafficPolicy", "at least one field"),
    );
    check(
        "empty port-level entry",
        &dr("  host: a\n  trafficPolicy:\n    portLevelSettings:\n    - port: {number: 80}\n"),
        Error(
            "spec.trafficPolicy.portLevelSettings[0]",
            "port traffic policy must have at least one field",
        ),
    );
    check("tunnel target host", &dr("  host: a\n  trafficPolicy:\n    tunnel: {targetHost: \"not a host\", targetPort: 8080}\n"), Error("spec.trafficPolicy.tunnel.targetHost", "valid FQDN or IP"));
    check("tunnel with proxyProtocol", &dr("  host: a\n  trafficPolicy:\n    tunnel: {targetHost: a.com, targetPort: 8080}\n    proxyProtocol: {version: V1}\n"), Error("spec.trafficPolicy.proxyProtocol", "must not be set together"));
    check(
        "subset name",
        &dr("  host: a\n  subsets:\n  - name: v_1\n    labels: {v: \"1\"}\n"),
        Error("spec.subsets[0].name", "DNS-1123 label"),
    );
    check(
        "subset labels",
        &dr("  host: a\n  subsets:\n  - name: v1\n    labels: {v: \"-1\"}\n"),
        Error("spec.subsets[0].labels.v", "invalid label value"),
    );
    check("locality weight 0", &dr("  host: a\n  trafficPolicy:\n    loadBalancer:\n      localityLbSetting:\n        distribute:\n        - from: us-east/*\n          to: {us-east/*: 100, us-west/*: 0}\n"), Error("spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to.us-west/*", "range [1, 100]"));
    check("failover to itself", &dr("  host: a\n  trafficPolicy:\n    outlierDetection: {consecutive5xxErrors: 3}\n    loadBalancer:\n      localityLbSetting:\n        failover:\n        - {from: us-east, to: us-east}\n"), Error("spec.trafficPolicy.loadBalancer.localityLbSetting.failover[0]", "to itself"));
    check("failover with topology priority", &dr("  host: a\n  trafficPolicy:\n    outlierDetection: {consecutive5xxErrors: 3}\n    loadBalancer:\n      localityLbSetting:\n        failover:\n        - {from: us-east, to: us-west}\n        failoverPriority: [topology.kubernetes.io/zone]\n"), Error("spec.trafficPolicy.loadBalancer.localityLbSetting.failoverPriority", "topology label"));
    check("overlapping localities", &dr("  host: a\n  trafficPolicy:\n    loadBalancer:\n      localityLbSetting:\n        distribute:\n        - {from: us-east, to: {us-east: 100}}\n        - {from: us-east/zone1, to: {us-east: 100}}\n"), Error("spec.trafficPolicy.loadBalancer.localityLbSetting.distribute", "overlaps"));
    check("cookie attribute twice", &dr("  host: a\n  trafficPolicy:\n    loadBalancer:\n      consistentHash:\n        httpCookie:\n          name: c\n          ttl: 0s\n          attributes: [{name: SameSite, value: Lax}, {name: SameSite, value: Strict}]\n"), Error("spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.attributes[1].name", "duplicate cookie attribute"));
    check("configmap credential of another namespace", &dr("  host: a\n  trafficPolicy:\n    tls: {mode: SIMPLE, credentialName: configmap://other/ca}\n"), Error("spec.trafficPolicy.tls.credentialName", "namespace must match"));
}

#[test]
fn destination_rule_rules_istio_accepts() {
    check("DEFAULT h2UpgradePolicy with useClientProtocol", &dr("  host: a\n  trafficPolicy:\n    connectionPool:\n      http: {h2UpgradePolicy: DEFAULT, useClientProtocol: true}\n"), Clean);
    check("aggression below 1", &dr("  host: a\n  trafficPolicy:\n    loadBalancer:\n      simple: ROUND_ROBIN\n      warmup: {duration: 60s, aggression: 0.5}\n"), Clean);
    check("distribute with failoverPriority", &dr("  host: a\n  trafficPolicy:\n    outlierDetection: {consecutive5xxErrors: 3}\n    loadBalancer:\n      localityLbSetting:\n        distribute:\n        - {from: us-east/*, to: {us-east/*: 100}}\n        failoverPriority: [version]\n"), Clean);
    check("port listed twice", &dr("  host: a\n  trafficPolicy:\n    portLevelSettings:\n    - port: {number: 80}\n      loadBalancer: {simple: RANDOM}\n    - port: {number: 80}\n      loadBalancer: {simple: ROUND_ROBIN}\n"), Warn(WarningKind::Istio, "spec.trafficPolicy.portLevelSettings[1].port.number", "two portLevelSettings entries"));
    check(
        "negative consecutiveErrors",
        &dr("  host: a\n  trafficPolicy:\n    outlierDetection: {consecutiveErrors: -1}\n"),
        Warn(
            WarningKind::Deprecated,
            "spec.trafficPolicy.outlierDetection.consecutiveErrors",
            "is deprecated",
        ),
    );
    check("local origin failures 0", &dr("  host: a\n  trafficPolicy:\n    outlierDetection: {consecutiveLocalOriginFailures: 0}\n"), Clean);
    check(
        "ISTIO_MUTUAL with certificates",
        &dr(
            "  host: a\n  trafficPolicy:\n    tls: {mode: ISTIO_MUTUAL, caCertificates: /ca.pem}\n",
        ),
        Warn(
            WarningKind::Ignored,
            "spec.trafficPolicy.tls",
            "are ignored",
        ),
    );
    check("MUTUAL insecureSkipVerify with credentialName", &dr("  host: a\n  trafficPolicy:\n    tls: {mode: MUTUAL, credentialName: c, insecureSkipVerify: true}\n"), Clean);
    check("failover without outlierDetection", &dr("  host: a\n  trafficPolicy:\n    loadBalancer:\n      localityLbSetting:\n        failover:\n        - {from: us-east, to: us-west}\n"), Warn(WarningKind::Istio, "spec.trafficPolicy.loadBalancer.localityLbSetting", "outlier detection policy must be provided"));
    check("minimumRingSize deprecated", &dr("  host: a\n  trafficPolicy:\n    loadBalancer:\n      consistentHash: {httpHeaderName: x, minimumRingSize: 1024}\n"), Warn(WarningKind::Deprecated, "spec.trafficPolicy.loadBalancer.consistentHash.minimumRingSize", "deprecated"));
    check("selector without labels", &dr("  host: a\n  workloadSelector: {}\n  exportTo: [.]\n  trafficPolicy:\n    loadBalancer: {simple: RANDOM}\n"), Warn(WarningKind::Istio, "spec.workloadSelector", "without labels"));
}

#[test]
fn sidecar_rules() {
    check("ingress port name", &sc("  ingress:\n  - port: {number: 80, name: Bad_Name, protocol: HTTP}\n    defaultEndpoint: 127.0.0.1:8080\n"), Error("spec.ingress[0].port.name", "invalid port name"));
    check("ingress protocol", &sc("  ingress:\n  - port: {number: 80, name: h, protocol: SPDY}\n    defaultEndpoint: 127.0.0.1:8080\n"), Error("spec.ingress[0].port.protocol", "unsupported protocol"));
    check("ingress TLS on HTTP", &sc("  ingress:\n  - port: {number: 80, name: h, protocol: HTTP}\n    defaultEndpoint: 127.0.0.1:8080\n    tls: {mode: SIMPLE, serverCertificate: /c.pem, privateKey: /k.pem}\n"), Error("spec.ingress[0].tls", "cannot have TLS settings"));
    check("catch-all not last", &sc("  egress:\n  - hosts: [\"./*\"]\n  - port: {number: 80, name: h, protocol: HTTP}\n    hosts: [\"./*\"]\n"), Error("spec.egress[0]", "must be the last listener"));
    check("UDS captureMode", &sc("  egress:\n  - port: {number: 0, name: u, protocol: HTTP}\n    bind: unix:///run/a.sock\n    captureMode: IPTABLES\n    hosts: [\"./*\"]\n"), Error("spec.egress[0].captureMode", "DEFAULT or NONE"));
    check("egressProxy without port", &sc("  outboundTrafficPolicy:\n    mode: ALLOW_ANY\n    egressProxy: {host: proxy.example.com}\n"), Error("spec.outboundTrafficPolicy.egressProxy", "port must be set"));
    check("ingress connection pool", &sc("  ingress:\n  - port: {number: 80, name: h, protocol: HTTP}\n    defaultEndpoint: 127.0.0.1:8080\n    connectionPool: {}\n"), Error("spec.ingress[0].connectionPool", "must set tcp and/or http"));
    check(
        "short egress host",
        &sc("  egress:\n  - hosts: [\"./reviews\"]\n"),
        Error(
            "spec.egress[0].hosts[0]",
            "short names (non FQDN) are not allowed",
        ),
    );
    check("two UDS listeners", &sc("  egress:\n  - port: {number: 0, name: a, protocol: HTTP}\n    bind: unix:///run/a.sock\n    hosts: [\"./*\"]\n  - port: {number: 0, name: b, protocol: HTTP}\n    bind: unix:///run/b.sock\n    hosts: [\"./*\"]\n"), Clean);
    check("defaultEndpoint :port", &sc("  ingress:\n  - port: {number: 80, name: h, protocol: HTTP}\n    defaultEndpoint: \":8080\"\n"), Clean);
    check(
        "bind without port",
        &sc("  egress:\n  - bind: 127.0.0.1\n    hosts: [\"./*\"]\n"),
        Warn(
            WarningKind::Ignored,
            "spec.egress[0].bind",
            "bind without a port is ignored",
        ),
    );
    check("ingress PASSTHROUGH", &sc("  ingress:\n  - port: {number: 443, name: t, protocol: TLS}\n    defaultEndpoint: 127.0.0.1:8443\n    tls: {mode: PASSTHROUGH}\n"), Warn(WarningKind::Istio, "spec.ingress[0].tls.mode", "only SIMPLE and MUTUAL are supported"));
    check(
        "duplicated egress host",
        &sc("  egress:\n  - hosts: [\"./*\", \"./a.example.com\"]\n"),
        Warn(
            WarningKind::Istio,
            "spec.egress[0].hosts[1]",
            "duplicated egress host",
        ),
    );
    check(
        "*/* with others",
        &sc("  egress:\n  - hosts: [\"*/*\", \"ns1/*\"]\n"),
        Warn(
            WarningKind::Istio,
            "spec.egress[0].hosts",
            "`*/*` selects every host",
        ),
    );
    check("HTTP pool on TCP port", &sc("  ingress:\n  - port: {number: 9000, name: t, protocol: TCP}\n    defaultEndpoint: 127.0.0.1:9000\n    connectionPool: {http: {maxRetries: 1}}\n"), Warn(WarningKind::Istio, "spec.ingress[0].connectionPool.http", "only TCP settings will apply"));
    check("egressProxy ignored", &sc("  outboundTrafficPolicy:\n    mode: ALLOW_ANY\n    egressProxy: {host: proxy.example.com, port: {number: 3128}}\n"), Warn(WarningKind::Deprecated, "spec.outboundTrafficPolicy.egressProxy", "EgressProxy ignored"));
}

#[test]
fn service_and_workload_entry_rules() {
    check("port name", &se("  hosts: [a.example.com]\n  ports: [{number: 80, name: HTTP_WEB, protocol: HTTP}]\n  resolution: DNS\n"), Error("spec.ports[0].name", "invalid port name"));
    check("DYNAMIC_DNS on TCP", &se("  hosts: [\"*.example.com\"]\n  ports: [{number: 5432, name: pg, protocol: TCP}]\n  resolution: DYNAMIC_DNS\n"), Error("spec.ports[0]", "only HTTP, TLS, GRPC and HTTP2"));
    check("DNS endpoint on a socket", &se("  hosts: [a.example.com]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: DNS\n  endpoints: [{address: \"unix:///run/a.sock\"}]\n"), Error("spec.endpoints[0].address", "not a valid FQDN or an IP address"));
    check("endpoint labels", &se("  hosts: [a.example.com]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: STATIC\n  endpoints: [{address: 10.0.0.1, labels: {app: \"-x\"}}]\n"), Error("spec.endpoints[0].labels.app", "invalid label value"));
    let many: Vec<String> = (0..257).map(|i| format!("h{i}.example.com")).collect();
    check(
        "257 hosts",
        &se(&format!(
            "  hosts: [{}]\n  ports: [{{number: 80, name: http, protocol: HTTP}}]\n",
            many.join(", ")
        )),
        Error("spec.hosts", "at most 256 allowed"),
    );
    check("HTTP_PROXY protocol", &se("  hosts: [a.example.com]\n  ports: [{number: 3128, name: proxy, protocol: HTTP_PROXY}]\n  resolution: DNS\n"), Clean);
    check(
        "partial wildcard",
        &se("  hosts: [\"*x.example.com\"]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n"),
        Warn(WarningKind::Istio, "spec.hosts[0]", "partial wildcard"),
    );
    check("selector with NONE", &se("  hosts: [a.example.com]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  workloadSelector: {labels: {app: a}}\n"), Warn(WarningKind::Istio, "spec.workloadSelector", "should not be set when resolution mode is NONE"));
    check(
        "address unset with network",
        &we("  network: net1\n"),
        Warn(WarningKind::Istio, "spec", "address is unset with network"),
    );
}

#[test]
fn security_and_telemetry_rules() {
    check(
        "service account form",
        &ap("  rules:\n  - from:\n    - source:\n        serviceAccounts: [a/b/c]\n"),
        Error(
            "spec.rules[0].from[0].source.serviceAccounts[0]",
            "expected format",
        ),
    );
    check(
        "trust domain slash",
        &ap("  rules:\n  - from:\n    - source:\n        trustDomains: [a/b]\n"),
        Error(
            "spec.rules[0].from[0].source.trustDomains[0]",
            "must not contain '/'",
        ),
    );
    check(
        "trust domain two wildcards",
        &ap("  rules:\n  - from:\n    - source:\n        trustDomains: [\"*a*\"]\n"),
        Error(
            "spec.rules[0].from[0].source.trustDomains[0]",
            "at most one wildcard",
        ),
    );
    check(
        "when serviceAccount",
        &ap("  rules:\n  - when:\n    - key: source.serviceAccount\n      values: [\"ns/*\"]\n"),
        Error("spec.rules[0].when[0].values[0]", "wildcard not allowed"),
    );
    check(
        "dry-run True",
        &doc(
            "security.istio.io/v1",
            "AuthorizationPolicy",
            "p",
            "  action: ALLOW\n  rules:\n  - {}\n",
        )
        .replace(
            "namespace: ns}",
            "namespace: ns, annotations: {istio.io/dry-run: \"True\"}}",
        ),
        Clean,
    );
    check(
        "DENY with HTTP only",
        &ap("  action: DENY\n  rules:\n  - to:\n    - operation:\n        methods: [POST]\n"),
        Warn(
            WarningKind::Istio,
            "spec.rules[0]",
            "denies all traffic to TCP ports",
        ),
    );
    check("DENY with a port", &ap("  action: DENY\n  rules:\n  - to:\n    - operation:\n        methods: [POST]\n        ports: [\"8080\"]\n"), Clean);
    check(
        "issuer via jwksUri only",
        &ra("  jwtRules:\n  - jwksUri: https://example.com/jwks.json\n"),
        Clean,
    );
    check(
        "no issuer nor jwksUri",
        &ra("  jwtRules:\n  - audiences: [a]\n"),
        Error("spec.jwtRules[0].issuer", "issuer or jwksUri must be set"),
    );
    check("single JWK", &ra("  jwtRules:\n  - issuer: i\n    jwks: '{\"kty\": \"EC\", \"crv\": \"P-256\", \"x\": \"a\", \"y\": \"b\"}'\n"), Clean);
    check("private JWK", &ra("  jwtRules:\n  - issuer: i\n    jwks: '{\"keys\": [{\"kty\": \"EC\", \"crv\": \"P-256\", \"x\": \"a\", \"y\": \"b\", \"d\": \"c\"}]}'\n"), Warn(WarningKind::Istio, "spec.jwtRules[0].jwks", "private key material"));
    check(
        "issuer twice",
        &ra("  jwtRules:\n  - issuer: i\n  - issuer: i\n"),
        Warn(
            WarningKind::Istio,
            "spec.jwtRules[1].issuer",
            "has two jwtRules",
        ),
    );
    check(
        "custom tag without type",
        &tel("  tracing:\n  - customTags:\n      x: {}\n"),
        Clean,
    );
    check(
        "custom tag empty literal",
        &tel("  tracing:\n  - customTags:\n      x: {literal: {value: \"\"}}\n"),
        Error(
            "spec.tracing[0].customTags.x",
            "literal value may not be empty",
        ),
    );
    check(
        "two tracing entries",
        &tel("  tracing:\n  - randomSamplingPercentage: 1\n  - randomSamplingPercentage: 2\n"),
        Warn(WarningKind::Istio, "spec.tracing", "multiple tracing"),
    );
}

fn mesh(mesh: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: istio, namespace: istio-system}}\ndata:\n  mesh: |\n{mesh}")
}

#[test]
fn mesh_config_rules() {
    let authz = |service: &str| {
        mesh(&format!("    extensionProviders:\n    - name: ext\n      envoyExtAuthzHttp: {{service: \"{service}\", port: 8000}}\n"))
    };
    check(
        "ext-authz service form",
        &authz("not a host"),
        Error("data.mesh", "service \"not a host\" is invalid"),
    );
    check(
        "ext-authz service ns/host",
        &authz("foo/ext-authz.foo.svc.cluster.local"),
        Clean,
    );
    // Istio merges onto its defaults: an empty root namespace is the default one.
    let loaded = load_str(&mesh("    rootNamespace: \"\"\n"), "t.yaml");
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let (errors, _) = validate_all_with_warnings(&loaded.resources);
    assert!(errors.is_empty(), "{errors:?}");
    match &loaded.resources[0].spec {
        weft_api::Spec::MeshConfig(mc) => assert_eq!(mc.root_namespace, None),
        other => panic!("not a MeshConfig: {other:?}"),
    }
}

#[test]
fn metadata_rules() {
    let annotated = |a: &str| {
        sc("  egress:\n  - hosts: [\"./*\"]\n").replace(
            "namespace: ns}",
            &format!("namespace: ns, annotations: {{{a}: \"true\"}}}}"),
        )
    };
    check(
        "internal annotation",
        &annotated("internal.istio.io/parents"),
        Error(
            "metadata.annotations.internal.istio.io/parents",
            "internal to Istio",
        ),
    );
    check(
        "dry-run on a Sidecar",
        &annotated("istio.io/dry-run"),
        Error(
            "metadata.annotations.istio.io/dry-run",
            "unsupported annotation",
        ),
    );
    check("other annotations", &annotated("example.com/owner"), Clean);
}
