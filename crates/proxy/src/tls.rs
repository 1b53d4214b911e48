//! The proxy's current workload identity and the rustls configs derived from it. The
//! certificate comes from the control plane's CA via a CSR (the private key never leaves
//! this process) and is renewed at half its lifetime; configs are rebuilt on every renewal.

use anyhow::Context;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use weft_identity::{Identity, PeerCheck, SpiffeId};

/// ALPN for mesh connections between proxies.
pub const MESH_ALPN: &[u8] = b"h2";

/// One generation of credentials.
pub struct Credentials {
    pub identity: Identity,
    /// The identity's SPIFFE URI, formatted once (it is on every request's labels).
    pub uri: String,
    pub server: Arc<rustls::ServerConfig>,
    /// Client configs by the peer identity they insist on.
    clients: Mutex<HashMap<String, Arc<rustls::ClientConfig>>>,
}

impl Credentials {
    pub fn new(identity: Identity) -> anyhow::Result<Credentials> {
        let server = weft_identity::server_config(&identity, &[MESH_ALPN])?;
        Ok(Credentials {
            uri: identity.spiffe_id().to_string(),
            identity,
            server,
            clients: Mutex::new(HashMap::new()),
        })
    }

    /// A client config that accepts only a peer presenting `peer` (a SPIFFE id).
    pub fn client_for(&self, peer: &str) -> anyhow::Result<Arc<rustls::ClientConfig>> {
        let mut clients = self.clients.lock().expect("client config cache poisoned");
        if let Some(c) = clients.get(peer) {
            return Ok(c.clone());
        }
        let id = SpiffeId::parse(peer).with_context(|| format!("endpoint identity {peer:?}"))?;
        let cfg =
            weft_identity::client_config(&self.identity, PeerCheck::Exact(vec![id]), &[MESH_ALPN])?;
        clients.insert(peer.to_string(), cfg.clone());
        Ok(cfg)
    }
}

/// The live credentials, swapped atomically on renewal.
pub struct TlsState {
    /// Read on every handshake; replaced only through [`TlsState::rotate`].
    pub current: ArcSwap<Credentials>,
    /// Counts rotations; whoever hands the credentials on (the Workload API's streams)
    /// waits on it instead of polling `current`.
    rotations: tokio::sync::watch::Sender<u64>,
}

/// How long to wait before renewing: half the remaining lifetime, at least 1 s.
pub fn renew_after(not_after: SystemTime) -> Duration {
    let left = not_after
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    (left / 2).max(Duration::from_secs(1))
}

impl TlsState {
    pub fn new(creds: Credentials) -> Arc<TlsState> {
        Arc::new(TlsState {
            current: ArcSwap::from_pointee(creds),
            rotations: tokio::sync::watch::Sender::new(0),
        })
    }

    /// Swaps in renewed credentials and wakes everyone subscribed.
    pub fn rotate(&self, creds: Credentials) {
        self.current.store(Arc::new(creds));
        self.rotations.send_modify(|n| *n += 1);
    }

    /// Changes whenever [`TlsState::rotate`] has swapped the credentials.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.rotations.subscribe()
    }
}

/// The certificates of a PEM file (at least one), for TLS files the config names.
pub(crate) fn pem_certs(
    path: &std::path::Path,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("certificate file {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "certificate file {}: no CERTIFICATE in it",
            path.display()
        ));
    }
    Ok(certs)
}
