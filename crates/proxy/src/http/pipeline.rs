//! The request pipeline: one path for gateway, sidecar-outbound and sidecar-inbound
//! requests, in named phases, each a plain function over explicit inputs:
//!
//! 1. **downstream authentication** — the mTLS peer (inbound);
//! 2. **edge checks** — header-block limit (431), host rules (400), path normalization,
//!    forwarding headers at gateways ([`super::edge`]);
//! 3. **authorization** — CUSTOM (an external authorizer), then request authentication
//!    (JWT: RequestAuthentication, 401 for an invalid token), then DENY and ALLOW
//!    ([`super::authorize`]; inbound and gateways, in Envoy's filter order);
//! 4. **route decision** — [`crate::route::decide`], pure (inbound: the local app);
//! 5. **local reply or forward** — retries, timeouts and mirrors to the mesh, or the app;
//! 6. **response** — route response headers, CORS, hop-by-hop stripping;
//! 7. **telemetry** — the request's record rides on the response body and is counted
//!    when the body ends, also when the request ends abnormally; on a side a push traces
//!    or logs, its exchange (started first, [`super::observe`]: trace context read and
//!    this proxy's span written into the request) writes the access log lines and queues
//!    the span then.

use super::caller::authenticate;
pub use super::caller::PeerCache;
use super::guard::{Deadline, GuardedBody};
use super::headers;
use super::limits::{IdleTimeout, BODY_IDLE_TIMEOUT};
use super::ports::{authority, inbound_port, CalledPort};
use crate::body::{incoming, Body};
use crate::config::ActiveConfig;
use crate::reply::LocalReply;
use crate::route::{Action, CompiledRoute, Decision, ForwardPlan, RequestView};
use crate::state::ProxyState;
use crate::telemetry::{Record, RequestRecord, ResponseFlags};
use crate::upstream::{Outgoing, Pick, Replay, Upstream};
use http::{header, HeaderValue, Request, Response, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Largest request body kept for replay (Envoy's default per-request buffer limit).
pub const MAX_REPLAY_BYTES: usize = 1024 * 1024;

/// Which side of the proxy a request arrived on; decides which phases run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// A gateway server port: routes by the Gateway's route table.
    Gateway,
    /// The sidecar's outbound listener: the app's calls to mesh services.
    Outbound,
    /// The sidecar's mTLS inbound listener: peers calling the local app.
    Inbound,
}

/// What every request on one downstream connection shares.
#[derive(Debug, Clone)]
pub struct Conn {
    pub side: Side,
    /// The route table of the listener (gateway, outbound).
    pub table: Arc<str>,
    pub peer: SocketAddr,
    /// The authenticated mTLS peer (inbound).
    pub peer_identity: Option<Arc<str>>,
    /// The caller's labels for the peer metadata it last sent (inbound).
    pub peer_labels: PeerCache,
    /// The `x-forwarded-client-cert` value for requests on this connection (inbound).
    pub xfcc: Option<HeaderValue>,
    /// The address the connection was accepted on.
    pub local: SocketAddr,
    /// The port the config gave the listener (gateways: the Gateway server's port, which a
    /// loopback mesh may bind elsewhere); `None`: the request's authority says.
    pub config_port: Option<u16>,
    /// The TLS server name the peer asked for (inbound, gateway HTTPS).
    pub sni: Option<Arc<str>>,
    /// The connection came over TLS the gateway terminated (HTTPS servers).
    pub https: bool,
}

impl Conn {
    /// A listener's connection template: no peer yet.
    pub fn listener(side: Side, table: &str, config_port: Option<u16>) -> Conn {
        let unspecified: SocketAddr = ([0, 0, 0, 0], 0).into();
        Conn {
            side,
            table: table.into(),
            peer: unspecified,
            peer_identity: None,
            peer_labels: Default::default(),
            xfcc: None,
            local: unspecified,
            config_port,
            sni: None,
            https: false,
        }
    }
}

/// What the phases produce: the response, and what its body must hold on to.
struct Answer {
    resp: Response<Body>,
    pick: Option<Pick>,
    deadline: Option<Deadline>,
}

impl Answer {
    fn reply(r: LocalReply, rec: &mut Record) -> Answer {
        rec.flag(r.flags());
        rec.details(std::borrow::Cow::Borrowed(r.details()));
        Answer {
            resp: r.into_response(),
            pick: None,
            deadline: None,
        }
    }
}

/// Runs one request through the pipeline.
pub async fn handle(
    mut req: Request<Incoming>,
    state: &Arc<ProxyState>,
    conn: &Conn,
) -> Response<Body> {
    let cfg = state.config.load_full();
    let grpc = headers::is_grpc(req.headers());
    let rules = super::observe::metric_rules(&cfg, conn);
    let mut metrics = RequestRecord::start(&state.metrics, cfg.own.source.clone(), grpc, rules);
    metrics.request_headers(req.headers());
    let exchange = super::observe::start(&mut req, &cfg, conn);
    let mut rec = Record::new(metrics, exchange);
    let answer = phases(req, state, &cfg, conn, &mut rec).await;
    let (parts, body) = answer.resp.into_parts();
    rec.respond(parts.status.as_u16(), &parts.headers);
    let body = GuardedBody::new(body, answer.pick, Some(rec), answer.deadline);
    Response::from_parts(parts, body.boxed())
}

async fn phases(
    mut req: Request<Incoming>,
    state: &Arc<ProxyState>,
    cfg: &ActiveConfig,
    conn: &Conn,
    rec: &mut Record,
) -> Answer {
    // Who is calling comes first, so that even a request refused at the edge is reported
    // with its caller's labels.
    authenticate(&req, cfg, conn, state, rec);
    let remote_ip = match super::edge::check(&mut req, conn, &cfg.config.mesh) {
        Ok(ip) => ip,
        Err(r) => return Answer::reply(r, rec),
    };
    // The peer metadata is the proxies' own; the app never sees it. A verified peer's
    // word on the service port it called is kept for the inbound port's choice.
    if let Some(meta) = req.headers_mut().remove(crate::telemetry::PEER_HEADER) {
        let port = meta
            .to_str()
            .ok()
            .and_then(crate::telemetry::peer::called_port);
        if let (Some(p), Some(_)) = (port, &conn.peer_identity) {
            req.extensions_mut().insert(CalledPort(p));
        }
    }
    if let Some(r) = plaintext_refused(&req, cfg, conn) {
        return Answer::reply(r, rec);
    }
    let unguarded = cfg.authz.is_empty() && cfg.authn.is_empty();
    let allowed = if unguarded || conn.side == Side::Outbound {
        super::authorize::Allowed {
            downstream: Vec::new(),
            jwt: None,
        }
    } else {
        let mut audit = false;
        let verdict = Box::pin(super::authorize::authorize(
            &mut req, cfg, conn, remote_ip, state, &mut audit,
        ))
        .await;
        if let Some(x) = rec.exchange.as_mut() {
            x.audit = audit;
        }
        match verdict {
            Ok(a) => a,
            Err(r) => return Answer::reply(r, rec),
        }
    };
    let claims = allowed.jwt.as_ref().map(|j| &j.claims);
    let mut answer = match conn.side {
        // Boxed: the hyper task that runs this future moves it a few times (an HTTP/2
        // stream's future is spawned); a pointer moves cheaper than kilobytes of state.
        Side::Inbound => Box::pin(to_app(req, state, cfg, conn, rec)).await,
        Side::Gateway | Side::Outbound => Box::pin(route(req, state, cfg, conn, claims, rec)).await,
    };
    // What an external authorizer asked to add to the client's response.
    for (k, v) in allowed.downstream {
        answer.resp.headers_mut().append(k, v);
    }
    answer
}

/// A plaintext request to a port whose PeerAuthentication is STRICT (the connection was
/// admitted because another port of this workload takes plaintext).
fn plaintext_refused(
    req: &Request<Incoming>,
    cfg: &ActiveConfig,
    conn: &Conn,
) -> Option<LocalReply> {
    if conn.side != Side::Inbound || conn.peer_identity.is_some() {
        return None;
    }
    let port = match inbound_port(req, cfg) {
        Ok(p) => p,
        Err(r) => return Some(r),
    };
    let mtls = &cfg.config.inbound.as_ref()?.mtls;
    (mtls.for_port(u32::from(port)) == weft_model::mtls::InboundMode::Strict).then_some(
        LocalReply::PlaintextRefused {
            port: u32::from(port),
        },
    )
}

/// Phases 4-6 for gateway and outbound requests; `claims` of the validated JWT (gateways).
async fn route(
    req: Request<Incoming>,
    state: &Arc<ProxyState>,
    cfg: &ActiveConfig,
    conn: &Conn,
    claims: Option<&serde_json::Value>,
    rec: &mut Record,
) -> Answer {
    let Some(table) = cfg.tables.get(&*conn.table) else {
        let detail = format!("no route: listener {} has no route table", conn.table);
        return Answer::reply(LocalReply::NoRoute { detail }, rec);
    };
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let view = RequestView {
        path,
        scheme: req
            .uri()
            .scheme_str()
            .unwrap_or(if conn.https { "https" } else { "http" }),
        method: req.method().as_str(),
        authority: authority(&req),
        headers: req.headers(),
        source_ip: conn.peer.ip(),
        claims,
    };
    let mut rng = fastrand::Rng::new();
    let Decision {
        route,
        delay,
        cors_origin,
        action,
    } = crate::route::decide(table, &cfg.clusters, &view, &mut rng);
    super::observe::routed(rec, route);
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
        rec.flag(ResponseFlags::DELAY_INJECTED);
    }
    let mut answer = match action {
        Action::Reply(r) => {
            // A local reply on a route with a destination (a fault abort, no healthy
            // upstream) is reported against that destination's service, as Envoy does.
            let dest = route.and_then(|r| r.spec.destinations.first());
            if let Some(c) = dest.and_then(|d| cfg.clusters.get(&d.cluster)) {
                rec.peers = c.labels.cluster.clone();
            }
            Answer::reply(r, rec)
        }
        Action::Forward(plan) => to_mesh(req, state, plan, rec).await,
    };
    respond(&mut answer.resp, route, cors_origin.as_deref());
    answer
}

/// Phase 6: route-level response headers and CORS apply to every response of a route,
/// local replies (redirects, direct responses, fault aborts, errors) included.
fn respond(resp: &mut Response<Body>, route: Option<&CompiledRoute>, cors_origin: Option<&str>) {
    let Some(route) = route else { return };
    crate::route::rewrite::apply(resp.headers_mut(), &route.spec.response_headers);
    if let (Some(cors), Some(origin)) = (&route.spec.cors, cors_origin) {
        crate::route::cors::response_headers(cors, origin, resp.headers_mut());
    }
}

/// Phase 5 toward the mesh: rewrite and header operations, mirrors, the retry loop.
async fn to_mesh(
    req: Request<Incoming>,
    state: &Arc<ProxyState>,
    plan: ForwardPlan<'_>,
    rec: &mut Record,
) -> Answer {
    super::observe::forwarding(rec, &plan);
    let labels = &plan.cluster.labels;
    rec.peers = labels.cluster.clone();
    let authority = match plan.authority.as_deref() {
        Some(a) => a.to_string(),
        None => authority(&req).to_string(),
    };
    let (mut parts, body) = req.into_parts();
    let path = plan
        .path
        .as_deref()
        .or(parts.uri.path_and_query().map(|p| p.as_str()))
        .unwrap_or("/");
    let uri = match Uri::builder()
        .scheme("http")
        .authority(authority.as_str())
        .path_and_query(path)
        .build()
    {
        Ok(u) => u,
        Err(e) => {
            let detail = format!("bad authority {authority:?}: {e}");
            return Answer::reply(LocalReply::BadRequest { detail }, rec);
        }
    };
    let downstream_version = parts.version;
    let h = &mut parts.headers;
    headers::strip_hop_by_hop(h);
    h.remove(header::HOST);
    crate::route::rewrite::apply(h, &plan.route.spec.request_headers);
    crate::route::rewrite::apply(h, &plan.destination.request_headers);
    headers::ensure_request_id(h);
    h.insert(crate::telemetry::PEER_HEADER, labels.peer_header.clone());
    let out = Outgoing {
        method: parts.method,
        uri,
        headers: parts.headers,
        body: Replay::new(
            request_body(body, rec),
            MAX_REPLAY_BYTES,
            &state.replay_budget,
        ),
    };
    for m in &plan.mirrors {
        crate::upstream::mirror(
            state.pool.clone(),
            m,
            out.method.clone(),
            &out.uri,
            out.headers.clone(),
            out.body.clone(),
        );
    }
    let up = Upstream {
        pool: &state.pool,
        cluster: plan.cluster,
        policy: plan.retry,
        hash: plan.hash,
        timeout: plan.timeout,
        client_h2: downstream_version == http::Version::HTTP_2,
    };
    let sent_at = super::observe::clock(rec);
    let peers = &mut rec.peers;
    let f = crate::upstream::forward(&up, &out, |p| {
        if let Some(l) = labels.endpoints.get(p.index) {
            *peers = l.clone();
        }
    })
    .await;
    rec.flag(f.flags);
    let host = f.pick.as_ref().map(|p| p.endpoint.address.as_str());
    super::observe::answered(rec, host, sent_at);
    if plan.mirrors.is_empty() {
        // No try or mirror will replay the body now: give its copy back.
        out.body.release();
    } else if f.result.is_err() {
        // The mirrors wait for the whole body; read it on though the primary failed.
        let body = out.body.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(30), body.drain()).await;
        });
    }
    let resp = match f.result {
        Ok(resp) => resp,
        Err(e) => return Answer::reply(LocalReply::Upstream(e.into_failure()), rec),
    };
    let (mut parts, body) = resp.into_parts();
    parts.version = downstream_version;
    headers::strip_hop_by_hop(&mut parts.headers);
    crate::route::rewrite::apply(&mut parts.headers, &plan.destination.response_headers);
    if let Some(cookie) = plan.set_cookie {
        parts.headers.append(header::SET_COOKIE, cookie);
    }
    Answer {
        resp: Response::from_parts(parts, body),
        pick: f.pick,
        deadline: plan.timeout.map(|t| body_deadline(out.body, t)),
    }
}

/// A downstream request body, bounded by the stream idle timeout and counted (telemetry).
fn request_body(body: Incoming, rec: &mut RequestRecord) -> Body {
    if hyper::body::Body::is_end_stream(&body) {
        return incoming(body);
    }
    rec.count_request_body(IdleTimeout::new(incoming(body), BODY_IDLE_TIMEOUT).boxed())
}

/// The route timeout, which runs from the end of the request until the response is done.
fn body_deadline(body: Replay, timeout: Duration) -> Deadline {
    Box::pin(async move {
        body.ended().await;
        let from = body.ended_at().unwrap_or_else(tokio::time::Instant::now);
        match from.checked_add(timeout) {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    })
}

/// Phase 5 inbound: to the local app, with `x-forwarded-client-cert` naming the caller.
async fn to_app(
    req: Request<Incoming>,
    state: &Arc<ProxyState>,
    cfg: &ActiveConfig,
    conn: &Conn,
    rec: &mut Record,
) -> Answer {
    // The service port matters only when a Sidecar ingress listener maps ports to
    // addresses of their own (most workloads have one app address).
    let per_port = cfg
        .config
        .inbound
        .as_ref()
        .is_some_and(|i| !i.app_ports.is_empty());
    let port = per_port.then(|| inbound_port(&req, cfg).ok()).flatten();
    let (mut parts, body) = req.into_parts();
    // Envoy's SANITIZE_SET: the caller's certificate as verified here, or nothing — never
    // what a plaintext caller wrote.
    match &conn.xfcc {
        Some(xfcc) => {
            parts
                .headers
                .insert("x-forwarded-client-cert", xfcc.clone());
        }
        None => {
            parts.headers.remove("x-forwarded-client-cert");
        }
    }
    if let Some(a) = parts.uri.authority() {
        if let Ok(v) = HeaderValue::from_str(a.as_str()) {
            parts.headers.insert(header::HOST, v);
        }
    }
    let downstream_version = parts.version;
    let app = state.app_for(cfg, port.map(u32::from));
    let app = app.as_deref().unwrap_or("127.0.0.1:0");
    // Origin-form: the app client addresses the app itself.
    if let Some(pq) = parts.uri.path_and_query().cloned() {
        parts.uri = pq.into();
    }
    let h2 = cfg.config.inbound.as_ref().is_some_and(|i| i.app_http2);
    let client_h2 = downstream_version == http::Version::HTTP_2;
    let held = match crate::upstream::admit::admit_app(cfg, client_h2).await {
        Ok(held) => held,
        Err(e) => return Answer::reply(LocalReply::Upstream(e.into_failure()), rec),
    };
    let req = Request::from_parts(parts, request_body(body, rec));
    let sent_at = super::observe::clock(rec);
    let answer = state.app.send(app, req, h2).await;
    super::observe::to_app(rec, app, sent_at);
    match answer {
        Ok(resp) => {
            let (mut p, b) = resp.into_parts();
            p.version = downstream_version;
            headers::strip_hop_by_hop(&mut p.headers);
            let b = crate::upstream::limits::Holding::new(b, held).boxed();
            Answer {
                resp: Response::from_parts(p, b),
                pick: None,
                deadline: None,
            }
        }
        Err(e) => Answer::reply(LocalReply::Upstream(e.into_failure()), rec),
    }
}
