//! Gateway rules, as istio/istio's `ValidateGateway`, `validateServer`,
//! `validateServerPort`, `validateServerBind` and `validateTLSOptions`
//! (`pkg/config/validation/validation.go`) and the Gateway CRD's CEL rules: servers, ports
//! (protocols, required unique names), `[ns/]host` forms, binds, the protocol/TLS pairing,
//! certificate sources, cipher suites and the TLS protocol-version range.

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::common::{is_dns_label, is_dns_name, is_namespace, port_ok, selector_labels};
use super::{Errs, WarningKind};
use crate::{Gateway, Resource, ServerTlsMode, ServerTlsSettings, TlsProtocol};

/// What `protocol.Parse` knows (case-insensitive), `UnsupportedProtocol` otherwise.
pub(super) const PROTOCOLS: &[&str] = &[
    "HTTP",
    "HTTPS",
    "GRPC",
    "GRPC-WEB",
    "HTTP2",
    "HTTP_PROXY",
    "MONGO",
    "TCP",
    "TLS",
    "UDP",
    "REDIS",
    "MYSQL",
];

/// Istio's `protocol.IsHTTP`.
pub(super) fn is_http(p: &str) -> bool {
    matches!(
        p.to_ascii_uppercase().as_str(),
        "HTTP" | "HTTP2" | "HTTP_PROXY" | "GRPC" | "GRPC-WEB"
    )
}

/// Istio's `protocol.IsTLS`.
pub(super) fn is_tls(p: &str) -> bool {
    matches!(p.to_ascii_uppercase().as_str(), "HTTPS" | "TLS")
}

/// The cipher suites Istio accepts in `cipherSuites` (`security.ValidCipherSuites`).
const CIPHERS: &[&str] = &[
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
    "ECDHE-ECDSA-AES128-SHA",
    "ECDHE-RSA-AES128-SHA",
    "ECDHE-ECDSA-AES256-SHA",
    "ECDHE-RSA-AES256-SHA",
    "AES128-GCM-SHA256",
    "AES256-GCM-SHA384",
    "AES128-SHA",
    "AES256-SHA",
    "DES-CBC3-SHA",
];

/// `unix:///abs/path` or `unix://@abstract` (Istio's `ValidateUnixAddress`: an absolute
/// path that is not a directory).
pub(super) fn is_uds(s: &str) -> bool {
    s.strip_prefix("unix://").is_some_and(|p| {
        (p.starts_with('/') && p.len() > 1 && !p.ends_with('/'))
            || (p.starts_with('@') && p.len() > 1)
    })
}

pub(super) fn validate(r: &Resource, gw: &Gateway, errs: &mut Errs) {
    if !is_dns_label(r.name()) {
        errs.at("metadata.name", format!("invalid gateway name {:?}: a Gateway name is a DNS-1123 label (letters, digits, `-`; no dots), because VirtualServices refer to it as namespace/name", r.name()));
    }
    selector_labels(errs, "spec.selector", &gw.selector);
    if gw.servers.is_empty() {
        errs.key("spec.servers", "a Gateway needs at least one server");
    }
    let mut port_names = BTreeSet::new();
    let mut server_names = BTreeSet::new();
    for (i, s) in gw.servers.iter().enumerate() {
        let at = format!("spec.servers[{i}]");
        // The port rules follow the `unix://` prefix, the bind rule the whole address.
        let uds = s.bind.as_deref().is_some_and(|b| b.starts_with("unix://"));
        if let Some(b) = &s.bind {
            if !is_uds(b) && b.parse::<IpAddr>().is_err() {
                errs.at(format!("{at}.bind"), format!("server bind {b:?} is not a valid IP address or unix socket (unix:///absolute/path to a file, or unix://@name)"));
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
                if p.target_port.is_some_and(|t| t > 0) {
                    errs.key(
                        format!("{at}.port.targetPort"),
                        "targetPort has no impact on Gateways (and is deprecated): remove it",
                    );
                }
                if p.name.is_empty() {
                    errs.key(format!("{at}.port"), "server port name must be set (e.g. name: http): port names identify servers and must be unique within the Gateway");
                } else if !port_names.insert(p.name.clone()) {
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
                errs.warn(
                    WarningKind::Istio,
                    format!("{at}.name"),
                    format!("server name {n:?} is used twice: the Gateway reference says server names must be unique (Istio accepts it); rename one"),
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
        if let Some(t) = &s.tls {
            server_tls_pairing(errs, &at, &protocol, t);
        } else if is_tls(&protocol) {
            errs.key(
                &at,
                format!(
                    "{protocol} server must have TLS settings (tls.mode and a certificate source)"
                ),
            );
        }
    }
}

/// Istio's `validateServer` TLS rules: TLS settings are checked on every server; a plain
/// HTTP server may carry only passthrough-mode settings without certificates (httpsRedirect),
/// other non-TLS protocols none; httpsRedirect outside HTTP draws a warning.
fn server_tls_pairing(errs: &mut Errs, at: &str, protocol: &str, t: &ServerTlsSettings) {
    let tat = format!("{at}.tls");
    server_tls(errs, &tat, t);
    if protocol.is_empty() || is_tls(protocol) {
        return;
    }
    let passthrough = matches!(
        t.mode,
        None | Some(ServerTlsMode::Passthrough | ServerTlsMode::AutoPassthrough)
    );
    let certs =
        t.ca_certificates.is_some() || t.private_key.is_some() || t.server_certificate.is_some();
    if is_http(protocol) {
        if !passthrough || certs {
            errs.key(&tat, "a plain HTTP server cannot have TLS settings (only tls.httpsRedirect); use protocol HTTPS to terminate TLS");
        }
    } else {
        errs.key(&tat, format!("a {protocol} server cannot have TLS settings (only HTTPS and TLS servers can); use protocol TLS or HTTPS, or remove tls"));
    }
    if !is_http(protocol) && t.https_redirect == Some(true) {
        errs.warn(WarningKind::Istio, format!("{tat}.httpsRedirect"), "tls.httpsRedirect should only be used with HTTP servers: a redirect is an HTTP response");
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

/// Server TLS settings of a Gateway server (also used for Sidecar ingress): Istio's
/// `validateTLSOptions` and the CRD's CEL rules.
pub(super) fn server_tls(errs: &mut Errs, at: &str, t: &ServerTlsSettings) {
    let mode = t.mode.unwrap_or(ServerTlsMode::Passthrough);
    protocol_versions(errs, at, t);
    cipher_suites(errs, at, t);
    // The CRD's CEL rules (reported instead of the source count below, which they imply).
    let cel = [
        (
            t.credential_name.is_some() && !t.credential_names.is_empty(),
            "only one of credentialName or credentialNames can be set",
        ),
        (
            !t.credential_names.is_empty() && !t.tls_certificates.is_empty(),
            "only one of credentialNames or tlsCertificates can be set",
        ),
    ];
    for (broken, why) in cel {
        if broken {
            errs.key(at, why);
        }
    }
    let cel_broken = cel.iter().any(|(b, _)| *b);
    if t.credential_names.len() > 2 || t.tls_certificates.len() > 2 {
        errs.key(
            at,
            "credentialNames and tlsCertificates take 1 or 2 entries (one RSA and one ECDSA)",
        );
    }
    let any_cert = t.server_certificate.is_some()
        || t.private_key.is_some()
        || t.ca_certificates.is_some()
        || !t.tls_certificates.is_empty()
        || t.credential_name.is_some()
        || !t.credential_names.is_empty();
    match mode {
        ServerTlsMode::IstioMutual => {
            if any_cert {
                errs.key(at, "ISTIO_MUTUAL uses Istio's workload certificates: no certificate fields may be set (serverCertificate, privateKey, caCertificates, tlsCertificates, credentialName(s))");
            }
            return;
        }
        ServerTlsMode::Passthrough | ServerTlsMode::AutoPassthrough
            if any_cert || t.ca_crl.is_some() =>
        {
            errs.warn(WarningKind::Istio, at, "PASSTHROUGH/AUTO_PASSTHROUGH mode does not use certificates: they will be ignored (the TLS connection is forwarded as is)");
        }
        _ => {}
    }
    let sources = [
        t.server_certificate.is_some() && t.private_key.is_some(),
        t.credential_name.is_some(),
        !t.credential_names.is_empty(),
        !t.tls_certificates.is_empty(),
    ];
    if !cel_broken && sources.iter().filter(|b| **b).count() > 1 {
        errs.key(at, "only one of credentialName/credentialNames, serverCertificate+privateKey or tlsCertificates may be set");
    }
    let terminating = matches!(
        mode,
        ServerTlsMode::Simple | ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual
    );
    let remote = t.credential_name.is_some() || !t.credential_names.is_empty();
    if terminating && !remote {
        file_certificates(errs, at, mode, t);
    }
    if t.ca_crl.is_some() {
        if t.credential_name.is_some() {
            errs.key(format!("{at}.caCrl"), "caCrl is not supported with credentialName: the CRL has to be part of the credential");
        } else if mode == ServerTlsMode::Simple {
            errs.key(format!("{at}.caCrl"), "caCrl is not supported with SIMPLE TLS (no client certificates are checked); use MUTUAL or remove caCrl");
        }
    }
}

/// SIMPLE/MUTUAL without credentialName(s): each certificate (tlsCertificates, or
/// serverCertificate+privateKey) needs both files; MUTUAL also the client CA bundle.
fn file_certificates(errs: &mut Errs, at: &str, mode: ServerTlsMode, t: &ServerTlsSettings) {
    let m = match mode {
        ServerTlsMode::Simple => "SIMPLE",
        ServerTlsMode::Mutual => "MUTUAL",
        _ => "OPTIONAL_MUTUAL",
    };
    if mode != ServerTlsMode::Simple && t.ca_certificates.is_none() {
        errs.key(at, format!("{m} TLS with file-based certs requires caCertificates (the client CA bundle), or set credentialName"));
    }
    if t.tls_certificates.is_empty() {
        if t.server_certificate.is_none() {
            errs.key(at, format!("{m} TLS without credentialName requires serverCertificate (and privateKey), or set credentialName"));
        }
        if t.private_key.is_none() {
            errs.key(at, format!("{m} TLS without credentialName requires privateKey (and serverCertificate), or set credentialName"));
        }
        return;
    }
    for (i, c) in t.tls_certificates.iter().enumerate() {
        if c.server_certificate.is_none() || c.private_key.is_none() {
            errs.key(format!("{at}.tlsCertificates[{i}]"), format!("{m} TLS requires a serverCertificate and a privateKey in each tlsCertificates entry"));
        }
    }
}

/// Istio's cipher warnings: versions below TLS 1.2 need explicit ciphers; unknown and
/// duplicate suites are ignored.
fn cipher_suites(errs: &mut Errs, at: &str, t: &ServerTlsSettings) {
    let old = matches!(
        t.min_protocol_version,
        Some(TlsProtocol::TlsV1_0 | TlsProtocol::TlsV1_1)
    );
    if old && t.cipher_suites.is_empty() {
        errs.warn(WarningKind::Istio, format!("{at}.minProtocolVersion"), "TLS versions below TLSV1_2 require setting compatible cipherSuites: by default they no longer include compatible ciphers");
    }
    let mut seen = BTreeSet::new();
    let mut invalid = Vec::new();
    let mut dup = Vec::new();
    for c in &t.cipher_suites {
        if !(c.is_empty() || c == "ALL" || CIPHERS.contains(&c.as_str())) {
            invalid.push(c.as_str());
        } else if !seen.insert(c.as_str()) {
            dup.push(c.as_str());
        }
    }
    if !invalid.is_empty() {
        errs.warn(
            WarningKind::Istio,
            format!("{at}.cipherSuites"),
            format!("ignoring invalid cipher suites: {}", invalid.join(", ")),
        );
    }
    if !dup.is_empty() {
        errs.warn(
            WarningKind::Istio,
            format!("{at}.cipherSuites"),
            format!("ignoring duplicate cipher suites: {}", dup.join(", ")),
        );
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
