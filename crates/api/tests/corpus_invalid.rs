//! Every file of `istio-corpus/invalid/` must be rejected — by the loader or by
//! `validate_all` — and the rejection must explain the file's
//! `# expect-invalid: <reason>` line. Every file of `valid/` must load and
//! validate with zero errors.
//!
//! "Gist" is defined by [`GIST`]: for each invalid file, one or more key terms
//! copied verbatim from the file's own reason — the field, the offending value or
//! the rule — all of which must occur (case-insensitively) in one rejection message.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use weft_api::{load_str, validate_all, Kind};

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/istio-corpus")
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    files
}

/// Per invalid file (name without `.yaml`): key terms of its `expect-invalid`
/// reason — each a verbatim, case-insensitive part of the reason (the field,
/// the offending value or the rule) — that must all occur in one rejection message.
/// Backticks are ignored on both sides (the loader quotes names with them).
const GIST: &[(&str, &[&str])] = &[
    ("crds-authz__service-account-and-namespace", &["Cannot set serviceAccounts with namespaces or principals"]),
    ("crds-destinationrule__warmup-minimum-percent-150", &["warmup.minimumPercent: Invalid value"]),
    ("crds-destinationrule__warmup-missing-duration", &["warmup", "duration"]),
    ("crds-destinationrule__warmup-negative-aggression", &["warmup.aggression: Invalid value"]),
    ("crds-peerauth__bad-mode", &["BLAH"]),
    ("crds-peerauth__empty-port-level", &["portLevelMtls in body should have at least 1 properties"]),
    (
        "crds-peerauth__high-port",
        &["port must be between 1-65535"],
    ),
    (
        "crds-peerauth__zero-port",
        &["port must be between 1-65535"],
    ),
    ("crds-reqauth__bad-target-group", &["spec.targetRef.group in body should match"]),
    ("crds-reqauth__bad-target-kind", &["spec.targetRef.kind in body should match"]),
    ("crds-reqauth__bad-target-name", &["spec.targetRef", "name"]),
    ("crds-reqauth__bad-timeout", &["must be a valid duration greater than"]),
    ("crds-reqauth__empty-aud", &["audiences[0] in body should be at least 1 chars long"]),
    ("crds-reqauth__invalid-claim-to-header-header-empty", &["header in body should be at least 1 chars long"]),
    ("crds-reqauth__invalid-claim-to-header-unset", &["spec.jwtRules[0].outputClaimToHeaders[0]"]),
    ("crds-reqauth__invalid-from-headers-no-name", &["spec.jwtRules[0].fromHeaders[0]", "name"]),
    ("crds-reqauth__invalid-jwks", &["url must have scheme"]),
    ("crds-reqauth__invalid-presence-value", &["MANDATORY"]),
    ("crds-reqauth__invalid-space-delimited-claims", &["spaceDelimitedClaims[0] in body should be at least 1 chars long"]),
    ("crds-reqauth__ref-and-selector", &["only one of targetRefs or selector can be set"]),
    ("crds-serviceentry__bad-cidr-resolution", &["CIDR addresses are allowed only for NONE/STATIC resolution types"]),
    ("crds-serviceentry__bad-host-wildcard", &["hostname cannot be wildcard"]),
    ("crds-serviceentry__bad-port", &["port must be between 1-65535"]),
    ("crds-serviceentry__bad-selector-value", &["wildcard is not supported in selector"]),
    ("crds-serviceentry__dns-rr-with-multiple-endpoints", &["DNS_ROUND_ROBIN mode cannot have multiple endpoints"]),
    (
        "crds-serviceentry__duplicate-ports-name",
        &["Duplicate value"],
    ),
    ("crds-serviceentry__duplicate-ports-number", &["port number cannot be duplicated"]),
    ("crds-serviceentry__missing-host", &["spec.hosts: Required value"]),
    ("crds-serviceentry__none-with-endpoints", &["NONE mode cannot set endpoints"]),
    ("crds-serviceentry__selector-and-endpoints", &["only one of WorkloadSelector or Endpoints can be set"]),
    ("crds-telemetry__bad-custom-metric", &["customMetric in body should be at least 1 chars lon"]),
    ("crds-telemetry__bad-provider", &["name in body should be at least 1 chars long"]),
    ("crds-workloadentry__bad-port-name", &["spec.ports: Invalid value"]),
    ("crds-workloadentry__bad-uds-dir", &["UDS may not be a dir"]),
    ("crds-workloadentry__high-port", &["port must be between 1-65535"]),
    (
        "crds-workloadentry__missing-address",
        &["Address is required"],
    ),
    ("crds-workloadentry__uds-with-ports", &["UDS may not include ports"]),
    ("go-ap__bad-ip-and-port", &["ipBlocks/notIpBlocks must be IPs or CIDRs"]),
    ("go-ap__condition-bad-ip", &["when source.ip value \"a.b.c.d\" is not an IP/CIDR"]),
    ("go-ap__condition-no-values", &["when condition needs at least one of values or notValues"]),
    ("go-ap__custom-empty-provider", &["CUSTOM action requires a non-empty provider.name"]),
    ("go-ap__deny-without-rules", &["DENY action without rules would never match"]),
    ("go-ap__dry-run-bad-value", &["istio.io/dry-run annotation must be \"true\" or \"false\""]),
    ("go-ap__empty-principal-value", &["empty string in principals is not allowed"]),
    (
        "go-ap__from-empty",
        &["rule.from must not be an empty list"],
    ),
    ("go-ap__provider-with-allow", &["provider may only be set with action CUSTOM"]),
    ("go-dr__duplicate-subset-names", &["duplicate subset name \"foo\""]),
    ("go-dr__empty-host", &["destination rule host must not be empty"]),
    ("go-dr__h2-upgrade-and-use-client-protocol", &["h2UpgradePolicy and useClientProtocol cannot both be set"]),
    ("go-dr__insecure-skip-verify-with-credential", &["insecureSkipVerify=true cannot be combined with CA material"]),
    ("go-dr__local-origin-without-split", &["consecutiveLocalOriginFailures requires splitExternalLocalOriginErrors: true"]),
    ("go-dr__max-ejection-percent-105", &["outlierDetection.maxEjectionPercent must be within [0, 100]"]),
    ("go-dr__min-health-percent-negative", &["outlierDetection.minHealthPercent must be within [0, 100]"]),
    ("go-dr__missing-subset-name", &["subset name must not be empty"]),
    ("go-dr__negative-max-connections", &["connectionPool.tcp.maxConnections must be >= 0"]),
    ("go-dr__negative-max-retries", &["connectionPool.http.maxRetries must be >= 0"]),
    ("go-gateway__bind-bad-ip", &["server bind \"foo.bar\" is not a valid IP address or unix socket"]),
    ("go-gateway__duplicate-port-names", &["server port names must be unique within a Gateway (\"foo\" used twice)"]),
    ("go-gateway__https-without-tls", &["HTTPS server must have TLS settings"]),
    ("go-gateway__mutual-no-client-ca", &["MUTUAL TLS with file-based certs requires caCertificates"]),
    ("go-gateway__partial-wildcard", &["partial wildcard \"*bar.com\" not allowed in gateway hosts"]),
    ("go-gateway__short-name-host", &["gateway server hosts must be FQDNs (short name \"foo\" rejected)"]),
    ("go-gateway__simple-credential-and-files", &["only one of credentialName/credentialNames"]),
    ("go-gateway__simple-no-server-cert", &["SIMPLE TLS without credentialName requires serverCertificate"]),
    ("go-gateway__tilde-namespace-host", &["invalid namespace value \"~\" in gateway server host \"~/foo.bar.com\""]),
    ("go-ra__bad-inline-jwks", &["inline jwks \"foo\" is not a valid JWKS document"]),
    ("go-ra__bad-output-header-name", &["outputClaimToHeaders[].header \"abc%123\" is not a valid header name"]),
    ("go-ra__dry-run-annotation", &["istio.io/dry-run annotation is not supported on RequestAuthentication"]),
    ("go-ra__empty-from-header-name", &["fromHeaders[].name must not be empty"]),
    ("go-ra__jwksuri-bad-port", &["jwksUri \"https://foo.com:not-a-number\" has an invalid port"]),
    (
        "go-se__bad-host",
        &["host \"-\" is not a valid domain name"],
    ),
    ("go-se__dynamic-dns-fqdn-host", &["resolution DYNAMIC_DNS requires wildcard hosts"]),
    ("go-se__static-fqdn-endpoint", &["resolution STATIC requires IP (or unix socket) endpoint addresses; \"google.com\" given"]),
    ("go-se__undefined-endpoint-port", &["endpoint port name \"http-dne\" is not defined in spec.ports"]),
    ("go-sidecar__egress-proxy-registry-only", &["outboundTrafficPolicy.egressProxy is only valid with mode ALLOW_ANY"]),
    ("go-sidecar__exclude-invalid-namespace", &["\"~Invalid_NS/*\": namespace is not a valid DNS-1123 label"]),
    ("go-sidecar__ingress-non-loopback-endpoint", &["(\"1.1.1.1:90\" given)"]),
    ("go-sidecar__ingress-tls-istio-mutual", &["sidecar ingress TLS mode ISTIO_MUTUAL is not allowed"]),
    ("go-sidecar__ingress-without-port", &["ingress listener must specify a port"]),
    ("go-sidecar__partial-wildcard-host", &["egress host \"test/*a.com\" uses a partial wildcard"]),
    ("go-sidecar__two-catch-all-egress", &["only one egress listener without a port (catch-all) is allowed"]),
    ("go-sidecar__uds-bind-inbound", &["ingress listeners cannot bind to a unix domain socket"]),
    ("go-telemetry__nil-custom-tag", &["custom tag 'clusterID' may not have a nil value"]),
    ("go-telemetry__sampling-over-100", &["randomSamplingPercentage must be within [0, 100]"]),
    ("go-vs__authority-rewrite-and-header", &["cannot set :authority both via headers.request.set and rewrite.authority"]),
    ("go-vs__bad-gateway-name", &["gateway name \"b@dgateway\" is not a valid name"]),
    ("go-vs__bad-host", &["host \"foo.ba!r\" is not a valid domain name"]),
    ("go-vs__cors-bad-method", &["corsPolicy.allowMethods contains an unknown method \"PUTT\""]),
    ("go-vs__cors-sub-ms-maxage", &["corsPolicy.maxAge", "millisecond precision", "2.000000042s"]),
    ("go-vs__delegate-with-tcp", &["a delegate VirtualService (no hosts) may only contain http routes"]),
    ("go-vs__empty-header-name-add", &["header operation with an empty header name"]),
    ("go-vs__empty-method-prefix", &["method match with an empty prefix is not allowed"]),
    ("go-vs__empty-prefix-header-match", &["header match with an empty prefix is not allowed"]),
    ("go-vs__fault-abort-negative-percent", &["fault abort percentage", "must not be negative"]),
    ("go-vs__fault-abort-status-9000", &["fault abort httpStatus 9000 is not a valid HTTP status"]),
    ("go-vs__gateway-namespace-wildcard", &["gateway reference \"ns1/*\" is not allowed"]),
    ("go-vs__mirror-and-mirrors", &["only one of mirror or mirrors may be set"]),
    ("go-vs__mirror-percentage-over-100", &["mirrorPercentage", "must be within [0, 100]", "101"]),
    ("go-vs__no-routes", &["virtual service must have at least one http, tcp or tls route"]),
    ("go-vs__prefix-rewrite-redirect-exact-match", &["redirect.prefixRewrite requires a prefix (or absent) uri match"]),
    ("go-vs__redirect-and-route", &["HTTP route cannot contain both route and redirect"]),
    ("go-vs__retry-bad-retryon", &["retryOn contains an unknown policy (\"invalid policy\")"]),
    ("go-vs__retry-status-600", &["retryOn HTTP status 600 is out of range"]),
    ("go-vs__root-delegate-and-route", &["a root route that delegates must not also specify route/redirect"]),
    ("go-vs__route-without-destination", &["route", "destination"]),
    ("go-vs__tcp-route-without-destination", &["TCP route must have at least one destination"]),
    ("go-vs__unescaped-percent-header-value", &["header value \"abcd%oijasodifj\" has an unescaped %"]),
    ("go-vs__wildcard-host-for-mesh", &["host \"*\" is not allowed when the VirtualService applies to the mesh"]),
    ("go-vs__without-headers-bad-regex", &["withoutHeaders regex \"?\" is not a valid RE2 expression"]),
    ("go-we__address-with-port", &["address \"invaliddns.com:9443\" is neither an IP, FQDN nor unix socket"]),
    ("istioctl__unknown-top-level-key", &["unknown", "unexpected_junk"]),
    (
        "own-ap__bad-action",
        &["action", "one of ALLOW, DENY, AUDIT, CUSTOM"],
    ),
    (
        "own-ap__bad-cidr",
        &["bad CIDR range", "\"10.0.0.0/33\"", "ipBlocks"],
    ),
    ("own-ap__service-account-wildcard", &["wildcard not allowed in serviceAccounts"]),
    ("own-ap__trust-domain-middle-wildcard", &["trustDomains wildcard only allowed at start or end (\"clu*ster.local\")"]),
    ("own-vs__bad-source-namespace", &["match.sourceNamespace \"Bad_NS\" is not a valid DNS-1123 label"]),
    ("own-vs__match-port-out-of-range", &["port 70000", "1-65535"]),
    ("own-vs__negative-timeout", &["timeout", "must be a valid duration", "\"-1s\""]),
];

/// Lowercase, without backticks.
fn normalize(s: &str) -> String {
    s.replace('`', "").to_lowercase()
}

/// The `# expect-invalid:` reason of a corpus file.
fn reason(text: &str) -> Option<&str> {
    text.lines()
        .find_map(|l| l.strip_prefix("# expect-invalid:"))
        .map(str::trim)
}

/// The kinds of a file's documents (from `kind:` lines at column 0).
fn kinds(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("kind:"))
        .map(|k| k.trim().to_owned())
        .collect()
}

#[test]
fn every_invalid_file_is_rejected_with_its_gist() {
    let files = yaml_files(&corpus().join("invalid"));
    assert_eq!(files.len(), 118, "expected the 118 invalid corpus files");
    let gist: BTreeMap<&str, &[&str]> = GIST.iter().copied().collect();
    assert_eq!(gist.len(), GIST.len(), "duplicate GIST entries");
    let mut per_kind = BTreeMap::<String, (usize, usize)>::new();
    let (mut at_load, mut at_validation, mut matched) = (0, 0, 0);
    let mut failures = Vec::new();
    for file in &files {
        let stem = file
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("utf-8 name");
        let text = std::fs::read_to_string(file).expect("readable corpus file");
        let reason = reason(&text).unwrap_or_else(|| panic!("{stem}: no expect-invalid line"));
        let Some(expected) = gist.get(stem) else {
            failures.push(format!("{stem}: no GIST entry (reason: {reason})"));
            continue;
        };
        let reason_norm = normalize(reason);
        for term in *expected {
            assert!(
                reason_norm.contains(&normalize(term)),
                "{stem}: gist term {term:?} is not part of its reason {reason:?}"
            );
        }
        let result = load_str(&text, &file.display().to_string());
        let mut messages: Vec<String> = result.errors.iter().map(|e| e.to_string()).collect();
        if messages.is_empty() {
            messages = validate_all(&result.resources)
                .iter()
                .map(|e| e.to_string())
                .collect();
            if !messages.is_empty() {
                at_validation += 1;
            }
        } else {
            at_load += 1;
        }
        let kind = kinds(&text)
            .into_iter()
            .find(|k| Kind::from_name(k).is_some())
            .unwrap_or_default();
        let entry = per_kind.entry(kind).or_default();
        if messages.is_empty() {
            entry.0 += 1;
            failures.push(format!("{stem}: accepted (reason: {reason})"));
            continue;
        }
        entry.1 += 1;
        let has_all = |m: &String| {
            let m = normalize(m);
            expected.iter().all(|t| m.contains(&normalize(t)))
        };
        if messages.iter().any(has_all) {
            matched += 1;
        } else {
            failures.push(format!(
                "{stem}: rejected without the gist {expected:?} (reason: {reason}):\n    {}",
                messages.join("\n    ")
            ));
        }
    }
    println!(
        "invalid corpus: {} files, {} rejected ({at_load} by the loader, {at_validation} by validation), {matched} with the gist matched",
        files.len(),
        at_load + at_validation
    );
    for (kind, (accepted, rejected)) in &per_kind {
        println!("  {kind}: {rejected} rejected, {accepted} accepted");
    }
    assert!(
        failures.is_empty(),
        "{} problems:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_valid_file_loads_and_validates_cleanly() {
    let files = yaml_files(&corpus().join("valid"));
    let mut per_kind = BTreeMap::<Kind, usize>::new();
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("readable corpus file");
        let result = load_str(&text, &file.display().to_string());
        failures.extend(result.errors.iter().map(|e| e.to_string()));
        failures.extend(
            validate_all(&result.resources)
                .iter()
                .map(|e| e.to_string()),
        );
        for r in &result.resources {
            *per_kind.entry(r.kind).or_default() += 1;
        }
    }
    let total: usize = per_kind.values().sum();
    println!(
        "valid corpus: {} files, {total} resources accepted",
        files.len()
    );
    for (kind, n) in &per_kind {
        println!("  {kind}: {n} accepted");
    }
    assert!(
        failures.is_empty(),
        "{} errors in the valid corpus:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
