//! A small HTTP/1.1 client pool for one destination: a connection goes back to the pool
//! when its response body ends, with no task per request — and only once the request body
//! has been sent whole too, so a server that answers early never gets a second request
//! queued behind a body still streaming. Idle pooled connections close after the pool's
//! timeout. How a connection is made (plain TCP to the local app, TCP or TLS to a
//! service outside the mesh) is the pool owner's connector.

use super::outcome::TryError;
use crate::body::{Body, BoxError};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{Request, Response};
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tracing::debug;

/// Most idle HTTP/1.1 connections kept.
const MAX_IDLE: usize = 256;

/// A connected byte stream (plain TCP or TLS).
pub type Io = Box<dyn Stream>;

/// What a connection is: a tokio byte stream.
pub trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

/// Makes a connection to `addr`; its error is the try's (the connector knows why it failed:
/// a refused connect, a name that did not resolve, a TLS handshake).
pub type Connector = Arc<dyn Fn(String) -> BoxFuture<'static, Result<Io, TryError>> + Send + Sync>;

/// Pooled HTTP/1.1 connections to one destination.
pub struct H1Pool {
    idle: Mutex<Vec<(http1::SendRequest<Body>, Instant)>>,
    timeout: Duration,
    reaper: std::sync::Once,
    /// What the destination is, for errors ("local app").
    what: &'static str,
    connect: Connector,
}

impl H1Pool {
    pub fn new(timeout: Duration, what: &'static str, connect: Connector) -> H1Pool {
        H1Pool {
            idle: Mutex::new(Vec::new()),
            timeout,
            reaper: std::sync::Once::new(),
            what,
            connect,
        }
    }

    /// Whether no connection is pooled now.
    pub fn is_idle_empty(&self) -> bool {
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

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
        let what = self.what;
        let fail = |e: &dyn std::fmt::Display| TryError::Connect {
            detail: format!("{what} at {addr} unreachable: {e}"),
        };
        let io = (self.connect)(addr.to_string()).await?;
        let (sender, conn) = http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| fail(&e))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                debug!(error = %e, destination = what, "HTTP/1.1 connection ended with error");
            }
        });
        Ok(sender)
    }

    /// Sends a request (origin-form URI, HTTP/1.1) on a pooled or new connection.
    pub async fn send(
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
                            detail: format!("{} at {addr}: {}", self.what, e.error()),
                        })
                    }
                },
            }
        }
        Err(TryError::Connect {
            detail: format!("{} at {addr} keeps closing its connections", self.what),
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
