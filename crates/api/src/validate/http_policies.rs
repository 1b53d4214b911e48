//! VirtualService HTTP route policies: retries (`retryOn` tokens and status codes; Istio's
//! `ValidateHTTPRetry` in `agent/validation.go`), fault injection (delay/abort,
//! percentages; `validateHTTPFaultInjection*`) and CORS (`validateCORSPolicy`).

use super::common::{
    duration, duration_ms, is_known_status, is_token, percent, string_match, EmptyPrefix,
};
use super::{Errs, WarningKind};
use crate::{CorsPolicy, HttpFaultInjection, HttpRetry};

const RETRY_ON: &[&str] = &[
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "envoy-ratelimited",
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

const HTTP_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "*",
];

pub(super) fn retries(errs: &mut Errs, at: &str, rt: &HttpRetry) {
    if let Some(a) = rt.attempts {
        if a < 0 {
            errs.at(
                format!("{at}.attempts"),
                format!("retry attempts {a} must not be negative (0 disables retries)"),
            );
        }
    }
    if let Some(t) = &rt.per_try_timeout {
        duration(errs, &format!("{at}.perTryTimeout"), t, false);
    }
    if let Some(b) = &rt.backoff {
        duration(errs, &format!("{at}.backoff"), b, false);
    }
    let disabled = rt.attempts.unwrap_or(0) == 0;
    let configured = rt.per_try_timeout.is_some()
        || rt.retry_on.as_deref().is_some_and(|r| !r.is_empty())
        || rt.retry_remote_localities.is_some();
    if disabled && configured {
        errs.key(format!("{at}.attempts"), "http retry policy configured when attempts are set to 0 (disabled): set attempts (e.g. attempts: 3), or remove perTryTimeout/retryOn/retryRemoteLocalities");
    }
    if let Some(on) = rt.retry_on.as_deref().filter(|r| !r.is_empty()) {
        for t in on.split(',') {
            if RETRY_ON.contains(&t) || t.parse::<u32>().is_ok_and(is_known_status) {
                continue;
            }
            if let Ok(code) = t.parse::<u32>() {
                let why = if (100..=599).contains(&code) {
                    "is not a known HTTP status code"
                } else {
                    "is out of range (use 100-599)"
                };
                errs.at(
                    format!("{at}.retryOn"),
                    format!("retryOn HTTP status {code} {why}"),
                );
                continue;
            }
            errs.at(
                format!("{at}.retryOn"),
                format!("retryOn contains an unknown policy ({t:?}); use comma-separated Envoy retry policies such as 5xx,connect-failure,reset (no spaces) or HTTP status codes"),
            );
        }
    }
}

/// Istio's `validatePercentage`: 0, or within [0.0001, 100].
fn fault_percentage(errs: &mut Errs, at: &str, what: &str, v: f64) {
    percent(errs, at, what, v);
    if v > 0.0 && v < 0.0001 {
        errs.at(
            at,
            format!("{what} {v} is neither 0 nor in range [0.0001, 100] (Envoy's precision)"),
        );
    }
}

pub(super) fn fault(errs: &mut Errs, at: &str, f: &HttpFaultInjection) {
    if f.delay.is_none() && f.abort.is_none() {
        errs.key(at, "fault must contain a delay and/or an abort");
    }
    if let Some(d) = &f.delay {
        let dat = format!("{at}.delay");
        match (&d.fixed_delay, &d.exponential_delay) {
            (Some(fd), _) => duration(errs, &format!("{dat}.fixedDelay"), fd, false),
            (None, Some(ed)) => {
                duration(errs, &format!("{dat}.exponentialDelay"), ed, false);
                errs.key(format!("{dat}.exponentialDelay"), "exponentialDelay is not supported yet (Istio rejects it): use fixedDelay");
            }
            (None, None) => errs.warn(WarningKind::Istio, &dat, "fault delay without fixedDelay: Istio accepts it, but no delay is injected; set fixedDelay (e.g. 5s)"),
        }
        if let Some(v) = d.percentage.as_ref().and_then(|p| p.value) {
            fault_percentage(
                errs,
                &format!("{dat}.percentage.value"),
                "fault delay percentage",
                v,
            );
        }
    }
    if let Some(a) = &f.abort {
        let aat = format!("{at}.abort");
        if let Some(g) = &a.grpc_status {
            if !crate::GRPC_STATUS_NAMES.contains(&g.as_str()) {
                errs.at(format!("{aat}.grpcStatus"), format!("gRPC status {g:?} is not supported: use a code name such as NOT_FOUND or UNAVAILABLE (https://github.com/grpc/grpc/blob/master/doc/statuscodes.md)"));
            }
        }
        if a.http2_error.is_some() {
            errs.key(format!("{aat}.http2Error"), "HTTP/2 abort fault injection is not supported yet (Istio rejects it): use httpStatus or grpcStatus");
        }
        if let Some(s) = a.http_status {
            if !(200..=599).contains(&s) {
                errs.at(
                    format!("{aat}.httpStatus"),
                    format!(
                        "fault abort httpStatus {s} is not a valid HTTP status (must be 200-599)"
                    ),
                );
            }
        }
        let kinds = [
            a.http_status.is_some(),
            a.grpc_status.is_some(),
            a.http2_error.is_some(),
        ];
        match kinds.iter().filter(|b| **b).count() {
            0 => errs.warn(
                WarningKind::Istio,
                &aat,
                "abort configured, but error type not set: Istio accepts it, but no request is aborted; set httpStatus or grpcStatus",
            ),
            1 => {}
            _ => errs.key(
                &aat,
                "fault abort: only one of httpStatus, grpcStatus or http2Error may be set",
            ),
        }
        if let Some(v) = a.percentage.as_ref().and_then(|p| p.value) {
            fault_percentage(
                errs,
                &format!("{aat}.percentage.value"),
                "fault abort percentage",
                v,
            );
        }
    }
}

pub(super) fn cors(errs: &mut Errs, at: &str, c: &CorsPolicy) {
    for (i, o) in c.allow_origins.iter().enumerate() {
        let oat = format!("{at}.allowOrigins[{i}]");
        if o.exact.is_none() && o.prefix.is_none() && o.regex.is_none() {
            errs.at(
                &oat,
                "corsPolicy.allowOrigins entries must set exact, prefix or regex",
            );
        }
        string_match(o, &oat, "allowOrigins", EmptyPrefix::Rejected, errs);
    }
    for (i, m) in c.allow_methods.iter().enumerate() {
        if !HTTP_METHODS.contains(&m.as_str()) {
            errs.at(format!("{at}.allowMethods[{i}]"), format!("corsPolicy.allowMethods contains an unknown method {m:?}; use GET, POST, PUT, DELETE, PATCH, HEAD, OPTIONS, CONNECT or TRACE"));
        }
    }
    for (name, list) in [
        ("allowHeaders", &c.allow_headers),
        ("exposeHeaders", &c.expose_headers),
    ] {
        for (i, h) in list.iter().enumerate() {
            if h.is_empty() {
                errs.at(
                    format!("{at}.{name}[{i}]"),
                    format!("corsPolicy.{name} entries must not be empty"),
                );
            } else if h != "*" && !is_token(h) {
                errs.at(
                    format!("{at}.{name}[{i}]"),
                    format!("corsPolicy.{name} entry {h:?} is not a valid header name (or \"*\")"),
                );
            }
        }
    }
    if let Some(m) = &c.max_age {
        let mat = format!("{at}.maxAge");
        duration(errs, &mat, m, false);
        if duration_ms(m).is_some_and(|ms| ms >= 1.0 && ms % 1000.0 != 0.0) {
            errs.at(mat, format!("corsPolicy.maxAge {m:?} is accurate only to seconds: use whole seconds (e.g. \"24h\" or \"600s\")"));
        }
    }
}
