//! MeshConfig (the `mesh` key of the ConfigMap `istio`): the fields weft reads, as
//! istio/istio's `validateExtensionProvider` and `ValidateExtensionProviderEnvoyExtAuthzHTTP`
//! (`pkg/config/validation/agent/extensionprovider.go`) check them — unique non-empty
//! provider names; an HTTP authorizer's service (`[namespace/]host` or IP), port, path
//! prefix, timeout and error status. (An empty rootNamespace is Istio's default, read as
//! unset by the loader.)

use super::Errs;
use crate::MeshConfig;
use std::collections::BTreeSet;

pub(super) fn validate(mc: &MeshConfig, errs: &mut Errs) {
    const AT: &str = "data.mesh";
    if let Some(e) = &mc.access_log_encoding {
        if !["TEXT", "JSON"].contains(&e.as_str()) {
            errs.at(AT, format!("accessLogEncoding {e:?} must be TEXT or JSON"));
        }
    }
    let mut names = BTreeSet::new();
    for (i, p) in mc.extension_providers.iter().enumerate() {
        let at = format!("extensionProviders[{i}]");
        if p.name.is_empty() {
            errs.at(AT, format!("{at}.name is required"));
        } else if !names.insert(p.name.as_str()) {
            errs.at(
                AT,
                format!(
                    "{at}.name {:?} is used by another extension provider; names must be unique",
                    p.name
                ),
            );
        }
        if let Some(o) = &p.opentelemetry {
            if o.service.is_empty() || !(1..=65535).contains(&o.port) {
                errs.at(
                    AT,
                    format!(
                        "{at}.opentelemetry needs service (the collector's host) and port 1-65535"
                    ),
                );
            }
        }
        if let Some(f) = &p.envoy_file_access_log {
            if f.path.is_empty() {
                errs.at(
                    AT,
                    format!("{at}.envoyFileAccessLog.path is required (a file, or /dev/stdout)"),
                );
            }
        }
        let Some(h) = &p.envoy_ext_authz_http else {
            continue;
        };
        let at = format!("{at}.envoyExtAuthzHttp");
        if h.service.is_empty() {
            errs.at(
                AT,
                format!("{at}.service is required: the authorizer's host (`[namespace/]host`)"),
            );
        } else if !service_ok(&h.service) {
            errs.at(AT, format!("{at}.service {:?} is invalid: use an FQDN or IP (ext-authz.foo.svc.cluster.local), or namespace/FQDN", h.service));
        }
        if !(1..=65535).contains(&h.port) {
            errs.at(AT, format!("{at}.port {} must be 1-65535", h.port));
        }
        if h.path_prefix
            .as_deref()
            .is_some_and(|p| !p.starts_with('/'))
        {
            errs.at(AT, format!("{at}.pathPrefix must start with /"));
        }
        if let Some(t) = &h.timeout {
            if !super::valid_duration(t) {
                errs.at(
                    AT,
                    format!("{at}.timeout {t:?} is not a duration (e.g. 500ms, 2s)"),
                );
            }
        }
        if let Some(s) = &h.status_on_error {
            if !s.parse::<u32>().is_ok_and(super::common::is_known_status) {
                errs.at(
                    AT,
                    format!("{at}.statusOnError {s:?} must be an HTTP status code"),
                );
            }
        }
    }
}

/// Istio's `validateExtensionProviderService`: an FQDN or IP, or `namespace/host` with a
/// `*`, `.` or DNS-label namespace and an FQDN (optionally `*.`-prefixed) host.
fn service_ok(service: &str) -> bool {
    use super::common::{is_dns_name, is_namespace};
    match service.split_once('/') {
        None => is_dns_name(service) || service.parse::<std::net::IpAddr>().is_ok(),
        Some((ns, host)) => {
            let ns = ns.strip_prefix('~').unwrap_or(ns);
            let ns_ok = matches!(ns, "*" | ".") || is_namespace(ns);
            let bare = host.strip_prefix("*.").unwrap_or(host);
            ns_ok && (host == "*" || (host.contains('.') && is_dns_name(bare)))
        }
    }
}
