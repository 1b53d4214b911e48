//! Mesh workload identity for weft: SPIFFE ids, the control-plane CA that signs
//! workload CSRs into X.509-SVIDs, the workload-side key/identity, and rustls
//! configurations for SPIFFE-authorised mutual TLS.
//!
//! Flow: the proxy creates a [`WorkloadKey`], sends [`WorkloadKey::csr_pem`] to
//! the control plane, which decides the workload's [`SpiffeId`] from its registry
//! and calls [`Ca::sign_csr`]; the proxy turns the answer into an [`Identity`]
//! and builds [`server_config`] / [`client_config`] from it.
//!
//! ```
//! # fn main() -> weft_identity::Result<()> {
//! use std::time::Duration;
//! use weft_identity::*;
//!
//! # let dir = std::env::temp_dir().join(format!("weft-identity-doc-{}", std::process::id()));
//! let ca = Ca::load_or_create(&dir, "cluster.local")?;            // control plane
//! let key = WorkloadKey::generate();                              // proxy
//! let id: SpiffeId = "spiffe://cluster.local/ns/necpgame/sa/player".parse()?;
//! let issued = ca.sign_csr(&key.csr_pem(&id)?, &id, Duration::from_secs(86_400))?;
//! let identity = Identity::new(key, &issued.cert_chain_pem, &issued.root_pem)?;
//! assert_eq!(identity.spiffe_id(), &id);
//! let _server = server_config(&identity, &[b"h2"])?;
//! let _client = client_config(&identity, PeerCheck::TrustDomain, &[b"h2"])?;
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod ca;
mod error;
mod files;
mod pem;
mod spiffe;
mod tls;
mod workload;
mod x509;

pub use ca::{Ca, IssuedCert, ROOT_CERT_FILE, ROOT_KEY_FILE};
pub use error::{Error, Result};
pub use spiffe::{SpiffeId, SpiffeIdError};
pub use tls::{client_config, install_default_provider, peer_spiffe_id, server_config, PeerCheck};
pub use workload::{Identity, WorkloadKey};
