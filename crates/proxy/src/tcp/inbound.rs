//! The server side of a tunnel: an HTTP/2 CONNECT stream on the sidecar's inbound
//! listener. The port the authority names must be one of the workload's TCP ports; the
//! connection is authorized as Istio's TCP filter does (the peer's verified identity,
//! addresses, port, SNI — `weft_model::authz_tcp`) and, if denied, refused before any byte
//! reaches the app. Otherwise the app's address is dialled and the stream is piped to it.

use super::pipe::pipe;
use crate::body::{self, Body};
use crate::state::ProxyState;
use crate::telemetry::{PeerLabels, ResponseFlags};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tracing::{debug, Instrument};
use weft_model::mtls::InboundMode;

/// Istio's default idle timeout of the inbound TCP proxy.
const INBOUND_IDLE: Duration = Duration::from_secs(3600);
/// Connect timeout to the local app.
const APP_CONNECT: Duration = Duration::from_secs(10);

fn status(code: StatusCode) -> Response<Body> {
    let mut r = Response::new(body::empty());
    *r.status_mut() = code;
    r
}

/// Who opened a tunnel, as the inbound listener authenticated the connection it came on.
#[derive(Debug, Clone, Copy)]
pub struct TunnelPeer<'a> {
    /// The mTLS peer's SPIFFE id; `None` on a plaintext connection.
    pub peer_identity: Option<&'a str>,
    pub peer: std::net::SocketAddr,
    /// The address the connection was accepted on.
    pub local: std::net::SocketAddr,
    pub sni: Option<&'a str>,
}

/// The caller's labels (reporter=destination), as for HTTP requests.
fn labels(state: &ProxyState, conn: &TunnelPeer, meta: Option<&HeaderValue>) -> Arc<PeerLabels> {
    let cfg = state.config.load();
    let Some(peer_id) = conn.peer_identity else {
        return cfg.own.plaintext.clone();
    };
    let mut l = cfg.own.destination.clone();
    l.source_principal = peer_id.to_string();
    let meta = meta.and_then(|m| m.to_str().ok()).unwrap_or("");
    crate::telemetry::peer::apply_peer_metadata(&mut l, meta, peer_id);
    state.metrics.intern(l)
}

/// Answers one CONNECT request; on 200 the tunnel is piped to the app in a task of its own.
pub async fn handle(
    req: Request<Incoming>,
    state: &Arc<ProxyState>,
    conn: &TunnelPeer<'_>,
) -> Response<Body> {
    let cfg = state.config.load_full();
    let peers = labels(
        state,
        conn,
        req.headers().get(crate::telemetry::PEER_HEADER),
    );
    let tcp_metrics = &state.metrics.tcp;
    let port = req
        .uri()
        .authority()
        .and_then(|a| a.port_u16())
        .filter(|p| {
            cfg.config
                .inbound
                .as_ref()
                .is_some_and(|i| i.tcp_ports.contains(&u32::from(*p)))
        });
    let Some(port) = port else {
        debug!(authority = ?req.uri().authority(), "CONNECT to a port that is not a TCP port of this workload");
        tcp_metrics.refused(&peers, ResponseFlags::NO_ROUTE_FOUND);
        return status(StatusCode::BAD_REQUEST);
    };
    let mtls = cfg.config.inbound.as_ref().map(|i| &i.mtls);
    if conn.peer_identity.is_none()
        && mtls.is_some_and(|m| m.for_port(u32::from(port)) == InboundMode::Strict)
    {
        debug!(port, "plaintext tunnel to a STRICT port refused");
        tcp_metrics.refused(&peers, ResponseFlags::NONE);
        return status(StatusCode::FORBIDDEN);
    }
    let headers = HeaderMap::new();
    let input = crate::authz::Input {
        peer: conn.peer_identity,
        source_ip: conn.peer.ip(),
        remote_ip: conn.peer.ip(),
        destination_ip: conn.local.ip(),
        destination_port: port,
        host: "",
        method: "",
        path: "",
        headers: &headers,
        sni: conn.sni,
        jwt: None,
    };
    let verdict = cfg.authz_tcp.evaluate(&input);
    for sh in &verdict.shadow {
        let policy = sh.policy.as_deref().unwrap_or("no dry-run policy matched");
        state.metrics.authz(policy, sh.denied, true);
        tracing::info!(
            dry_run = true,
            policy,
            denied = sh.denied,
            port,
            peer = input.peer.unwrap_or("-"),
            "TCP authorization dry-run"
        );
    }
    if let Some(policy) = verdict.denied {
        state.metrics.authz(&policy, true, false);
        debug!(%policy, port, peer = input.peer.unwrap_or("-"), "TCP connection denied by authorization policy");
        tcp_metrics.refused(&peers, ResponseFlags::NONE);
        return status(StatusCode::FORBIDDEN);
    }
    let Some(app) = state
        .app_for(&cfg, Some(u32::from(port)))
        .map(|a| a.into_owned())
    else {
        tcp_metrics.refused(&peers, ResponseFlags::NO_ROUTE_FOUND);
        return status(StatusCode::SERVICE_UNAVAILABLE);
    };
    let dialled = tokio::time::timeout(APP_CONNECT, TcpStream::connect(&app)).await;
    let app_conn = match dialled {
        Ok(Ok(c)) => c,
        failed => {
            debug!(%app, ?failed, "cannot connect to the app for a TCP tunnel");
            tcp_metrics.refused(&peers, ResponseFlags::UPSTREAM_CONNECTION_FAILURE);
            return status(StatusCode::SERVICE_UNAVAILABLE);
        }
    };
    let _ = app_conn.set_nodelay(true);
    let mut rec = tcp_metrics.open(peers);
    let span = tracing::info_span!("tcp_tunnel", port, %app);
    tokio::spawn(
        async move {
            match hyper::upgrade::on(req).await {
                Ok(tunnel) => {
                    pipe(
                        TokioIo::new(tunnel),
                        app_conn,
                        &[],
                        Some(INBOUND_IDLE),
                        &mut rec,
                    )
                    .await;
                }
                Err(e) => debug!(error = %e, "the tunnel closed before it was upgraded"),
            }
        }
        .instrument(span),
    );
    status(StatusCode::OK)
}
