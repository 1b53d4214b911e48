//! Opaque TCP listeners and their routes: one sidecar outbound listener per (service, TCP
//! or TLS port), gateway `TCP` servers, and VirtualService `tcp` / `tls` routes turned into
//! [`L4Route`]s. As for HTTP, conditions about the client (`port`, `sourceLabels`,
//! `sourceNamespace`, match-level `gateways`) are decided here per proxy; what is left for
//! the proxy is the SNI and the destination address. A match that cannot apply is
//! dropped, never widened.

use crate::config::{L4Listener, L4Match, L4Route, ListenerKind, WeightedCluster};
use crate::matching::{client_applies, host_intersection, MatchCtx};
use crate::names::cluster_name;
use crate::protocol::Protocol;
use crate::registry::{fqdn, Registry};
use std::collections::{BTreeMap, BTreeSet};
use weft_api::{Resource, RouteDestination, Spec, VirtualService};

/// What the TCP part of the compiler reads and records.
pub(crate) struct L4Ctx<'a> {
    pub resources: &'a [Resource],
    pub registry: &'a Registry,
    /// Keys of the resources that shaped this config.
    pub used: &'a mut BTreeSet<String>,
}

fn virtual_services(resources: &[Resource]) -> impl Iterator<Item = (&Resource, &VirtualService)> {
    resources.iter().filter_map(|r| match &r.spec {
        Spec::VirtualService(vs) => Some((r, vs)),
        _ => None,
    })
}

/// A sidecar's outbound TCP listeners: one per opaque port of every mesh service, routed by
/// the service's mesh VirtualService (its `tls` routes first on a TLS port, then `tcp`),
/// and to the service's own cluster on that port when none matches.
pub(crate) fn outbound(
    cx: &mut L4Ctx,
    proxy_ns: &str,
    labels: &BTreeMap<String, String>,
    sidecar: crate::sidecar::Applying<'_>,
) -> Vec<L4Listener> {
    let binds = crate::sidecar::egress_binds(sidecar);
    let scope = crate::sidecar::scope(sidecar);
    let mut out = Vec::new();
    for svc in crate::sidecar::visible(scope.as_ref(), cx.registry) {
        for port in svc.tcp_ports() {
            // Outside the Sidecar's egress hosts: no listener.
            if scope
                .as_ref()
                .is_some_and(|s| !s.admits(&svc.host, &svc.namespace, &[port]))
            {
                continue;
            }
            let ctx = MatchCtx {
                labels,
                namespace: proxy_ns,
                gateways: None,
                port,
            };
            let tls = svc.protocol(port) == Protocol::Tls;
            let mesh_vs = virtual_services(cx.resources).find(|(r, vs)| {
                let on_mesh = vs.gateways.is_empty() || vs.gateways.iter().any(|g| g == "mesh");
                on_mesh && vs.hosts.iter().any(|h| fqdn(h, r.namespace()) == svc.host)
            });
            let mut routes = Vec::new();
            if let Some((r, vs)) = mesh_vs {
                cx.used.insert(r.key());
                routes = vs_routes(cx.registry, r, vs, &ctx, tls);
            }
            routes.push(L4Route {
                name: format!("default/{}", svc.host),
                matches: Vec::new(),
                destinations: vec![WeightedCluster {
                    cluster: cluster_name(port, None, &svc.host),
                    weight: 100,
                    ..Default::default()
                }],
                origin: "default route (no tcp route matched)".into(),
            });
            let mut l = listener(
                format!("outbound_tcp|{port}|{}", svc.host),
                ListenerKind::Outbound,
                port,
                Some(svc.host.clone()),
                routes,
            );
            l.bind = crate::sidecar::bind_for(&binds, &svc.host, &svc.namespace, port);
            // TLS to a service outside the mesh with `resolution: NONE` (a wildcard host,
            // Istio's egress-wildcard task): it goes where the ClientHello's SNI says.
            let original = svc
                .external
                .as_ref()
                .is_some_and(|e| e.resolution == crate::egress::Resolution::OriginalDestination);
            l.sni |= tls && original;
            out.push(l);
        }
    }
    out
}

/// A Gateway server whose TLS is passed through untouched (`tls.mode: PASSTHROUGH`, said
/// explicitly): routed by the ClientHello's SNI with `tls` routes.
pub(crate) fn passthrough(server: &weft_api::Server) -> bool {
    server
        .tls
        .as_ref()
        .is_some_and(|t| t.mode == Some(weft_api::ServerTlsMode::Passthrough))
}

/// A gateway's TCP listeners: `ports` maps each opaque server port (or, with `tls`, each
/// PASSTHROUGH server port) to the gateways (`ns/name`) serving it and their server hosts.
/// A VirtualService bound to one of them, with a host the server admits, contributes its
/// `tls` (PASSTHROUGH only) and `tcp` routes; no default route (a connection nothing
/// routes is closed).
pub(crate) fn gateway(
    cx: &mut L4Ctx,
    labels: &BTreeMap<String, String>,
    namespace: &str,
    ports: &BTreeMap<u32, BTreeMap<String, Vec<String>>>,
    tls: bool,
) -> Vec<L4Listener> {
    let mut out = Vec::new();
    for (port, gateways) in ports {
        let names: BTreeSet<String> = gateways.keys().cloned().collect();
        let ctx = MatchCtx {
            labels,
            namespace,
            gateways: Some(&names),
            port: *port,
        };
        let mut routes = Vec::new();
        for (r, vs) in virtual_services(cx.resources) {
            let bound: Vec<&Vec<String>> = vs
                .gateways
                .iter()
                .filter_map(|g| gateways.get(&crate::matching::qualify(g, r.namespace())))
                .collect();
            let admitted = vs.hosts.iter().any(|h| {
                bound
                    .iter()
                    .flat_map(|hosts| hosts.iter())
                    .any(|s| host_intersection(s, h).is_some())
            });
            if !admitted || (vs.tcp.is_empty() && (!tls || vs.tls.is_empty())) {
                continue;
            }
            cx.used.insert(r.key());
            routes.extend(vs_routes(cx.registry, r, vs, &ctx, tls));
        }
        let kind = if tls { "tls" } else { "tcp" };
        out.push(listener(
            format!("gateway_{kind}_{port}"),
            ListenerKind::Gateway,
            *port,
            None,
            routes,
        ));
    }
    out
}

fn listener(
    name: String,
    kind: ListenerKind,
    port: u32,
    service: Option<String>,
    routes: Vec<L4Route>,
) -> L4Listener {
    let sni = routes
        .iter()
        .any(|r| r.matches.iter().any(|m| !m.sni_hosts.is_empty()));
    L4Listener {
        name,
        kind,
        port,
        service,
        sni,
        bind: None,
        routes,
        tls: None,
    }
}

/// A VirtualService's `tls` routes (when the port carries TLS) then its `tcp` routes, as
/// they apply to the proxy and port `ctx` stands for.
fn vs_routes(
    registry: &Registry,
    r: &Resource,
    vs: &VirtualService,
    ctx: &MatchCtx,
    tls: bool,
) -> Vec<L4Route> {
    let ns = r.namespace();
    let origin = format!("{} ({}:{})", r.key(), r.source.file, r.source.line);
    let mut out = Vec::new();
    let tls_routes = vs.tls.iter().filter(|_| tls).enumerate();
    for (i, t) in tls_routes {
        let matches: Vec<L4Match> = t
            .r#match
            .iter()
            .filter(|m| {
                client_applies(
                    &m.gateways,
                    &m.source_labels,
                    m.source_namespace.as_deref(),
                    m.port,
                    ns,
                    ctx,
                )
            })
            .map(|m| L4Match {
                sni_hosts: m.sni_hosts.clone(),
                destination_subnets: m.destination_subnets.clone(),
            })
            .collect();
        // A `tls` route must say which SNI it takes; one whose matches are all about
        // other clients does not exist here.
        if matches.is_empty() {
            continue;
        }
        out.push(L4Route {
            name: format!("{}/tls[{i}]", r.name()),
            matches,
            destinations: destinations(registry, &t.route, ns, ctx.port),
            origin: origin.clone(),
        });
    }
    for (i, t) in vs.tcp.iter().enumerate() {
        let matches: Vec<L4Match> = t
            .r#match
            .iter()
            // `sourceSubnet` is reported as not enforced: such a match is dropped.
            .filter(|m| m.source_subnet.is_none())
            .filter(|m| {
                client_applies(
                    &m.gateways,
                    &m.source_labels,
                    m.source_namespace.as_deref(),
                    m.port,
                    ns,
                    ctx,
                )
            })
            .map(|m| L4Match {
                sni_hosts: Vec::new(),
                destination_subnets: m.destination_subnets.clone(),
            })
            .collect();
        if !t.r#match.is_empty() && matches.is_empty() {
            continue;
        }
        out.push(L4Route {
            name: format!("{}/tcp[{i}]", r.name()),
            matches,
            destinations: destinations(registry, &t.route, ns, ctx.port),
            origin: origin.clone(),
        });
    }
    out
}

/// Weighted clusters of a route: a destination without a port takes the listener's port
/// when it is the same service, else the service's first opaque port, else its first.
fn destinations(
    registry: &Registry,
    route: &[RouteDestination],
    ns: &str,
    listener_port: u32,
) -> Vec<WeightedCluster> {
    let total = route.len();
    route
        .iter()
        .map(|d| {
            let host = fqdn(&d.destination.host, ns);
            let port = d
                .destination
                .port
                .as_ref()
                .and_then(|p| p.number)
                .or_else(|| {
                    let svc = registry.services.get(&host)?;
                    if svc.ports.contains(&listener_port) {
                        return Some(listener_port);
                    }
                    svc.tcp_ports().next().or(svc.ports.first().copied())
                })
                .unwrap_or(listener_port);
            WeightedCluster {
                cluster: cluster_name(port, d.destination.subset.as_deref(), &host),
                weight: if total == 1 {
                    100
                } else {
                    d.weight.unwrap_or(0).max(0) as u32
                },
                ..Default::default()
            }
        })
        .collect()
}
