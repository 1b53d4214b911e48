//! The proxy's admin endpoint (Envoy's admin on 15000 and stats on 15090, merged): Prometheus
//! metrics, config dump, readiness, certificate info, bound listeners.

use crate::body::{full, Body};
use crate::reply::text;
use crate::state::ProxyState;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::UNIX_EPOCH;
use tokio::net::TcpListener;

/// Serves admin requests until the task is aborted.
pub async fn serve(listener: TcpListener, shared: Arc<ProxyState>) {
    loop {
        let (stream, _) = crate::http::server::accept(&listener, "admin").await;
        let shared = shared.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(req, &shared)) }
            });
            let _ = crate::http::server::http_server()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// The metrics, then the span export and access log counters (before OpenMetrics' `# EOF`).
fn render_stats(shared: &ProxyState) -> String {
    let mut text = crate::stats::prometheus(shared);
    shared.observe.render(&mut text);
    text
}

fn json(v: serde_json::Value) -> Response<Body> {
    Response::builder()
        .header("content-type", "application/json")
        .body(full(serde_json::to_string_pretty(&v).unwrap_or_default()))
        .expect("static response parts are valid")
}

fn handle(req: Request<Incoming>, shared: &ProxyState) -> Response<Body> {
    match req.uri().path() {
        "/stats/prometheus" | "/metrics" => Response::builder()
            .header("content-type", crate::telemetry::exposition::CONTENT_TYPE)
            .body(full(render_stats(shared)))
            .expect("static response parts are valid"),
        "/config_dump" => {
            let rt = shared.config.load();
            json(serde_json::json!({ "version": rt.version, "config": rt.config }))
        }
        "/ready" | "/healthz/ready" => {
            if shared.config.load().version.is_empty() {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no config from the control plane yet",
                )
            } else {
                Response::new(full("ready\n"))
            }
        }
        "/certs" => {
            let creds = shared.tls.current.load();
            let not_after = creds
                .identity
                .not_after()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            json(
                serde_json::json!({ "identity": creds.identity.spiffe_id().to_string(), "not_after_unix": not_after }),
            )
        }
        "/clusters" => {
            let rt = shared.config.load();
            let clusters: serde_json::Map<String, serde_json::Value> = rt
                .clusters
                .iter()
                .map(|(name, c)| {
                    let endpoints: Vec<&str> = c.spec.endpoints.iter().map(|e| e.address.as_str()).collect();
                    (name.clone(), serde_json::json!({ "endpoints": endpoints, "ejected": c.lb.ejected(), "overflowing": c.lb.overflowing() }))
                })
                .collect();
            json(serde_json::Value::Object(clusters))
        }
        "/listeners" => json(
            serde_json::to_value(&*shared.bound.lock().expect("bound poisoned"))
                .unwrap_or_default(),
        ),
        _ => text(
            StatusCode::NOT_FOUND,
            "admin paths: /stats/prometheus /config_dump /clusters /ready /certs /listeners",
        ),
    }
}
