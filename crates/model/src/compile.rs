//! The compiler: (resources, registry, proxy) -> that proxy's [`ProxyConfig`].
//! Pure: no I/O, no clocks. Gateway listeners come from Gateways whose selector matches the
//! gateway workload; routes from VirtualServices (first match wins; a delegating route is
//! replaced by its delegate's routes, `delegate`); clusters from the registry and
//! DestinationRules (subsets, load balancer).

use crate::actions::{header_ops, retry_policy};
use crate::config::*;
use crate::matching::{convert, MatchCtx};
use crate::names::{cluster_name, parse_duration_ms};
use crate::registry::{fqdn, spiffe_id, Registry};
use crate::report;
use std::collections::{BTreeMap, BTreeSet};
use weft_api::{Resource, Spec, VirtualService};

mod clusters;
mod delegate;
mod gateway;

/// Which proxy to compile for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyRef {
    pub role: Role,
    /// WorkloadEntry name and namespace.
    pub workload: String,
    pub namespace: String,
}

/// A proxy's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Sidecar,
    Gateway,
}

/// Why a proxy cannot get a config.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CompileError {
    #[error(
        "no WorkloadEntry {namespace}/{name} in the config: add one for this proxy's workload"
    )]
    UnknownWorkload { namespace: String, name: String },
}

/// What the compile of every proxy shares for one set of resources, computed once per
/// config version instead of once per proxy: the not-enforced report and the mesh
/// VirtualServices by host.
#[derive(Debug, Clone)]
pub struct Prepared {
    not_enforced: Vec<NotEnforced>,
    /// Index into the resources of the first mesh VirtualService (bound to `mesh`, or to
    /// no gateway) for each of its fully qualified hosts.
    mesh_vs: std::collections::HashMap<String, usize>,
    /// Indexes into the resources of the DestinationRules for each fully qualified host,
    /// in resource order.
    drs: std::collections::HashMap<String, Vec<usize>>,
    /// The policy kinds only (AuthorizationPolicy, PeerAuthentication,
    /// RequestAuthentication, Telemetry, Sidecar, MeshConfig), in resource order: what the
    /// per-workload lookups scan, without the mesh's services and routes.
    policies: Vec<Resource>,
}

/// The kinds [`Prepared::policies`] keeps.
fn is_policy(spec: &Spec) -> bool {
    matches!(
        spec,
        Spec::AuthorizationPolicy(_)
            | Spec::PeerAuthentication(_)
            | Spec::RequestAuthentication(_)
            | Spec::Telemetry(_)
            | Spec::Sidecar(_)
            | Spec::MeshConfig(_)
    )
}

impl Prepared {
    /// What these resources configure that is not enforced yet (`report::not_enforced`).
    pub fn not_enforced(&self) -> &[NotEnforced] {
        &self.not_enforced
    }

    /// Prepares `resources`; pass the same resources to [`compile_prepared`].
    pub fn new(resources: &[Resource]) -> Prepared {
        let mut mesh_vs = std::collections::HashMap::new();
        let mut drs: std::collections::HashMap<String, Vec<usize>> = Default::default();
        for (i, r) in resources.iter().enumerate() {
            if let Spec::DestinationRule(dr) = &r.spec {
                drs.entry(fqdn(&dr.host, r.namespace()))
                    .or_default()
                    .push(i);
            }
            let Spec::VirtualService(vs) = &r.spec else {
                continue;
            };
            if !(vs.gateways.is_empty() || vs.gateways.iter().any(|g| g == "mesh")) {
                continue;
            }
            for h in &vs.hosts {
                mesh_vs.entry(fqdn(h, r.namespace())).or_insert(i);
            }
        }
        Prepared {
            not_enforced: report::not_enforced(resources),
            mesh_vs,
            drs,
            policies: resources
                .iter()
                .filter(|r| is_policy(&r.spec))
                .cloned()
                .collect(),
        }
    }

    /// The policy kinds of the prepared resources, in resource order.
    pub(crate) fn policies(&self) -> &[Resource] {
        &self.policies
    }

    /// The DestinationRules for `host` (fully qualified), in resource order.
    pub(crate) fn destination_rules<'r>(
        &self,
        resources: &'r [Resource],
        host: &str,
    ) -> Vec<&'r Resource> {
        let found = self.drs.get(host).map(Vec::as_slice).unwrap_or_default();
        found.iter().map(|&i| &resources[i]).collect()
    }
}

/// Compiles the config of one proxy.
pub fn compile(
    resources: &[Resource],
    registry: &Registry,
    trust_domain: &str,
    proxy: &ProxyRef,
) -> Result<ProxyConfig, CompileError> {
    let prepared = Prepared::new(resources);
    compile_prepared(resources, &prepared, registry, trust_domain, proxy)
}

/// Compiles the config of one proxy with what [`Prepared::new`] computed for `resources`.
pub fn compile_prepared(
    resources: &[Resource],
    prepared: &Prepared,
    registry: &Registry,
    trust_domain: &str,
    proxy: &ProxyRef,
) -> Result<ProxyConfig, CompileError> {
    let key = (proxy.namespace.clone(), proxy.workload.clone());
    let Some(workload) = registry.workloads.get(&key) else {
        return Err(CompileError::UnknownWorkload {
            namespace: proxy.namespace.clone(),
            name: proxy.workload.clone(),
        });
    };
    let policy_kinds = prepared.policies.as_slice();
    let root = crate::mesh::root_namespace(policy_kinds);
    let mut b = Builder {
        resources,
        policies: policy_kinds,
        prepared,
        registry,
        root,
        cfg: ProxyConfig::default(),
        used: BTreeSet::new(),
        extra_clusters: BTreeSet::new(),
        locality: workload.locality.clone(),
    };
    match proxy.role {
        Role::Gateway => b.gateway(&workload.labels, &workload.namespace),
        Role::Sidecar => {
            let sidecar =
                crate::sidecar::applying(policy_kinds, root, &workload.namespace, &workload.labels);
            if let Some((r, _)) = sidecar {
                b.used.insert(r.key());
            }
            b.outbound(&proxy.namespace, &workload.labels, sidecar);
            let (mtls, policies) =
                crate::mtls::inbound(policy_kinds, root, &workload.namespace, &workload.labels);
            b.used.extend(policies);
            let services = registry.services_of(&workload.namespace, &workload.name);
            let app_http2 = registry.backed_by(&key).any(|s| s.http2);
            let (limits, max_requests) = crate::pool::inbound_limits(
                |h| prepared.destination_rules(resources, h),
                &mut b.used,
                registry,
                &services,
                app_http2,
            );
            b.cfg.inbound = Some(Inbound {
                mtls,
                workload: workload.name.clone(),
                namespace: workload.namespace.clone(),
                identity: spiffe_id(trust_domain, &workload.namespace, &workload.service_account),
                trust_domain: trust_domain.to_string(),
                services,
                ports: registry.ports_of(&key, |_| true),
                tcp_ports: registry.ports_of(&key, |p| p.is_opaque()),
                app_http2,
                limits,
                max_requests,
                version: workload.labels.get("version").cloned(),
                app_ports: crate::sidecar::ingress_endpoints(sidecar),
            });
        }
    }
    b.cfg.mesh = crate::mesh::options(policy_kinds);
    b.cfg.workload_meta = crate::WorkloadMeta::from_labels(&workload.name, &workload.labels);
    let (mut authz, policies) = crate::authz::authz_for(
        policy_kinds,
        crate::mesh::mesh_config(policy_kinds),
        &workload.namespace,
        &workload.labels,
    );
    crate::authz::alias_trust_domain(&mut authz, trust_domain);
    let authorizers = authz.providers.iter().map(|p| p.cluster.clone());
    b.extra_clusters.extend(authorizers);
    b.cfg.authz = authz;
    b.used.extend(policies);
    let (authn, policies) = crate::authn::authn_for(
        policy_kinds,
        root,
        &workload.namespace,
        &workload.labels,
        &registry.jwks,
    );
    b.cfg.authn = authn;
    b.used.extend(policies);
    let (telemetry, used) =
        crate::telemetry::for_workload(policy_kinds, root, workload, trust_domain);
    b.cfg.telemetry = telemetry;
    b.used.extend(used);
    b.clusters(trust_domain);
    let used = b.used;
    let mut cfg = b.cfg;
    cfg.not_enforced = prepared
        .not_enforced
        .iter()
        .filter(|n| used.contains(&n.resource) || report::policy_applies(n, &proxy.namespace, root))
        .cloned()
        .collect();
    Ok(cfg)
}

struct Builder<'a> {
    resources: &'a [Resource],
    /// [`Prepared::policies`].
    policies: &'a [Resource],
    prepared: &'a Prepared,
    registry: &'a Registry,
    /// MeshConfig `rootNamespace`.
    root: &'a str,
    cfg: ProxyConfig,
    /// Keys of resources that shaped this config (for not-enforced reporting).
    used: BTreeSet<String>,
    /// Clusters no route names (external authorizers).
    extra_clusters: BTreeSet<String>,
    /// The proxy's own WorkloadEntry `locality` (locality failover).
    locality: Option<String>,
}

fn origin(r: &Resource) -> String {
    format!("{} ({}:{})", r.key(), r.source.file, r.source.line)
}

impl<'a> Builder<'a> {
    fn virtual_services(&self) -> impl Iterator<Item = (&'a Resource, &'a VirtualService)> {
        self.resources.iter().filter_map(|r| match &r.spec {
            Spec::VirtualService(vs) => Some((r, vs)),
            _ => None,
        })
    }

    fn outbound(
        &mut self,
        proxy_ns: &str,
        labels: &BTreeMap<String, String>,
        sidecar: crate::sidecar::Applying<'a>,
    ) {
        let mut table = RouteTable::default();
        let scope = crate::sidecar::scope(sidecar);
        let registry = self.registry;
        let visible = crate::sidecar::visible(scope.as_ref(), registry);
        for svc in visible {
            // Opaque TCP ports get listeners of their own (`crate::tcp::outbound`); each
            // HTTP port a virtual host.
            let http: Vec<u32> = svc.http_ports().collect();
            let Some(&first) = http.first() else {
                continue;
            };
            let default_port = if http.contains(&80) { 80 } else { first };
            for port in http {
                // Outside the Sidecar's egress hosts: the catch-all decides.
                if scope
                    .as_ref()
                    .is_some_and(|s| !s.admits(&svc.host, &svc.namespace, &[port]))
                {
                    continue;
                }
                let vhost = self.service_vhost(svc, port, port == default_port, proxy_ns, labels);
                table.virtual_hosts.push(vhost);
            }
        }
        table.virtual_hosts.push(self.catch_all(sidecar));
        let mut l4 = crate::tcp::L4Ctx {
            resources: self.resources,
            registry: self.registry,
            used: &mut self.used,
        };
        self.cfg.tcp_listeners = crate::tcp::outbound(&mut l4, proxy_ns, labels, sidecar);
        self.cfg.listeners.push(Listener {
            name: "outbound".into(),
            kind: ListenerKind::Outbound,
            port: 0,
            route_table: "outbound".into(),
            tls: None,
        });
        self.cfg.routes.insert("outbound".into(), table);
    }

    /// The virtual host of one HTTP port of a service: `host:port` and its short forms,
    /// plus the bare forms for the default port (80 if the service has it, else its first
    /// HTTP port: a `Host` without a port names port 80). Its routes are the mesh
    /// VirtualService's as they apply to that port (Istio's route config for the port).
    fn service_vhost(
        &mut self,
        svc: &crate::registry::Service,
        port: u32,
        default: bool,
        proxy_ns: &str,
        labels: &BTreeMap<String, String>,
    ) -> VirtualHost {
        let mut names = vec![svc.host.clone()];
        if let Some(short) = svc.host.strip_suffix(".svc.cluster.local") {
            names.push(format!("{short}.svc"));
            names.push(short.to_string());
            if svc.namespace == proxy_ns {
                if let Some((name, _)) = short.split_once('.') {
                    names.push(name.to_string());
                }
            }
        }
        let mut domains: Vec<String> = Vec::new();
        if default {
            domains.extend(names.iter().cloned());
        }
        domains.extend(names.iter().map(|n| format!("{n}:{port}")));
        let resources = self.resources;
        let mesh_vs = self.prepared.mesh_vs.get(&svc.host).and_then(|&i| {
            let r = &resources[i];
            match &r.spec {
                Spec::VirtualService(vs) => Some((r, vs)),
                _ => None,
            }
        });
        let routes = match mesh_vs {
            Some((r, vs)) => {
                self.used.insert(r.key());
                let ctx = MatchCtx {
                    labels,
                    namespace: proxy_ns,
                    gateways: None,
                    port,
                };
                self.vs_routes(r, vs, &ctx)
            }
            None => vec![Route {
                name: format!("default/{}", svc.host),
                matches: Vec::new(),
                destinations: vec![WeightedCluster {
                    cluster: cluster_name(port, None, &svc.host),
                    weight: 100,
                    ..Default::default()
                }],
                timeout_ms: None,
                retry: retry_policy(None),
                origin: "default route (no VirtualService)".into(),
                ..Default::default()
            }],
        };
        VirtualHost {
            name: match default {
                true => svc.host.clone(),
                false => format!("{}:{port}", svc.host),
            },
            domains,
            routes,
            require_tls: false,
        }
    }

    /// Istio's catch-all virtual host for hosts the registry does not know: ALLOW_ANY's
    /// `allow_any` (to the passthrough cluster) or REGISTRY_ONLY's `block_all` (502).
    fn catch_all(&self, sidecar: crate::sidecar::Applying<'_>) -> VirtualHost {
        let allow = crate::egress::allow_any(self.policies, sidecar.map(|(_, s)| s));
        let route = match allow {
            true => Route {
                name: "allow_any".into(),
                destinations: vec![WeightedCluster {
                    cluster: crate::egress::PASSTHROUGH_CLUSTER.into(),
                    weight: 100,
                    ..Default::default()
                }],
                retry: retry_policy(None),
                origin: "outboundTrafficPolicy ALLOW_ANY (unknown hosts pass through)".into(),
                ..Default::default()
            },
            false => Route {
                name: "block_all".into(),
                direct_response: Some(DirectResponse {
                    status: 502,
                    body: Vec::new(),
                }),
                origin: "outboundTrafficPolicy REGISTRY_ONLY (unknown hosts are refused)".into(),
                ..Default::default()
            },
        };
        VirtualHost {
            name: route.name.clone(),
            domains: vec!["*".into()],
            routes: vec![route],
            require_tls: false,
        }
    }

    fn vs_routes(&mut self, r: &'a Resource, vs: &'a VirtualService, ctx: &MatchCtx) -> Vec<Route> {
        let ns = r.namespace();
        // Delegating routes come back merged with their delegates' routes.
        self.http_entries(r, vs)
            .into_iter()
            .filter_map(|entry| {
                let delegate::HttpEntry {
                    http,
                    default_name,
                    origin,
                } = entry;
                let matches: Vec<RouteMatch> = http
                    .r#match
                    .iter()
                    .filter_map(|m| convert(m, ns, ctx))
                    .collect();
                // Every match of this route is about other clients: the route does not exist here.
                if !http.r#match.is_empty() && matches.is_empty() {
                    return None;
                }
                let total = http.route.len();
                let destinations = http
                    .route
                    .iter()
                    .map(|d| {
                        let host = fqdn(&d.destination.host, ns);
                        let port = self.destination_port(&d.destination, &host, ctx.port);
                        // Weights are relative; a single destination gets everything.
                        let weight = if total == 1 {
                            100
                        } else {
                            d.weight.unwrap_or(0).max(0) as u32
                        };
                        let (request_headers, response_headers) = header_ops(d.headers.as_ref());
                        WeightedCluster {
                            cluster: cluster_name(port, d.destination.subset.as_deref(), &host),
                            weight,
                            request_headers,
                            response_headers,
                        }
                    })
                    .collect();
                // mirror + mirrorPercentage (default 100%), and the newer mirrors[].
                let mut mirrors: Vec<Mirror> = Vec::new();
                if let Some(m) = &http.mirror {
                    let percent = http
                        .mirror_percentage
                        .as_ref()
                        .and_then(|p| p.value)
                        .or(http.mirror_percent.map(f64::from))
                        .unwrap_or(100.0);
                    mirrors.push(self.mirror(m, ns, percent, ctx.port));
                }
                for m in &http.mirrors {
                    let percent = m.percentage.as_ref().and_then(|p| p.value).unwrap_or(100.0);
                    mirrors.push(self.mirror(&m.destination, ns, percent, ctx.port));
                }
                Some(Route {
                    mirrors,
                    cors: http.cors_policy.as_ref().map(crate::actions::cors),
                    name: http.name.clone().unwrap_or(default_name),
                    matches,
                    destinations,
                    timeout_ms: if http.fault.is_some() {
                        None
                    } else {
                        http.timeout.as_deref().and_then(parse_duration_ms)
                    },
                    // With a fault configured, Istio enables neither timeouts nor retries.
                    retry: if http.fault.is_some() {
                        RetryPolicy::default()
                    } else {
                        retry_policy(http.retries.as_ref())
                    },
                    redirect: http.redirect.as_ref().map(crate::actions::redirect),
                    direct_response: http
                        .direct_response
                        .as_ref()
                        .map(crate::actions::direct_response),
                    fault: http.fault.as_ref().map(crate::actions::fault),
                    request_headers: header_ops(http.headers.as_ref()).0,
                    response_headers: header_ops(http.headers.as_ref()).1,
                    rewrite: crate::actions::route_rewrite(&http),
                    origin,
                })
            })
            .collect()
    }

    /// The port of a destination (Istio's `GetDestinationCluster`): its own, else the
    /// service's only port, else the port the route is for when the service has it, else
    /// the service's first, else 80.
    fn destination_port(&self, d: &weft_api::Destination, host: &str, route_port: u32) -> u32 {
        d.port.as_ref().and_then(|p| p.number).unwrap_or_else(|| {
            let Some(s) = self.registry.services.get(host) else {
                return 80;
            };
            match s.ports.as_slice() {
                [only] => *only,
                ports if ports.contains(&route_port) => route_port,
                ports => ports.first().copied().unwrap_or(80),
            }
        })
    }

    fn mirror(&self, d: &weft_api::Destination, ns: &str, percent: f64, port: u32) -> Mirror {
        let host = fqdn(&d.host, ns);
        let port = self.destination_port(d, &host, port);
        Mirror {
            cluster: cluster_name(port, d.subset.as_deref(), &host),
            percent: percent.clamp(0.0, 100.0),
        }
    }
}
