//! Connection pool rules (DestinationRule traffic policies, Sidecar ingress listeners and
//! inboundConnectionPool), as istio/istio's `validateConnectionPool`
//! (`pkg/config/validation/validation.go`): at least one of tcp/http, non-negative limits,
//! durations, HTTP/2 keepalive, h2UpgradePolicy UPGRADE with useClientProtocol.

use super::common::duration;
use super::Errs;
use crate::{ConnectionPoolSettings, H2UpgradePolicy};

fn non_negative(errs: &mut Errs, at: &str, name: &str, v: Option<i32>) {
    if let Some(v) = v {
        if v < 0 {
            errs.at(
                format!("{at}.{name}"),
                format!(
                    "connectionPool.{at_tail}.{name} must be >= 0 ({v} given)",
                    at_tail = at.rsplit('.').next().unwrap_or_default()
                ),
            );
        }
    }
}

pub(super) fn connection_pool(errs: &mut Errs, at: &str, cp: &ConnectionPoolSettings) {
    if cp.tcp.is_none() && cp.http.is_none() {
        errs.key(
            at,
            "connectionPool must set tcp and/or http (an empty connectionPool is rejected)",
        );
    }
    if let Some(t) = &cp.tcp {
        let tat = format!("{at}.tcp");
        non_negative(errs, &tat, "maxConnections", t.max_connections);
        if let Some(d) = &t.connect_timeout {
            duration(errs, &format!("{tat}.connectTimeout"), d, false);
        }
        if let Some(d) = &t.max_connection_duration {
            duration(errs, &format!("{tat}.maxConnectionDuration"), d, false);
        }
        if let Some(d) = &t.idle_timeout {
            duration(errs, &format!("{tat}.idleTimeout"), d, true);
        }
        if let Some(k) = &t.tcp_keepalive {
            for (name, v) in [("time", &k.time), ("interval", &k.interval)] {
                if let Some(d) = v {
                    duration(errs, &format!("{tat}.tcpKeepalive.{name}"), d, false);
                }
            }
        }
    }
    if let Some(h) = &cp.http {
        let hat = format!("{at}.http");
        non_negative(
            errs,
            &hat,
            "http1MaxPendingRequests",
            h.http1_max_pending_requests,
        );
        non_negative(errs, &hat, "http2MaxRequests", h.http2_max_requests);
        non_negative(
            errs,
            &hat,
            "maxRequestsPerConnection",
            h.max_requests_per_connection,
        );
        non_negative(errs, &hat, "maxRetries", h.max_retries);
        non_negative(errs, &hat, "maxConcurrentStreams", h.max_concurrent_streams);
        if let Some(d) = &h.idle_timeout {
            duration(errs, &format!("{hat}.idleTimeout"), d, false);
        }
        if h.h2_upgrade_policy == Some(H2UpgradePolicy::Upgrade)
            && h.use_client_protocol == Some(true)
        {
            errs.key(format!("{hat}.useClientProtocol"), "h2UpgradePolicy and useClientProtocol cannot both be set (useClientProtocol: true with h2UpgradePolicy UPGRADE): useClientProtocol already follows the client; keep one of them");
        }
        if let Some(ka) = &h.http2_keep_alive {
            for (name, v) in [("interval", &ka.interval), ("timeout", &ka.timeout)] {
                match v {
                    Some(d) => duration(errs, &format!("{hat}.http2KeepAlive.{name}"), d, false),
                    None => errs.key(
                        format!("{hat}.http2KeepAlive"),
                        format!("http2KeepAlive.{name} is required"),
                    ),
                }
            }
        }
    }
}
