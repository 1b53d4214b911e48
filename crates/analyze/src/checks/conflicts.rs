//! Definitions that collide: two VirtualServices for one host on one gateway (WA0105)
//! and one host in two ServiceEntries visible to the same namespace (WA0110).

use std::collections::HashMap;

use weft_api::Spec;
use weft_model::registry::fqdn;

use super::{at, gateway_ref, origin, vs_gateways};
use crate::finding::*;
use crate::index::{exports_overlap, Index};

pub(super) fn check(ix: &Index<'_>, out: &mut Vec<Finding>) {
    virtual_services(ix, out);
    service_entries(ix, out);
}

fn virtual_services(ix: &Index<'_>, out: &mut Vec<Finding>) {
    // (gateway `ns/name` or `mesh`, fully qualified host) -> [(resource, host index)]
    let mut by_key: HashMap<(String, String), Vec<(usize, usize)>> = HashMap::new();
    let mut order: Vec<(String, String)> = Vec::new();
    for (i, r) in ix.res.iter().enumerate() {
        let Spec::VirtualService(vs) = &r.spec else {
            continue;
        };
        let ns = r.namespace();
        let mut gws: Vec<String> = vs_gateways(vs)
            .iter()
            .map(|g| match gateway_ref(g, ns) {
                Some((gns, name)) => format!("{gns}/{name}"),
                None => "mesh".to_owned(),
            })
            .collect();
        gws.sort();
        gws.dedup();
        for g in gws {
            for (h, host) in vs.hosts.iter().enumerate() {
                let key = (g.clone(), fqdn(host, ns));
                let entry = by_key.entry(key.clone()).or_default();
                if entry.iter().any(|&(other, _)| other == i) {
                    continue; // the same host twice in one VirtualService: validation's job
                }
                if entry.is_empty() {
                    order.push(key);
                }
                entry.push((i, h));
            }
        }
    }
    for key in order {
        let group = &by_key[&key];
        for (n, &(i, h)) in group.iter().enumerate().skip(1) {
            let (r, vs) = vs_of(ix, i);
            let earlier = group[..n].iter().find(|&&(j, _)| {
                let (rj, vsj) = vs_of(ix, j);
                exports_overlap(
                    (&vs.export_to, r.namespace()),
                    (&vsj.export_to, rj.namespace()),
                )
            });
            let Some(&(j, _)) = earlier else {
                continue;
            };
            let (gateway, host) = &key;
            let (severity, effect) = if gateway == "mesh" {
                (
                    Severity::Error,
                    "sidecars use only one of them, so the other's routes are ignored",
                )
            } else {
                (Severity::Warning, "their routes are merged in an unspecified order, so which route matches first is not defined")
            };
            out.push(at(
                r,
                &format!("spec.hosts[{h}]"),
                CONFLICTING_VS,
                severity,
                format!(
                    "host `{host}` on gateway `{gateway}` is also routed by {}: {effect}",
                    origin(&ix.res[j])
                ),
                Some("merge the routes into one VirtualService per host and gateway".into()),
            ));
        }
    }
}

fn vs_of<'a>(ix: &Index<'a>, i: usize) -> (&'a weft_api::Resource, &'a weft_api::VirtualService) {
    let r = &ix.res[i];
    match &r.spec {
        Spec::VirtualService(vs) => (r, vs),
        _ => unreachable!("index {i} is not a VirtualService"),
    }
}

fn service_entries(ix: &Index<'_>, out: &mut Vec<Finding>) {
    let mut groups: Vec<(&String, &Vec<(usize, usize)>)> =
        ix.se_hosts().filter(|(_, v)| v.len() > 1).collect();
    groups.sort();
    for (host, entries) in groups {
        let mut seen: Vec<usize> = Vec::new();
        for &(i, h) in entries {
            if seen.contains(&i) {
                continue;
            }
            let r = &ix.res[i];
            let earlier = seen.iter().copied().find(|&j| {
                let rj = &ix.res[j];
                exports_overlap(
                    (&ix.se(i).export_to, r.namespace()),
                    (&ix.se(j).export_to, rj.namespace()),
                )
            });
            seen.push(i);
            let Some(j) = earlier else {
                continue;
            };
            let host = if host.starts_with('.') {
                format!("*{host}")
            } else {
                host.clone()
            };
            out.push(at(
                r,
                &format!("spec.hosts[{h}]"),
                SE_HOST_COLLISION,
                Severity::Warning,
                format!("host `{host}` is also defined by {} and both are visible to the same namespace: their ports and endpoints are merged or one is ignored", origin(&ix.res[j])),
                Some("keep one ServiceEntry per host, or separate them with exportTo".into()),
            ));
        }
    }
}
