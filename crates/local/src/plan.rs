//! What a local mesh runs, read from the config folder: the control plane, one gateway
//! proxy per WorkloadEntry annotated `weft.dev/role: gateway`, and for each WorkloadEntry
//! annotated `weft.dev/run` its app plus a sidecar.

use std::time::Duration;
use weft_api::{Resource, Spec};

/// How to start a workload's app.
#[derive(Debug, Clone, PartialEq)]
pub enum App {
    /// The built-in demo workload (`weft demo-app`).
    Demo {
        service: String,
        version: String,
        latency: Duration,
        error_rate: f64,
        identity: String,
    },
    /// A user command (`weft.dev/command`, run by `sh -c`) listening on `weft.dev/app-address`;
    /// without one, it binds `127.0.0.1:0` and reports where with a `ready` event on stdout.
    Command {
        command: String,
        address: Option<String>,
    },
}

/// One workload with a sidecar.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    pub name: String,
    pub namespace: String,
    pub app: App,
    /// Merge the app's metrics into the sidecar's merged page (Istio's
    /// `prometheus.io/scrape: "true"`, `prometheus.io/port`, `prometheus.io/path`).
    pub metrics: Option<AppMetrics>,
}

/// Where an app serves its Prometheus metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct AppMetrics {
    /// `None`: the port the app serves on.
    pub port: Option<u16>,
    pub path: String,
}

/// Istio's `prometheus.io/*` annotations.
fn app_metrics(
    a: &std::collections::BTreeMap<String, String>,
) -> Result<Option<AppMetrics>, String> {
    if a.get("prometheus.io/scrape").map(String::as_str) != Some("true") {
        return Ok(None);
    }
    let port = match a.get("prometheus.io/port") {
        None => None,
        Some(p) => Some(
            p.parse::<u16>()
                .map_err(|_| format!("prometheus.io/port: {p:?} is not a port number"))?,
        ),
    };
    let path = a
        .get("prometheus.io/path")
        .cloned()
        .unwrap_or_else(|| "/metrics".into());
    if !path.starts_with('/') {
        return Err(format!("prometheus.io/path: {path:?} must start with /"));
    }
    Ok(Some(AppMetrics { port, path }))
}

/// One gateway proxy.
#[derive(Debug, Clone, PartialEq)]
pub struct Gateway {
    pub name: String,
    pub namespace: String,
}

/// Everything to start.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub gateways: Vec<Gateway>,
    pub workloads: Vec<Workload>,
}

fn parse_latency(s: &str) -> Result<Duration, String> {
    weft_model::parse_duration_ms(s)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{s:?} is not a duration like 5ms or 1s"))
}

/// Reads the plan; errors name the WorkloadEntry (file:line) and the bad annotation.
pub fn plan(resources: &[Resource], trust_domain: &str) -> Result<Plan, Vec<String>> {
    let mut plan = Plan::default();
    let mut errors = Vec::new();
    for r in resources {
        let Spec::WorkloadEntry(we) = &r.spec else {
            continue;
        };
        let a = &r.metadata.annotations;
        let at = format!(
            "{}:{}: WorkloadEntry {}/{}",
            r.source.file,
            r.source.line,
            r.namespace(),
            r.name()
        );
        if a.get("weft.dev/role").map(String::as_str) == Some("gateway") {
            plan.gateways.push(Gateway {
                name: r.name().into(),
                namespace: r.namespace().into(),
            });
            continue;
        }
        let app = match a.get("weft.dev/run").map(String::as_str) {
            None => continue,
            Some("demo-app") => {
                let latency = match a
                    .get("weft.dev/demo-latency")
                    .map(|s| parse_latency(s))
                    .transpose()
                {
                    Ok(l) => l.unwrap_or_default(),
                    Err(e) => {
                        errors.push(format!("{at}: weft.dev/demo-latency: {e}"));
                        continue;
                    }
                };
                let error_rate = match a
                    .get("weft.dev/demo-error-rate")
                    .map(|s| s.parse::<f64>())
                    .transpose()
                {
                    Ok(Some(v)) if (0.0..=1.0).contains(&v) => v,
                    Ok(None) => 0.0,
                    _ => {
                        errors.push(format!(
                            "{at}: weft.dev/demo-error-rate must be a number from 0 to 1"
                        ));
                        continue;
                    }
                };
                App::Demo {
                    service: we
                        .labels
                        .get("app")
                        .cloned()
                        .unwrap_or_else(|| r.name().into()),
                    version: we
                        .labels
                        .get("version")
                        .cloned()
                        .unwrap_or_else(|| "v1".into()),
                    latency,
                    error_rate,
                    identity: weft_model::spiffe_id(
                        trust_domain,
                        r.namespace(),
                        we.service_account.as_deref().unwrap_or("default"),
                    ),
                }
            }
            Some("command") => match a.get("weft.dev/command") {
                Some(c) => App::Command {
                    command: c.clone(),
                    address: a.get("weft.dev/app-address").cloned(),
                },
                None => {
                    errors.push(format!("{at}: weft.dev/run: command needs weft.dev/command (and weft.dev/app-address, or a ready event on stdout saying where it listens)"));
                    continue;
                }
            },
            Some(other) => {
                errors.push(format!(
                    "{at}: weft.dev/run: {other:?} is not one of demo-app, command"
                ));
                continue;
            }
        };
        let metrics = match app_metrics(a) {
            Ok(m) => m,
            Err(e) => {
                errors.push(format!("{at}: {e}"));
                continue;
            }
        };
        plan.workloads.push(Workload {
            name: r.name().into(),
            namespace: r.namespace().into(),
            app,
            metrics,
        });
    }
    if errors.is_empty() {
        Ok(plan)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(kv: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn prometheus_annotations_ask_for_the_apps_metrics_as_on_a_pod() {
        assert_eq!(app_metrics(&annotations(&[])), Ok(None));
        assert_eq!(
            app_metrics(&annotations(&[("prometheus.io/scrape", "false")])),
            Ok(None)
        );
        assert_eq!(
            app_metrics(&annotations(&[("prometheus.io/scrape", "true")])),
            Ok(Some(AppMetrics {
                port: None,
                path: "/metrics".into()
            }))
        );
        let full = [
            ("prometheus.io/scrape", "true"),
            ("prometheus.io/port", "9102"),
            ("prometheus.io/path", "/stats"),
        ];
        assert_eq!(
            app_metrics(&annotations(&full)),
            Ok(Some(AppMetrics {
                port: Some(9102),
                path: "/stats".into()
            }))
        );
        let bad = [
            ("prometheus.io/scrape", "true"),
            ("prometheus.io/port", "http"),
        ];
        let err = app_metrics(&annotations(&bad)).unwrap_err();
        assert!(
            err.contains("prometheus.io/port") && err.contains("\"http\""),
            "{err}"
        );
    }
}
