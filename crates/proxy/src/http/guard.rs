//! The response body as it leaves the proxy, carrying what must live exactly as long as
//! the response: the endpoint's active-request count (LEAST_REQUEST), the request's
//! telemetry record (counted when the body ends or is abandoned), and the route timer,
//! which also covers the response body as Envoy's does.

use crate::body::{Body, BoxError};
use crate::telemetry::{Record, ResponseFlags};
use crate::upstream::Pick;
use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A future that resolves when the route timeout fires.
pub type Deadline = Pin<Box<dyn Future<Output = ()> + Send + Sync>>;

/// A response body with its guards.
pub struct GuardedBody {
    inner: Body,
    _pick: Option<Pick>,
    record: Option<Record>,
    deadline: Option<Deadline>,
}

impl GuardedBody {
    pub fn new(
        inner: Body,
        pick: Option<Pick>,
        record: Option<Record>,
        deadline: Option<Deadline>,
    ) -> GuardedBody {
        let mut g = GuardedBody {
            inner,
            _pick: pick,
            record,
            deadline,
        };
        if hyper::body::Body::is_end_stream(&g.inner) {
            g.done();
        }
        g
    }

    fn done(&mut self) {
        if let Some(r) = self.record.as_mut() {
            r.complete();
        }
        self.deadline = None;
    }
}

impl hyper::body::Body for GuardedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let frame = Pin::new(&mut self.inner).poll_frame(cx);
        match &frame {
            Poll::Pending => {
                if let Some(d) = self.deadline.as_mut() {
                    if d.as_mut().poll(cx).is_ready() {
                        if let Some(r) = self.record.as_mut() {
                            r.flag(ResponseFlags::UPSTREAM_REQUEST_TIMEOUT);
                        }
                        self.done();
                        self.inner = crate::body::empty();
                        return Poll::Ready(Some(Err("upstream response timeout: the route timeout fired while the body was streaming".into())));
                    }
                }
            }
            Poll::Ready(None) => self.done(),
            Poll::Ready(Some(Err(_))) => {
                if let Some(r) = self.record.as_mut() {
                    r.flag(ResponseFlags::UPSTREAM_REMOTE_RESET);
                }
                self.done();
            }
            Poll::Ready(Some(Ok(f))) => {
                if let Some(r) = self.record.as_mut() {
                    if let Some(d) = f.data_ref() {
                        r.sent(d.len());
                        r.response_data(d);
                    } else if let Some(t) = f.trailers_ref() {
                        r.response_trailers(t);
                    }
                }
                if self.inner.is_end_stream() {
                    self.done();
                }
            }
        }
        frame
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
    async fn a_body_that_stalls_past_the_route_timeout_ends_with_an_error() {
        let stalled = http_body_util::StreamBody::new(futures_util::stream::pending::<
            Result<Frame<Bytes>, BoxError>,
        >());
        let deadline = tokio::time::sleep(std::time::Duration::from_millis(20));
        let mut held = GuardedBody::new(stalled.boxed(), None, None, Some(Box::pin(deadline)));
        let err = held
            .frame()
            .await
            .expect("a frame")
            .expect_err("the timeout ends the body");
        assert!(err.to_string().contains("route timeout"), "{err}");
        let deadline = tokio::time::sleep(std::time::Duration::from_millis(20));
        let mut done = GuardedBody::new(
            crate::body::full("ok"),
            None,
            None,
            Some(Box::pin(deadline)),
        );
        assert_eq!(
            done.frame().await.unwrap().unwrap().into_data().unwrap(),
            "ok",
            "a flowing body is untouched"
        );
    }
}
