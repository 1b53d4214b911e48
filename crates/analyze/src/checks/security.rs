//! Security cross-checks: DestinationRule TLS modes that contradict the effective
//! PeerAuthentication of the destination's workloads (WA0107), and AuthorizationPolicy
//! sources naming namespaces (WA0108) or principals (WA0109) nothing in the config has.

use std::collections::BTreeMap;

use weft_api::{
    AuthorizationPolicy, ClientTlsMode, DestinationRule, MtlsMode, Resource, Spec, TrafficPolicy,
};
use weft_model::registry::{fqdn, selects};

use super::{at, origin};
use crate::finding::*;
use crate::index::Index;
use crate::similar::closest;

pub(super) fn check(ix: &Index<'_>, out: &mut Vec<Finding>) {
    for r in ix.res {
        match &r.spec {
            Spec::DestinationRule(dr) => mtls(ix, r, dr, out),
            Spec::AuthorizationPolicy(ap) => authz(ix, r, ap, out),
            _ => {}
        }
    }
}

/// The effective mTLS mode of a workload and the PeerAuthentication deciding it
/// (`None`: nothing set, PERMISSIVE by default). Workload-level beats namespace-level
/// beats mesh-level; `UNSET` inherits. Also says whether the deciding policy has
/// port-level overrides (then the workload's mode is not uniform).
fn effective_mtls(ix: &Index<'_>, w: usize) -> Option<(MtlsMode, usize, bool)> {
    let wr = &ix.res[w];
    let labels = &ix.we(w).labels;
    let policies = |ns: &str| ix.peer_authn.get(ns).map_or(&[][..], |v| v.as_slice());
    let pa = |i: usize| match &ix.res[i].spec {
        Spec::PeerAuthentication(pa) => pa,
        _ => unreachable!("index {i} is not a PeerAuthentication"),
    };
    let has_selector = |i: usize| {
        pa(i)
            .selector
            .as_ref()
            .is_some_and(|s| !s.match_labels.is_empty())
    };
    let workload_level = policies(wr.namespace()).iter().copied().find(|&i| {
        pa(i)
            .selector
            .as_ref()
            .is_some_and(|s| !s.match_labels.is_empty() && selects(&s.match_labels, labels))
    });
    let ns_level = policies(wr.namespace())
        .iter()
        .copied()
        .find(|&i| !has_selector(i));
    let mesh_level = policies(weft_model::mesh::root_namespace(ix.res))
        .iter()
        .copied()
        .find(|&i| !has_selector(i));
    let mut port_level = false;
    for i in [workload_level, ns_level, mesh_level].into_iter().flatten() {
        port_level |= !pa(i).port_level_mtls.is_empty();
        match pa(i).mtls.as_ref().and_then(|m| m.mode) {
            None | Some(MtlsMode::Unset) => continue,
            Some(mode) => return Some((mode, i, port_level)),
        }
    }
    None
}

/// One client TLS setting: path of its `tls.mode`, the mode, and the subset's labels
/// when it is subset-level.
type TlsSetting<'a> = (String, ClientTlsMode, Option<&'a BTreeMap<String, String>>);

/// Every TLS setting of a DestinationRule.
fn tls_settings(dr: &DestinationRule) -> Vec<TlsSetting<'_>> {
    let mut v = Vec::new();
    let mut policy = |tp: &TrafficPolicy, at: &str, subset| {
        if let Some(mode) = tp.tls.as_ref().and_then(|t| t.mode) {
            v.push((format!("{at}.tls.mode"), mode, subset));
        }
        for (i, p) in tp.port_level_settings.iter().enumerate() {
            if let Some(mode) = p.tls.as_ref().and_then(|t| t.mode) {
                v.push((
                    format!("{at}.portLevelSettings[{i}].tls.mode"),
                    mode,
                    subset,
                ));
            }
        }
    };
    if let Some(tp) = &dr.traffic_policy {
        policy(tp, "spec.trafficPolicy", None);
    }
    for (i, s) in dr.subsets.iter().enumerate() {
        if let Some(tp) = &s.traffic_policy {
            policy(
                tp,
                &format!("spec.subsets[{i}].trafficPolicy"),
                Some(&s.labels),
            );
        }
    }
    v
}

fn mtls(ix: &Index<'_>, r: &Resource, dr: &DestinationRule, out: &mut Vec<Finding>) {
    if dr.host.is_empty() || dr.host.contains('*') {
        return;
    }
    let settings = tls_settings(dr);
    if settings.is_empty() {
        return;
    }
    let host = fqdn(&dr.host, r.namespace());
    let mut workloads = Vec::new();
    for (se, _) in ix.services_for(&host, None) {
        if let Some(eps) = ix.endpoints_of(se) {
            workloads.extend(eps.workloads);
        }
    }
    for (path, mode, subset) in settings {
        let wanted = match mode {
            ClientTlsMode::Disable => MtlsMode::Strict,
            ClientTlsMode::IstioMutual => MtlsMode::Disable,
            _ => continue,
        };
        let conflict = workloads
            .iter()
            .filter(|&&w| subset.is_none_or(|l| selects(l, &ix.we(w).labels)))
            .find_map(|&w| match effective_mtls(ix, w) {
                Some((m, pa, false)) if m == wanted => Some((w, pa)),
                _ => None,
            });
        let Some((w, pa)) = conflict else {
            continue;
        };
        let wr = &ix.res[w];
        let (message, suggestion) = if wanted == MtlsMode::Strict {
            (
                format!("tls.mode DISABLE sends plaintext to {host}, but workload {}/{} requires mTLS (STRICT, from {}): requests fail", wr.namespace(), wr.name(), origin(&ix.res[pa])),
                "remove `tls.mode: DISABLE` (weft/Istio use ISTIO_MUTUAL automatically) or relax the PeerAuthentication to PERMISSIVE".to_owned(),
            )
        } else {
            (
                format!("tls.mode ISTIO_MUTUAL sends mTLS to {host}, but workload {}/{} accepts only plaintext (DISABLE, from {}): requests fail", wr.namespace(), wr.name(), origin(&ix.res[pa])),
                "set the PeerAuthentication to PERMISSIVE or STRICT, or drop the client TLS setting".to_owned(),
            )
        };
        out.push(at(
            r,
            &path,
            MTLS_CONFLICT,
            Severity::Error,
            message,
            Some(suggestion),
        ));
    }
}

/// Authorization value matching: exact, `prefix*`, `*suffix`, `*`.
fn authz_match(pattern: &str, value: &str) -> bool {
    if pattern == "*" {
        true
    } else if let Some(suffix) = pattern.strip_prefix('*') {
        value.ends_with(suffix)
    } else if let Some(prefix) = pattern.strip_suffix('*') {
        value.starts_with(prefix)
    } else {
        pattern == value
    }
}

fn authz(ix: &Index<'_>, r: &Resource, ap: &AuthorizationPolicy, out: &mut Vec<Finding>) {
    let Some(rules) = &ap.rules else {
        return;
    };
    // (path, value) of every namespace / principal / service account reference.
    let mut namespaces: Vec<(String, &str)> = Vec::new();
    let mut principals: Vec<(String, &str)> = Vec::new();
    let mut accounts: Vec<(String, &str)> = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        for (j, from) in rule.from.iter().flatten().enumerate() {
            let Some(s) = &from.source else {
                continue;
            };
            let base = format!("spec.rules[{i}].from[{j}].source");
            for (field, list, kind) in [
                ("namespaces", &s.namespaces, 0),
                ("notNamespaces", &s.not_namespaces, 0),
                ("principals", &s.principals, 1),
                ("notPrincipals", &s.not_principals, 1),
                ("serviceAccounts", &s.service_accounts, 2),
                ("notServiceAccounts", &s.not_service_accounts, 2),
            ] {
                let sink = match kind {
                    0 => &mut namespaces,
                    1 => &mut principals,
                    _ => &mut accounts,
                };
                sink.extend(
                    list.iter()
                        .enumerate()
                        .map(|(k, v)| (format!("{base}.{field}[{k}]"), v.as_str())),
                );
            }
        }
        for (j, c) in rule.when.iter().flatten().enumerate() {
            let sink = match c.key.as_str() {
                "source.namespace" => &mut namespaces,
                "source.principal" => &mut principals,
                _ => continue,
            };
            let base = format!("spec.rules[{i}].when[{j}]");
            sink.extend(
                c.values
                    .iter()
                    .enumerate()
                    .map(|(k, v)| (format!("{base}.values[{k}]"), v.as_str())),
            );
            sink.extend(
                c.not_values
                    .iter()
                    .enumerate()
                    .map(|(k, v)| (format!("{base}.notValues[{k}]"), v.as_str())),
            );
        }
    }
    let mut known_ns: Vec<&str> = ix.namespaces.iter().copied().collect();
    known_ns.sort();
    for (path, ns) in namespaces {
        if ns == "*" || known_ns.iter().any(|k| authz_match(ns, k)) {
            continue;
        }
        let suggestion = match closest(ns, known_ns.iter().copied()) {
            Some(c) => format!("did you mean `{c}`?"),
            None => format!("namespaces in this config: {}", known_ns.join(", ")),
        };
        out.push(at(
            r,
            &path,
            AUTHZ_UNKNOWN_NAMESPACE,
            Severity::Warning,
            format!("namespace `{ns}` does not exist in this config, so this source never matches"),
            Some(suggestion),
        ));
    }
    if ix.principals.is_empty() {
        return; // no workloads: identities are unknown
    }
    for (path, p) in principals {
        // `<trust-domain>/ns/<ns>/sa/<sa>`; wildcards and other shapes are not judged.
        let parts: Vec<&str> = p.split('/').collect();
        if p.contains('*') || parts.len() != 5 || parts[1] != "ns" || parts[3] != "sa" {
            continue;
        }
        identity(ix, r, &path, p, parts[2], parts[4], out);
    }
    for (path, a) in accounts {
        let (ns, sa) = a.split_once('/').unwrap_or((r.namespace(), a));
        identity(ix, r, &path, a, ns, sa, out);
    }
}

fn identity(
    ix: &Index<'_>,
    r: &Resource,
    path: &str,
    written: &str,
    ns: &str,
    sa: &str,
    out: &mut Vec<Finding>,
) {
    if ix.principals.contains(&(ns, sa)) {
        return;
    }
    let mut in_ns: Vec<&str> = ix
        .principals
        .iter()
        .filter(|(n, _)| *n == ns)
        .map(|(_, s)| *s)
        .collect();
    in_ns.sort();
    let (why, suggestion) = if in_ns.is_empty() {
        (
            format!("no workload runs in namespace `{ns}`"),
            "fix the namespace, or add the WorkloadEntry that carries this identity".to_owned(),
        )
    } else {
        let hint = match closest(sa, in_ns.iter().copied()) {
            Some(c) => format!("did you mean service account `{c}`? "),
            None => String::new(),
        };
        (
            format!("no workload in `{ns}` has service account `{sa}`"),
            format!("{hint}service accounts in `{ns}`: {}", in_ns.join(", ")),
        )
    };
    out.push(at(
        r,
        path,
        AUTHZ_UNKNOWN_PRINCIPAL,
        Severity::Warning,
        format!("identity `{written}` matches no workload ({why}), so this source never matches"),
        Some(suggestion),
    ));
}
