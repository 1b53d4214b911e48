//! The sidecar's client for its local app: pooled plaintext HTTP/1.1 (our own small pool:
//! a connection goes back to the pool when its response body ends, with no task per
//! request; only once the request body has been sent whole too, so an app that answers
//! early never gets a second request queued behind a body still streaming), or HTTP/2 with prior knowledge when a service the workload backs declares a
//! `GRPC`/`HTTP2` port (as Istio's inbound cluster does). Idle pooled connections close
//! after [`APP_IDLE_TIMEOUT`].

use super::outcome::TryError;
use crate::body::{Body, BoxError};
use bytes::Bytes;
use http::{Request, Response, Version};
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper::client::conn::http1;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::debug;

/// How long an idle connection to the app stays pooled.
pub const APP_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Most idle HTTP/1.1 connections kept.
const MAX_IDLE: usize = 256;

/// Clients for the local app.
pub struct AppClient {
    h1: Arc<H1Pool>,
    h2: Client<HttpConnector, Body>,
}

impl Default for AppClient {
    fn default() -> Self {
        Self::new(APP_IDLE_TIMEOUT)
    }
}

struct H1Pool {
    idle: Mutex<Vec<(http1::SendRequest<Body>, Instant)>>,
    timeout: Duration,
    reaper: std::sync::Once,
}

impl AppClient {
    pub fn new(idle: Duration) -> AppClient {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        AppClient {
            h1: Arc::new(H1Pool {
                idle: Mutex::new(Vec::new()),
                timeout: idle,
                reaper: std::sync::Once::new(),
            }),
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
        self.h1.send(addr, req).await
    }
}

impl H1Pool {
    fn pop(&self) -> Option<http1::SendRequest<Body>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some((s, since)) = idle.pop() {
            if since.elapsed() < self.timeout && !s.is_closed() {
                return Some(s);
            }
        }
        None
    }

    fn push(self: &Arc<Self>, s: http1::SendRequest<Body>) {
        {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() >= MAX_IDLE {
                return;
            }
            idle.push((s, Instant::now()));
        }
        self.start_reaper();
    }

    /// Closes connections idle past the timeout, checking every half timeout; the task
    /// ends with the pool.
    fn start_reaper(self: &Arc<Self>) {
        self.reaper.call_once(|| {
            let pool: Weak<H1Pool> = Arc::downgrade(self);
            let every = (self.timeout / 2).max(Duration::from_millis(10));
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    let Some(pool) = pool.upgrade() else { return };
                    let mut idle = pool.idle.lock().unwrap_or_else(|p| p.into_inner());
                    idle.retain(|(s, since)| since.elapsed() < pool.timeout && !s.is_closed());
                }
            });
        });
    }

    async fn connect(&self, addr: &str) -> Result<http1::SendRequest<Body>, TryError> {
        let fail = |e: &dyn std::fmt::Display| TryError::Connect {
            detail: format!("local app at {addr} unreachable: {e}"),
        };
        let tcp = TcpStream::connect(addr).await.map_err(|e| fail(&e))?;
        let _ = tcp.set_nodelay(true);
        let (sender, conn) = http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| fail(&e))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                debug!(error = %e, "connection to the local app ended with error");
            }
        });
        Ok(sender)
    }

    async fn send(
        self: &Arc<Self>,
        addr: &str,
        mut req: Request<Body>,
    ) -> Result<Response<Body>, TryError> {
        // A connection is reusable only once its request body has been sent whole: mark
        // when it ends (a body known to be empty is sent with the head).
        let sent = (!req.body().is_end_stream()).then(|| {
            let sent = Arc::new(AtomicBool::new(false));
            let body = std::mem::replace(req.body_mut(), crate::body::empty());
            *req.body_mut() = http_body_util::BodyExt::boxed(SentWhole {
                inner: body,
                sent: sent.clone(),
            });
            sent
        });
        // A pooled connection the app closed meanwhile gives the request back unsent; it
        // then goes on a fresh connection.
        for _ in 0..3 {
            let mut sender = match self.pop() {
                Some(s) => s,
                None => Box::pin(self.connect(addr)).await?,
            };
            if sender.ready().await.is_err() {
                continue;
            }
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    let pool = self.clone();
                    return Ok(resp.map(|body| {
                        let mut r = Returning {
                            inner: body,
                            sender: Some(sender),
                            pool,
                            request_sent: sent.clone(),
                        };
                        if r.inner.is_end_stream() {
                            // Nothing will poll an empty body: the connection is free now.
                            r.give_back();
                        }
                        http_body_util::BodyExt::boxed(r)
                    }));
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) => req = unsent,
                    None => {
                        return Err(TryError::ConnectionTerminated {
                            detail: format!("local app at {addr}: {}", e.error()),
                        })
                    }
                },
            }
        }
        Err(TryError::Connect {
            detail: format!("local app at {addr} keeps closing its connections"),
        })
    }
}

/// A response body that gives its connection back to the pool when it ends, if the
/// request body has been sent whole by then (otherwise the connection finishes that
/// request and closes: the app answered early, as Envoy closes such connections too).
struct Returning {
    inner: Incoming,
    sender: Option<http1::SendRequest<Body>>,
    pool: Arc<H1Pool>,
    /// Set when the request body has ended; `None`: it was empty.
    request_sent: Option<Arc<AtomicBool>>,
}

impl Returning {
    fn give_back(&mut self) {
        let Some(s) = self.sender.take() else { return };
        if self
            .request_sent
            .as_ref()
            .is_none_or(|sent| sent.load(Ordering::Acquire))
        {
            self.pool.push(s);
        }
    }
}

/// A request body that notes when it has ended.
struct SentWhole {
    inner: Body,
    sent: Arc<AtomicBool>,
}

impl hyper::body::Body for SentWhole {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None))
            || matches!(polled, Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream())
        {
            self.sent.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl hyper::body::Body for Returning {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.give_back(),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.give_back(),
            Poll::Ready(Some(Err(_))) => self.sender = None,
            _ => {}
        }
        polled.map(|o| o.map(|r| r.map_err(BoxError::from)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
