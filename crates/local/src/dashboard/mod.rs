//! `weft dashboard`: a live web view of a running local mesh, with no external services.
//! It scrapes every proxy's admin endpoint (`/stats/prometheus`, `/clusters`) every
//! [`SCRAPE_EVERY`], builds the service graph from the last two scrapes
//! ([`graph::build`]), and serves one self-contained page (`index.html`, no build step)
//! plus its JSON: `/api/graph` and `/api/workload?id=name.namespace` (the config that
//! applies to a workload, with file:line, read from the mesh's config folder).

mod config_view;
mod graph;
mod prom;

use crate::status::{self, http_get};
use anyhow::Context;
use bytes::Bytes;
use graph::{Graph, ProxyScrape};
use http::{header, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tracing::{debug, warn};

/// How often the proxies are scraped (the page refreshes as often).
pub const SCRAPE_EVERY: Duration = Duration::from_secs(2);

const PAGE: &str = include_str!("index.html");

/// What the page is served from.
struct View {
    state_dir: PathBuf,
    graph: Mutex<Graph>,
}

/// Binds `listen`, reports the address through `on_bound`, and serves the dashboard of
/// the mesh whose state is in `state_dir` until the task is dropped.
pub async fn serve(
    state_dir: &Path,
    listen: SocketAddr,
    on_bound: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the dashboard on {listen}"))?;
    on_bound(listener.local_addr()?);
    let view = Arc::new(View {
        state_dir: state_dir.to_path_buf(),
        graph: Mutex::new(Graph::default()),
    });
    tokio::spawn(scrape_loop(view.clone()));
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "dashboard: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let view = view.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let view = view.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(&req, &view)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

fn reply(status: StatusCode, kind: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, kind)
        .header(header::CACHE_CONTROL, "no-store")
        .body(Full::new(body.into()))
        .expect("static response parts are valid")
}

fn json(v: &impl serde::Serialize) -> Response<Full<Bytes>> {
    reply(
        StatusCode::OK,
        "application/json",
        serde_json::to_vec(v).unwrap_or_default(),
    )
}

fn handle(req: &Request<Incoming>, view: &View) -> Response<Full<Bytes>> {
    match req.uri().path() {
        "/" | "/index.html" => reply(StatusCode::OK, "text/html; charset=utf-8", PAGE),
        "/api/graph" => json(&*view.graph.lock().unwrap_or_else(|p| p.into_inner())),
        "/api/workload" => {
            let id = req
                .uri()
                .query()
                .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("id=")))
                .unwrap_or("");
            match config_resources(&view.state_dir) {
                Ok((dir, res)) => {
                    let mut list = config_view::applying(&res, id);
                    // Paths relative to the config folder, as a person edits them.
                    let prefix = format!("{}/", dir.display());
                    for a in &mut list {
                        if let Some(rel) = a.source.strip_prefix(&prefix) {
                            a.source = rel.to_string();
                        }
                    }
                    json(&list)
                }
                Err(e) => reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    format!("{e:#}"),
                ),
            }
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "dashboard paths: / /api/graph /api/workload?id=name.namespace",
        ),
    }
}

/// The resources of the running mesh's config folder (as loaded now; files that fail to
/// load are left out, as the mesh keeps its last good config).
fn config_resources(state_dir: &Path) -> anyhow::Result<(PathBuf, Vec<weft_api::Resource>)> {
    let dir = PathBuf::from(status::read(state_dir)?.config_dir);
    let resources = weft_api::load_path(&dir).resources;
    Ok((dir, resources))
}

/// Scrapes every proxy the mesh state lists, forever, and rebuilds the graph each time.
async fn scrape_loop(view: Arc<View>) {
    let mut prev: HashMap<String, ProxyScrape> = HashMap::new();
    let mut prev_at = Instant::now();
    loop {
        let started = Instant::now();
        let mesh = status::read(&view.state_dir).ok();
        let now = match &mesh {
            Some(m) => scrape_all(m).await,
            None => HashMap::new(),
        };
        let nodes = mesh
            .map(|m| config_view::nodes(&weft_api::load_path(Path::new(&m.config_dir)).resources))
            .unwrap_or_default();
        let secs = started.duration_since(prev_at).as_secs_f64();
        let g = graph::build(&prev, &now, secs, nodes);
        *view.graph.lock().unwrap_or_else(|p| p.into_inner()) = g;
        (prev, prev_at) = (now, started);
        tokio::time::sleep_until(started + SCRAPE_EVERY).await;
    }
}

/// One scrape of every gateway and sidecar the mesh state lists (a proxy that does not answer
/// is left out of this round).
async fn scrape_all(mesh: &status::MeshStatus) -> HashMap<String, ProxyScrape> {
    let mut out = HashMap::new();
    for p in &mesh.processes {
        if p.role != "gateway" && p.role != "sidecar" {
            continue;
        }
        let Some(admin) = p.addresses.get("admin") else {
            continue;
        };
        let metrics = http_get(admin, "/stats/prometheus").await;
        let clusters = http_get(admin, "/clusters").await;
        match (metrics, clusters) {
            (Ok(m), Ok(c)) => {
                out.insert(
                    p.name.clone(),
                    ProxyScrape {
                        role: p.role.clone(),
                        samples: prom::parse(&m, "istio_"),
                        clusters: serde_json::from_str(&c).unwrap_or_default(),
                    },
                );
            }
            (Err(e), _) | (_, Err(e)) => debug!(proxy = %p.name, error = %e, "scrape failed"),
        }
    }
    out
}
