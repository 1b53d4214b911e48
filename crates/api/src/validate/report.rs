//! What a validated folder reports besides its resources: the warning type (what Istio
//! accepts but warns about, as istiod's validation and `istioctl analyze` do) and
//! [`load_valid_report`], the loader's whole answer for the control plane and `weft up`, and
//! [`Reloader`], the same answer for a folder loaded again and again.

use super::{duplicates, validate_all_with_warnings, ValidationError};
use crate::Resource;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

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
    Reloader::default().load(path)
}

/// [`load_valid_report`] for a folder loaded again and again (the control plane's watch):
/// every file is read each time, but only files whose bytes changed since the last load
/// are parsed and validated again (validation is per resource; only the duplicate check
/// spans files, and it runs every time). The answer is exactly `load_valid_report`'s.
#[derive(Debug, Default)]
pub struct Reloader {
    files: HashMap<PathBuf, FileReport>,
}

/// One file's share of the answer, kept with the bytes it came from.
#[derive(Debug)]
struct FileReport {
    bytes: Vec<u8>,
    loaded: crate::LoadResult,
    invalid: Vec<String>,
    warnings: Vec<String>,
}

impl FileReport {
    fn of(bytes: Vec<u8>, name: &str) -> FileReport {
        let loaded = crate::load_bytes(bytes.clone(), name);
        let (invalid, warnings) = validate_all_with_warnings(&loaded.resources);
        FileReport {
            bytes,
            loaded,
            invalid: invalid.iter().map(|e| e.to_string()).collect(),
            warnings: warnings.iter().map(|w| w.to_string()).collect(),
        }
    }
}

impl Reloader {
    /// Loads and validates `path` (see [`load_valid_report`]), reusing what did not change.
    pub fn load(&mut self, path: &Path) -> Result<ValidConfig, Vec<String>> {
        let (files, listing) = crate::files::yaml_files(path);
        let mut load_errors: Vec<String> = listing.iter().map(|e| e.to_string()).collect();
        let mut kept = HashMap::with_capacity(files.len());
        let mut order = Vec::with_capacity(files.len());
        for file in files {
            let bytes = match crate::files::read(&file) {
                Ok(bytes) => bytes,
                Err(e) => {
                    load_errors.push(e.to_string());
                    continue;
                }
            };
            let report = match self.files.remove(&file) {
                Some(old) if old.bytes == bytes => old,
                _ => FileReport::of(bytes, &file.display().to_string()),
            };
            load_errors.extend(report.loaded.errors.iter().map(|e| e.to_string()));
            order.push(file.clone());
            kept.insert(file, report);
        }
        self.files = kept;
        let reports: Vec<&FileReport> = order.iter().map(|f| &self.files[f]).collect();
        let resources: Vec<Resource> = reports
            .iter()
            .flat_map(|r| r.loaded.resources.iter().cloned())
            .collect();
        // The order load_path + validate_all give: load errors, validation errors, duplicates.
        let mut errors = load_errors;
        errors.extend(reports.iter().flat_map(|r| r.invalid.iter().cloned()));
        errors.extend(duplicates(&resources).iter().map(|e| e.to_string()));
        if !errors.is_empty() {
            return Err(errors);
        }
        let unsupported = reports
            .iter()
            .flat_map(|r| &r.loaded.skipped)
            .filter_map(|s| {
                let why = s.unsupported.as_ref()?;
                Some(format!(
                    "{} ({}:{}): {why}",
                    s.kind, s.source.file, s.source.line
                ))
            })
            .collect();
        let warnings = reports.iter().flat_map(|r| r.warnings.iter().cloned());
        Ok(ValidConfig {
            resources,
            unsupported,
            warnings: warnings.collect(),
        })
    }
}
