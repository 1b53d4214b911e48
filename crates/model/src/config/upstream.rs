//! The upstream side of a proxy's config: clusters, their endpoints, load balancing
//! (policy, consistent-hash key and table, outlier detection) and TCP pool timeouts.

use serde::{Deserialize, Serialize};

/// Load-balancing policy (DestinationRule `loadBalancer.simple`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LbPolicy {
    RoundRobin,
    /// Istio's default; LEAST_CONN is an alias.
    #[default]
    LeastRequest,
    Random,
}

/// An upstream service (optionally one subset of it, on one port).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Cluster {
    pub name: String,
    /// FQDN of the service, e.g. `inventory.necpgame.svc.cluster.local`.
    pub service: String,
    pub namespace: String,
    pub port: u32,
    pub subset: Option<String>,
    pub lb: LbPolicy,
    pub endpoints: Vec<Endpoint>,
    /// Passive health checking (DestinationRule `outlierDetection`); `None` = off.
    #[serde(default)]
    pub outlier: Option<Outlier>,
    /// Consistent-hash key (DestinationRule `loadBalancer.consistentHash`); when set, it
    /// replaces `lb`: requests with the same key go to the same endpoint.
    #[serde(default)]
    pub hash: Option<HashKey>,
    /// The consistent-hash table (`ringHash` or `maglev`).
    #[serde(default)]
    pub hash_table: HashTable,
    /// Circuit breaker: most requests in flight to the cluster at once
    /// (`connectionPool.http.http2MaxRequests`); beyond it requests fail fast with `UO`.
    #[serde(default)]
    pub max_requests: Option<u32>,
    /// Requests one pooled connection carries before a new one takes over
    /// (`connectionPool.http.maxRequestsPerConnection`; none = unlimited).
    #[serde(default)]
    pub max_requests_per_connection: Option<u32>,
    /// Opaque TCP to this cluster (DestinationRule `connectionPool.tcp`; its
    /// `connectTimeout` bounds HTTP connects too).
    #[serde(default)]
    pub tcp: TcpPool,
    /// Circuit breakers on connections, pending requests and retries, and whether HTTP to
    /// the cluster has HTTP/1.1 or HTTP/2 semantics.
    #[serde(default)]
    pub limits: crate::pool::PoolLimits,
    /// A service outside the mesh: its endpoints are dialled directly (no mTLS, no
    /// tunnel), resolved and optionally TLS-originated as this says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<crate::egress::Egress>,
}

/// DestinationRule `connectionPool.tcp`'s timeouts, with Istio's defaults (`maxConnections`
/// is in [`PoolLimits`](crate::PoolLimits), shared with HTTP).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpPool {
    /// Istio's default 10 s.
    pub connect_timeout_ms: u64,
    /// A connection that carries no bytes either way this long is closed; Istio's default
    /// 1 h, `0s` = never.
    pub idle_timeout_ms: Option<u64>,
}

impl Default for TcpPool {
    fn default() -> Self {
        TcpPool {
            connect_timeout_ms: 10_000,
            idle_timeout_ms: Some(3_600_000),
        }
    }
}

/// How a consistent-hash load balancer maps keys to endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HashTable {
    /// `ringHash`: at least `minimum_size` points (Envoy's default 1024).
    Ring { minimum_size: u64 },
    /// `maglev`: a lookup table of `size` entries (Envoy's default 65537).
    Maglev { size: u64 },
}

impl Default for HashTable {
    fn default() -> Self {
        HashTable::Ring { minimum_size: 1024 }
    }
}

/// What a consistent-hash load balancer hashes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HashKey {
    /// A request header (name lower-case).
    Header(String),
    /// An existing cookie's value (`httpCookie` without `ttl`: no cookie, no hash).
    Cookie(String),
    /// `httpCookie` with `ttl`: the cookie's value, or — without one — a new cookie the
    /// proxy makes up, hashes, and sets on the response (`Max-Age` = `ttl_secs`, none for
    /// 0: a session cookie; `Path` when given), so the client sticks from then on.
    NewCookie {
        name: String,
        path: Option<String>,
        ttl_secs: u64,
    },
    /// The downstream peer's IP address.
    SourceIp,
    /// A query parameter.
    QueryParameter(String),
}

/// Envoy outlier detection as Istio configures it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outlier {
    /// Consecutive 5xx (and local connect/reset failures) that eject an endpoint; 0 = off.
    pub consecutive_5xx: u32,
    /// Consecutive 502/503/504 (and local failures) that eject; 0 = off.
    pub consecutive_gateway: u32,
    /// Ejection time = base × number of times the endpoint was ejected (max 300 s).
    pub base_ejection_ms: u64,
    /// Each interval an endpoint stays healthy, its ejection count goes down by one.
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// At most this share of endpoints ejected at once (at least one is always allowed).
    pub max_ejection_percent: u32,
    /// Below this share of healthy endpoints, ejections are ignored (panic mode); 0 = off.
    pub min_health_percent: u32,
    /// `splitExternalLocalOriginErrors`: connect failures, resets and timeouts count only
    /// towards `consecutive_local_origin`, not as 5xx / gateway errors.
    #[serde(default)]
    pub split_local_origin: bool,
    /// `consecutiveLocalOriginFailures` (Envoy's default 5; used only when split).
    #[serde(default = "default_local_origin")]
    pub consecutive_local_origin: u32,
}

fn default_local_origin() -> u32 {
    5
}

/// One upstream workload, reached over mesh mTLS at its sidecar's inbound address.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Endpoint {
    /// `host:port` of the peer sidecar's inbound listener.
    pub address: String,
    /// The SPIFFE id the peer must present.
    pub identity: String,
    /// WorkloadEntry name and labels (for metrics).
    pub workload: String,
    pub version: Option<String>,
    /// The workload's app, canonical service and revision, cluster (for metrics).
    #[serde(default)]
    pub meta: crate::WorkloadMeta,
    /// Send plaintext HTTP/2 instead of mTLS (auto-mTLS: the server's PeerAuthentication
    /// is DISABLE, or a DestinationRule's `tls.mode: DISABLE`).
    #[serde(default)]
    pub plaintext: bool,
    /// Locality failover: 0 = the client's own locality, higher = farther (Istio's
    /// priorities); all 0 without locality load balancing.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub priority: u32,
    /// The TLS server name to ask for (a gateway's ISTIO_MUTUAL server, chosen by SNI:
    /// the DestinationRule's `tls.sni`); none = the mesh's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Endpoint {
    /// The identity a connection to this endpoint is pooled and verified under; empty for
    /// plaintext.
    pub fn tls_identity(&self) -> &str {
        if self.plaintext {
            ""
        } else {
            &self.identity
        }
    }
}

fn default_interval_ms() -> u64 {
    10_000
}
