//! Telemetry: Envoy's response flags, Istio's request metrics recorded when each request
//! ends ([`RequestRecord`]), Envoy's per-cluster statistics, the Prometheus exposition and
//! peer metadata between proxies; and — for sides a push traces or logs — trace spans
//! exported over OTLP and access log lines ([`Record`] carries the request record and
//! both to the end of the response).

pub mod access_log;
pub mod cluster_stats;
pub mod exchange;
pub mod export;
pub mod exposition;
mod flags;
pub mod metrics;
pub mod observe;
pub mod overrides;
pub mod peer;
pub mod record;
pub mod tcp_metrics;
pub mod trace_context;
pub mod zipkin;

pub use cluster_stats::{ClusterGauges, ClusterRow, ClusterStats};
pub use exchange::{Downstream, Exchange, Record};
pub use flags::ResponseFlags;
pub use metrics::{service_name_ns, ClusterLabels, Metrics, PeerLabels, RequestLabels};
pub use observe::Observe;
pub use peer::PEER_HEADER;
pub use record::RequestRecord;
