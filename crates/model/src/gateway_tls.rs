//! Gateway TLS termination: what an HTTPS gateway server presents and what it asks of
//! clients, compiled from `Server.tls` as Istio's gateway builder reads it
//! (`pilot/pkg/networking/core/gateway.go`, Envoy's `DownstreamTlsContext`): one
//! [`TlsChain`] per server (Envoy's filter chain, chosen by SNI against the server's
//! hosts), each with its own route table; SIMPLE, MUTUAL, OPTIONAL_MUTUAL and
//! ISTIO_MUTUAL; certificates from files or from a `credentialName` the proxy resolves
//! in its credentials folder; protocol versions and TLS 1.2 cipher suites mapped to what
//! rustls speaks, and what it cannot speak reported by name ([`report`]).

use serde::{Deserialize, Serialize};
use weft_api::{Server, ServerTlsMode, ServerTlsSettings, TlsProtocol};

/// The TLS side of a gateway listener: the servers (filter chains) on its port.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ServerTls {
    pub chains: Vec<TlsChain>,
}

/// One terminating server: Envoy's filter chain with its `DownstreamTlsContext`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TlsChain {
    /// `<ns>/<gateway>/servers[i]`, for logs.
    pub name: String,
    /// Server names the ClientHello's SNI must match (`*.example.com` wildcards); empty
    /// = any, and the only chains a client without SNI reaches.
    pub sni: Vec<String>,
    /// The route table of requests on this chain (HTTPS servers).
    pub route_table: String,
    pub mode: TlsMode,
    pub certificate: CertSource,
    /// MUTUAL / OPTIONAL_MUTUAL: the client's certificate checks.
    #[serde(default)]
    pub client: Option<ClientValidation>,
    /// The TLS versions offered (rustls: 1.2 and 1.3).
    pub versions: Vec<TlsVersion>,
    /// rustls's names of the TLS 1.2 suites allowed (empty: rustls's defaults); TLS 1.3
    /// suites are not configurable (as in Envoy).
    #[serde(default)]
    pub tls12_suites: Vec<String>,
}

/// How a chain authenticates clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TlsMode {
    /// Server certificate only.
    Simple,
    /// A client certificate is required and verified.
    Mutual,
    /// A client certificate is verified if the client sends one.
    OptionalMutual,
    /// The gateway's mesh certificate; clients must present mesh certificates.
    IstioMutual,
}

/// Where a chain's certificate comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertSource {
    /// `serverCertificate` / `privateKey` paths.
    Files { cert: String, key: String },
    /// A `credentialName`: the proxy reads `<credentials dir>/<name>/` (`tls.crt` +
    /// `tls.key` or `cert` + `key`, and `ca.crt` / `cacert` for the client CA).
    Credential { name: String },
    /// The gateway's own mesh certificate (ISTIO_MUTUAL).
    Mesh,
}

/// Where the client CA comes from and what the client's certificate must also satisfy.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ClientValidation {
    /// `caCertificates` path.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// A credential folder holding the CA (`credentialName` itself, or
    /// `<credentialName>-cacert`, or `caCertCredentialName`).
    #[serde(default)]
    pub ca_credential: Option<String>,
    /// One SAN of the client's certificate must equal one of these.
    #[serde(default)]
    pub subject_alt_names: Vec<String>,
    /// base64 SHA-256 of the certificate's SubjectPublicKeyInfo.
    #[serde(default)]
    pub spki_sha256: Vec<String>,
    /// hex SHA-256 of the whole certificate (colons allowed).
    #[serde(default)]
    pub cert_sha256: Vec<String>,
}

/// The TLS versions rustls has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TlsVersion {
    #[serde(rename = "TLSV1_2")]
    Tls12,
    #[serde(rename = "TLSV1_3")]
    Tls13,
}

/// Whether a server terminates TLS (the modes [`chain`] builds).
pub fn terminates(server: &Server) -> bool {
    server.tls.as_ref().and_then(|t| t.mode).is_some_and(|m| {
        matches!(
            m,
            ServerTlsMode::Simple
                | ServerTlsMode::Mutual
                | ServerTlsMode::OptionalMutual
                | ServerTlsMode::IstioMutual
        )
    })
}

/// Whether an HTTP server asks for `httpsRedirect` (Envoy's `require_tls: ALL`).
pub fn https_redirect(server: &Server) -> bool {
    server
        .tls
        .as_ref()
        .and_then(|t| t.https_redirect)
        .unwrap_or(false)
}

/// Istio's `GetSNIHostsForServer`: the hosts without their `ns/` part; a `*` host means
/// no server-name match at all.
pub fn sni_hosts(server: &Server) -> Vec<String> {
    let mut hosts: Vec<String> = server.hosts.iter().map(|h| sni_hosts_of(h)).collect();
    hosts.sort();
    hosts.dedup();
    if hosts.iter().any(|h| h == "*") {
        return Vec::new();
    }
    hosts
}

/// A server host without its `ns/` part, lowercased.
pub fn sni_hosts_of(host: &str) -> String {
    host.split_once('/')
        .map_or(host, |(_, h)| h)
        .to_ascii_lowercase()
}

/// Compiles one terminating server; `None` when it cannot be served (the reason is in
/// the not-enforced report: a maximum version below TLS 1.2).
pub fn chain(server: &Server, name: String, route_table: String) -> Option<TlsChain> {
    let tls = server.tls.as_ref()?;
    let mode = match tls.mode? {
        ServerTlsMode::Simple => TlsMode::Simple,
        ServerTlsMode::Mutual => TlsMode::Mutual,
        ServerTlsMode::OptionalMutual => TlsMode::OptionalMutual,
        ServerTlsMode::IstioMutual => TlsMode::IstioMutual,
        ServerTlsMode::Passthrough | ServerTlsMode::AutoPassthrough => return None,
    };
    let versions = versions(tls);
    if versions.is_empty() {
        return None;
    }
    let certificate = match (
        &tls.credential_name,
        &tls.server_certificate,
        &tls.private_key,
    ) {
        _ if mode == TlsMode::IstioMutual => CertSource::Mesh,
        (Some(n), _, _) => CertSource::Credential { name: n.clone() },
        (None, Some(cert), Some(key)) => CertSource::Files {
            cert: cert.clone(),
            key: key.clone(),
        },
        // Validation requires one of them for SIMPLE and MUTUAL.
        _ => return None,
    };
    let client =
        matches!(mode, TlsMode::Mutual | TlsMode::OptionalMutual).then(|| ClientValidation {
            ca_file: tls
                .ca_certificates
                .clone()
                .filter(|_| tls.credential_name.is_none()),
            ca_credential: tls
                .ca_cert_credential_name
                .clone()
                .or_else(|| tls.credential_name.clone()),
            subject_alt_names: tls.subject_alt_names.clone(),
            spki_sha256: tls.verify_certificate_spki.clone(),
            cert_sha256: tls.verify_certificate_hash.clone(),
        });
    Some(TlsChain {
        name,
        sni: sni_hosts(server),
        route_table,
        mode,
        certificate,
        client,
        versions,
        tls12_suites: tls
            .cipher_suites
            .iter()
            .flat_map(|s| suite_names(s))
            .filter_map(rustls_suite)
            .map(str::to_string)
            .collect(),
    })
}

/// The versions between min and max (Istio's gateway defaults: TLS 1.2 to 1.3).
fn versions(tls: &ServerTlsSettings) -> Vec<TlsVersion> {
    let rank = |v: Option<TlsProtocol>, default: u8| match v {
        None | Some(TlsProtocol::TlsAuto) => default,
        Some(TlsProtocol::TlsV1_0) => 0,
        Some(TlsProtocol::TlsV1_1) => 1,
        Some(TlsProtocol::TlsV1_2) => 2,
        Some(TlsProtocol::TlsV1_3) => 3,
    };
    let (min, max) = (
        rank(tls.min_protocol_version, 2),
        rank(tls.max_protocol_version, 3),
    );
    [(2, TlsVersion::Tls12), (3, TlsVersion::Tls13)]
        .into_iter()
        .filter(|(r, _)| *r >= min && *r <= max)
        .map(|(_, v)| v)
        .collect()
}

/// Envoy's cipher list entries: a name, or an equal-preference group `[A|B]`.
fn suite_names(entry: &str) -> impl Iterator<Item = &str> {
    entry
        .trim_matches(|c| c == '[' || c == ']')
        .split('|')
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// The rustls TLS 1.2 suite for an Envoy (OpenSSL) cipher name, if rustls has it.
pub fn rustls_suite(openssl: &str) -> Option<&'static str> {
    Some(match openssl {
        "ECDHE-ECDSA-AES128-GCM-SHA256" => "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256" => "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384" => "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384" => "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305" => "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        "ECDHE-RSA-CHACHA20-POLY1305" => "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        _ => return None,
    })
}

/// Envoy's server-name match over the chains a handshake may use (`usable`): the exact
/// name first, then the longest `*.suffix` wildcard, then a chain without names; a client
/// without SNI reaches only a chain without names.
pub fn select_chain(
    chains: &[TlsChain],
    sni: Option<&str>,
    usable: impl Fn(usize) -> bool,
) -> Option<usize> {
    let mut best: Option<(usize, usize)> = None; // (chain, specificity)
    for (i, c) in chains.iter().enumerate().filter(|(i, _)| usable(*i)) {
        let score = if c.sni.is_empty() {
            Some(0)
        } else {
            sni.and_then(|name| c.sni.iter().filter_map(|p| sni_score(p, name)).max())
        };
        if let Some(s) = score {
            if best.is_none_or(|(_, b)| s > b) {
                best = Some((i, s));
            }
        }
    }
    best.map(|(i, _)| i)
}

/// How specifically `pattern` matches `name` (higher wins); exact beats any wildcard.
fn sni_score(pattern: &str, name: &str) -> Option<usize> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if pattern == name {
        return Some(usize::MAX);
    }
    let suffix = pattern.strip_prefix('*')?;
    (suffix.starts_with('.') && name.len() > suffix.len() && name.ends_with(suffix))
        .then_some(suffix.len() + 1)
}

/// What a terminating server's settings ask for that weft does not do, by field.
pub fn report(i: usize, tls: &ServerTlsSettings, push: &mut impl FnMut(String)) {
    let at = |f: &str| format!("servers[{i}].tls.{f}");
    for (field, v) in [
        ("minProtocolVersion", tls.min_protocol_version),
        ("maxProtocolVersion", tls.max_protocol_version),
    ] {
        if matches!(v, Some(TlsProtocol::TlsV1_0 | TlsProtocol::TlsV1_1)) {
            let effect = if field == "maxProtocolVersion" {
                "this server is not opened"
            } else {
                "clients below TLS 1.2 fail the handshake"
            };
            push(format!(
                "{} {} (rustls speaks TLS 1.2 and 1.3 only: {effect})",
                at(field),
                if v == Some(TlsProtocol::TlsV1_0) {
                    "TLSV1_0"
                } else {
                    "TLSV1_1"
                }
            ));
        }
    }
    for name in tls.cipher_suites.iter().flat_map(|s| suite_names(s)) {
        if rustls_suite(name).is_none() {
            push(format!(
                "{} {name} (rustls has no such TLS 1.2 suite; it is not offered)",
                at("cipherSuites")
            ));
        }
    }
    let unsupported = [
        ("caCrl", tls.ca_crl.is_some()),
        ("credentialNames", !tls.credential_names.is_empty()),
        ("tlsCertificates", !tls.tls_certificates.is_empty()),
        ("ecdhCurves", !tls.ecdh_curves.is_empty()),
        ("insecureSkipVerify", tls.insecure_skip_verify.is_some()),
    ];
    for (field, set) in unsupported {
        if set {
            push(at(field));
        }
    }
}

#[cfg(test)]
mod tests;
