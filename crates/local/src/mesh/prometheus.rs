//! What `weft up` tells Prometheus: `<state>/prometheus/targets.json`, a file_sd target
//! list with one entry per proxy (its merged metrics page — proxy plus app, Istio's
//! 15020 — with Istio-style labels `namespace`, `workload`, `role`), and a sample
//! `prometheus.yml` that scrapes them. Both are replaced atomically, so a Prometheus
//! watching the file never reads half of one.

use super::{field, Mesh, Role};
use anyhow::Context;
use serde_json::json;
use std::path::Path;

/// How often the sample configuration scrapes.
const SCRAPE_INTERVAL: &str = "5s";

impl Mesh {
    /// Writes (or rewrites) the target list and the sample configuration.
    pub(crate) fn write_prometheus(&self) -> anyhow::Result<()> {
        let dir = self.opts.state_dir.join("prometheus");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let targets: Vec<serde_json::Value> = self
            .procs
            .iter()
            .filter(|p| matches!(p.role, Role::Gateway | Role::Sidecar))
            .filter_map(|p| {
                let addr =
                    field(&p.ready, "merged_metrics").or_else(|| field(&p.ready, "admin"))?;
                let (workload, namespace) = p.workload.clone()?;
                Some(json!({
                    "targets": [addr],
                    "labels": {
                        "namespace": namespace,
                        "workload": workload,
                        "role": p.role.as_str(),
                        "proxy": p.name,
                    }
                }))
            })
            .collect();
        let targets_file = dir.join("targets.json");
        write_atomic(&targets_file, &serde_json::to_string_pretty(&targets)?)?;
        let abs = std::path::absolute(&targets_file).unwrap_or(targets_file);
        let yml = format!(
            "# Written by weft up: scrapes every proxy of this mesh on its merged metrics page\n\
             # (the proxy's metrics and its app's, as Istio's agent serves on 15020).\n\
             # Run: prometheus --config.file={}\n\
             global:\n  scrape_interval: {SCRAPE_INTERVAL}\n  evaluation_interval: {SCRAPE_INTERVAL}\n\
             scrape_configs:\n  - job_name: weft-mesh\n    metrics_path: /stats/prometheus\n    file_sd_configs:\n      - files: [{}]\n        refresh_interval: {SCRAPE_INTERVAL}\n",
            dir.join("prometheus.yml").display(),
            serde_json::to_string(&abs.display().to_string())?,
        );
        write_atomic(&dir.join("prometheus.yml"), &yml)
    }
}

fn write_atomic(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))
}
