//! What Istio accepts but deserves a warning: deprecated fields Istio still honours (as
//! istioctl warns about them) and settings Istio silently ignores, so weft is no stricter
//! than Istio's validation and still says what it sees.

use weft_api::{DestinationRule, Resource, Sidecar, Spec, TrafficPolicy};

use super::at;
use crate::finding::*;
use crate::index::Index;

pub(super) fn check(ix: &Index<'_>, out: &mut Vec<Finding>) {
    for r in ix.res {
        match &r.spec {
            Spec::DestinationRule(dr) => deprecated_outlier_fields(r, dr, out),
            Spec::Sidecar(sc) => egress_bind_without_port(r, sc, out),
            _ => {}
        }
    }
}

/// `outlierDetection.consecutiveErrors` is deprecated (Istio maps it to
/// `consecutiveGatewayErrors`, as weft does).
fn deprecated_outlier_fields(r: &Resource, dr: &DestinationRule, out: &mut Vec<Finding>) {
    let mut policies: Vec<(String, &TrafficPolicy)> = Vec::new();
    if let Some(tp) = &dr.traffic_policy {
        policies.push(("spec.trafficPolicy".into(), tp));
    }
    for (i, s) in dr.subsets.iter().enumerate() {
        if let Some(tp) = &s.traffic_policy {
            policies.push((format!("spec.subsets[{i}].trafficPolicy"), tp));
        }
    }
    for (path, tp) in policies {
        let mut outliers = vec![(
            format!("{path}.outlierDetection"),
            tp.outlier_detection.as_ref(),
        )];
        for (j, p) in tp.port_level_settings.iter().enumerate() {
            outliers.push((
                format!("{path}.portLevelSettings[{j}].outlierDetection"),
                p.outlier_detection.as_ref(),
            ));
        }
        for (at_path, od) in outliers {
            if od.is_some_and(|od| od.consecutive_errors.is_some()) {
                out.push(at(
                    r,
                    &format!("{at_path}.consecutiveErrors"),
                    DEPRECATED,
                    Severity::Warning,
                    "outlierDetection.consecutiveErrors is deprecated (Istio treats it as consecutiveGatewayErrors, and so does weft)".into(),
                    Some("use consecutiveGatewayErrors (502/503/504) or consecutive5xxErrors instead".into()),
                ));
            }
        }
    }
}

/// Istio applies an egress `bind` only to a listener with a `port`; on a catch-all
/// listener it is ignored (istio.io Sidecar reference, IstioEgressListener.bind).
fn egress_bind_without_port(r: &Resource, sc: &Sidecar, out: &mut Vec<Finding>) {
    for (i, l) in sc.egress.iter().enumerate() {
        if l.port.is_none() && l.bind.is_some() {
            out.push(at(
                r,
                &format!("spec.egress[{i}].bind"),
                IGNORED_SETTING,
                Severity::Warning,
                "an egress bind without a port is ignored: Istio applies bind only to a listener with a port".into(),
                Some("add a port to this egress listener, or remove bind (see the Sidecar reference, IstioEgressListener.bind)".into()),
            ));
        }
    }
}
