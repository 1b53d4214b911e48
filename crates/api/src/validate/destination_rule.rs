//! DestinationRule rules: host, subsets, exportTo/workloadSelector, and traffic
//! policies (load balancer including consistent-hash/maglev settings, connection
//! pool, outlier detection, client TLS, port-level settings, tunnel, retry budget).

use std::collections::BTreeSet;

use super::common::{duration, export_to, host, percent, port, selector_labels};
use super::Errs;
use crate::{
    ClientTlsMode, ClientTlsSettings, ConnectionPoolSettings, DestinationRule,
    LoadBalancerSettings, OutlierDetection, Resource, TrafficPolicy,
};

pub(super) fn validate(r: &Resource, dr: &DestinationRule, errs: &mut Errs) {
    if dr.host.is_empty() {
        errs.key("spec.host", "destination rule host must not be empty: name the service (e.g. reviews.prod.svc.cluster.local)");
    } else {
        host(errs, "spec.host", &dr.host);
    }
    export_to(errs, &dr.export_to, r.namespace(), false);
    if let Some(sel) = &dr.workload_selector {
        selector_labels(errs, "spec.workloadSelector.matchLabels", &sel.match_labels);
        let own = |e: &String| e == "." || e == r.namespace();
        if !dr.export_to.iter().all(own)
            || dr.export_to.is_empty() && r.positions.get("spec.exportTo").is_some()
        {
            errs.key("spec.exportTo", "a DestinationRule with workloadSelector may only be exported to its own namespace (exportTo: [\".\"])");
        }
    }
    let mut seen = BTreeSet::new();
    for (i, s) in dr.subsets.iter().enumerate() {
        let at = format!("spec.subsets[{i}]");
        if s.name.is_empty() {
            errs.key(
                format!("{at}.name"),
                "subset name must not be empty: give each subset a unique name",
            );
        } else if !seen.insert(&s.name) {
            errs.at(
                format!("{at}.name"),
                format!(
                    "duplicate subset name {:?}: subset names must be unique",
                    s.name
                ),
            );
        }
        if let Some(tp) = &s.traffic_policy {
            traffic_policy(errs, &format!("{at}.trafficPolicy"), tp);
        }
    }
    if let Some(tp) = &dr.traffic_policy {
        traffic_policy(errs, "spec.trafficPolicy", tp);
    }
}

fn traffic_policy(errs: &mut Errs, at: &str, tp: &TrafficPolicy) {
    if let Some(lb) = &tp.load_balancer {
        load_balancer(errs, &format!("{at}.loadBalancer"), lb);
    }
    if let Some(cp) = &tp.connection_pool {
        connection_pool(errs, &format!("{at}.connectionPool"), cp);
    }
    if let Some(od) = &tp.outlier_detection {
        outlier(errs, &format!("{at}.outlierDetection"), od);
    }
    if let Some(tls) = &tp.tls {
        client_tls(errs, &format!("{at}.tls"), tls);
    }
    let mut ports = BTreeSet::new();
    for (i, pl) in tp.port_level_settings.iter().enumerate() {
        let pat = format!("{at}.portLevelSettings[{i}]");
        match pl.port.as_ref().and_then(|p| p.number) {
            None => errs.key(&pat, "portLevelSettings entries need port.number"),
            Some(n) => {
                port(errs, &format!("{pat}.port.number"), n);
                if !ports.insert(n) {
                    errs.at(
                        format!("{pat}.port.number"),
                        format!("port {n} has two portLevelSettings entries; merge them"),
                    );
                }
            }
        }
        if let Some(lb) = &pl.load_balancer {
            load_balancer(errs, &format!("{pat}.loadBalancer"), lb);
        }
        if let Some(cp) = &pl.connection_pool {
            connection_pool(errs, &format!("{pat}.connectionPool"), cp);
        }
        if let Some(od) = &pl.outlier_detection {
            outlier(errs, &format!("{pat}.outlierDetection"), od);
        }
        if let Some(tls) = &pl.tls {
            client_tls(errs, &format!("{pat}.tls"), tls);
        }
    }
    if let Some(t) = &tp.tunnel {
        let tat = format!("{at}.tunnel");
        if let Some(p) = &t.protocol {
            if p != "CONNECT" && p != "POST" {
                errs.at(
                    format!("{tat}.protocol"),
                    format!("tunnel protocol {p:?} must be CONNECT or POST"),
                );
            }
        }
        if t.target_host.is_empty() {
            errs.key(format!("{tat}.targetHost"), "tunnel.targetHost is required");
        }
        port(errs, &format!("{tat}.targetPort"), t.target_port);
    }
    if let Some(v) = tp.retry_budget.as_ref().and_then(|b| b.percent) {
        percent(
            errs,
            &format!("{at}.retryBudget.percent"),
            "retryBudget.percent",
            v,
        );
    }
    if let Some(bi) = tp
        .retry_budget
        .as_ref()
        .and_then(|b| b.budget_interval.as_ref())
    {
        duration(errs, &format!("{at}.retryBudget.budgetInterval"), bi, true);
    }
}

fn load_balancer(errs: &mut Errs, at: &str, lb: &LoadBalancerSettings) {
    if lb.simple.is_some() && lb.consistent_hash.is_some() {
        errs.key(
            format!("{at}.consistentHash"),
            "only one of simple or consistentHash may be set",
        );
    }
    if let Some(ch) = &lb.consistent_hash {
        let cat = format!("{at}.consistentHash");
        let keys = [
            ch.http_header_name.is_some(),
            ch.http_cookie.is_some(),
            ch.use_source_ip.is_some(),
            ch.http_query_parameter_name.is_some(),
        ];
        if keys.iter().filter(|b| **b).count() > 1 {
            errs.key(&cat, "consistentHash: only one of httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName may be set");
        }
        if ch.ring_hash.is_some() && ch.maglev.is_some() {
            errs.key(
                &cat,
                "consistentHash: only one of ringHash or maglev may be set",
            );
        }
        if ch.minimum_ring_size.is_some_and(|n| n != 0)
            && (ch.ring_hash.is_some() || ch.maglev.is_some())
        {
            errs.key(
                format!("{cat}.minimumRingSize"),
                "only one of the deprecated minimumRingSize or ringHash/maglev may be set: move the value to ringHash.minimumRingSize",
            );
        }
        if let Some(m) = &ch.maglev {
            maglev_table_size(errs, &format!("{cat}.maglev"), m.table_size);
        }
        if let Some(c) = &ch.http_cookie {
            if c.name.is_empty() {
                errs.key(
                    format!("{cat}.httpCookie.name"),
                    "httpCookie.name is required",
                );
            }
            if let Some(ttl) = &c.ttl {
                duration(errs, &format!("{cat}.httpCookie.ttl"), ttl, true);
            }
        }
    }
    if let Some(l) = &lb.locality_lb_setting {
        let lat = format!("{at}.localityLbSetting");
        if !l.distribute.is_empty() && (!l.failover.is_empty() || !l.failover_priority.is_empty()) {
            errs.key(&lat, "localityLbSetting: distribute cannot be combined with failover or failoverPriority");
        }
        for (i, d) in l.distribute.iter().enumerate() {
            let sum: u64 = d.to.values().map(|v| u64::from(*v)).sum();
            if sum != 100 {
                errs.at(
                    format!("{lat}.distribute[{i}].to"),
                    format!("locality weights must total 100 (they total {sum})"),
                );
            }
        }
    }
    if lb.locality_lb_setting.is_some() && lb.zone_aware_lb_setting.is_some() {
        errs.key(
            format!("{at}.zoneAwareLbSetting"),
            "only one of localityLbSetting or zoneAwareLbSetting may be set",
        );
    }
    if let Some(w) = &lb.warmup {
        let wat = format!("{at}.warmup");
        if w.duration.is_empty() {
            errs.key(
                format!("{wat}.duration"),
                format!("{wat}.duration: Required value: set a warmup duration such as \"60s\""),
            );
        } else {
            duration(errs, &format!("{wat}.duration"), &w.duration, false);
        }
        if let Some(p) = w.minimum_percent {
            if !(0.0..=100.0).contains(&p) {
                errs.at(
                    format!("{wat}.minimumPercent"),
                    format!("{wat}.minimumPercent: Invalid value {p}: must be within [0, 100]"),
                );
            }
        }
        if let Some(a) = w.aggression {
            if a < 1.0 {
                errs.at(format!("{wat}.aggression"), format!("{wat}.aggression: Invalid value {a}: must be at least 1 (1 = linear ramp-up)"));
            }
        }
        if lb.warmup_duration_secs.is_some() {
            errs.key(
                format!("{at}.warmupDurationSecs"),
                "only one of warmup or the deprecated warmupDurationSecs may be set",
            );
        }
    }
    if let Some(d) = &lb.warmup_duration_secs {
        duration(errs, &format!("{at}.warmupDurationSecs"), d, false);
    }
}

/// Maglev `tableSize`: required, below 5000011 and prime (Envoy's primality
/// test, as Istio copies it).
fn maglev_table_size(errs: &mut Errs, at: &str, size: Option<u64>) {
    match size.unwrap_or(0) {
        0 => errs.key(
            at,
            "maglev.tableSize must be set: give a prime below 5000011 (65537 is the usual choice)",
        ),
        n if n >= 5_000_011 => errs.at(
            format!("{at}.tableSize"),
            format!(
                "maglev.tableSize {n} must be less than 5000011: use a smaller prime such as 65537"
            ),
        ),
        n if !is_prime(n) => errs.at(
            format!("{at}.tableSize"),
            format!("maglev.tableSize {n} must be a prime number (e.g. 65537 or 131071)"),
        ),
        _ => {}
    }
}

/// Envoy's `Primes::isPrime` (1, 2 and 3 count as prime).
fn is_prime(x: u64) -> bool {
    if x != 0 && x < 4 {
        return true;
    }
    // `rem` rather than `%`/`is_multiple_of` keeps clippy and the 1.85 MSRV happy.
    let divides = |f: u64| x.checked_rem(f) == Some(0);
    !divides(2)
        && (3..)
            .step_by(2)
            .take_while(|f| f * f <= x)
            .all(|f| !divides(f))
}

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

fn connection_pool(errs: &mut Errs, at: &str, cp: &ConnectionPoolSettings) {
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
        if h.h2_upgrade_policy.is_some() && h.use_client_protocol == Some(true) {
            errs.key(format!("{hat}.useClientProtocol"), "h2UpgradePolicy and useClientProtocol cannot both be set; useClientProtocol already follows the client");
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

fn outlier(errs: &mut Errs, at: &str, od: &OutlierDetection) {
    if od.consecutive_local_origin_failures.is_some()
        && od.split_external_local_origin_errors != Some(true)
    {
        errs.key(
            format!("{at}.consecutiveLocalOriginFailures"),
            "consecutiveLocalOriginFailures requires splitExternalLocalOriginErrors: true",
        );
    }
    for (name, v) in [
        ("maxEjectionPercent", od.max_ejection_percent),
        ("minHealthPercent", od.min_health_percent),
    ] {
        if let Some(v) = v {
            if !(0..=100).contains(&v) {
                errs.at(
                    format!("{at}.{name}"),
                    format!("outlierDetection.{name} must be within [0, 100] ({v} given)"),
                );
            }
        }
    }
    if let Some(e) = od.consecutive_errors {
        if e < 0 {
            errs.at(
                format!("{at}.consecutiveErrors"),
                "outlierDetection.consecutiveErrors must be >= 0",
            );
        }
    }
    for (name, v) in [
        ("interval", &od.interval),
        ("baseEjectionTime", &od.base_ejection_time),
    ] {
        if let Some(d) = v {
            duration(errs, &format!("{at}.{name}"), d, false);
        }
    }
    for (i, c) in od.outlier_detection_http_error_codes.iter().enumerate() {
        if !(100..=599).contains(c) {
            errs.at(
                format!("{at}.outlierDetectionHttpErrorCodes[{i}]"),
                format!("HTTP error code {c} must be within 100-599"),
            );
        }
    }
}

fn client_tls(errs: &mut Errs, at: &str, t: &ClientTlsSettings) {
    let files =
        t.client_certificate.is_some() || t.private_key.is_some() || t.ca_certificates.is_some();
    let istio_mutual = t.mode == Some(ClientTlsMode::IstioMutual);
    if istio_mutual && (files || t.credential_name.is_some() || t.ca_crl.is_some()) {
        errs.key(at, "ISTIO_MUTUAL uses Istio's own certificates: clientCertificate, privateKey, caCertificates, caCrl and credentialName must be empty");
    }
    let mutual = t.mode == Some(ClientTlsMode::Mutual) && t.credential_name.is_none();
    if mutual && (t.client_certificate.is_none() || t.private_key.is_none()) {
        errs.key(
            at,
            "MUTUAL TLS without credentialName requires clientCertificate and privateKey",
        );
    }
    if t.credential_name.is_some() && files {
        errs.key(format!("{at}.credentialName"), "credentialName cannot be combined with file paths (clientCertificate/privateKey/caCertificates)");
    }
    if t.insecure_skip_verify == Some(true)
        && (t.credential_name.is_some()
            || t.ca_certificates.is_some()
            || !t.subject_alt_names.is_empty())
    {
        errs.key(format!("{at}.insecureSkipVerify"), "insecureSkipVerify=true cannot be combined with CA material (credentialName/caCertificates) or SANs");
    }
}
