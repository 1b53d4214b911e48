//! The upstream side: clusters with their live LB state, endpoint picking and health
//! (outlier detection, request limits), pooled mTLS HTTP/2 connections to peer proxies,
//! the local app's client, services outside the mesh (`egress`: dialled directly, TLS
//! originated), the retry loop with typed try outcomes, replayable request bodies, and
//! traffic mirrors.

pub mod admit;
pub mod app;
pub mod egress;
mod forward;
pub mod h1;
pub mod hashing;
pub mod lb;
pub mod limits;
pub mod locality;
mod mirror;
pub mod outcome;
pub mod pool;
pub mod replay;

pub use forward::{forward, Forwarded, Outgoing, Upstream};
pub use lb::{stable_hash, Ejection, LbState, Outcome, Pick};
pub use limits::{ClusterLimits, ConnSlot};
pub use mirror::mirror;
pub use outcome::{response_retriable, Timer, TryError};
pub use pool::{ConnOpts, ConnectError, PeerPool};
pub use replay::{Replay, ReplayBody, ReplayBudget};

use std::sync::Arc;

/// A cluster of the active config with its live LB state (kept across pushes while the
/// cluster's spec is unchanged).
#[derive(Debug)]
pub struct LiveCluster {
    pub spec: weft_model::Cluster,
    pub lb: Arc<LbState>,
    /// Telemetry labels and peer header, precomputed when the config was applied.
    pub labels: crate::telemetry::ClusterLabels,
    /// How its connections are made and reused.
    pub opts: ConnOpts,
    /// A cluster outside the mesh: dialled directly (`egress`), not over the
    /// mesh's pool.
    pub egress: Option<Arc<crate::upstream::egress::EgressCluster>>,
}
