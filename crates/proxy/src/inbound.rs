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
        let Ok((tcp, peer)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let shared = shared.clone();
        let span = tracing::info_span!("inbound_conn", peer = %peer, peer_identity = tracing::field::Empty);
        tokio::spawn(
            async move {
                let acceptor =
                    tokio_rustls::TlsAcceptor::from(shared.tls.current.load().server.clone());
                let tls = match acceptor.accept(tcp).await {
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
                let builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
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
        for kv in meta.to_str().unwrap_or("").split(';') {
            match kv.split_once('=') {
                Some(("source_workload", v)) => labels.source_workload = v.into(),
                Some(("source_namespace", v)) => labels.source_workload_namespace = v.into(),
                Some(("source_version", v)) => labels.source_version = v.into(),
                Some(("destination_service", v)) => labels.destination_service = v.into(),
                _ => {}
            }
        }
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
    parts.version = http::Version::HTTP_11;
    let (resp, flags) = match shared
        .app_client
        .request(Request::from_parts(parts, body.boxed()))
        .await
    {
        Ok(resp) => {
            let (mut p, b) = resp.into_parts();
            p.version = downstream_version;
            for h in [
                "connection",
                "keep-alive",
                "transfer-encoding",
                "upgrade",
                "proxy-connection",
            ] {
                p.headers.remove(h);
            }
            (Response::from_parts(p, b.boxed()), "-")
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
    shared.metrics.record(&labels, start.elapsed());
    resp
}
