//! The sidecar's client for its local app: pooled plaintext HTTP/1.1 ([`super::h1`]), or
//! HTTP/2 with prior knowledge when a service the workload backs declares a
//! `GRPC`/`HTTP2` port (as Istio's inbound cluster does). Idle pooled connections close
//! after [`APP_IDLE_TIMEOUT`].

use super::h1::H1Pool;
use super::outcome::TryError;
use crate::body::Body;
use http::{Request, Response, Version};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

/// How long an idle connection to the app stays pooled.
pub const APP_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Clients for the local app.
pub struct AppClient {
    /// The pool of the first address used (the app's one address, in practice).
    h1: std::sync::OnceLock<(String, Arc<H1Pool>)>,
    /// Pools for other addresses (Sidecar ingress listeners' `defaultEndpoint`s).
    others: std::sync::Mutex<std::collections::HashMap<String, Arc<H1Pool>>>,
    idle: Duration,
    h2: Client<HttpConnector, Body>,
}

impl Default for AppClient {
    fn default() -> Self {
        Self::new(APP_IDLE_TIMEOUT)
    }
}

impl AppClient {
    pub fn new(idle: Duration) -> AppClient {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        AppClient {
            h1: std::sync::OnceLock::new(),
            others: Default::default(),
            idle,
            h2: Client::builder(TokioExecutor::new())
                .pool_timer(TokioTimer::new())
                .pool_idle_timeout(idle)
                .http2_only(true)
                .timer(TokioTimer::new())
                .build(connector),
        }
    }

    /// Sends a request (origin-form URI) to the app at `addr` (`host:port`) over HTTP/2
    /// when `h2`, else HTTP/1.1.
    pub async fn send(
        &self,
        addr: &str,
        mut req: Request<Body>,
        h2: bool,
    ) -> Result<Response<Body>, TryError> {
        if h2 {
            *req.version_mut() = Version::HTTP_2;
            let mut uri = std::mem::take(req.uri_mut()).into_parts();
            uri.scheme = Some(http::uri::Scheme::HTTP);
            uri.authority = Some(addr.parse().map_err(|e| TryError::Connect {
                detail: format!("the local app address {addr:?} is not host:port: {e}"),
            })?);
            *req.uri_mut() = http::Uri::from_parts(uri).map_err(|e| TryError::Connect {
                detail: format!("cannot address the local app at {addr}: {e}"),
            })?;
            return self
                .h2
                .request(req)
                .await
                .map(|r| r.map(crate::body::incoming))
                .map_err(|e| {
                    let detail = format!("local app at {addr} unreachable: {e}");
                    if e.is_connect() {
                        TryError::Connect { detail }
                    } else {
                        TryError::ConnectionTerminated { detail }
                    }
                });
        }
        *req.version_mut() = Version::HTTP_11;
        self.pool(addr).send(addr, req).await
    }

    /// The HTTP/1.1 pool for `addr`: connections are never shared between addresses.
    fn pool(&self, addr: &str) -> Arc<H1Pool> {
        let new = || {
            let connect: super::h1::Connector = Arc::new(|addr| Box::pin(plain(addr)));
            Arc::new(H1Pool::new(self.idle, "local app", connect))
        };
        let (first, pool) = self.h1.get_or_init(|| (addr.to_string(), new()));
        if first == addr {
            return pool.clone();
        }
        let mut others = self.others.lock().unwrap_or_else(|p| p.into_inner());
        others.entry(addr.to_string()).or_insert_with(new).clone()
    }
}

/// A plaintext TCP connection to the app.
async fn plain(addr: String) -> Result<super::h1::Io, TryError> {
    let tcp = TcpStream::connect(&addr)
        .await
        .map_err(|e| TryError::Connect {
            detail: format!("local app at {addr} unreachable: {e}"),
        })?;
    let _ = tcp.set_nodelay(true);
    Ok(Box::new(tcp))
}
