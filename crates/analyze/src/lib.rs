//! weft-analyze: `weft analyze` — cross-resource analysis of Istio configuration.
//!
//! [`analyze`] runs every check over typed resources (pure, no I/O); [`findings_for`]
//! also turns the loader's and the validator's errors into findings. Each finding has a
//! stable code (see [`CODES`]), a severity, the resource, `file:line:column`, a message
//! and a suggestion. [`render`] prints them like rustc or as JSON, and [`cli`] is the
//! whole `weft analyze` command.
//!
//! ```
//! let yaml = "apiVersion: networking.istio.io/v1\nkind: VirtualService\n\
//!             metadata: {name: api, namespace: shop}\n\
//!             spec:\n  hosts: [shop.example.com]\n  gateways: [missing-gw]\n  \
//!             http:\n  - route:\n    - destination: {host: shop.example.com}\n";
//! let loaded = weft_api::load_str(yaml, "vs.yaml");
//! let findings = weft_analyze::findings_for(&loaded);
//! assert!(findings.iter().any(|f| f.code == "WA0101")); // unknown gateway
//! assert!(findings.iter().any(|f| f.code == "WA0102")); // unknown destination host
//! ```
#![forbid(unsafe_code)]

mod checks;
pub mod cli;
mod finding;
mod index;
mod position;
pub mod render;
mod similar;

pub use finding::*;

use weft_api::{LoadResult, Resource, WarningKind};

/// Runs every cross-resource check. Findings are sorted by file, line, column and code.
pub fn analyze(resources: &[Resource]) -> Vec<Finding> {
    let ix = index::Index::build(resources);
    let mut out = Vec::new();
    checks::run_all(&ix, &mut out);
    sort(&mut out);
    out
}

/// Load errors, validation errors and the cross-resource analysis of what loaded.
pub fn findings_for(loaded: &LoadResult) -> Vec<Finding> {
    let mut out: Vec<Finding> = loaded
        .errors
        .iter()
        .map(|e| Finding {
            code: LOAD_ERROR,
            severity: Severity::Error,
            resource: None,
            file: e.file.clone(),
            line: e.line,
            column: e.column,
            message: e.message.clone(),
            suggestion: None,
        })
        .collect();
    let (invalid, warnings) = weft_api::validate_all_with_warnings(&loaded.resources);
    for w in warnings {
        let (line, column) = position::validation_position(&w.at);
        out.push(Finding {
            code: match w.kind {
                WarningKind::Deprecated => DEPRECATED,
                WarningKind::Ignored => IGNORED_SETTING,
                WarningKind::Istio => VALIDATION_WARNING,
            },
            severity: Severity::Warning,
            resource: Some(w.at.resource.clone()),
            file: w.at.file.clone(),
            line,
            column,
            message: w.at.message.clone(),
            suggestion: None,
        });
    }
    for e in invalid {
        let (line, column) = position::validation_position(&e);
        out.push(Finding {
            code: VALIDATION_ERROR,
            severity: Severity::Error,
            resource: Some(e.resource.clone()),
            file: e.file.clone(),
            line,
            column,
            message: e.message.clone(),
            suggestion: None,
        });
    }
    for e in weft_api::duplicates(&loaded.resources) {
        out.push(Finding {
            code: DUPLICATE_RESOURCE,
            severity: Severity::Error,
            resource: Some(e.resource.clone()),
            file: e.file.clone(),
            line: e.line,
            column: e.column,
            message: e.message.clone(),
            suggestion: Some("keep one definition per kind, namespace and name (as `kubectl apply` would, the last applied one silently wins there)".into()),
        });
    }
    out.extend(not_enforced(&loaded.resources));
    out.extend(loaded.skipped.iter().filter_map(|s| {
        Some(Finding {
            code: NOT_SUPPORTED,
            severity: Severity::Info,
            resource: None,
            file: s.source.file.clone(),
            line: s.source.line,
            column: 1,
            message: s.unsupported.clone()?,
            suggestion: None,
        })
    }));
    out.extend(analyze(&loaded.resources));
    sort(&mut out);
    out
}

/// What weft loads but does not enforce yet, as info findings at each resource.
fn not_enforced(resources: &[Resource]) -> Vec<Finding> {
    let by_key: std::collections::HashMap<String, &Resource> =
        resources.iter().map(|r| (r.key(), r)).collect();
    weft_model::not_enforced(resources)
        .into_iter()
        .map(|n| {
            let r = by_key.get(&n.resource);
            Finding {
                code: NOT_ENFORCED,
                severity: Severity::Info,
                resource: Some(n.resource.clone()),
                file: r.map(|r| r.source.file.clone()).unwrap_or_default(),
                line: r.map_or(1, |r| r.source.line),
                column: 1,
                message: format!("{} is loaded but not enforced yet", n.what),
                suggestion: Some(
                    "weft does not implement these semantics yet; the config is accepted, so it works once weft does".into(),
                ),
            }
        })
        .collect()
}

fn sort(findings: &mut [Finding]) {
    findings.sort_by(|a, b| {
        (&a.file, a.line, a.column, a.code).cmp(&(&b.file, b.line, b.column, b.code))
    });
}
