//! The NECPGAME example's services outside the mesh, for `weft demo` only.
//!
//! `examples/necpgame/service-entry.yaml` declares three MESH_EXTERNAL `resolution: DNS`
//! services (Kafka, Redis, PostgreSQL). Before the mesh starts, the demo starts whichever of
//! their server programs this machine has, each on its declared port at a loopback address
//! of its own (`127.0.0.<n>`, probed free), and a dnsmasq that resolves their names to those
//! addresses; every proxy resolves through it (`UpOptions::dns_server`). Once the mesh is
//! ready, one real protocol check per started service goes through a sidecar's TCP listener
//! for it (Redis `PING`, PostgreSQL `select 1`), so the demo shows egress working end to end.
//! Everything started here is stopped when the demo stops.
//!
//! A known gap, as for command apps (see [`crate::process`]): if the demo itself is
//! SIGKILLed, these servers keep running (each leads its own process group).

mod check;
mod servers;

use crate::mesh::{Mesh, UpOptions};
use servers::Server;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

/// Which server program answers a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Kafka,
    Redis,
    Postgres,
}

/// One MESH_EXTERNAL service of the example.
#[derive(Debug, Clone, Copy)]
pub struct External {
    pub kind: Kind,
    pub host: &'static str,
    pub port: u16,
}

/// The services of `examples/necpgame/service-entry.yaml` (a unit test keeps them in step).
pub const NECPGAME_EXTERNAL: &[External] = &[
    External {
        kind: Kind::Kafka,
        host: "kafka.necpgame-data.example",
        port: 9092,
    },
    External {
        kind: Kind::Redis,
        host: "redis.necpgame-data.example",
        port: 6379,
    },
    External {
        kind: Kind::Postgres,
        host: "postgres.necpgame-data.example",
        port: 5432,
    },
];

/// A service whose server runs, and where.
#[derive(Debug, Clone)]
pub struct Started {
    pub service: External,
    pub addr: SocketAddr,
}

/// What the demo started outside the mesh; [`DemoEgress::stop`] stops all of it.
pub struct DemoEgress {
    pub started: Vec<Started>,
    pub dns: Option<SocketAddr>,
    servers: Vec<Server>,
    /// Folders to remove on stop (PostgreSQL's, when it had to live outside the state dir).
    scratch: Vec<PathBuf>,
}

impl DemoEgress {
    /// Starts what this machine has for `services` under `<state_dir>/egress`, printing one
    /// line per service (started at ADDR, or skipped and why) and one for the DNS server.
    /// Never fails: whatever cannot start is skipped, with the reason printed.
    pub async fn start(state_dir: &std::path::Path, services: &[External]) -> DemoEgress {
        let mut egress = DemoEgress {
            started: Vec::new(),
            dns: None,
            servers: Vec::new(),
            scratch: Vec::new(),
        };
        let dir = state_dir.join("egress");
        let Some(dnsmasq) = servers::dnsmasq_program() else {
            println!("egress: dnsmasq not found (/usr/sbin/dnsmasq or on PATH); nothing would resolve the ServiceEntries' names, so no server outside the mesh is started");
            for s in services {
                println!(
                    "egress: {}:{} skipped (no DNS server for it)",
                    s.host, s.port
                );
            }
            return egress;
        };
        let mut taken: Vec<Ipv4Addr> = Vec::new();
        for s in services {
            let Some(ip) = servers::free_loopback(s.port, &taken) else {
                println!(
                    "egress: {}:{} skipped (port {} is taken on every 127.0.0.x address)",
                    s.host, s.port, s.port
                );
                continue;
            };
            let addr = SocketAddr::from((ip, s.port));
            match servers::start(s.kind, addr, &dir).await {
                Ok(servers::Outcome::Started { server, scratch }) => {
                    println!(
                        "egress: {}:{} ({}) started at {addr}",
                        s.host,
                        s.port,
                        server.program()
                    );
                    taken.push(ip);
                    egress.servers.push(*server);
                    egress.scratch.extend(scratch);
                    egress.started.push(Started { service: *s, addr });
                }
                Ok(servers::Outcome::Skipped(why)) => {
                    println!("egress: {}:{} skipped ({why})", s.host, s.port);
                }
                Err(e) => {
                    tracing::warn!(host = s.host, error = %format!("{e:#}"), "egress server did not start");
                    println!(
                        "egress: {}:{} skipped (it did not start: {e:#})",
                        s.host, s.port
                    );
                }
            }
        }
        if egress.started.is_empty() {
            println!("egress: no server outside the mesh runs, so no DNS server is started");
            return egress;
        }
        let names: Vec<(&str, Ipv4Addr)> = egress
            .started
            .iter()
            .filter_map(|s| match s.addr.ip() {
                std::net::IpAddr::V4(ip) => Some((s.service.host, ip)),
                std::net::IpAddr::V6(_) => None,
            })
            .collect();
        match servers::start_dnsmasq(&dnsmasq, &names, &dir).await {
            Ok((server, addr)) => {
                println!("egress: DNS for those names: dnsmasq at {addr}");
                egress.dns = Some(addr);
                egress.servers.push(server);
            }
            Err(e) => {
                println!("egress: dnsmasq did not start ({e:#}); stopping the servers outside the mesh, nothing would resolve their names");
                for s in egress.started.drain(..) {
                    println!(
                        "egress: {}:{} skipped (no DNS server for it)",
                        s.service.host, s.service.port
                    );
                }
                egress.stop().await;
            }
        }
        egress
    }

    /// Through one sidecar's TCP listener per started service, a real protocol check;
    /// prints one line each. True if every check passed.
    pub(crate) async fn check(&self, mesh: &Mesh) -> bool {
        let mut ok = true;
        for s in &self.started {
            let label = format!("tcp/{}:{}", s.service.host, s.service.port);
            let Some((sidecar, listener)) = mesh.first_sidecar_listener(&label) else {
                println!(
                    "egress: {} FAILED: no sidecar has a TCP listener for it ({label})",
                    s.service.host
                );
                ok = false;
                continue;
            };
            let result = match s.service.kind {
                Kind::Redis => check::redis_ping(&listener).await,
                Kind::Postgres => check::postgres(&listener).await,
                Kind::Kafka => Err(anyhow::anyhow!("the demo has no Kafka check")),
            };
            match result {
                Ok(answer) => println!(
                    "egress: {} via {sidecar} ({listener}) → {answer}",
                    s.service.host
                ),
                Err(e) => {
                    ok = false;
                    tracing::warn!(host = s.service.host, %sidecar, error = %format!("{e:#}"), "egress check failed");
                    println!(
                        "egress: {} via {sidecar} ({listener}) → FAILED: {e:#}",
                        s.service.host
                    );
                }
            }
        }
        ok
    }

    /// Stops every server started here (politely, then SIGKILL to its process group).
    pub async fn stop(&mut self) {
        for server in self.servers.drain(..).rev() {
            server.stop().await;
        }
        for dir in self.scratch.drain(..) {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "could not remove a scratch folder");
            }
        }
    }
}

/// `weft demo`: starts the example's servers outside the mesh and their DNS server, runs
/// the mesh with it (checking egress once ready), and stops them all when the mesh stops.
/// The exit code is non-zero if the traffic run or an egress check failed.
pub async fn demo(mut opts: UpOptions, shutdown: impl Future<Output = ()>) -> anyhow::Result<i32> {
    tokio::pin!(shutdown);
    let mut egress = tokio::select! {
        biased;
        _ = &mut shutdown => return Err(anyhow::anyhow!("interrupted while starting")),
        e = DemoEgress::start(&opts.state_dir, NECPGAME_EXTERNAL) => e,
    };
    if egress.dns.is_some() {
        opts.dns_server = egress.dns;
    }
    let result = crate::up::up_with(opts, shutdown, Some(&egress)).await;
    egress.stop().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_matches_the_example() {
        let yaml = crate::examples::NECPGAME
            .iter()
            .find(|(n, _)| *n == "service-entry.yaml")
            .expect("the example has service-entry.yaml")
            .1;
        for s in NECPGAME_EXTERNAL {
            assert!(
                yaml.contains(&format!("hosts: [{}]", s.host)),
                "{} is not in service-entry.yaml",
                s.host
            );
            assert!(
                yaml.contains(&format!("number: {}", s.port)),
                "port {} is not in service-entry.yaml",
                s.port
            );
        }
        assert_eq!(
            yaml.matches("kind: ServiceEntry").count(),
            NECPGAME_EXTERNAL.len()
        );
    }
}
