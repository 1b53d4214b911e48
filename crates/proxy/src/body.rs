//! The body type every part of the proxy passes around (boxed, `Bytes` frames, boxed
//! errors), and constructors for bodies the proxy makes itself.

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::BodyExt;

/// Errors a body can end with: hyper's, or the proxy's own (e.g. the route timeout firing
/// while the response body streams).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request or response body.
pub type Body = BoxBody<Bytes, BoxError>;

/// A body from bytes.
pub fn full(b: impl Into<Bytes>) -> Body {
    http_body_util::Full::new(b.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty body.
pub fn empty() -> Body {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed()
}

/// Boxes hyper's incoming body.
pub fn incoming(b: hyper::body::Incoming) -> Body {
    b.map_err(BoxError::from).boxed()
}
