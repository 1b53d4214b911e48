//! Envoy's `retry_on` conditions as a typed set, compiled from Istio's `retryOn` tokens.
//! Unknown tokens never get here (validation rejects them); the set serializes as the
//! token list so config dumps stay readable.

use serde::{Deserialize, Serialize};

/// One `retry_on` condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum RetryCondition {
    /// Any 5xx response, and every failure without a response (connect failure, reset,
    /// refused stream, per-try timeout).
    FiveXx = 1 << 0,
    /// 502, 503, 504 responses, and failures without a response.
    GatewayError = 1 << 1,
    /// A reset, disconnect or per-try timeout without a response.
    Reset = 1 << 2,
    /// A reset before the request was sent upstream.
    ResetBeforeRequest = 1 << 3,
    /// The connection could not be established.
    ConnectFailure = 1 << 4,
    /// 409 responses.
    Retriable4xx = 1 << 5,
    /// An HTTP/2 REFUSED_STREAM reset (safe to retry: the upstream did not process it).
    RefusedStream = 1 << 6,
    /// The statuses in `retriable_status_codes`.
    RetriableStatusCodes = 1 << 7,
    /// Responses with configured retriable headers (Istio configures none).
    RetriableHeaders = 1 << 8,
    /// Responses carrying `x-envoy-ratelimited`.
    EnvoyRatelimited = 1 << 9,
    /// HTTP/3 failures after connect (weft speaks no HTTP/3: never true).
    Http3PostConnectFailure = 1 << 10,
    /// gRPC status CANCELLED (1).
    Cancelled = 1 << 11,
    /// gRPC status DEADLINE_EXCEEDED (4).
    DeadlineExceeded = 1 << 12,
    /// gRPC status INTERNAL (13).
    Internal = 1 << 13,
    /// gRPC status RESOURCE_EXHAUSTED (8).
    ResourceExhausted = 1 << 14,
    /// gRPC status UNAVAILABLE (14).
    Unavailable = 1 << 15,
}

const ALL: [(RetryCondition, &str); 16] = [
    (RetryCondition::FiveXx, "5xx"),
    (RetryCondition::GatewayError, "gateway-error"),
    (RetryCondition::Reset, "reset"),
    (RetryCondition::ResetBeforeRequest, "reset-before-request"),
    (RetryCondition::ConnectFailure, "connect-failure"),
    (RetryCondition::Retriable4xx, "retriable-4xx"),
    (RetryCondition::RefusedStream, "refused-stream"),
    (
        RetryCondition::RetriableStatusCodes,
        "retriable-status-codes",
    ),
    (RetryCondition::RetriableHeaders, "retriable-headers"),
    (RetryCondition::EnvoyRatelimited, "envoy-ratelimited"),
    (
        RetryCondition::Http3PostConnectFailure,
        "http3-post-connect-failure",
    ),
    (RetryCondition::Cancelled, "cancelled"),
    (RetryCondition::DeadlineExceeded, "deadline-exceeded"),
    (RetryCondition::Internal, "internal"),
    (RetryCondition::ResourceExhausted, "resource-exhausted"),
    (RetryCondition::Unavailable, "unavailable"),
];

impl RetryCondition {
    /// The condition an Envoy/Istio `retryOn` token names.
    pub fn parse(token: &str) -> Option<RetryCondition> {
        ALL.iter().find(|(_, t)| *t == token).map(|(c, _)| *c)
    }

    /// Envoy's token for this condition.
    pub fn token(self) -> &'static str {
        ALL.iter()
            .find(|(c, _)| *c == self)
            .map(|(_, t)| *t)
            .unwrap_or("")
    }

    /// The condition a gRPC status retries under, if any.
    pub fn for_grpc_status(code: u32) -> Option<RetryCondition> {
        Some(match code {
            1 => RetryCondition::Cancelled,
            4 => RetryCondition::DeadlineExceeded,
            8 => RetryCondition::ResourceExhausted,
            13 => RetryCondition::Internal,
            14 => RetryCondition::Unavailable,
            _ => return None,
        })
    }
}

/// A set of retry conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(into = "Vec<String>", try_from = "Vec<String>")]
pub struct RetryOn(u32);

impl RetryOn {
    /// Istio's default when a route sets no retries: connect-failure, refused-stream,
    /// unavailable, cancelled.
    pub const ISTIO_DEFAULT: RetryOn = RetryOn(
        RetryCondition::ConnectFailure as u32
            | RetryCondition::RefusedStream as u32
            | RetryCondition::Unavailable as u32
            | RetryCondition::Cancelled as u32,
    );

    pub fn contains(self, c: RetryCondition) -> bool {
        self.0 & c as u32 != 0
    }

    /// True if any of `cs` is in the set.
    pub fn any(self, cs: &[RetryCondition]) -> bool {
        cs.iter().any(|c| self.contains(*c))
    }

    pub fn insert(&mut self, c: RetryCondition) {
        self.0 |= c as u32;
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The tokens in the set, in Envoy's documentation order.
    pub fn tokens(self) -> Vec<&'static str> {
        ALL.iter()
            .filter(|(c, _)| self.contains(*c))
            .map(|(_, t)| *t)
            .collect()
    }
}

impl FromIterator<RetryCondition> for RetryOn {
    fn from_iter<I: IntoIterator<Item = RetryCondition>>(iter: I) -> RetryOn {
        let mut set = RetryOn::default();
        for c in iter {
            set.insert(c);
        }
        set
    }
}

impl From<RetryOn> for Vec<String> {
    fn from(set: RetryOn) -> Vec<String> {
        set.tokens().into_iter().map(String::from).collect()
    }
}

impl TryFrom<Vec<String>> for RetryOn {
    type Error = String;

    fn try_from(tokens: Vec<String>) -> Result<RetryOn, String> {
        tokens
            .iter()
            .map(|t| {
                RetryCondition::parse(t).ok_or_else(|| format!("unknown retry condition {t:?}"))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_token_round_trips_and_unknown_ones_are_refused() {
        for (c, t) in ALL {
            assert_eq!(RetryCondition::parse(t), Some(c));
            assert_eq!(c.token(), t);
        }
        assert_eq!(RetryCondition::parse("5XX"), None);
        let set: RetryOn = [RetryCondition::Reset, RetryCondition::FiveXx]
            .into_iter()
            .collect();
        assert_eq!(set.tokens(), ["5xx", "reset"]);
        let json = serde_json::to_string(&set).unwrap();
        assert_eq!(json, r#"["5xx","reset"]"#);
        assert_eq!(serde_json::from_str::<RetryOn>(&json).unwrap(), set);
        assert!(serde_json::from_str::<RetryOn>(r#"["bogus"]"#).is_err());
    }
}
