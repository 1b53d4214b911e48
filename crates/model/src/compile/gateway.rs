//! Gateway listeners: each Gateway server port whose Gateway selects the gateway workload
//! becomes an HTTP listener (`HTTP` servers share the port's route table; `HTTPS` servers
//! that terminate TLS are TLS chains, each with its own route table —
//! [`crate::gateway_tls`]) or a TCP listener (`TCP`, PASSTHROUGH, and terminated `TLS`
//! servers — [`crate::tcp`]). `httpsRedirect` marks its server's virtual hosts.

use super::Builder;
use crate::config::*;
use crate::matching::{host_intersection, MatchCtx};
use crate::registry::selects;
use std::collections::{BTreeMap, BTreeSet};
use weft_api::Spec;

/// One host of a Gateway HTTP server, and whether that server redirects to HTTPS.
struct ServerHost {
    host: String,
    redirect: bool,
}

impl Builder<'_> {
    pub(super) fn gateway(&mut self, labels: &BTreeMap<String, String>, namespace: &str) {
        // port -> gateway ("ns/name") -> its server hosts on that port (HTTP and TCP)
        let mut ports: BTreeMap<u32, BTreeMap<String, Vec<ServerHost>>> = BTreeMap::new();
        let mut tcp_ports: BTreeMap<u32, BTreeMap<String, Vec<String>>> = BTreeMap::new();
        let mut tls_ports: BTreeMap<u32, BTreeMap<String, Vec<String>>> = BTreeMap::new();
        // port -> the HTTPS servers terminating TLS there: (gateway, index, server)
        let mut https: BTreeMap<u32, Vec<(String, usize, &weft_api::Server)>> = BTreeMap::new();
        // The same for TLS servers (terminated, then `tcp` routes), and their hosts.
        let mut tls_term: BTreeMap<u32, Vec<(String, usize, &weft_api::Server)>> = BTreeMap::new();
        let mut tls_term_ports: BTreeMap<u32, BTreeMap<String, Vec<String>>> = BTreeMap::new();
        for r in self.resources {
            let Spec::Gateway(gw) = &r.spec else { continue };
            if gw.selector.is_empty() || !selects(&gw.selector, labels) {
                continue;
            }
            self.used.insert(r.key());
            let key = format!("{}/{}", r.namespace(), r.name());
            for (i, server) in gw.servers.iter().enumerate() {
                let Some(port) = &server.port else { continue };
                // TLS servers and protocols neither HTTP nor opaque TCP are reported as
                // not enforced; nothing is served as another protocol than declared.
                let proto = crate::protocol::Protocol::parse(&port.protocol);
                let redirect = crate::gateway_tls::https_redirect(server);
                let by_port = match proto {
                    _ if crate::tcp::passthrough(server) => &mut tls_ports,
                    _ if crate::gateway_tls::terminates(server)
                        && port.protocol.eq_ignore_ascii_case("HTTPS") =>
                    {
                        https
                            .entry(port.number)
                            .or_default()
                            .push((key.clone(), i, server));
                        continue;
                    }
                    _ if crate::report::serves_http(&port.protocol)
                        && server.tls.as_ref().is_none_or(|t| t.mode.is_none()) =>
                    {
                        let hosts = ports.entry(port.number).or_default();
                        hosts
                            .entry(key.clone())
                            .or_default()
                            .extend(server.hosts.iter().map(|h| ServerHost {
                                host: h.clone(),
                                redirect,
                            }));
                        continue;
                    }
                    _ if crate::gateway_tls::terminates(server)
                        && port.protocol.eq_ignore_ascii_case("TLS") =>
                    {
                        let servers = tls_term.entry(port.number).or_default();
                        servers.push((key.clone(), i, server));
                        &mut tls_term_ports
                    }
                    _ if server.tls.is_some() => continue,
                    crate::protocol::Protocol::Tcp => &mut tcp_ports,
                    _ => continue,
                };
                let hosts = by_port.entry(port.number).or_default().entry(key.clone());
                hosts.or_default().extend(server.hosts.iter().cloned());
            }
        }
        let mut l4 = crate::tcp::L4Ctx {
            resources: self.resources,
            registry: self.registry,
            used: &mut self.used,
        };
        self.cfg.tcp_listeners = crate::tcp::gateway(&mut l4, labels, namespace, &tcp_ports, false);
        let passthrough = crate::tcp::gateway(&mut l4, labels, namespace, &tls_ports, true);
        self.cfg.tcp_listeners.extend(passthrough);
        for mut l in crate::tcp::gateway(&mut l4, labels, namespace, &tls_term_ports, false) {
            let servers = tls_term.get(&l.port).into_iter().flatten();
            let chains = servers.filter_map(|(gw, i, s)| {
                crate::gateway_tls::chain(s, format!("{gw}/servers[{i}]"), String::new())
            });
            l.tls = Some(crate::gateway_tls::ServerTls {
                chains: chains.collect(),
            });
            self.cfg.tcp_listeners.push(l);
        }
        for (port, gateways) in ports {
            // One port is either HTTP or HTTPS (Istio refuses mixing them on a port).
            if https.contains_key(&port) {
                continue;
            }
            let name = format!("gateway_{port}");
            let table = self.gateway_table(&gateways, labels, namespace, port);
            self.cfg.routes.insert(name.clone(), table);
            self.cfg.listeners.push(Listener {
                name: name.clone(),
                kind: ListenerKind::Gateway,
                port,
                route_table: name,
                tls: None,
            });
        }
        for (port, servers) in https {
            let mut chains = Vec::new();
            for (gw, i, server) in servers {
                let table_name = format!("gateway_{port}|{gw}|{i}");
                let hosts = server.hosts.iter().map(|h| ServerHost {
                    host: h.clone(),
                    redirect: false,
                });
                let one = BTreeMap::from([(gw.clone(), hosts.collect())]);
                let table = self.gateway_table(&one, labels, namespace, port);
                let name = format!("{gw}/servers[{i}]");
                if let Some(c) = crate::gateway_tls::chain(server, name, table_name.clone()) {
                    self.cfg.routes.insert(table_name, table);
                    chains.push(c);
                }
            }
            // Named apart from a plain port's listener, so a port that turns from HTTP to
            // HTTPS (or back) gets a new listener instead of keeping the old protocol.
            let name = format!("gateway_https_{port}");
            self.cfg.listeners.push(Listener {
                name: name.clone(),
                kind: ListenerKind::Gateway,
                port,
                route_table: name,
                tls: Some(crate::gateway_tls::ServerTls { chains }),
            });
        }
    }

    /// The route table of gateway servers on one port: a virtual host per VirtualService
    /// bound to one of `gateways`, for the hosts it shares with their servers (those of
    /// servers with `httpsRedirect` in a virtual host of their own that requires TLS).
    fn gateway_table(
        &mut self,
        gateways: &BTreeMap<String, Vec<ServerHost>>,
        labels: &BTreeMap<String, String>,
        namespace: &str,
        port: u32,
    ) -> RouteTable {
        let names: BTreeSet<String> = gateways.keys().cloned().collect();
        let ctx = MatchCtx {
            labels,
            namespace,
            gateways: Some(&names),
            port,
        };
        let mut table = RouteTable::default();
        let mut redirect_only: Vec<String> = gateways
            .values()
            .flatten()
            .filter(|h| h.redirect)
            .map(|h| crate::gateway_tls::sni_hosts_of(&h.host))
            .collect();
        for (r, vs) in self.virtual_services() {
            // Only the servers of the gateways this VirtualService binds admit its hosts.
            let bound: Vec<&Vec<ServerHost>> = vs
                .gateways
                .iter()
                .filter_map(|g| gateways.get(&crate::matching::qualify(g, r.namespace())))
                .collect();
            // (domain, requires TLS)
            let mut domains: Vec<(String, bool)> = Vec::new();
            for vs_host in &vs.hosts {
                for server_host in bound.iter().flat_map(|h| h.iter()) {
                    if let Some(d) = host_intersection(&server_host.host, vs_host) {
                        if !domains.iter().any(|(x, _)| *x == d) {
                            domains.push((d, server_host.redirect));
                        }
                    }
                }
            }
            if domains.is_empty() {
                continue;
            }
            self.used.insert(r.key());
            let routes = self.vs_routes(r, vs, &ctx);
            for require_tls in [false, true] {
                let domains: Vec<String> = domains
                    .iter()
                    .filter(|(_, t)| *t == require_tls)
                    .map(|(d, _)| d.clone())
                    .collect();
                if domains.is_empty() {
                    continue;
                }
                redirect_only.retain(|h| !domains.contains(h));
                table.virtual_hosts.push(VirtualHost {
                    name: r.key(),
                    domains,
                    routes: routes.clone(),
                    require_tls,
                });
            }
        }
        // Istio: a redirecting server's hosts that no VirtualService serves still redirect.
        redirect_only.sort();
        redirect_only.dedup();
        for host in redirect_only {
            table.virtual_hosts.push(VirtualHost {
                name: format!("{host}:{port}"),
                domains: vec![host],
                routes: Vec::new(),
                require_tls: true,
            });
        }
        table
    }
}
