//! A TCP listener (gateway `TCP` server, or a sidecar's outbound listener for one service
//! port): each connection is admitted, inspected for SNI when its routes ask, routed
//! ([`super::L4Table::decide`]), held against the cluster's `maxConnections`, given an
//! endpoint, tunnelled to the endpoint's sidecar within `connectTimeout`, and piped until
//! it ends or idles out. A connection that cannot be carried is closed at once and counted
//! with its Envoy flag (NR, UO, UH, UF).

use super::decide::{ConnView, L4Decision};
use super::pipe::{pipe, End};
use crate::state::ProxyState;
use crate::telemetry::ResponseFlags;
use crate::upstream::Outcome;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, Instrument};

/// Accepts connections on a TCP listener of the config until the task is aborted.
pub async fn serve(listener: TcpListener, state: Arc<ProxyState>, name: String) {
    loop {
        let (tcp, peer) = super::accept(&listener, &name).await;
        let Some(admitted) = state.connections.admit() else {
            tracing::warn!(%peer, listener = %name, "downstream connection limit reached; closing a TCP connection");
            continue;
        };
        let state = state.clone();
        let span = tracing::info_span!("tcp_conn", listener = %name, %peer);
        let name = name.clone();
        tokio::spawn(
            async move {
                connection(tcp, &state, &name).await;
                drop(admitted);
            }
            .instrument(span),
        );
    }
}

async fn connection(mut tcp: TcpStream, state: &Arc<ProxyState>, name: &str) {
    let cfg = state.config.load_full();
    let Some(table) = cfg.l4.get(name) else {
        return;
    };
    let local = tcp
        .local_addr()
        .map(|a| a.ip())
        .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into());
    // A gateway TLS server that terminates: the decrypted bytes are routed.
    let listener = cfg.config.tcp_listeners.iter().find(|l| l.name == name);
    if let Some(tls) = listener.and_then(|l| l.tls.as_ref()) {
        let handshake = crate::gateway_tls::handshake(tcp, state, &tls.chains);
        let limit = crate::http::server::TLS_HANDSHAKE_TIMEOUT;
        let Ok(Some((tls, sni, _))) = tokio::time::timeout(limit, handshake).await else {
            return;
        };
        let view = ConnView {
            sni: sni.as_deref(),
            destination: local,
        };
        return forward(tls, Vec::new(), &view, &cfg, table, state).await;
    }
    let (sni, first) = match table.sni {
        true => {
            let i = super::sni::inspect(&mut tcp).await;
            (i.sni, i.prefix)
        }
        false => (None, Vec::new()),
    };
    let view = ConnView {
        sni: sni.as_deref(),
        destination: local,
    };
    forward(tcp, first, &view, &cfg, table, state).await;
}

/// Routes a connection and pipes it to the chosen cluster; `first`: bytes already read.
async fn forward<D>(
    downstream: D,
    first: Vec<u8>,
    view: &ConnView<'_>,
    cfg: &crate::config::ActiveConfig,
    table: &super::L4Table,
    state: &Arc<ProxyState>,
) where
    D: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let tcp_metrics = &state.metrics.tcp;
    let L4Decision::Forward { route, cluster } = table.decide(view, table.next_roll()) else {
        debug!(sni = ?view.sni, "no TCP route matched; closing");
        tcp_metrics.refused(&cfg.own.source, ResponseFlags::NO_ROUTE_FOUND);
        return;
    };
    let Some(live) = cfg.clusters.get(cluster) else {
        tcp_metrics.refused(&cfg.own.source, ResponseFlags::NO_ROUTE_FOUND);
        return;
    };
    let pool = &live.spec.tcp;
    // `maxConnections` is the cluster's: TCP connections and HTTP/1.1 requests share it.
    let Some(slot) = live.lb.limits.try_slot() else {
        debug!(%cluster, "tcp.maxConnections reached; closing (UO)");
        crate::telemetry::ClusterStats::inc(&live.labels.stats.cx_overflow);
        tcp_metrics.refused(&live.labels.cluster, ResponseFlags::UPSTREAM_OVERFLOW);
        return;
    };
    let Some(mut pick) = live.lb.pick() else {
        tcp_metrics.refused(&live.labels.cluster, ResponseFlags::NO_HEALTHY_UPSTREAM);
        return;
    };
    pick.slot = slot;
    let peers = live
        .labels
        .endpoints
        .get(pick.index)
        .cloned()
        .unwrap_or_else(|| live.labels.cluster.clone());
    // The authority names the service and port the app asked for (a gateway: the
    // destination cluster's).
    let authority = format!("{}:{}", live.spec.service, live.spec.port);
    let connect = async {
        let upstream: crate::upstream::h1::Io = match &live.egress {
            Some(egress) => {
                // Resolution NONE on a TLS port: where the ClientHello's SNI says.
                let sni = view.sni.map(|s| format!("{s}:{}", live.spec.port));
                let addr = egress.target(&pick.endpoint, sni.as_deref());
                egress
                    .connect(&addr)
                    .await
                    .map_err(super::tunnel::TunnelError::Direct)?
            }
            None => {
                let peer = &live.labels.peer_header;
                let tunnel = super::tunnel::open(state, &pick.endpoint, &authority, peer).await?;
                Box::new(TokioIo::new(tunnel))
            }
        };
        Ok::<_, super::tunnel::TunnelError>(upstream)
    };
    let timeout = Duration::from_millis(pool.connect_timeout_ms);
    let upstream = match tokio::time::timeout(timeout, connect).await {
        Ok(Ok(up)) => up,
        Ok(Err(e)) if e.refused() => {
            debug!(%route, %cluster, error = %e, "the peer refused the TCP tunnel; closing");
            tcp_metrics.refused(&peers, ResponseFlags::NONE);
            return;
        }
        failed => {
            let (error, flag) = match failed {
                Ok(Err(e)) => {
                    let flag = match &e {
                        super::tunnel::TunnelError::Direct(io)
                            if crate::upstream::egress::dns::Unresolved::is(io) =>
                        {
                            ResponseFlags::DNS_RESOLUTION_FAILED
                        }
                        _ => ResponseFlags::UPSTREAM_CONNECTION_FAILURE,
                    };
                    (e.to_string(), flag)
                }
                _ => (
                    format!("connecting took longer than {timeout:?} (connectTimeout)"),
                    ResponseFlags::UPSTREAM_CONNECTION_FAILURE,
                ),
            };
            debug!(%route, %cluster, endpoint = %pick.endpoint.address, %error, flags = %flag.render(), "TCP connection upstream failed");
            live.lb.report(&pick, Outcome::LocalFailure);
            tcp_metrics.refused(&peers, flag);
            return;
        }
    };
    let mut rec = tcp_metrics.open(peers);
    let idle = pool.idle_timeout_ms.map(Duration::from_millis);
    let end = pipe(downstream, upstream, &first, idle, &mut rec).await;
    if end == End::Idle {
        debug!(%route, %cluster, "TCP connection idle past its timeout; closed");
    }
    drop(pick);
}
