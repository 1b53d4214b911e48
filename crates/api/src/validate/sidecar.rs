//! Sidecar rules, as istio/istio's `ValidateSidecar`,
//! `validateSidecarIngressPortAndBind`, `validateSidecarEgressPortBindAndCaptureMode` and
//! `validateSidecarOutboundTrafficPolicy` (`pkg/config/validation/validation.go`): ingress
//! listeners (port, bind, defaultEndpoint, TLS, connection pool), egress listeners (ports or
//! unix sockets, `namespace/host` forms, one catch-all, last) and outboundTrafficPolicy.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::common::{
    is_dns_label, is_dns_name, is_namespace, port_ok, selector_labels, selector_without_labels,
};
use super::connection_pool::connection_pool;
use super::gateway::{is_http, is_tls, is_uds, server_tls, PROTOCOLS};
use super::virtual_service::destination;
use super::{Errs, WarningKind};
use crate::{
    CaptureMode, IstioEgressListener, IstioIngressListener, OutboundTrafficMode, Port,
    ServerTlsMode, Sidecar,
};

pub(super) fn validate(sc: &Sidecar, ns: &str, errs: &mut Errs) {
    if sc.ingress.is_empty()
        && sc.egress.is_empty()
        && sc.outbound_traffic_policy.is_none()
        && sc.inbound_connection_pool.is_none()
    {
        errs.key("spec", "a Sidecar must set at least one of ingress, egress, outboundTrafficPolicy or inboundConnectionPool");
    }
    if let Some(ws) = &sc.workload_selector {
        selector_labels(errs, "spec.workloadSelector.labels", &ws.labels);
        selector_without_labels(errs, "spec.workloadSelector", &ws.labels);
    }
    let mut ingress_ports = BTreeSet::new();
    for (i, l) in sc.ingress.iter().enumerate() {
        let at = format!("spec.ingress[{i}]");
        if let Some(p) = &l.port {
            if !ingress_ports.insert(p.number) {
                errs.at(
                    format!("{at}.port.number"),
                    format!("ingress port {} is declared twice: ports on IP bound listeners must be unique", p.number),
                );
            }
        }
        ingress(errs, &at, l);
    }
    if let Some(cp) = &sc.inbound_connection_pool {
        connection_pool(errs, "spec.inboundConnectionPool", cp);
    }
    egress(errs, &sc.egress, ns);
    if let Some(otp) = &sc.outbound_traffic_policy {
        if let Some(p) = &otp.egress_proxy {
            let at = "spec.outboundTrafficPolicy.egressProxy";
            if otp.mode != Some(OutboundTrafficMode::AllowAny) {
                errs.key(at, "outboundTrafficPolicy.egressProxy is only valid with mode ALLOW_ANY (mode defaults to REGISTRY_ONLY)");
            } else if !is_dns_name(&p.host) {
                errs.at(format!("{at}.host"), format!("egressProxy host {:?} must be a fully qualified domain name (no wildcards)", p.host));
            } else if p.port.is_none() {
                errs.key(at, "egressProxy port must be set (port.number)");
            } else {
                destination(errs, at, p);
            }
        }
    }
}

fn ingress(errs: &mut Errs, at: &str, l: &IstioIngressListener) {
    let Some(p) = &l.port else {
        errs.key(
            at,
            "ingress listener must specify a port (number, protocol, name)",
        );
        return;
    };
    listener_port(errs, at, p, false);
    if let Some(b) = &l.bind {
        if b.parse::<IpAddr>().is_err() {
            errs.at(
                format!("{at}.bind"),
                format!("ingress bind {b:?} must be an IP address (ingress listeners cannot bind to a unix domain socket)"),
            );
        }
    }
    if let Some(ep) = &l.default_endpoint {
        default_endpoint(errs, &format!("{at}.defaultEndpoint"), ep);
    }
    if let Some(t) = &l.tls {
        let tat = format!("{at}.tls");
        for (what, set) in [
            ("subjectAltNames", !t.subject_alt_names.is_empty()),
            ("httpsRedirect", t.https_redirect == Some(true)),
            ("credentialName", t.credential_name.is_some()),
            ("credentialNames", !t.credential_names.is_empty()),
            ("tlsCertificates", !t.tls_certificates.is_empty()),
        ] {
            if set {
                errs.key(&tat, format!("sidecar ingress TLS does not support {what}: use serverCertificate/privateKey files"));
            }
        }
        match t.mode {
            Some(m @ (ServerTlsMode::IstioMutual | ServerTlsMode::AutoPassthrough)) => errs.at(
                format!("{tat}.mode"),
                format!("sidecar ingress TLS mode {} is not allowed; use SIMPLE or MUTUAL", mode_name(m)),
            ),
            Some(ServerTlsMode::Simple | ServerTlsMode::Mutual) => {}
            m => errs.warn(WarningKind::Istio, format!("{tat}.mode"), format!("sidecar ingress TLS mode {} is accepted by Istio, but the Sidecar reference (IstioIngressListener.tls) says only SIMPLE and MUTUAL are supported; use one of them", mode_name(m.unwrap_or(ServerTlsMode::Passthrough)))),
        }
        if !is_tls(&p.protocol) {
            errs.key(&tat, format!("a {} port cannot have TLS settings (only HTTPS and TLS ports can); set port.protocol to HTTPS or TLS", if p.protocol.is_empty() { "protocol-less" } else { &p.protocol }));
        }
        server_tls(errs, &tat, t);
    }
    if let Some(cp) = &l.connection_pool {
        let cat = format!("{at}.connectionPool");
        connection_pool(errs, &cat, cp);
        if cp.http.is_some() && !is_http(&p.protocol) {
            errs.warn(WarningKind::Istio, format!("{cat}.http"), format!("HTTP connection pool settings are configured for port {} ({:?}) but its protocol is not HTTP ({}); only TCP settings will apply", p.number, p.name, p.protocol));
        }
    }
}

fn egress(errs: &mut Errs, list: &[IstioEgressListener], ns: &str) {
    let mut catch_all = false;
    let mut ports = BTreeSet::new();
    let mut sockets = BTreeSet::new();
    for (i, l) in list.iter().enumerate() {
        let at = format!("spec.egress[{i}]");
        let bind = l.bind.as_deref().unwrap_or_default();
        match &l.port {
            None if catch_all => {
                errs.key(&at, "only one egress listener without a port (catch-all) is allowed; give this listener a port or merge its hosts");
                continue;
            }
            None => {
                if i + 1 != list.len() {
                    errs.key(&at, "the egress listener without a port (catch-all) must be the last listener in the list; move it to the end");
                }
                catch_all = true;
                // A bind without a port is accepted, as Istio does: it applies bind only
                // with a port (a warning, see `bind_without_port`).
                if l.bind.is_some() {
                    errs.warn(WarningKind::Ignored, format!("{at}.bind"), "an egress bind without a port is ignored: Istio applies bind only to a listener with a port (Sidecar reference, IstioEgressListener.bind); add a port or remove bind");
                }
            }
            Some(p) if p.number == 0 => {
                listener_port(errs, &at, p, true);
                if !bind.starts_with("unix://") {
                    errs.key(&at, "an egress port with number 0 must have a unix domain socket bind address (unix:///path or unix://@name)");
                } else if !is_uds(bind) {
                    errs.at(format!("{at}.bind"), format!("egress bind {bind:?} is not an absolute path to a file or an abstract socket"));
                } else if !sockets.insert(bind) {
                    errs.at(format!("{at}.bind"), format!("unix domain socket {bind:?} is used by two egress listeners; they must be unique"));
                }
                if !matches!(
                    l.capture_mode,
                    None | Some(CaptureMode::Default | CaptureMode::None)
                ) {
                    errs.key(
                        format!("{at}.captureMode"),
                        "captureMode must be DEFAULT or NONE for unix domain socket listeners",
                    );
                }
            }
            Some(p) => {
                listener_port(errs, &at, p, false);
                if !bind.is_empty() && bind.parse::<IpAddr>().is_err() {
                    errs.at(format!("{at}.bind"), format!("egress bind {bind:?} must be an IP address (or a unix socket with port number 0)"));
                }
                if !ports.insert(p.number) {
                    errs.at(
                        format!("{at}.port.number"),
                        format!("egress port {} is declared twice: ports on IP bound listeners must be unique", p.number),
                    );
                }
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
        duplicate_hosts(errs, &at, &l.hosts, ns);
    }
}

/// Istio's warnings about one listener's hosts: a host listed twice (or under a
/// `ns/*` already listed), and `*/*` next to other hosts.
fn duplicate_hosts(errs: &mut Errs, at: &str, hosts: &[String], own_ns: &str) {
    let mut by_ns: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (j, h) in hosts.iter().enumerate() {
        let Some((ns, name)) = h.split_once('/') else {
            continue;
        };
        if ns.starts_with('~') {
            continue;
        }
        let ns = if ns == "." { own_ns } else { ns };
        let seen = by_ns.entry(ns).or_default();
        let dup = if name == "*" {
            !seen.is_empty()
        } else {
            seen.contains(name) || seen.contains("*")
        };
        if dup {
            errs.warn(WarningKind::Istio, format!("{at}.hosts[{j}]"), format!("duplicated egress host {h:?}: an earlier host of this listener already selects it; remove it"));
        }
        seen.insert(name);
    }
    if by_ns.get("*").is_some_and(|s| s.contains("*")) && by_ns.len() != 1 {
        errs.warn(
            WarningKind::Istio,
            format!("{at}.hosts"),
            "`*/*` selects every host, so no other hosts can be added: remove the others or `*/*`",
        );
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

/// Istio: a port name, when set, is a DNS-1123 label; the protocol, when set, is one Istio
/// knows; the number is a port (0 only for a unix socket listener); no targetPort.
fn listener_port(errs: &mut Errs, at: &str, p: &Port, uds: bool) {
    if !p.name.is_empty() && !is_dns_label(&p.name) {
        errs.at(
            format!("{at}.port.name"),
            format!(
                "invalid port name {:?}: a port name is a DNS-1123 label (e.g. http-web)",
                p.name
            ),
        );
    }
    if !p.protocol.is_empty() && !PROTOCOLS.contains(&p.protocol.to_ascii_uppercase().as_str()) {
        errs.at(format!("{at}.port.protocol"), format!("unsupported protocol {:?}: use HTTP, HTTPS, HTTP2, GRPC, GRPC-WEB, TCP, TLS, MONGO, REDIS, MYSQL or UDP (or leave it out for sniffing)", p.protocol));
    }
    if !(port_ok(p.number) || uds && p.number == 0) {
        errs.at(
            format!("{at}.port.number"),
            format!(
                "port {} is invalid: port must be between 1-65535 (0 only for unix socket binds)",
                p.number
            ),
        );
    }
    if p.target_port.is_some_and(|t| t > 0) {
        errs.key(
            format!("{at}.port.targetPort"),
            "targetPort has no impact on Sidecars (and is deprecated): remove it",
        );
    }
}

fn default_endpoint(errs: &mut Errs, at: &str, ep: &str) {
    if ep.starts_with("unix://") {
        if is_uds(ep) {
            return;
        }
    } else if let Some((ip, port)) = ep.rsplit_once(':') {
        let loopback = matches!(ip, "" | "127.0.0.1" | "0.0.0.0" | "[::1]" | "[::]");
        if loopback && port.parse::<u32>().is_ok_and(port_ok) {
            return;
        }
    }
    errs.at(at, format!("ingress defaultEndpoint must be of form 127.0.0.1:<port>, 0.0.0.0:<port>, [::1]:<port>, [::]:<port>, :<port> or unix://<path> ({ep:?} given)"));
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
    } else if !name.contains('.') {
        errs.at(at, format!("egress host {h:?}: short names (non FQDN) are not allowed; write the FQDN, e.g. {ns}/{name}.{ns_hint}.svc.cluster.local", ns_hint = if matches!(ns, "." | "*" | "~") { "<namespace>" } else { ns }));
    }
}
