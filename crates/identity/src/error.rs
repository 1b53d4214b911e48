//! Error type shared by every part of `weft-identity`.

use std::path::PathBuf;

use crate::spiffe::SpiffeIdError;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while minting, loading or using mesh identities.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being attempted (`"read"`, `"write"`, ...).
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A SPIFFE id was malformed.
    #[error(transparent)]
    SpiffeId(#[from] SpiffeIdError),

    /// PEM input could not be decoded, or held no usable section.
    #[error("invalid PEM ({what}): {reason}")]
    Pem {
        /// Which input was being decoded (e.g. `"certificate chain"`).
        what: &'static str,
        /// Why it was rejected.
        reason: String,
    },

    /// A certificate signing request was malformed or unsupported.
    #[error("invalid CSR: {0}")]
    InvalidCsr(String),

    /// A certificate signing request's self-signature did not verify, so the
    /// requester does not hold the private key of the key it asked to certify.
    #[error("invalid CSR: signature does not verify against the CSR's public key")]
    CsrSignature,

    /// The CA material (certificate, key, chain, roots) is unusable.
    #[error("invalid CA: {0}")]
    InvalidCa(String),

    /// A certificate was unusable (unparseable, wrong shape, bad chain, ...).
    #[error("invalid certificate: {0}")]
    InvalidCertificate(String),

    /// A certificate has no (or more than one) SPIFFE URI SAN.
    #[error("certificate does not carry exactly one valid SPIFFE URI SAN")]
    MissingSpiffeId,

    /// A private key does not belong to the certificate it was paired with.
    #[error("private key does not match the {0} certificate's public key")]
    KeyMismatch(&'static str),

    /// An identity outside the CA's trust domain was requested.
    #[error("refusing to issue {id}: this CA serves trust domain {expected:?}")]
    WrongTrustDomain {
        /// The requested identity.
        id: String,
        /// The CA's trust domain.
        expected: String,
    },

    /// A requested certificate lifetime was unusable.
    #[error("invalid certificate TTL: {0}")]
    InvalidTtl(String),

    /// Key generation, certificate generation or signing failed inside rcgen.
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),

    /// rustls refused a configuration.
    #[error("TLS configuration failed: {0}")]
    Tls(#[from] rustls::Error),

    /// The rustls certificate verifier could not be built.
    #[error("TLS verifier configuration failed: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
