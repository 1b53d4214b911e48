//! Istio's standard request metrics (`istio_requests_total`,
//! `istio_request_duration_milliseconds`) with Istio's label names, so Istio dashboards and
//! alerts work unchanged. Rendered in Prometheus text format on the admin port.
//!
//! Recording is cheap by construction: who-called-whom labels ([`PeerLabels`]) are built
//! and interned when a config is applied (per cluster endpoint) or once per calling peer,
//! so a request records with a small key (interned labels, protocol, status, flags) that
//! finds the counter and histogram directly; the full label set is built only the first
//! time a key is seen.

use super::ResponseFlags;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use tokio::time::Instant;

/// The labels that say who called whom (everything but protocol, status and flags).
#[derive(Clone, Debug, Hash, PartialEq, Eq, Default, EncodeLabelSet)]
pub struct PeerLabels {
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
    pub connection_security_policy: String,
}

/// The workload certificate's lifecycle, for alerts before it expires.
#[derive(Default)]
struct CertMetrics {
    /// Unix time the current certificate expires.
    not_after: Gauge,
    /// Envoy's `server.days_until_first_cert_expiring`, as of the last scrape.
    days_left: Gauge,
    rotations: Counter,
    renewal_failures: Counter,
}

/// Labels of an authorization decision worth counting: a denial, or a dry-run result.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthzLabels {
    /// `namespace.name` of the deciding policy, or why (`no ALLOW policy matched`).
    pub policy: String,
    /// `allowed` or `denied`.
    pub decision: String,
    /// `true` for what a dry-run policy would have done.
    pub dry_run: String,
}

/// Istio's request labels, as exported: who called whom, and how the request went.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet, Default)]
pub struct RequestLabels {
    #[prometheus(flatten)]
    pub peers: PeerLabels,
    pub request_protocol: String,
    pub response_code: String,
    pub response_flags: String,
}

impl PeerLabels {
    /// Sets the destination service (and its name and namespace).
    pub fn set_service(&mut self, host: &str) {
        let (name, ns) = service_name_ns(host);
        self.destination_service = host.to_string();
        self.destination_service_name = name;
        self.destination_service_namespace = ns;
    }

    fn with(&self, grpc: bool, code: u16, flags: ResponseFlags) -> RequestLabels {
        RequestLabels {
            peers: self.clone(),
            request_protocol: if grpc { "grpc" } else { "http" }.into(),
            response_code: code.to_string(),
            response_flags: flags.render(),
        }
    }
}

/// A cluster's precomputed labels and header.
#[derive(Debug, Clone)]
pub struct ClusterLabels {
    /// Before an endpoint is picked (no healthy upstream, overflow).
    pub cluster: Arc<PeerLabels>,
    /// Per endpoint, in the cluster's endpoint order.
    pub endpoints: Vec<Arc<PeerLabels>>,
    /// The `x-weft-peer` value sent with requests to this cluster.
    pub peer_header: http::HeaderValue,
}

impl Default for ClusterLabels {
    fn default() -> Self {
        ClusterLabels {
            cluster: Arc::default(),
            endpoints: Vec::new(),
            peer_header: http::HeaderValue::from_static(""),
        }
    }
}

/// What a request records with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    /// The address of the interned [`PeerLabels`] (kept alive by the cache entry).
    peers: usize,
    grpc: bool,
    code: u16,
    flags: u32,
}

struct Handles {
    _peers: Arc<PeerLabels>,
    requests: Counter,
    duration: Histogram,
}

/// The metric families of one proxy.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Family<RequestLabels, Histogram>,
    authz: Family<AuthzLabels, Counter>,
    cert: CertMetrics,
    /// Istio's TCP connection and byte counters (`super::tcp_metrics`).
    pub tcp: super::tcp_metrics::TcpMetrics,
    interned: Mutex<HashSet<Arc<PeerLabels>>>,
    handles: RwLock<HashMap<Key, Handles>>,
    /// False only when telemetry is switched off (`weft proxy --no-telemetry`).
    recording: bool,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Istio's default buckets for request duration (ms).
const DURATION_BUCKETS: [f64; 19] = [
    0.5, 1., 5., 10., 25., 50., 100., 250., 500., 1000., 2500., 5000., 10000., 30000., 60000.,
    300000., 600000., 1800000., 3600000.,
];

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::with_recording(true)
    }

    /// Metrics that record requests only if `recording`.
    pub fn with_recording(recording: bool) -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let duration = Family::<RequestLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(DURATION_BUCKETS)
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
        let authz = Family::<AuthzLabels, Counter>::default();
        registry.register(
            "weft_authorization_decisions",
            "Requests denied by an AuthorizationPolicy, and dry-run policies' decisions",
            authz.clone(),
        );
        let cert = CertMetrics::default();
        registry.register(
            "weft_certificate_expiration_timestamp_seconds",
            "When the proxy's workload certificate expires (Unix time)",
            cert.not_after.clone(),
        );
        registry.register(
            "envoy_server_days_until_first_cert_expiring",
            "Days until the proxy's workload certificate expires",
            cert.days_left.clone(),
        );
        registry.register(
            "weft_certificate_rotations",
            "Times the workload certificate was renewed and swapped in",
            cert.rotations.clone(),
        );
        registry.register(
            "weft_certificate_renewal_failures",
            "Renewals that failed (the current certificate stays in use until it expires)",
            cert.renewal_failures.clone(),
        );
        let tcp = super::tcp_metrics::TcpMetrics::register(&mut registry, recording);
        Metrics {
            tcp,
            registry,
            requests,
            duration,
            authz,
            cert,
            interned: Mutex::new(HashSet::new()),
            handles: RwLock::new(HashMap::new()),
            recording,
        }
    }

    /// One shared copy of each distinct label set (so requests can key on its address).
    pub fn intern(&self, labels: PeerLabels) -> Arc<PeerLabels> {
        let mut interned = self.interned.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(known) = interned.get(&labels) {
            return known.clone();
        }
        let arc = Arc::new(labels);
        interned.insert(arc.clone());
        arc
    }

    fn observe(
        &self,
        peers: &Arc<PeerLabels>,
        grpc: bool,
        code: u16,
        flags: ResponseFlags,
        ms: f64,
    ) {
        if !self.recording {
            return;
        }
        let key = Key {
            peers: Arc::as_ptr(peers) as usize,
            grpc,
            code,
            flags: flags.bits(),
        };
        if let Some(h) = self
            .handles
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            h.requests.inc();
            h.duration.observe(ms);
            return;
        }
        let labels = peers.with(grpc, code, flags);
        let h = Handles {
            _peers: peers.clone(),
            requests: self.requests.get_or_create(&labels).clone(),
            duration: self.duration.get_or_create(&labels).clone(),
        };
        h.requests.inc();
        h.duration.observe(ms);
        self.handles
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, h);
    }

    /// Counts an authorization denial, or a dry-run policy's decision.
    pub fn authz(&self, policy: &str, denied: bool, dry_run: bool) {
        if !self.recording {
            return;
        }
        let labels = AuthzLabels {
            policy: policy.to_string(),
            decision: if denied { "denied" } else { "allowed" }.to_string(),
            dry_run: dry_run.to_string(),
        };
        self.authz.get_or_create(&labels).inc();
    }

    /// Records the certificate in use (`rotated`: a renewal replaced the previous one).
    pub fn certificate(&self, not_after: std::time::SystemTime, rotated: bool) {
        let secs = not_after
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.cert
            .not_after
            .set(i64::try_from(secs).unwrap_or(i64::MAX));
        if rotated {
            self.cert.rotations.inc();
        }
    }

    /// Counts a failed renewal.
    pub fn renewal_failed(&self) {
        self.cert.renewal_failures.inc();
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        self.cert
            .days_left
            .set((self.cert.not_after.get() - now).max(0) / 86_400);
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
    metrics: Arc<Metrics>,
    /// Who called whom; phases replace it as they learn more (cluster, endpoint, peer).
    pub peers: Arc<PeerLabels>,
    grpc: bool,
    start: Instant,
    code: u16,
    flags: ResponseFlags,
    complete: bool,
}

impl RequestRecord {
    /// Starts the record of one request; it is counted when the record is dropped.
    pub fn start(metrics: &Arc<Metrics>, peers: Arc<PeerLabels>, grpc: bool) -> RequestRecord {
        RequestRecord {
            metrics: metrics.clone(),
            peers,
            grpc,
            start: Instant::now(),
            code: 0,
            flags: ResponseFlags::NONE,
            complete: false,
        }
    }

    /// The response status.
    pub fn respond(&mut self, code: u16) {
        self.code = code;
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
        let ms = self.start.elapsed().as_secs_f64() * 1000.0;
        self.metrics
            .observe(&self.peers, self.grpc, self.code, self.flags, ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_with_the_same_labels_share_one_series() {
        let m = Arc::new(Metrics::new());
        let mut peers = PeerLabels {
            reporter: "source".into(),
            ..Default::default()
        };
        peers.set_service("inventory.game.svc.cluster.local");
        let a = m.intern(peers.clone());
        let b = m.intern(peers);
        assert!(Arc::ptr_eq(&a, &b), "interned once");
        for _ in 0..3 {
            let mut r = RequestRecord::start(&m, a.clone(), false);
            r.respond(200);
            r.complete();
        }
        drop(RequestRecord::start(&m, b.clone(), true));
        let text = m.render();
        assert!(
            text.contains(r#"destination_service_name="inventory",destination_service_namespace="game",connection_security_policy="",request_protocol="http",response_code="200",response_flags="-"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(r#"request_protocol="grpc",response_code="0",response_flags="DC""#),
            "abandoned: DC and code 0\n{text}"
        );
    }
}
