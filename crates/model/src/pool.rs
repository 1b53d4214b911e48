//! DestinationRule `connectionPool` as the HTTP side applies it: Envoy's circuit-breaker
//! thresholds (connections, pending requests, retries) and which protocol semantics the
//! upstream connection has (HTTP/1.1 as Istio's default `h2UpgradePolicy: DO_NOT_UPGRADE`,
//! or HTTP/2 for `UPGRADE`, `HTTP2`/`GRPC` ports and `useClientProtocol` h2 clients).

use serde::{Deserialize, Serialize};
use weft_api::{ConnectionPoolSettings, H2UpgradePolicy};

/// Envoy's per-cluster circuit breakers and the HTTP pool's protocol choice. `None` is
/// Istio's default threshold (2^32-1: unlimited).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolLimits {
    /// `tcp.maxConnections`: with HTTP/1.1 semantics each request in flight holds one.
    pub max_connections: Option<u32>,
    /// `http.http1MaxPendingRequests`: requests waiting for a connection (a free slot, or
    /// one being connected); past it a request fails at once with `UO`.
    pub max_pending: Option<u32>,
    /// `http.maxRetries`: retries the whole cluster may have scheduled at once.
    pub max_retries: Option<u32>,
    /// The upstream connection is HTTP/2 whatever the client spoke (`h2UpgradePolicy:
    /// UPGRADE`, or the service port is `HTTP2`/`GRPC`).
    pub http2: bool,
    /// `http.useClientProtocol`: HTTP/2 exactly when the client spoke HTTP/2.
    pub use_client_protocol: bool,
    /// `http.idleTimeout`: a pooled connection that took no request this long closes;
    /// Istio's (Envoy's) default 1 h, `0s` = never.
    #[serde(default = "default_idle_ms")]
    pub idle_timeout_ms: Option<u64>,
    /// `tcp.maxConnectionDuration`: a connection this old leaves the pool; none = never.
    #[serde(default)]
    pub max_connection_duration_ms: Option<u64>,
    /// `tcp.tcpKeepalive`: SO_KEEPALIVE on upstream sockets; unset fields keep the
    /// system's values (Linux: 7200 s, 75 s, 9 probes), as Envoy leaves them.
    #[serde(default)]
    pub keepalive: Option<Keepalive>,
}

/// `tcp.tcpKeepalive`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Keepalive {
    /// Idle time before the first probe.
    pub time_ms: Option<u64>,
    /// Between probes.
    pub interval_ms: Option<u64>,
    /// Unanswered probes before the connection is dropped.
    pub probes: Option<u32>,
}

fn default_idle_ms() -> Option<u64> {
    Some(3_600_000)
}

impl Default for PoolLimits {
    fn default() -> Self {
        PoolLimits {
            max_connections: None,
            max_pending: None,
            max_retries: None,
            http2: false,
            use_client_protocol: false,
            idle_timeout_ms: default_idle_ms(),
            max_connection_duration_ms: None,
            keepalive: None,
        }
    }
}

impl PoolLimits {
    /// Whether a request the client sent as `client_h2` has HTTP/2 semantics upstream
    /// (streams multiplexed on a connection) rather than HTTP/1.1's (one request per
    /// connection at a time).
    pub fn multiplexed(&self, client_h2: bool) -> bool {
        self.http2 || (self.use_client_protocol && client_h2)
    }
}

/// Istio: a threshold of 0 (or negative) is its default, unlimited.
fn threshold(v: Option<i32>) -> Option<u32> {
    v.and_then(|m| u32::try_from(m).ok()).filter(|m| *m > 0)
}

/// The limits a DestinationRule's `connectionPool` sets on a cluster whose service port
/// is `http2_port` (`HTTP2`/`GRPC`). `DEFAULT` is MeshConfig's `h2UpgradePolicy`, which
/// weft does not read: Istio's default, `DO_NOT_UPGRADE`.
pub(crate) fn limits_of(pool: Option<&ConnectionPoolSettings>, http2_port: bool) -> PoolLimits {
    let http = pool.and_then(|p| p.http.as_ref());
    let upgrade = match http.and_then(|h| h.h2_upgrade_policy) {
        Some(H2UpgradePolicy::Upgrade) => true,
        Some(H2UpgradePolicy::DoNotUpgrade | H2UpgradePolicy::Default) | None => false,
    };
    let use_client_protocol = http.and_then(|h| h.use_client_protocol) == Some(true);
    let duration = |d: Option<&String>| d.and_then(|d| crate::parse_duration_ms(d));
    let idle_timeout_ms = match duration(http.and_then(|h| h.idle_timeout.as_ref())) {
        Some(0) => None,
        Some(ms) => Some(ms),
        None => default_idle_ms(),
    };
    let max_connection_duration_ms =
        duration(pool.and_then(|p| p.tcp.as_ref()?.max_connection_duration.as_ref()))
            .filter(|ms| *ms > 0);
    PoolLimits {
        max_connections: threshold(pool.and_then(|p| p.tcp.as_ref()?.max_connections)),
        max_pending: threshold(http.and_then(|h| h.http1_max_pending_requests)),
        max_retries: http
            .and_then(|h| h.max_retries)
            .and_then(|m| u32::try_from(m).ok()),
        // Istio: useClientProtocol wins over the upgrade policy; HTTP2/GRPC ports are h2.
        http2: http2_port || (upgrade && !use_client_protocol),
        use_client_protocol,
        idle_timeout_ms,
        max_connection_duration_ms,
        keepalive: pool
            .and_then(|p| p.tcp.as_ref()?.tcp_keepalive.as_ref())
            .map(|k| Keepalive {
                time_ms: duration(k.time.as_ref()),
                interval_ms: duration(k.interval.as_ref()),
                probes: k.probes,
            }),
    }
}

/// The inbound cluster's limits and `http2MaxRequests`: Istio's inbound cluster builder
/// applies the DestinationRule of the service the workload backs (the first one, by host,
/// when it backs several: Istio's choice is arbitrary there too), so the server side has
/// the capacity the client side was given. The Sidecar's `inboundConnectionPool` is not
/// read (reported).
pub(crate) fn inbound_limits<'r>(
    rules: impl FnOnce(&str) -> Vec<&'r weft_api::Resource>,
    used: &mut std::collections::BTreeSet<String>,
    registry: &crate::Registry,
    services: &[String],
    app_http2: bool,
) -> (PoolLimits, Option<u32>) {
    let mut hosts: Vec<&String> = services.iter().collect();
    hosts.sort();
    let Some(host) = hosts.first() else {
        return (PoolLimits::default(), None);
    };
    let ns = registry
        .services
        .get(host.as_str())
        .map(|s| s.namespace.clone())
        .unwrap_or_default();
    let dr = crate::policy::destination_rule(rules(host), used, &ns, None, None);
    let mut limits = dr.limits;
    limits.http2 |= app_http2;
    (limits, dr.max_requests)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_api::{HttpSettings, TcpSettings};

    fn pool(tcp: TcpSettings, http: HttpSettings) -> ConnectionPoolSettings {
        ConnectionPoolSettings {
            tcp: Some(tcp),
            http: Some(http),
        }
    }

    #[test]
    fn istios_circuit_breaking_task_rule_gives_http1_semantics_with_its_limits() {
        let p = pool(
            TcpSettings {
                max_connections: Some(1),
                ..Default::default()
            },
            HttpSettings {
                http1_max_pending_requests: Some(1),
                max_requests_per_connection: Some(1),
                ..Default::default()
            },
        );
        let l = limits_of(Some(&p), false);
        assert_eq!(l.max_connections, Some(1));
        assert_eq!(l.max_pending, Some(1));
        assert_eq!(l.max_retries, None);
        assert!(!l.multiplexed(false) && !l.multiplexed(true));
        assert_eq!(l.idle_timeout_ms, Some(3_600_000), "Istio's default 1 h");
        assert_eq!(l.max_connection_duration_ms, None);
    }

    #[test]
    fn zero_is_unlimited_but_zero_retries_is_a_limit() {
        let p = pool(
            TcpSettings {
                max_connections: Some(0),
                ..Default::default()
            },
            HttpSettings {
                http1_max_pending_requests: Some(0),
                max_retries: Some(0),
                ..Default::default()
            },
        );
        let l = limits_of(Some(&p), false);
        assert_eq!((l.max_connections, l.max_pending), (None, None));
        assert_eq!(l.max_retries, Some(0));
    }

    #[test]
    fn upgrade_h2_ports_and_client_protocol_choose_http2() {
        let http = |policy, client| HttpSettings {
            h2_upgrade_policy: policy,
            use_client_protocol: client,
            ..Default::default()
        };
        let up = pool(
            TcpSettings::default(),
            http(Some(H2UpgradePolicy::Upgrade), None),
        );
        assert!(limits_of(Some(&up), false).multiplexed(false));
        assert!(limits_of(None, true).multiplexed(false));
        let no = pool(
            TcpSettings::default(),
            http(Some(H2UpgradePolicy::DoNotUpgrade), None),
        );
        assert!(!limits_of(Some(&no), false).multiplexed(false));
        let client = pool(TcpSettings::default(), http(None, Some(true)));
        let l = limits_of(Some(&client), false);
        assert!(l.multiplexed(true) && !l.multiplexed(false));
    }
}
