//! Admitting one try to the mesh pool through the cluster's circuit breakers, with
//! Envoy's connection-pool semantics: a request that finds a usable connection goes at
//! once; one that needs a connection made, or has to wait for a connection slot
//! (`maxConnections` reached, counted as `upstream_cx_overflow`), is pending — and past
//! `http1MaxPendingRequests` pending requests it fails at once with `UO`
//! (`upstream_rq_pending_overflow`).
//!
//! Requests with HTTP/1.1 semantics (the default: see ARCHITECTURE.md, "Upstream pools")
//! hold a connection slot each until their response ends; multiplexed (HTTP/2) requests
//! hold none, only `http2MaxRequests` bounds them.

use super::forward::Upstream;
use super::lb::Pick;
use super::limits::{ConnSlot, Held};
use super::outcome::TryError;
use crate::telemetry::ClusterStats;

/// The connection slot to hold with the pick, and the pending place to hold until the
/// connection is there (none: a connection is ready).
pub(super) async fn admit(
    up: &Upstream<'_>,
    pick: &Pick,
) -> Result<(ConnSlot, Option<Held>), TryError> {
    let cluster = up.cluster;
    let limits = &cluster.lb.limits;
    let stats = &cluster.labels.stats;
    let multiplexed = cluster.spec.limits.multiplexed(up.client_h2);
    let slot = if multiplexed {
        Some(ConnSlot::default())
    } else {
        limits.try_slot()
    };
    let e = &pick.endpoint;
    let ready = up.pool.ready(&e.address, e.tls_identity(), &cluster.opts);
    let slot = match slot {
        Some(s) if ready => return Ok((s, None)),
        s => s,
    };
    if slot.is_none() {
        ClusterStats::inc(&stats.cx_overflow);
    }
    let Some(pending) = limits.pending() else {
        ClusterStats::inc(&stats.rq_pending_overflow);
        return Err(TryError::Overflow {
            cluster: cluster.spec.name.clone(),
            limit: "pending request limit (http1MaxPendingRequests)",
        });
    };
    let slot = match slot {
        Some(s) => s,
        None => limits.slot().await,
    };
    Ok((slot, Some(pending)))
}

/// What a request to the local app holds until its response ends.
pub type AppHold = (ConnSlot, Held);

/// Admits a request to the local app through the inbound cluster's breakers (Istio
/// applies the service's DestinationRule there too). The app client pools its own
/// connections: a request waits only for a slot.
pub async fn admit_app(
    cfg: &crate::config::ActiveConfig,
    client_h2: bool,
) -> Result<AppHold, TryError> {
    let limits = &cfg.inbound_limits;
    let overflow = |limit| TryError::Overflow {
        cluster: "the inbound cluster".into(),
        limit,
    };
    let request = limits
        .request()
        .ok_or_else(|| overflow("request limit (http2MaxRequests)"))?;
    let inbound = cfg.config.inbound.as_ref();
    if inbound.is_none_or(|i| i.limits.multiplexed(client_h2)) {
        return Ok((ConnSlot::default(), request));
    }
    if let Some(slot) = limits.try_slot() {
        return Ok((slot, request));
    }
    let _pending = limits
        .pending()
        .ok_or_else(|| overflow("pending request limit (http1MaxPendingRequests)"))?;
    Ok((limits.slot().await, request))
}
