//! Findings: what `weft analyze` reports (code, severity, resource, location, message,
//! suggestion), and the table of every code with what it detects.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// How bad a finding is. Ordered: `Info < Warning < Error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl Severity {
    /// `error`, `warning` or `info`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "error" => Ok(Severity::Error),
            "warning" | "warn" => Ok(Severity::Warning),
            "info" => Ok(Severity::Info),
            other => Err(format!(
                "unknown severity `{other}`; expected error, warning or info"
            )),
        }
    }
}

/// One problem found in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable code, e.g. `WA0103` (see [`CODES`]).
    pub code: &'static str,
    pub severity: Severity,
    /// `Kind/namespace/name`; `None` for errors that precede typing (YAML syntax, ...).
    pub resource: Option<String>,
    pub file: String,
    /// 1-based; 0 when the finding concerns a whole file.
    pub line: usize,
    /// 1-based; 0 when the finding concerns a whole file.
    pub column: usize,
    pub message: String,
    /// What to do about it.
    pub suggestion: Option<String>,
}

impl Finding {
    /// `Kind ns/name` for display (`VirtualService necpgame/api`).
    pub fn resource_display(&self) -> Option<String> {
        let r = self.resource.as_deref()?;
        Some(match r.split_once('/') {
            Some((kind, rest)) => format!("{kind} {rest}"),
            None => r.to_owned(),
        })
    }
}

/// A code with its default severity and a one-line description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeInfo {
    pub code: &'static str,
    pub severity: Severity,
    pub summary: &'static str,
}

/// YAML syntax, envelope or schema error reported by the loader.
pub const LOAD_ERROR: &str = "WA0001";
/// Single-resource validation error.
pub const VALIDATION_ERROR: &str = "WA0002";
/// VirtualService names a Gateway that does not exist.
pub const UNKNOWN_GATEWAY: &str = "WA0101";
/// Route destination host is not in the registry.
pub const UNKNOWN_HOST: &str = "WA0102";
/// Route destination subset is not defined by a DestinationRule for the host.
pub const UNKNOWN_SUBSET: &str = "WA0103";
/// DestinationRule subset labels select no endpoint of the host's service.
pub const EMPTY_SUBSET: &str = "WA0104";
/// Two VirtualServices for the same host on the same gateway.
pub const CONFLICTING_VS: &str = "WA0105";
/// Gateway selector matches no workload.
pub const GATEWAY_NO_WORKLOAD: &str = "WA0106";
/// DestinationRule client TLS contradicts the server's PeerAuthentication.
pub const MTLS_CONFLICT: &str = "WA0107";
/// AuthorizationPolicy names a namespace nothing in the config has.
pub const AUTHZ_UNKNOWN_NAMESPACE: &str = "WA0108";
/// AuthorizationPolicy names a principal / service account no workload has.
pub const AUTHZ_UNKNOWN_PRINCIPAL: &str = "WA0109";
/// The same host in two ServiceEntries visible to one namespace.
pub const SE_HOST_COLLISION: &str = "WA0110";
/// A weighted destination that receives no traffic.
pub const DEAD_DESTINATION: &str = "WA0111";
/// An HTTP route that can never match.
pub const SHADOWED_ROUTE: &str = "WA0112";
/// One match entry of a route that can never match (the route still can).
pub const SHADOWED_MATCH: &str = "WA0113";
/// DestinationRule host that is not in the registry.
pub const DR_UNKNOWN_HOST: &str = "WA0114";
/// What Istio's validation accepts with a warning (istioctl IST0133).
pub const VALIDATION_WARNING: &str = "WA0004";
/// A deprecated field Istio still honours.
pub const DEPRECATED: &str = "WA0003";
/// A setting Istio accepts but ignores where it is written.
pub const IGNORED_SETTING: &str = "WA0116";
/// A route matching JWT claims on a gateway no RequestAuthentication selects.
pub const JWT_CLAIM_ROUTE_WITHOUT_AUTHN: &str = "WA0117";
/// Two resources with the same kind, namespace and name.
pub const DUPLICATE_RESOURCE: &str = "WA0115";
/// An HTTP route delegates to a VirtualService that does not exist or cannot be a delegate.
pub const UNKNOWN_DELEGATE: &str = "WA0118";
/// Configuration weft loads but does not enforce yet (the list the mesh prints).
pub const NOT_ENFORCED: &str = "WA0200";
/// A kind weft knows but does not support (EnvoyFilter, WasmPlugin, Gateway API kinds…).
pub const NOT_SUPPORTED: &str = "WA0201";

/// The `istioctl analyze` code that reports the same problem, where there is one.
pub fn istio_code(code: &str) -> Option<&'static str> {
    Some(match code {
        VALIDATION_ERROR => "IST0106",
        DEPRECATED => "IST0002",
        VALIDATION_WARNING => "IST0133",
        UNKNOWN_GATEWAY | UNKNOWN_HOST | UNKNOWN_SUBSET | GATEWAY_NO_WORKLOAD | DR_UNKNOWN_HOST => {
            "IST0101"
        }
        CONFLICTING_VS => "IST0109",
        SHADOWED_ROUTE => "IST0130",
        SHADOWED_MATCH => "IST0131",
        JWT_CLAIM_ROUTE_WITHOUT_AUTHN => "IST0149",
        _ => return None,
    })
}

/// Every code `weft analyze` can report.
pub const CODES: &[CodeInfo] = &[
    CodeInfo { code: LOAD_ERROR, severity: Severity::Error, summary: "YAML syntax, envelope (apiVersion/kind/metadata) or schema error (unknown field, wrong type)" },
    CodeInfo { code: VALIDATION_ERROR, severity: Severity::Error, summary: "single-resource validation error (Istio's field rules)" },
    CodeInfo { code: UNKNOWN_GATEWAY, severity: Severity::Error, summary: "VirtualService names a Gateway that does not exist (istioctl IST0101)" },
    CodeInfo { code: UNKNOWN_HOST, severity: Severity::Error, summary: "route/mirror destination host matches no ServiceEntry host visible to the VirtualService (IST0101)" },
    CodeInfo { code: UNKNOWN_SUBSET, severity: Severity::Error, summary: "destination subset not defined by any DestinationRule for the host (IST0101)" },
    CodeInfo { code: EMPTY_SUBSET, severity: Severity::Warning, summary: "DestinationRule subset labels select no endpoint (WorkloadEntry or inline endpoint) of the host's service" },
    CodeInfo { code: CONFLICTING_VS, severity: Severity::Error, summary: "two VirtualServices for the same host on the same gateway (IST0109; error on `mesh`, warning on a Gateway, where routes are merged in unspecified order)" },
    CodeInfo { code: GATEWAY_NO_WORKLOAD, severity: Severity::Error, summary: "Gateway selector matches no workload (IST0101)" },
    CodeInfo { code: MTLS_CONFLICT, severity: Severity::Error, summary: "DestinationRule TLS mode contradicts the effective PeerAuthentication of the host's workloads (IST0113-like)" },
    CodeInfo { code: AUTHZ_UNKNOWN_NAMESPACE, severity: Severity::Warning, summary: "AuthorizationPolicy names a namespace that no resource in the config has" },
    CodeInfo { code: AUTHZ_UNKNOWN_PRINCIPAL, severity: Severity::Warning, summary: "AuthorizationPolicy names a principal / service account that no workload has" },
    CodeInfo { code: SE_HOST_COLLISION, severity: Severity::Warning, summary: "the same host in two ServiceEntries visible to the same namespace" },
    CodeInfo { code: DEAD_DESTINATION, severity: Severity::Warning, summary: "a destination whose weight is 0 while others are weighted: it never gets traffic" },
    CodeInfo { code: SHADOWED_ROUTE, severity: Severity::Warning, summary: "an HTTP route that can never match: an earlier route always matches first (IST0130-like)" },
    CodeInfo { code: SHADOWED_MATCH, severity: Severity::Info, summary: "one match entry of an HTTP route is covered by an earlier route (the route matches other requests)" },
    CodeInfo { code: DR_UNKNOWN_HOST, severity: Severity::Warning, summary: "DestinationRule host matches no ServiceEntry host (the rule applies to nothing)" },
    CodeInfo { code: JWT_CLAIM_ROUTE_WITHOUT_AUTHN, severity: Severity::Error, summary: "a route matches @request.auth.claims on a gateway whose workload no RequestAuthentication selects: it never matches (IST0149)" },
    CodeInfo { code: UNKNOWN_DELEGATE, severity: Severity::Error, summary: "an HTTP route delegates to a VirtualService that does not exist, or that has hosts (only one without hosts can be a delegate): the route is dropped, as Istio drops it" },
    CodeInfo { code: DUPLICATE_RESOURCE, severity: Severity::Error, summary: "the same kind/namespace/name defined twice (Kubernetes keeps one object per name; weft refuses to load it)" },
    CodeInfo { code: DEPRECATED, severity: Severity::Warning, summary: "a deprecated field Istio still honours (istioctl warns about it too)" },
    CodeInfo { code: VALIDATION_WARNING, severity: Severity::Warning, summary: "what Istio's validation accepts with a warning (IST0133), or what the API reference says is unsupported though Istio accepts it" },
    CodeInfo { code: IGNORED_SETTING, severity: Severity::Warning, summary: "a setting Istio accepts but ignores where it is written (e.g. a Sidecar egress bind without a port)" },
    CodeInfo { code: NOT_ENFORCED, severity: Severity::Info, summary: "loaded but not enforced yet: weft does not implement these semantics yet (the same list `weft up` prints)" },
    CodeInfo { code: NOT_SUPPORTED, severity: Severity::Info, summary: "a kind weft knows but does not support (EnvoyFilter, ProxyConfig, WorkloadGroup, WasmPlugin, Gateway API kinds): loaded and ignored" },
];
