//! weft's control plane (istiod's role): loads the mesh config from a folder and watches
//! it, keeps the service registry, compiles and pushes each proxy's config over gRPC
//! (versioned, ACK/NACK), and runs the CA that signs workload certificates.
#![forbid(unsafe_code)]

pub mod ca_source;
pub mod jwks;
pub mod metrics;
mod push;
pub mod server;
pub mod source;
pub mod state;
pub mod watch;

use anyhow::Context;
use serde::Serialize;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_stream::wrappers::TcpListenerStream;
use tracing::info;

/// How to run the control plane.
#[derive(Debug, Clone)]
pub struct ControlOptions {
    /// Folder of Istio YAML (watched).
    pub config_dir: PathBuf,
    /// Where the CA root lives (`<state>/ca/`).
    pub state_dir: PathBuf,
    /// gRPC listen address (port 0 picks one; the bound one is printed).
    pub listen: SocketAddr,
    pub trust_domain: String,
    /// A user-given CA (cert, key) instead of the generated root.
    pub ca_files: Option<(PathBuf, PathBuf)>,
    /// Istio's plug-in CA folder (`ca-cert.pem`, `ca-key.pem`, `root-cert.pem`,
    /// `cert-chain.pem`): an intermediate signing CA under an offline root.
    pub cacerts: Option<PathBuf>,
    /// Lifetime of workload certificates.
    pub cert_ttl: Duration,
    /// Bearer token every proxy must present (`--token-file`); `None` accepts anyone.
    pub token: Option<String>,
    /// Per-workload tokens (`--workload-tokens`): each admits only the proxy it names.
    pub workload_tokens: Vec<(String, weft_protocol::auth::BoundProxy)>,
    /// How often fetched JWKS are fetched again ([`jwks::DEFAULT_REFRESH`]: Istio's 20 min).
    pub jwks_refresh: Duration,
    /// The largest config push sent ([`weft_protocol::MAX_PUSH_BYTES`] by default); a
    /// proxy whose config is larger is told so instead, and it is logged and reported.
    pub max_push_bytes: usize,
    /// Another config source than the folder ([`source`]): `config_dir` is then unused.
    pub feed: Option<source::Feed>,
    /// Serve the control plane's metrics ([`metrics`]) on this address (istiod's 15014).
    pub metrics_listen: Option<SocketAddr>,
}

/// A lifecycle event, printed to stdout as one JSON line.
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Ready {
        role: &'static str,
        grpc: String,
        resources: usize,
        /// Where `/metrics` is served (`--metrics-listen`).
        #[serde(skip_serializing_if = "Option::is_none")]
        metrics: Option<String>,
    },
    ConfigApplied {
        resources: usize,
        /// Everything the new config loads but does not enforce yet (`Kind/ns/name (file:line): what`).
        not_enforced: Vec<String>,
        /// The part of `not_enforced` that the previous config did not have.
        not_enforced_new: Vec<String>,
    },
    ConfigRejected {
        errors: Vec<String>,
    },
    /// The control plane cannot serve a proxy its config (too large for a push): who, why.
    ProxyUnserved {
        proxy: String,
        reason: String,
    },
    /// Every connected proxy has accepted the latest config it was sent: proxy id -> version.
    Converged {
        proxies: std::collections::BTreeMap<String, String>,
    },
}

pub(crate) fn emit(e: &Event) {
    println!("{}", serde_json::to_string(e).expect("events serialize"));
}

/// Runs the control plane until `shutdown` resolves. Fails at startup if the config does
/// not load (with every error at file:line:col) or the CA cannot be set up.
pub async fn run(opts: ControlOptions, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    // The watch reloads with the reloader of the first load: only changed files are parsed.
    let mut reloader = weft_api::Reloader::default();
    let weft_api::ValidConfig {
        resources,
        unsupported,
        warnings,
    } = match &opts.feed {
        Some(feed) => {
            let snapshot = feed.borrow().clone();
            source::log(&snapshot, None);
            weft_api::ValidConfig {
                resources: snapshot.resources.clone(),
                unsupported: snapshot.unsupported.clone(),
                warnings: Vec::new(),
            }
        }
        None => reloader.load(&opts.config_dir).map_err(|errors| {
            anyhow::anyhow!(
                "the mesh config in {} does not load:\n  {}",
                opts.config_dir.display(),
                errors.join("\n  ")
            )
        })?,
    };
    for w in &warnings {
        tracing::warn!(warning = %w, "config accepted with a warning");
    }
    for u in &unsupported {
        tracing::warn!(what = %u, "loaded but not supported");
    }
    use ca_source::CaSource;
    let ca = match (&opts.cacerts, &opts.ca_files) {
        (Some(dir), _) => CaSource::cacerts(dir.clone(), &opts.trust_domain),
        (None, Some((cert, key))) => {
            weft_identity::Ca::from_pem_files(cert, key, &opts.trust_domain).map(CaSource::fixed)
        }
        (None, None) => {
            weft_identity::Ca::load_or_create(&opts.state_dir.join("ca"), &opts.trust_domain)
                .map(CaSource::fixed)
        }
    }
    .context("setting up the mesh CA")?;
    if opts.token.is_none() && opts.workload_tokens.is_empty() {
        tracing::warn!("no --token-file or --workload-tokens: any local process that reaches the control plane can register a proxy and get a workload's certificate");
    } else if opts.workload_tokens.is_empty() {
        tracing::info!("one token for the whole mesh: a process holding it can ask for any workload's identity; --workload-tokens binds a token to each proxy");
    }
    let count = resources.len();
    let jwks = jwks::Jwks::new(opts.jwks_refresh);
    let fetched = jwks.prefetch(&resources).await;
    let state = state::State::new(resources, &opts.trust_domain, opts.max_push_bytes);
    let _ = watch::report_not_enforced(state.prepared().not_enforced(), None);
    state.set_jwks(fetched);
    let listener = bind(opts.listen)
        .with_context(|| format!("binding the control plane on {}", opts.listen))?;
    let addr = listener.local_addr()?;
    info!(grpc = %addr, resources = count, "control plane ready");
    let service = server::MeshService {
        state: state.clone(),
        ca: Arc::new(ca),
        cert_ttl: opts.cert_ttl,
    };
    let watcher = match opts.feed.clone() {
        Some(feed) => tokio::spawn(source::follow(feed, state.clone(), jwks.clone())),
        None => tokio::spawn(watch::run(
            opts.config_dir.clone(),
            state.clone(),
            jwks.clone(),
            unsupported,
            reloader,
        )),
    };
    let refresher = tokio::spawn(jwks.run(state.clone()));
    let metrics = match opts.metrics_listen {
        Some(listen) => {
            let l = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("binding the control plane's metrics on {listen}"))?;
            let addr = l.local_addr()?;
            info!(metrics = %addr, "control plane metrics on /metrics");
            Some((addr, tokio::spawn(metrics::serve(l, state.metrics.clone()))))
        }
        None => None,
    };
    let grace = tokio::spawn(async move {
        tokio::time::sleep(state::RECONNECT_GRACE).await;
        state.push_now();
    });
    emit(&Event::Ready {
        role: "control",
        grpc: addr.to_string(),
        resources: count,
        metrics: metrics.as_ref().map(|(a, _)| a.to_string()),
    });
    let result = tonic::transport::Server::builder()
        .add_service(tonic::service::interceptor::InterceptedService::new(
            weft_protocol::MeshServer::new(service)
                // Pushes are checked against `max_push_bytes` before they are sent; this
                // only keeps the transport from refusing what was checked.
                .max_encoding_message_size(
                    weft_protocol::MAX_PUSH_BYTES.max(opts.max_push_bytes) + 1024,
                )
                .max_decoding_message_size(1 << 20),
            weft_protocol::auth::RequireToken::with_workloads(
                opts.token.clone(),
                opts.workload_tokens.clone(),
            ),
        ))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await;
    watcher.abort();
    refresher.abort();
    if let Some((_, task)) = metrics {
        task.abort();
    }
    grace.abort();
    result.context("control plane gRPC server")
}

/// Binds the gRPC listener with a pending-connection queue of `net.core.somaxconn` (the
/// kernel caps the value), as the proxies' listeners: a thousand proxies connecting at once
/// overflow Rust's default of 128 and some get a reset.
fn bind(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(65_535)
}
