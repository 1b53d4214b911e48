//! VirtualService TLS and TCP routes: SNI matches (which must fall within the
//! VirtualService hosts), subnets, L4 match attributes and destinations.
//! (`sourceLabels` on a gateway-only match is accepted, as istiod does; it never matches there.)
//! Istio: `validateTLSRoute`, `validateTLSMatch`, `validateSniHost`, `validateTCPRoute`,
//! `validateTCPMatch` (`pkg/config/validation/validation.go`).

use std::net::IpAddr;

use super::common::{host, host_within, ip_or_cidr, is_auto_passthrough_sni, is_wildcard_domain};
use super::virtual_service::{l4_common, routes};
use super::{Errs, WarningKind};
use crate::{TlsRoute, VirtualService};

pub(super) fn validate(errs: &mut Errs, vs: &VirtualService) {
    for (i, t) in vs.tls.iter().enumerate() {
        tls_route(errs, &format!("spec.tls[{i}]"), t, vs);
    }
    for (i, t) in vs.tcp.iter().enumerate() {
        let at = format!("spec.tcp[{i}]");
        for (j, m) in t.r#match.iter().enumerate() {
            let mat = format!("{at}.match[{j}]");
            subnets(errs, &mat, &m.destination_subnets);
            if let Some(s) = &m.source_subnet {
                ip_or_cidr(errs, &format!("{mat}.sourceSubnet"), s, "source subnet");
            }
            l4_common(
                errs,
                &mat,
                m.port,
                (&m.gateways, &m.source_labels),
                m.source_namespace.as_deref(),
            );
        }
        routes(errs, &at, "TCP", &t.route);
    }
}

fn tls_route(errs: &mut Errs, at: &str, t: &TlsRoute, vs: &VirtualService) {
    if t.r#match.is_empty() {
        errs.key(
            format!("{at}.match"),
            "TLS route must have at least one match (with sniHosts)",
        );
    }
    for (j, m) in t.r#match.iter().enumerate() {
        let mat = format!("{at}.match[{j}]");
        if m.sni_hosts.is_empty() {
            errs.key(
                format!("{mat}.sniHosts"),
                "TLS match must have at least one sniHost",
            );
        }
        for (k, s) in m.sni_hosts.iter().enumerate() {
            let sat = format!("{mat}.sniHosts[{k}]");
            // Istio's `isGateway`: a VirtualService not bound to `mesh` (also with no
            // gateways) takes the AUTO_PASSTHROUGH SNI form.
            let gateway = !vs.gateways.iter().any(|g| g == "mesh");
            if gateway && is_auto_passthrough_sni(s) {
                sni_within_hosts(errs, &sat, s, &vs.hosts);
                continue;
            }
            host(errs, &sat, s);
            sni_within_hosts(errs, &sat, s, &vs.hosts);
        }
        subnets(errs, &mat, &m.destination_subnets);
        l4_common(
            errs,
            &mat,
            m.port,
            (&m.gateways, &m.source_labels),
            m.source_namespace.as_deref(),
        );
    }
    routes(errs, at, "TLS", &t.route);
}

fn subnets(errs: &mut Errs, mat: &str, list: &[String]) {
    for (k, c) in list.iter().enumerate() {
        ip_or_cidr(
            errs,
            &format!("{mat}.destinationSubnets[{k}]"),
            c,
            "destination subnet",
        );
    }
}

/// Istio's `validateSniHost`: a well-formed SNI host must be a subset of one
/// of the VirtualService hosts; an IP "SNI" value only draws a warning.
fn sni_within_hosts(errs: &mut Errs, at: &str, sni: &str, hosts: &[String]) {
    if sni.parse::<IpAddr>().is_ok() {
        errs.warn(WarningKind::Istio, at, format!("using an IP address ({sni:?}) goes against the SNI spec and most clients do not support this: match a host name"));
        return;
    }
    if sni.is_empty() || !(is_wildcard_domain(sni) || is_auto_passthrough_sni(sni)) {
        return;
    }
    if hosts.iter().any(|h| host_within(sni, h)) {
        return;
    }
    errs.at(
        at,
        format!(
            "SNI host {sni:?} is not a compatible subset of any of the VirtualService hosts [{}]: use one of those hosts (or a name under a wildcard host), or add it to spec.hosts",
            hosts.join(", ")
        ),
    );
}
