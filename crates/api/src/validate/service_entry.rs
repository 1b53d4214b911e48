//! ServiceEntry rules, as istio/istio's `ValidateServiceEntry`
//! (`pkg/config/validation/validation.go`) and the ServiceEntry CRD's CEL rules: hosts,
//! addresses, ports, resolution combinations (including several hosts on non-HTTP/TLS
//! ports), endpoints and workloadSelector.

use std::collections::BTreeSet;

use super::common::{
    domain_host, export_to, is_dns_label, is_ip_or_cidr, max_items, port, selector_labels,
    selector_without_labels,
};
use super::gateway::{is_http, is_tls, PROTOCOLS};
use super::workload_entry::{entry, Address};
use super::{Errs, WarningKind};
use crate::{Resolution, Resource, ServiceEntry};

pub(super) fn validate(r: &Resource, se: &ServiceEntry, errs: &mut Errs) {
    let resolution = se.resolution.unwrap_or(Resolution::None);
    if se.hosts.is_empty() {
        errs.key("spec", "spec.hosts: Required value: list at least one host");
    }
    for (path, len, max) in [
        ("spec.hosts", se.hosts.len(), 256),
        ("spec.addresses", se.addresses.len(), 256),
        ("spec.ports", se.ports.len(), 256),
        ("spec.endpoints", se.endpoints.len(), 4096),
    ] {
        max_items(errs, path, len, max);
    }
    for (i, h) in se.hosts.iter().enumerate() {
        let at = format!("spec.hosts[{i}]");
        if h == "*" {
            errs.at(
                &at,
                "hostname cannot be wildcard `*`: use a domain such as *.example.com",
            );
        } else {
            domain_host(errs, &at, h);
            let partial = h.contains('*') && !h.starts_with("*.");
            if partial && resolution != Resolution::DynamicDns {
                errs.warn(WarningKind::Istio, &at, format!("partial wildcard {h:?} not allowed: only a whole leading `*.` label is a wildcard for this resolution; write e.g. *.example.com"));
            }
        }
    }
    let wildcard_host = se.hosts.iter().any(|h| h.starts_with('*'));
    for (i, a) in se.addresses.iter().enumerate() {
        let at = format!("spec.addresses[{i}]");
        if !is_ip_or_cidr(a) {
            errs.at(
                &at,
                format!("address {a:?} must be an IP address or CIDR range"),
            );
        } else if a.contains('/') && !matches!(resolution, Resolution::None | Resolution::Static) {
            errs.at(
                &at,
                "CIDR addresses are allowed only for NONE/STATIC resolution types",
            );
        }
    }
    let mut numbers = BTreeSet::new();
    let mut names = BTreeSet::new();
    for (i, p) in se.ports.iter().enumerate() {
        let at = format!("spec.ports[{i}]");
        port(errs, &format!("{at}.number"), p.number);
        if !numbers.insert(p.number) {
            errs.at(
                format!("{at}.number"),
                format!("port number cannot be duplicated ({} used twice)", p.number),
            );
        }
        if p.name.is_empty() {
            errs.key(&at, "port name is required");
        } else if !is_dns_label(&p.name) {
            errs.at(
                format!("{at}.name"),
                format!(
                    "invalid port name {:?}: a port name is a DNS-1123 label (e.g. http-api)",
                    p.name
                ),
            );
        } else if !names.insert(p.name.as_str()) {
            errs.at(
                format!("{at}.name"),
                format!(
                    "spec.ports[{i}].name: Duplicate value: {:?}; port names must be unique",
                    p.name
                ),
            );
        }
        if let Some(proto) = &p.protocol {
            if !PROTOCOLS.contains(&proto.to_ascii_uppercase().as_str()) {
                errs.at(
                    format!("{at}.protocol"),
                    format!("unknown port protocol {proto:?}"),
                );
            }
        }
        if let Some(tp) = p.target_port {
            port(errs, &format!("{at}.targetPort"), tp);
        }
    }
    if se.workload_selector.is_some() && !se.endpoints.is_empty() {
        errs.key(
            "spec.workloadSelector",
            "only one of WorkloadSelector or Endpoints can be set",
        );
    }
    if let Some(ws) = &se.workload_selector {
        selector_labels(errs, "spec.workloadSelector.labels", &ws.labels);
        selector_without_labels(errs, "spec.workloadSelector", &ws.labels);
        if resolution == Resolution::None {
            errs.warn(WarningKind::Istio, "spec.workloadSelector", "workloadSelector should not be set when resolution mode is NONE: the selected workloads are not used as endpoints; use resolution STATIC");
        }
    }
    match resolution {
        Resolution::None if !se.endpoints.is_empty() => {
            errs.key(
                "spec.endpoints",
                "NONE mode cannot set endpoints: use resolution STATIC or DNS",
            );
        }
        Resolution::DnsRoundRobin if se.endpoints.len() > 1 => {
            errs.key(
                "spec.endpoints",
                "DNS_ROUND_ROBIN mode cannot have multiple endpoints; use DNS",
            );
        }
        Resolution::DynamicDns => {
            dynamic_dns_ports(errs, se);
            if !se.hosts.iter().all(|h| h.starts_with('*')) {
                errs.key(
                    "spec.resolution",
                    "resolution DYNAMIC_DNS requires wildcard hosts (*.example.com)",
                );
            }
            if !se.addresses.is_empty() || !se.endpoints.is_empty() {
                errs.key(
                    "spec.resolution",
                    "resolution DYNAMIC_DNS cannot have addresses or endpoints",
                );
            }
        }
        Resolution::Dns | Resolution::DnsRoundRobin if se.endpoints.is_empty() && wildcard_host => {
            errs.key("spec.resolution", "resolution DNS without endpoints resolves the hosts, so they must be FQDNs without wildcards");
        }
        _ => {}
    }
    multiple_hosts_need_l7(errs, se, resolution);
    let port_names: BTreeSet<&str> = se.ports.iter().map(|p| p.name.as_str()).collect();
    for (i, ep) in se.endpoints.iter().enumerate() {
        let at = format!("spec.endpoints[{i}]");
        let kind = entry(errs, &at, ep);
        let a = ep.address.as_deref().unwrap_or_default();
        if resolution == Resolution::Static && kind == Some(Address::Dns) {
            errs.at(format!("{at}.address"), format!("resolution STATIC requires IP (or unix socket) endpoint addresses; {a:?} given"));
        }
        let dns = matches!(resolution, Resolution::Dns | Resolution::DnsRoundRobin);
        if dns && kind == Some(Address::Uds) {
            errs.at(format!("{at}.address"), format!("endpoint address {a:?} is not a valid FQDN or an IP address (resolution {} resolves names; use STATIC for a unix socket)", resolution_name(resolution)));
        }
        super::common::k8s_labels(errs, &format!("{at}.labels"), &ep.labels);
        if kind == Some(Address::Uds) && se.ports.len() != 1 {
            errs.key(&at, "a unix socket endpoint needs exactly one service port");
        }
        for name in ep.ports.keys() {
            if !port_names.contains(name.as_str()) {
                errs.key(
                    format!("{at}.ports.{name}"),
                    format!("endpoint port name {name:?} is not defined in spec.ports"),
                );
            }
        }
    }
    export_to(errs, &se.export_to, r.namespace(), true);
}

/// DYNAMIC_DNS (Envoy's dynamic forward proxy) serves HTTP, TLS, GRPC and HTTP2 ports only.
fn dynamic_dns_ports(errs: &mut Errs, se: &ServiceEntry) {
    for (i, p) in se.ports.iter().enumerate() {
        let proto = p
            .protocol
            .as_deref()
            .unwrap_or_default()
            .to_ascii_uppercase();
        if !matches!(proto.as_str(), "HTTP" | "TLS" | "GRPC" | "HTTP2") {
            errs.at(format!("spec.ports[{i}]"), format!("only HTTP, TLS, GRPC and HTTP2 protocols are supported for resolution type DYNAMIC_DNS (port {} has {})", p.number, if proto.is_empty() { "no protocol" } else { &proto }));
        }
    }
}

/// Istio: with several hosts and a resolution other than NONE, every port must
/// be HTTP-like or TLS, since plain TCP cannot tell the hosts apart (HTTP uses
/// the authority, TLS the SNI). Istio reports the first offending port only.
fn multiple_hosts_need_l7(errs: &mut Errs, se: &ServiceEntry, resolution: Resolution) {
    if resolution == Resolution::None || se.hosts.len() < 2 {
        return;
    }
    let distinguishes = |p: &str| is_http(p) || is_tls(p);
    let Some((i, p)) = se
        .ports
        .iter()
        .enumerate()
        .find(|(_, p)| !p.protocol.as_deref().is_some_and(distinguishes))
    else {
        return;
    };
    let (what, at_key) = match &p.protocol {
        Some(proto) => (format!("protocol {proto}"), false),
        None => ("no protocol (plain TCP)".to_owned(), true),
    };
    let msg = format!(
        "multiple hosts provided with non-HTTP, non-TLS ports: port {} has {what}, and with {} hosts and resolution {} a TCP connection cannot be attributed to one host; use one host per ServiceEntry, an HTTP/TLS protocol, or resolution NONE",
        p.number,
        se.hosts.len(),
        resolution_name(resolution)
    );
    if at_key {
        errs.key(format!("spec.ports[{i}]"), msg);
    } else {
        errs.at(format!("spec.ports[{i}].protocol"), msg);
    }
}

fn resolution_name(r: Resolution) -> &'static str {
    match r {
        Resolution::None => "NONE",
        Resolution::Static => "STATIC",
        Resolution::Dns => "DNS",
        Resolution::DnsRoundRobin => "DNS_ROUND_ROBIN",
        Resolution::DynamicDns => "DYNAMIC_DNS",
    }
}
