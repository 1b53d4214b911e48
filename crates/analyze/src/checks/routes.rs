//! VirtualService references: gateways that do not exist (WA0101), destination hosts
//! outside the registry (WA0102), subsets no DestinationRule defines (WA0103), weighted
//! destinations that never get traffic (WA0111), and delegates that do not exist or
//! cannot be one (WA0118).

use weft_api::{Destination, Resource, Spec, VirtualService};
use weft_model::registry::fqdn;

use super::{at, gateway_ref, short_host};
use crate::finding::*;
use crate::index::Index;
use crate::similar::closest;

/// Suggestions scan every known host or gateway; stop offering them after this many misses
/// so a config full of errors stays linear.
const MAX_HOST_SUGGESTIONS: usize = 64;

pub(super) fn check(ix: &Index<'_>, out: &mut Vec<Finding>) {
    let mut suggestions_left = MAX_HOST_SUGGESTIONS;
    for r in ix.res {
        let Spec::VirtualService(vs) = &r.spec else {
            continue;
        };
        gateways(ix, r, vs, &mut suggestions_left, out);
        for (path, d) in destinations(vs) {
            destination(ix, r, &path, d, &mut suggestions_left, out);
        }
        weights(r, vs, out);
        delegates(ix, r, vs, out);
    }
}

/// Delegating routes whose delegate is missing or has hosts (Istio drops such a route).
fn delegates(ix: &Index<'_>, r: &Resource, vs: &VirtualService, out: &mut Vec<Finding>) {
    for (i, h) in vs.http.iter().enumerate() {
        let Some(d) = &h.delegate else { continue };
        let Some(name) = d.name.as_deref() else {
            continue;
        };
        let ns = d.namespace.as_deref().unwrap_or(r.namespace());
        let target = ix.res.iter().find_map(|t| match &t.spec {
            Spec::VirtualService(dv) if t.namespace() == ns && t.name() == name => Some(dv),
            _ => None,
        });
        let problem = match target {
            None => format!("delegate VirtualService `{ns}/{name}` does not exist"),
            Some(dv) if !dv.hosts.is_empty() => format!(
                "delegate VirtualService `{ns}/{name}` has hosts, so it cannot be a delegate"
            ),
            Some(_) => continue,
        };
        out.push(at(
            r,
            &format!("spec.http[{i}].delegate"),
            UNKNOWN_DELEGATE,
            Severity::Error,
            format!("{problem}: this route is dropped"),
            Some("create the delegate (a VirtualService without hosts and gateways) or fix the name and namespace".into()),
        ));
    }
}

fn gateways(
    ix: &Index<'_>,
    r: &Resource,
    vs: &VirtualService,
    suggestions_left: &mut usize,
    out: &mut Vec<Finding>,
) {
    let mut refs: Vec<(String, &str)> = vs
        .gateways
        .iter()
        .enumerate()
        .map(|(i, g)| (format!("spec.gateways[{i}]"), g.as_str()))
        .collect();
    for (i, h) in vs.http.iter().enumerate() {
        for (j, m) in h.r#match.iter().enumerate() {
            for (k, g) in m.gateways.iter().enumerate() {
                refs.push((format!("spec.http[{i}].match[{j}].gateways[{k}]"), g));
            }
        }
    }
    for (path, reference) in refs {
        let Some((ns, name)) = gateway_ref(reference, r.namespace()) else {
            continue;
        };
        if ix.has_gateway(&ns, &name) {
            continue;
        }
        let known = if *suggestions_left > 0 {
            *suggestions_left -= 1;
            ix.gateway_names()
        } else {
            Vec::new()
        };
        let wanted = format!("{ns}/{name}");
        let suggestion = match closest(&wanted, known.iter().map(String::as_str)) {
            Some(c) => {
                let c = c.strip_prefix(&format!("{}/", r.namespace())).unwrap_or(c);
                format!("did you mean `{c}`? (a bare name refers to the VirtualService's namespace; use `mesh` for sidecars)")
            }
            None if known.is_empty() => format!(
                "define a Gateway `{name}` in namespace `{ns}`, or fix the reference (`<namespace>/<name>`, or `mesh` for sidecars)"
            ),
            None => format!(
                "define a Gateway `{name}` in namespace `{ns}`, or reference one of: {}",
                list(&known)
            ),
        };
        out.push(at(
            r,
            &path,
            UNKNOWN_GATEWAY,
            Severity::Error,
            format!("gateway `{reference}` ({wanted}) does not exist"),
            Some(suggestion),
        ));
    }
}

/// Every destination of a VirtualService with the path of its `Destination`.
fn destinations(vs: &VirtualService) -> Vec<(String, &Destination)> {
    let mut v = Vec::new();
    for (i, h) in vs.http.iter().enumerate() {
        for (j, d) in h.route.iter().enumerate() {
            v.push((
                format!("spec.http[{i}].route[{j}].destination"),
                &d.destination,
            ));
        }
        if let Some(m) = &h.mirror {
            v.push((format!("spec.http[{i}].mirror"), m));
        }
        for (j, m) in h.mirrors.iter().enumerate() {
            v.push((
                format!("spec.http[{i}].mirrors[{j}].destination"),
                &m.destination,
            ));
        }
    }
    for (i, t) in vs.tls.iter().enumerate() {
        for (j, d) in t.route.iter().enumerate() {
            v.push((
                format!("spec.tls[{i}].route[{j}].destination"),
                &d.destination,
            ));
        }
    }
    for (i, t) in vs.tcp.iter().enumerate() {
        for (j, d) in t.route.iter().enumerate() {
            v.push((
                format!("spec.tcp[{i}].route[{j}].destination"),
                &d.destination,
            ));
        }
    }
    v
}

fn destination(
    ix: &Index<'_>,
    r: &Resource,
    path: &str,
    d: &Destination,
    suggestions_left: &mut usize,
    out: &mut Vec<Finding>,
) {
    if d.host.is_empty() || d.host.contains('*') {
        return; // empty: a validation error; wildcard: cannot be resolved statically
    }
    let ns = r.namespace();
    let host = fqdn(&d.host, ns);
    let known_host = !ix.services_for(&host, Some(ns)).is_empty();
    if !known_host {
        let hidden = ix.services_for(&host, None);
        let (message, suggestion) = if let Some(&(se, _)) = hidden.first() {
            let se = &ix.res[se];
            (
                format!("destination host `{}` is defined by ServiceEntry {}/{} but not exported to namespace {ns}", d.host, se.namespace(), se.name()),
                format!("add `{ns}` (or `*`) to the ServiceEntry's exportTo"),
            )
        } else {
            let mut suggestion = None;
            if *suggestions_left > 0 {
                *suggestions_left -= 1;
                let hosts: Vec<&str> = ix.se_hosts().map(|(h, _)| h.as_str()).collect();
                suggestion =
                    closest(&host, hosts).map(|c| format!("did you mean `{}`?", short_host(c, ns)));
            }
            (
                format!("destination host {} matches no ServiceEntry host; traffic to it fails", shown(&d.host, &host)),
                suggestion.unwrap_or_else(|| format!("add a ServiceEntry with host `{host}` (weft's registry is ServiceEntry + WorkloadEntry), or fix the host")),
            )
        };
        out.push(at(
            r,
            &format!("{path}.host"),
            UNKNOWN_HOST,
            Severity::Error,
            message,
            Some(suggestion),
        ));
    }
    let Some(subset) = &d.subset else {
        return;
    };
    let drs = ix.drs_for(&host, ns);
    if drs.is_empty() {
        if known_host {
            out.push(at(
                r,
                &format!("{path}.subset"),
                UNKNOWN_SUBSET,
                Severity::Error,
                format!("subset `{subset}` of `{}` is used, but no DestinationRule for {host} is visible in namespace {ns}", d.host),
                Some(format!("add a DestinationRule with `host: {}` defining subset `{subset}`", d.host)),
            ));
        }
        return;
    }
    let mut defined: Vec<&str> = Vec::new();
    for &i in &drs {
        if let Spec::DestinationRule(dr) = &ix.res[i].spec {
            defined.extend(dr.subsets.iter().map(|s| s.name.as_str()));
        }
    }
    if defined.contains(&subset.as_str()) {
        return;
    }
    let dr_names: Vec<String> = drs
        .iter()
        .map(|&i| format!("{}/{}", ix.res[i].namespace(), ix.res[i].name()))
        .collect();
    let suggestion = if defined.is_empty() {
        format!(
            "DestinationRule {} defines no subsets; add subset `{subset}` to it",
            list(&dr_names)
        )
    } else {
        let defined_list: Vec<String> = defined.iter().map(|s| s.to_string()).collect();
        match closest(subset, defined.iter().copied()) {
            Some(c) if defined.len() == 1 || c.len() > 2 => format!(
                "did you mean `{c}`? defined subsets: {}",
                list(&defined_list)
            ),
            _ => format!(
                "defined subsets: {} (DestinationRule {}); add `{subset}` there or use one of them",
                list(&defined_list),
                list(&dr_names)
            ),
        }
    };
    out.push(at(
        r,
        &format!("{path}.subset"),
        UNKNOWN_SUBSET,
        Severity::Error,
        format!(
            "subset `{subset}` is not defined by any DestinationRule for `{}`",
            d.host
        ),
        Some(suggestion),
    ));
}

/// A destination with its (optional) weight.
type Weighted<'a> = (&'a Destination, Option<i32>);

fn weights(r: &Resource, vs: &VirtualService, out: &mut Vec<Finding>) {
    let mut groups: Vec<(String, Vec<Weighted<'_>>)> = Vec::new();
    for (i, h) in vs.http.iter().enumerate() {
        let ds = h.route.iter().map(|d| (&d.destination, d.weight)).collect();
        groups.push((format!("spec.http[{i}]"), ds));
    }
    for (i, t) in vs.tls.iter().enumerate() {
        let ds = t.route.iter().map(|d| (&d.destination, d.weight)).collect();
        groups.push((format!("spec.tls[{i}]"), ds));
    }
    for (i, t) in vs.tcp.iter().enumerate() {
        let ds = t.route.iter().map(|d| (&d.destination, d.weight)).collect();
        groups.push((format!("spec.tcp[{i}]"), ds));
    }
    for (route, ds) in groups {
        if ds.len() < 2 {
            continue; // a single destination gets all traffic whatever its weight
        }
        let total: i64 = ds
            .iter()
            .map(|(_, w)| i64::from(w.unwrap_or(0).max(0)))
            .sum();
        if total == 0 {
            continue; // all zero: a validation error already
        }
        for (j, (d, w)) in ds.iter().enumerate() {
            if w.unwrap_or(0) != 0 {
                continue;
            }
            let name = match &d.subset {
                Some(s) => format!("`{}` subset `{s}`", d.host),
                None => format!("`{}`", d.host),
            };
            let why = if w.is_none() {
                "has no weight (0)"
            } else {
                "has weight 0"
            };
            out.push(at(
                r,
                &format!("{route}.route[{j}].weight"),
                DEAD_DESTINATION,
                Severity::Warning,
                format!("destination {name} {why} while the others sum to {total}: it never receives traffic"),
                Some("give it a weight above 0 (weights are relative), or remove the destination".into()),
            ));
        }
    }
}

/// `` `host` `` as written, plus its expansion when that differs.
pub(crate) fn shown(written: &str, full: &str) -> String {
    if written == full {
        format!("`{written}`")
    } else {
        format!("`{written}` ({full})")
    }
}

/// `a, b, c` (at most 8, then `…`).
pub(crate) fn list(items: &[String]) -> String {
    let mut s = items
        .iter()
        .take(8)
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > 8 {
        s.push_str(&format!(", … ({} in all)", items.len()));
    }
    s
}
