//! The pipeline's tracing and access-log hooks: phase 0 starts a request's
//! [`Exchange`] (only on a side a push traces or logs; otherwise one check and nothing
//! else), and the forward phase tells it the route, cluster and Istio's span name.

use super::pipeline::{Conn, Side};
use super::ports::{authority, inbound_port};
use crate::config::ActiveConfig;
use crate::route::{CompiledRoute, ForwardPlan};
use crate::telemetry::{Downstream, Exchange, Record};
use http::Request;
use hyper::body::Incoming;
use tokio::time::Instant;
use weft_model::StringMatcher;

/// The Telemetry metric overrides of the request's side (`None`: standard metrics).
pub(super) fn metric_rules(
    cfg: &ActiveConfig,
    conn: &Conn,
) -> Option<std::sync::Arc<crate::telemetry::overrides::SideRules>> {
    match conn.side {
        Side::Inbound => &cfg.telemetry.server,
        Side::Gateway | Side::Outbound => &cfg.telemetry.client,
    }
    .metric_rules
    .clone()
}

/// Phase 0: the exchange of a request whose side traces or logs; it writes this proxy's
/// trace context into the request before any phase forwards it.
pub(super) fn start(
    req: &mut Request<Incoming>,
    cfg: &ActiveConfig,
    conn: &Conn,
) -> Option<Box<Exchange>> {
    let side = match conn.side {
        Side::Inbound => &cfg.telemetry.server,
        Side::Gateway | Side::Outbound => &cfg.telemetry.client,
    };
    if side.is_off() {
        return None;
    }
    super::headers::ensure_request_id(req.headers_mut());
    // Istio's inbound decorator: `<service>:<port>/*`; gateway and outbound spans are
    // renamed after the route once it is decided.
    let operation = match (conn.side, cfg.config.inbound.as_ref()) {
        (Side::Inbound, Some(i)) => format!(
            "{}:{}/*",
            i.services
                .first()
                .map_or(i.workload.as_str(), String::as_str),
            inbound_port(req, cfg).unwrap_or(0)
        ),
        _ => format!("{}/*", authority(req)),
    };
    let down = Downstream {
        remote: conn.peer,
        local: conn.local,
        sni: conn.sni.clone(),
        client: conn.side != Side::Inbound,
    };
    let (method, uri, version) = (req.method().clone(), req.uri().clone(), req.version());
    Some(Box::new(Exchange::start(
        side.clone(),
        down,
        &method,
        &uri,
        version,
        req.headers_mut(),
        operation,
    )))
}

/// The route a gateway or outbound request took.
pub(super) fn routed(rec: &mut Record, route: Option<&CompiledRoute>) {
    if let (Some(x), Some(r)) = (rec.exchange.as_mut(), route) {
        x.route_name = Some(r.spec.name.clone());
    }
}

/// The cluster it goes to, and Istio's route decorator as the span name.
pub(super) fn forwarding(rec: &mut Record, plan: &ForwardPlan<'_>) {
    if let Some(x) = rec.exchange.as_mut() {
        x.cluster = Some(plan.cluster.spec.name.clone());
        x.operation = operation(plan);
    }
}

/// Istio's `GetRouteOperation`: `host:port` of the one destination (else the
/// VirtualService's name and the port), then the first match's path (`prefix*`).
fn operation(plan: &ForwardPlan<'_>) -> String {
    let spec = &plan.route.spec;
    let path = match spec.matches.first().and_then(|m| m.uri.as_ref()) {
        Some(StringMatcher::Prefix(p)) => format!("{p}*"),
        Some(StringMatcher::Exact(p) | StringMatcher::Regex(p)) => p.clone(),
        _ => "/*".into(),
    };
    let c = &plan.cluster.spec;
    if spec.destinations.len() == 1 {
        return format!("{}:{}{path}", c.service, c.port);
    }
    // `VirtualService/ns/name (file:line)`
    let vs = spec.origin.split(['/', ' ']).nth(2).unwrap_or(&c.service);
    format!("{vs}:{}{path}", c.port)
}

/// When the upstream call starts, read only for an exchange (no clock read otherwise).
pub(super) fn clock(rec: &Record) -> Option<Instant> {
    rec.exchange.as_ref().map(|_| Instant::now())
}

fn ms(since: Option<Instant>) -> Option<u64> {
    since.map(|t| t.elapsed().as_millis() as u64)
}

/// What the upstream answered: the endpoint and how long it took to respond.
pub(super) fn answered(rec: &mut Record, host: Option<&str>, since: Option<Instant>) {
    if let Some(x) = rec.exchange.as_mut() {
        x.upstream_host = host.map(str::to_string);
        x.upstream_ms = ms(since);
    }
}

/// Inbound: the local app as the upstream (`inbound|<port>||`, as Istio names it).
pub(super) fn to_app(rec: &mut Record, app: &str, since: Option<Instant>) {
    if let Some(x) = rec.exchange.as_mut() {
        let port = app.rsplit_once(':').map_or("0", |(_, p)| p);
        x.cluster = Some(format!("inbound|{port}||"));
        x.upstream_host = Some(app.to_string());
        x.upstream_ms = ms(since);
    }
}
