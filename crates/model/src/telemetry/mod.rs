//! The Telemetry API per proxy, with Istio's precedence (`pilot/pkg/model/telemetry.go`):
//! the root namespace's namespace-wide Telemetry, then the proxy's namespace-wide one, then
//! every Telemetry in its namespace whose selector matches the workload — later levels
//! override earlier ones. Tracing merges field by field (a field set lower wins, an unset
//! one inherits; only the first provider counts); access logging resolves a set of
//! providers per mode (CLIENT for gateways and outbound, SERVER for inbound), where a lower
//! level that names providers replaces the parent's and `disabled` switches one off. With
//! no Telemetry and no MeshConfig `defaultProviders`, MeshConfig `accessLogFile` is the
//! switch (Istio's legacy path). Metrics resolve in [`metrics`]. `targetRef(s)` are not
//! resolved (reported).

use crate::registry::selects;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use weft_api::{AccessLogging, MeshConfig, Resource, Spec, Telemetry, Tracing, WorkloadMode};

mod logs;
pub mod metrics;
mod providers;
mod report;

use logs::access_logs;
use providers::collector;
pub(crate) use report::report;

/// Istio's default sampling when a Telemetry names a provider but no percentage
/// (`PILOT_TRACE_SAMPLING`).
pub const DEFAULT_SAMPLING_PERCENT: f64 = 1.0;

/// Istio's built-in access log provider (`/dev/stdout`, MeshConfig's format).
pub const BUILTIN_LOG_PROVIDER: &str = "envoy";

/// Istio's default text access log line (`EnvoyTextLogFormat`).
pub const DEFAULT_TEXT_FORMAT: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% \"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER_RAW% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%\n";

/// Istio's default JSON access log labels (`EnvoyJSONLogFormatIstio`).
pub const DEFAULT_JSON_LABELS: &[(&str, &str)] = &[
    ("authority", "%REQ(:AUTHORITY)%"),
    ("bytes_received", "%BYTES_RECEIVED%"),
    ("bytes_sent", "%BYTES_SENT%"),
    (
        "connection_termination_details",
        "%CONNECTION_TERMINATION_DETAILS%",
    ),
    ("downstream_local_address", "%DOWNSTREAM_LOCAL_ADDRESS%"),
    ("downstream_remote_address", "%DOWNSTREAM_REMOTE_ADDRESS%"),
    ("duration", "%DURATION%"),
    ("method", "%REQ(:METHOD)%"),
    ("path", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"),
    ("protocol", "%PROTOCOL%"),
    ("request_id", "%REQ(X-REQUEST-ID)%"),
    ("requested_server_name", "%REQUESTED_SERVER_NAME%"),
    ("response_code", "%RESPONSE_CODE%"),
    ("response_code_details", "%RESPONSE_CODE_DETAILS%"),
    ("response_flags", "%RESPONSE_FLAGS%"),
    ("route_name", "%ROUTE_NAME%"),
    ("start_time", "%START_TIME%"),
    ("upstream_cluster", "%UPSTREAM_CLUSTER_RAW%"),
    ("upstream_host", "%UPSTREAM_HOST%"),
    ("upstream_local_address", "%UPSTREAM_LOCAL_ADDRESS%"),
    (
        "upstream_service_time",
        "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
    ),
    (
        "upstream_transport_failure_reason",
        "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
    ),
    ("user_agent", "%REQ(USER-AGENT)%"),
    ("x_forwarded_for", "%REQ(X-FORWARDED-FOR)%"),
];

/// What tracing and access logging do on one proxy.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TelemetryConfig {
    /// Gateway and sidecar-outbound requests (Istio's CLIENT mode).
    pub client: SideTelemetry,
    /// Sidecar-inbound requests (SERVER mode).
    pub server: SideTelemetry,
    /// Who this proxy is, for span tags and the trace resource.
    #[serde(default)]
    pub workload: WorkloadTags,
}

/// Istio's span tags about the proxy's workload (`istio.canonical_service`, …).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct WorkloadTags {
    pub canonical_service: String,
    pub canonical_revision: String,
    pub namespace: String,
    /// Istio's mesh id (the trust domain unless set).
    pub mesh_id: String,
    pub workload: String,
}

impl WorkloadTags {
    /// Istio's canonical service and revision from a workload's labels.
    pub fn new(
        workload: &str,
        ns: &str,
        labels: &BTreeMap<String, String>,
        mesh_id: &str,
    ) -> WorkloadTags {
        let first = |keys: &[&str]| keys.iter().find_map(|k| labels.get(*k).cloned());
        WorkloadTags {
            canonical_service: first(&[
                "service.istio.io/canonical-name",
                "app.kubernetes.io/name",
                "app",
            ])
            .unwrap_or_else(|| workload.to_string()),
            canonical_revision: first(&[
                "service.istio.io/canonical-revision",
                "app.kubernetes.io/version",
                "version",
            ])
            .unwrap_or_else(|| "latest".into()),
            namespace: ns.to_string(),
            mesh_id: mesh_id.to_string(),
            workload: workload.to_string(),
        }
    }
}

/// Tracing and access logs of one side.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SideTelemetry {
    /// `None`: no tracing on this side (trace headers pass through untouched).
    pub tracing: Option<TracingSpec>,
    pub access_logs: Vec<AccessLog>,
    /// Istio's metrics on this side: off, or with Telemetry overrides.
    #[serde(default)]
    pub metrics: metrics::MetricsSpec,
}

/// Resolved tracing of one side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TracingSpec {
    /// The MeshConfig extension provider's name.
    pub provider: String,
    pub collector: Collector,
    /// 0-100: the share of requests without an upstream decision that are sampled.
    pub sampling_percent: f64,
    /// `disableSpanReporting`: decide and propagate, but send nothing.
    pub report_spans: bool,
    /// `enableIstioTags` (default on): `istio.canonical_service`, `istio.namespace`, ….
    pub istio_tags: bool,
    /// `disableContextPropagation` off: trace headers are sent upstream.
    pub propagate: bool,
    pub custom_tags: Vec<CustomTag>,
    /// Longest tag value (`maxTagLength`, Envoy's default 256).
    pub max_tag_length: u32,
    /// Which trace headers this proxy writes.
    #[serde(default)]
    pub propagation: Propagation,
    /// New traces get 64-bit ids (Zipkin's `enable64bitTraceId`).
    #[serde(default)]
    pub trace_id_64bit: bool,
}

/// The trace headers a proxy writes upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Propagation {
    /// W3C `traceparent`, and B3 in the form the caller sent (OpenTelemetry providers).
    #[default]
    W3c,
    /// B3 multi-header only (Zipkin's `USE_B3`, Envoy's Zipkin tracer).
    B3,
    /// B3 multi-header and W3C (`USE_B3_WITH_W3C_PROPAGATION`).
    B3AndW3c,
}

/// How spans are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpanFormat {
    /// OTLP: gRPC, or HTTP protobuf when the collector has a path.
    #[default]
    Otlp,
    /// Zipkin JSON v2 POSTed to the collector's path.
    Zipkin,
}

/// Where spans go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Collector {
    /// `host:port`, dialed directly in plaintext.
    pub address: String,
    /// `None`: OTLP/gRPC; `Some(path)`: OTLP/HTTP protobuf (or Zipkin JSON) POSTed there.
    pub http_path: Option<String>,
    pub timeout_ms: u64,
    #[serde(default)]
    pub format: SpanFormat,
}

/// A span tag from Telemetry `customTags`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomTag {
    pub name: String,
    pub source: TagSource,
}

/// Where a custom tag's value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TagSource {
    Literal(String),
    /// A request header (lower-case), or the default when absent.
    Header {
        name: String,
        default: Option<String>,
    },
    /// The proxy's environment variable, or the default.
    Environment {
        name: String,
        default: Option<String>,
    },
}

/// One access log sink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessLog {
    pub provider: String,
    /// A file, or `/dev/stdout`.
    pub path: String,
    pub format: LogFormat,
    /// A CEL expression (validated at load); only requests it is true for are logged.
    pub filter: Option<String>,
}

/// An access log line's format: Envoy command operators (`%RESPONSE_CODE%`, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text(String),
    /// JSON object: label -> format string.
    Json(Vec<(String, String)>),
}

/// The Telemetry resources that apply to one workload, root first (later wins), with the
/// keys of the resources used.
#[derive(Debug, Default)]
pub struct Applicable<'a> {
    pub tracing: Vec<&'a Tracing>,
    /// Per Telemetry resource: its `accessLogging` list (levels matter for merging).
    pub logging: Vec<&'a [AccessLogging]>,
    /// Per Telemetry resource: its `metrics` entries, in order.
    pub metrics: Vec<&'a weft_api::Metrics>,
    pub used: Vec<String>,
}

fn telemetries<'a>(
    resources: &'a [Resource],
    ns: &'a str,
) -> impl Iterator<Item = (&'a Resource, &'a Telemetry)> {
    resources.iter().filter_map(move |r| match &r.spec {
        Spec::Telemetry(t) if r.namespace() == ns => Some((r, t)),
        _ => None,
    })
}

fn namespace_wide(t: &Telemetry) -> bool {
    t.selector
        .as_ref()
        .is_none_or(|s| s.match_labels.is_empty())
        && t.target_ref.is_none()
        && t.target_refs.is_empty()
}

/// Istio's `applicableTelemetries` for a workload.
pub fn applicable<'a>(
    resources: &'a [Resource],
    root: &'a str,
    ns: &'a str,
    labels: &BTreeMap<String, String>,
) -> Applicable<'a> {
    let mut out = Applicable::default();
    let add = |r: &Resource, t: &'a Telemetry, out: &mut Applicable<'a>| {
        out.used.push(r.key());
        out.tracing.extend(&t.tracing);
        out.metrics.extend(&t.metrics);
        if !t.access_logging.is_empty() {
            out.logging.push(&t.access_logging);
        }
    };
    // One namespace-wide Telemetry per namespace counts: the first.
    if let Some((r, t)) = telemetries(resources, root).find(|(_, t)| namespace_wide(t)) {
        add(r, t, &mut out);
    }
    if ns != root {
        if let Some((r, t)) = telemetries(resources, ns).find(|(_, t)| namespace_wide(t)) {
            add(r, t, &mut out);
        }
    }
    for (r, t) in telemetries(resources, ns) {
        let sel = t.selector.as_ref().map(|s| &s.match_labels);
        if let Some(sel) =
            sel.filter(|s| !s.is_empty() && t.target_ref.is_none() && t.target_refs.is_empty())
        {
            if selects(sel, labels) {
                add(r, t, &mut out);
            }
        }
    }
    out
}

/// Tracing and access logging of one workload.
pub fn telemetry_for(
    resources: &[Resource],
    mesh: Option<&MeshConfig>,
    root: &str,
    ns: &str,
    labels: &BTreeMap<String, String>,
) -> (TelemetryConfig, Vec<String>) {
    let a = applicable(resources, root, ns, labels);
    let (client, server) = tracing(&a.tracing, mesh);
    let (client_metrics, server_metrics) = metrics::resolve(&a.metrics, mesh);
    let cfg = TelemetryConfig {
        client: SideTelemetry {
            tracing: client,
            access_logs: access_logs(&a.logging, mesh, WorkloadMode::Client),
            metrics: client_metrics,
        },
        server: SideTelemetry {
            tracing: server,
            access_logs: access_logs(&a.logging, mesh, WorkloadMode::Server),
            metrics: server_metrics,
        },
        workload: WorkloadTags::default(),
    };
    (cfg, a.used)
}

/// [`telemetry_for`] a registry workload, with its span tags (`mesh_id`: the trust domain).
pub(crate) fn for_workload(
    resources: &[Resource],
    root: &str,
    w: &crate::registry::Workload,
    trust_domain: &str,
) -> (TelemetryConfig, Vec<String>) {
    let mesh = crate::mesh::mesh_config(resources);
    let (mut cfg, used) = telemetry_for(resources, mesh, root, &w.namespace, &w.labels);
    cfg.workload = WorkloadTags::new(&w.name, &w.namespace, &w.labels, trust_domain);
    (cfg, used)
}

/// The tracing fields Istio merges, per side, before the provider is looked up.
#[derive(Clone)]
struct Merged<'a> {
    provider: Option<&'a str>,
    disabled: bool,
    sampling: Option<f64>,
    tags: Option<&'a BTreeMap<String, Option<weft_api::CustomTag>>>,
    istio_tags: bool,
    propagate: bool,
}

fn tracing(
    list: &[&Tracing],
    mesh: Option<&MeshConfig>,
) -> (Option<TracingSpec>, Option<TracingSpec>) {
    let default = mesh
        .and_then(|m| m.default_providers.as_ref())
        .and_then(|d| d.tracing.first())
        .map(String::as_str);
    if list.is_empty() && default.is_none() {
        return (None, None);
    }
    let start = Merged {
        provider: default,
        disabled: false,
        sampling: None,
        tags: None,
        istio_tags: true,
        propagate: true,
    };
    let (mut client, mut server) = (start.clone(), start);
    for t in list {
        let mode = t.r#match.as_ref().and_then(|m| m.mode).unwrap_or_default();
        let sides: Vec<&mut Merged> = match mode {
            WorkloadMode::Client => vec![&mut client],
            WorkloadMode::Server => vec![&mut server],
            WorkloadMode::ClientAndServer => vec![&mut client, &mut server],
        };
        for s in sides {
            if let Some(p) = t.providers.first() {
                s.provider = Some(&p.name);
            }
            if let Some(d) = t.disable_span_reporting {
                s.disabled = d;
            }
            if !t.custom_tags.is_empty() {
                s.tags = Some(&t.custom_tags);
            }
            if let Some(p) = t.random_sampling_percentage {
                s.sampling = Some(p);
            }
            if let Some(b) = t.enable_istio_tags {
                s.istio_tags = b;
            }
            if let Some(b) = t.disable_context_propagation {
                s.propagate = !b;
            }
        }
    }
    (finish(&client, mesh), finish(&server, mesh))
}

fn finish(m: &Merged, mesh: Option<&MeshConfig>) -> Option<TracingSpec> {
    let name = m.provider?;
    let provider = mesh?
        .extension_providers
        .iter()
        .find(|p| p.name.eq_ignore_ascii_case(name))?;
    let (collector, max_tag_length, propagation, trace_id_64bit) = collector(provider)?;
    let tags = m.tags.into_iter().flatten().filter_map(|(name, t)| {
        let t = t.as_ref()?;
        let source = if let Some(l) = &t.literal {
            TagSource::Literal(l.value.clone().unwrap_or_default())
        } else if let Some(h) = &t.header {
            TagSource::Header {
                name: h.name.to_ascii_lowercase(),
                default: h.default_value.clone(),
            }
        } else {
            let e = t.environment.as_ref()?;
            TagSource::Environment {
                name: e.name.clone(),
                default: e.default_value.clone(),
            }
        };
        Some(CustomTag {
            name: name.clone(),
            source,
        })
    });
    Some(TracingSpec {
        provider: name.to_string(),
        collector,
        sampling_percent: m
            .sampling
            .unwrap_or(DEFAULT_SAMPLING_PERCENT)
            .clamp(0.0, 100.0),
        report_spans: !m.disabled,
        istio_tags: m.istio_tags,
        propagate: m.propagate,
        custom_tags: tags.collect(),
        max_tag_length,
        propagation,
        trace_id_64bit,
    })
}
