//! Control-plane certificate authority: loads or creates the mesh root and signs
//! workload CSRs into X.509-SVIDs.
//!
//! Identity is decided by the control plane, Istio-style: [`Ca::sign_csr`] only
//! takes the public key (after checking the CSR's self-signature) and ignores the
//! subject and SANs the requester asked for.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber, SubjectPublicKeyInfo,
};
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateSigningRequestDer, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::RootCertStore;
use time::OffsetDateTime;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::FromDer;

use crate::error::{Error, Result};
use crate::spiffe::{validate_trust_domain, SpiffeId};
use crate::{files, pem, x509};

mod server_cert;

/// File name of the root certificate inside a [`Ca::load_or_create`] directory.
pub const ROOT_CERT_FILE: &str = "root-cert.pem";
/// File name of the root private key (PKCS#8 PEM, mode 0600) inside a
/// [`Ca::load_or_create`] directory.
pub const ROOT_KEY_FILE: &str = "root-key.pem";

const ROOT_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);
const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// A freshly issued workload certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCert {
    /// PEM: the leaf first, then any intermediates (never the root).
    pub cert_chain_pem: String,
    /// PEM of the mesh trust anchor(s) the chain verifies against.
    pub root_pem: String,
    /// Expiry of the leaf (whole seconds, as encoded in the certificate).
    pub not_after: SystemTime,
}

/// The mesh certificate authority.
pub struct Ca {
    trust_domain: String,
    issuer: Issuer<'static, KeyPair>,
    /// Expiry of the signing certificate; leaves never outlive it.
    signing_not_after: OffsetDateTime,
    /// Certificates appended after the leaf: the signing cert when it is not a
    /// root, then the configured intermediates.
    chain: Vec<CertificateDer<'static>>,
    roots: Vec<CertificateDer<'static>>,
    root_pem: String,
    provider: Arc<CryptoProvider>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("trust_domain", &self.trust_domain)
            .field("signing_not_after", &self.signing_not_after)
            .field("chain_len", &self.chain.len())
            .field("roots", &self.roots.len())
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// Loads `dir/root-cert.pem` + `dir/root-key.pem`, or, when neither exists,
    /// generates a self-signed ECDSA P-256 root valid for 10 years and writes
    /// both (the key with mode 0600). If only one of the two files exists this
    /// fails rather than silently replacing the mesh's trust anchor.
    pub fn load_or_create(dir: &Path, trust_domain: &str) -> Result<Ca> {
        validate_trust_domain(trust_domain, trust_domain)?;
        let cert_path = dir.join(ROOT_CERT_FILE);
        let key_path = dir.join(ROOT_KEY_FILE);
        match (files::exists(&cert_path)?, files::exists(&key_path)?) {
            (true, true) => {
                tracing::info!(dir = %dir.display(), "loading mesh root CA");
                Self::from_pem_files(&cert_path, &key_path, trust_domain)
            }
            (false, false) => {
                tracing::info!(dir = %dir.display(), trust_domain, "generating self-signed mesh root CA");
                let (cert_pem, key_pem) = generate_root(trust_domain)?;
                files::create_dir_private(dir)?;
                // Key first: a crash in between leaves a key without a cert,
                // which the next start reports instead of overwriting.
                files::write_atomic(&key_path, key_pem.as_bytes(), true)?;
                files::write_atomic(&cert_path, cert_pem.as_bytes(), false)?;
                Self::from_pem(&cert_pem, &key_pem, None, None, trust_domain)
            }
            (cert, _) => Err(Error::InvalidCa(format!(
                "{} exists but {} does not; refusing to generate a new root over a partial one",
                if cert {
                    cert_path.display()
                } else {
                    key_path.display()
                },
                if cert {
                    key_path.display()
                } else {
                    cert_path.display()
                },
            ))),
        }
    }

    /// Uses a user-provided CA ("plug-in CA"): `cert` is a single CA certificate
    /// that is both the signing certificate and the trust anchor; `key` is its
    /// PKCS#8 PEM private key.
    pub fn from_pem_files(cert: &Path, key: &Path, trust_domain: &str) -> Result<Ca> {
        let cert_pem = files::read_string(cert)?;
        let key_pem = files::read_string(key)?;
        Self::from_pem(&cert_pem, &key_pem, None, None, trust_domain)
    }

    /// Uses an intermediate signing CA: `cert`/`key` sign leaves, `chain`
    /// (optional) holds the intermediates between `cert` and the root (excluding
    /// the root), and `root` holds one or more trust anchors.
    pub fn from_pem_files_with_root(
        cert: &Path,
        key: &Path,
        chain: Option<&Path>,
        root: &Path,
        trust_domain: &str,
    ) -> Result<Ca> {
        let cert_pem = files::read_string(cert)?;
        let key_pem = files::read_string(key)?;
        let chain_pem = chain.map(files::read_string).transpose()?;
        let root_pem = files::read_string(root)?;
        Self::from_pem(
            &cert_pem,
            &key_pem,
            chain_pem.as_deref(),
            Some(&root_pem),
            trust_domain,
        )
    }

    /// Istio's plug-in CA layout (the `cacerts` secret's files): `ca-cert.pem` and
    /// `ca-key.pem` sign workload certificates, `root-cert.pem` holds the trust anchor(s),
    /// `cert-chain.pem` (optional) the chain from `ca-cert.pem` to the root.
    pub fn from_istio_cacerts(dir: &Path, trust_domain: &str) -> Result<Ca> {
        let chain = dir.join("cert-chain.pem");
        Self::from_pem_files_with_root(
            &dir.join("ca-cert.pem"),
            &dir.join("ca-key.pem"),
            chain.exists().then_some(chain.as_path()),
            &dir.join("root-cert.pem"),
            trust_domain,
        )
    }

    /// In-memory form of the constructors above. With `root_pem = None` the
    /// signing certificate is the trust anchor and `chain_pem` must be `None`.
    ///
    /// Validates that the signing certificate is a CA allowed to sign
    /// certificates, that the key matches it, and (by issuing a throwaway leaf)
    /// that issued certificates verify against the roots.
    pub fn from_pem(
        cert_pem: &str,
        key_pem: &str,
        chain_pem: Option<&str>,
        root_pem: Option<&str>,
        trust_domain: &str,
    ) -> Result<Ca> {
        validate_trust_domain(trust_domain, trust_domain)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut certs = pem::parse_certs("CA certificate", cert_pem)?;
        if certs.len() != 1 {
            return Err(Error::InvalidCa(format!(
                "the CA certificate file must hold exactly one certificate, found {}; \
                 put intermediates in the chain file and roots in the root file",
                certs.len()
            )));
        }
        let signing_cert = certs.remove(0);
        let info = x509::inspect(&signing_cert)?;
        if !info.is_ca || !info.may_sign_certs {
            return Err(Error::InvalidCa(
                "signing certificate must have basicConstraints CA:TRUE and keyCertSign".into(),
            ));
        }
        let key = KeyPair::from_pem(key_pem).map_err(|e| {
            Error::InvalidCa(format!(
                "cannot load CA private key (must be an unencrypted PKCS#8 \"PRIVATE KEY\" PEM): {e}"
            ))
        })?;
        if rcgen::PublicKeyData::subject_public_key_info(&key) != info.spki {
            return Err(Error::KeyMismatch("CA"));
        }
        let issuer = Issuer::from_ca_cert_der(&signing_cert, key)?;

        let (chain, roots) = match root_pem {
            None => {
                if chain_pem.is_some() {
                    return Err(Error::InvalidCa(
                        "an intermediate chain needs an explicit root".into(),
                    ));
                }
                (Vec::new(), vec![signing_cert])
            }
            Some(root_pem) => {
                let roots = pem::parse_certs("CA root", root_pem)?;
                let mut chain = Vec::new();
                if !roots.contains(&signing_cert) {
                    // Istio's cert-chain.pem repeats the signing certificate and the root.
                    let extra: Vec<_> = match chain_pem {
                        Some(chain_pem) => pem::parse_certs("CA chain", chain_pem)?
                            .into_iter()
                            .filter(|c| !roots.contains(c) && *c != signing_cert)
                            .collect(),
                        None => Vec::new(),
                    };
                    chain.push(signing_cert);
                    chain.extend(extra);
                }
                (chain, roots)
            }
        };

        let now = SystemTime::now();
        if info.not_after <= now {
            return Err(Error::InvalidCa("signing certificate has expired".into()));
        }
        if info.not_after < now + Duration::from_secs(30 * 24 * 60 * 60) {
            tracing::warn!(
                trust_domain,
                "mesh signing CA certificate expires within 30 days"
            );
        }

        let ca = Ca {
            trust_domain: trust_domain.to_owned(),
            issuer,
            signing_not_after: OffsetDateTime::from(info.not_after),
            chain,
            root_pem: pem::encode_certs(&roots),
            roots,
            provider,
        };
        ca.self_test()?;
        Ok(ca)
    }

    /// The trust domain this CA issues identities for.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// PEM of the trust anchor(s) workloads must trust.
    pub fn root_pem(&self) -> String {
        self.root_pem.clone()
    }

    /// DER of the trust anchor(s).
    pub fn roots(&self) -> &[CertificateDer<'static>] {
        &self.roots
    }

    /// Expiry of the signing certificate (no leaf outlives it).
    pub fn not_after(&self) -> SystemTime {
        self.signing_not_after.into()
    }

    /// Signs a workload CSR.
    ///
    /// The CSR's self-signature must verify (proof of possession). Everything
    /// else it requests is ignored: the leaf has an empty subject, exactly one
    /// (critical) URI SAN = `id`, CA:FALSE, digitalSignature+keyEncipherment,
    /// EKU serverAuth+clientAuth, `not_before = now - 1 min`, `not_after =
    /// now + ttl` (capped at the CA's own expiry) and a random 126-bit serial.
    pub fn sign_csr(&self, csr_pem: &str, id: &SpiffeId, ttl: Duration) -> Result<IssuedCert> {
        id.validate()?;
        if id.trust_domain != self.trust_domain {
            return Err(Error::WrongTrustDomain {
                id: id.to_string(),
                expected: self.trust_domain.clone(),
            });
        }
        if ttl < Duration::from_secs(1) {
            return Err(Error::InvalidTtl(format!(
                "{ttl:?} is shorter than one second"
            )));
        }
        let public_key = verified_csr_public_key(csr_pem, id)?;

        let now = OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap_or_else(|_| OffsetDateTime::now_utc());
        let mut not_after = now.saturating_add(ttl.try_into().unwrap_or(time::Duration::MAX));
        if not_after > self.signing_not_after {
            tracing::warn!(%id, "requested TTL exceeds the CA's lifetime; capping the leaf at the CA's expiry");
            not_after = self.signing_not_after;
        }
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.not_before = now - CLOCK_SKEW;
        params.not_after = not_after;
        params.serial_number = Some(random_serial(&self.provider)?);
        params.subject_alt_names = vec![SanType::URI(Ia5String::try_from(id.to_string())?)];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let leaf = params.signed_by(&public_key, &self.issuer)?;

        let chain_pem = pem::encode_certs(std::iter::once(leaf.der()).chain(self.chain.iter()));
        tracing::debug!(%id, ?ttl, "issued workload certificate");
        Ok(IssuedCert {
            cert_chain_pem: chain_pem,
            root_pem: self.root_pem.clone(),
            not_after: not_after.into(),
        })
    }

    /// Issues a throwaway leaf and checks it verifies against the roots, so a
    /// misconfigured CA (wrong chain, unmatched names) fails at startup instead
    /// of at the first handshake.
    fn self_test(&self) -> Result<()> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let csr = CertificateParams::default()
            .serialize_request(&key)?
            .pem()?;
        let id = SpiffeId::new(self.trust_domain.clone(), "weft-system", "ca-self-test")?;
        let issued = self.sign_csr(&csr, &id, Duration::from_secs(60))?;
        let chain = pem::parse_certs("self-test chain", &issued.cert_chain_pem)?;
        let mut store = RootCertStore::empty();
        let (_, ignored) = store.add_parsable_certificates(self.roots.iter().cloned());
        if ignored > 0 {
            return Err(Error::InvalidCa(format!(
                "{ignored} root certificate(s) are not usable trust anchors"
            )));
        }
        let leaf =
            ParsedCertificate::try_from(&chain[0]).map_err(|e| Error::InvalidCa(e.to_string()))?;
        verify_server_cert_signed_by_trust_anchor(
            &leaf,
            &store,
            &chain[1..],
            UnixTime::now(),
            self.provider.signature_verification_algorithms.all,
        )
        .map_err(|e| {
            Error::InvalidCa(format!(
                "issued certificates do not verify against the roots: {e}"
            ))
        })
    }
}

/// Parses a PEM CSR, checks its self-signature and returns its public key.
fn verified_csr_public_key(csr_pem: &str, id: &SpiffeId) -> Result<SubjectPublicKeyInfo> {
    let der = CertificateSigningRequestDer::from_pem_slice(csr_pem.as_bytes())
        .map_err(|e| Error::InvalidCsr(format!("not a PEM \"CERTIFICATE REQUEST\": {e}")))?;
    let (rest, csr) = X509CertificationRequest::from_der(der.as_ref())
        .map_err(|e| Error::InvalidCsr(format!("cannot parse: {e}")))?;
    if !rest.is_empty() {
        return Err(Error::InvalidCsr("trailing bytes after the request".into()));
    }
    csr.verify_signature().map_err(|_| Error::CsrSignature)?;
    let requested = requested_uris(&csr);
    if requested.iter().any(|u| *u != id.to_string()) {
        tracing::debug!(%id, ?requested, "CSR asked for other URI SANs; ignoring them");
    }
    SubjectPublicKeyInfo::from_der(csr.certification_request_info.subject_pki.raw)
        .map_err(|e| Error::InvalidCsr(format!("unsupported public key: {e}")))
}

fn requested_uris(csr: &X509CertificationRequest<'_>) -> Vec<String> {
    use x509_parser::extensions::{GeneralName, ParsedExtension};
    let Some(exts) = csr.requested_extensions() else {
        return Vec::new();
    };
    exts.filter_map(|e| match e {
        ParsedExtension::SubjectAlternativeName(san) => Some(san),
        _ => None,
    })
    .flat_map(|san| san.general_names.iter())
    .filter_map(|n| match n {
        GeneralName::URI(u) => Some((*u).to_owned()),
        _ => None,
    })
    .collect()
}

/// A random positive 126-bit serial number (RFC 5280 allows up to 20 octets).
fn random_serial(provider: &CryptoProvider) -> Result<SerialNumber> {
    let mut bytes = [0u8; 16];
    provider
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| Error::InvalidCa("system random number generator failed".into()))?;
    // Positive, and a fixed leading bit keeps the DER length constant.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

/// Generates a self-signed root: returns (cert PEM, PKCS#8 key PEM).
fn generate_root(trust_domain: &str) -> Result<(String, String)> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let now = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| OffsetDateTime::now_utc());
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "weft");
    dn.push(DnType::CommonName, format!("weft root CA ({trust_domain})"));
    params.distinguished_name = dn;
    params.not_before = now - CLOCK_SKEW;
    params.not_after = now + ROOT_VALIDITY;
    params.serial_number = Some(random_serial(&rustls::crypto::ring::default_provider())?);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}
