//! The cross-resource checks, one module per area; each appends [`Finding`]s.

mod conflicts;
mod jwt;
mod routes;
mod security;
mod shadow;
mod workloads;

use weft_api::{Resource, VirtualService};

use crate::finding::{Finding, Severity};
use crate::index::Index;
use crate::position::position;

/// Runs every check.
pub(crate) fn run_all(ix: &Index<'_>, out: &mut Vec<Finding>) {
    routes::check(ix, out);
    shadow::check(ix, out);
    conflicts::check(ix, out);
    workloads::check(ix, out);
    security::check(ix, out);
    jwt::check(ix, out);
}

/// A finding located at field `path` of `r`.
pub(crate) fn at(
    r: &Resource,
    path: &str,
    code: &'static str,
    severity: Severity,
    message: String,
    suggestion: Option<String>,
) -> Finding {
    let (line, column) = position(r, path);
    Finding {
        code,
        severity,
        resource: Some(r.key()),
        file: r.source.file.clone(),
        line,
        column,
        message,
        suggestion,
    }
}

/// `ns/name` of a gateway reference (`name` is in the VirtualService's namespace);
/// `None` for the reserved `mesh`.
pub(crate) fn gateway_ref(reference: &str, vs_ns: &str) -> Option<(String, String)> {
    if reference == "mesh" {
        return None;
    }
    Some(match reference.split_once('/') {
        Some((ns, name)) => (ns.to_owned(), name.to_owned()),
        None => (vs_ns.to_owned(), reference.to_owned()),
    })
}

/// The gateways a VirtualService applies to (`[mesh]` when unset).
pub(crate) fn vs_gateways(vs: &VirtualService) -> Vec<String> {
    if vs.gateways.is_empty() {
        vec!["mesh".to_owned()]
    } else {
        vs.gateways.clone()
    }
}

/// `host` shown short when it is `<name>.<ns>.svc.cluster.local` in the viewer's namespace.
pub(crate) fn short_host(host: &str, ns: &str) -> String {
    host.strip_suffix(&format!(".{ns}.svc.cluster.local"))
        .unwrap_or(host)
        .to_owned()
}

/// `file:line` of a resource, for "see also" references.
pub(crate) fn origin(r: &Resource) -> String {
    format!(
        "{} {}/{} ({}:{})",
        r.kind,
        r.namespace(),
        r.name(),
        r.source.file,
        r.source.line
    )
}
