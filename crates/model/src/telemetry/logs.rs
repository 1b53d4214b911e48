//! Access logging per mode: Istio's `mergeLogs` over the Telemetry levels, each provider
//! compiled (file path, text or JSON format, filter), and MeshConfig's legacy
//! `accessLogFile` switch.

use super::{AccessLog, LogFormat, BUILTIN_LOG_PROVIDER, DEFAULT_JSON_LABELS, DEFAULT_TEXT_FORMAT};
use std::collections::{BTreeMap, BTreeSet};
use weft_api::{AccessLogging, MeshConfig, WorkloadMode};

fn mode_matches(a: &AccessLogging, mode: WorkloadMode) -> bool {
    match a.r#match.as_ref().and_then(|m| m.mode) {
        None | Some(WorkloadMode::ClientAndServer) => true,
        Some(m) => m == mode,
    }
}

/// Istio's `mergeLogs`, then each provider compiled; the legacy `accessLogFile` when no
/// Telemetry and no default provider speaks.
pub(super) fn access_logs(
    levels: &[&[AccessLogging]],
    mesh: Option<&MeshConfig>,
    mode: WorkloadMode,
) -> Vec<AccessLog> {
    let defaults: Vec<String> = mesh
        .and_then(|m| m.default_providers.as_ref())
        .map(|d| d.access_logging.clone())
        .unwrap_or_default();
    if levels.is_empty() && defaults.is_empty() {
        return legacy(mesh).into_iter().collect();
    }
    // provider -> (disabled, filter)
    let mut providers: BTreeMap<String, (bool, Option<String>)> = BTreeMap::new();
    if levels.is_empty() {
        for d in &defaults {
            providers.insert(d.clone(), (false, None));
        }
    } else {
        let mut filters: BTreeMap<String, Option<String>> = BTreeMap::new();
        let mut in_scope: Vec<String> = defaults.clone();
        for level in levels {
            let mut names = BTreeSet::new();
            for a in level.iter().filter(|a| mode_matches(a, mode)) {
                for p in &a.providers {
                    names.insert(p.name.clone());
                    let f = a.filter.as_ref().and_then(|f| f.expression.clone());
                    filters.insert(p.name.clone(), f);
                }
            }
            if !names.is_empty() {
                in_scope = names.into_iter().collect();
            }
        }
        let mut parent = defaults.clone();
        for level in levels {
            for a in level.iter() {
                let mut names: Vec<String> = a.providers.iter().map(|p| p.name.clone()).collect();
                if names.is_empty() {
                    names = parent.clone();
                }
                parent = names.clone();
                if !mode_matches(a, mode) {
                    continue;
                }
                for p in names.into_iter().filter(|p| in_scope.contains(p)) {
                    let entry = if a.disabled == Some(true) {
                        (true, None)
                    } else {
                        (false, filters.get(&p).cloned().flatten())
                    };
                    providers.insert(p, entry);
                }
            }
        }
    }
    providers
        .into_iter()
        .filter(|(_, (disabled, _))| !disabled)
        .filter_map(|(name, (_, filter))| file_log(&name, mesh, filter))
        .collect()
}

/// MeshConfig's text or JSON format (`accessLogEncoding`, `accessLogFormat`).
fn mesh_format(mesh: Option<&MeshConfig>) -> LogFormat {
    let json = mesh.and_then(|m| m.access_log_encoding.as_deref()) == Some("JSON");
    let custom = mesh
        .and_then(|m| m.access_log_format.clone())
        .filter(|f| !f.is_empty());
    match (json, custom) {
        (false, Some(f)) => LogFormat::Text(if f.ends_with('\n') {
            f
        } else {
            format!("{f}\n")
        }),
        (false, None) => LogFormat::Text(DEFAULT_TEXT_FORMAT.into()),
        (true, Some(f)) => match serde_json::from_str::<BTreeMap<String, String>>(&f) {
            Ok(m) => LogFormat::Json(m.into_iter().collect()),
            Err(_) => LogFormat::Json(default_json()),
        },
        (true, None) => LogFormat::Json(default_json()),
    }
}

fn default_json() -> Vec<(String, String)> {
    DEFAULT_JSON_LABELS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn legacy(mesh: Option<&MeshConfig>) -> Option<AccessLog> {
    let path = mesh?.access_log_file.clone().filter(|p| !p.is_empty())?;
    Some(AccessLog {
        provider: "meshConfig.accessLogFile".into(),
        path,
        format: mesh_format(mesh),
        filter: None,
    })
}

fn file_log(name: &str, mesh: Option<&MeshConfig>, filter: Option<String>) -> Option<AccessLog> {
    let declared = mesh.and_then(|m| {
        m.extension_providers
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
    });
    let (path, format) = match declared {
        None if name == BUILTIN_LOG_PROVIDER => ("/dev/stdout".to_string(), mesh_format(mesh)),
        None => return None,
        Some(p) => {
            let f = p.envoy_file_access_log.as_ref()?;
            let format = match &f.log_format {
                Some(weft_api::LogFormat {
                    labels: Some(l), ..
                }) => LogFormat::Json(
                    l.iter()
                        .map(|(k, v)| {
                            (
                                k.clone(),
                                v.as_str().map_or_else(|| v.to_string(), str::to_string),
                            )
                        })
                        .collect(),
                ),
                Some(weft_api::LogFormat { text: Some(t), .. }) => LogFormat::Text(t.clone()),
                // The built-in provider's name with no format takes MeshConfig's.
                _ if name == BUILTIN_LOG_PROVIDER => mesh_format(mesh),
                _ => LogFormat::Text(DEFAULT_TEXT_FORMAT.into()),
            };
            (f.path.clone(), format)
        }
    };
    Some(AccessLog {
        provider: name.to_string(),
        path,
        format,
        filter,
    })
}
