//! Phase 1 of the pipeline, who is calling: on a sidecar's inbound side the mTLS peer
//! (verified at the handshake) and the workload metadata its proxy sent, trusted only as
//! far as the certificate backs it, turned into the source labels of the request's
//! metrics; and the per-connection cache of those labels.

use super::pipeline::{Conn, Side};
use crate::config::ActiveConfig;
use crate::state::ProxyState;
use crate::telemetry::{PeerLabels, Record};
use http::{HeaderValue, Request};
use hyper::body::Incoming;
use std::sync::{Arc, Mutex};

/// The labels of the last peer metadata seen on a connection (a peer proxy sends the same
/// value on every request for one service).
#[derive(Debug, Default)]
pub struct PeerCache(Mutex<Option<(HeaderValue, Arc<PeerLabels>)>>);

impl Clone for PeerCache {
    fn clone(&self) -> Self {
        PeerCache::default()
    }
}

impl PeerCache {
    fn get(&self, meta: &HeaderValue, make: impl FnOnce() -> Arc<PeerLabels>) -> Arc<PeerLabels> {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((m, l)) = slot.as_ref() {
            if m == meta {
                return l.clone();
            }
        }
        let labels = make();
        *slot = Some((meta.clone(), labels.clone()));
        labels
    }
}

/// Phase 1: who is calling. Inbound: the mTLS peer (verified at the handshake) and the
/// workload metadata its proxy sent, trusted only as far as the certificate backs it.
pub(super) fn authenticate(
    req: &Request<Incoming>,
    cfg: &ActiveConfig,
    conn: &Conn,
    state: &ProxyState,
    rec: &mut Record,
) {
    // A gateway's client certificate is not a mesh peer: no peer metadata is trusted.
    let Some(peer_id) = conn
        .peer_identity
        .as_ref()
        .filter(|_| conn.side == Side::Inbound)
    else {
        if conn.side == Side::Inbound {
            rec.peers = cfg.own.plaintext.clone();
        }
        return;
    };
    let none = HeaderValue::from_static("");
    let meta = req
        .headers()
        .get(crate::telemetry::PEER_HEADER)
        .unwrap_or(&none);
    rec.peers = conn.peer_labels.get(meta, || {
        let mut l = cfg.own.destination.clone();
        l.source_principal = peer_id.to_string();
        crate::telemetry::peer::apply_peer_metadata(&mut l, meta.to_str().unwrap_or(""), peer_id);
        state.metrics.intern(l)
    });
}
