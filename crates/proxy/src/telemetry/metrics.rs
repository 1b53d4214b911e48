//! Istio's standard HTTP metrics — `istio_requests_total`,
//! `istio_request_duration_milliseconds`, `istio_request_bytes`, `istio_response_bytes`,
//! and for gRPC `istio_request_messages_total`/`istio_response_messages_total` — with
//! Istio's full label set and Envoy's default histogram buckets, so Istio dashboards and
//! alerts work unchanged. The registry is shared: other parts (TCP proxying) register
//! their families into [`Metrics::registry`].
//!
//! Recording is cheap by construction: who-called-whom labels ([`PeerLabels`]) are built
//! and interned when a config is applied (per cluster endpoint) or once per calling peer,
//! so a request records with a small key (interned labels, protocol, status, gRPC status,
//! flags) that finds its series directly; the full label set is built only the first time
//! a key is seen. Every label value comes from config or a certificate-backed peer (never
//! a path or header), so the number of series is bounded by construction.

use super::cluster_stats::ClusterStats;
use super::overrides::{SeriesLabels, SideRules};
use super::ResponseFlags;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

/// The labels that say who called whom (everything but protocol, status and flags), in
/// the order Istio's proxies export them.
#[derive(Clone, Debug, Hash, PartialEq, Eq, Default, EncodeLabelSet)]
pub struct PeerLabels {
    pub reporter: String,
    pub source_workload: String,
    pub source_canonical_service: String,
    pub source_canonical_revision: String,
    pub source_workload_namespace: String,
    pub source_principal: String,
    pub source_app: String,
    pub source_version: String,
    pub source_cluster: String,
    pub destination_workload: String,
    pub destination_workload_namespace: String,
    pub destination_principal: String,
    pub destination_app: String,
    pub destination_version: String,
    pub destination_service: String,
    pub destination_canonical_service: String,
    pub destination_canonical_revision: String,
    pub destination_service_name: String,
    pub destination_service_namespace: String,
    pub destination_cluster: String,
    pub connection_security_policy: String,
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
    /// The gRPC status number (`grpc-status`), empty for HTTP or when none arrived.
    pub grpc_response_status: String,
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

    fn with(&self, k: &Key) -> RequestLabels {
        RequestLabels {
            peers: self.clone(),
            request_protocol: if k.grpc { "grpc" } else { "http" }.into(),
            response_code: k.code.to_string(),
            grpc_response_status: match k.grpc_status {
                NO_GRPC_STATUS => String::new(),
                s => s.to_string(),
            },
            response_flags: ResponseFlags::from_bits(k.flags).render(),
        }
    }
}

/// A cluster's precomputed labels, header and counters.
#[derive(Debug, Clone)]
pub struct ClusterLabels {
    /// Before an endpoint is picked (no healthy upstream, overflow).
    pub cluster: Arc<PeerLabels>,
    /// Per endpoint, in the cluster's endpoint order.
    pub endpoints: Vec<Arc<PeerLabels>>,
    /// The `x-weft-peer` value sent with requests to this cluster.
    pub peer_header: http::HeaderValue,
    /// The cluster's Envoy counters (kept across pushes, by cluster name).
    pub stats: Arc<ClusterStats>,
}

impl Default for ClusterLabels {
    fn default() -> Self {
        ClusterLabels {
            cluster: Arc::default(),
            endpoints: Vec::new(),
            peer_header: http::HeaderValue::from_static(""),
            stats: Arc::default(),
        }
    }
}

/// `grpc_status` of a request that has none.
pub const NO_GRPC_STATUS: u8 = u8::MAX;

/// What a request records with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    /// The address of the interned [`PeerLabels`] (kept alive by the cache entry).
    peers: usize,
    grpc: bool,
    code: u16,
    grpc_status: u8,
    flags: u32,
    /// The address of the side's Telemetry overrides the request recorded under (0:
    /// none), kept alive by the cache entry so the address is never reused.
    rules: usize,
    /// The address of the request's interned tag values (0: none).
    values: usize,
}

/// What one finished request measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    pub grpc: bool,
    pub code: u16,
    /// [`NO_GRPC_STATUS`] when none.
    pub grpc_status: u8,
    pub flags: ResponseFlags,
    pub ms: f64,
    /// Headers and body, as Envoy's `request.total_size` counts them.
    pub request_bytes: u64,
    pub response_bytes: u64,
    /// Length-prefixed gRPC messages in each direction.
    pub request_messages: u64,
    pub response_messages: u64,
}

/// A series' handles (`None`: that metric is disabled on this side).
struct Handles {
    _peers: Arc<PeerLabels>,
    _rules: Option<Arc<SideRules>>,
    _values: Option<Arc<Vec<String>>>,
    requests: Option<Counter>,
    duration: Option<Histogram>,
    request_bytes: Option<Histogram>,
    response_bytes: Option<Histogram>,
    /// gRPC only.
    request_messages: Option<Counter>,
    response_messages: Option<Counter>,
}

struct Families {
    requests: Family<SeriesLabels, Counter>,
    duration: Family<SeriesLabels, Histogram>,
    request_bytes: Family<SeriesLabels, Histogram>,
    response_bytes: Family<SeriesLabels, Histogram>,
    request_messages: Family<SeriesLabels, Counter>,
    response_messages: Family<SeriesLabels, Counter>,
}

/// The workload certificate's lifecycle, for alerts before it expires.
#[derive(Default)]
pub(super) struct CertMetrics {
    /// Unix time the current certificate expires.
    pub(super) not_after: Gauge,
    /// Envoy's `server.days_until_first_cert_expiring`, as of the last scrape.
    pub(super) days_left: Gauge,
    rotations: Counter,
    renewal_failures: Counter,
}

/// The metric families of one proxy.
pub struct Metrics {
    /// Every family; other parts of the proxy register theirs here (before serving).
    pub registry: Mutex<Registry>,
    families: Families,
    authz: Family<AuthzLabels, Counter>,
    pub(super) cert: CertMetrics,
    /// Envoy's per-cluster counters, by cluster name.
    clusters: Mutex<HashMap<String, Arc<ClusterStats>>>,
    /// The last config applied: version (when numeric) and Unix time.
    pub(super) config_version: Gauge,
    pub(super) config_applied: Gauge,
    /// Istio's TCP connection and byte counters (`super::tcp_metrics`).
    pub tcp: super::tcp_metrics::TcpMetrics,
    interned: Mutex<HashSet<Arc<PeerLabels>>>,
    interned_values: Mutex<HashSet<Arc<Vec<String>>>>,
    handles: RwLock<HashMap<Key, Handles>>,
    /// Telemetry overrides of the client and server side as last applied (`None`:
    /// standard); requests carry their own copy ([`super::RequestRecord`]).
    rules: Mutex<[Option<Arc<SideRules>>; 2]>,
    /// False only when telemetry is switched off (`weft proxy --no-telemetry`).
    recording: bool,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Envoy's default histogram buckets (Istio keeps them for every histogram it exports:
/// duration in ms, sizes in bytes).
pub const DEFAULT_BUCKETS: [f64; 19] = [
    0.5, 1., 5., 10., 25., 50., 100., 250., 500., 1000., 2500., 5000., 10000., 30000., 60000.,
    300000., 600000., 1800000., 3600000.,
];

fn histograms() -> Family<SeriesLabels, Histogram> {
    Family::new_with_constructor(|| Histogram::new(DEFAULT_BUCKETS))
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::with_recording(true)
    }

    /// Metrics that record requests only if `recording`.
    pub fn with_recording(recording: bool) -> Metrics {
        let mut registry = Registry::default();
        let families = Families {
            requests: Family::default(),
            duration: histograms(),
            request_bytes: histograms(),
            response_bytes: histograms(),
            request_messages: Family::default(),
            response_messages: Family::default(),
        };
        let f = &families;
        let r = &mut registry;
        r.register(
            "istio_requests",
            "Requests handled by this proxy",
            f.requests.clone(),
        );
        let d = "Request duration";
        r.register("istio_request_duration_milliseconds", d, f.duration.clone());
        let d = "Request size (headers and body)";
        r.register("istio_request_bytes", d, f.request_bytes.clone());
        let d = "Response size (headers and body)";
        r.register("istio_response_bytes", d, f.response_bytes.clone());
        let d = "gRPC messages the client sent";
        r.register("istio_request_messages", d, f.request_messages.clone());
        let d = "gRPC messages the server sent";
        r.register("istio_response_messages", d, f.response_messages.clone());
        let authz = Family::<AuthzLabels, Counter>::default();
        let d = "Requests denied by an AuthorizationPolicy, and dry-run policies' decisions";
        r.register("weft_authorization_decisions", d, authz.clone());
        let cert = CertMetrics::default();
        let d = "When the proxy's workload certificate expires (Unix time)";
        r.register(
            "weft_certificate_expiration_timestamp_seconds",
            d,
            cert.not_after.clone(),
        );
        let d = "Days until the proxy's workload certificate expires";
        r.register(
            "envoy_server_days_until_first_cert_expiring",
            d,
            cert.days_left.clone(),
        );
        let d = "Times the workload certificate was renewed and swapped in";
        r.register("weft_certificate_rotations", d, cert.rotations.clone());
        let d = "Renewals that failed (the current certificate stays in use until it expires)";
        r.register(
            "weft_certificate_renewal_failures",
            d,
            cert.renewal_failures.clone(),
        );
        let (config_version, config_applied) = (Gauge::default(), Gauge::default());
        let d = "Version of the config last applied (the control plane's push counter)";
        r.register("weft_config_version", d, config_version.clone());
        let d = "When the proxy last applied a config push (Unix time)";
        r.register(
            "weft_config_last_push_timestamp_seconds",
            d,
            config_applied.clone(),
        );
        let tcp = super::tcp_metrics::TcpMetrics::register(&mut registry, recording);
        Metrics {
            tcp,
            registry: Mutex::new(registry),
            families,
            authz,
            cert,
            clusters: Mutex::new(HashMap::new()),
            config_version,
            config_applied,
            interned: Mutex::new(HashSet::new()),
            interned_values: Mutex::new(HashSet::new()),
            handles: RwLock::new(HashMap::new()),
            rules: Mutex::default(),
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

    /// The counters of cluster `name` (the same ones across pushes).
    pub fn cluster_stats(&self, name: &str) -> Arc<ClusterStats> {
        let mut clusters = self.clusters.lock().unwrap_or_else(|p| p.into_inner());
        clusters.entry(name.to_string()).or_default().clone()
    }

    /// Sets the Telemetry overrides of each side and returns the ones requests should
    /// carry: the previous ones when equal (so their series stay cached), else these, and
    /// the cached series and tag values of the old ones are dropped.
    pub fn set_rules(
        &self,
        client: Option<Arc<SideRules>>,
        server: Option<Arc<SideRules>>,
    ) -> [Option<Arc<SideRules>>; 2] {
        let mut rules = self.rules.lock().unwrap_or_else(|p| p.into_inner());
        if rules[0] == client && rules[1] == server {
            return rules.clone();
        }
        self.tcp.set_rules(client.clone(), server.clone());
        *rules = [client, server];
        self.handles
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.interned_values
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        rules.clone()
    }

    /// One shared copy of each distinct list of tag values.
    pub fn intern_values(&self, values: Vec<String>) -> Arc<Vec<String>> {
        let mut interned = self
            .interned_values
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(known) = interned.get(&values) {
            return known.clone();
        }
        let arc = Arc::new(values);
        interned.insert(arc.clone());
        arc
    }

    /// Records one request under the overrides it started with (`rules`) and its tag
    /// values.
    pub(super) fn observe(
        &self,
        peers: &Arc<PeerLabels>,
        s: &Sample,
        rules: Option<&Arc<SideRules>>,
        values: Option<&Arc<Vec<String>>>,
    ) {
        if !self.recording {
            return;
        }
        let key = Key {
            peers: Arc::as_ptr(peers) as usize,
            grpc: s.grpc,
            code: s.code,
            grpc_status: s.grpc_status,
            flags: s.flags.bits(),
            rules: rules.map_or(0, |r| Arc::as_ptr(r) as usize),
            values: values.map_or(0, |v| Arc::as_ptr(v) as usize),
        };
        if let Some(h) = self
            .handles
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            h.record(s);
            return;
        }
        let base = peers.with(&key);
        let no_values = Vec::new();
        let vals = values.map_or(&no_values, |v| v.as_ref());
        let labels = |i: usize| match rules {
            None => Some(SeriesLabels::Standard(base.clone())),
            Some(r) => r.labels(i, base.clone(), vals),
        };
        let f = &self.families;
        let counter = |fam: &Family<SeriesLabels, Counter>, i: usize| {
            labels(i).map(|l| fam.get_or_create(&l).clone())
        };
        let histogram = |fam: &Family<SeriesLabels, Histogram>, i: usize| {
            labels(i).map(|l| fam.get_or_create(&l).clone())
        };
        let h = Handles {
            _peers: peers.clone(),
            _rules: rules.cloned(),
            _values: values.cloned(),
            requests: counter(&f.requests, 0),
            duration: histogram(&f.duration, 1),
            request_bytes: histogram(&f.request_bytes, 2),
            response_bytes: histogram(&f.response_bytes, 3),
            request_messages: s.grpc.then(|| counter(&f.request_messages, 4)).flatten(),
            response_messages: s.grpc.then(|| counter(&f.response_messages, 5)).flatten(),
        };
        h.record(s);
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

    /// Records that config `version` was applied now.
    pub fn config_applied(&self, version: &str) {
        if let Ok(v) = version.parse::<i64>() {
            self.config_version.set(v);
        }
        self.config_applied.set(super::exposition::unix_now());
    }
}

impl Handles {
    fn record(&self, s: &Sample) {
        if let Some(c) = &self.requests {
            c.inc();
        }
        if let Some(h) = &self.duration {
            h.observe(s.ms);
        }
        if let Some(h) = &self.request_bytes {
            h.observe(s.request_bytes as f64);
        }
        if let Some(h) = &self.response_bytes {
            h.observe(s.response_bytes as f64);
        }
        if let Some(c) = &self.request_messages {
            c.inc_by(s.request_messages);
        }
        if let Some(c) = &self.response_messages {
            c.inc_by(s.response_messages);
        }
    }
}

/// `name.ns.svc.cluster.local` -> (`name`, `ns`).
pub fn service_name_ns(host: &str) -> (String, String) {
    let mut it = host.split('.');
    let name = it.next().unwrap_or("").to_string();
    let ns = it.next().unwrap_or("").to_string();
    (name, ns)
}
