//! HTTP/2 to services outside the mesh (a `GRPC`/`HTTP2` port): one multiplexed
//! connection per destination address, made with the cluster's connector (TLS with ALPN
//! `h2` when it originates TLS, prior knowledge otherwise), replaced when it closes.

use crate::body::Body;
use crate::upstream::h1::Io;
use crate::upstream::TryError;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::collections::HashMap;
use std::sync::Mutex;
use tracing::debug;

/// Most destinations with a connection of their own; closed ones are dropped beyond it.
const MAX_DESTINATIONS: usize = 256;

/// HTTP/2 connections by destination address.
#[derive(Default)]
pub struct H2Conns {
    conns: Mutex<HashMap<String, SendRequest<Body>>>,
}

impl H2Conns {
    /// A ready connection to `addr`, if one is pooled.
    pub fn get(&self, addr: &str) -> Option<SendRequest<Body>> {
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        match conns.get(addr) {
            Some(s) if !s.is_closed() => Some(s.clone()),
            Some(_) => {
                conns.remove(addr);
                None
            }
            None => None,
        }
    }

    /// HTTP/2 over a fresh connection; pooled for the next requests.
    pub async fn handshake(&self, addr: &str, io: Io) -> Result<SendRequest<Body>, TryError> {
        let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(TokioIo::new(io))
            .await
            .map_err(|e| TryError::Connect {
                detail: format!("HTTP/2 handshake with {addr}: {e}"),
            })?;
        let peer = addr.to_string();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                debug!(destination = %peer, error = %e, "HTTP/2 connection outside the mesh ended with error");
            }
        });
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        if conns.len() >= MAX_DESTINATIONS {
            conns.retain(|_, s| !s.is_closed());
        }
        conns.insert(addr.to_string(), sender.clone());
        Ok(sender)
    }
}
