//! The route decision for one TCP connection, pure like [`crate::route::decide`]: the
//! listener's compiled `tls`/`tcp` routes in order, the first whose match applies (SNI,
//! destination subnet) wins, then a weighted pick among its destinations.

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
        })
    }

    /// The decision for one connection (`rng` rolls the weighted pick).
    pub fn decide(&self, conn: &ConnView, rng: &mut fastrand::Rng) -> L4Decision<'_> {
        let Some(route) = self.routes.iter().find(|r| r.applies(conn)) else {
            return L4Decision::NoRoute;
        };
        if route.total_weight == 0 {
            return L4Decision::NoRoute;
        }
        let mut n = rng.u32(0..route.total_weight);
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
            routes,
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
    fn weighted_destinations_split_by_weight() {
        let t = table(vec![route("r", vec![], vec![wc("a", 80), wc("b", 20)])]);
        let mut rng = fastrand::Rng::with_seed(3);
        let a = (0..10_000)
            .filter(|_| {
                matches!(
                    t.decide(&view(None), &mut rng),
                    L4Decision::Forward { cluster: "a", .. }
                )
            })
            .count();
        assert!(
            (7_700..8_300).contains(&a),
            "80/20 split, got {a} of 10000 on a"
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
        let mut rng = fastrand::Rng::with_seed(1);
        let pick = |name: Option<&str>, rng: &mut fastrand::Rng| match t.decide(&view(name), rng) {
            L4Decision::Forward { route, .. } => route.to_string(),
            L4Decision::NoRoute => "none".into(),
        };
        assert_eq!(pick(Some("db.example.com"), &mut rng), "exact");
        assert_eq!(pick(Some("web.example.com"), &mut rng), "wild");
        assert_eq!(
            pick(Some("example.com"), &mut rng),
            "tcp",
            "*.x needs a label"
        );
        assert_eq!(pick(None, &mut rng), "tcp", "no ClientHello: the tcp route");
    }

    #[test]
    fn destination_subnets_and_zero_weights() {
        let m = L4Match {
            sni_hosts: vec![],
            destination_subnets: vec!["10.0.0.0/8".into(), "127.0.0.1".into()],
        };
        let t = table(vec![route("r", vec![m.clone()], vec![wc("a", 1)])]);
        let mut rng = fastrand::Rng::with_seed(1);
        assert!(matches!(
            t.decide(&view(None), &mut rng),
            L4Decision::Forward { .. }
        ));
        let elsewhere = ConnView {
            sni: None,
            destination: "192.168.1.1".parse().unwrap(),
        };
        assert_eq!(t.decide(&elsewhere, &mut rng), L4Decision::NoRoute);
        let zero = table(vec![route("r", vec![], vec![wc("a", 0)])]);
        assert_eq!(zero.decide(&view(None), &mut rng), L4Decision::NoRoute);
        let bad = L4Listener {
            name: "l".into(),
            kind: ListenerKind::Outbound,
            port: 1,
            service: None,
            sni: false,
            routes: vec![route("r", vec![], vec![wc("missing", 1)])],
        };
        assert!(L4Table::build(&bad, |_| false)
            .unwrap_err()
            .contains("unknown cluster"));
    }
}
