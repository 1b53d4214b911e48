//! Route behaviour besides matching and destinations — retries, header operations,
//! redirect, direct response, fault injection — translated from Istio's HTTPRoute.

use crate::config::{DirectResponse, Fault, HeaderOps, Redirect, RetryPolicy};
use crate::names::parse_duration_ms;
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
    weft_api::GRPC_STATUS_NAMES
        .iter()
        .position(|n| n.eq_ignore_ascii_case(name))
        .map(|i| i as u8)
}

pub(crate) fn fault(f: &weft_api::HttpFaultInjection) -> Fault {
    let mut out = Fault::default();
    if let Some(d) = &f.delay {
        out.delay_ms = d.fixed_delay.as_deref().and_then(parse_duration_ms);
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

/// `Host` and `:authority` in request add/set are the authority (Istio's
/// `translateHeadersOperations` turns them into a host rewrite, see [`header_authority`]),
/// never a header.
fn is_authority(name: &str) -> bool {
    name.eq_ignore_ascii_case("host") || name.eq_ignore_ascii_case(":authority")
}

fn ops(o: Option<&weft_api::HeaderOperations>) -> HeaderOps {
    let Some(o) = o else {
        return HeaderOps::default();
    };
    HeaderOps {
        set: o
            .set
            .iter()
            .filter(|(k, _)| !is_authority(k))
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect(),
        add: o
            .add
            .iter()
            .filter(|(k, _)| !is_authority(k))
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect(),
        remove: o.remove.iter().map(|k| k.to_ascii_lowercase()).collect(),
    }
}

/// The authority a `headers.request` block sets (`Host` or `:authority` in set, then add),
/// which Istio applies as the route's host rewrite.
pub(crate) fn header_authority(h: Option<&weft_api::Headers>) -> Option<String> {
    let req = h?.request.as_ref()?;
    req.set
        .iter()
        .chain(&req.add)
        .find(|(k, _)| is_authority(k))
        .map(|(_, v)| v.clone())
}

/// (request, response) header operations of an Istio `headers` block.
pub(crate) fn header_ops(h: Option<&weft_api::Headers>) -> (HeaderOps, HeaderOps) {
    (
        ops(h.and_then(|h| h.request.as_ref())),
        ops(h.and_then(|h| h.response.as_ref())),
    )
}

/// Istio's retry translation: no `retries` means the mesh default (2 attempts on
/// connect-failure, refused-stream, unavailable, cancelled); `attempts: 0` (or `{}`) means
/// none; HTTP status codes in `retryOn` become retriable status codes.
pub fn retry_policy(r: Option<&weft_api::HttpRetry>) -> RetryPolicy {
    use crate::{RetryCondition, RetryOn};
    let mut p = RetryPolicy {
        backoff_ms: 25,
        ignore_previous_hosts: true,
        ..Default::default()
    };
    let Some(r) = r else {
        p.attempts = 2;
        p.retry_on = RetryOn::ISTIO_DEFAULT;
        return p;
    };
    p.attempts = r.attempts.unwrap_or(0).max(0) as u32;
    if p.attempts == 0 {
        return RetryPolicy::default();
    }
    // An empty retryOn keeps Istio's defaults.
    match r.retry_on.as_deref().filter(|on| !on.trim().is_empty()) {
        None => p.retry_on = RetryOn::ISTIO_DEFAULT,
        Some(on) => {
            for token in on.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                if let Ok(code) = token.parse::<u16>() {
                    p.retriable_status_codes.push(code);
                    p.retry_on.insert(RetryCondition::RetriableStatusCodes);
                } else if let Some(c) = RetryCondition::parse(token) {
                    p.retry_on.insert(c);
                }
                // Validation rejected every other token before compiling.
            }
        }
    }
    p.per_try_timeout_ms = r.per_try_timeout.as_deref().and_then(parse_duration_ms);
    if let Some(b) = r.backoff.as_deref().and_then(parse_duration_ms) {
        p.backoff_ms = b.max(1);
    }
    p.ignore_previous_hosts = r.retry_ignore_previous_hosts.unwrap_or(true);
    p
}

/// Istio's corsPolicy; the deprecated `allowOrigin` strings are exact matches (`*` = any).
pub(crate) fn cors(c: &weft_api::CorsPolicy) -> crate::config::Cors {
    use crate::config::StringMatcher;
    let mut allow_origins: Vec<StringMatcher> = c
        .allow_origins
        .iter()
        .map(crate::matching::string_matcher)
        .collect();
    allow_origins.extend(c.allow_origin.iter().map(|o| {
        if o == "*" {
            StringMatcher::Prefix(String::new())
        } else {
            StringMatcher::Exact(o.clone())
        }
    }));
    crate::config::Cors {
        allow_origins,
        allow_methods: c.allow_methods.clone(),
        allow_headers: c.allow_headers.clone(),
        expose_headers: c.expose_headers.clone(),
        max_age_secs: c
            .max_age
            .as_deref()
            .and_then(parse_duration_ms)
            .map(|ms| ms / 1000),
        allow_credentials: c.allow_credentials.unwrap_or(false),
        forward_unmatched_preflights: !matches!(
            c.unmatched_preflights,
            Some(weft_api::UnmatchedPreflights::Ignore)
        ),
    }
}

/// The route's rewrite: `rewrite`, with the authority `headers.request` sets (`Host` or
/// `:authority`) as Istio applies it when `rewrite.authority` is not set.
pub(crate) fn route_rewrite(http: &weft_api::HttpRoute) -> Option<crate::Rewrite> {
    let from_headers = header_authority(http.headers.as_ref());
    let Some(rw) = &http.rewrite else {
        return from_headers.map(|a| crate::Rewrite {
            uri: None,
            authority: Some(a),
            uri_regex: None,
        });
    };
    Some(crate::Rewrite {
        uri: rw.uri.clone(),
        authority: rw.authority.clone().or(from_headers),
        uri_regex: rw
            .uri_regex_rewrite
            .as_ref()
            .and_then(|r| Some((r.r#match.clone()?, r.rewrite.clone().unwrap_or_default()))),
    })
}
