//! Istio's MeshConfig, read where Istio keeps it: the `mesh` key of the ConfigMap `istio`
//! in `istio-system` (what `kubectl get cm istio -n istio-system -o yaml` shows). The
//! fields weft acts on are typed; every other top-level field is kept by name so it can be
//! reported as not enforced.

use serde::{Deserialize, Serialize};

/// The parts of MeshConfig weft reads.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshConfig {
    /// Policies in this namespace apply mesh-wide (Istio's default: `istio-system`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_normalization: Option<PathNormalizationConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_config: Option<DefaultProxyConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extension_providers: Vec<ExtensionProviderConfig>,
    /// Providers used when no Telemetry resource names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_providers: Option<DefaultProviders>,
    /// Istio's legacy mesh-wide tracing switch (`true` unless set false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_tracing: Option<bool>,
    /// Istio's mesh-wide access log switch: a path (`/dev/stdout`) turns logs on everywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_log_file: Option<String>,
    /// `TEXT` (Istio's default) or `JSON`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_log_encoding: Option<String>,
    /// An Envoy format string replacing Istio's default line (TEXT encoding).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_log_format: Option<String>,
    /// Where a sidecar sends requests for hosts it does not know (Istio's default
    /// ALLOW_ANY; a Sidecar's own setting wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound_traffic_policy: Option<MeshOutboundTrafficPolicy>,
    /// Every top-level key written (the fields above and the ones weft does not read).
    #[serde(skip)]
    pub keys: Vec<String>,
}

/// MeshConfig `outboundTrafficPolicy`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshOutboundTrafficPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<crate::OutboundTrafficMode>,
}

/// `pathNormalization`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PathNormalizationConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalization: Option<PathNormalizationMode>,
}

/// `pathNormalization.normalization`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PathNormalizationMode {
    /// Istio's default: the same as BASE.
    #[default]
    Default,
    None,
    Base,
    MergeSlashes,
    DecodeAndMergeSlashes,
}

/// `defaultConfig` (ProxyConfig defaults): weft reads the gateway topology.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DefaultProxyConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_topology: Option<GatewayTopology>,
    /// Every key written under `defaultConfig`.
    #[serde(skip)]
    pub keys: Vec<String>,
}

/// `defaultConfig.gatewayTopology`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayTopology {
    /// Proxies in front of the gateway whose `X-Forwarded-For` entries are trusted.
    #[serde(default)]
    pub num_trusted_proxies: u32,
}

/// One `extensionProviders[]` entry.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtensionProviderConfig {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envoy_ext_authz_http: Option<ExtAuthzHttp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opentelemetry: Option<OpenTelemetryProvider>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envoy_file_access_log: Option<FileAccessLogProvider>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zipkin: Option<ZipkinProvider>,
    /// The provider's kind (`envoyExtAuthzHttp`, `zipkin`, `opentelemetry`, …).
    #[serde(skip)]
    pub kind: String,
}

/// `envoyExtAuthzHttp`: an external HTTP authorizer for CUSTOM policies.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtAuthzHttp {
    /// `[namespace/]host` of the authorizer.
    #[serde(default)]
    pub service: String,
    #[serde(default)]
    pub port: u32,
    /// Istio's default: 600s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    #[serde(default)]
    pub fail_open: bool,
    /// Status sent when the authorizer cannot be reached (default 403).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_on_error: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include_request_headers_in_check: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include_headers_in_check: Vec<String>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub include_additional_headers_in_check: std::collections::BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers_to_upstream_on_allow: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers_to_downstream_on_deny: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers_to_downstream_on_allow: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_request_body_in_check: Option<serde_json::Value>,
}

/// `defaultProviders`: provider names per signal.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DefaultProviders {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tracing: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access_logging: Vec<String>,
}

/// `opentelemetry`: an OTLP collector for trace spans.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenTelemetryProvider {
    /// `[namespace/]host` of the collector.
    #[serde(default)]
    pub service: String,
    #[serde(default)]
    pub port: u32,
    /// OTLP/HTTP instead of OTLP/gRPC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<OtlpHttp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<OtlpGrpc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tag_length: Option<u32>,
    /// Every key written (some are reported, not built).
    #[serde(skip)]
    pub keys: Vec<String>,
}

/// `zipkin`: a Zipkin collector for trace spans (JSON v2 over HTTP).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ZipkinProvider {
    /// `[namespace/]host` of the collector.
    #[serde(default)]
    pub service: String,
    #[serde(default)]
    pub port: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tag_length: Option<u32>,
    #[serde(default, rename = "enable64bitTraceId")]
    pub enable_64bit_trace_id: bool,
    /// Istio's default: `/api/v2/spans`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `USE_B3` (the default) or `USE_B3_WITH_W3C_PROPAGATION`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_context_option: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Extra headers for the collector (reported: not sent yet).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<serde_json::Value>,
}

/// `opentelemetry.http`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OtlpHttp {
    /// Istio's default: `/v1/traces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Extra headers for the collector (reported: not sent yet).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<serde_json::Value>,
}

/// `opentelemetry.grpc`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OtlpGrpc {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Metadata for the collector (reported: not sent yet).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub initial_metadata: Vec<serde_json::Value>,
}

/// `envoyFileAccessLog`: access log lines to a file (`/dev/stdout` for the proxy's stdout).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileAccessLogProvider {
    #[serde(default)]
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
    /// Envoy's `omit_empty_values` (reported: not built).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub omit_empty_values: Option<bool>,
}

/// `envoyFileAccessLog.logFormat`: a text line or JSON labels (each value a format string).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogFormat {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<std::collections::BTreeMap<String, serde_json::Value>>,
}

/// The ConfigMap that holds MeshConfig.
pub const MESH_CONFIG_MAP: (&str, &str) = ("istio-system", "istio");

fn keys(v: &serde_json::Value) -> Vec<String> {
    v.as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// Reads the text of the ConfigMap's `mesh` key. Errors name the field in words.
pub fn parse(value: serde_json::Value) -> Result<MeshConfig, String> {
    if value.is_null() {
        return Ok(MeshConfig::default());
    }
    if !value.is_object() {
        return Err("the `mesh` key must hold a YAML mapping of MeshConfig fields".into());
    }
    let mut mc: MeshConfig =
        serde_json::from_value(value.clone()).map_err(|e| format!("MeshConfig: {e}"))?;
    mc.keys = keys(&value);
    // Istio merges the mesh YAML onto its defaults, where an empty string is unset:
    // `rootNamespace: ""` keeps the default (istio-system).
    if mc.root_namespace.as_deref() == Some("") {
        mc.root_namespace = None;
    }
    if let Some(dc) = mc.default_config.as_mut() {
        dc.keys = keys(&value["defaultConfig"]);
    }
    let providers = value["extensionProviders"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for (p, raw) in mc.extension_providers.iter_mut().zip(providers) {
        p.kind = keys(&raw)
            .into_iter()
            .find(|k| k != "name")
            .unwrap_or_default();
        if let Some(o) = p.opentelemetry.as_mut() {
            o.keys = keys(&raw["opentelemetry"]);
        }
    }
    Ok(mc)
}
