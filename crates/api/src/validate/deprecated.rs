//! Deprecated fields Istio still accepts, warned about as Istio does: the deprecation
//! warnings of istio/istio `pkg/config/validation` (`validateOutlierDetection`:
//! consecutiveErrors; `validateLoadBalancer`: minimumRingSize; `validateHTTPRoute`:
//! mirrorPercent), istioctl's deprecation analyzer
//! (`pkg/config/analysis/analyzers/deprecation`: fault.delay.percent, Sidecar
//! outboundTrafficPolicy.egressProxy). Other fields istio/api marks `deprecated = true`
//! (corsPolicy.allowOrigin, loadBalancer.simple LEAST_CONN, port targetPort) draw no
//! warning from Istio, so none here (targetPort is an error on Gateways and Sidecars).

use super::{Errs, WarningKind};
use crate::{
    DestinationRule, LoadBalancerSettings, OutlierDetection, Resource, Spec, TrafficPolicy,
    VirtualService,
};

pub(super) fn check(r: &Resource, errs: &mut Errs) {
    match &r.spec {
        Spec::DestinationRule(dr) => destination_rule(dr, errs),
        Spec::VirtualService(vs) => virtual_service(vs, errs),
        Spec::Sidecar(sc)
            if sc
                .outbound_traffic_policy
                .as_ref()
                .is_some_and(|o| o.egress_proxy.is_some()) =>
        {
            errs.warn(WarningKind::Deprecated, "spec.outboundTrafficPolicy.egressProxy", "OutboundTrafficPolicy.EgressProxy ignored: istioctl reports it as deprecated (IST0002) and Istio does not use it; remove it");
        }
        _ => {}
    }
}

/// Every traffic policy of a DestinationRule with its path, port-level ones included:
/// `(path, load balancer, outlier detection)`.
fn policies(
    dr: &DestinationRule,
) -> Vec<(
    String,
    Option<&LoadBalancerSettings>,
    Option<&OutlierDetection>,
)> {
    let mut tops: Vec<(String, &TrafficPolicy)> = Vec::new();
    if let Some(tp) = &dr.traffic_policy {
        tops.push(("spec.trafficPolicy".into(), tp));
    }
    for (i, s) in dr.subsets.iter().enumerate() {
        if let Some(tp) = &s.traffic_policy {
            tops.push((format!("spec.subsets[{i}].trafficPolicy"), tp));
        }
    }
    let mut out = Vec::new();
    for (path, tp) in tops {
        for (j, p) in tp.port_level_settings.iter().enumerate() {
            out.push((
                format!("{path}.portLevelSettings[{j}]"),
                p.load_balancer.as_ref(),
                p.outlier_detection.as_ref(),
            ));
        }
        out.push((
            path,
            tp.load_balancer.as_ref(),
            tp.outlier_detection.as_ref(),
        ));
    }
    out
}

fn destination_rule(dr: &DestinationRule, errs: &mut Errs) {
    for (path, lb, od) in policies(dr) {
        if od.is_some_and(|od| od.consecutive_errors.is_some_and(|n| n != 0)) {
            errs.warn(
                WarningKind::Deprecated,
                format!("{path}.outlierDetection.consecutiveErrors"),
                "outlierDetection.consecutiveErrors is deprecated (Istio treats it as consecutiveGatewayErrors, and so does weft): use consecutiveGatewayErrors (502/503/504) or consecutive5xxErrors instead",
            );
        }
        let Some(lb) = lb else { continue };
        let ring = lb
            .consistent_hash
            .as_ref()
            .and_then(|c| c.minimum_ring_size);
        if ring.is_some_and(|n| n != 0) {
            errs.warn(
                WarningKind::Deprecated,
                format!("{path}.loadBalancer.consistentHash.minimumRingSize"),
                "consistent hash minimumRingSize is deprecated: use consistentHash.ringHash.minimumRingSize instead",
            );
        }
    }
}

fn virtual_service(vs: &VirtualService, errs: &mut Errs) {
    for (i, h) in vs.http.iter().enumerate() {
        let at = format!("spec.http[{i}]");
        if h.mirror_percent.is_some() {
            errs.warn(
                WarningKind::Deprecated,
                format!("{at}.mirrorPercent"),
                "using deprecated setting \"mirrorPercent\": use \"mirrorPercentage\" instead (e.g. mirrorPercentage: {value: 50})",
            );
        }
        let delay = h.fault.as_ref().and_then(|f| f.delay.as_ref());
        if delay.is_some_and(|d| d.percent.is_some_and(|p| p > 0)) {
            errs.warn(
                WarningKind::Deprecated,
                format!("{at}.fault.delay.percent"),
                "HTTPRoute.fault.delay.percent is deprecated; use HTTPRoute.fault.delay.percentage (e.g. percentage: {value: 10})",
            );
        }
    }
}
