//! Pooled mTLS HTTP/2 connections to peer sidecars: one multiplexed connection per peer
//! address, verified against the identity the control plane says that endpoint has.

use crate::tls::TlsState;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::net::TcpStream;
use tracing::{debug, Instrument};

pub type Body = BoxBody<Bytes, hyper::Error>;

/// Why a connection to a peer could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect to {addr}: {source}")]
    Tcp {
        addr: String,
        source: std::io::Error,
    },
    #[error("mTLS handshake with {addr} (expecting {identity}): {source}")]
    Tls {
        addr: String,
        identity: String,
        source: std::io::Error,
    },
    #[error("HTTP/2 handshake with {addr}: {source}")]
    H2 { addr: String, source: hyper::Error },
    #[error("credentials: {0}")]
    Credentials(anyhow::Error),
}

type Slot = Arc<tokio::sync::Mutex<Option<SendRequest<Body>>>>;

/// Connection pool keyed by peer address.
pub struct PeerPool {
    tls: Arc<TlsState>,
    slots: Mutex<HashMap<String, Slot>>,
}

impl PeerPool {
    pub fn new(tls: Arc<TlsState>) -> PeerPool {
        PeerPool {
            tls,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// A ready HTTP/2 sender to `addr`, reusing the pooled connection when it is alive.
    pub async fn get(&self, addr: &str, identity: &str) -> Result<SendRequest<Body>, ConnectError> {
        let slot = self
            .slots
            .lock()
            .expect("pool poisoned")
            .entry(addr.to_string())
            .or_default()
            .clone();
        let mut guard = slot.lock().await;
        if let Some(s) = guard.as_ref() {
            if !s.is_closed() && s.is_ready() {
                return Ok(s.clone());
            }
        }
        let sender = self.connect(addr, identity).await?;
        *guard = Some(sender.clone());
        Ok(sender)
    }

    /// Forgets the pooled connection to `addr` (after it failed).
    pub fn evict(&self, addr: &str) {
        self.slots.lock().expect("pool poisoned").remove(addr);
    }

    async fn connect(&self, addr: &str, identity: &str) -> Result<SendRequest<Body>, ConnectError> {
        let creds = self.tls.current.load_full();
        let cfg = creds
            .client_for(identity)
            .map_err(ConnectError::Credentials)?;
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|source| ConnectError::Tcp {
                addr: addr.into(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        let name =
            rustls::pki_types::ServerName::try_from("weft.mesh").expect("static name is valid");
        let tls = tokio_rustls::TlsConnector::from(cfg)
            .connect(name, tcp)
            .await
            .map_err(|source| ConnectError::Tls {
                addr: addr.into(),
                identity: identity.into(),
                source,
            })?;
        let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .handshake(TokioIo::new(tls))
            .await
            .map_err(|source| ConnectError::H2 {
                addr: addr.into(),
                source,
            })?;
        let span = tracing::info_span!("upstream_conn", peer = %addr, identity = %identity);
        tokio::spawn(
            async move {
                if let Err(e) = conn.await {
                    debug!(error = %e, "upstream connection closed with error");
                }
            }
            .instrument(span),
        );
        Ok(sender)
    }
}
