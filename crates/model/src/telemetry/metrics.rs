//! Telemetry `metrics` per proxy side, as Istio's `mergeMetrics`
//! (`pilot/pkg/model/telemetry.go`): the providers in scope are the last level's that names
//! any (else MeshConfig `defaultProviders.metrics`, which Istio's installation sets to
//! `prometheus`); overrides apply in order, later ones on top — per metric a later
//! `disabled` wins and tag overrides merge by tag name; `ALL_METRICS` + `disabled: true`
//! switches a mode off until a later override for that mode switches it on again. weft's
//! one metrics provider is Istio's built-in `prometheus`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use weft_api::{IstioMetric, MeshConfig, Metrics, TagOperation, WorkloadMode};

/// Istio's built-in Prometheus metrics provider.
pub const PROMETHEUS: &str = "prometheus";

/// What Istio's metrics do on one side of a proxy.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MetricsSpec {
    /// No Istio metric is recorded on this side (no Prometheus provider in scope, or
    /// `ALL_METRICS` disabled).
    #[serde(default)]
    pub disabled: bool,
    /// Per metric (`REQUEST_COUNT`, …), sorted by name; metrics not listed are standard.
    #[serde(default)]
    pub overrides: Vec<MetricOverride>,
}

/// One metric's override.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MetricOverride {
    /// Istio's metric name (`REQUEST_COUNT`, `REQUEST_DURATION`, …).
    pub metric: String,
    pub disabled: bool,
    /// Sorted by tag name.
    pub tags: Vec<TagOverride>,
}

/// A label removed, or added/replaced with a CEL expression's value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagOverride {
    pub name: String,
    /// `None`: the label is removed.
    pub value: Option<String>,
}

impl MetricsSpec {
    /// The override of `metric`, if any.
    pub fn get(&self, metric: &str) -> Option<&MetricOverride> {
        self.overrides.iter().find(|o| o.metric == metric)
    }
}

/// Every Istio metric, as `ALL_METRICS` expands (Istio's `allMetrics`, sorted).
pub const ALL_METRICS: &[&str] = &[
    "GRPC_REQUEST_MESSAGES",
    "GRPC_RESPONSE_MESSAGES",
    "REQUEST_COUNT",
    "REQUEST_DURATION",
    "REQUEST_SIZE",
    "RESPONSE_SIZE",
    "TCP_CLOSED_CONNECTIONS",
    "TCP_OPENED_CONNECTIONS",
    "TCP_RECEIVED_BYTES",
    "TCP_SENT_BYTES",
];

fn metric_name(m: IstioMetric) -> Option<&'static str> {
    Some(match m {
        IstioMetric::AllMetrics => return None,
        IstioMetric::RequestCount => "REQUEST_COUNT",
        IstioMetric::RequestDuration => "REQUEST_DURATION",
        IstioMetric::RequestSize => "REQUEST_SIZE",
        IstioMetric::ResponseSize => "RESPONSE_SIZE",
        IstioMetric::TcpOpenedConnections => "TCP_OPENED_CONNECTIONS",
        IstioMetric::TcpClosedConnections => "TCP_CLOSED_CONNECTIONS",
        IstioMetric::TcpSentBytes => "TCP_SENT_BYTES",
        IstioMetric::TcpReceivedBytes => "TCP_RECEIVED_BYTES",
        IstioMetric::GrpcRequestMessages => "GRPC_REQUEST_MESSAGES",
        IstioMetric::GrpcResponseMessages => "GRPC_RESPONSE_MESSAGES",
    })
}

fn names(providers: &[weft_api::ProviderRef]) -> Vec<&str> {
    providers.iter().map(|p| p.name.as_str()).collect()
}

fn sides(mode: Option<WorkloadMode>) -> &'static [usize] {
    match mode.unwrap_or_default() {
        WorkloadMode::Client => &[0],
        WorkloadMode::Server => &[1],
        WorkloadMode::ClientAndServer => &[0, 1],
    }
}

type Merging = BTreeMap<&'static str, (bool, BTreeMap<String, Option<String>>)>;

/// The (client, server) metrics of a proxy the `list` applies to (root level first).
pub fn resolve(list: &[&Metrics], mesh: Option<&MeshConfig>) -> (MetricsSpec, MetricsSpec) {
    let defaults: Vec<&str> = match mesh.and_then(|m| m.default_providers.as_ref()) {
        Some(d) if !d.metrics.is_empty() => d.metrics.iter().map(String::as_str).collect(),
        _ => vec![PROMETHEUS],
    };
    // Providers in scope: the last level that names some.
    let in_scope = list
        .iter()
        .map(|m| names(&m.providers))
        .rfind(|n| !n.is_empty())
        .unwrap_or_else(|| defaults.clone());
    if !in_scope.contains(&PROMETHEUS) {
        let off = MetricsSpec {
            disabled: true,
            overrides: Vec::new(),
        };
        return (off.clone(), off);
    }
    let mut all_off = [false, false];
    let mut merging: [Merging; 2] = Default::default();
    let mut parent = defaults;
    for m in list {
        let own = names(&m.providers);
        let providers = if own.is_empty() { parent.clone() } else { own };
        parent = providers.clone();
        if !providers.contains(&PROMETHEUS) {
            continue;
        }
        for o in &m.overrides {
            let sel = o.r#match.as_ref();
            let metric = sel.and_then(|s| s.metric).unwrap_or_default();
            let custom = sel.and_then(|s| s.custom_metric.as_deref());
            let mode = sel.and_then(|s| s.mode);
            if custom.is_none() && metric == IstioMetric::AllMetrics && o.disabled == Some(true) {
                for &s in sides(mode) {
                    all_off[s] = true;
                }
                continue;
            }
            // Custom metrics are reported (weft has none); they still switch a mode on.
            let metrics: Vec<&'static str> = match (custom, metric_name(metric)) {
                (Some(_), _) => Vec::new(),
                (None, Some(one)) => vec![one],
                (None, None) => ALL_METRICS.to_vec(),
            };
            for &s in sides(mode) {
                all_off[s] = false;
                for name in &metrics {
                    let entry = merging[s].entry(name).or_default();
                    if let Some(d) = o.disabled {
                        entry.0 = d;
                    }
                    for (tag, t) in &o.tag_overrides {
                        let value = match t.operation.unwrap_or_default() {
                            TagOperation::Remove => None,
                            // An expression outside weft's CEL subset still replaces the
                            // parent's override of the tag, as Istio's merge does; the proxy
                            // gives it the value `unknown` (reported).
                            TagOperation::Upsert => Some(t.value.clone().unwrap_or_default()),
                        };
                        entry.1.insert(tag.clone(), value);
                    }
                }
            }
        }
    }
    let spec = |s: usize| MetricsSpec {
        disabled: all_off[s],
        overrides: if all_off[s] {
            Vec::new()
        } else {
            merging[s]
                .iter()
                .map(|(metric, (disabled, tags))| MetricOverride {
                    metric: metric.to_string(),
                    disabled: *disabled,
                    tags: tags
                        .iter()
                        .map(|(name, value)| TagOverride {
                            name: name.clone(),
                            value: value.clone(),
                        })
                        .collect(),
                })
                .collect()
        },
    };
    (spec(0), spec(1))
}
