//! Sidecar rules: non-empty spec, workloadSelector, ingress listeners (port,
//! bind, defaultEndpoint, TLS), egress listeners (`ns/host` forms, one
//! catch-all) and outboundTrafficPolicy.

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::common::{host, is_dns_name, is_namespace, port_ok, selector_labels};
use super::gateway::{is_uds, server_tls};
use super::Errs;
use crate::{OutboundTrafficMode, Port, ServerTlsMode, Sidecar};

pub(super) fn validate(sc: &Sidecar, errs: &mut Errs) {
    if sc.ingress.is_empty()
        && sc.egress.is_empty()
        && sc.outbound_traffic_policy.is_none()
        && sc.inbound_connection_pool.is_none()
    {
        errs.key("spec", "a Sidecar must set at least one of ingress, egress, outboundTrafficPolicy or inboundConnectionPool");
    }
    if let Some(ws) = &sc.workload_selector {
        selector_labels(errs, "spec.workloadSelector.labels", &ws.labels);
    }
    let mut ingress_ports = BTreeSet::new();
    for (i, l) in sc.ingress.iter().enumerate() {
        let at = format!("spec.ingress[{i}]");
        match &l.port {
            None => errs.key(
                &at,
                "ingress listener must specify a port (number, protocol, name)",
            ),
            Some(p) => {
                listener_port(errs, &at, p, false);
                if !ingress_ports.insert(p.number) {
                    errs.at(
                        format!("{at}.port.number"),
                        format!("ingress port {} is declared twice", p.number),
                    );
                }
            }
        }
        if let Some(b) = &l.bind {
            if b.starts_with("unix://") {
                errs.at(
                    format!("{at}.bind"),
                    "ingress listeners cannot bind to a unix domain socket; bind to an IP",
                );
            } else if b.parse::<IpAddr>().is_err() {
                errs.at(
                    format!("{at}.bind"),
                    format!("ingress bind {b:?} must be an IP address"),
                );
            }
        }
        if let Some(ep) = &l.default_endpoint {
            default_endpoint(errs, &format!("{at}.defaultEndpoint"), ep);
        }
        if let Some(t) = &l.tls {
            let tat = format!("{at}.tls");
            match t.mode {
                Some(ServerTlsMode::Simple | ServerTlsMode::Mutual) => {
                    if t.credential_name.is_some()
                        || !t.credential_names.is_empty()
                        || !t.tls_certificates.is_empty()
                    {
                        errs.key(&tat, "sidecar ingress TLS must use file certificates (serverCertificate/privateKey), not credentialName(s)/tlsCertificates");
                    } else if t.https_redirect.is_some() || !t.subject_alt_names.is_empty() {
                        errs.key(
                            &tat,
                            "sidecar ingress TLS does not support httpsRedirect or subjectAltNames",
                        );
                    } else {
                        server_tls(errs, &tat, t);
                    }
                }
                Some(m) => errs.at(
                    format!("{tat}.mode"),
                    format!(
                        "sidecar ingress TLS mode {} is not allowed; use SIMPLE or MUTUAL",
                        mode_name(m)
                    ),
                ),
                None => errs.key(
                    &tat,
                    "sidecar ingress TLS mode PASSTHROUGH is not allowed; use SIMPLE or MUTUAL",
                ),
            }
        }
    }
    let mut catch_all = 0;
    let mut egress_ports = BTreeSet::new();
    for (i, l) in sc.egress.iter().enumerate() {
        let at = format!("spec.egress[{i}]");
        let uds = l.bind.as_deref().is_some_and(is_uds);
        match &l.port {
            None => {
                catch_all += 1;
                if catch_all > 1 {
                    errs.key(&at, "only one egress listener without a port (catch-all) is allowed; give this listener a port or merge its hosts");
                }
                // A bind without a port is accepted, as Istio does (it applies bind only
                // with a port); `weft analyze` warns about it (WA0116).
            }
            Some(p) => {
                listener_port(errs, &at, p, uds);
                if !egress_ports.insert(p.number) {
                    errs.at(
                        format!("{at}.port.number"),
                        format!("egress port {} is declared twice", p.number),
                    );
                }
            }
        }
        if let Some(b) = &l.bind {
            if !uds && b.parse::<IpAddr>().is_err() {
                errs.at(
                    format!("{at}.bind"),
                    format!("egress bind {b:?} must be an IP address or unix socket"),
                );
            }
        }
        if l.hosts.is_empty() {
            errs.key(
                format!("{at}.hosts"),
                "egress listener hosts are required (e.g. \"./*\", \"istio-system/*\")",
            );
        }
        for (j, h) in l.hosts.iter().enumerate() {
            egress_host(errs, &format!("{at}.hosts[{j}]"), h);
        }
    }
    if let Some(otp) = &sc.outbound_traffic_policy {
        if let Some(p) = &otp.egress_proxy {
            if otp.mode != Some(OutboundTrafficMode::AllowAny) {
                errs.key("spec.outboundTrafficPolicy.egressProxy", "outboundTrafficPolicy.egressProxy is only valid with mode ALLOW_ANY (mode defaults to REGISTRY_ONLY)");
            }
            host(errs, "spec.outboundTrafficPolicy.egressProxy.host", &p.host);
        }
    }
}

fn mode_name(m: ServerTlsMode) -> &'static str {
    match m {
        ServerTlsMode::Passthrough => "PASSTHROUGH",
        ServerTlsMode::Simple => "SIMPLE",
        ServerTlsMode::Mutual => "MUTUAL",
        ServerTlsMode::AutoPassthrough => "AUTO_PASSTHROUGH",
        ServerTlsMode::IstioMutual => "ISTIO_MUTUAL",
        ServerTlsMode::OptionalMutual => "OPTIONAL_MUTUAL",
    }
}

fn listener_port(errs: &mut Errs, at: &str, p: &Port, uds: bool) {
    if !(port_ok(p.number) || uds && p.number == 0) {
        errs.at(
            format!("{at}.port.number"),
            format!(
                "port {} is invalid: port must be between 1-65535 (0 only for unix socket binds)",
                p.number
            ),
        );
    }
    if p.target_port.is_some() {
        errs.key(
            format!("{at}.port.targetPort"),
            "targetPort is not supported on Sidecar ports",
        );
    }
}

fn default_endpoint(errs: &mut Errs, at: &str, ep: &str) {
    if let Some(path) = ep.strip_prefix("unix://") {
        if path.len() > 1 && (path.starts_with('/') || path.starts_with('@')) {
            return;
        }
    } else if let Some((ip, port)) = ep.rsplit_once(':') {
        let loopback = matches!(ip, "127.0.0.1" | "0.0.0.0" | "[::1]" | "[::]");
        if loopback && port.parse::<u32>().is_ok_and(port_ok) {
            return;
        }
    }
    errs.at(at, format!("ingress defaultEndpoint must be 127.0.0.1/0.0.0.0/[::1]/[::] with port, or unix socket ({ep:?} given)"));
}

/// `namespace/dnsName`: namespace `*`, `.`, `~` or a name (optionally `~`-prefixed
/// to exclude); dnsName `*`, an FQDN or a `*.`-prefixed FQDN.
fn egress_host(errs: &mut Errs, at: &str, h: &str) {
    let Some((ns, name)) = h.split_once('/') else {
        errs.at(at, format!("egress host {h:?} must have the form namespace/dnsName (e.g. \"./{h}\" or \"*/{h}\")"));
        return;
    };
    let ns_bare = if ns == "~" {
        ns
    } else {
        ns.strip_prefix('~').unwrap_or(ns)
    };
    if !matches!(ns_bare, "*" | "." | "~") && !is_namespace(ns_bare) {
        errs.at(at, format!("{h:?}: namespace is not a valid DNS-1123 label: use `*`, `.`, `~` or a lowercase namespace name"));
        return;
    }
    if name == "*" {
        return;
    }
    let bare = name.strip_prefix("*.").unwrap_or(name);
    if bare.contains('*') {
        errs.at(
            at,
            format!(
                "egress host {h:?} uses a partial wildcard: use `*` alone or a leading `*.` label"
            ),
        );
    } else if !is_dns_name(bare) {
        errs.at(
            at,
            format!("egress host {h:?}: {name:?} is not a valid domain name"),
        );
    }
}
