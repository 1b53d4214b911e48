//! In-process test harness for the weft proxy (after linkerd2-proxy's `linkerd-app-test`).
//!
//! Everything runs inside the test's own tokio runtime on `127.0.0.1:0` sockets, so tests
//! need no fixed ports, no binaries and no sleeps, and work under paused tokio time:
//!
//! - [`control::FakeControl`]: the control plane (tonic `Mesh` service): signs CSRs with an
//!   in-memory CA for the identity the test chooses, pushes the `ProxyConfig`s the test
//!   builds, and records every ACK/NACK so a test can wait for one.
//! - [`proxy::Proxy`]: `weft_proxy::run` in a task, started once its `Ready` event arrives;
//!   exposes admin/inbound/outbound addresses, identity and gateway listeners.
//! - [`app::App`]: scripted upstream apps (HTTP/1.1 and h2c): status, echo, delay, fail
//!   the first N, stall the body; counts and records requests.
//! - [`config`]: `ProxyConfig` builders named as `weft_model::compile` names things.
//! - [`client`]: a one-shot HTTP/1.1 client and Prometheus stats helpers.
//! - [`stream`]: streaming request bodies, a connection-keeping HTTP/1.1/h2c client,
//!   apps that see the body as it arrives, gRPC framing, the process's RSS.
//!
//! Ownership: each value stops what it started when dropped (control plane server and
//! config streams, proxy tasks, app listeners and connections). Every wait goes through
//! [`within`], a watchdog that turns a hang into a panic naming what was awaited.
// Each test binary uses a different part of the harness.
#![allow(dead_code, unused_imports)]

pub mod app;
pub mod client;
pub mod config;
pub mod conns;
pub mod control;
pub mod custom;
pub mod otlp;
pub mod proxy;
pub mod raw;
pub mod routing;
pub mod stream;

pub use app::{App, Reply, Seen, APP_HEADER};
pub use client::{admin, get, requests_total, sample_sum, send, stats, try_send, Resp};
pub use config::{
    cluster, endpoint, istio_default_retry, outlier, retries, route_to, service_host, Config,
};
pub use control::FakeControl;
pub use proxy::{Proxy, NAMESPACE};

use std::future::Future;
use std::time::Duration;

/// How long any single wait may take before the test fails. Under paused time it is
/// virtual: it fires only when every task is idle, i.e. when the wait can never finish.
pub const WATCHDOG: Duration = Duration::from_secs(60);

/// Awaits `f`, panicking with `what` if it takes longer than [`WATCHDOG`].
pub async fn within<F: Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(WATCHDOG, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {WATCHDOG:?} waiting for {what}"),
    }
}

/// A client sidecar and a server sidecar in front of `app`, with the client's outbound
/// route for `server.test.svc.cluster.local` pushed and ACKed: the common starting point.
pub struct Pair {
    pub control: FakeControl,
    pub client: Proxy,
    pub server: Proxy,
    /// `server.test.svc.cluster.local`.
    pub host: String,
    /// The client's config as pushed (tests extend it).
    pub config: Config,
}

impl Pair {
    /// Starts control, both sidecars and the config; `route` customises the client's route.
    pub async fn start(
        app: &App,
        route: impl FnOnce(weft_model::Route) -> weft_model::Route,
    ) -> Pair {
        Pair::start_for(app.addr, route).await
    }

    /// Like [`Pair::start`], for an app at `app` (e.g. a [`stream::StreamApp`]).
    pub async fn start_for(
        app: std::net::SocketAddr,
        route: impl FnOnce(weft_model::Route) -> weft_model::Route,
    ) -> Pair {
        let control = FakeControl::start().await;
        let server = Proxy::sidecar("server").app(app).start(&control).await;
        let client = Proxy::sidecar("client").start(&control).await;
        control
            .push_acked("server", &Config::sidecar(&server).build())
            .await;
        let host = service_host("server", NAMESPACE);
        let c = cluster(&host, 80, vec![endpoint(&server)]);
        let config = Config::sidecar(&client)
            .route(&host, route(route_to(&c.name)))
            .cluster(c);
        control.push_acked("client", &config.clone().build()).await;
        Pair {
            control,
            client,
            server,
            host,
            config,
        }
    }

    /// `GET path` through the client's outbound listener to the server's host.
    pub async fn get(&self, path: &str) -> Resp {
        get(self.client.outbound(), &self.host, path).await
    }
}
