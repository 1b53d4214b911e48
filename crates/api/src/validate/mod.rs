//! Semantic validation of loaded resources, following Istio's own rules (see the
//! per-kind modules). Every problem is reported at the `file:line:col` of the
//! offending field, with its path and what to do about it.

mod authorization_policy;
mod client_tls;
mod common;
mod connection_pool;
mod crd_limits;
mod deprecated;
mod destination_rule;
mod gateway;
mod headers;
mod http_policies;
mod http_route;
mod l4_routes;
mod load_balancer;
mod mesh_config;
mod policy_target;
mod security;
mod service_entry;
mod sidecar;
mod telemetry;
mod virtual_service;
mod workload_entry;
mod workload_group;

pub use common::{duration_ms, valid_duration};
pub use report::{load_valid_report, Reloader, ValidConfig, ValidationWarning, WarningKind};

mod report;

use crate::{Resource, Spec};

/// A validation problem, located at the offending field of its resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    pub file: String,
    /// 1-based line of the offending field (of the resource when it was not written).
    pub line: usize,
    /// 1-based column of the offending field.
    pub column: usize,
    /// `Kind/namespace/name`.
    pub resource: String,
    /// Path of the offending field (`spec.http[0].route[1].weight`).
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for ValidationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}: {}",
            self.file, self.line, self.column, self.resource, self.path, self.message
        )
    }
}

impl std::error::Error for ValidationError {}

/// One finding about one resource, before it is located: `(path, message, at the key,
/// None for an error or the kind of warning)`.
type Item = (String, String, bool, Option<WarningKind>);

/// Problems (errors, and warnings about what Istio accepts but says something about) found
/// in one resource, before they are located.
#[derive(Default)]
pub(crate) struct Errs {
    items: Vec<Item>,
}

impl Errs {
    /// A problem with the value at `path`.
    pub fn at(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.items.push((path.into(), message.into(), false, None));
    }

    /// A problem with the presence of the field at `path` (located at its key).
    pub fn key(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.items.push((path.into(), message.into(), true, None));
    }

    /// Whether an error was already found at `path`, inside it or at a field holding it.
    pub fn has_problem_at(&self, path: &str) -> bool {
        let within = |inner: &str, outer: &str| {
            inner
                .strip_prefix(outer)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
        };
        self.items
            .iter()
            .any(|(p, _, _, kind)| kind.is_none() && (within(p, path) || within(path, p)))
    }

    /// A warning about the field at `path` (located at its key): Istio accepts it.
    pub fn warn(&mut self, kind: WarningKind, path: impl Into<String>, message: impl Into<String>) {
        self.items
            .push((path.into(), message.into(), true, Some(kind)));
    }
}

/// Loads and validates a folder (or file) the way the control plane and `weft up` accept
/// it: every load and validation error (and duplicate definitions), or the resources.
pub fn load_valid(path: &std::path::Path) -> Result<Vec<Resource>, Vec<String>> {
    load_valid_with_unsupported(path).map(|(resources, _)| resources)
}

/// Like [`load_valid`], with what the folder holds that weft knows but does not support
/// (EnvoyFilter, WasmPlugin, Gateway API kinds, …), one line each:
/// `Kind (file:line): not supported …`.
pub fn load_valid_with_unsupported(
    path: &std::path::Path,
) -> Result<(Vec<Resource>, Vec<String>), Vec<String>> {
    load_valid_report(path).map(|v| (v.resources, v.unsupported))
}

/// Resources that share kind, namespace and name (what `kubectl apply` of two files
/// produces): Kubernetes keeps one object per name, so each later definition is an error
/// that names the first one's place.
pub fn duplicates(resources: &[Resource]) -> Vec<ValidationError> {
    let mut first: std::collections::HashMap<String, &Resource> = std::collections::HashMap::new();
    let mut out = Vec::new();
    for r in resources {
        // A Kubernetes Service and an Istio ServiceEntry of one name are two objects.
        let key = if r.api_version == "v1" {
            format!("Service/{}/{}", r.namespace(), r.name())
        } else {
            r.key()
        };
        let Some(earlier) = first.get(&key) else {
            first.insert(key, r);
            continue;
        };
        let (line, column) = r.position_of("metadata.name");
        let (l0, _) = earlier.position_of("metadata.name");
        out.push(ValidationError {
            file: r.source.file.clone(),
            line,
            column,
            resource: key,
            path: "metadata.name".into(),
            message: format!(
                "{} {}/{} is defined twice: here and at {}:{l0}; Kubernetes keeps one object per kind, namespace and name, so rename one or remove it",
                r.kind,
                r.namespace(),
                r.name(),
                earlier.source.file
            ),
        });
    }
    out
}

/// Validates every resource; an empty result means all are valid. (Warnings — what Istio
/// accepts but warns about — come from [`validate_all_with_warnings`].)
pub fn validate_all(resources: &[Resource]) -> Vec<ValidationError> {
    validate_all_with_warnings(resources).0
}

/// Validates every resource: the errors (which make Istio reject the resource) and the
/// warnings (deprecated fields, settings Istio ignores, what Istio's validation warns
/// about; the resource is accepted).
pub fn validate_all_with_warnings(
    resources: &[Resource],
) -> (Vec<ValidationError>, Vec<ValidationWarning>) {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    for r in resources {
        let mut errs = Errs::default();
        validate(r, &mut errs);
        deprecated::check(r, &mut errs);
        if r.api_version != "v1" {
            crd_limits::check(r, &mut errs);
        }
        for (path, message, at_key, kind) in errs.items {
            let (line, column) = if at_key {
                r.key_position_of(&path)
            } else {
                r.position_of(&path)
            };
            let e = ValidationError {
                file: r.source.file.clone(),
                line,
                column,
                resource: r.key(),
                path,
                message,
            };
            match kind {
                None => errors.push(e),
                Some(kind) => warnings.push(ValidationWarning { kind, at: e }),
            }
        }
    }
    (errors, warnings)
}

/// Istio's `validateMetadata`: annotations users may not set, and `istio.io/dry-run`
/// outside AuthorizationPolicy (which checks its value itself).
fn metadata(r: &Resource, errs: &mut Errs) {
    if r.api_version == "v1" {
        return; // Kubernetes documents (Service, the istio ConfigMap) are no Istio resources
    }
    const INTERNAL: &[&str] = &[
        "internal.istio.io/webhook-always-reject",
        "internal.istio.io/parent-namespace",
        "internal.istio.io/parents",
    ];
    for a in INTERNAL {
        if r.metadata.annotations.contains_key(*a) {
            errs.key(
                format!("metadata.annotations.{a}"),
                format!("the {a:?} annotation is internal to Istio and may not be set by users (Istio rejects the resource); remove it"),
            );
        }
    }
    let dry_run = authorization_policy::DRY_RUN;
    let own_check = matches!(
        r.spec,
        Spec::AuthorizationPolicy(_) | Spec::RequestAuthentication(_)
    );
    if !own_check && r.metadata.annotations.contains_key(dry_run) {
        errs.key(
            format!("metadata.annotations.{dry_run}"),
            format!("{} has unsupported annotation {dry_run} (only AuthorizationPolicy supports it); remove the annotation", r.kind),
        );
    }
}

fn validate(r: &Resource, errs: &mut Errs) {
    metadata(r, errs);
    match &r.spec {
        Spec::VirtualService(vs) => virtual_service::validate(r, vs, errs),
        Spec::DestinationRule(dr) => destination_rule::validate(r, dr, errs),
        Spec::Gateway(gw) => gateway::validate(r, gw, errs),
        Spec::ServiceEntry(se) => service_entry::validate(r, se, errs),
        Spec::WorkloadEntry(we) => workload_entry::validate(we, errs),
        Spec::Sidecar(sc) => sidecar::validate(sc, r.namespace(), errs),
        Spec::PeerAuthentication(pa) => security::peer_authentication(r, pa, errs),
        Spec::AuthorizationPolicy(ap) => authorization_policy::validate(r, ap, errs),
        Spec::RequestAuthentication(ra) => security::request_authentication(r, ra, errs),
        Spec::Telemetry(t) => telemetry::validate(t, errs),
        Spec::MeshConfig(mc) => mesh_config::validate(mc, errs),
        Spec::WorkloadGroup(wg) => workload_group::validate(wg, errs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn double_match_and_zero_weights_are_rejected() {
        let yaml = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a, namespace: x}\nspec:\n  hosts: [a]\n  http:\n  - match:\n    - uri: {exact: /a, prefix: /b}\n    route:\n    - destination: {host: a}\n      weight: 0\n    - destination: {host: b}\n      weight: 0\n";
        let loaded = crate::load_str(yaml, "t.yaml");
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        let errs = validate_all(&loaded.resources);
        let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(errs.len(), 2, "{text:?}");
        assert!(
            text[0].starts_with(
                "t.yaml:8:12: VirtualService/x/a: spec.http[0].match[0].uri: only one of"
            ),
            "{text:?}"
        );
        assert!(text[1].contains("at least one needs a weight"), "{text:?}");
    }
}
