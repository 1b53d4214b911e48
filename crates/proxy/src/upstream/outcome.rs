//! How one upstream try ended, typed (after pingora's error model): which side failed,
//! which timer fired, whether the request had left, and — from that — Envoy's response
//! flag, whether each `retryOn` condition covers it, and what outlier detection counts.

use crate::reply::UpstreamFailure;
use crate::telemetry::ResponseFlags;
use http::{HeaderMap, StatusCode};
use weft_model::{RetryCondition as C, RetryOn, RetryPolicy};

/// Which timer fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// The retry policy's `perTryTimeout` (retriable).
    PerTry,
    /// The route's `timeout` (covers every try; never retried).
    Route,
}

/// A try that produced no response.
#[derive(Debug)]
pub enum TryError {
    /// No endpoint may be picked (all ejected, or none at all).
    NoHealthyUpstream { cluster: String },
    /// The cluster is at one of its circuit-breaker limits (`limit` names it).
    Overflow {
        cluster: String,
        limit: &'static str,
    },
    /// The connection could not be made (TCP, mTLS or HTTP/2 handshake); nothing was sent.
    Connect { detail: String },
    /// The destination's name did not resolve (a service outside the mesh); nothing was
    /// sent. Otherwise a connect failure (retried and counted as one).
    Dns { detail: String },
    /// A pooled connection was found dead before the request was written; nothing was sent.
    Unsent { detail: String },
    /// The upstream refused the stream (HTTP/2 REFUSED_STREAM): it did not process it.
    RefusedStream { detail: String },
    /// The upstream reset the stream after the request was sent.
    RemoteReset { detail: String },
    /// The connection closed or failed after the request was sent.
    ConnectionTerminated { detail: String },
    /// A timer fired before the response headers arrived.
    Timeout(Timer),
}

impl TryError {
    /// Envoy's response flag for a request that ends with this error.
    pub fn flags(&self) -> ResponseFlags {
        match self {
            TryError::NoHealthyUpstream { .. } => ResponseFlags::NO_HEALTHY_UPSTREAM,
            TryError::Overflow { .. } => ResponseFlags::UPSTREAM_OVERFLOW,
            TryError::Connect { .. } | TryError::Unsent { .. } => {
                ResponseFlags::UPSTREAM_CONNECTION_FAILURE
            }
            TryError::Dns { .. } => ResponseFlags::DNS_RESOLUTION_FAILED,
            TryError::RefusedStream { .. } | TryError::RemoteReset { .. } => {
                ResponseFlags::UPSTREAM_REMOTE_RESET
            }
            TryError::ConnectionTerminated { .. } => ResponseFlags::UPSTREAM_CONNECTION_TERMINATION,
            TryError::Timeout(_) => ResponseFlags::UPSTREAM_REQUEST_TIMEOUT,
        }
    }

    /// Whether any of the request reached the upstream.
    pub fn sent(&self) -> bool {
        matches!(
            self,
            TryError::RefusedStream { .. }
                | TryError::RemoteReset { .. }
                | TryError::ConnectionTerminated { .. }
                | TryError::Timeout(_)
        )
    }

    /// Whether `retry_on` covers this error (Envoy's `wouldRetryFromReset` and per-try
    /// timeout rules). A request that never left is always safe to send elsewhere.
    pub fn retry_allowed(&self, on: RetryOn) -> bool {
        let no_response = [C::FiveXx, C::GatewayError, C::Reset];
        match self {
            TryError::NoHealthyUpstream { .. }
            | TryError::Overflow { .. }
            | TryError::Timeout(Timer::Route) => false,
            TryError::Unsent { .. } => true,
            TryError::Connect { .. } | TryError::Dns { .. } => {
                on.any(&no_response) || on.any(&[C::ConnectFailure, C::ResetBeforeRequest])
            }
            TryError::RefusedStream { .. } => on.any(&no_response) || on.contains(C::RefusedStream),
            TryError::RemoteReset { .. }
            | TryError::ConnectionTerminated { .. }
            | TryError::Timeout(Timer::PerTry) => on.any(&no_response),
        }
    }

    /// Whether outlier detection counts this as a failure of the endpoint (Envoy without
    /// split local-origin errors: connect failures, resets and timeouts count as gateway
    /// errors). Failures that are not the endpoint's doing do not count.
    pub fn counts_against_endpoint(&self) -> bool {
        !matches!(
            self,
            TryError::NoHealthyUpstream { .. }
                | TryError::Overflow { .. }
                | TryError::Unsent { .. }
        )
    }

    /// The local reply for a request that ends with this error.
    pub fn into_failure(self) -> UpstreamFailure {
        let flags = self.flags();
        let (status, detail) = match self {
            TryError::NoHealthyUpstream { cluster } => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("no healthy upstream in {cluster}"),
            ),
            TryError::Overflow { cluster, limit } => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("upstream overflow: {cluster} is at its {limit}"),
            ),
            TryError::Connect { detail } | TryError::Unsent { detail } => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("upstream connect error: {detail}"),
            ),
            TryError::Dns { detail } => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("DNS resolution failed: {detail}"),
            ),
            TryError::RefusedStream { detail }
            | TryError::RemoteReset { detail }
            | TryError::ConnectionTerminated { detail } => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("upstream reset: {detail}"),
            ),
            TryError::Timeout(_) => (
                StatusCode::GATEWAY_TIMEOUT,
                "upstream request timeout".to_string(),
            ),
        };
        UpstreamFailure {
            status,
            flags,
            detail,
        }
    }

    /// Classifies a failed send on an HTTP/2 connection.
    pub fn from_send(err: &hyper::Error, written: bool) -> TryError {
        let detail = err.to_string();
        if !written {
            return TryError::Unsent { detail };
        }
        let h2 = std::error::Error::source(err).and_then(|s| s.downcast_ref::<h2::Error>());
        match h2 {
            Some(e) if e.reason() == Some(h2::Reason::REFUSED_STREAM) => {
                TryError::RefusedStream { detail }
            }
            Some(e) if e.is_reset() && e.is_remote() => TryError::RemoteReset { detail },
            _ => TryError::ConnectionTerminated { detail },
        }
    }
}

/// Is this upstream response one `retryOn` retries?
pub fn response_retriable(policy: &RetryPolicy, status: StatusCode, headers: &HeaderMap) -> bool {
    let on = policy.retry_on;
    let code = status.as_u16();
    if (on.contains(C::FiveXx) && code >= 500)
        || (on.contains(C::GatewayError) && matches!(code, 502..=504))
        || (on.contains(C::Retriable4xx) && code == 409)
        || (on.contains(C::RetriableStatusCodes) && policy.retriable_status_codes.contains(&code))
        || (on.contains(C::EnvoyRatelimited) && headers.contains_key("x-envoy-ratelimited"))
    {
        return true;
    }
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u32>().ok())
        .and_then(C::for_grpc_status)
        .is_some_and(|c| on.contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_model::RetryCondition;

    fn on(tokens: &[RetryCondition]) -> RetryOn {
        tokens.iter().copied().collect()
    }

    fn d() -> String {
        "x".into()
    }

    fn every_error() -> Vec<TryError> {
        vec![
            TryError::NoHealthyUpstream { cluster: d() },
            TryError::Overflow {
                cluster: d(),
                limit: "request limit",
            },
            TryError::Connect { detail: d() },
            TryError::Unsent { detail: d() },
            TryError::RefusedStream { detail: d() },
            TryError::RemoteReset { detail: d() },
            TryError::ConnectionTerminated { detail: d() },
            TryError::Timeout(Timer::PerTry),
            TryError::Timeout(Timer::Route),
        ]
    }

    /// Which errors each condition retries (Envoy's `wouldRetryFromReset` and per-try
    /// timeout rules); Unsent is always safe and never listed.
    #[test]
    fn each_retry_on_condition_covers_exactly_its_failures() {
        use RetryCondition as C;
        let table: &[(C, &[&str])] = &[
            (
                C::FiveXx,
                &[
                    "Connect",
                    "RefusedStream",
                    "RemoteReset",
                    "ConnectionTerminated",
                    "PerTry",
                ],
            ),
            (
                C::GatewayError,
                &[
                    "Connect",
                    "RefusedStream",
                    "RemoteReset",
                    "ConnectionTerminated",
                    "PerTry",
                ],
            ),
            (
                C::Reset,
                &[
                    "Connect",
                    "RefusedStream",
                    "RemoteReset",
                    "ConnectionTerminated",
                    "PerTry",
                ],
            ),
            (C::ConnectFailure, &["Connect"]),
            (C::ResetBeforeRequest, &["Connect"]),
            (C::RefusedStream, &["RefusedStream"]),
            (C::Unavailable, &[]),
            (C::Retriable4xx, &[]),
        ];
        for (cond, expected) in table {
            let retried: Vec<String> = every_error()
                .into_iter()
                .filter(|e| !matches!(e, TryError::Unsent { .. }))
                .filter(|e| e.retry_allowed(on(&[*cond])))
                .map(|e| {
                    let s = format!("{e:?}");
                    if s.contains("PerTry") {
                        "PerTry".to_string()
                    } else {
                        s.split([' ', '(']).next().unwrap_or("").to_string()
                    }
                })
                .collect();
            assert_eq!(&retried, expected, "{}", cond.token());
        }
        assert!(
            TryError::Unsent { detail: d() }.retry_allowed(RetryOn::default()),
            "a request that never left may always go elsewhere"
        );
    }

    #[test]
    fn istio_default_policy_retries_refused_streams_and_connect_failures_only() {
        let def = RetryOn::ISTIO_DEFAULT;
        assert!(TryError::RefusedStream { detail: d() }.retry_allowed(def));
        assert!(TryError::Connect { detail: d() }.retry_allowed(def));
        assert!(!TryError::RemoteReset { detail: d() }.retry_allowed(def));
        assert!(!TryError::Timeout(Timer::PerTry).retry_allowed(def));
    }

    #[test]
    fn flags_and_replies() {
        let cases = [
            (TryError::NoHealthyUpstream { cluster: d() }, "UH", 503),
            (
                TryError::Overflow {
                    cluster: d(),
                    limit: "request limit",
                },
                "UO",
                503,
            ),
            (TryError::Connect { detail: d() }, "UF", 503),
            (TryError::Dns { detail: d() }, "DF", 503),
            (TryError::RefusedStream { detail: d() }, "UR", 503),
            (TryError::ConnectionTerminated { detail: d() }, "UC", 503),
            (TryError::Timeout(Timer::Route), "UT", 504),
        ];
        for (e, flag, status) in cases {
            assert_eq!(e.flags().render(), flag);
            let f = e.into_failure();
            assert_eq!(
                (f.flags.render().as_str(), f.status.as_u16()),
                (flag, status)
            );
        }
        assert!(!TryError::Overflow {
            cluster: d(),
            limit: "request limit",
        }
        .counts_against_endpoint());
        assert!(TryError::Timeout(Timer::PerTry).counts_against_endpoint());
    }

    fn policy(cs: &[RetryCondition], codes: &[u16]) -> RetryPolicy {
        RetryPolicy {
            attempts: 2,
            retry_on: on(cs),
            retriable_status_codes: codes.to_vec(),
            backoff_ms: 25,
            ..Default::default()
        }
    }

    #[test]
    fn response_conditions() {
        use RetryCondition as C;
        let h = HeaderMap::new();
        let s = |c: u16| StatusCode::from_u16(c).unwrap();
        assert!(response_retriable(&policy(&[C::FiveXx], &[]), s(500), &h));
        assert!(!response_retriable(
            &policy(&[C::GatewayError], &[]),
            s(500),
            &h
        ));
        assert!(response_retriable(
            &policy(&[C::GatewayError], &[]),
            s(503),
            &h
        ));
        assert!(response_retriable(
            &policy(&[C::Retriable4xx], &[]),
            s(409),
            &h
        ));
        assert!(response_retriable(
            &policy(&[C::RetriableStatusCodes], &[418]),
            s(418),
            &h
        ));
        assert!(
            !response_retriable(&policy(&[C::ConnectFailure], &[]), s(503), &h),
            "Istio's default does not retry 503"
        );
        let mut grpc = HeaderMap::new();
        grpc.insert("grpc-status", "14".parse().unwrap());
        assert!(response_retriable(
            &policy(&[C::Unavailable], &[]),
            s(200),
            &grpc
        ));
        assert!(!response_retriable(
            &policy(&[C::Cancelled], &[]),
            s(200),
            &grpc
        ));
        let mut limited = HeaderMap::new();
        limited.insert("x-envoy-ratelimited", "true".parse().unwrap());
        assert!(response_retriable(
            &policy(&[C::EnvoyRatelimited], &[]),
            s(429),
            &limited
        ));
    }
}
