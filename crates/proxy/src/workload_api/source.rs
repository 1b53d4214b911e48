//! A proxy's identity from an existing SPIFFE Workload API — a SPIRE agent's socket
//! (`weft proxy --spiffe-socket`) — instead of weft's CA, as Istio's SPIRE integration
//! does: the first X.509-SVID on `FetchX509SVID` becomes the proxy's credentials (the leaf
//! and its key for mTLS, the bundle as the trust anchors), and every later message on the
//! stream rotates them. Unreachable, Unavailable and PermissionDenied are retried with
//! backoff (the standard's advice); if the stream ends, the proxy keeps serving on what it
//! has and reconnects. The SPIFFE id must have Istio's form (`/ns/<ns>/sa/<sa>`), as
//! Istio's SPIRE integration requires too.

use crate::state::ProxyState;
use crate::tls::Credentials;
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tonic::{Code, Streaming};
use tracing::{info, warn};
use weft_identity::Identity;
use weft_protocol::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use weft_protocol::workload::{X509svidRequest, X509svidResponse, SECURITY_HEADER};

/// Why a fetch did not give credentials: worth retrying, or not.
enum Failure {
    Retry(String),
    Fatal(anyhow::Error),
}

/// Opens a `FetchX509SVID` stream on the Workload API at `path`.
async fn open(path: &Path) -> Result<Streaming<X509svidResponse>, Failure> {
    let socket = path.to_path_buf();
    let channel = tonic::transport::Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_| {
            let socket = socket.clone();
            async move {
                let s = tokio::net::UnixStream::connect(socket).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
            }
        }))
        .await
        .map_err(|e| Failure::Retry(format!("cannot connect: {e}")))?;
    let mut req = tonic::Request::new(X509svidRequest {});
    req.metadata_mut().insert(
        SECURITY_HEADER,
        tonic::metadata::MetadataValue::from_static("true"),
    );
    SpiffeWorkloadApiClient::new(channel)
        .fetch_x509svid(req)
        .await
        .map(tonic::Response::into_inner)
        .map_err(status_failure)
}

fn status_failure(s: tonic::Status) -> Failure {
    let what = format!("{:?}: {}", s.code(), s.message());
    match s.code() {
        Code::Unavailable | Code::PermissionDenied | Code::Unknown | Code::Internal => {
            Failure::Retry(what)
        }
        _ => Failure::Fatal(anyhow::anyhow!("the Workload API refused: {what}")),
    }
}

/// The first (default) SVID of a response as credentials.
pub fn credentials(resp: &X509svidResponse) -> anyhow::Result<Credentials> {
    let svid = resp
        .svids
        .first()
        .context("the Workload API answered with no X.509-SVID")?;
    let identity = Identity::from_x509_svid(&svid.x509_svid, &svid.x509_svid_key, &svid.bundle)
        .with_context(|| format!("the X.509-SVID for {:?} is not usable", svid.spiffe_id))?;
    Credentials::new(identity)
}

/// The next credentials on `stream`.
async fn next(stream: &mut Streaming<X509svidResponse>) -> Result<Credentials, Failure> {
    match stream.message().await {
        Ok(Some(resp)) => credentials(&resp).map_err(Failure::Fatal),
        Ok(None) => Err(Failure::Retry("the stream ended".into())),
        Err(s) => Err(status_failure(s)),
    }
}

/// Waits for this workload's first SVID from the Workload API at `path`, retrying what
/// the standard says to retry; returns it with the stream that brings the next ones.
pub async fn first(path: &Path) -> anyhow::Result<(Credentials, Streaming<X509svidResponse>)> {
    let mut backoff = Duration::from_millis(50);
    loop {
        let got = async {
            let mut stream = open(path).await?;
            Ok((next(&mut stream).await?, stream))
        };
        match got.await {
            Ok(first) => return Ok(first),
            Err(Failure::Fatal(e)) => {
                return Err(e.context(format!("the Workload API at {}", path.display())))
            }
            Err(Failure::Retry(why)) => {
                warn!(socket = %path.display(), %why, "no SVID from the Workload API yet; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// Runs forever: every SVID on the stream rotates the proxy's credentials; a broken
/// stream is reopened with backoff while the proxy serves on what it has.
pub async fn follow(state: Arc<ProxyState>, path: PathBuf, stream: Streaming<X509svidResponse>) {
    let mut stream = Some(stream);
    let mut backoff = Duration::from_millis(100);
    loop {
        let s = match stream.as_mut() {
            Some(s) => s,
            None => match open(&path).await {
                Ok(s) => stream.insert(s),
                Err(f) => {
                    let why = match f {
                        Failure::Retry(why) => why,
                        Failure::Fatal(e) => format!("{e:#}"),
                    };
                    warn!(socket = %path.display(), %why, "cannot reach the Workload API; serving on the current SVID, retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            },
        };
        match next(s).await {
            Ok(creds) => {
                backoff = Duration::from_millis(100);
                let not_after = creds.identity.not_after();
                info!(identity = %creds.identity.spiffe_id(), "SVID from the Workload API rotated");
                state.tls.rotate(creds);
                state.metrics.certificate(not_after, true);
            }
            Err(Failure::Fatal(e)) => {
                state.metrics.renewal_failed();
                warn!(socket = %path.display(), error = %format!("{e:#}"), "unusable SVID from the Workload API; keeping the current one");
            }
            Err(Failure::Retry(why)) => {
                warn!(socket = %path.display(), %why, "the Workload API stream broke; serving on the current SVID, reconnecting");
                stream = None;
            }
        }
    }
}
