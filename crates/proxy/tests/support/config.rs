//! Hand-built [`ProxyConfig`]s, named the way `weft_model::compile` names things:
//! listener/table `outbound` and `gateway_<port>`, clusters `outbound|<port>|<subset>|<host>`,
//! one virtual host per service host.

use super::control::TRUST_DOMAIN;
use super::proxy::Proxy;
use weft_model::{
    Cluster, Endpoint, Inbound, LbPolicy, Listener, ListenerKind, Outlier, ProxyConfig,
    RetryPolicy, Route, RouteTable, VirtualHost, WeightedCluster,
};

/// `name.ns.svc.cluster.local`.
pub fn service_host(name: &str, namespace: &str) -> String {
    format!("{name}.{namespace}.svc.cluster.local")
}

/// The endpoint a peer sidecar offers: its inbound address and certificate identity.
pub fn endpoint(p: &Proxy) -> Endpoint {
    Endpoint {
        address: p.inbound().to_string(),
        identity: p.identity.clone(),
        workload: p.workload.clone(),
        version: None,
        meta: Default::default(),
        plaintext: false,
        priority: 0,
        sni: None,
    }
}

/// A cluster for `host:port` (namespace taken from the host) with these endpoints.
pub fn cluster(host: &str, port: u32, endpoints: Vec<Endpoint>) -> Cluster {
    Cluster {
        name: weft_model::cluster_name(port, None, host),
        service: host.into(),
        namespace: host.split('.').nth(1).unwrap_or_default().into(),
        port,
        subset: None,
        lb: LbPolicy::RoundRobin,
        endpoints,
        outlier: None,
        hash: None,
        hash_table: Default::default(),
        max_requests: None,
        max_requests_per_connection: None,
        tcp: Default::default(),
        limits: Default::default(),
        egress: None,
    }
}

/// A catch-all route to one cluster, with no retries and no timeout (so a test sees
/// exactly the tries it configures). Istio's default policy is [`istio_default_retry`].
pub fn route_to(cluster: &str) -> Route {
    Route {
        name: format!("to/{cluster}"),
        destinations: vec![WeightedCluster {
            cluster: cluster.into(),
            weight: 100,
            ..Default::default()
        }],
        origin: "harness".into(),
        ..Default::default()
    }
}

/// Istio's default retry policy (what a route without `retries` gets).
pub fn istio_default_retry() -> RetryPolicy {
    weft_model::retry_policy(None)
}

/// `attempts` retries on these `retryOn` tokens with `backoff_ms` base backoff.
pub fn retries(attempts: u32, on: &[&str], backoff_ms: u64) -> RetryPolicy {
    RetryPolicy {
        attempts,
        retry_on: on
            .iter()
            .map(|t| weft_model::RetryCondition::parse(t).expect("a retryOn token"))
            .collect(),
        backoff_ms,
        ignore_previous_hosts: true,
        ..Default::default()
    }
}

/// Outlier detection on consecutive 5xx: eject after `consecutive_5xx`, for `base_ms` ×
/// ejections; every endpoint may be ejected; no panic mode.
pub fn outlier(consecutive_5xx: u32, base_ms: u64) -> Outlier {
    Outlier {
        consecutive_5xx,
        consecutive_gateway: 0,
        base_ejection_ms: base_ms,
        interval_ms: 10_000,
        max_ejection_percent: 100,
        min_health_percent: 0,
        split_local_origin: false,
        consecutive_local_origin: 5,
    }
}

/// A proxy config under construction.
#[derive(Debug, Clone, Default)]
pub struct Config(pub ProxyConfig);

impl Config {
    /// A sidecar config for `p`: its inbound section and an empty `outbound` listener.
    pub fn sidecar(p: &Proxy) -> Config {
        let mut c = ProxyConfig {
            inbound: Some(Inbound {
                workload: p.workload.clone(),
                namespace: p.namespace.clone(),
                identity: p.identity.clone(),
                trust_domain: TRUST_DOMAIN.into(),
                services: vec![service_host(&p.workload, &p.namespace)],
                version: None,
                app_http2: false,
                tcp_ports: vec![],
                // The harness's sidecars are STRICT unless a test says otherwise.
                mtls: weft_model::mtls::InboundMtls {
                    mode: weft_model::mtls::InboundMode::Strict,
                    ports: Default::default(),
                },
                ports: vec![],
                limits: Default::default(),
                max_requests: None,
                app_ports: Default::default(),
            }),
            ..Default::default()
        };
        c.listeners.push(Listener {
            name: "outbound".into(),
            kind: ListenerKind::Outbound,
            port: 0,
            route_table: "outbound".into(),
            tls: None,
        });
        c.routes.insert("outbound".into(), RouteTable::default());
        Config(c)
    }

    /// A gateway config with no listeners yet.
    pub fn gateway() -> Config {
        Config::default()
    }

    /// Adds `route` for `host` to the sidecar's outbound table (a virtual host named after
    /// the host with the FQDN and its short forms as domains; routes append in order).
    pub fn route(self, host: &str, route: Route) -> Config {
        self.table_route("outbound", host, route)
    }

    /// Adds a gateway listener `gateway_<port>` (if new) and `route` for `host` on it.
    pub fn gateway_route(mut self, port: u32, host: &str, route: Route) -> Config {
        let name = format!("gateway_{port}");
        if !self.0.listeners.iter().any(|l| l.name == name) {
            self.0.listeners.push(Listener {
                name: name.clone(),
                kind: ListenerKind::Gateway,
                port,
                route_table: name.clone(),
                tls: None,
            });
        }
        self.table_route(&name, host, route)
    }

    /// Adds `route` for `host` in route table `table` (created if missing).
    pub fn table_route(mut self, table: &str, host: &str, route: Route) -> Config {
        let t = self.0.routes.entry(table.into()).or_default();
        match t.virtual_hosts.iter_mut().find(|v| v.name == host) {
            Some(v) => v.routes.push(route),
            None => t.virtual_hosts.push(VirtualHost {
                name: host.into(),
                domains: domains(host),
                routes: vec![route],
                require_tls: false,
            }),
        }
        self
    }

    /// Adds (or replaces) a cluster.
    pub fn cluster(mut self, c: Cluster) -> Config {
        self.0.clusters.insert(c.name.clone(), c);
        self
    }

    pub fn build(self) -> ProxyConfig {
        self.0
    }
}

/// The domains `compile` gives a service host: `a.b.svc.cluster.local`, `a.b.svc`, `a.b`.
fn domains(host: &str) -> Vec<String> {
    let mut d = vec![host.to_string()];
    if let Some(short) = host.strip_suffix(".svc.cluster.local") {
        d.push(format!("{short}.svc"));
        d.push(short.to_string());
    }
    d
}
