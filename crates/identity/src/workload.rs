//! Workload (proxy) side: a private key that never leaves the process, the CSR
//! sent to the control plane, and the resulting [`Identity`] used for mTLS.

use std::sync::Arc;
use std::time::SystemTime;

use rcgen::string::Ia5String;
use rcgen::{CertificateParams, DistinguishedName, KeyPair, SanType};
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::RootCertStore;

use crate::error::{Error, Result};
use crate::spiffe::SpiffeId;
use crate::{pem, x509};

/// A workload's private key (ECDSA P-256 when weft makes it). It is only ever handed to
/// rustls (and, inside
/// its [`Identity`], to the workload itself over the SPIFFE Workload API); there is
/// deliberately no other way to export it.
pub struct WorkloadKey {
    key: KeyPair,
}

impl std::fmt::Debug for WorkloadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkloadKey").finish_non_exhaustive()
    }
}

impl WorkloadKey {
    /// Generates a fresh ECDSA P-256 key.
    ///
    /// # Panics
    /// Only if the system random number generator fails, which ring treats as
    /// unrecoverable anyway.
    pub fn generate() -> WorkloadKey {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .expect("ECDSA P-256 key generation failed (system RNG unavailable?)");
        WorkloadKey { key }
    }

    /// A key some other issuer made (a SPIRE agent's X.509-SVID): unencrypted PKCS#8 DER.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<WorkloadKey> {
        Ok(WorkloadKey {
            key: KeyPair::try_from(der)?,
        })
    }

    /// A PEM CSR for `id`, signed by this key. The CA decides the identity
    /// itself; the SAN here is informational.
    pub fn csr_pem(&self, id: &SpiffeId) -> Result<String> {
        id.validate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = vec![SanType::URI(Ia5String::try_from(id.to_string())?)];
        Ok(params.serialize_request(&self.key)?.pem()?)
    }

    /// DER SubjectPublicKeyInfo of this key.
    pub fn public_key_der(&self) -> Vec<u8> {
        rcgen::PublicKeyData::subject_public_key_info(&self.key)
    }

    fn private_key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.serialize_der()))
    }
}

/// A workload's mesh identity: certificate chain, private key and trust anchors.
pub struct Identity {
    spiffe_id: SpiffeId,
    not_after: SystemTime,
    cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    roots: Vec<CertificateDer<'static>>,
    root_store: Arc<RootCertStore>,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity {
            spiffe_id: self.spiffe_id.clone(),
            not_after: self.not_after,
            cert_chain: self.cert_chain.clone(),
            key: self.key.clone_key(),
            roots: self.roots.clone(),
            root_store: self.root_store.clone(),
        }
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("spiffe_id", &self.spiffe_id.to_string())
            .field("not_after", &self.not_after)
            .field("chain_len", &self.cert_chain.len())
            .field("roots", &self.roots.len())
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Assembles an identity from the key and the CA's response.
    ///
    /// Checks that the leaf (first certificate of `cert_chain_pem`) carries
    /// exactly one SPIFFE URI SAN, that its public key is `key`'s, and that the
    /// chain verifies against `root_pem` right now.
    pub fn new(key: WorkloadKey, cert_chain_pem: &str, root_pem: &str) -> Result<Identity> {
        let cert_chain = pem::parse_certs("certificate chain", cert_chain_pem)?;
        let roots = pem::parse_certs("roots", root_pem)?;
        Identity::from_parts(key, cert_chain, roots)
    }

    /// An identity from an X.509-SVID as the SPIFFE Workload API hands it out: the chain
    /// (leaf first) and the bundle as concatenated DER certificates, the key as PKCS#8
    /// DER. The same checks as [`Identity::new`] apply.
    pub fn from_x509_svid(
        chain_der: &[u8],
        key_pkcs8_der: &[u8],
        bundle_der: &[u8],
    ) -> Result<Identity> {
        let key = WorkloadKey::from_pkcs8_der(key_pkcs8_der)?;
        Identity::from_parts(
            key,
            x509::split_der("X.509-SVID", chain_der)?,
            x509::split_der("bundle", bundle_der)?,
        )
    }

    fn from_parts(
        key: WorkloadKey,
        cert_chain: Vec<CertificateDer<'static>>,
        roots: Vec<CertificateDer<'static>>,
    ) -> Result<Identity> {
        let info = x509::inspect(&cert_chain[0])?;
        let spiffe_id = info.spiffe_id.ok_or(Error::MissingSpiffeId)?;
        if info.is_ca {
            return Err(Error::InvalidCertificate(
                "workload certificate must not be a CA".into(),
            ));
        }
        if info.spki != key.public_key_der() {
            return Err(Error::KeyMismatch("workload"));
        }
        let root_store = Arc::new(root_store(&roots)?);
        let provider = rustls::crypto::ring::default_provider();
        let leaf = ParsedCertificate::try_from(&cert_chain[0])
            .map_err(|e| Error::InvalidCertificate(e.to_string()))?;
        verify_server_cert_signed_by_trust_anchor(
            &leaf,
            &root_store,
            &cert_chain[1..],
            UnixTime::now(),
            provider.signature_verification_algorithms.all,
        )
        .map_err(|e| {
            Error::InvalidCertificate(format!("chain does not verify against the roots: {e}"))
        })?;
        Ok(Identity {
            spiffe_id,
            not_after: info.not_after,
            cert_chain,
            key: key.private_key_der(),
            roots,
            root_store,
        })
    }

    /// The SPIFFE id in the leaf certificate.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.spiffe_id
    }

    /// Expiry of the leaf certificate.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// Leaf first, then intermediates.
    pub fn cert_chain(&self) -> &[CertificateDer<'static>] {
        &self.cert_chain
    }

    /// Mesh trust anchors.
    pub fn roots(&self) -> &[CertificateDer<'static>] {
        &self.roots
    }

    /// The private key as unencrypted PKCS#8 DER. It exists for one use: handing the
    /// workload its own X.509-SVID over the SPIFFE Workload API (a Unix socket only the
    /// workload's user can open), as SPIRE's agent does. Nothing else exports it.
    pub fn private_key_pkcs8_der(&self) -> &[u8] {
        self.key.secret_der()
    }

    pub(crate) fn root_store(&self) -> Arc<RootCertStore> {
        self.root_store.clone()
    }

    pub(crate) fn private_key(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }
}

fn root_store(roots: &[CertificateDer<'static>]) -> Result<RootCertStore> {
    let mut store = RootCertStore::empty();
    for root in roots {
        store
            .add(root.clone())
            .map_err(|e| Error::InvalidCertificate(format!("unusable trust anchor: {e}")))?;
    }
    Ok(store)
}
