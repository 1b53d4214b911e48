//! rustls configurations for mesh mTLS (TLS 1.3 only, ring provider).
//!
//! Both sides verify the peer chain against the mesh roots and then authorise
//! on the peer's SPIFFE id; DNS names are never consulted, because X.509-SVIDs
//! carry no DNS SANs. Clients may pass any `ServerName` (e.g. `"weft.mesh"`).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, OtherError,
    RootCertStore, ServerConfig, SignatureScheme,
};

use crate::error::Result;
use crate::spiffe::SpiffeId;
use crate::workload::Identity;
use crate::x509;

/// Which server identities a client accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerCheck {
    /// The server must present one of these SPIFFE ids.
    Exact(Vec<SpiffeId>),
    /// Any SPIFFE id in the client's own trust domain.
    TrustDomain,
}

/// Installs ring as the process-wide default rustls provider, for code paths
/// that use `ClientConfig::builder()`/`ServerConfig::builder()`. Does nothing if
/// a default is already installed.
pub fn install_default_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The SPIFFE id of a peer, from the single URI SAN of its leaf certificate
/// (`certs[0]`, as returned by `peer_certificates()`).
pub fn peer_spiffe_id(certs: &[CertificateDer<'_>]) -> Option<SpiffeId> {
    let leaf = certs.first()?;
    x509::parse(leaf).ok().and_then(|c| x509::spiffe_id_of(&c))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Server side of mesh mTLS: presents `identity`'s chain and requires a client
/// certificate that chains to the mesh roots and carries a SPIFFE id in
/// `identity`'s trust domain. Clients without a certificate fail the handshake.
pub fn server_config(identity: &Identity, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>> {
    let provider = provider();
    let inner =
        WebPkiClientVerifier::builder_with_provider(identity.root_store(), provider.clone())
            .build()?;
    let verifier = SpiffeClientVerifier {
        inner,
        trust_domain: identity.spiffe_id().trust_domain.clone(),
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(identity.cert_chain().to_vec(), identity.private_key())?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// Client side of mesh mTLS: presents `identity`'s chain, verifies the server
/// chain against the mesh roots (ignoring the server name) and authorises the
/// server's SPIFFE id per `expected_peer`.
pub fn client_config(
    identity: &Identity,
    expected_peer: PeerCheck,
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>> {
    let provider = provider();
    let verifier = SpiffeServerVerifier {
        roots: identity.root_store(),
        provider: provider.clone(),
        expected: match expected_peer {
            PeerCheck::Exact(ids) => Expected::AnyOf(ids),
            PeerCheck::TrustDomain => {
                Expected::TrustDomain(identity.spiffe_id().trust_domain.clone())
            }
        },
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(identity.cert_chain().to_vec(), identity.private_key())?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// Why a verified certificate was not authorised.
#[derive(thiserror::Error)]
enum PeerError {
    #[error("peer certificate has no valid SPIFFE id")]
    NoSpiffeId,
    #[error("peer SPIFFE id {0} is not in trust domain {1:?}")]
    WrongTrustDomain(SpiffeId, String),
    #[error("peer SPIFFE id {0} is not one of the expected identities")]
    Unexpected(SpiffeId),
}

// rustls renders `OtherError` with `{:?}`; make that the readable message.
impl std::fmt::Debug for PeerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

fn reject(e: PeerError) -> rustls::Error {
    tracing::debug!(error = %e, "rejecting mesh peer");
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
}

fn spiffe_id_or_reject(end_entity: &CertificateDer<'_>) -> Result<SpiffeId, rustls::Error> {
    peer_spiffe_id(std::slice::from_ref(end_entity)).ok_or_else(|| reject(PeerError::NoSpiffeId))
}

#[derive(Debug)]
enum Expected {
    AnyOf(Vec<SpiffeId>),
    TrustDomain(String),
}

#[derive(Debug)]
struct SpiffeServerVerifier {
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
    expected: Expected,
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        let id = spiffe_id_or_reject(end_entity)?;
        match &self.expected {
            Expected::AnyOf(ids) if !ids.contains(&id) => Err(reject(PeerError::Unexpected(id))),
            Expected::TrustDomain(td) if id.trust_domain != *td => {
                Err(reject(PeerError::WrongTrustDomain(id, td.clone())))
            }
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// WebPKI client verification plus a SPIFFE trust-domain check.
#[derive(Debug)]
struct SpiffeClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    trust_domain: String,
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
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
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let id = spiffe_id_or_reject(end_entity)?;
        if id.trust_domain != self.trust_domain {
            return Err(reject(PeerError::WrongTrustDomain(
                id,
                self.trust_domain.clone(),
            )));
        }
        Ok(verified)
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
