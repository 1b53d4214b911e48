//! Clusters outside the mesh (ServiceEntries without workloadSelector, and ALLOW_ANY's
//! passthrough cluster): connections go straight to the service — no mesh mTLS, no
//! tunnel — to the endpoint's address or, for `resolution: NONE` and the passthrough
//! cluster, where the app addressed the request. Names are resolved when a connection is
//! made (`dns`): DNS spreads connections over every address of the answer, DNS_ROUND_ROBIN
//! takes the first. TLS is originated when the DestinationRule says SIMPLE or MUTUAL
//! (`tls`). HTTP goes out as HTTP/1.1 on pooled connections per destination address
//! ([`crate::upstream::h1`]), or HTTP/2 for a `GRPC`/`HTTP2` port (`h2`); opaque TCP gets
//! one connection per downstream connection.

pub mod dns;
mod h2;
mod tls;

use crate::body::Body;
use crate::upstream::h1::{H1Pool, Io};
use crate::upstream::{ConnOpts, TryError};
use futures_util::future::BoxFuture;
use http::{Request, Response};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::net::TcpStream;
use weft_model::{Cluster, Endpoint, Resolution};

/// Most destinations with a pool of their own (the passthrough cluster's are the
/// authorities apps ask for); idle ones are dropped beyond it.
const MAX_DESTINATIONS: usize = 256;

/// A cluster outside the mesh: how to reach it, and its HTTP/1.1 pools by destination.
pub struct EgressCluster {
    resolution: Resolution,
    tls: Option<(Arc<rustls::ClientConfig>, Option<String>)>,
    /// The service host: the TLS server name for endpoints given as IPs.
    service: String,
    /// The port of a request's authority without one.
    default_port: u32,
    opts: ConnOpts,
    pools: Mutex<HashMap<String, Arc<H1Pool>>>,
    /// HTTP/2 instead (a `GRPC`/`HTTP2` port), one connection per destination.
    h2: Option<h2::H2Conns>,
    /// Rotates the first address tried over a DNS answer.
    next: AtomicUsize,
    me: Weak<EgressCluster>,
}

impl std::fmt::Debug for EgressCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EgressCluster")
            .field("service", &self.service)
            .field("resolution", &self.resolution)
            .finish_non_exhaustive()
    }
}

impl EgressCluster {
    /// The egress side of a cluster, if it is outside the mesh; the TLS files are read now
    /// (an error names the file and NACKs the push).
    pub fn build(c: &Cluster) -> Result<Option<Arc<EgressCluster>>, String> {
        let Some(e) = &c.egress else {
            return Ok(None);
        };
        let tls = match &e.tls {
            Some(o) => Some((
                tls::client_config(o, c.limits.http2)
                    .map_err(|err| format!("cluster {}: {err}", c.name))?,
                o.sni.clone(),
            )),
            None => None,
        };
        Ok(Some(Arc::new_cyclic(|me| EgressCluster {
            resolution: e.resolution,
            tls,
            service: c.service.clone(),
            default_port: if c.port == 0 { 80 } else { c.port },
            opts: ConnOpts::of(c),
            pools: Mutex::new(HashMap::new()),
            // A `GRPC`/`HTTP2` port (or `h2UpgradePolicy: UPGRADE`): HTTP/2 upstream.
            h2: c.limits.http2.then(h2::H2Conns::default),
            next: AtomicUsize::new(0),
            me: me.clone(),
        })))
    }

    /// Where a connection for `endpoint` goes (`host:port`): the endpoint's address, or
    /// where the app addressed it (`authority`) for an original-destination cluster.
    pub fn target(&self, endpoint: &Endpoint, authority: Option<&str>) -> String {
        let original = self.resolution == Resolution::OriginalDestination;
        match authority.filter(|_| original || endpoint.address.is_empty()) {
            Some(a) if has_port(a) => a.to_string(),
            Some(a) => format!("{a}:{}", self.default_port),
            None => endpoint.address.clone(),
        }
    }

    /// A connection to `addr` (`host:port`), TLS when the cluster originates it, within
    /// `connectTimeout`.
    pub async fn connect(&self, addr: &str) -> std::io::Result<Io> {
        let timeout = self.opts.connect_timeout;
        match tokio::time::timeout(timeout, self.connect_now(addr)).await {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("connecting to {addr} took longer than {timeout:?} (connectTimeout)"),
            )),
        }
    }

    async fn connect_now(&self, addr: &str) -> std::io::Result<Io> {
        let (host, port) = split(addr)?;
        let ips = dns::resolve(host)
            .await
            .map_err(|e| std::io::Error::other(dns::Unresolved(e)))?;
        let order: Vec<SocketAddr> = match self.resolution {
            Resolution::DnsRoundRobin => vec![SocketAddr::new(ips[0], port)],
            _ => {
                let start = self.next.fetch_add(1, Ordering::Relaxed) % ips.len();
                (0..ips.len())
                    .map(|i| SocketAddr::new(ips[(start + i) % ips.len()], port))
                    .collect()
            }
        };
        let mut last = None;
        for to in order {
            match TcpStream::connect(to).await {
                Ok(tcp) => return self.secure(tcp, host, addr).await,
                Err(e) => last = Some(std::io::Error::new(e.kind(), format!("{to}: {e}"))),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other(format!("{addr}: no address"))))
    }

    async fn secure(&self, tcp: TcpStream, host: &str, addr: &str) -> std::io::Result<Io> {
        let _ = tcp.set_nodelay(true);
        if let Some(k) = &self.opts.keepalive {
            crate::upstream::pool::set_keepalive(&tcp, k, addr);
        }
        let Some((config, sni)) = &self.tls else {
            return Ok(Box::new(tcp));
        };
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let name = match sni {
            Some(s) => s.clone(),
            None if bare.parse::<std::net::IpAddr>().is_ok() => self.service.clone(),
            None => bare.to_string(),
        };
        let server = rustls::pki_types::ServerName::try_from(name.clone()).map_err(|e| {
            std::io::Error::other(format!("TLS server name {name:?} is not valid: {e}"))
        })?;
        let tls = tokio_rustls::TlsConnector::from(config.clone())
            .connect(server, tcp)
            .await
            .map_err(|e| {
                std::io::Error::new(e.kind(), format!("TLS origination to {addr} ({name}): {e}"))
            })?;
        Ok(Box::new(tls))
    }

    /// Whether requests go out as HTTP/2 (absolute URI) rather than HTTP/1.1.
    pub fn http2(&self) -> bool {
        self.h2.is_some()
    }

    /// Sends a request to `addr`: HTTP/1.1 (origin-form URI, `Host` set) or, for a
    /// `GRPC`/`HTTP2` port, HTTP/2 (absolute URI). (Boxed: the pipeline's future stays one
    /// the compiler can prove `Send`.)
    pub fn send<'a>(
        &'a self,
        addr: &'a str,
        req: Request<Body>,
    ) -> BoxFuture<'a, Result<Response<Body>, TryError>> {
        Box::pin(async move {
            match &self.h2 {
                Some(conns) => self.send_h2(conns, addr, req).await,
                None => self.pool(addr).send(addr, req).await,
            }
        })
    }

    async fn send_h2(
        &self,
        conns: &h2::H2Conns,
        addr: &str,
        mut req: Request<Body>,
    ) -> Result<Response<Body>, TryError> {
        if self.tls.is_some() {
            let mut parts = std::mem::take(req.uri_mut()).into_parts();
            parts.scheme = Some(http::uri::Scheme::HTTPS);
            *req.uri_mut() = http::Uri::from_parts(parts).map_err(|e| TryError::Connect {
                detail: format!("the request's URI for {addr}: {e}"),
            })?;
        }
        let mut sender = match conns.get(addr) {
            Some(s) => s,
            None => {
                let io = self.connect(addr).await.map_err(|e| try_error(addr, &e))?;
                conns.handshake(addr, io).await?
            }
        };
        sender.ready().await.map_err(|e| TryError::Unsent {
            detail: format!("HTTP/2 connection to {addr}: {e}"),
        })?;
        sender
            .try_send_request(req)
            .await
            .map(|r| r.map(crate::body::incoming))
            .map_err(|mut err| {
                let written = err.take_message().is_none();
                TryError::from_send(err.error(), written)
            })
    }

    fn pool(&self, addr: &str) -> Arc<H1Pool> {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = pools.get(addr) {
            return p.clone();
        }
        if pools.len() >= MAX_DESTINATIONS {
            pools.retain(|_, p| Arc::strong_count(p) > 1 || !p.is_idle_empty());
        }
        let me = self.me.clone();
        let connect: crate::upstream::h1::Connector = Arc::new(move |addr: String| {
            let me = me.clone();
            Box::pin(async move {
                match me.upgrade() {
                    Some(c) => c.connect(&addr).await.map_err(|e| try_error(&addr, &e)),
                    None => Err(TryError::Connect {
                        detail: format!("{addr}: the cluster left the config"),
                    }),
                }
            })
        });
        let idle = self.opts.idle_timeout.unwrap_or(Duration::from_secs(3600));
        let pool = Arc::new(H1Pool::new(idle, "service outside the mesh", connect));
        pools.insert(addr.to_string(), pool.clone());
        pool
    }
}

/// A failed connection as the try's error: `DF` when the name did not resolve.
fn try_error(addr: &str, e: &std::io::Error) -> TryError {
    let detail = format!("service outside the mesh at {addr}: {e}");
    match dns::Unresolved::is(e) {
        true => TryError::Dns { detail },
        false => TryError::Connect { detail },
    }
}

/// Whether an authority names its port (`host:port`, `[v6]:port`).
fn has_port(a: &str) -> bool {
    match a.rsplit_once(':') {
        Some((h, p)) => p.parse::<u16>().is_ok() && (!h.contains(':') || h.ends_with(']')),
        None => false,
    }
}

/// `host:port` into its host (brackets kept off) and port.
fn split(addr: &str) -> std::io::Result<(&str, u16)> {
    let bad = || std::io::Error::other(format!("{addr:?} is not host:port"));
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    let port = port.parse().map_err(|_| bad())?;
    Ok((host.trim_start_matches('[').trim_end_matches(']'), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_and_addresses() {
        assert!(has_port("a.example:8080"));
        assert!(has_port("[::1]:80"));
        assert!(!has_port("a.example"));
        assert!(!has_port("::1"));
        assert_eq!(split("[::1]:6379").unwrap(), ("::1", 6379));
        assert_eq!(
            split("redis.example:6379").unwrap(),
            ("redis.example", 6379)
        );
        assert!(split("redis.example").is_err());
    }

    #[test]
    fn original_destination_goes_where_the_app_addressed_it() {
        let mut c = weft_model::egress::passthrough_cluster();
        let eg = EgressCluster::build(&c).unwrap().unwrap();
        let ep = &c.endpoints[0];
        assert_eq!(eg.target(ep, Some("httpbin.example")), "httpbin.example:80");
        assert_eq!(
            eg.target(ep, Some("httpbin.example:8000")),
            "httpbin.example:8000"
        );
        c.egress = Some(weft_model::Egress {
            resolution: Resolution::Dns,
            tls: None,
        });
        c.port = 443;
        let dns = EgressCluster::build(&c).unwrap().unwrap();
        let ep = Endpoint {
            address: "api.example:443".into(),
            ..Default::default()
        };
        assert_eq!(dns.target(&ep, Some("other.example")), "api.example:443");
    }
}
