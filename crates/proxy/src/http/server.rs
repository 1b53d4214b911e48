//! Shared pieces of every HTTP listener: an accept that backs off on errors (running out of file
//! descriptors must not turn into a busy loop) and the HTTP server settings (header-read
//! and TLS-handshake timeouts, so idle or slow clients cannot pin connections forever).

use super::limits::{FirstBytesDeadline, PER_CONNECTION_BUFFER_BYTES};
use super::pipeline::{handle, Conn};
use crate::state::ProxyState;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tracing::{debug, warn, Instrument};

/// How long a client may take to send request headers (Envoy/hyper default: 30 s).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a peer may take to finish the mTLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub use crate::tcp::accept;

/// What hyper itself buffers for a request head: a little over the proxy's header limit,
/// so that an oversized header block reaches the pipeline's check and gets a 431.
pub(crate) const MAX_HEAD_BYTES: usize = crate::http::headers::MAX_REQUEST_HEADERS_BYTES + 8 * 1024;

/// An HTTP/1.1 + HTTP/2 (h2c) server builder with the proxy's timeouts and limits.
pub fn http_server() -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES.max(8192));
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEAD_BYTES as u32)
        .initial_connection_window_size(PER_CONNECTION_BUFFER_BYTES)
        .initial_stream_window_size(PER_CONNECTION_BUFFER_BYTES);
    b
}

/// Serves plaintext HTTP on `listener` (a gateway port or the sidecar's outbound
/// listener) until the task is aborted: every request goes through the pipeline.
pub async fn serve_plaintext(listener: TcpListener, state: Arc<ProxyState>, conn: Conn) {
    let template = Arc::new(conn);
    loop {
        let (stream, peer) = accept(&listener, &template.table).await;
        let Some(admitted) = state.connections.admit() else {
            warn!(listener = %template.table, %peer, "downstream connection limit reached; refusing");
            tokio::spawn(super::limits::refuse(stream));
            continue;
        };
        let state = state.clone();
        let conn = Arc::new(Conn {
            peer,
            local: stream.local_addr().unwrap_or(template.local),
            ..Conn::clone(&template)
        });
        let span = tracing::info_span!("downstream_conn", listener = %conn.table, peer = %peer);
        tokio::spawn(
            async move {
                let svc = hyper::service::service_fn(move |req| {
                    let state = state.clone();
                    let conn = conn.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(handle(req, &state, &conn).await)
                    }
                });
                let io = FirstBytesDeadline::new(stream, HEADER_READ_TIMEOUT);
                if let Err(e) = http_server()
                    .serve_connection(TokioIo::new(io), svc)
                    .await
                {
                    debug!(error = %e, "downstream connection ended with error");
                }
                drop(admitted);
            }
            .instrument(span),
        );
    }
}
