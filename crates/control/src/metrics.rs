//! The control plane's own metrics, with istiod's names where they exist, served as
//! Prometheus text on `GET /metrics` (`weft control --metrics-listen`, istiod's 15014):
//! `pilot_xds` (connected proxies), `pilot_xds_pushes` (pushes by type: `full` on a
//! stream's first push, `delta` after), `pilot_total_xds_rejects` (NACKs),
//! `pilot_proxy_convergence_time` (config change -> the proxy's ACK of it),
//! `pilot_proxy_queue_time` (config change -> the push cycle that serves it, the debounce
//! included) and `pilot_xds_config_size_bytes` (bytes per push).

use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use tracing::warn;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PushType {
    pub r#type: &'static str,
}

/// Every control-plane metric.
pub struct ControlMetrics {
    registry: Registry,
    pub connected: Gauge,
    pub pushes: Family<PushType, Counter>,
    pub rejects: Counter,
    pub convergence: Histogram,
    pub queue: Histogram,
    pub size: Histogram,
}

impl Default for ControlMetrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let connected = Gauge::default();
        let pushes = Family::<PushType, Counter>::default();
        let rejects = Counter::default();
        // istiod's buckets for both times: 0.1 s to 30 s, here from 1 ms.
        let seconds = || Histogram::new([0.001, 0.01, 0.1, 0.5, 1.0, 3.0, 5.0, 10.0, 20.0, 30.0]);
        let (convergence, queue) = (seconds(), seconds());
        let size = Histogram::new(exponential_buckets(1.0, 10.0, 8));
        registry.register(
            "pilot_xds",
            "Number of proxies connected to this control plane",
            connected.clone(),
        );
        registry.register(
            "pilot_xds_pushes",
            "Pushes sent, by type (full: a stream's first; delta: only changed parts)",
            pushes.clone(),
        );
        registry.register(
            "pilot_total_xds_rejects",
            "Pushes the proxy rejected (NACK)",
            rejects.clone(),
        );
        registry.register(
            "pilot_proxy_convergence_time",
            "Seconds from a config change to the ACK of the push it caused",
            convergence.clone(),
        );
        registry.register(
            "pilot_proxy_queue_time",
            "Seconds from a config change to the push cycle that serves it (debounce included)",
            queue.clone(),
        );
        registry.register(
            "pilot_xds_config_size_bytes",
            "Bytes of each push message",
            size.clone(),
        );
        ControlMetrics {
            registry,
            connected,
            pushes,
            rejects,
            convergence,
            queue,
            size,
        }
    }
}

impl ControlMetrics {
    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// Serves `GET /metrics` on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, metrics: Arc<ControlMetrics>) {
    loop {
        let io = match listener.accept().await {
            Ok((io, _)) => io,
            Err(e) => {
                warn!(error = %e, "metrics listener: accept failed");
                continue;
            }
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let svc =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let metrics = metrics.clone();
                    async move {
                        let (status, body) = match req.uri().path() {
                            "/metrics" | "/stats/prometheus" => (200, metrics.render()),
                            _ => (
                                404,
                                "not found: the control plane serves /metrics\n".to_string(),
                            ),
                        };
                        let resp = hyper::Response::builder()
                            .status(status)
                            .header("content-type", "text/plain; version=0.0.4")
                            .body(Full::new(Bytes::from(body)))
                            .expect("static response parts");
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
            let conn =
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(io), svc);
            let _ = conn.await;
        });
    }
}
