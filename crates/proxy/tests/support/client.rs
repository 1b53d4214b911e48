//! A tiny HTTP/1.1 client (one connection per request) and admin/metrics helpers.

use super::within;
use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;

/// A response, fully read.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// `GET path` to `addr` with `Host: host`.
pub async fn get(addr: SocketAddr, host: &str, path: &str) -> Resp {
    let req = Request::get(path)
        .header(http::header::HOST, host)
        .body(Full::new(Bytes::new()))
        .unwrap();
    send(addr, req).await
}

/// Sends `req` over a fresh HTTP/1.1 connection and reads the whole response. Panics if
/// the connection fails (a proxy always answers with a status).
pub async fn send(addr: SocketAddr, req: Request<Full<Bytes>>) -> Resp {
    try_send(addr, req)
        .await
        .unwrap_or_else(|e| panic!("request to {addr} failed: {e}"))
}

/// Like [`send`], but returns transport errors (reset, closed, body cut off).
pub async fn try_send(addr: SocketAddr, req: Request<Full<Bytes>>) -> Result<Resp, String> {
    let what = format!("{} {} via {addr}", req.method(), req.uri());
    within(&what, async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let conn = tokio::spawn(conn);
        let result = async {
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| format!("request: {e}"))?;
            let (parts, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| format!("response body: {e}"))?
                .to_bytes();
            Ok(Resp {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            })
        }
        .await;
        conn.abort();
        result
    })
    .await
}

/// `GET path` on a proxy's admin address.
pub async fn admin(addr: SocketAddr, path: &str) -> Resp {
    get(addr, "admin", path).await
}

/// The proxy's Prometheus exposition (`/stats/prometheus`).
pub async fn stats(admin_addr: SocketAddr) -> String {
    admin(admin_addr, "/stats/prometheus").await.body
}

/// Sum of the samples of `metric` (e.g. `istio_requests_total`) whose labels include
/// every `(name, value)` pair.
pub fn sample_sum(stats: &str, metric: &str, labels: &[(&str, &str)]) -> f64 {
    stats
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(metric)?;
            let (labels_part, value) = match rest.strip_prefix('{') {
                Some(r) => r.rsplit_once("} ")?,
                None => ("", rest.strip_prefix(' ')?),
            };
            labels
                .iter()
                .all(|(k, v)| {
                    let pair = format!("{k}=\"{v}\"");
                    labels_part.starts_with(&pair) || labels_part.contains(&format!(",{pair}"))
                })
                .then(|| value.trim().parse::<f64>().ok())?
        })
        .sum()
}

/// Waits until the proxy's `istio_requests_total` with these labels reaches `n` and
/// returns the stats. (A proxy records a request when it drops the response body, which
/// can be a moment after the client has read it; this re-reads the stats a bounded number
/// of times, yielding in between, without sleeping.)
pub async fn requests_total(admin_addr: SocketAddr, labels: &[(&str, &str)], n: f64) -> String {
    let mut s = String::new();
    for _ in 0..1000 {
        s = stats(admin_addr).await;
        if sample_sum(&s, "istio_requests_total", labels) >= n {
            return s;
        }
        tokio::task::yield_now().await;
    }
    panic!("istio_requests_total{labels:?} never reached {n}; stats:\n{s}")
}
