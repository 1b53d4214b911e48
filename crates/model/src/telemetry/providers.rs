//! Where a tracing provider's spans go: a MeshConfig `opentelemetry` provider (OTLP over
//! gRPC, or HTTP with `http:`) or `zipkin` provider (Zipkin JSON to its path, B3 headers),
//! with its collector address, timeout, tag length, propagation and trace-id width.

use super::{Collector, Propagation, SpanFormat};
use crate::registry::fqdn;

/// Where a provider's spans go: (collector, max tag length, propagation, 64-bit ids).
pub(super) fn collector(
    p: &weft_api::ExtensionProviderConfig,
) -> Option<(Collector, u32, Propagation, bool)> {
    let host = |service: &str| {
        let (ns, host) = service.split_once('/').unwrap_or(("", service));
        if ns.is_empty() {
            host.to_string()
        } else {
            fqdn(host, ns)
        }
    };
    if let Some(z) = &p.zipkin {
        let propagation = match z.trace_context_option.as_deref() {
            Some("USE_B3_WITH_W3C_PROPAGATION") => Propagation::B3AndW3c,
            _ => Propagation::B3,
        };
        let c = Collector {
            address: format!("{}:{}", host(&z.service), z.port),
            http_path: Some(z.path.clone().unwrap_or_else(|| "/api/v2/spans".into())),
            timeout_ms: z
                .timeout
                .as_deref()
                .and_then(crate::parse_duration_ms)
                .unwrap_or(10_000),
            format: SpanFormat::Zipkin,
        };
        return Some((
            c,
            z.max_tag_length.unwrap_or(256),
            propagation,
            z.enable_64bit_trace_id,
        ));
    }
    let otel = p.opentelemetry.as_ref()?;
    let timeout = otel
        .http
        .as_ref()
        .and_then(|h| h.timeout.as_deref())
        .or(otel.grpc.as_ref().and_then(|g| g.timeout.as_deref()))
        .and_then(crate::parse_duration_ms);
    let c = Collector {
        address: format!("{}:{}", host(&otel.service), otel.port),
        http_path: otel
            .http
            .as_ref()
            .map(|h| h.path.clone().unwrap_or_else(|| "/v1/traces".into())),
        timeout_ms: timeout.unwrap_or(10_000),
        format: SpanFormat::Otlp,
    };
    Some((
        c,
        otel.max_tag_length.unwrap_or(256),
        Propagation::W3c,
        false,
    ))
}
