//! Envoy's per-cluster statistics under Envoy's Prometheus names
//! (`envoy_cluster_upstream_rq_total{cluster_name="outbound|9080|v1|reviews.default.svc.cluster.local"}`):
//! counters that requests bump with one atomic add (kept across pushes by cluster name),
//! and gauges read from the live LB state at scrape time, so they cost requests nothing.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// A cluster's counters.
#[derive(Debug, Default)]
pub struct ClusterStats {
    /// Envoy's `upstream_rq_total`: requests sent upstream (every try).
    pub rq_total: AtomicU64,
    /// `upstream_rq_pending_overflow`: requests refused (UO) by the request limit or the
    /// pending-request limit.
    pub rq_pending_overflow: AtomicU64,
    /// `upstream_cx_overflow`: times a request found every connection slot taken.
    pub cx_overflow: AtomicU64,
    /// `upstream_rq_retry_overflow`: retries not sent because `maxRetries` were scheduled.
    pub rq_retry_overflow: AtomicU64,
    /// `upstream_rq_retry`: retries sent.
    pub rq_retry: AtomicU64,
    /// `upstream_rq_retry_limit_exceeded`: requests whose retries were used up (URX).
    pub rq_retry_limit_exceeded: AtomicU64,
    /// `outlier_detection.ejections_enforced_total`: endpoints ejected.
    pub ejections_enforced: AtomicU64,
    /// `outlier_detection.ejections_overflow`: ejections skipped by max_ejection_percent.
    pub ejections_overflow: AtomicU64,
}

impl ClusterStats {
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// What a cluster looks like right now (read at scrape time).
#[derive(Debug, Default, Clone, Copy)]
pub struct ClusterGauges {
    /// `upstream_rq_active`.
    pub rq_active: u64,
    /// `upstream_cx_active`: live pooled connections to the cluster's endpoints.
    pub cx_active: u64,
    /// `membership_total` / `membership_healthy` (not ejected).
    pub members: u64,
    pub healthy: u64,
    /// `outlier_detection.ejections_active`.
    pub ejected: u64,
    /// `circuit_breakers.default.rq_open`: the request limit is reached.
    pub rq_open: bool,
    /// `circuit_breakers.default.cx_open`, `rq_pending_open`, `rq_retry_open`.
    pub cx_open: bool,
    pub rq_pending_open: bool,
    pub rq_retry_open: bool,
}

/// One cluster's row.
pub struct ClusterRow<'a> {
    pub name: &'a str,
    pub stats: &'a ClusterStats,
    pub gauges: ClusterGauges,
}

fn load(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// Appends every cluster's series in Prometheus text format, one family at a time.
pub fn render(out: &mut String, rows: &[ClusterRow<'_>]) {
    type Get = fn(&ClusterRow<'_>) -> u64;
    let families: [(&str, &str, &str, Get); 18] = [
        (
            "upstream_rq_total",
            "counter",
            "Requests sent upstream (every try)",
            |r| load(&r.stats.rq_total),
        ),
        (
            "upstream_rq_pending_overflow",
            "counter",
            "Requests refused by the cluster's request limit (circuit breaker)",
            |r| load(&r.stats.rq_pending_overflow),
        ),
        (
            "upstream_cx_overflow",
            "counter",
            "Times a request found every connection slot taken (maxConnections)",
            |r| load(&r.stats.cx_overflow),
        ),
        (
            "upstream_rq_retry_overflow",
            "counter",
            "Retries not sent because maxRetries retries were scheduled",
            |r| load(&r.stats.rq_retry_overflow),
        ),
        ("upstream_rq_retry", "counter", "Retries sent", |r| {
            load(&r.stats.rq_retry)
        }),
        (
            "upstream_rq_retry_limit_exceeded",
            "counter",
            "Requests not retried further because the retries were used up",
            |r| load(&r.stats.rq_retry_limit_exceeded),
        ),
        (
            "outlier_detection_ejections_enforced_total",
            "counter",
            "Endpoints ejected by outlier detection",
            |r| load(&r.stats.ejections_enforced),
        ),
        (
            "outlier_detection_ejections_total",
            "counter",
            "Ejections outlier detection decided on (enforced or over max_ejection_percent)",
            |r| load(&r.stats.ejections_enforced) + load(&r.stats.ejections_overflow),
        ),
        (
            "outlier_detection_ejections_overflow",
            "counter",
            "Ejections skipped because max_ejection_percent was reached",
            |r| load(&r.stats.ejections_overflow),
        ),
        (
            "outlier_detection_ejections_active",
            "gauge",
            "Endpoints ejected now",
            |r| r.gauges.ejected,
        ),
        (
            "membership_total",
            "gauge",
            "Endpoints in the cluster",
            |r| r.gauges.members,
        ),
        (
            "membership_healthy",
            "gauge",
            "Endpoints not ejected",
            |r| r.gauges.healthy,
        ),
        ("upstream_rq_active", "gauge", "Requests in flight", |r| {
            r.gauges.rq_active
        }),
        (
            "upstream_cx_active",
            "gauge",
            "Open pooled connections to the cluster's endpoints",
            |r| r.gauges.cx_active,
        ),
        (
            "circuit_breakers_default_rq_open",
            "gauge",
            "1 while the cluster's request limit (http2MaxRequests) is reached",
            |r| u64::from(r.gauges.rq_open),
        ),
        (
            "circuit_breakers_default_cx_open",
            "gauge",
            "1 while every connection slot (maxConnections) is taken",
            |r| u64::from(r.gauges.cx_open),
        ),
        (
            "circuit_breakers_default_rq_pending_open",
            "gauge",
            "1 while the pending-request limit (http1MaxPendingRequests) is reached",
            |r| u64::from(r.gauges.rq_pending_open),
        ),
        (
            "circuit_breakers_default_rq_retry_open",
            "gauge",
            "1 while maxRetries retries are scheduled",
            |r| u64::from(r.gauges.rq_retry_open),
        ),
    ];
    for (name, kind, help, get) in families {
        let _ = writeln!(out, "# HELP envoy_cluster_{name} {help}");
        let _ = writeln!(out, "# TYPE envoy_cluster_{name} {kind}");
        for r in rows {
            let _ = writeln!(
                out,
                "envoy_cluster_{name}{{cluster_name=\"{}\"}} {}",
                super::exposition::escape(r.name),
                get(r)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_carry_envoys_names_and_the_cluster_name() {
        let stats = ClusterStats::default();
        ClusterStats::inc(&stats.rq_pending_overflow);
        ClusterStats::inc(&stats.cx_overflow);
        let rows = [ClusterRow {
            name: "outbound|9080|v1|reviews.default.svc.cluster.local",
            stats: &stats,
            gauges: ClusterGauges {
                members: 2,
                healthy: 1,
                ejected: 1,
                rq_open: true,
                rq_pending_open: true,
                ..Default::default()
            },
        }];
        let mut out = String::new();
        render(&mut out, &rows);
        let c = r#"{cluster_name="outbound|9080|v1|reviews.default.svc.cluster.local"}"#;
        for line in [
            format!("envoy_cluster_upstream_rq_pending_overflow{c} 1"),
            format!("envoy_cluster_membership_healthy{c} 1"),
            format!("envoy_cluster_membership_total{c} 2"),
            format!("envoy_cluster_outlier_detection_ejections_active{c} 1"),
            format!("envoy_cluster_circuit_breakers_default_rq_open{c} 1"),
            format!("envoy_cluster_circuit_breakers_default_rq_pending_open{c} 1"),
            format!("envoy_cluster_circuit_breakers_default_cx_open{c} 0"),
            format!("envoy_cluster_upstream_cx_overflow{c} 1"),
            format!("envoy_cluster_upstream_rq_retry_overflow{c} 0"),
            "# TYPE envoy_cluster_upstream_rq_retry counter".to_string(),
        ] {
            assert!(out.contains(&line), "{line} in\n{out}");
        }
    }
}
