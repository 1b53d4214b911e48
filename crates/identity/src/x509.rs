//! Certificate inspection helpers built on `x509-parser`: SPIFFE URI SANs,
//! validity, CA flags and public keys.

use std::time::SystemTime;

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use crate::error::{Error, Result};
use crate::spiffe::SpiffeId;

/// Facts about one certificate that the rest of the crate cares about.
pub(crate) struct CertInfo {
    /// DER of the SubjectPublicKeyInfo.
    pub spki: Vec<u8>,
    /// The single SPIFFE id in the URI SANs, if there is exactly one URI SAN and it parses.
    pub spiffe_id: Option<SpiffeId>,
    pub not_after: SystemTime,
    /// basicConstraints cA=TRUE.
    pub is_ca: bool,
    /// keyCertSign is set, or the key usage extension is absent.
    pub may_sign_certs: bool,
}

pub(crate) fn parse(der: &[u8]) -> Result<X509Certificate<'_>> {
    let (rest, cert) = X509Certificate::from_der(der)
        .map_err(|e| Error::InvalidCertificate(format!("cannot parse X.509 certificate: {e}")))?;
    if !rest.is_empty() {
        return Err(Error::InvalidCertificate(
            "trailing bytes after X.509 certificate".into(),
        ));
    }
    Ok(cert)
}

/// Splits concatenated DER certificates (the Workload API's encoding); at least one.
pub(crate) fn split_der(
    what: &str,
    mut der: &[u8],
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    let mut certs = Vec::new();
    while !der.is_empty() {
        let (rest, _) = X509Certificate::from_der(der).map_err(|e| {
            Error::InvalidCertificate(format!(
                "{what}: cannot parse certificate {}: {e}",
                certs.len() + 1
            ))
        })?;
        let len = der.len() - rest.len();
        certs.push(rustls::pki_types::CertificateDer::from(der[..len].to_vec()));
        der = rest;
    }
    if certs.is_empty() {
        return Err(Error::InvalidCertificate(format!("{what}: no certificate")));
    }
    Ok(certs)
}

pub(crate) fn inspect(der: &[u8]) -> Result<CertInfo> {
    let cert = parse(der)?;
    let bad = |e: x509_parser::error::X509Error| Error::InvalidCertificate(e.to_string());
    let is_ca = cert
        .basic_constraints()
        .map_err(bad)?
        .is_some_and(|bc| bc.value.ca);
    let may_sign_certs = cert
        .key_usage()
        .map_err(bad)?
        .is_none_or(|ku| ku.value.key_cert_sign());
    let not_after = SystemTime::from(cert.validity().not_after.to_datetime());
    Ok(CertInfo {
        spki: cert.tbs_certificate.subject_pki.raw.to_vec(),
        spiffe_id: spiffe_id_of(&cert),
        not_after,
        is_ca,
        may_sign_certs,
    })
}

/// The SPIFFE id of a certificate: per the X.509-SVID spec the certificate must
/// carry exactly one URI SAN, and it must be a valid SPIFFE id.
pub(crate) fn spiffe_id_of(cert: &X509Certificate<'_>) -> Option<SpiffeId> {
    let san = cert.subject_alternative_name().ok()??;
    let mut uris = san.value.general_names.iter().filter_map(|n| match n {
        GeneralName::URI(uri) => Some(*uri),
        _ => None,
    });
    let uri = uris.next()?;
    if uris.next().is_some() {
        return None;
    }
    SpiffeId::parse(uri).ok()
}
