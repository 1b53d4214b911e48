//! Request bodies kept for replay (retries and mirrors), as Envoy buffers them: whatever the
//! declared length — gRPC and chunked bodies included — a body is read up to a limit; if it
//! ends within the limit (trailers kept) it can be sent again, otherwise what was read is
//! put back in front of the rest and the body streams through once.

use crate::upstream::{Body, BoxError};
use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use std::pin::Pin;
use std::task::{Context, Poll};

/// A complete request body.
#[derive(Debug, Clone, Default)]
pub struct Buffered {
    data: Bytes,
    trailers: Option<HeaderMap>,
}

impl Buffered {
    /// A fresh body with the same frames.
    pub fn body(&self) -> Body {
        Replay {
            data: Some(self.data.clone()).filter(|d| !d.is_empty()),
            trailers: self.trailers.clone(),
        }
        .boxed()
    }
}

/// Reads `body` up to `limit` bytes: the whole body, or — when it is longer — a body that
/// yields what was read and then the rest.
pub async fn buffer(
    mut body: Incoming,
    limit: usize,
) -> Result<Result<Buffered, Body>, hyper::Error> {
    let mut data = BytesMut::new();
    loop {
        match body.frame().await {
            None => {
                return Ok(Ok(Buffered {
                    data: data.freeze(),
                    trailers: None,
                }))
            }
            Some(Err(e)) => return Err(e),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(chunk) => {
                    data.extend_from_slice(&chunk);
                    if data.len() > limit {
                        let rest = Prefixed {
                            prefix: Some(data.freeze()),
                            rest: body.map_err(Into::into).boxed(),
                        };
                        return Ok(Err(rest.boxed()));
                    }
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        return Ok(Ok(Buffered {
                            data: data.freeze(),
                            trailers: Some(trailers),
                        }));
                    }
                }
            },
        }
    }
}

struct Replay {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl hyper::body::Body for Replay {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(d) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(d))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }
}

struct Prefixed {
    prefix: Option<Bytes>,
    rest: Body,
}

impl hyper::body::Body for Prefixed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(p) = self.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(p))));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }
}
