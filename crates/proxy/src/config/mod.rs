//! The active config: the runtime form of a pushed [`ProxyConfig`] — validated, regexes
//! compiled, virtual hosts indexed, LB state per cluster. Built off the hot path on every
//! push and swapped in atomically; a config that fails to build is NACKed and never
//! replaces the running one.

mod labels;

pub use labels::{OwnLabels, Who};

use crate::route::RouteTable;
use crate::upstream::{LbState, LiveCluster};
use std::collections::HashMap;
use std::sync::Arc;
use weft_model::ProxyConfig;

/// Everything the data path reads, swapped as one unit.
#[derive(Debug, Default)]
pub struct ActiveConfig {
    pub version: String,
    pub config: ProxyConfig,
    pub tables: HashMap<String, RouteTable>,
    pub clusters: HashMap<String, LiveCluster>,
    /// This proxy's own labels (telemetry).
    pub own: OwnLabels,
    /// The AuthorizationPolicies of this workload, compiled.
    pub authz: crate::authz::Engine,
    /// The same policies as they apply to opaque TCP connections (HTTP-only fields
    /// skipped or dropped as Istio's TCP filter does: `weft_model::authz_tcp`).
    pub authz_tcp: crate::authz::Engine,
    /// The compiled routes of each TCP listener, by listener name.
    pub l4: HashMap<String, crate::tcp::L4Table>,
    /// The RequestAuthentications (JWT rules and keys) of this workload, compiled.
    pub authn: crate::authn::Engine,
    /// Tracing and access logs per side (set by the control stream, which owns the
    /// export queues and log writers).
    pub telemetry: crate::telemetry::observe::Compiled,
    /// The inbound cluster's circuit breakers (sidecar → app), kept across pushes while
    /// its limits are unchanged.
    pub inbound_limits: Arc<crate::upstream::ClusterLimits>,
}

impl ActiveConfig {
    /// Validates and compiles a pushed config. LB state of clusters whose spec did not
    /// change is carried over from `previous`; of clusters whose endpoints alone changed,
    /// per endpoint (`LbState::carried`).
    pub fn build(
        version: &str,
        config: ProxyConfig,
        previous: &ActiveConfig,
        who: &Who,
    ) -> Result<ActiveConfig, String> {
        let mut tables = HashMap::new();
        for (name, table) in &config.routes {
            // Virtual hosts unchanged since the previous config keep their compiled form.
            let before = previous.tables.get(name);
            tables.insert(
                name.clone(),
                RouteTable::build(table, &config.clusters, before)?,
            );
        }
        for l in &config.listeners {
            // An HTTPS listener's requests use the route table of their TLS chain.
            let named: Vec<&String> = match &l.tls {
                Some(t) => t.chains.iter().map(|c| &c.route_table).collect(),
                None => vec![&l.route_table],
            };
            if let Some(missing) = named.into_iter().find(|t| !tables.contains_key(*t)) {
                return Err(format!(
                    "listener {} refers to unknown route table {missing}",
                    l.name
                ));
            }
        }
        let own = labels::own(&config, who);
        let authz = crate::authz::Engine::build(&config.authz)?;
        let authz_tcp =
            crate::authz::Engine::build(&weft_model::authz_tcp::for_tcp(&config.authz))?;
        let l4 = config
            .tcp_listeners
            .iter()
            .map(|l| {
                Ok((
                    l.name.clone(),
                    crate::tcp::L4Table::build(l, |c| config.clusters.contains_key(c))?,
                ))
            })
            .collect::<Result<HashMap<_, _>, String>>()?;
        let authn = crate::authn::Engine::build(&config.authn)?;
        let clusters = config
            .clusters
            .iter()
            .map(|(name, c)| {
                let before = previous.clusters.get(name);
                let old = before.filter(|old| old.spec == *c);
                let lb = match (old, before) {
                    (Some(old), _) => old.lb.clone(),
                    (None, Some(b)) if only_endpoints_differ(&b.spec, c) => {
                        Arc::new(LbState::carried(c, &b.lb))
                    }
                    _ => Arc::new(LbState::new(c)),
                };
                // Connections to a service outside the mesh stay pooled while it is
                // unchanged (its TLS files are read again when it changes).
                let egress = match old {
                    Some(old) => old.egress.clone(),
                    None => crate::upstream::egress::EgressCluster::build(c)?,
                };
                let live = LiveCluster {
                    spec: c.clone(),
                    lb,
                    labels: labels::cluster(c, &own, who),
                    opts: crate::upstream::ConnOpts::of(c),
                    egress,
                };
                Ok((name.clone(), live))
            })
            .collect::<Result<HashMap<_, _>, String>>()?;
        let limits_of = |c: &ProxyConfig| {
            c.inbound
                .as_ref()
                .map(|i| (i.limits.clone(), i.max_requests))
        };
        let inbound_limits = match limits_of(&previous.config) {
            Some(old) if Some(&old) == limits_of(&config).as_ref() => {
                previous.inbound_limits.clone()
            }
            _ => {
                let (limits, max) = limits_of(&config).unwrap_or_default();
                Arc::new(crate::upstream::ClusterLimits::new(&limits).with_max_requests(max))
            }
        };
        Ok(ActiveConfig {
            inbound_limits,
            version: version.to_string(),
            config,
            tables,
            clusters,
            own,
            authz,
            authz_tcp,
            l4,
            authn,
            telemetry: Default::default(),
        })
    }
}

/// True when two specs of a cluster differ at most in their endpoints (an EDS-style update:
/// balancing and outlier state carry over per endpoint).
fn only_endpoints_differ(a: &weft_model::Cluster, b: &weft_model::Cluster) -> bool {
    let bare = |c: &weft_model::Cluster| weft_model::Cluster {
        endpoints: Vec::new(),
        ..c.clone()
    };
    bare(a) == bare(b)
}

#[cfg(test)]
mod tests;
