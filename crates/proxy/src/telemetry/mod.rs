//! Telemetry: Envoy's response flags, Istio's request metrics recorded when each request
//! ends, and — for sides a push traces or logs — trace spans exported over OTLP and access
//! log lines ([`Record`] carries both to the end of the response).

pub mod access_log;
pub mod exchange;
pub mod export;
mod flags;
pub mod metrics;
pub mod observe;
pub mod peer;
pub mod trace_context;

pub use exchange::{Downstream, Exchange, Record};
pub use flags::ResponseFlags;
pub use metrics::{
    service_name_ns, ClusterLabels, Metrics, PeerLabels, RequestLabels, RequestRecord,
};
pub use observe::Observe;
pub use peer::PEER_HEADER;
