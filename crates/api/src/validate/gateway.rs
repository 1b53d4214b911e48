//! Gateway rules: servers, ports (protocols, unique names), `[ns/]host` forms,
//! binds, the protocol/TLS pairing and certificate-source rules, and the TLS
//! protocol-version range.

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::common::{is_dns_name, is_namespace, port_ok, selector_labels};
use super::Errs;
use crate::{Gateway, ServerTlsMode, ServerTlsSettings, TlsProtocol};

const PROTOCOLS: &[&str] = &[
    "HTTP", "HTTPS", "GRPC", "GRPC-WEB", "HTTP2", "MONGO", "TCP", "TLS", "REDIS", "MYSQL",
];

/// `unix:///abs/path` or `unix://@abstract`.
pub(super) fn is_uds(s: &str) -> bool {
    s.strip_prefix("unix://")
        .is_some_and(|p| (p.starts_with('/') && p.len() > 1) || (p.starts_with('@') && p.len() > 1))
}

pub(super) fn validate(gw: &Gateway, errs: &mut Errs) {
    selector_labels(errs, "spec.selector", &gw.selector);
    if gw.servers.is_empty() {
        errs.key("spec.servers", "a Gateway needs at least one server");
    }
    let mut port_names = BTreeSet::new();
    let mut server_names = BTreeSet::new();
    for (i, s) in gw.servers.iter().enumerate() {
        let at = format!("spec.servers[{i}]");
        let uds = s.bind.as_deref().is_some_and(is_uds);
        if let Some(b) = &s.bind {
            if !uds && b.parse::<IpAddr>().is_err() {
                errs.at(format!("{at}.bind"), format!("server bind {b:?} is not a valid IP address or unix socket (unix:///path or unix://@name)"));
            }
        }
        let protocol = s
            .port
            .as_ref()
            .map(|p| p.protocol.to_ascii_uppercase())
            .unwrap_or_default();
        match &s.port {
            None => errs.key(&at, "server port is required (number, protocol and name)"),
            Some(p) => {
                if uds && p.number != 0 {
                    errs.at(
                        format!("{at}.port.number"),
                        "a server bound to a unix socket must use port number 0",
                    );
                } else if !uds && !port_ok(p.number) {
                    errs.at(
                        format!("{at}.port.number"),
                        format!("port {} is invalid: port must be between 1-65535", p.number),
                    );
                }
                if p.protocol.is_empty() {
                    errs.key(format!("{at}.port"), "server port protocol is required (HTTP, HTTPS, GRPC, HTTP2, MONGO, TCP or TLS)");
                } else if !PROTOCOLS.contains(&protocol.as_str()) {
                    errs.at(format!("{at}.port.protocol"), format!("unknown server protocol {:?}; use HTTP, HTTPS, GRPC, GRPC-WEB, HTTP2, MONGO, TCP or TLS", p.protocol));
                }
                if !p.name.is_empty() && !port_names.insert(p.name.clone()) {
                    errs.at(
                        format!("{at}.port.name"),
                        format!(
                            "server port names must be unique within a Gateway ({:?} used twice)",
                            p.name
                        ),
                    );
                }
            }
        }
        if let Some(n) = &s.name {
            if !server_names.insert(n.clone()) {
                errs.at(
                    format!("{at}.name"),
                    format!("server name {n:?} is used twice; server names must be unique"),
                );
            }
        }
        if s.hosts.is_empty() {
            errs.key(
                format!("{at}.hosts"),
                "at least one host is required (e.g. \"*\" or \"bookinfo.example.com\")",
            );
        }
        for (j, h) in s.hosts.iter().enumerate() {
            server_host(errs, &format!("{at}.hosts[{j}]"), h);
        }
        let https_redirect_only = s
            .tls
            .as_ref()
            .is_some_and(|t| t.https_redirect == Some(true) && t.mode.is_none());
        match (&s.tls, protocol.as_str()) {
            (None, "HTTPS" | "TLS") => errs.key(&at, format!("{protocol} server must have TLS settings (tls.mode and a certificate source)")),
            (Some(_), "HTTP") if !https_redirect_only => errs.key(
                format!("{at}.tls"),
                "a plain HTTP server may only carry tls.httpsRedirect; use protocol HTTPS to terminate TLS",
            ),
            (Some(t), _) if !https_redirect_only => server_tls(errs, &format!("{at}.tls"), t),
            _ => {}
        }
    }
}

/// `[namespace/]dnsName` with namespace `*`, `.` or a name; `dnsName` `*`, an FQDN,
/// or `*.`-prefixed FQDN.
fn server_host(errs: &mut Errs, at: &str, h: &str) {
    let (ns, name) = match h.split_once('/') {
        Some((ns, name)) => (Some(ns), name),
        None => (None, h),
    };
    if let Some(ns) = ns {
        if ns != "*" && ns != "." && !is_namespace(ns) {
            errs.at(at, format!("invalid namespace value {ns:?} in gateway server host {h:?}: use `*`, `.` or a namespace name"));
            return;
        }
    }
    if name == "*" {
        return;
    }
    let bare = name.strip_prefix("*.").unwrap_or(name);
    if bare.contains('*') {
        errs.at(at, format!("partial wildcard {name:?} not allowed in gateway hosts: use `*` alone or a leading `*.` label"));
    } else if !is_dns_name(bare) && bare.parse::<IpAddr>().is_err() {
        errs.at(
            at,
            format!("gateway server host {name:?} is not a valid domain name"),
        );
    } else if !name.contains('.') && bare.parse::<IpAddr>().is_err() {
        errs.at(at, format!("gateway server hosts must be FQDNs (short name {name:?} rejected); write e.g. {name}.example.com"));
    }
}

/// Server TLS settings of a Gateway server (also used for Sidecar ingress).
pub(super) fn server_tls(errs: &mut Errs, at: &str, t: &ServerTlsSettings) {
    let mode = t.mode.unwrap_or(ServerTlsMode::Passthrough);
    let files = t.server_certificate.is_some() || t.private_key.is_some();
    let sources = [
        t.credential_name.is_some(),
        !t.credential_names.is_empty(),
        !t.tls_certificates.is_empty(),
        files,
    ];
    let nsources = sources.iter().filter(|b| **b).count();
    if t.credential_names.len() > 2 || t.tls_certificates.len() > 2 {
        errs.key(
            at,
            "credentialNames and tlsCertificates take 1 or 2 entries (one RSA and one ECDSA)",
        );
    }
    protocol_versions(errs, at, t);
    match mode {
        ServerTlsMode::Simple | ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual => {
            let m = match mode {
                ServerTlsMode::Simple => "SIMPLE",
                ServerTlsMode::Mutual => "MUTUAL",
                _ => "OPTIONAL_MUTUAL",
            };
            if nsources > 1 {
                errs.key(at, "only one of credentialName/credentialNames, tlsCertificates or serverCertificate+privateKey may be set");
            } else if nsources == 0 {
                errs.key(at, format!("{m} TLS without credentialName requires serverCertificate and privateKey (or set credentialName)"));
            } else if files {
                if t.server_certificate.is_none() {
                    errs.key(
                        at,
                        format!("{m} TLS without credentialName requires serverCertificate"),
                    );
                }
                if t.private_key.is_none() {
                    errs.key(
                        at,
                        format!("{m} TLS without credentialName requires privateKey"),
                    );
                }
                if mode != ServerTlsMode::Simple
                    && t.ca_certificates.is_none()
                    && t.ca_cert_credential_name.is_none()
                {
                    errs.key(at, format!("{m} TLS with file-based certs requires caCertificates (client CA bundle)"));
                }
            }
        }
        ServerTlsMode::IstioMutual => {
            if nsources > 0 || t.ca_certificates.is_some() {
                errs.key(at, "ISTIO_MUTUAL uses Istio's workload certificates: no certificate fields may be set");
            }
        }
        ServerTlsMode::Passthrough | ServerTlsMode::AutoPassthrough => {}
    }
}

/// `minProtocolVersion` must not exceed `maxProtocolVersion` (`TLS_AUTO` means
/// the proxy default and is not compared): no TLS version could be negotiated.
fn protocol_versions(errs: &mut Errs, at: &str, t: &ServerTlsSettings) {
    let rank = |v: Option<TlsProtocol>| match v? {
        TlsProtocol::TlsAuto => None,
        TlsProtocol::TlsV1_0 => Some((0, "TLSV1_0")),
        TlsProtocol::TlsV1_1 => Some((1, "TLSV1_1")),
        TlsProtocol::TlsV1_2 => Some((2, "TLSV1_2")),
        TlsProtocol::TlsV1_3 => Some((3, "TLSV1_3")),
    };
    if let (Some((min, min_name)), Some((max, max_name))) =
        (rank(t.min_protocol_version), rank(t.max_protocol_version))
    {
        if min > max {
            errs.at(
                format!("{at}.minProtocolVersion"),
                format!("minProtocolVersion {min_name} is higher than maxProtocolVersion {max_name}, so no TLS version can be negotiated: lower minProtocolVersion or raise maxProtocolVersion"),
            );
        }
    }
}
