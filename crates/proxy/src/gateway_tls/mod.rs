//! Gateway HTTPS listeners (`Server.tls` SIMPLE, MUTUAL, OPTIONAL_MUTUAL, ISTIO_MUTUAL):
//! each connection's ClientHello picks the listener's TLS chain by SNI (Envoy's filter
//! chain match, [`weft_model::gateway_tls::select_chain`]) among the chains whose
//! certificates load; the handshake uses that chain's rustls config (ALPN h2 and
//! http/1.1, its versions, suites and client checks — [`configs`], [`verify`]); then
//! the connection's requests run the same pipeline as a plaintext gateway port, with the
//! chain's route table, `x-forwarded-proto: https` and, for a client certificate, its
//! principal (`source.principal`) and `x-forwarded-client-cert`. Gateway `TLS` servers
//! that terminate use [`handshake`] too, then their `tcp` routes (`tcp::outbound`).

pub mod configs;
pub mod verify;

pub use configs::TlsConfigs;

use crate::http::server::{http_server, TLS_HANDSHAKE_TIMEOUT};
use crate::http::{Conn, Side};
use crate::state::ProxyState;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn, Instrument};
use weft_model::gateway_tls::{select_chain, TlsChain};

/// Serves the HTTPS gateway listener `name` (config port `port`) until aborted.
pub async fn serve(listener: TcpListener, state: Arc<ProxyState>, name: String, port: u32) {
    loop {
        let (tcp, peer) = crate::tcp::accept(&listener, &name).await;
        let Some(admitted) = state.connections.admit() else {
            warn!(listener = %name, %peer, "downstream connection limit reached; refusing");
            continue;
        };
        let state = state.clone();
        let name = name.clone();
        let span = tracing::info_span!("downstream_tls_conn", listener = %name, peer = %peer);
        tokio::spawn(
            async move {
                let handshake = accept(tcp, peer, &state, &name, port);
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, handshake).await {
                    Ok(Some((tls, conn))) => serve_http(tls, conn, state).await,
                    Ok(None) => {}
                    Err(_) => debug!("TLS handshake timed out"),
                }
                drop(admitted);
            }
            .instrument(span),
        );
    }
}

/// Reports every TLS server of the live config whose certificate does not load (after
/// a push), as Istio leaves a server without its secret out of the listener.
pub fn report_unserved(state: &ProxyState) {
    let active = state.config.load_full();
    let mesh = state.tls.current.load_full();
    let http = active.config.listeners.iter().map(|l| (&l.name, &l.tls));
    let tcp = active
        .config
        .tcp_listeners
        .iter()
        .map(|l| (&l.name, &l.tls));
    for (name, tls) in http.chain(tcp) {
        for chain in tls.iter().flat_map(|t| &t.chains) {
            let error = state.gateway_tls.get(chain, &mesh).err();
            if state
                .gateway_tls
                .newly_unserved(&chain.name, error.as_deref())
            {
                state.emit(crate::events::Event::TlsServerUnserved {
                    listener: name.clone(),
                    server: chain.name.clone(),
                    error: error.unwrap_or_default(),
                });
            }
        }
    }
}

/// A terminated downstream connection.
pub type Tls = tokio_rustls::server::TlsStream<TcpStream>;

/// Reads the ClientHello, chooses the chain among `chains`, completes the handshake:
/// the stream, the SNI, and the chain it used.
pub async fn handshake<'c>(
    tcp: TcpStream,
    state: &ProxyState,
    chains: &'c [TlsChain],
) -> Option<(Tls, Option<String>, &'c TlsChain)> {
    let acceptor = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp);
    let start = match acceptor.await {
        Ok(s) => s,
        Err(e) => {
            debug!(error = %e, "not a TLS ClientHello");
            return None;
        }
    };
    let sni = start.client_hello().server_name().map(str::to_string);
    let mesh = state.tls.current.load_full();
    let usable = |i: usize| state.gateway_tls.get(&chains[i], &mesh).is_ok();
    let Some(i) = select_chain(chains, sni.as_deref(), usable) else {
        debug!(
            sni = sni.as_deref().unwrap_or("-"),
            "no TLS server on this port for this SNI"
        );
        return None;
    };
    let chain = &chains[i];
    let config = state.gateway_tls.get(chain, &mesh).ok()?;
    match start.into_stream(config).await {
        Ok(t) => Some((t, sni, chain)),
        Err(e) => {
            // Clients without a required certificate, or with one not trusted, end here.
            debug!(chain = %chain.name, error = %e, "TLS handshake failed");
            None
        }
    }
}

/// The handshake on an HTTPS listener, and the connection its requests share.
async fn accept(
    tcp: TcpStream,
    peer: SocketAddr,
    state: &Arc<ProxyState>,
    name: &str,
    port: u32,
) -> Option<(Tls, Conn)> {
    let local = tcp.local_addr().unwrap_or(peer);
    let active = state.config.load_full();
    let chains: &[TlsChain] = active
        .config
        .listeners
        .iter()
        .find(|l| l.name == name)
        .and_then(|l| l.tls.as_ref())
        .map_or(&[], |t| t.chains.as_slice());
    let (tls, sni, chain) = handshake(tcp, state, chains).await?;
    let client = tls.get_ref().1.peer_certificates().and_then(|c| c.first());
    let client = client.map(|leaf| verify::ClientCert::read(leaf.as_ref()));
    let conn = Conn {
        peer,
        local,
        https: true,
        sni: sni.map(Into::into),
        peer_identity: client.as_ref().and_then(|c| c.principal()).map(Into::into),
        xfcc: client.as_ref().and_then(|c| c.xfcc()),
        ..Conn::listener(Side::Gateway, &chain.route_table, u16::try_from(port).ok())
    };
    Some((tls, conn))
}

/// HTTP/1.1 or HTTP/2 (by ALPN) over the terminated connection, through the pipeline.
async fn serve_http(tls: Tls, conn: Conn, state: Arc<ProxyState>) {
    let conn = Arc::new(conn);
    let svc = hyper::service::service_fn(move |req| {
        let state = state.clone();
        let conn = conn.clone();
        async move {
            Ok::<_, std::convert::Infallible>(
                crate::http::pipeline::handle(req, &state, &conn).await,
            )
        }
    });
    if let Err(e) = http_server().serve_connection(TokioIo::new(tls), svc).await {
        debug!(error = %e, "downstream TLS connection ended with error");
    }
}
