//! The HTTP side of the proxy: listeners (plaintext for gateways and the sidecar's
//! outbound, mTLS for the sidecar's inbound), the request pipeline every request goes
//! through, the headers the proxy owns, and the guarded response body.

mod authorize;
mod caller;
mod edge;
mod ext_authz;
pub mod forwarded;
pub mod guard;
pub mod headers;
pub mod inbound;
pub mod limits;
pub mod normalize;
mod observe;
pub mod pipeline;
mod ports;
pub mod server;

pub use pipeline::{Conn, Side};
