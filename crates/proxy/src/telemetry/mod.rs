//! Telemetry: Envoy's response flags, Istio's request metrics recorded when each request
//! ends ([`RequestRecord`]), Envoy's per-cluster statistics, the Prometheus exposition and
//! peer metadata between proxies. (Trace spans and access logs hang off
//! [`RequestRecord`] the same way.)

pub mod cluster_stats;
pub mod exposition;
mod flags;
pub mod metrics;
pub mod peer;
pub mod record;

pub use cluster_stats::{ClusterGauges, ClusterRow, ClusterStats};
pub use flags::ResponseFlags;
pub use metrics::{service_name_ns, ClusterLabels, Metrics, PeerLabels, RequestLabels};
pub use peer::PEER_HEADER;
pub use record::RequestRecord;
