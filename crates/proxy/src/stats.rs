//! The proxy's `/stats/prometheus` page: Istio's request metrics and every other
//! registered family, Envoy's per-cluster statistics (counters, and gauges read from the
//! live config's LB state and the connection pool now), and the proxy's self metrics.

use crate::state::ProxyState;
use crate::telemetry::{cluster_stats, exposition, ClusterGauges, ClusterRow};
use std::collections::HashSet;

/// The whole page, in Prometheus text format ([`exposition::CONTENT_TYPE`]).
pub fn prometheus(state: &ProxyState) -> String {
    let mut out = exposition::registry_text(&state.metrics);
    let cfg = state.config.load();
    let mut clusters: Vec<_> = cfg.clusters.iter().collect();
    clusters.sort_by(|a, b| a.0.cmp(b.0));
    let rows: Vec<ClusterRow<'_>> = clusters
        .iter()
        .map(|(name, c)| {
            let (members, healthy, rq_active) = c.lb.snapshot();
            let open = c.lb.limits.open();
            let addrs: HashSet<&str> = c
                .spec
                .endpoints
                .iter()
                .map(|e| e.address.as_str())
                .collect();
            ClusterRow {
                name,
                stats: &c.labels.stats,
                gauges: ClusterGauges {
                    rq_active,
                    cx_active: state.pool.open_to(&addrs),
                    members,
                    healthy,
                    ejected: members - healthy,
                    rq_open: c.lb.overflowing(),
                    cx_open: open.cx,
                    rq_pending_open: open.pending,
                    rq_retry_open: open.retry,
                },
            }
        })
        .collect();
    cluster_stats::render(&mut out, &rows);
    exposition::process_metrics(&mut out, state.connections.open());
    out
}
