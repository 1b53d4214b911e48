//! DestinationRule rules, as istio/istio's `ValidateDestinationRule`,
//! `validateTrafficPolicy`, `validatePortTrafficPolicies`, `validateOutlierDetection`,
//! `validateTunnelSettings` and `validateSubset` (`pkg/config/validation/validation.go`):
//! host, subsets, exportTo/workloadSelector, traffic policies (load balancer in
//! `load_balancer`, connection pool in `connection_pool`, client TLS in `client_tls`),
//! outlier detection, port-level settings, tunnel, retry budget.

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::client_tls::client_tls;
use super::common::{
    domain_host, duration, export_to, is_dns_label, is_dns_name, k8s_labels, percent, port_ok,
    selector_labels, selector_without_labels,
};
use super::connection_pool::connection_pool;
use super::load_balancer::load_balancer;
use super::{Errs, WarningKind};
use crate::{DestinationRule, OutlierDetection, Resource, TrafficPolicy};

pub(super) fn validate(r: &Resource, dr: &DestinationRule, errs: &mut Errs) {
    if dr.host.is_empty() {
        errs.key("spec.host", "destination rule host must not be empty: name the service (e.g. reviews.prod.svc.cluster.local)");
    } else {
        domain_host(errs, "spec.host", &dr.host);
    }
    export_to(errs, &dr.export_to, r.namespace(), false);
    if let Some(sel) = &dr.workload_selector {
        selector_labels(errs, "spec.workloadSelector.matchLabels", &sel.match_labels);
        selector_without_labels(errs, "spec.workloadSelector", &sel.match_labels);
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
        } else if !is_dns_label(&s.name) {
            errs.at(format!("{at}.name"), format!("subset name {:?} is invalid: a subset name is a DNS-1123 label (letters, digits, `-`, at most 63)", s.name));
        } else if !seen.insert(&s.name) {
            errs.at(
                format!("{at}.name"),
                format!(
                    "duplicate subset name {:?}: subset names must be unique",
                    s.name
                ),
            );
        }
        k8s_labels(errs, &format!("{at}.labels"), &s.labels);
        if let Some(tp) = &s.traffic_policy {
            traffic_policy(errs, &format!("{at}.trafficPolicy"), tp, r.namespace());
        }
    }
    if let Some(tp) = &dr.traffic_policy {
        traffic_policy(errs, "spec.trafficPolicy", tp, r.namespace());
    }
}

fn traffic_policy(errs: &mut Errs, at: &str, tp: &TrafficPolicy, ns: &str) {
    if tp.load_balancer.is_none()
        && tp.connection_pool.is_none()
        && tp.outlier_detection.is_none()
        && tp.tls.is_none()
        && tp.port_level_settings.is_empty()
        && tp.tunnel.is_none()
        && tp.proxy_protocol.is_none()
        && tp.retry_budget.is_none()
    {
        errs.key(at, "traffic policy must have at least one field (loadBalancer, connectionPool, outlierDetection, tls, portLevelSettings, tunnel, proxyProtocol or retryBudget); remove it if empty");
        return;
    }
    if tp.tunnel.is_some() && tp.proxy_protocol.is_some() {
        errs.key(
            format!("{at}.proxyProtocol"),
            "tunnel and proxyProtocol must not be set together; keep one of them",
        );
    }
    let od = tp.outlier_detection.is_some();
    if let Some(lb) = &tp.load_balancer {
        load_balancer(errs, &format!("{at}.loadBalancer"), lb, od);
    }
    if let Some(cp) = &tp.connection_pool {
        connection_pool(errs, &format!("{at}.connectionPool"), cp);
    }
    if let Some(od) = &tp.outlier_detection {
        outlier(errs, &format!("{at}.outlierDetection"), od);
    }
    if let Some(tls) = &tp.tls {
        client_tls(errs, &format!("{at}.tls"), tls, ns);
    }
    port_level(errs, at, tp, ns);
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
        } else if !is_dns_name(&t.target_host) && t.target_host.parse::<IpAddr>().is_err() {
            errs.at(
                format!("{tat}.targetHost"),
                format!(
                    "tunnel target host {:?} must be a valid FQDN or IP address",
                    t.target_host
                ),
            );
        }
        if !port_ok(t.target_port) {
            errs.at(
                format!("{tat}.targetPort"),
                format!(
                    "tunnel target port {} is invalid: port must be between 1-65535",
                    t.target_port
                ),
            );
        }
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

fn outlier(errs: &mut Errs, at: &str, od: &OutlierDetection) {
    if od.consecutive_local_origin_failures.is_some_and(|n| n > 0)
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

/// Port-level settings: a port is required and each entry sets something (Istio rejects
/// both); a port number no service can have, or a port listed twice, is accepted by Istio
/// and warned about here (it never applies / only one entry applies).
fn port_level(errs: &mut Errs, at: &str, tp: &TrafficPolicy, ns: &str) {
    let mut ports = BTreeSet::new();
    for (i, pl) in tp.port_level_settings.iter().enumerate() {
        let pat = format!("{at}.portLevelSettings[{i}]");
        match &pl.port {
            None => errs.key(&pat, "portLevelSettings entries need a port (port.number)"),
            Some(p) => {
                let n = p.number.unwrap_or(0);
                if !port_ok(n) {
                    errs.warn(WarningKind::Istio, format!("{pat}.port"), format!("port {n} is not a valid port number (1-65535), so these settings never apply"));
                } else if !ports.insert(n) {
                    errs.warn(WarningKind::Istio, format!("{pat}.port.number"), format!("port {n} has two portLevelSettings entries; Istio accepts this but only one of them applies: merge them"));
                }
            }
        }
        if pl.load_balancer.is_none()
            && pl.connection_pool.is_none()
            && pl.outlier_detection.is_none()
            && pl.tls.is_none()
        {
            errs.key(&pat, "port traffic policy must have at least one field (loadBalancer, connectionPool, outlierDetection or tls)");
            continue;
        }
        let od = pl.outlier_detection.is_some();
        if let Some(lb) = &pl.load_balancer {
            load_balancer(errs, &format!("{pat}.loadBalancer"), lb, od);
        }
        if let Some(cp) = &pl.connection_pool {
            connection_pool(errs, &format!("{pat}.connectionPool"), cp);
        }
        if let Some(od) = &pl.outlier_detection {
            outlier(errs, &format!("{pat}.outlierDetection"), od);
        }
        if let Some(tls) = &pl.tls {
            client_tls(errs, &format!("{pat}.tls"), tls, ns);
        }
    }
}
