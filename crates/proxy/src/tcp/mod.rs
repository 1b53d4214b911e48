//! Opaque TCP: listeners whose connections are routed whole (gateway `TCP` servers, a
//! sidecar's outbound listener per (service, TCP port)), the pure route decision
//! (`tcp` and `tls` routes), the TLS inspector for SNI, the tunnel between sidecars
//! (HTTP/2 CONNECT over the pooled mTLS connections, HBONE-style), the inbound side that
//! authorizes a tunnel and pipes it to the app, and the byte pipe with half-close and idle
//! timeout.

pub mod decide;
pub mod inbound;
pub mod outbound;
pub mod pipe;
pub mod sni;
mod tunnel;

pub use decide::{ConnView, L4Decision, L4Table};

use std::net::SocketAddr;
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// The pending-connection queue of every listener: Envoy's default on Linux is
/// `net.core.somaxconn`, and the kernel caps a larger value there. (Rust's and mio's
/// default, 128, overflows when a few hundred clients connect at once on a loaded machine:
/// SYN cookies, some of which fail, so those clients get a reset.)
pub const LISTEN_BACKLOG: u32 = 65_535;

/// Binds a listener (address reuse on, as tokio's `bind`) with [`LISTEN_BACKLOG`].
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The next connection on any listener of the proxy (HTTP or TCP); accept errors are
/// logged and retried after a short pause.
pub async fn accept(listener: &TcpListener, what: &str) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                return (stream, peer);
            }
            Err(e) => {
                tracing::warn!(listener = what, error = %e, "accept failed; pausing 50 ms");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}
