//! What Istio's telemetry says about a workload, derived from its labels the way Istio
//! derives it from a pod's: `app`, `version`, and the canonical service and revision
//! (`service.istio.io/canonical-name|revision`, then the `app.kubernetes.io/*` labels,
//! then `app`/`version`, then the workload's name and `latest`).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Istio's default cluster id (`CLUSTER_ID` when none is configured), the value of
/// `source_cluster`/`destination_cluster`: a local mesh is one cluster.
pub const DEFAULT_CLUSTER_ID: &str = "Kubernetes";

/// A workload's telemetry identity.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct WorkloadMeta {
    /// The `app` label (`app.kubernetes.io/name`), `unknown` without one.
    pub app: String,
    /// The `version` label (`app.kubernetes.io/version`), `unknown` without one.
    pub version: String,
    pub canonical_service: String,
    pub canonical_revision: String,
    /// The cluster the workload runs in.
    pub cluster: String,
}

fn first<'a>(labels: &'a BTreeMap<String, String>, keys: &[&str]) -> Option<&'a String> {
    keys.iter()
        .find_map(|k| labels.get(*k).filter(|v| !v.is_empty()))
}

impl WorkloadMeta {
    /// Istio's derivation for the workload `name` with these labels.
    pub fn from_labels(name: &str, labels: &BTreeMap<String, String>) -> WorkloadMeta {
        let unknown = || "unknown".to_string();
        WorkloadMeta {
            app: first(labels, &["app", "app.kubernetes.io/name"])
                .cloned()
                .unwrap_or_else(unknown),
            version: first(labels, &["version", "app.kubernetes.io/version"])
                .cloned()
                .unwrap_or_else(unknown),
            canonical_service: first(
                labels,
                &[
                    "service.istio.io/canonical-name",
                    "app.kubernetes.io/name",
                    "app",
                ],
            )
            .cloned()
            .unwrap_or_else(|| name.to_string()),
            canonical_revision: first(
                labels,
                &[
                    "service.istio.io/canonical-revision",
                    "app.kubernetes.io/version",
                    "version",
                ],
            )
            .cloned()
            .unwrap_or_else(|| "latest".to_string()),
            cluster: DEFAULT_CLUSTER_ID.to_string(),
        }
    }

    /// This meta with Istio's defaults for anything empty (configs built without labels).
    pub fn or_defaults(&self, name: &str) -> WorkloadMeta {
        let or = |v: &str, d: &str| {
            if v.is_empty() {
                d.to_string()
            } else {
                v.to_string()
            }
        };
        WorkloadMeta {
            app: or(&self.app, "unknown"),
            version: or(&self.version, "unknown"),
            canonical_service: or(&self.canonical_service, name),
            canonical_revision: or(&self.canonical_revision, "latest"),
            cluster: or(&self.cluster, DEFAULT_CLUSTER_ID),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn canonical_names_follow_istios_precedence() {
        let m = WorkloadMeta::from_labels(
            "player-v1",
            &labels(&[("app", "player"), ("version", "v1")]),
        );
        assert_eq!(
            (
                m.app.as_str(),
                m.version.as_str(),
                m.canonical_service.as_str(),
                m.canonical_revision.as_str()
            ),
            ("player", "v1", "player", "v1")
        );
        let m = WorkloadMeta::from_labels(
            "player-v1",
            &labels(&[
                ("app", "player"),
                ("service.istio.io/canonical-name", "player-svc"),
                ("service.istio.io/canonical-revision", "r7"),
                ("app.kubernetes.io/version", "2.0"),
            ]),
        );
        assert_eq!(
            (m.canonical_service.as_str(), m.canonical_revision.as_str()),
            ("player-svc", "r7")
        );
        assert_eq!(
            m.version, "2.0",
            "app.kubernetes.io/version stands in for version"
        );
        let m = WorkloadMeta::from_labels("lonely", &BTreeMap::new());
        assert_eq!(
            (
                m.app.as_str(),
                m.canonical_service.as_str(),
                m.canonical_revision.as_str(),
                m.cluster.as_str()
            ),
            ("unknown", "lonely", "latest", "Kubernetes")
        );
        assert_eq!(
            WorkloadMeta::default().or_defaults("lonely"),
            m,
            "an empty meta gets the same defaults"
        );
    }
}
