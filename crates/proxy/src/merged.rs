//! Metrics merging, as Istio's agent does on port 15020: one `/stats/prometheus` page with
//! the proxy's own metrics and, when the workload asks for it (`prometheus.io/scrape:
//! "true"` with `prometheus.io/port|path`), its app's metrics scraped at that moment. A
//! failing app scrape never breaks the page: the proxy's part is served and the failure
//! is counted (`istio_agent_scrape_failures_total{type="application"}`).

use crate::body::{full, Body};
use crate::state::ProxyState;
use crate::telemetry::exposition::CONTENT_TYPE;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Where to serve the merged page and what to merge.
#[derive(Debug, Clone)]
pub struct MergedMetrics {
    pub listen: SocketAddr,
    /// The app's metrics (`prometheus.io/scrape: "true"`); `None`: the proxy's only.
    pub app: Option<AppScrape>,
}

/// The app's Prometheus endpoint (Istio's `prometheus.io/port` and `prometheus.io/path`).
#[derive(Debug, Clone)]
pub struct AppScrape {
    /// `None`: the port the app serves on.
    pub port: Option<u16>,
    /// `/metrics` unless the annotation says otherwise.
    pub path: String,
}

/// Istio's default when Prometheus does not say how long it waits.
const DEFAULT_SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most an app's page may weigh.
const MAX_APP_PAGE: usize = 32 * 1024 * 1024;

#[derive(Default)]
struct Counts {
    scrapes: AtomicU64,
    app_failures: AtomicU64,
}

/// Serves the merged page until the task is aborted.
pub async fn serve(listener: TcpListener, state: Arc<ProxyState>, opts: MergedMetrics) {
    let counts = Arc::new(Counts::default());
    let opts = Arc::new(opts);
    loop {
        let (stream, _) = crate::http::server::accept(&listener, "merged metrics").await;
        let (state, opts, counts) = (state.clone(), opts.clone(), counts.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let (state, opts, counts) = (state.clone(), opts.clone(), counts.clone());
                async move {
                    Ok::<_, std::convert::Infallible>(handle(req, &state, &opts, &counts).await)
                }
            });
            let _ = crate::http::server::http_server()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn handle<B>(
    req: Request<B>,
    state: &ProxyState,
    opts: &MergedMetrics,
    counts: &Counts,
) -> Response<Body> {
    if !matches!(req.uri().path(), "/stats/prometheus" | "/metrics") {
        return crate::reply::text(StatusCode::NOT_FOUND, "merged metrics: /stats/prometheus");
    }
    counts.scrapes.fetch_add(1, Ordering::Relaxed);
    let timeout = req
        .headers()
        .get("x-prometheus-scrape-timeout-seconds")
        .and_then(|v| v.to_str().ok()?.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        // Leave Prometheus time to read what we send.
        .map_or(DEFAULT_SCRAPE_TIMEOUT, |s| Duration::from_secs_f64(s * 0.9));
    let mut page = crate::stats::prometheus(state);
    if let Some(app) = &opts.app {
        match scrape_app(state, app, timeout).await {
            Ok(text) => {
                page.push_str(&text);
                if !page.ends_with('\n') {
                    page.push('\n');
                }
            }
            Err(error) => {
                counts.app_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%error, "scraping the app's metrics failed; serving the proxy's alone");
            }
        }
    }
    agent_metrics(&mut page, counts);
    Response::builder()
        .header("content-type", CONTENT_TYPE)
        .body(full(page))
        .expect("static response parts are valid")
}

fn agent_metrics(out: &mut String, counts: &Counts) {
    let (scrapes, failed) = (
        counts.scrapes.load(Ordering::Relaxed),
        counts.app_failures.load(Ordering::Relaxed),
    );
    let _ = writeln!(out, "# HELP istio_agent_scrapes_total Merged scrapes served\n# TYPE istio_agent_scrapes_total counter\nistio_agent_scrapes_total {scrapes}");
    let _ = writeln!(out, "# HELP istio_agent_scrape_failures_total Scrapes of a part that failed\n# TYPE istio_agent_scrape_failures_total counter\nistio_agent_scrape_failures_total{{type=\"application\"}} {failed}");
}

/// GETs the app's page (its OpenMetrics `# EOF` removed: the merged page goes on).
async fn scrape_app(
    state: &ProxyState,
    app: &AppScrape,
    timeout: Duration,
) -> Result<String, String> {
    let base = state.app_addr.as_deref().ok_or("this proxy has no app")?;
    let addr: SocketAddr = base
        .parse()
        .map_err(|e| format!("the app address {base} is not host:port: {e}"))?;
    let addr = SocketAddr::new(addr.ip(), app.port.unwrap_or(addr.port()));
    let get = async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connecting to the app at {addr}: {e}"))?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| format!("HTTP handshake with the app at {addr}: {e}"))?;
        tokio::spawn(conn);
        let req = Request::get(app.path.as_str())
            .header(http::header::HOST, addr.to_string())
            .header(http::header::ACCEPT, "text/plain;version=0.0.4")
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("the path {:?} is not a valid request path: {e}", app.path))?;
        let resp = send
            .send_request(req)
            .await
            .map_err(|e| format!("GET {} from the app at {addr}: {e}", app.path))?;
        if !resp.status().is_success() {
            return Err(format!(
                "the app at {addr} answered {} for {}",
                resp.status(),
                app.path
            ));
        }
        let body = Limited::new(resp.into_body(), MAX_APP_PAGE)
            .collect()
            .await
            .map_err(|e| format!("reading the app's metrics from {addr}: {e}"))?;
        String::from_utf8(body.to_bytes().to_vec())
            .map_err(|_| format!("the app's metrics page at {addr} is not UTF-8"))
    };
    let text = tokio::time::timeout(timeout, get)
        .await
        .map_err(|_| format!("the app did not answer within {timeout:?}"))??;
    Ok(text.lines().filter(|l| l.trim() != "# EOF").fold(
        String::with_capacity(text.len()),
        |mut s, l| {
            s.push_str(l);
            s.push('\n');
            s
        },
    ))
}
