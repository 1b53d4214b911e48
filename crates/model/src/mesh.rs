//! Mesh-wide settings from MeshConfig (the ConfigMap `istio` in `istio-system`), with
//! Istio's defaults when there is none, and the report of MeshConfig fields weft does not
//! act on.

use crate::authz::DEFAULT_ROOT_NAMESPACE;
use serde::{Deserialize, Serialize};
use weft_api::{MeshConfig, PathNormalizationMode, Resource, Spec};

/// The mesh-wide settings a proxy applies.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MeshOptions {
    /// How request paths are normalized before routing and authorization.
    #[serde(default)]
    pub path_normalization: PathNormalization,
    /// Gateways: `X-Forwarded-For` hops in front of them that are trusted
    /// (`defaultConfig.gatewayTopology.numTrustedProxies`).
    #[serde(default)]
    pub num_trusted_proxies: u32,
}

/// MeshConfig `pathNormalization.normalization`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PathNormalization {
    None,
    /// Istio's default (also `DEFAULT`).
    #[default]
    Base,
    MergeSlashes,
    DecodeAndMergeSlashes,
}

/// The MeshConfig among `resources` (at most one: duplicates are refused at load).
pub fn mesh_config(resources: &[Resource]) -> Option<&MeshConfig> {
    resources.iter().find_map(|r| match &r.spec {
        Spec::MeshConfig(mc) => Some(mc),
        _ => None,
    })
}

/// MeshConfig `rootNamespace`, or Istio's default.
pub fn root_namespace(resources: &[Resource]) -> &str {
    mesh_config(resources)
        .and_then(|mc| mc.root_namespace.as_deref())
        .unwrap_or(DEFAULT_ROOT_NAMESPACE)
}

/// The settings every proxy applies.
pub fn options(resources: &[Resource]) -> MeshOptions {
    let Some(mc) = mesh_config(resources) else {
        return MeshOptions::default();
    };
    let mode = mc
        .path_normalization
        .as_ref()
        .and_then(|p| p.normalization)
        .unwrap_or_default();
    MeshOptions {
        path_normalization: match mode {
            PathNormalizationMode::Default | PathNormalizationMode::Base => PathNormalization::Base,
            PathNormalizationMode::None => PathNormalization::None,
            PathNormalizationMode::MergeSlashes => PathNormalization::MergeSlashes,
            PathNormalizationMode::DecodeAndMergeSlashes => {
                PathNormalization::DecodeAndMergeSlashes
            }
        },
        num_trusted_proxies: mc
            .default_config
            .as_ref()
            .and_then(|d| d.gateway_topology.as_ref())
            .map_or(0, |t| t.num_trusted_proxies),
    }
}

/// Extension provider kinds weft runs.
const PROVIDER_KINDS: &[&str] = &[
    "envoyExtAuthzHttp",
    "opentelemetry",
    "envoyFileAccessLog",
    "zipkin",
];

/// MeshConfig top-level fields weft acts on.
const READ: &[&str] = &[
    "rootNamespace",
    "pathNormalization",
    "defaultConfig",
    "extensionProviders",
    "defaultProviders",
    "enableTracing",
    "accessLogFile",
    "accessLogEncoding",
    "accessLogFormat",
    "outboundTrafficPolicy",
];

/// MeshConfig fields weft does not act on, by name.
pub(crate) fn report(mc: &MeshConfig, push: &mut impl FnMut(String)) {
    for k in &mc.keys {
        if !READ.contains(&k.as_str()) {
            push(format!("MeshConfig {k}"));
        }
    }
    if mc.enable_tracing == Some(true) {
        push("MeshConfig enableTracing (the legacy Zipkin tracer of defaultConfig.tracing is not built: name an opentelemetry or zipkin extension provider in Telemetry tracing or defaultProviders.tracing)".into());
    }
    for p in mc.default_providers.iter().flat_map(|d| &d.metrics) {
        if p != crate::telemetry::metrics::PROMETHEUS {
            push(format!("MeshConfig defaultProviders.metrics {p} (weft's one metrics provider is Istio's built-in prometheus; this one gets nothing)"));
        }
    }
    for k in mc.default_config.iter().flat_map(|d| &d.keys) {
        if k != "gatewayTopology" {
            push(format!("MeshConfig defaultConfig.{k}"));
        }
    }
    for (i, p) in mc.extension_providers.iter().enumerate() {
        let body = p
            .envoy_ext_authz_http
            .as_ref()
            .and_then(|h| h.include_request_body_in_check.as_ref());
        if body.is_some() {
            push(format!("MeshConfig extensionProviders[{i}] {} includeRequestBodyInCheck (not built: checks carry no body)", p.name));
        }
        let otel = p.opentelemetry.as_ref();
        if otel
            .and_then(|o| o.http.as_ref())
            .is_some_and(|h| !h.headers.is_empty())
        {
            push(format!(
                "MeshConfig extensionProviders[{i}] {} opentelemetry.http.headers (not sent yet)",
                p.name
            ));
        }
        if otel
            .and_then(|o| o.grpc.as_ref())
            .is_some_and(|g| !g.initial_metadata.is_empty())
        {
            push(format!("MeshConfig extensionProviders[{i}] {} opentelemetry.grpc.initialMetadata (not sent yet)", p.name));
        }
        if p.zipkin.as_ref().is_some_and(|z| !z.headers.is_empty()) {
            push(format!(
                "MeshConfig extensionProviders[{i}] {} zipkin.headers (not sent yet)",
                p.name
            ));
        }
        if p.envoy_file_access_log
            .as_ref()
            .is_some_and(|f| f.omit_empty_values.is_some())
        {
            push(format!(
                "MeshConfig extensionProviders[{i}] {} envoyFileAccessLog.omitEmptyValues",
                p.name
            ));
        }
        for k in otel.iter().flat_map(|o| &o.keys) {
            if !["service", "port", "http", "grpc", "maxTagLength"].contains(&k.as_str()) {
                push(format!(
                    "MeshConfig extensionProviders[{i}] {} opentelemetry.{k}",
                    p.name
                ));
            }
        }
        if !PROVIDER_KINDS.contains(&p.kind.as_str()) {
            push(format!(
                "MeshConfig extensionProviders[{i}] {} ({}: not built yet)",
                p.name, p.kind
            ));
        }
    }
}
