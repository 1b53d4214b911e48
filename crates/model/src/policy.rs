//! What a DestinationRule says about a cluster: load-balancer policy, consistent-hash key,
//! outlier detection, circuit-breaker limits — with Istio's defaults filled in.

use crate::config::{HashKey, LbPolicy, Outlier};
use crate::names::parse_duration_ms;
use std::collections::BTreeMap;
use weft_api::SimpleLb;

/// Istio's outlier defaults: 5 consecutive 5xx, 30 s base ejection, 10% max ejected,
/// panic threshold off; the deprecated `consecutiveErrors` means gateway errors.
pub(crate) fn outlier_of(o: &weft_api::OutlierDetection) -> Outlier {
    Outlier {
        // Istio turns the 5xx rule off when the deprecated consecutiveErrors is used.
        consecutive_5xx: o.consecutive_5xx_errors.unwrap_or(
            if o.consecutive_errors.is_some_and(|c| c > 0) {
                0
            } else {
                5
            },
        ),
        consecutive_gateway: o
            .consecutive_gateway_errors
            .or_else(|| o.consecutive_errors.and_then(|c| u32::try_from(c).ok()))
            .unwrap_or(0),
        interval_ms: o
            .interval
            .as_deref()
            .and_then(parse_duration_ms)
            .unwrap_or(10_000)
            .max(1),
        base_ejection_ms: o
            .base_ejection_time
            .as_deref()
            .and_then(parse_duration_ms)
            .unwrap_or(30_000),
        max_ejection_percent: o
            .max_ejection_percent
            .and_then(|p| u32::try_from(p).ok())
            .unwrap_or(10),
        min_health_percent: o
            .min_health_percent
            .and_then(|p| u32::try_from(p).ok())
            .unwrap_or(0),
    }
}

/// What a DestinationRule (and the subset's policy) says about one cluster.
#[derive(Default)]
pub(crate) struct DrSettings {
    pub labels: BTreeMap<String, String>,
    pub lb: LbPolicy,
    pub hash: Option<HashKey>,
    pub outlier: Option<Outlier>,
    pub max_requests: Option<u32>,
    pub max_requests_per_connection: Option<u32>,
    /// `tls.mode` (the subset's over the top level).
    pub tls: Option<weft_api::ClientTlsMode>,
}

pub(crate) fn hash_of(tp: Option<&weft_api::TrafficPolicy>) -> Option<HashKey> {
    let ch = tp?.load_balancer.as_ref()?.consistent_hash.as_ref()?;
    if let Some(h) = &ch.http_header_name {
        Some(HashKey::Header(h.to_ascii_lowercase()))
    } else if let Some(c) = &ch.http_cookie {
        Some(HashKey::Cookie(c.name.clone()))
    } else if ch.use_source_ip == Some(true) {
        Some(HashKey::SourceIp)
    } else {
        ch.http_query_parameter_name
            .clone()
            .map(HashKey::QueryParameter)
    }
}

pub(crate) fn lb_of(tp: Option<&weft_api::TrafficPolicy>) -> Option<LbPolicy> {
    match tp?.load_balancer.as_ref()?.simple? {
        SimpleLb::RoundRobin => Some(LbPolicy::RoundRobin),
        SimpleLb::Random => Some(LbPolicy::Random),
        SimpleLb::LeastConn | SimpleLb::LeastRequest => Some(LbPolicy::LeastRequest),
        // PASSTHROUGH is reported as not enforced; UNSPECIFIED means the default.
        SimpleLb::Unspecified | SimpleLb::Passthrough => None,
    }
}
