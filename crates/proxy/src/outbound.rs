//! Plaintext HTTP listeners that route to the mesh: a gateway's server ports and a sidecar's
//! outbound listener. accept -> route (first match wins) -> weighted cluster -> LB pick ->
//! pooled mTLS HTTP/2 to the peer sidecar, retrying connect failures on other endpoints
//! (Istio's default policy retries connect-failure twice).

use crate::metrics::{service_name_ns, RequestLabels};
use crate::runtime::RequestView;
use crate::upstream::Body;
use crate::{local_response, Shared, PEER_HEADER};
use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tracing::{debug, Instrument};

/// Hop-by-hop headers never forwarded (and forbidden in HTTP/2).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
];

/// Serves one listener until its task is aborted.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, route_table: String) {
    let table: Arc<str> = route_table.into();
    loop {
        let (stream, peer) = crate::serve::accept(&listener, &table).await;
        let shared = shared.clone();
        let table = table.clone();
        let span = tracing::info_span!("downstream_conn", listener = %table, peer = %peer);
        tokio::spawn(
            async move {
                let svc = hyper::service::service_fn(move |req| {
                    let shared = shared.clone();
                    let table = table.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(handle(req, &shared, &table, peer).await)
                    }
                });
                let builder = crate::serve::http_server();
                if let Err(e) = builder.serve_connection(TokioIo::new(stream), svc).await {
                    debug!(error = %e, "downstream connection ended with error");
                }
            }
            .instrument(span),
        );
    }
}

async fn handle(
    req: Request<Incoming>,
    shared: &Arc<Shared>,
    table: &str,
    peer: std::net::SocketAddr,
) -> Response<Body> {
    let start = Instant::now();
    let mut labels = RequestLabels {
        reporter: "source".into(),
        source_workload: shared.node.workload.clone(),
        source_workload_namespace: shared.node.namespace.clone(),
        source_principal: shared.identity_uri(),
        source_version: shared.own_version(),
        request_protocol: if crate::inbound::is_grpc(req.headers()) {
            "grpc"
        } else {
            "http"
        }
        .into(),
        connection_security_policy: "unknown".into(),
        ..Default::default()
    };
    let (resp, flags) = route_and_forward(req, shared, table, peer, &mut labels).await;
    labels.response_code = resp.status().as_u16().to_string();
    labels.response_flags = flags.to_string();
    let recorder = shared.metrics.finish_on_drop(labels, start);
    resp.map(|body| {
        Held {
            inner: body,
            _pick: None,
            _recorder: Some(recorder),
            deadline: None,
        }
        .boxed()
    })
}

async fn route_and_forward(
    req: Request<Incoming>,
    shared: &Arc<Shared>,
    table: &str,
    peer: std::net::SocketAddr,
    labels: &mut RequestLabels,
) -> (Response<Body>, &'static str) {
    let runtime = shared.runtime.load_full();
    let authority = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_default();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .to_string();
    let Some(vhost) = runtime.tables.get(table).and_then(|t| t.vhost(&authority)) else {
        return (
            local_response(
                StatusCode::NOT_FOUND,
                &format!("no route: no virtual host for authority {authority:?}"),
            ),
            "NR",
        );
    };
    let scheme = req.uri().scheme_str().unwrap_or("http").to_string();
    let view = RequestView {
        path: &path,
        scheme: &scheme,
        method: req.method().as_str(),
        authority: &authority,
        headers: req.headers(),
    };
    let Some(route) = vhost.route(&view) else {
        return (
            local_response(
                StatusCode::NOT_FOUND,
                &format!("no route: nothing in {} matches {path}", vhost.name),
            ),
            "NR",
        );
    };
    let uri_matched = route.uri_matched(&view);
    let mut cors_origin: Option<String> = None;
    let (mut resp, flag) = 'routed: {
        // CORS (Envoy's filter runs before the router): answer preflights, remember the origin.
        if let (Some(cors), Some(origin)) = (
            &route.spec.cors,
            req.headers()
                .get(header::ORIGIN)
                .and_then(|v| v.to_str().ok()),
        ) {
            let allowed = route.cors_allowed(origin).map(str::to_string);
            let preflight = req.method() == http::Method::OPTIONS
                && req
                    .headers()
                    .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
            match (preflight, allowed) {
                (true, Some(origin)) => {
                    break 'routed (crate::rewrite::cors_preflight(cors, &origin), "-")
                }
                (true, None) if !cors.forward_unmatched_preflights => {
                    break 'routed (Response::new(full(Bytes::new())), "-");
                }
                (_, allowed) => cors_origin = allowed,
            }
        }
        if let Some(r) = &route.spec.redirect {
            let location =
                crate::rewrite::redirect_location(r, &scheme, &authority, &path, uri_matched);
            let resp = Response::builder()
                .status(StatusCode::from_u16(r.code).unwrap_or(StatusCode::MOVED_PERMANENTLY))
                .header(header::LOCATION, location)
                .body(full(Bytes::new()));
            break 'routed (
                resp.unwrap_or_else(|e| {
                    local_response(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())
                }),
                "-",
            );
        }
        if let Some(d) = &route.spec.direct_response {
            let resp = Response::builder()
                .status(StatusCode::from_u16(d.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
                .body(full(d.body.clone()));
            break 'routed (
                resp.unwrap_or_else(|e| {
                    local_response(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())
                }),
                "-",
            );
        }
        let mut delayed = false;
        if let Some(f) = &route.spec.fault {
            let roll = |percent: f64| percent > 0.0 && fastrand::f64() * 100.0 < percent;
            if let Some(ms) = f.delay_ms.filter(|_| roll(f.delay_percent)) {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                delayed = true;
            }
            if roll(f.abort_percent) {
                if let Some(code) = f.abort_grpc {
                    let resp = Response::builder()
                        .header(header::CONTENT_TYPE, "application/grpc")
                        .header("grpc-status", code.to_string())
                        .header("grpc-message", "fault filter abort")
                        .body(full(Bytes::new()))
                        .expect("static response parts are valid");
                    break 'routed (resp, if delayed { "DI,FI" } else { "FI" });
                }
                if let Some(status) = f.abort_status.and_then(|s| StatusCode::from_u16(s).ok()) {
                    break 'routed (
                        local_response(status, "fault filter abort"),
                        if delayed { "DI,FI" } else { "FI" },
                    );
                }
            }
        }
        let destination = route.pick_cluster();
        let Some(cluster) = destination.and_then(|d| runtime.clusters.get(&d.cluster)) else {
            break 'routed (
                local_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!("route {} has no destination with weight", route.spec.name),
                ),
                "NR",
            );
        };
        labels.destination_service = cluster.spec.service.clone();
        let (name, ns) = service_name_ns(&cluster.spec.service);
        labels.destination_service_name = name;
        labels.destination_service_namespace = ns;
        let timeout = route.spec.timeout_ms.map(Duration::from_millis);

        let (path, authority) = match &route.rewrite {
            Some(rw) => (
                rw.path(&path, uri_matched),
                rw.authority.clone().unwrap_or(authority),
            ),
            None => (path, authority),
        };
        let destination = destination.expect("a cluster was found for it");
        let hash = cluster
            .spec
            .hash
            .as_ref()
            .and_then(|k| hash_key(k, req.headers(), &path, peer));

        let (mut parts, body) = req.into_parts();
        let downstream_version = parts.version;
        strip_hop_by_hop(&mut parts.headers);
        parts.headers.remove(header::HOST);
        crate::rewrite::apply(&mut parts.headers, &route.spec.request_headers);
        crate::rewrite::apply(&mut parts.headers, &destination.request_headers);
        if !parts.headers.contains_key("x-request-id") {
            let id = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
            parts.headers.insert(
                "x-request-id",
                HeaderValue::from_str(&id).expect("hex is a valid header"),
            );
        }
        let peer = format!(
            "source_workload={};source_namespace={};source_version={};destination_service={}",
            shared.node.workload,
            shared.node.namespace,
            labels.source_version,
            cluster.spec.service
        );
        parts.headers.insert(
            PEER_HEADER,
            HeaderValue::from_str(&peer).unwrap_or(HeaderValue::from_static("")),
        );
        parts.uri = match Uri::builder()
            .scheme("http")
            .authority(authority.as_str())
            .path_and_query(path.as_str())
            .build()
        {
            Ok(u) => u,
            Err(e) => {
                break 'routed (
                    local_response(
                        StatusCode::BAD_REQUEST,
                        &format!("bad authority {authority:?}: {e}"),
                    ),
                    "DPE",
                )
            }
        };
        parts.version = http::Version::HTTP_2;

        let policy = &route.spec.retry;
        let replay = policy.attempts > 0 || !route.spec.mirrors.is_empty();
        let out = match crate::forward::Outgoing::new(
            parts.method,
            parts.uri,
            parts.headers,
            body,
            replay,
        )
        .await
        {
            Ok(o) => o,
            Err(e) => break 'routed (local_response(StatusCode::BAD_REQUEST, &e), "DPE"),
        };
        // Envoy starts the route timer once the downstream request is complete (buffered here).
        let deadline = timeout.and_then(|t| tokio::time::Instant::now().checked_add(t));
        for m in &route.spec.mirrors {
            if m.percent > 0.0 && fastrand::f64() * 100.0 < m.percent {
                // A mirror at its request limit is skipped, as Envoy's circuit breakers do.
                let cluster = runtime
                    .clusters
                    .get(&m.cluster)
                    .filter(|c| !c.lb.overflowing());
                if let (Some(c), Some(copy)) = (cluster, out.shadow()) {
                    crate::forward::mirror(shared.clone(), c.lb.clone(), m.cluster.clone(), copy);
                }
            }
        }
        let (resp, pick, flag) =
            crate::forward::forward(shared, cluster, out, policy, deadline, hash, labels).await;
        let (mut parts, body) = resp.into_parts();
        parts.version = downstream_version;
        strip_hop_by_hop(&mut parts.headers);
        crate::rewrite::apply(&mut parts.headers, &destination.response_headers);
        // The request stays active for LEAST_REQUEST until its body is done.
        let body = Held {
            inner: body,
            _pick: pick,
            _recorder: None,
            // The route timeout also covers the response body (Envoy's route timeout runs
            // until the upstream response is complete).
            deadline: deadline.map(|d| Box::pin(tokio::time::sleep_until(d))),
        };
        let flag = if delayed && flag == "-" { "DI" } else { flag };
        (Response::from_parts(parts, body.boxed()), flag)
    };
    // Route-level response headers and CORS apply to every response of the route, local
    // replies (redirects, direct responses, fault aborts, errors) included.
    crate::rewrite::apply(resp.headers_mut(), &route.spec.response_headers);
    if let (Some(cors), Some(origin)) = (&route.spec.cors, &cors_origin) {
        crate::rewrite::cors_response_headers(cors, origin, resp.headers_mut());
    }
    (resp, flag)
}

/// A response body that holds its LB pick (the endpoint's active-request count) and its
/// metrics recorder until the body is finished or dropped.
pub(crate) struct Held {
    pub inner: Body,
    pub _pick: Option<crate::lb::Pick>,
    /// Records the request's metrics when the body is done.
    pub _recorder: Option<crate::metrics::Recorder>,
    /// When the route timeout fires mid-body, the body ends with an error (the downstream
    /// stream is reset / the connection closed), as Envoy does once headers were sent.
    pub deadline: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl hyper::body::Body for Held {
    type Data = Bytes;
    type Error = crate::upstream::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, crate::upstream::BoxError>>> {
        use std::future::Future;
        use std::task::Poll;
        let frame = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if frame.is_pending() {
            if let Some(d) = self.deadline.as_mut() {
                if d.as_mut().poll(cx).is_ready() {
                    self.deadline = None;
                    self.inner = full(Bytes::new());
                    return Poll::Ready(Some(Err("upstream response timeout: the route timeout fired while the body was streaming".into())));
                }
            }
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// The consistent-hash key of a request (none when the header, cookie or parameter is
/// absent: the pick is then random, as in Envoy).
fn hash_key(
    key: &weft_model::HashKey,
    headers: &http::HeaderMap,
    path: &str,
    peer: std::net::SocketAddr,
) -> Option<u64> {
    use weft_model::HashKey;
    let value: Option<String> = match key {
        HashKey::Header(name) => headers
            .get(name.as_str())
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
        HashKey::Cookie(name) => headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.to_string()),
        HashKey::SourceIp => Some(peer.ip().to_string()),
        HashKey::QueryParameter(name) => path
            .split_once('?')
            .and_then(|(_, q)| {
                q.split('&')
                    .filter_map(|kv| kv.split_once('='))
                    .find(|(k, _)| k == name)
            })
            .map(|(_, v)| v.to_string()),
    };
    value.map(|v| crate::lb::stable_hash(v.as_bytes()))
}

/// Removes hop-by-hop headers, including those named in `Connection` (RFC 9110 7.6.1);
/// keeps `te: trailers`, the one TE value HTTP/2 allows (gRPC needs it).
pub fn strip_hop_by_hop(headers: &mut http::HeaderMap) {
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    for name in named {
        headers.remove(name.as_str());
    }
    let trailers = headers
        .get(header::TE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
        });
    for h in HOP_BY_HOP {
        headers.remove(*h);
    }
    if trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// A body from bytes, for locally generated responses.
pub fn full(b: impl Into<Bytes>) -> Body {
    http_body_util::Full::new(b.into())
        .map_err(|never| match never {})
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::{full, strip_hop_by_hop, Held};
    use bytes::Bytes;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn a_body_that_stalls_past_the_route_timeout_ends_with_an_error() {
        let stalled = http_body_util::StreamBody::new(futures_util::stream::pending::<
            Result<hyper::body::Frame<Bytes>, crate::upstream::BoxError>,
        >());
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(20);
        let mut held = Held {
            inner: stalled.boxed(),
            _pick: None,
            _recorder: None,
            deadline: Some(Box::pin(tokio::time::sleep_until(deadline))),
        };
        let err = held
            .frame()
            .await
            .expect("a frame")
            .expect_err("the timeout ends the body");
        assert!(err.to_string().contains("route timeout"), "{err}");
        let mut done = Held {
            inner: full("ok"),
            _pick: None,
            _recorder: None,
            deadline: Some(Box::pin(tokio::time::sleep_until(deadline))),
        };
        assert_eq!(
            done.frame().await.unwrap().unwrap().into_data().unwrap(),
            "ok",
            "a flowing body is untouched"
        );
    }

    #[test]
    fn hop_by_hop_headers_go_including_those_named_in_connection() {
        let mut h = http::HeaderMap::new();
        for (k, v) in [
            ("connection", "close, X-Internal"),
            ("x-internal", "secret"),
            ("keep-alive", "timeout=5"),
            ("te", "gzip, trailers"),
            ("x-kept", "1"),
        ] {
            h.insert(k, v.parse().unwrap());
        }
        strip_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(left, ["te", "x-kept"]);
        assert_eq!(
            h["te"], "trailers",
            "only `te: trailers` survives (HTTP/2 allows nothing else)"
        );
    }
}
