//! Pooled mTLS HTTP/2 connections to peer sidecars: one multiplexed connection per
//! (peer address, expected identity), so a connection verified for one identity is never
//! reused for another. An empty identity is a plaintext (h2c) connection, for peers that
//! auto-mTLS or a DestinationRule says take plaintext. Connects are bounded by the
//! cluster's `connectTimeout` (Istio's default 10 s), connections are kept alive with
//! HTTP/2 pings, and slots for endpoints that left the config are dropped on every push.
//! A connection idle past `http.idleTimeout` (Istio's default 1 h) or older than
//! `tcp.maxConnectionDuration` leaves the pool: it finishes its streams and closes, and
//! the next request gets a new one.

use crate::body::Body;
use crate::tls::TlsState;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::{debug, Instrument};

/// Istio's default `connectTimeout`.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a connection to a peer could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect to {addr}: {source}")]
    Tcp {
        addr: String,
        source: std::io::Error,
    },
    #[error("mTLS handshake with {addr} (expecting {identity}): {source}")]
    Tls {
        addr: String,
        identity: String,
        source: std::io::Error,
    },
    #[error("HTTP/2 handshake with {addr}: {source}")]
    H2 { addr: String, source: hyper::Error },
    #[error("connecting to {addr} took longer than {after:?} (connectTimeout)")]
    Timeout { addr: String, after: Duration },
    #[error("credentials: {0}")]
    Credentials(anyhow::Error),
}

/// How a cluster wants its connections: reuse limits and timers.
#[derive(Debug, Clone, Copy)]
pub struct ConnOpts {
    /// `maxRequestsPerConnection`.
    pub max_requests: Option<u32>,
    pub connect_timeout: Duration,
    /// `http.idleTimeout`: since the connection last took a request.
    pub idle_timeout: Option<Duration>,
    /// `tcp.maxConnectionDuration`: since it was made.
    pub max_duration: Option<Duration>,
    /// `tcp.tcpKeepalive` for the socket.
    pub keepalive: Option<weft_model::pool::Keepalive>,
}

impl Default for ConnOpts {
    /// Istio's defaults: 10 s connect, 1 h idle.
    fn default() -> Self {
        ConnOpts {
            max_requests: None,
            connect_timeout: CONNECT_TIMEOUT,
            idle_timeout: Some(Duration::from_secs(3600)),
            max_duration: None,
            keepalive: None,
        }
    }
}

impl ConnOpts {
    /// The options a cluster's DestinationRule gives.
    pub fn of(c: &weft_model::Cluster) -> ConnOpts {
        let ms = Duration::from_millis;
        ConnOpts {
            max_requests: c.max_requests_per_connection,
            connect_timeout: ms(c.tcp.connect_timeout_ms),
            idle_timeout: c.limits.idle_timeout_ms.map(ms),
            max_duration: c.limits.max_connection_duration_ms.map(ms),
            keepalive: c.limits.keepalive,
        }
    }
}

/// A pooled connection: its sender, the requests it has carried, and its times.
struct Pooled {
    sender: SendRequest<Body>,
    used: u32,
    id: u64,
    created: Instant,
    last_used: Instant,
}

impl Pooled {
    /// When the connection must leave the pool (none: never by time).
    fn expires(&self, o: &ConnOpts) -> Option<Instant> {
        let idle = o.idle_timeout.map(|d| self.last_used + d);
        let old = o.max_duration.map(|d| self.created + d);
        idle.into_iter().chain(old).min()
    }

    fn usable(&self, o: &ConnOpts) -> bool {
        o.max_requests.is_none_or(|max| self.used < max)
            && self.expires(o).is_none_or(|at| Instant::now() < at)
            && !self.sender.is_closed()
            && self.sender.is_ready()
    }
}

type Slot = Arc<tokio::sync::Mutex<Option<Pooled>>>;

static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
/// (peer address, SPIFFE id the peer must present)
type Key = (String, String);

/// Connection pool keyed by peer address and identity.
pub struct PeerPool {
    tls: Arc<TlsState>,
    slots: Mutex<HashMap<Key, Slot>>,
}

impl PeerPool {
    pub fn new(tls: Arc<TlsState>) -> PeerPool {
        PeerPool {
            tls,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// A ready HTTP/2 sender to `addr` whose certificate carried `identity`, reusing the
    /// pooled connection when it is alive and has carried fewer than `max_requests`
    /// requests (DestinationRule `maxRequestsPerConnection`; past it a new connection takes
    /// over and the old one finishes its streams). Concurrent callers share one connect,
    /// bounded by `connect_timeout`.
    pub async fn get(
        &self,
        addr: &str,
        identity: &str,
        opts: &ConnOpts,
    ) -> Result<SendRequest<Body>, ConnectError> {
        self.get_named(addr, identity, None, opts).await
    }

    /// [`get`](Self::get), with the TLS server name a new connection asks for (a
    /// gateway's ISTIO_MUTUAL server, chosen by SNI; none = the mesh's own name).
    pub async fn get_named(
        &self,
        addr: &str,
        identity: &str,
        sni: Option<&str>,
        opts: &ConnOpts,
    ) -> Result<SendRequest<Body>, ConnectError> {
        let connect_timeout = opts.connect_timeout;
        let key = (addr.to_string(), identity.to_string());
        let slot = self
            .slots
            .lock()
            .expect("pool poisoned")
            .entry(key)
            .or_default()
            .clone();
        let mut guard = slot.lock().await;
        if let Some(p) = guard.as_mut().filter(|p| p.usable(opts)) {
            p.used += 1;
            p.last_used = Instant::now();
            return Ok(p.sender.clone());
        }
        // Boxed: the connect path (TCP, mTLS, HTTP/2 handshakes) is rare and large; inline it
        // would grow every request's future.
        let sender = tokio::time::timeout(
            connect_timeout,
            Box::pin(self.connect(addr, identity, sni, opts)),
        )
        .await
        .map_err(|_| ConnectError::Timeout {
            addr: addr.into(),
            after: connect_timeout,
        })??;
        let now = Instant::now();
        let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        *guard = Some(Pooled {
            sender: sender.clone(),
            used: 1,
            id,
            created: now,
            last_used: now,
        });
        drop(guard);
        if opts.idle_timeout.is_some() || opts.max_duration.is_some() {
            tokio::spawn(expire(Arc::downgrade(&slot), id, *opts));
        }
        Ok(sender)
    }

    /// Whether [`get`](Self::get) would hand out a pooled connection now, without
    /// connecting (a slot busy being connected or checked counts as not ready).
    pub fn ready(&self, addr: &str, identity: &str, opts: &ConnOpts) -> bool {
        let key = (addr.to_string(), identity.to_string());
        let Some(slot) = self.slots.lock().expect("pool poisoned").get(&key).cloned() else {
            return false;
        };
        let Ok(guard) = slot.try_lock() else {
            return false;
        };
        guard.as_ref().is_some_and(|p| p.usable(opts))
    }

    /// Forgets the pooled connection to `addr` for `identity` (after it failed).
    pub fn evict(&self, addr: &str, identity: &str) {
        self.slots
            .lock()
            .expect("pool poisoned")
            .remove(&(addr.to_string(), identity.to_string()));
    }

    /// Drops every slot not in `live` (endpoints that left the config); their connections
    /// close once in-flight requests finish.
    pub fn retain(&self, live: &HashSet<Key>) {
        self.slots
            .lock()
            .expect("pool poisoned")
            .retain(|k, _| live.contains(k));
    }

    /// Open pooled connections to any of `addrs` (Envoy's `upstream_cx_active`, read at
    /// scrape time; a slot busy connecting right now is not counted).
    pub fn open_to(&self, addrs: &HashSet<&str>) -> u64 {
        let slots = self.slots.lock().expect("pool poisoned");
        slots
            .iter()
            .filter(|((addr, _), _)| addrs.contains(addr.as_str()))
            .filter(|(_, slot)| {
                slot.try_lock()
                    .is_ok_and(|s| s.as_ref().is_some_and(|p| !p.sender.is_closed()))
            })
            .count() as u64
    }

    /// Number of pooled slots (for tests and the admin endpoint).
    pub fn len(&self) -> usize {
        self.slots.lock().expect("pool poisoned").len()
    }

    /// True when nothing is pooled.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    async fn connect(
        &self,
        addr: &str,
        identity: &str,
        sni: Option<&str>,
        opts: &ConnOpts,
    ) -> Result<SendRequest<Body>, ConnectError> {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|source| ConnectError::Tcp {
                addr: addr.into(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        if let Some(k) = &opts.keepalive {
            set_keepalive(&tcp, k, addr);
        }
        let mut h2 = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            // Until the peer's SETTINGS arrive, open at most 100 streams (RFC 9113's
            // suggested minimum) instead of h2's unlimited default: a burst on a fresh
            // connection would otherwise be refused past the peer's limit (REFUSED_STREAM),
            // and requests whose bodies cannot be replayed would fail with 503.
            .initial_max_send_streams(100)
            .keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT);
        let h2_error = |source| ConnectError::H2 {
            addr: addr.into(),
            source,
        };
        if identity.is_empty() {
            let (sender, conn) = h2.handshake(TokioIo::new(tcp)).await.map_err(h2_error)?;
            spawn_conn(conn, addr, "plaintext");
            return Ok(sender);
        }
        let creds = self.tls.current.load_full();
        let cfg = creds
            .client_for(identity)
            .map_err(ConnectError::Credentials)?;
        let name = sni
            .and_then(|s| rustls::pki_types::ServerName::try_from(s.to_string()).ok())
            .unwrap_or_else(|| {
                rustls::pki_types::ServerName::try_from("weft.mesh").expect("static name is valid")
            });
        let tls = tokio_rustls::TlsConnector::from(cfg)
            .connect(name, tcp)
            .await
            .map_err(|source| ConnectError::Tls {
                addr: addr.into(),
                identity: identity.into(),
                source,
            })?;
        let (sender, conn) = h2.handshake(TokioIo::new(tls)).await.map_err(h2_error)?;
        spawn_conn(conn, addr, identity);
        Ok(sender)
    }
}

/// SO_KEEPALIVE with the rule's time, interval and probes (unset ones: the system's).
pub(crate) fn set_keepalive(tcp: &TcpStream, k: &weft_model::pool::Keepalive, addr: &str) {
    let mut ka = socket2::TcpKeepalive::new();
    if let Some(ms) = k.time_ms {
        ka = ka.with_time(Duration::from_millis(ms));
    }
    if let Some(ms) = k.interval_ms {
        ka = ka.with_interval(Duration::from_millis(ms));
    }
    if let Some(n) = k.probes {
        ka = ka.with_retries(n);
    }
    if let Err(e) = socket2::SockRef::from(tcp).set_tcp_keepalive(&ka) {
        tracing::warn!(peer = %addr, error = %e, "could not set TCP keepalive (tcpKeepalive) on the upstream socket");
    }
}

/// Takes connection `id` out of its slot once it is idle past its timeout or past its
/// maximum duration (it then finishes its streams and closes); ends early when the
/// connection was replaced or the slot dropped.
async fn expire(
    slot: std::sync::Weak<tokio::sync::Mutex<Option<Pooled>>>,
    id: u64,
    opts: ConnOpts,
) {
    loop {
        let Some(strong) = slot.upgrade() else { return };
        let at = {
            let guard = strong.lock().await;
            match guard.as_ref() {
                Some(p) if p.id == id => p.expires(&opts),
                _ => return,
            }
        };
        drop(strong);
        let Some(at) = at else { return };
        tokio::time::sleep_until(at).await;
        let Some(strong) = slot.upgrade() else { return };
        let mut guard = strong.lock().await;
        match guard.as_ref() {
            Some(p) if p.id == id && p.expires(&opts).is_some_and(|t| t <= Instant::now()) => {
                debug!(id, "pooled connection idle or too old; closing it");
                *guard = None;
                return;
            }
            Some(p) if p.id == id => continue,
            _ => return,
        }
    }
}

/// Drives a client connection until it closes.
fn spawn_conn<T>(
    conn: hyper::client::conn::http2::Connection<T, Body, TokioExecutor>,
    addr: &str,
    identity: &str,
) where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let span = tracing::info_span!("upstream_conn", peer = %addr, identity = %identity);
    tokio::spawn(
        async move {
            if let Err(e) = conn.await {
                debug!(error = %e, "upstream connection closed with error");
            }
        }
        .instrument(span),
    );
}
