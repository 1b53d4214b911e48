//! Telemetry: Envoy's response flags, and Istio's request metrics recorded when each
//! request ends. (Trace spans and access logs come with the observability work; they hang
//! off [`RequestRecord`] the same way.)

mod flags;
pub mod metrics;
pub mod peer;
pub mod tcp_metrics;

pub use flags::ResponseFlags;
pub use metrics::{
    service_name_ns, ClusterLabels, Metrics, PeerLabels, RequestLabels, RequestRecord,
};
pub use peer::PEER_HEADER;
