//! The sidecar's inbound listener: the downstream-authentication phase for peers. An mTLS
//! connection must present a certificate chaining to the mesh root and carrying a SPIFFE
//! id in our trust domain; the verified id then travels with every request on the
//! connection through the pipeline (to the local app), or with each TCP tunnel (CONNECT).
//! Plaintext connections are taken where the workload's PeerAuthentication allows them
//! (PERMISSIVE, DISABLE).

use super::pipeline::{handle, Conn, Side};
use crate::state::ProxyState;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, Instrument};

/// Accepts peer connections until the task is aborted. What a connection may speak comes
/// from the workload's PeerAuthentication: STRICT takes only mTLS, DISABLE only plaintext,
/// PERMISSIVE both — told apart by the first byte (a TLS handshake record is 0x16).
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
                let mtls = state
                    .config
                    .load()
                    .config
                    .inbound
                    .as_ref()
                    .map(|i| i.mtls.clone())
                    .unwrap_or_default();
                let mut first = [0u8; 1];
                let peeked = tokio::time::timeout(
                    super::server::TLS_HANDSHAKE_TIMEOUT,
                    tcp.peek(&mut first),
                );
                if !matches!(peeked.await, Ok(Ok(1))) {
                    return;
                }
                let local = tcp.local_addr().unwrap_or(peer);
                if first[0] == 0x16 {
                    if !mtls.accepts_mtls() {
                        debug!("TLS refused: PeerAuthentication DISABLE takes plaintext only");
                        return;
                    }
                    serve_mtls(tcp, peer, local, state).await;
                } else {
                    if !mtls.accepts_plaintext() {
                        // Plaintext clients end here (STRICT mTLS).
                        debug!("plaintext refused: PeerAuthentication STRICT takes mTLS only");
                        return;
                    }
                    serve_plaintext(tcp, peer, local, state).await;
                }
                drop(admitted);
            }
            .instrument(span),
        );
    }
}

/// A CONNECT request is a TCP tunnel from a peer sidecar ([`crate::tcp::inbound`]);
/// everything else is an HTTP request for the pipeline.
async fn dispatch(
    req: hyper::Request<hyper::body::Incoming>,
    state: &Arc<ProxyState>,
    conn: &Conn,
) -> hyper::Response<crate::body::Body> {
    if req.method() == hyper::Method::CONNECT {
        let peer = crate::tcp::inbound::TunnelPeer {
            peer_identity: conn.peer_identity.as_deref(),
            peer: conn.peer,
            local: conn.local,
            sni: conn.sni.as_deref(),
        };
        return crate::tcp::inbound::handle(req, state, &peer).await;
    }
    handle(req, state, conn).await
}

/// A plaintext peer (PERMISSIVE or DISABLE): HTTP/1.1 or h2c, no identity.
async fn serve_plaintext(
    tcp: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    state: Arc<ProxyState>,
) {
    let conn = Arc::new(Conn {
        peer,
        local,
        ..Conn::listener(Side::Inbound, "inbound", None)
    });
    let svc = hyper::service::service_fn(move |req| {
        let state = state.clone();
        let conn = conn.clone();
        async move { Ok::<_, std::convert::Infallible>(dispatch(req, &state, &conn).await) }
    });
    if let Err(e) = super::server::http_server()
        .serve_connection(TokioIo::new(tcp), svc)
        .await
    {
        debug!(error = %e, "plaintext inbound connection ended with error");
    }
}

/// An mTLS peer: the handshake must verify a certificate chaining to the mesh root with a
/// SPIFFE id in our trust domain; that id travels with every request on the connection.
async fn serve_mtls(tcp: TcpStream, peer: SocketAddr, local: SocketAddr, state: Arc<ProxyState>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(state.tls.current.load().server.clone());
    let handshake =
        tokio::time::timeout(super::server::TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp));
    let tls = match handshake
        .await
        .unwrap_or_else(|_| Err(std::io::Error::other("TLS handshake timed out")))
    {
        Ok(t) => t,
        Err(e) => {
            // Certificate-less and untrusted clients end here.
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
    let sni = tls.get_ref().1.server_name().map(Into::into);
    let conn = Arc::new(Conn {
        peer,
        peer_identity: Some(peer_id.into()),
        xfcc: Some(xfcc),
        local,
        sni,
        ..Conn::listener(Side::Inbound, "inbound", None)
    });
    let svc = hyper::service::service_fn(move |req| {
        let state = state.clone();
        let conn = conn.clone();
        async move { Ok::<_, std::convert::Infallible>(dispatch(req, &state, &conn).await) }
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
}
