//! VirtualService HTTP route policies: retries (`retryOn` tokens and status
//! codes), fault injection (delay/abort, percentages) and CORS.

use super::common::{duration, percent, string_match, EmptyPrefix};
use super::Errs;
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
    if let Some(on) = &rt.retry_on {
        for tok in on.split(',') {
            let t = tok.trim();
            if t.is_empty() || RETRY_ON.contains(&t) {
                continue;
            }
            match t.parse::<u32>() {
                Ok(code) if (100..=599).contains(&code) => {}
                Ok(code) => errs.at(format!("{at}.retryOn"), format!("retryOn HTTP status {code} is out of range (use 100-599)")),
                Err(_) => errs.at(
                    format!("{at}.retryOn"),
                    format!("retryOn contains an unknown policy ({t:?}); use comma-separated Envoy retry policies such as 5xx,connect-failure,reset or HTTP status codes"),
                ),
            }
        }
    }
}

pub(super) fn fault(errs: &mut Errs, at: &str, f: &HttpFaultInjection) {
    if f.delay.is_none() && f.abort.is_none() {
        errs.key(at, "fault must contain a delay and/or an abort");
    }
    if let Some(d) = &f.delay {
        let dat = format!("{at}.delay");
        match &d.fixed_delay {
            Some(fd) => duration(errs, &format!("{dat}.fixedDelay"), fd, false),
            None if d.exponential_delay.is_none() => errs.key(&dat, "fault delay needs fixedDelay"),
            None => {}
        }
        if let Some(v) = d.percentage.as_ref().and_then(|p| p.value) {
            percent(
                errs,
                &format!("{dat}.percentage.value"),
                "fault delay percentage",
                v,
            );
        }
        if let Some(p) = d.percent {
            if !(0..=100).contains(&p) {
                errs.at(
                    format!("{dat}.percent"),
                    format!("fault delay percent {p} must be within [0, 100]"),
                );
            }
        }
    }
    if let Some(a) = &f.abort {
        let aat = format!("{at}.abort");
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
            0 => errs.key(
                &aat,
                "fault abort needs one of httpStatus, grpcStatus or http2Error",
            ),
            1 => {}
            _ => errs.key(
                &aat,
                "fault abort: only one of httpStatus, grpcStatus or http2Error may be set",
            ),
        }
        if let Some(v) = a.percentage.as_ref().and_then(|p| p.value) {
            percent(
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
            }
        }
    }
    if let Some(m) = &c.max_age {
        duration(errs, &format!("{at}.maxAge"), m, true);
    }
}
