//! Selectors against the registry's workloads: Gateway selectors that match no workload
//! (WA0106), DestinationRule subsets that select no endpoint of their host (WA0104) and
//! DestinationRules for hosts no ServiceEntry has (WA0114).
//!
//! Workload-based checks only run when the config has WorkloadEntries at all: a folder
//! of routing rules alone says nothing about which workloads exist.

use std::collections::{BTreeMap, BTreeSet};

use weft_api::{DestinationRule, Gateway, Resource, Spec};
use weft_model::registry::{fqdn, selects};

use super::at;
use super::routes::{list, shown};
use crate::finding::*;
use crate::index::Index;

pub(super) fn check(ix: &Index<'_>, out: &mut Vec<Finding>) {
    for r in ix.res {
        match &r.spec {
            Spec::Gateway(gw) if !ix.workloads.is_empty() => gateway(ix, r, gw, out),
            Spec::DestinationRule(dr) => destination_rule(ix, r, dr, out),
            _ => {}
        }
    }
}

fn labels(l: &BTreeMap<String, String>) -> String {
    l.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn gateway(ix: &Index<'_>, r: &Resource, gw: &Gateway, out: &mut Vec<Finding>) {
    if gw.selector.is_empty() || !ix.select(None, &gw.selector).is_empty() {
        return;
    }
    // What the workloads do have for the selector's keys, to spot a typo.
    let mut seen = BTreeSet::new();
    for &w in &ix.workloads {
        for (k, v) in &ix.we(w).labels {
            if gw.selector.contains_key(k) {
                seen.insert(format!("{k}={v}"));
            }
        }
    }
    let suggestion = if seen.is_empty() {
        "add a WorkloadEntry for the gateway with these labels (e.g. `istio: ingressgateway`), or fix the selector".to_owned()
    } else {
        let seen: Vec<String> = seen.into_iter().collect();
        format!(
            "workloads have {}; fix the selector or the gateway workload's labels",
            list(&seen)
        )
    };
    out.push(at(
        r,
        "spec.selector",
        GATEWAY_NO_WORKLOAD,
        Severity::Error,
        format!(
            "selector {{{}}} matches no workload, so no proxy serves this Gateway",
            labels(&gw.selector)
        ),
        Some(suggestion),
    ));
}

fn destination_rule(ix: &Index<'_>, r: &Resource, dr: &DestinationRule, out: &mut Vec<Finding>) {
    if dr.host.is_empty() || dr.host.contains('*') {
        return;
    }
    let host = fqdn(&dr.host, r.namespace());
    let services = ix.services_for(&host, None);
    if services.is_empty() {
        out.push(at(
            r,
            "spec.host",
            DR_UNKNOWN_HOST,
            Severity::Warning,
            format!(
                "host {} matches no ServiceEntry host, so this DestinationRule applies to nothing",
                shown(&dr.host, &host)
            ),
            Some("fix the host, or add a ServiceEntry for it".into()),
        ));
        return;
    }
    if dr.subsets.is_empty() || ix.workloads.is_empty() {
        return;
    }
    let mut endpoint_labels = Vec::new();
    let mut known = false;
    for &(se, _) in &services {
        if let Some(eps) = ix.endpoints_of(se) {
            known = true;
            endpoint_labels.extend(eps.labels);
        }
    }
    if !known {
        return; // endpoints come from DNS or the platform: nothing to compare with
    }
    for (i, subset) in dr.subsets.iter().enumerate() {
        if subset.labels.is_empty() || endpoint_labels.iter().any(|l| selects(&subset.labels, l)) {
            continue;
        }
        let mut have = BTreeSet::new();
        for l in &endpoint_labels {
            for k in subset.labels.keys() {
                if let Some(v) = l.get(k) {
                    have.insert(format!("{k}={v}"));
                }
            }
        }
        let suggestion = if endpoint_labels.is_empty() {
            format!("the service {host} has no endpoints at all; add WorkloadEntries matching its ServiceEntry's workloadSelector")
        } else if have.is_empty() {
            format!("none of the {} endpoints of {host} has these label keys; fix the labels or the WorkloadEntries", endpoint_labels.len())
        } else {
            let have: Vec<String> = have.into_iter().collect();
            format!("endpoints of {host} have {}; fix the subset's labels or add a matching WorkloadEntry", list(&have))
        };
        out.push(at(
            r,
            &format!("spec.subsets[{i}].labels"),
            EMPTY_SUBSET,
            Severity::Warning,
            format!(
                "subset `{}` ({}) selects no endpoint of {host}: traffic routed to it fails",
                subset.name,
                labels(&subset.labels)
            ),
            Some(suggestion),
        ));
    }
}
