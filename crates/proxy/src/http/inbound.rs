//! The sidecar's inbound listener: the downstream-authentication phase for peers. Every
//! connection must complete mTLS (STRICT) with a certificate chaining to the mesh root and
//! carrying a SPIFFE id in our trust domain; the verified id then travels with every
//! request on the connection through the pipeline (to the local app).

use super::pipeline::{handle, Conn, Side};
use crate::state::ProxyState;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::sync::Arc;
use tokio::net::TcpListener;
use tracing::{debug, Instrument};

/// Accepts peer connections until the task is aborted.
pub async fn serve(listener: TcpListener, state: Arc<ProxyState>) {
    loop {
        let (tcp, peer) = super::server::accept(&listener, "inbound").await;
        let Some(admitted) = state.connections.admit() else {
            tracing::warn!(%peer, "downstream connection limit reached; refusing a peer");
            continue;
        };
        let state = state.clone();
        let span = tracing::info_span!("inbound_conn", peer = %peer, peer_identity = tracing::field::Empty);
        tokio::spawn(
            async move {
                let acceptor =
                    tokio_rustls::TlsAcceptor::from(state.tls.current.load().server.clone());
                let handshake =
                    tokio::time::timeout(super::server::TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp));
                let tls = match handshake
                    .await
                    .unwrap_or_else(|_| Err(std::io::Error::other("TLS handshake timed out")))
                {
                    Ok(t) => t,
                    Err(e) => {
                        // Plaintext and certificate-less clients end here (STRICT mTLS).
                        debug!(error = %e, "inbound TLS handshake rejected");
                        return;
                    }
                };
                let peer_id = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(weft_identity::peer_spiffe_id)
                    .map(|id| id.to_string());
                let Some(peer_id) = peer_id else {
                    debug!("peer certificate has no SPIFFE id");
                    return;
                };
                tracing::Span::current().record("peer_identity", peer_id.as_str());
                let xfcc = crate::http::headers::xfcc(&state.identity_uri(), &peer_id);
                let (tcp, session) = tls.get_ref();
                let conn = Arc::new(Conn {
                    peer,
                    peer_identity: Some(peer_id.into()),
                    xfcc: Some(xfcc),
                    local: tcp.local_addr().unwrap_or(peer),
                    sni: session.server_name().map(Into::into),
                    ..Conn::listener(Side::Inbound, "inbound", None)
                });
                let svc = hyper::service::service_fn(move |req| {
                    let state = state.clone();
                    let conn = conn.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(handle(req, &state, &conn).await)
                    }
                });
                let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                builder
                    .timer(TokioTimer::new())
                    .max_header_list_size(super::server::MAX_HEAD_BYTES as u32)
                    .initial_connection_window_size(super::limits::PER_CONNECTION_BUFFER_BYTES)
                    .initial_stream_window_size(super::limits::PER_CONNECTION_BUFFER_BYTES);
                if let Err(e) = builder.serve_connection(TokioIo::new(tls), svc).await {
                    debug!(error = %e, "inbound connection ended with error");
                }
                drop(admitted);
            }
            .instrument(span),
        );
    }
}
