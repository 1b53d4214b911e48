//! The sidecar's client for its local app: pooled plaintext HTTP/1.1, or HTTP/2 with prior
//! knowledge when a service the workload backs declares a `GRPC`/`HTTP2` port (as Istio's
//! inbound cluster does). Idle pooled connections close after [`APP_IDLE_TIMEOUT`].

use super::outcome::TryError;
use crate::body::Body;
use http::{Request, Response, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::time::Duration;

/// How long an idle connection to the app stays pooled.
pub const APP_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Clients for the local app.
pub struct AppClient {
    h1: Client<HttpConnector, Body>,
    h2: Client<HttpConnector, Body>,
}

impl Default for AppClient {
    fn default() -> Self {
        Self::new(APP_IDLE_TIMEOUT)
    }
}

impl AppClient {
    pub fn new(idle: Duration) -> AppClient {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        AppClient {
            h1: Client::builder(TokioExecutor::new())
                .pool_timer(TokioTimer::new())
                .pool_idle_timeout(idle)
                .build(connector.clone()),
            h2: Client::builder(TokioExecutor::new())
                .pool_timer(TokioTimer::new())
                .pool_idle_timeout(idle)
                .http2_only(true)
                .timer(TokioTimer::new())
                .build(connector),
        }
    }

    /// Sends a request (its URI names the app) over HTTP/2 when `h2`, else HTTP/1.1.
    pub async fn send(
        &self,
        mut req: Request<Body>,
        h2: bool,
    ) -> Result<Response<Incoming>, TryError> {
        let client = if h2 {
            *req.version_mut() = Version::HTTP_2;
            &self.h2
        } else {
            *req.version_mut() = Version::HTTP_11;
            &self.h1
        };
        client.request(req).await.map_err(|e| {
            let detail = format!("local app unreachable: {e}");
            if e.is_connect() {
                TryError::Connect { detail }
            } else {
                TryError::ConnectionTerminated { detail }
            }
        })
    }
}
