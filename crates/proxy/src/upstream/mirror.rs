//! Traffic mirrors: once the request body has ended (and was kept whole), a shadow copy
//! goes to the mirror cluster in the background with `-shadow` appended to its authority,
//! as Envoy does; the response is discarded and failures are only logged.

use super::pool::PeerPool;
use super::replay::Replay;
use super::LiveCluster;
use http::{HeaderMap, Method, Request, Uri, Version};
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::Duration;
use tracing::debug;

/// How long a mirror waits for the request body and then for its own response.
const MIRROR_TIMEOUT: Duration = Duration::from_secs(30);

/// The shadow authority: `host-shadow[:port]`.
fn shadow_uri(uri: &Uri) -> Option<Uri> {
    let mut parts = uri.clone().into_parts();
    if let Some(a) = &parts.authority {
        let shadow = match a.port() {
            Some(p) => format!("{}-shadow:{p}", a.host()),
            None => format!("{}-shadow", a.as_str()),
        };
        parts.authority = shadow.parse().ok();
    }
    Uri::from_parts(parts).ok()
}

/// Sends a shadow copy of the request to `cluster` in the background.
pub fn mirror(
    pool: Arc<PeerPool>,
    cluster: &LiveCluster,
    method: Method,
    uri: &Uri,
    headers: HeaderMap,
    body: Replay,
) {
    if cluster.lb.overflowing() {
        // A mirror at its request limit is skipped, as Envoy's circuit breakers do.
        return;
    }
    let (Some(uri), lb, name) = (
        shadow_uri(uri),
        cluster.lb.clone(),
        cluster.spec.name.clone(),
    ) else {
        return;
    };
    let opts = cluster.opts;
    tokio::spawn(async move {
        let sent = async {
            body.ended().await;
            if !body.replayable() {
                return Err("the request body was too large to mirror".to_string());
            }
            let p = lb.pick().ok_or("no endpoint for the mirror")?;
            let mut sender = pool
                .get(&p.endpoint.address, p.endpoint.tls_identity(), &opts)
                .await
                .map_err(|e| e.to_string())?;
            let mut req = Request::new(body.body().boxed());
            *req.method_mut() = method;
            *req.uri_mut() = uri;
            *req.version_mut() = Version::HTTP_2;
            *req.headers_mut() = headers;
            let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
            // Drain the body so the stream completes.
            let _ = resp.into_body().collect().await;
            Ok(())
        };
        let result = tokio::time::timeout(MIRROR_TIMEOUT, sent)
            .await
            .unwrap_or(Err("timed out".into()));
        if let Err(e) = result {
            debug!(mirror = %name, error = %e, "mirrored request failed");
        }
    });
}
