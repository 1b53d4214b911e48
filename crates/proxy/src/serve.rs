//! Shared pieces of every listener: an accept that backs off on errors (running out of file
//! descriptors must not turn into a busy loop) and the HTTP server settings (header-read
//! and TLS-handshake timeouts, so idle or slow clients cannot pin connections forever).

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tracing::warn;

/// How long a client may take to send request headers (Envoy/hyper default: 30 s).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a peer may take to finish the mTLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The next connection; accept errors are logged and retried after a short pause.
pub async fn accept(listener: &TcpListener, what: &str) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                return (stream, peer);
            }
            Err(e) => {
                warn!(listener = what, error = %e, "accept failed; pausing 50 ms");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// An HTTP/1.1 + HTTP/2 (h2c) server builder with the proxy's timeouts.
pub fn http_server() -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    b.http2().timer(TokioTimer::new());
    b
}
