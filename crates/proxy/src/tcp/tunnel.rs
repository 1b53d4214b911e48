//! The client side of a tunnel: one HTTP/2 CONNECT stream on the pooled mTLS connection to
//! the peer sidecar (its certificate checked against the endpoint's identity, as for HTTP).
//! The authority names the service and port; the peer-metadata header says who calls.

use crate::body;
use crate::state::ProxyState;
use http::{HeaderValue, Method, Request, StatusCode};
use hyper::upgrade::Upgraded;
use weft_model::Endpoint;

/// Why a tunnel could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    #[error("{0}")]
    Connect(#[from] crate::upstream::ConnectError),
    #[error("the tunnel request to {addr} failed: {source}")]
    Request { addr: String, source: hyper::Error },
    #[error("{addr} refused the tunnel: {status}")]
    Refused { addr: String, status: StatusCode },
    /// A service outside the mesh (dialled directly, no tunnel).
    #[error("{0}")]
    Direct(std::io::Error),
}

impl TunnelError {
    /// The peer answered and said no (authorization, a port it does not serve): not the
    /// endpoint's failure.
    pub fn refused(&self) -> bool {
        matches!(self, TunnelError::Refused { .. })
    }
}

/// Opens a tunnel to `ep` for `authority` (`host:port`).
pub async fn open(
    state: &ProxyState,
    ep: &Endpoint,
    authority: &str,
    peer_header: &HeaderValue,
) -> Result<Upgraded, TunnelError> {
    let mut sender = state
        .pool
        .get(
            &ep.address,
            ep.tls_identity(),
            &crate::upstream::ConnOpts::default(),
        )
        .await?;
    let req = Request::builder()
        .method(Method::CONNECT)
        .uri(authority)
        .header(crate::telemetry::PEER_HEADER, peer_header.clone())
        .body(body::empty())
        .expect("a CONNECT request with an authority is valid");
    let request_error = |source| TunnelError::Request {
        addr: ep.address.clone(),
        source,
    };
    let sent = async {
        sender.ready().await?;
        sender.send_request(req).await
    };
    let resp = match sent.await {
        Ok(r) => r,
        Err(e) => {
            // A dead pooled connection: the next tunnel connects afresh.
            state.pool.evict(&ep.address, ep.tls_identity());
            return Err(request_error(e));
        }
    };
    if resp.status() != StatusCode::OK {
        return Err(TunnelError::Refused {
            addr: ep.address.clone(),
            status: resp.status(),
        });
    }
    hyper::upgrade::on(resp).await.map_err(request_error)
}
