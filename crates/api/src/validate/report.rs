//! What a validated folder reports besides its resources: the warning type (what Istio
//! accepts but warns about, as istiod's validation and `istioctl analyze` do) and
//! [`load_valid_report`], the loader's whole answer for the control plane and `weft up`.

use super::{duplicates, validate_all_with_warnings, ValidationError};
use crate::Resource;

/// Why a resource Istio accepts draws a warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WarningKind {
    /// A deprecated field Istio still honours (istioctl's IST0002 and the deprecation
    /// warnings of istiod's validation).
    Deprecated,
    /// A setting Istio accepts but ignores where it is written (the API reference says so).
    Ignored,
    /// Something Istio's validation accepts with a warning (istioctl's IST0133), or that
    /// the API reference says is not supported while Istio's validation lets it through.
    Istio,
}

impl WarningKind {
    /// `deprecated`, `ignored` or `warning`.
    pub fn as_str(self) -> &'static str {
        match self {
            WarningKind::Deprecated => "deprecated",
            WarningKind::Ignored => "ignored",
            WarningKind::Istio => "warning",
        }
    }
}

/// A warning about a resource that loads: located like a [`ValidationError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationWarning {
    pub kind: WarningKind,
    /// Where and what (`at.message` is the warning's text).
    pub at: ValidationError,
}

impl std::fmt::Display for ValidationWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let e = &self.at;
        write!(
            f,
            "{}:{}:{}: {}: {}: {}: {}",
            e.file,
            e.line,
            e.column,
            self.kind.as_str(),
            e.resource,
            e.path,
            e.message
        )
    }
}

/// A folder that loads and validates.
#[derive(Debug, Clone, Default)]
pub struct ValidConfig {
    pub resources: Vec<Resource>,
    /// Kinds weft knows but does not support, one line each:
    /// `Kind (file:line): not supported …`.
    pub unsupported: Vec<String>,
    /// What Istio accepts but warns about (deprecated fields, ignored settings, Istio's
    /// validation warnings), one line each: `file:line:col: deprecated: Kind/ns/name: path: …`.
    pub warnings: Vec<String>,
}

/// Loads and validates a folder (or file) the way the control plane and `weft up` accept
/// it: every load and validation error (and duplicate definitions), or the resources with
/// what is not supported and the warnings.
pub fn load_valid_report(path: &std::path::Path) -> Result<ValidConfig, Vec<String>> {
    let loaded = crate::load_path(path);
    let (invalid, warnings) = validate_all_with_warnings(&loaded.resources);
    let mut errors: Vec<String> = loaded.errors.iter().map(|e| e.to_string()).collect();
    errors.extend(
        invalid
            .iter()
            .chain(&duplicates(&loaded.resources))
            .map(|e| e.to_string()),
    );
    if !errors.is_empty() {
        return Err(errors);
    }
    let unsupported = loaded
        .skipped
        .iter()
        .filter_map(|s| {
            let why = s.unsupported.as_ref()?;
            Some(format!(
                "{} ({}:{}): {why}",
                s.kind, s.source.file, s.source.line
            ))
        })
        .collect();
    Ok(ValidConfig {
        resources: loaded.resources,
        unsupported,
        warnings: warnings.iter().map(|w| w.to_string()).collect(),
    })
}
