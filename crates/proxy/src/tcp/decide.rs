//! The route decision for one TCP connection, pure like [`crate::route::decide`]: the
//! listener's compiled `tls`/`tcp` routes in order, the first whose match applies (SNI,
//! destination subnet) wins, then a weighted pick among its destinations by a roll in
//! [0, 1). The listener's rolls follow a low-discrepancy sequence ([`L4Table::next_roll`]:
//! the golden-ratio Weyl sequence) instead of independent random draws, so any run of
//! connections splits as the weights say to within two connections per destination —
//! 80/20 over 100 connections is 80±2, where Envoy's random picks give 80±8 (2σ).

use ipnet::IpNet;
use std::net::IpAddr;
use weft_model::{L4Listener, L4Route};

/// What a connection looks like to routing.
#[derive(Debug, Clone, Copy)]
pub struct ConnView<'a> {
    /// The server name of the client's TLS ClientHello, lower-case (listeners with SNI
    /// routes read it).
    pub sni: Option<&'a str>,
    /// The address the connection was made to.
    pub destination: IpAddr,
}

#[derive(Debug)]
struct CompiledMatch {
    sni: Vec<String>,
    subnets: Vec<IpNet>,
}

#[derive(Debug)]
struct CompiledRoute {
    spec: L4Route,
    matches: Vec<CompiledMatch>,
    total_weight: u32,
}

/// A TCP listener's routes, compiled when its config is applied.
#[derive(Debug)]
pub struct L4Table {
    /// Read the ClientHello before deciding.
    pub sni: bool,
    /// The service a sidecar's outbound listener stands for (the tunnel's authority).
    pub service: Option<String>,
    pub port: u32,
    routes: Vec<CompiledRoute>,
    /// Connections routed so far (the position in the roll sequence).
    rolls: std::sync::atomic::AtomicU64,
}

/// What the decision says.
#[derive(Debug, PartialEq, Eq)]
pub enum L4Decision<'t> {
    /// Pipe the connection to this cluster.
    Forward { route: &'t str, cluster: &'t str },
    /// No route applies, or its weights are all 0 (Envoy's `NR`): close.
    NoRoute,
}

fn subnet(s: &str) -> Result<IpNet, String> {
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("destinationSubnets: {s:?} is neither an IP address nor a CIDR"))
}

impl L4Table {
    /// Compiles a listener's routes; every destination must name a cluster the config has.
    pub fn build(l: &L4Listener, known: impl Fn(&str) -> bool) -> Result<L4Table, String> {
        let mut routes = Vec::new();
        for r in &l.routes {
            let mut matches = Vec::new();
            for m in &r.matches {
                matches.push(CompiledMatch {
                    sni: m.sni_hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
                    subnets: m
                        .destination_subnets
                        .iter()
                        .map(|s| subnet(s))
                        .collect::<Result<_, _>>()?,
                });
            }
            for d in &r.destinations {
                if !known(&d.cluster) {
                    return Err(format!(
                        "TCP listener {} route {} refers to unknown cluster {}",
                        l.name, r.name, d.cluster
                    ));
                }
            }
            routes.push(CompiledRoute {
                total_weight: r.destinations.iter().map(|d| d.weight).sum(),
                spec: r.clone(),
                matches,
            });
        }
        Ok(L4Table {
            sni: l.sni,
            service: l.service.clone(),
            port: l.port,
            routes,
            rolls: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The next roll of this listener's sequence, in [0, 1).
    pub fn next_roll(&self) -> f64 {
        const GOLDEN: f64 = 0.618_033_988_749_894_9;
        let n = self
            .rolls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        (n as f64 * GOLDEN).fract()
    }

    /// The decision for one connection; `roll` in [0, 1) picks among weighted destinations.
    pub fn decide(&self, conn: &ConnView, roll: f64) -> L4Decision<'_> {
        let Some(route) = self.routes.iter().find(|r| r.applies(conn)) else {
            return L4Decision::NoRoute;
        };
        if route.total_weight == 0 {
            return L4Decision::NoRoute;
        }
        let mut n = ((roll.clamp(0.0, 1.0) * f64::from(route.total_weight)) as u32)
            .min(route.total_weight - 1);
        for d in &route.spec.destinations {
            if n < d.weight {
                return L4Decision::Forward {
                    route: &route.spec.name,
                    cluster: &d.cluster,
                };
            }
            n -= d.weight;
        }
        L4Decision::NoRoute
    }
}

impl CompiledRoute {
    fn applies(&self, conn: &ConnView) -> bool {
        self.matches.is_empty() || self.matches.iter().any(|m| m.applies(conn))
    }
}

impl CompiledMatch {
    fn applies(&self, conn: &ConnView) -> bool {
        let sni_ok = self.sni.is_empty()
            || conn
                .sni
                .is_some_and(|name| self.sni.iter().any(|h| sni_matches(h, name)));
        let subnet_ok =
            self.subnets.is_empty() || self.subnets.iter().any(|n| n.contains(&conn.destination));
        sni_ok && subnet_ok
    }
}

/// An SNI host: exact, `*` (any), or `*.suffix` (one or more labels before the suffix).
fn sni_matches(host: &str, name: &str) -> bool {
    if host == "*" {
        return true;
    }
    match host.strip_prefix('*') {
        Some(suffix) => name.len() > suffix.len() && name.ends_with(suffix),
        None => host == name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_model::{L4Match, ListenerKind, WeightedCluster};

    fn wc(cluster: &str, weight: u32) -> WeightedCluster {
        WeightedCluster {
            cluster: cluster.into(),
            weight,
            ..Default::default()
        }
    }

    fn route(name: &str, matches: Vec<L4Match>, dests: Vec<WeightedCluster>) -> L4Route {
        L4Route {
            name: name.into(),
            matches,
            destinations: dests,
            origin: String::new(),
        }
    }

    fn table(routes: Vec<L4Route>) -> L4Table {
        let l = L4Listener {
            name: "l".into(),
            kind: ListenerKind::Outbound,
            port: 9000,
            service: None,
            sni: true,
            bind: None,
            routes,
            tls: None,
        };
        L4Table::build(&l, |c| ["a", "b", "c"].contains(&c)).unwrap()
    }

    fn view(sni: Option<&str>) -> ConnView<'_> {
        ConnView {
            sni,
            destination: "127.0.0.1".parse().unwrap(),
        }
    }

    #[test]
    fn weighted_destinations_split_by_weight_over_any_run_of_connections() {
        let t = table(vec![route("r", vec![], vec![wc("a", 80), wc("b", 20)])]);
        let to_a = |n: usize| {
            (0..n)
                .filter(|_| {
                    let roll = t.next_roll();
                    let d = t.decide(&view(None), roll);
                    matches!(d, L4Decision::Forward { cluster: "a", .. })
                })
                .count()
        };
        for _ in 0..50 {
            let a = to_a(100);
            assert!(
                (78..=82).contains(&a),
                "80/20 over 100 connections: {a} on a"
            );
        }
        let at = |roll| t.decide(&view(None), roll);
        assert_eq!(
            at(0.79),
            L4Decision::Forward {
                route: "r",
                cluster: "a"
            }
        );
        assert_eq!(
            at(0.8),
            L4Decision::Forward {
                route: "r",
                cluster: "b"
            }
        );
    }

    #[test]
    fn sni_routes_match_exact_and_wildcard_names_first_match_wins() {
        let sni = |hosts: &[&str]| L4Match {
            sni_hosts: hosts.iter().map(|h| h.to_string()).collect(),
            destination_subnets: vec![],
        };
        let t = table(vec![
            route("exact", vec![sni(&["db.example.com"])], vec![wc("a", 100)]),
            route("wild", vec![sni(&["*.example.com"])], vec![wc("b", 100)]),
            route("tcp", vec![], vec![wc("c", 100)]),
        ]);
        let pick = |name: Option<&str>| match t.decide(&view(name), 0.5) {
            L4Decision::Forward { route, .. } => route.to_string(),
            L4Decision::NoRoute => "none".into(),
        };
        assert_eq!(pick(Some("db.example.com")), "exact");
        assert_eq!(pick(Some("web.example.com")), "wild");
        assert_eq!(pick(Some("example.com")), "tcp", "*.x needs a label");
        assert_eq!(pick(None), "tcp", "no ClientHello: the tcp route");
    }

    #[test]
    fn destination_subnets_and_zero_weights() {
        let m = L4Match {
            sni_hosts: vec![],
            destination_subnets: vec!["10.0.0.0/8".into(), "127.0.0.1".into()],
        };
        let t = table(vec![route("r", vec![m.clone()], vec![wc("a", 1)])]);
        assert!(matches!(
            t.decide(&view(None), 0.5),
            L4Decision::Forward { .. }
        ));
        let elsewhere = ConnView {
            sni: None,
            destination: "192.168.1.1".parse().unwrap(),
        };
        assert_eq!(t.decide(&elsewhere, 0.5), L4Decision::NoRoute);
        let zero = table(vec![route("r", vec![], vec![wc("a", 0)])]);
        assert_eq!(zero.decide(&view(None), 0.5), L4Decision::NoRoute);
        let bad = L4Listener {
            name: "l".into(),
            kind: ListenerKind::Outbound,
            port: 1,
            service: None,
            sni: false,
            bind: None,
            routes: vec![route("r", vec![], vec![wc("missing", 1)])],
            tls: None,
        };
        assert!(L4Table::build(&bad, |_| false)
            .unwrap_err()
            .contains("unknown cluster"));
    }
}
