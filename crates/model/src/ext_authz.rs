//! CUSTOM AuthorizationPolicies: the MeshConfig `extensionProviders` entry a policy names,
//! compiled to what a proxy needs to call that external HTTP authorizer (its cluster, path
//! prefix, timeout, header lists, failure behaviour). A CUSTOM policy whose provider is
//! missing, not an HTTP authorizer, or one of several on one workload denies what it
//! matches — Istio's `-deny-due-to-bad-CUSTOM-action`.

use crate::names::{cluster_name, parse_duration_ms};
use crate::registry::fqdn;
use serde::{Deserialize, Serialize};
use weft_api::{ExtAuthzHttp, MeshConfig};

/// Istio's default ext_authz timeout.
const DEFAULT_TIMEOUT_MS: u64 = 600_000;

/// An external HTTP authorizer (`envoyExtAuthzHttp`), as a proxy calls it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtAuthzProvider {
    pub name: String,
    /// The mesh cluster of the authorizer (`outbound|port||host`).
    pub cluster: String,
    /// `host:port` sent as the check request's authority.
    pub authority: String,
    pub timeout_ms: u64,
    /// Prepended to the original path.
    pub path_prefix: String,
    /// On an authorizer error (unreachable, timeout, 5xx): let the request through.
    pub fail_open: bool,
    /// Status answered on an authorizer error when not failing open.
    pub status_on_error: u16,
    /// Request headers copied into the check (patterns: `x*`, `*x`, exact; any case).
    pub include_request_headers: Vec<String>,
    /// Headers set on every check request.
    pub additional_headers: Vec<(String, String)>,
    /// Authorizer response headers set on the upstream request when allowed.
    pub headers_to_upstream_on_allow: Vec<String>,
    /// Authorizer response headers sent to the client when denied (empty: all).
    pub headers_to_downstream_on_deny: Vec<String>,
    /// Authorizer response headers added to the client's response when allowed.
    pub headers_to_downstream_on_allow: Vec<String>,
}

/// Why a CUSTOM policy's provider cannot be used.
pub(crate) fn provider_problem(mc: Option<&MeshConfig>, name: &str) -> Option<String> {
    let p = mc.and_then(|m| m.extension_providers.iter().find(|p| p.name == name));
    match p {
        None => Some(format!("no extension provider {name:?} in MeshConfig extensionProviders")),
        Some(p) if p.envoy_ext_authz_http.is_none() => Some(format!(
            "extension provider {name:?} is {}, not envoyExtAuthzHttp (the only authorizer weft calls)",
            p.kind
        )),
        Some(_) => None,
    }
}

/// The provider `name` compiled, if MeshConfig declares it as an HTTP authorizer.
pub(crate) fn provider(mc: Option<&MeshConfig>, name: &str) -> Option<ExtAuthzProvider> {
    let p = mc?.extension_providers.iter().find(|p| p.name == name)?;
    let h: &ExtAuthzHttp = p.envoy_ext_authz_http.as_ref()?;
    // `[namespace/]host`: a short host is in the named namespace (else `default`).
    let (ns, host) = h.service.split_once('/').unwrap_or(("default", &h.service));
    let host = fqdn(host, ns);
    Some(ExtAuthzProvider {
        name: p.name.clone(),
        cluster: cluster_name(h.port, None, &host),
        authority: format!("{host}:{}", h.port),
        timeout_ms: h
            .timeout
            .as_deref()
            .and_then(parse_duration_ms)
            .unwrap_or(DEFAULT_TIMEOUT_MS),
        path_prefix: h.path_prefix.clone().unwrap_or_default(),
        fail_open: h.fail_open,
        status_on_error: h
            .status_on_error
            .as_deref()
            .and_then(|s| s.parse().ok())
            .unwrap_or(403),
        include_request_headers: if h.include_request_headers_in_check.is_empty() {
            h.include_headers_in_check.clone()
        } else {
            h.include_request_headers_in_check.clone()
        },
        additional_headers: h
            .include_additional_headers_in_check
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect(),
        headers_to_upstream_on_allow: h.headers_to_upstream_on_allow.clone(),
        headers_to_downstream_on_deny: h.headers_to_downstream_on_deny.clone(),
        headers_to_downstream_on_allow: h.headers_to_downstream_on_allow.clone(),
    })
}
