//! Name resolution for services outside the mesh: hickory's resolver, configured from the
//! system (`/etc/resolv.conf`, `/etc/hosts`) or — `--dns-server` — one DNS server the
//! operator names (local meshes and tests run their own). IP literals are not looked up.
//! Answers are cached by their TTL (hickory's cache).

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;
use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;

static RESOLVER: OnceLock<Result<TokioResolver, String>> = OnceLock::new();

/// Sets the DNS server every lookup of this process asks (before the first lookup; later
/// calls change nothing).
pub fn use_server(server: SocketAddr) {
    let _ = RESOLVER.set(for_server(server));
}

fn for_server(server: SocketAddr) -> Result<TokioResolver, String> {
    let mut udp = ConnectionConfig::udp();
    udp.port = server.port();
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = server.port();
    let mut ns = NameServerConfig::udp_and_tcp(server.ip());
    ns.connections = vec![udp, tcp];
    let config = ResolverConfig::from_name_servers(vec![ns]);
    TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
        .build()
        .map_err(|e| format!("a resolver for DNS server {server}: {e}"))
}

fn system() -> Result<TokioResolver, String> {
    TokioResolver::builder_tokio()
        .and_then(|b| b.build())
        .map_err(|e| format!("the system's DNS configuration (/etc/resolv.conf): {e}"))
}

/// A name that did not resolve (Envoy's `DF`), carried inside an `io::Error`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unresolved(pub String);

impl Unresolved {
    /// Whether an I/O error is a failed resolution.
    pub fn is(e: &std::io::Error) -> bool {
        e.get_ref().is_some_and(|i| i.is::<Unresolved>())
    }
}

/// The addresses `host` resolves to, in the order the answer gives them.
pub async fn resolve(host: &str) -> Result<Vec<IpAddr>, String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    let resolver = RESOLVER.get_or_init(system).as_ref()?;
    // A trailing dot: the name is absolute (no search domains are tried).
    let fqdn = format!("{}.", host.trim_end_matches('.'));
    let answer = resolver
        .lookup_ip(fqdn.as_str())
        .await
        .map_err(|e| format!("resolving {host}: {e}"))?;
    let ips: Vec<IpAddr> = answer.iter().collect();
    if ips.is_empty() {
        return Err(format!("resolving {host}: no addresses"));
    }
    Ok(ips)
}
