//! What a DestinationRule says about a cluster: load-balancer policy, consistent-hash key,
//! outlier detection, circuit-breaker limits, TLS mode — with Istio's defaults filled in,
//! and which DestinationRule applies to a cluster.

use crate::config::{HashKey, LbPolicy, Outlier};
use crate::names::parse_duration_ms;
use std::collections::{BTreeMap, BTreeSet};
use weft_api::SimpleLb;
use weft_api::{Resource, Spec};

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
        split_local_origin: o.split_external_local_origin_errors == Some(true),
        consecutive_local_origin: o.consecutive_local_origin_failures.unwrap_or(5),
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
    /// The whole `tls` object the mode came from (TLS origination reads it).
    pub tls_settings: Option<weft_api::ClientTlsSettings>,
    /// `consistentHash.ringHash` / `maglev`.
    pub hash_table: crate::config::HashTable,
    /// `loadBalancer.localityLbSetting`.
    pub locality: Option<weft_api::LocalityLbSetting>,
    /// `connectionPool.tcp` as opaque TCP applies it.
    pub tcp: crate::config::TcpPool,
    /// The circuit breakers and protocol semantics of HTTP to the cluster.
    pub limits: crate::pool::PoolLimits,
}

/// `connectionPool.tcp` with Istio's defaults (10 s connect, 1 h idle; `0s` idle = none).
fn tcp_pool_of(tcp: Option<&weft_api::TcpSettings>) -> crate::config::TcpPool {
    let mut pool = crate::config::TcpPool::default();
    let Some(t) = tcp else { return pool };
    if let Some(ms) = t.connect_timeout.as_deref().and_then(parse_duration_ms) {
        pool.connect_timeout_ms = ms;
    }
    if let Some(ms) = t.idle_timeout.as_deref().and_then(parse_duration_ms) {
        pool.idle_timeout_ms = (ms > 0).then_some(ms);
    }
    pool
}

pub(crate) fn hash_of(lb: Option<&weft_api::LoadBalancerSettings>) -> Option<HashKey> {
    let ch = lb?.consistent_hash.as_ref()?;
    if let Some(h) = &ch.http_header_name {
        Some(HashKey::Header(h.to_ascii_lowercase()))
    } else if let Some(c) = &ch.http_cookie {
        let ttl = c.ttl.as_deref().and_then(parse_duration_ms);
        Some(match ttl {
            Some(ms) => HashKey::NewCookie {
                name: c.name.clone(),
                path: c.path.clone().filter(|p| !p.is_empty()),
                ttl_secs: ms / 1000,
            },
            None => HashKey::Cookie(c.name.clone()),
        })
    } else if ch.use_source_ip == Some(true) {
        Some(HashKey::SourceIp)
    } else {
        ch.http_query_parameter_name
            .clone()
            .map(HashKey::QueryParameter)
    }
}

/// `consistentHash.ringHash` / `maglev` (and the deprecated `minimumRingSize`).
pub(crate) fn hash_table_of(
    lb: Option<&weft_api::LoadBalancerSettings>,
) -> crate::config::HashTable {
    use crate::config::HashTable;
    let Some(ch) = lb.and_then(|l| l.consistent_hash.as_ref()) else {
        return HashTable::default();
    };
    if let Some(m) = &ch.maglev {
        return HashTable::Maglev {
            size: m.table_size.filter(|s| *s > 0).unwrap_or(65537),
        };
    }
    let min = ch
        .ring_hash
        .as_ref()
        .and_then(|r| r.minimum_ring_size)
        .or(ch.minimum_ring_size)
        .filter(|s| *s > 0)
        .unwrap_or(1024);
    HashTable::Ring { minimum_size: min }
}

pub(crate) fn lb_of(lb: Option<&weft_api::LoadBalancerSettings>) -> Option<LbPolicy> {
    match lb?.simple? {
        SimpleLb::RoundRobin => Some(LbPolicy::RoundRobin),
        SimpleLb::Random => Some(LbPolicy::Random),
        SimpleLb::LeastConn | SimpleLb::LeastRequest => Some(LbPolicy::LeastRequest),
        // PASSTHROUGH is reported as not enforced; UNSPECIFIED means the default.
        SimpleLb::Unspecified | SimpleLb::Passthrough => None,
    }
}

/// The four settings a traffic policy (or one of its `portLevelSettings`) carries.
#[derive(Default, Clone, Copy)]
struct Layer<'a> {
    lb: Option<&'a weft_api::LoadBalancerSettings>,
    pool: Option<&'a weft_api::ConnectionPoolSettings>,
    outlier: Option<&'a weft_api::OutlierDetection>,
    tls: Option<&'a weft_api::ClientTlsSettings>,
}

impl<'a> Layer<'a> {
    /// A traffic policy as it applies to `port`: the `portLevelSettings` entry for the
    /// port overrides the policy's own settings one by one (Istio's
    /// `getPortLevelTrafficPolicy`).
    fn of(tp: Option<&'a weft_api::TrafficPolicy>, port: Option<u32>) -> Layer<'a> {
        let Some(tp) = tp else {
            return Layer::default();
        };
        let own = Layer {
            lb: tp.load_balancer.as_ref(),
            pool: tp.connection_pool.as_ref(),
            outlier: tp.outlier_detection.as_ref(),
            tls: tp.tls.as_ref(),
        };
        let at = port.and_then(|n| {
            tp.port_level_settings
                .iter()
                .find(|p| p.port.as_ref().and_then(|s| s.number) == Some(n))
        });
        let Some(p) = at else { return own };
        Layer {
            lb: p.load_balancer.as_ref().or(own.lb),
            pool: p.connection_pool.as_ref().or(own.pool),
            outlier: p.outlier_detection.as_ref().or(own.outlier),
            tls: p.tls.as_ref().or(own.tls),
        }
    }

    /// `over`'s settings where it has them, else these (a subset over its rule).
    fn under(self, over: Layer<'a>) -> Layer<'a> {
        Layer {
            lb: over.lb.or(self.lb),
            pool: over.pool.or(self.pool),
            outlier: over.outlier.or(self.outlier),
            tls: over.tls.or(self.tls),
        }
    }
}

/// What the DestinationRule for `host` (one in the service's namespace wins over others)
/// says about its cluster on `port` (none: the port-independent settings), optionally
/// one subset of it.
pub(crate) fn destination_rule(
    mut rules: Vec<&Resource>,
    used: &mut BTreeSet<String>,
    svc_ns: &str,
    port: Option<u32>,
    subset: Option<&str>,
) -> DrSettings {
    rules.sort_by_key(|r| r.namespace() != svc_ns);
    let Some(r) = rules.first() else {
        return DrSettings::default();
    };
    let Spec::DestinationRule(dr) = &r.spec else {
        unreachable!()
    };
    used.insert(r.key());
    let mut layer = Layer::of(dr.traffic_policy.as_ref(), port);
    let mut labels = BTreeMap::new();
    if let Some(name) = subset {
        if let Some(s) = dr.subsets.iter().find(|s| s.name == name) {
            labels = s.labels.clone();
            // A subset's settings replace the rule's, object by object.
            layer = layer.under(Layer::of(s.traffic_policy.as_ref(), port));
        } else {
            // An unknown subset selects nothing: Istio answers 503 (no healthy upstream).
            labels.insert("weft.dev/unknown-subset".into(), name.to_string());
        }
    }
    let Layer {
        lb: lb_settings,
        pool,
        outlier,
        tls: tls_settings,
    } = layer;
    let lb = lb_of(lb_settings).unwrap_or_default();
    let hash = hash_of(lb_settings);
    let max_requests = pool
        .and_then(|p| p.http.as_ref())
        .and_then(|h| h.http2_max_requests)
        .and_then(|m| u32::try_from(m).ok())
        // Istio's `applyConnectionPool`: only a value > 0 replaces the unlimited default.
        .filter(|m| *m > 0);
    // Istio: 0 means unlimited.
    let max_requests_per_connection = pool
        .and_then(|p| p.http.as_ref())
        .and_then(|h| h.max_requests_per_connection)
        .and_then(|m| u32::try_from(m).ok())
        .filter(|m| *m > 0);
    DrSettings {
        labels,
        lb,
        hash,
        outlier: outlier.map(outlier_of),
        max_requests,
        max_requests_per_connection,
        tls: tls_settings.and_then(|t| t.mode),
        tls_settings: tls_settings.cloned(),
        locality: lb_settings.and_then(|l| l.locality_lb_setting.clone()),
        hash_table: hash_table_of(lb_settings),
        tcp: tcp_pool_of(pool.and_then(|p| p.tcp.as_ref())),
        limits: crate::pool::limits_of(pool, false),
    }
}
