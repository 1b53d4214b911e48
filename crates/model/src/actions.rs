//! Route actions other than forwarding — redirect, direct response — and fault injection,
//! translated from Istio's HTTPRoute into the proxy's terms.

use crate::config::{DirectResponse, Fault, Redirect};
use base64::Engine;

fn percent(p: Option<&weft_api::Percent>, deprecated: Option<i32>) -> f64 {
    match (p.and_then(|p| p.value), deprecated) {
        (Some(v), _) => v,
        (None, Some(v)) => f64::from(v),
        // Istio: no percentage means nothing is delayed or aborted.
        (None, None) => 0.0,
    }
    .clamp(0.0, 100.0)
}

/// gRPC status names (Istio writes `grpcStatus: UNAVAILABLE`) to codes.
pub fn grpc_code(name: &str) -> Option<u8> {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    NAMES
        .iter()
        .position(|n| n.eq_ignore_ascii_case(name))
        .map(|i| i as u8)
}

pub(crate) fn fault(f: &weft_api::HttpFaultInjection) -> Fault {
    let mut out = Fault::default();
    if let Some(d) = &f.delay {
        out.delay_ms = d.fixed_delay.as_deref().and_then(crate::parse_duration_ms);
        out.delay_percent = percent(d.percentage.as_ref(), d.percent);
    }
    if let Some(a) = &f.abort {
        out.abort_status = a.http_status.and_then(|s| u16::try_from(s).ok());
        out.abort_grpc = a.grpc_status.as_deref().and_then(grpc_code);
        out.abort_percent = percent(a.percentage.as_ref(), None);
    }
    out
}

pub(crate) fn redirect(r: &weft_api::HttpRedirect) -> Redirect {
    Redirect {
        uri: r.uri.clone(),
        prefix_rewrite: r.prefix_rewrite.clone(),
        authority: r.authority.clone(),
        scheme: r.scheme.clone(),
        port: r.port,
        port_from_request: matches!(
            r.derive_port,
            Some(weft_api::RedirectPortSelection::FromRequestPort)
        ),
        code: r
            .redirect_code
            .and_then(|c| u16::try_from(c).ok())
            .unwrap_or(301),
    }
}

pub(crate) fn direct_response(d: &weft_api::HttpDirectResponse) -> DirectResponse {
    let body = match &d.body {
        Some(b) => match (&b.string, &b.bytes) {
            (Some(s), _) => s.clone().into_bytes(),
            (None, Some(b64)) => base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap_or_default(),
            (None, None) => Vec::new(),
        },
        None => Vec::new(),
    };
    DirectResponse {
        status: u16::try_from(d.status).unwrap_or(500),
        body,
    }
}
