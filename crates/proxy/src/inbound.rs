//! The sidecar's inbound side: mTLS (STRICT) listener for peer proxies. A peer must present
//! a certificate chaining to the mesh root with a SPIFFE id in our trust domain; requests
//! then go to the local app over plaintext HTTP/1.1 (pooled), with Istio's
//! `x-forwarded-client-cert` header naming the caller.

use crate::metrics::{service_name_ns, RequestLabels};
use crate::upstream::Body;
use crate::{local_response, Shared, PEER_HEADER};
use http::{HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpListener;
use tracing::{debug, Instrument};

/// Accepts peer connections until the task is aborted.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let (tcp, peer) = crate::serve::accept(&listener, "inbound").await;
        let shared = shared.clone();
        let span = tracing::info_span!("inbound_conn", peer = %peer, peer_identity = tracing::field::Empty);
        tokio::spawn(
            async move {
                let acceptor =
                    tokio_rustls::TlsAcceptor::from(shared.tls.current.load().server.clone());
                let handshake =
                    tokio::time::timeout(crate::serve::TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp));
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
                let peer_id: Arc<str> = peer_id.into();
                let svc = hyper::service::service_fn(move |req| {
                    let shared = shared.clone();
                    let peer_id = peer_id.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(handle(req, &shared, &peer_id).await)
                    }
                });
                let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                builder.timer(hyper_util::rt::TokioTimer::new());
                if let Err(e) = builder.serve_connection(TokioIo::new(tls), svc).await {
                    debug!(error = %e, "inbound connection ended with error");
                }
            }
            .instrument(span),
        );
    }
}

async fn handle(req: Request<Incoming>, shared: &Shared, peer_id: &str) -> Response<Body> {
    let start = Instant::now();
    let (mut parts, body) = req.into_parts();
    let mut labels = RequestLabels {
        reporter: "destination".into(),
        source_principal: peer_id.to_string(),
        destination_workload: shared.node.workload.clone(),
        destination_workload_namespace: shared.node.namespace.clone(),
        destination_principal: shared.identity_uri(),
        destination_version: shared.own_version(),
        request_protocol: "http".into(),
        connection_security_policy: "mutual_tls".into(),
        ..Default::default()
    };
    if let Some(meta) = parts.headers.remove(PEER_HEADER) {
        apply_peer_metadata(&mut labels, meta.to_str().unwrap_or(""), peer_id);
    }
    let (name, ns) = service_name_ns(&labels.destination_service);
    labels.destination_service_name = name;
    labels.destination_service_namespace = ns;

    let xfcc = format!("By={};URI={}", shared.identity_uri(), peer_id);
    parts.headers.insert(
        "x-forwarded-client-cert",
        HeaderValue::from_str(&xfcc).unwrap_or(HeaderValue::from_static("")),
    );
    let authority = parts.uri.authority().map(|a| a.to_string());
    if let Some(a) = &authority {
        if let Ok(v) = HeaderValue::from_str(a) {
            parts.headers.insert(http::header::HOST, v);
        }
    }
    let downstream_version = parts.version;
    let app = shared.app_addr.as_deref().unwrap_or("127.0.0.1:0");
    let pq = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    parts.uri = match format!("http://{app}{pq}").parse::<Uri>() {
        Ok(u) => u,
        Err(e) => return local_response(StatusCode::BAD_REQUEST, &format!("bad path: {e}")),
    };
    let h2 = shared
        .runtime
        .load()
        .config
        .inbound
        .as_ref()
        .is_some_and(|i| i.app_http2);
    let client = if h2 {
        parts.version = http::Version::HTTP_2;
        labels.request_protocol = if is_grpc(&parts.headers) {
            "grpc"
        } else {
            "http"
        }
        .into();
        &shared.app_client_h2
    } else {
        parts.version = http::Version::HTTP_11;
        &shared.app_client
    };
    let (resp, flags) = match client
        .request(Request::from_parts(parts, body.map_err(Into::into).boxed()))
        .await
    {
        Ok(resp) => {
            let (mut p, b) = resp.into_parts();
            p.version = downstream_version;
            crate::outbound::strip_hop_by_hop(&mut p.headers);
            (Response::from_parts(p, b.map_err(Into::into).boxed()), "-")
        }
        Err(e) => (
            local_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("local app at {app} unreachable: {e}"),
            ),
            "UF",
        ),
    };
    labels.response_code = resp.status().as_u16().to_string();
    labels.response_flags = flags.into();
    let recorder = shared.metrics.finish_on_drop(labels, start);
    resp.map(|body| {
        crate::outbound::Held {
            inner: body,
            _pick: None,
            _recorder: Some(recorder),
            deadline: None,
        }
        .boxed()
    })
}

/// gRPC requests are labelled `request_protocol="grpc"`, as Istio does.
pub(crate) fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// Fills source labels from the caller's `x-weft-peer` metadata. The caller is only trusted
/// about what its certificate does not already say: a claimed namespace that differs from
/// the certificate's is ignored wholesale, and values are length-capped so a peer cannot
/// blow up metric cardinality with huge labels.
fn apply_peer_metadata(labels: &mut RequestLabels, meta: &str, peer_id: &str) {
    const MAX: usize = 253;
    let cert_ns = peer_id
        .split("/ns/")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or("");
    let mut claimed = RequestLabels::default();
    for kv in meta.split(';') {
        let Some((k, v)) = kv.split_once('=') else {
            continue;
        };
        if v.len() > MAX {
            continue;
        }
        match k {
            "source_workload" => claimed.source_workload = v.into(),
            "source_namespace" => claimed.source_workload_namespace = v.into(),
            "source_version" => claimed.source_version = v.into(),
            "destination_service" => claimed.destination_service = v.into(),
            _ => {}
        }
    }
    if claimed.source_workload_namespace != cert_ns {
        labels.source_workload = "unknown".into();
        labels.source_workload_namespace = cert_ns.into();
        return;
    }
    labels.source_workload = claimed.source_workload;
    labels.source_workload_namespace = claimed.source_workload_namespace;
    labels.source_version = claimed.source_version;
    labels.destination_service = claimed.destination_service;
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEER: &str = "spiffe://cluster.local/ns/game/sa/player";

    #[test]
    fn peer_metadata_is_used_when_it_agrees_with_the_certificate() {
        let mut l = RequestLabels::default();
        apply_peer_metadata(&mut l, "source_workload=player-v1;source_namespace=game;source_version=v1;destination_service=inv.game.svc.cluster.local", PEER);
        assert_eq!(
            (
                l.source_workload.as_str(),
                l.source_workload_namespace.as_str()
            ),
            ("player-v1", "game")
        );
        assert_eq!(l.destination_service, "inv.game.svc.cluster.local");
    }

    #[test]
    fn a_namespace_the_certificate_does_not_back_is_ignored() {
        let mut l = RequestLabels::default();
        apply_peer_metadata(
            &mut l,
            "source_workload=admin;source_namespace=kube-system",
            PEER,
        );
        assert_eq!(
            (
                l.source_workload.as_str(),
                l.source_workload_namespace.as_str()
            ),
            ("unknown", "game")
        );
        let mut l = RequestLabels::default();
        let huge = format!(
            "source_workload={};source_namespace=game",
            "x".repeat(10_000)
        );
        apply_peer_metadata(&mut l, &huge, PEER);
        assert_eq!(l.source_workload, "", "oversized values are dropped");
    }
}
