//! Demo workload: a tiny HTTP/1.1 + HTTP/2 (h2c prior knowledge) echo server
//! that plays one NECPGAME microservice behind the mesh.
//!
//! Every request is answered with a JSON description of what the workload saw
//! (service, version, own identity, method, path, host, the caller identity
//! taken from Istio's `x-forwarded-client-cert` header and a few selected
//! request headers). Special paths:
//!
//! * `/healthz` — `200 ok`, never delayed or fault-injected;
//! * `/status/<code>` — answers with `<code>` (200..=599), handy to force errors.
//!
//! Otherwise a configurable fraction of requests is answered `503` and every
//! response is delayed by a configurable (simulated) service latency.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::xfcc::peer_from_xfcc;

/// Request headers copied into the echo body.
pub const ECHOED_HEADERS: [&str; 4] = [
    "x-request-id",
    "x-forwarded-client-cert",
    "x-player-tier",
    "user-agent",
];

/// Response header carrying the service name.
pub const SERVICE_HEADER: &str = "x-weft-service";
/// Response header carrying the service version (read by the load generator).
pub const VERSION_HEADER: &str = "x-weft-version";

const MAX_REQUEST_BODY: usize = 1 << 20;
/// How long in-flight connections may take to finish after shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Configuration of one demo workload.
#[derive(Debug, Clone)]
pub struct DemoAppConfig {
    /// Listen address, usually `127.0.0.1:0`.
    pub listen: SocketAddr,
    /// Service name, e.g. `inventory`.
    pub service: String,
    /// Version label, e.g. `v2`.
    pub version: String,
    /// This workload's SPIFFE id, shown in responses.
    pub identity: Option<String>,
    /// Simulated service latency added to each response.
    pub latency: Duration,
    /// Fraction (0.0..=1.0) of requests answered with 503.
    pub error_rate: f64,
}

impl DemoAppConfig {
    /// Config on `127.0.0.1:0` with no identity, latency or errors.
    pub fn new(service: impl Into<String>, version: impl Into<String>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            service: service.into(),
            version: version.into(),
            identity: None,
            latency: Duration::ZERO,
            error_rate: 0.0,
        }
    }
}

/// Binds and serves until `shutdown` completes, then drains gracefully.
pub async fn run_demo_app(
    cfg: DemoAppConfig,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let (_addr, serve) = bind_demo_app_until(cfg, shutdown).await?;
    serve.await
}

/// Binds the listener and returns the bound address plus the serving future.
///
/// The future serves forever; dropping it stops the server immediately
/// (listener closed, all connections aborted). Use [`bind_demo_app_until`]
/// for a graceful shutdown.
pub async fn bind_demo_app(
    cfg: DemoAppConfig,
) -> anyhow::Result<(SocketAddr, impl Future<Output = anyhow::Result<()>>)> {
    bind_demo_app_until(cfg, std::future::pending()).await
}

/// Like [`bind_demo_app`], but the serving future stops accepting when
/// `shutdown` completes, lets open connections finish (bounded drain) and
/// resolves.
pub async fn bind_demo_app_until(
    cfg: DemoAppConfig,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<(SocketAddr, impl Future<Output = anyhow::Result<()>>)> {
    anyhow::ensure!(
        (0.0..=1.0).contains(&cfg.error_rate),
        "error_rate must be within 0.0..=1.0, got {}",
        cfg.error_rate
    );
    let listener = TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("binding demo app {} on {}", cfg.service, cfg.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(service = %cfg.service, version = %cfg.version, %addr, "demo app listening");
    Ok((addr, serve(listener, Arc::new(cfg), shutdown)))
}

async fn serve(
    listener: TcpListener,
    app: Arc<DemoAppConfig>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            Some(res) = conns.join_next(), if !conns.is_empty() => {
                if let Err(e) = res {
                    tracing::warn!(error = %e, "demo app connection task failed");
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    let task = serve_connection(
                        stream,
                        remote,
                        app.clone(),
                        builder.clone(),
                        stop_rx.clone(),
                    );
                    conns.spawn(task);
                }
                Err(e) => {
                    // e.g. EMFILE: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "demo app accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            remaining = conns.len(),
            "demo app drain timed out; aborting connections"
        );
        conns.shutdown().await;
    }
    tracing::info!(service = %app.service, "demo app stopped");
    Ok(())
}

async fn serve_connection(
    stream: TcpStream,
    remote: SocketAddr,
    app: Arc<DemoAppConfig>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let svc = service_fn(move |req| {
        let app = app.clone();
        async move { Ok::<_, Infallible>(handle(&app, req).await) }
    });
    let conn = builder.serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    let result = tokio::select! {
        res = conn.as_mut() => res,
        _ = async { let _ = stop.wait_for(|s| *s).await; } => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%remote, error = %e, "demo app connection ended with error");
    }
}

#[derive(Serialize)]
struct Echo<'a> {
    service: &'a str,
    version: &'a str,
    identity: Option<&'a str>,
    method: &'a str,
    /// The HTTP version this request arrived with (`HTTP/1.1`, `HTTP/2.0`).
    protocol: String,
    path: &'a str,
    host: Option<String>,
    peer: Option<String>,
    headers: BTreeMap<&'static str, String>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    status: u16,
    service: &'a str,
    version: &'a str,
}

fn header_string(headers: &HeaderMap, name: &str) -> Option<String> {
    let values: Vec<String> = headers
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}

/// Handles one request: echo JSON, health check, forced status or fault.
async fn handle(app: &DemoAppConfig, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    // Read (and discard) the body so HTTP/1 keep-alive connections stay usable.
    if Limited::new(body, MAX_REQUEST_BODY)
        .collect()
        .await
        .is_err()
    {
        return error_response(app, StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
    }
    let path = parts.uri.path();
    if path == "/healthz" {
        return respond(app, StatusCode::OK, "text/plain", Bytes::from_static(b"ok"));
    }
    if path == "/metrics" {
        return respond(
            app,
            StatusCode::OK,
            "text/plain; version=0.0.4",
            metrics(app).into(),
        );
    }
    SERVED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if !app.latency.is_zero() {
        tokio::time::sleep(app.latency).await;
    }
    let status = match path.strip_prefix("/status/") {
        Some(code) => match code.parse::<u16>().ok().filter(|c| (200..=599).contains(c)) {
            Some(code) => StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST),
            None => {
                return error_response(app, StatusCode::BAD_REQUEST, "status must be 200..=599")
            }
        },
        None if app.error_rate > 0.0 && fastrand::f64() < app.error_rate => {
            return error_response(app, StatusCode::SERVICE_UNAVAILABLE, "injected fault");
        }
        None => StatusCode::OK,
    };
    if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return respond(app, status, "application/json", Bytes::new());
    }
    let headers = ECHOED_HEADERS
        .iter()
        .filter_map(|&name| header_string(&parts.headers, name).map(|v| (name, v)))
        .collect();
    let host = header_string(&parts.headers, header::HOST.as_str())
        .or_else(|| parts.uri.authority().map(|a| a.to_string()));
    let peer = header_string(&parts.headers, "x-forwarded-client-cert")
        .as_deref()
        .and_then(peer_from_xfcc);
    let echo = Echo {
        service: &app.service,
        version: &app.version,
        identity: app.identity.as_deref(),
        method: parts.method.as_str(),
        protocol: format!("{:?}", parts.version),
        path: parts
            .uri
            .path_and_query()
            .map(|pq| pq.as_str())
            .unwrap_or(path),
        host,
        peer,
        headers,
    };
    let body = serde_json::to_vec(&echo).unwrap_or_default();
    respond(app, status, "application/json", body.into())
}

/// Requests this process's demo app has answered (other than `/healthz` and `/metrics`).
static SERVED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The app's own Prometheus page (what a sidecar merges when the WorkloadEntry says
/// `prometheus.io/scrape: "true"`).
fn metrics(app: &DemoAppConfig) -> String {
    let n = SERVED.load(std::sync::atomic::Ordering::Relaxed);
    let esc = |v: &str| v.replace('\\', "\\\\").replace('"', "\\\"");
    format!(
        "# HELP demo_app_requests_total Requests the demo app answered\n# TYPE demo_app_requests_total counter\ndemo_app_requests_total{{service=\"{}\",version=\"{}\"}} {n}\n",
        esc(&app.service),
        esc(&app.version)
    )
}

fn error_response(app: &DemoAppConfig, status: StatusCode, msg: &str) -> Response<Full<Bytes>> {
    let body = ErrorBody {
        error: msg,
        status: status.as_u16(),
        service: &app.service,
        version: &app.version,
    };
    let body = serde_json::to_vec(&body).unwrap_or_default();
    respond(app, status, "application/json", body.into())
}

fn respond(
    app: &DemoAppConfig,
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    for (name, value) in [
        (SERVICE_HEADER, &app.service),
        (VERSION_HEADER, &app.version),
    ] {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    }
    resp
}
