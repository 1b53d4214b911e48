//! Istio's standard request metrics (`istio_requests_total`,
//! `istio_request_duration_milliseconds`) with Istio's label names, so Istio dashboards and
//! alerts work unchanged. Rendered in Prometheus text format on the admin port.

use super::ResponseFlags;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::time::Instant;

/// Istio's request labels (the subset weft fills today; the rest come with the telemetry issue).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet, Default)]
pub struct RequestLabels {
    pub reporter: String,
    pub source_workload: String,
    pub source_workload_namespace: String,
    pub source_principal: String,
    pub source_version: String,
    pub destination_workload: String,
    pub destination_workload_namespace: String,
    pub destination_principal: String,
    pub destination_version: String,
    pub destination_service: String,
    pub destination_service_name: String,
    pub destination_service_namespace: String,
    pub request_protocol: String,
    pub response_code: String,
    pub response_flags: String,
    pub connection_security_policy: String,
}

/// The metric families of one proxy.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Family<RequestLabels, Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        // Istio's default buckets for request duration (ms).
        let duration = Family::<RequestLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.5, 1., 5., 10., 25., 50., 100., 250., 500., 1000., 2500., 5000., 10000., 30000.,
                60000., 300000., 600000., 1800000., 3600000.,
            ])
        });
        registry.register(
            "istio_requests",
            "Requests handled by this proxy",
            requests.clone(),
        );
        registry.register(
            "istio_request_duration_milliseconds",
            "Request duration",
            duration.clone(),
        );
        Metrics {
            registry,
            requests,
            duration,
        }
    }

    /// Starts the record of one request; it is counted when the record is dropped.
    pub fn start(&self, labels: RequestLabels) -> RequestRecord {
        RequestRecord {
            requests: self.requests.clone(),
            duration: self.duration.clone(),
            labels,
            start: Instant::now(),
            code: 0,
            flags: ResponseFlags::NONE,
            complete: false,
        }
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// `name.ns.svc.cluster.local` -> (`name`, `ns`).
pub fn service_name_ns(host: &str) -> (String, String) {
    let mut it = host.split('.');
    let name = it.next().unwrap_or("").to_string();
    let ns = it.next().unwrap_or("").to_string();
    (name, ns)
}

/// One request's telemetry, recorded when dropped — when its response body has been sent
/// or abandoned, which is when Istio's proxies count a request and stop its duration clock.
/// A request whose response never finished (the client went away) gets Envoy's `DC` flag,
/// and `response_code="0"` when no response was started.
pub struct RequestRecord {
    requests: Family<RequestLabels, Counter>,
    duration: Family<RequestLabels, Histogram>,
    pub labels: RequestLabels,
    start: Instant,
    code: u16,
    flags: ResponseFlags,
    complete: bool,
}

impl RequestRecord {
    /// The response status and the flags of whatever produced it.
    pub fn respond(&mut self, code: u16, flags: ResponseFlags) {
        self.code = code;
        self.flags |= flags;
    }

    /// More flags (e.g. an error in the response body).
    pub fn flag(&mut self, flags: ResponseFlags) {
        self.flags |= flags;
    }

    /// The response went out whole.
    pub fn complete(&mut self) {
        self.complete = true;
    }
}

impl Drop for RequestRecord {
    fn drop(&mut self) {
        if !self.complete {
            self.flags |= ResponseFlags::DOWNSTREAM_CONNECTION_TERMINATION;
        }
        let mut labels = std::mem::take(&mut self.labels);
        labels.response_code = self.code.to_string();
        labels.response_flags = self.flags.render();
        self.requests.get_or_create(&labels).inc();
        self.duration
            .get_or_create(&labels)
            .observe(self.start.elapsed().as_secs_f64() * 1000.0);
    }
}
