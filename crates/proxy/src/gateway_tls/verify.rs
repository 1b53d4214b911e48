//! A gateway client certificate: the checks MUTUAL adds on top of the chain verification
//! (`subjectAltNames`, `verifyCertificateSpki`, `verifyCertificateHash`, as Envoy's
//! `CertificateValidationContext` applies them), and what a verified one tells the
//! pipeline — its principal (Envoy's: the URI SAN, else the DNS SAN, else the subject)
//! and the `x-forwarded-client-cert` a gateway sets (Istio's gateway default
//! SANITIZE_SET: `Hash`, `Subject`, `URI`, `DNS`).

use base64::Engine;
use http::HeaderValue;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use std::sync::Arc;
use weft_model::gateway_tls::ClientValidation;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// The chain verifier plus the certificate's own checks.
#[derive(Debug)]
pub struct Checks {
    inner: Arc<dyn ClientCertVerifier>,
    sans: Vec<String>,
    spki: Vec<String>,
    hashes: Vec<String>,
}

impl Checks {
    pub fn new(inner: Arc<dyn ClientCertVerifier>, v: &ClientValidation) -> Checks {
        let hex = |h: &String| h.replace(':', "").to_ascii_lowercase();
        Checks {
            inner,
            sans: v.subject_alt_names.clone(),
            spki: v.spki_sha256.clone(),
            hashes: v.cert_sha256.iter().map(hex).collect(),
        }
    }

    /// Envoy: a SAN must equal one listed; with both pin kinds, either may match.
    fn check(&self, leaf: &[u8]) -> Result<(), String> {
        let cert = ClientCert::read(leaf);
        if !self.sans.is_empty() && !cert.sans().any(|s| self.sans.iter().any(|w| w == s)) {
            return Err("no subject alternative name of the client certificate is allowed".into());
        }
        if self.spki.is_empty() && self.hashes.is_empty() {
            return Ok(());
        }
        let spki_ok = self.spki.contains(&cert.spki_sha256);
        let hash_ok = self.hashes.contains(&cert.hash);
        if spki_ok || hash_ok {
            Ok(())
        } else {
            Err(
                "the client certificate matches no verifyCertificateSpki/verifyCertificateHash pin"
                    .into(),
            )
        }
    }
}

/// rustls renders `OtherError` with `{:?}`; make that the sentence.
struct Refused(String);

impl std::fmt::Debug for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

impl ClientCertVerifier for Checks {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let ok = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        self.check(end_entity.as_ref()).map_err(|e| {
            tracing::debug!(error = %e, "client certificate refused");
            rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
                Arc::new(Refused(e)),
            )))
        })?;
        Ok(ok)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// What the pipeline learns from a (verified) client certificate.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ClientCert {
    pub uris: Vec<String>,
    pub dns: Vec<String>,
    /// Other SANs (emails, IPs), for `subjectAltNames` only.
    pub other_sans: Vec<String>,
    pub subject: String,
    /// hex SHA-256 of the certificate.
    pub hash: String,
    /// base64 SHA-256 of its SubjectPublicKeyInfo.
    pub spki_sha256: String,
}

impl ClientCert {
    /// Reads a DER certificate (a certificate rustls accepted always parses).
    pub fn read(der: &[u8]) -> ClientCert {
        let sha = |d: &[u8]| ring::digest::digest(&ring::digest::SHA256, d);
        let hash: String = sha(der)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut c = ClientCert {
            hash,
            ..ClientCert::default()
        };
        let Ok((_, cert)) = X509Certificate::from_der(der) else {
            return c;
        };
        c.subject = cert.subject().to_string();
        c.spki_sha256 =
            base64::engine::general_purpose::STANDARD.encode(sha(cert.public_key().raw).as_ref());
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for n in &san.value.general_names {
                match n {
                    GeneralName::URI(u) => c.uris.push(u.to_string()),
                    GeneralName::DNSName(d) => c.dns.push(d.to_string()),
                    GeneralName::RFC822Name(e) => c.other_sans.push(e.to_string()),
                    GeneralName::IPAddress(ip) => {
                        let ip = match ip.len() {
                            4 => <[u8; 4]>::try_from(*ip).ok().map(std::net::IpAddr::from),
                            16 => <[u8; 16]>::try_from(*ip).ok().map(std::net::IpAddr::from),
                            _ => None,
                        };
                        c.other_sans.extend(ip.map(|i| i.to_string()));
                    }
                    _ => {}
                }
            }
        }
        c
    }

    fn sans(&self) -> impl Iterator<Item = &String> {
        self.uris.iter().chain(&self.dns).chain(&self.other_sans)
    }

    /// Envoy's principal name of a peer certificate: URI SAN, else DNS SAN, else subject.
    pub fn principal(&self) -> Option<String> {
        self.uris
            .first()
            .or(self.dns.first())
            .cloned()
            .or_else(|| Some(self.subject.clone()).filter(|s| !s.is_empty()))
    }

    /// `x-forwarded-client-cert` for requests on the connection.
    pub fn xfcc(&self) -> Option<HeaderValue> {
        let mut v = format!("Hash={}", self.hash);
        if !self.subject.is_empty() {
            v.push_str(&format!(
                ";Subject=\"{}\"",
                self.subject.replace('"', "\\\"")
            ));
        }
        for u in &self.uris {
            v.push_str(&format!(";URI={u}"));
        }
        for d in &self.dns {
            v.push_str(&format!(";DNS={d}"));
        }
        HeaderValue::from_str(&v).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate with a DNS and a URI SAN, and a verifier trusting it.
    fn cert_and_inner() -> (Vec<u8>, Arc<dyn ClientCertVerifier>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec!["client.example.com".into()]).unwrap();
        p.subject_alt_names.push(rcgen::SanType::URI(
            "spiffe://example.com/c".try_into().unwrap(),
        ));
        let cert = p.self_signed(&key).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let inner =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
        (cert.der().to_vec(), inner)
    }

    #[test]
    fn sans_and_pins_are_checked_as_envoy_does() {
        let (der, inner) = cert_and_inner();
        let read = ClientCert::read(&der);
        assert_eq!(read.dns, ["client.example.com"]);
        assert_eq!(read.uris, ["spiffe://example.com/c"]);
        assert_eq!(read.principal().as_deref(), Some("spiffe://example.com/c"));
        let checks = |v: ClientValidation| Checks::new(inner.clone(), &v).check(&der);
        assert!(checks(ClientValidation::default()).is_ok());
        let san = |s: &str| ClientValidation {
            subject_alt_names: vec![s.into()],
            ..Default::default()
        };
        assert!(checks(san("client.example.com")).is_ok());
        assert!(checks(san("spiffe://example.com/c")).is_ok());
        assert!(checks(san("other.example.com")).is_err());
        // The hash pin in Envoy's colon-separated upper-case form matches.
        let colons: Vec<String> = read
            .hash
            .as_bytes()
            .chunks(2)
            .map(|c| String::from_utf8_lossy(c).to_ascii_uppercase())
            .collect();
        let hash = |h: String| ClientValidation {
            cert_sha256: vec![h],
            ..Default::default()
        };
        assert!(checks(hash(colons.join(":"))).is_ok());
        assert!(checks(hash("00".repeat(32))).is_err());
        let spki = |s: &str| ClientValidation {
            spki_sha256: vec![s.into()],
            cert_sha256: vec!["00".repeat(32)],
            ..Default::default()
        };
        // Either pin kind may match.
        assert!(checks(spki(&read.spki_sha256)).is_ok());
        assert!(checks(spki("AAAA")).is_err());
        let xfcc = read.xfcc().unwrap();
        let xfcc = xfcc.to_str().unwrap();
        assert!(xfcc.starts_with(&format!("Hash={}", read.hash)), "{xfcc}");
        assert!(
            xfcc.ends_with(";URI=spiffe://example.com/c;DNS=client.example.com"),
            "{xfcc}"
        );
    }
}
