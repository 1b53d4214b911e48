//! Bounds on what downstream clients can hold: the answer to a client past the proxy-wide
//! connection limit (`state::ConnectionLimit`, Envoy's overload manager
//! `global_downstream_max_connections` role: a clear `503`, then close), the first-bytes
//! deadline of a new connection, the idle timeout of request bodies
//! (Envoy's `stream_idle_timeout`: a body that sends nothing for that long ends with an
//! error), and the per-connection buffer limit (Envoy's `per_connection_buffer_limit_bytes`:
//! HTTP/2 flow-control windows and the HTTP/1 read buffer).

use crate::body::{Body, BoxError};
use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// Envoy's default `stream_idle_timeout`.
pub const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Bytes a downstream connection may have in flight toward the proxy (HTTP/2 connection
/// and stream windows), Envoy's default per-connection buffer limit.
pub const PER_CONNECTION_BUFFER_BYTES: u32 = 1024 * 1024;

/// Tells a plaintext client over the limit why it is turned away, then closes.
pub async fn refuse(mut stream: TcpStream) {
    const REPLY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\nserver: weft\r\nconnection: close\r\ncontent-length: 65\r\n\r\noverloaded: this proxy is at its limit of downstream connections\n";
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(REPLY)).await;
    let _ = stream.shutdown().await;
}

/// A connection whose first bytes must arrive before a deadline: until the client has
/// sent [`FIRST_BYTES`] bytes (enough to tell HTTP/1 from the HTTP/2 preface, and to start a
/// request head), reads fail once the deadline passes. This closes connections that send
/// nothing, or stall inside the protocol detection, which hyper's header-read timeout
/// (armed only once HTTP/1 was detected) does not cover.
pub struct FirstBytesDeadline<T> {
    inner: T,
    remaining: usize,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

/// The bytes that must arrive before the deadline (the HTTP/2 connection preface's length).
pub const FIRST_BYTES: usize = 24;

impl<T> FirstBytesDeadline<T> {
    pub fn new(inner: T, within: Duration) -> FirstBytesDeadline<T> {
        FirstBytesDeadline {
            inner,
            remaining: FIRST_BYTES,
            deadline: Box::pin(tokio::time::sleep(within)),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for FirstBytesDeadline<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if self.remaining == 0 {
            return polled;
        }
        match polled {
            Poll::Ready(Ok(())) => {
                let got = buf.filled().len() - before;
                self.remaining = self.remaining.saturating_sub(got);
                Poll::Ready(Ok(()))
            }
            Poll::Pending if self.deadline.as_mut().poll(cx).is_ready() => {
                Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the client sent no request in time",
                )))
            }
            other => other,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for FirstBytesDeadline<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A request body that fails when no frame arrives for `idle`.
pub struct IdleTimeout {
    inner: Body,
    idle: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl IdleTimeout {
    pub fn new(inner: Body, idle: Duration) -> IdleTimeout {
        IdleTimeout {
            inner,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
        }
    }
}

impl hyper::body::Body for IdleTimeout {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Pending => {
                if self.timer.as_mut().poll(cx).is_ready() {
                    let secs = self.idle.as_secs();
                    return Poll::Ready(Some(Err(format!(
                        "the request body sent nothing for {secs} s (stream idle timeout)"
                    )
                    .into())));
                }
                Poll::Pending
            }
            ready => {
                let next = tokio::time::Instant::now() + self.idle;
                self.timer.as_mut().reset(next);
                ready
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test(start_paused = true)]
    async fn a_body_that_idles_past_the_timeout_fails() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(4);
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        let body = http_body_util::StreamBody::new(stream).boxed();
        let mut body = IdleTimeout::new(body, Duration::from_secs(300));
        for _ in 0..3 {
            tokio::time::advance(Duration::from_secs(200)).await;
            tx.send(Ok(Frame::data(Bytes::from_static(b"x"))))
                .await
                .unwrap();
            let f = body.frame().await.expect("a frame").expect("data");
            assert_eq!(
                f.into_data().unwrap(),
                "x",
                "a trickle under the timeout flows"
            );
        }
        let start = tokio::time::Instant::now();
        let err = body.frame().await.expect("an error").expect_err("idle");
        assert!(err.to_string().contains("stream idle timeout"), "{err}");
        assert_eq!(start.elapsed(), Duration::from_secs(300));
        drop(tx);
    }
}
