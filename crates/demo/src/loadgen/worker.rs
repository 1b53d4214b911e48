//! Load generator workers: each owns one keep-alive HTTP/1.1 connection
//! (`hyper::client::conn::http1` over a tokio `TcpStream`), reconnects after
//! errors and records one [`Outcome`] per job it takes from the pacer.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Mutex};

use super::stats::{Outcome, Recorder};
use super::LoadRoute;
use crate::demo_app::VERSION_HEADER;

/// Connection establishment timeout.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Whole-request timeout (connect + request + response body).
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const USER_AGENT: &str = concat!("weft-loadgen/", env!("CARGO_PKG_VERSION"));

type Conn = SendRequest<Empty<Bytes>>;

/// Shared state handed to every worker.
pub(crate) struct WorkerCtx {
    pub(crate) target: SocketAddr,
    pub(crate) routes: Arc<Vec<LoadRoute>>,
    pub(crate) jobs: Arc<Mutex<mpsc::Receiver<usize>>>,
    pub(crate) recorder: Arc<Recorder>,
    pub(crate) stopping: Arc<AtomicBool>,
}

/// Builds the request for `route` (also used to validate routes up front).
pub(crate) fn build_request(route: &LoadRoute) -> Result<Request<Empty<Bytes>>, http::Error> {
    let mut b = Request::builder()
        .method(Method::GET)
        .uri(route.path.as_str())
        .header(header::HOST, route.authority.as_str())
        .header(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
    for (k, v) in &route.headers {
        b = b.header(k.as_str(), v.as_str());
    }
    b.body(Empty::new())
}

/// Worker loop: runs until the job channel closes or `stopping` is set.
pub(crate) async fn run_worker(ctx: Arc<WorkerCtx>) {
    let mut conn: Option<Conn> = None;
    loop {
        let job = { ctx.jobs.lock().await.recv().await };
        let Some(idx) = job else { break };
        if ctx.stopping.load(Ordering::Relaxed) {
            break;
        }
        let Some(route) = ctx.routes.get(idx) else {
            continue;
        };
        let outcome =
            match tokio::time::timeout(REQUEST_TIMEOUT, send_one(&mut conn, ctx.target, route))
                .await
            {
                Ok(Ok(o)) => o,
                Ok(Err(kind)) => {
                    conn = None;
                    Outcome::Error { kind }
                }
                Err(_) => {
                    conn = None;
                    Outcome::Error {
                        kind: "timeout".into(),
                    }
                }
            };
        ctx.recorder.record(idx, &outcome);
    }
}

async fn connect(target: SocketAddr) -> Result<Conn, String> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target))
        .await
        .map_err(|_| "connect: timeout".to_string())?
        .map_err(|e| format!("connect: {}", e.kind()))?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| hyper_error_kind(&e))?;
    // The driver ends once `sender` is dropped or the peer closes.
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "loadgen connection ended with error");
        }
    });
    Ok(sender)
}

/// Ensures a ready connection, reconnecting once if the pooled one went stale.
async fn ready_conn(conn: &mut Option<Conn>, target: SocketAddr) -> Result<&mut Conn, String> {
    if let Some(c) = conn.as_mut() {
        if c.is_closed() || c.ready().await.is_err() {
            *conn = None;
        }
    }
    if conn.is_none() {
        let mut fresh = connect(target).await?;
        fresh.ready().await.map_err(|e| hyper_error_kind(&e))?;
        *conn = Some(fresh);
    }
    conn.as_mut()
        .ok_or_else(|| "connect: no connection".to_string())
}

async fn send_one(
    conn: &mut Option<Conn>,
    target: SocketAddr,
    route: &LoadRoute,
) -> Result<Outcome, String> {
    let req = build_request(route).map_err(|e| format!("invalid request: {e}"))?;
    let sender = ready_conn(conn, target).await?;
    let start = Instant::now();
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| hyper_error_kind(&e))?;
    let status = resp.status().as_u16();
    let version = resp
        .headers()
        .get(VERSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    resp.into_body()
        .collect()
        .await
        .map_err(|e| hyper_error_kind(&e))?;
    Ok(Outcome::Response {
        status,
        latency: start.elapsed(),
        version,
    })
}

/// Short, stable error-kind label used as a key in the error counters.
fn hyper_error_kind(e: &hyper::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_incomplete_message() {
        "incomplete message"
    } else if e.is_closed() {
        "connection closed"
    } else if e.is_parse() {
        "parse error"
    } else if e.is_canceled() {
        "canceled"
    } else if e.is_user() {
        "user error"
    } else {
        "io error"
    };
    kind.to_string()
}
