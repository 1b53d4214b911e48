//! The route decision, pure: given the listener's route table, the clusters and a view of
//! the request, say what to do — answer locally (no route, redirect, direct response, CORS
//! preflight, fault abort) or forward (cluster, rewrites, timeout, retry policy, hash key,
//! mirrors) — and whether a fault delay comes first. No I/O, no clocks; randomness
//! (weights, fault and mirror percentages) comes from the caller's RNG, so tests can seed it.

use super::matcher::RequestView;
use super::rewrite::UriMatched;
use super::table::{CompiledRoute, RouteTable};
use crate::reply::LocalReply;
use crate::upstream::LiveCluster;
use bytes::Bytes;
use http::{header, StatusCode};
use std::collections::HashMap;
use std::time::Duration;
use weft_model::{HashKey, RetryPolicy, WeightedCluster};

/// What to do with a request.
#[derive(Debug)]
pub struct Decision<'c> {
    /// The route that matched (its response headers and CORS apply to whatever answers).
    pub route: Option<&'c CompiledRoute>,
    /// A fault delay to wait out first (`DI`).
    pub delay: Option<Duration>,
    /// The allowed CORS origin to echo on the response.
    pub cors_origin: Option<String>,
    pub action: Action<'c>,
}

/// Answer locally or forward.
#[derive(Debug)]
pub enum Action<'c> {
    Reply(LocalReply),
    Forward(ForwardPlan<'c>),
}

/// How to forward a request.
#[derive(Debug)]
pub struct ForwardPlan<'c> {
    pub route: &'c CompiledRoute,
    pub destination: &'c WeightedCluster,
    pub cluster: &'c LiveCluster,
    /// The path-and-query after `rewrite` (`None`: unchanged).
    pub path: Option<String>,
    /// The authority after `rewrite` (`None`: unchanged).
    pub authority: Option<String>,
    pub timeout: Option<Duration>,
    pub retry: &'c RetryPolicy,
    /// The consistent-hash key, when the cluster hashes and the request carries the key.
    pub hash: Option<u64>,
    /// A `Set-Cookie` for the response: the hash cookie the proxy made up (`httpCookie`
    /// with `ttl`, the request had none).
    pub set_cookie: Option<http::HeaderValue>,
    /// Mirror clusters this request was rolled into.
    pub mirrors: Vec<&'c LiveCluster>,
}

/// Decides a request on a listener whose route table is `table`.
pub fn decide<'c>(
    table: &'c RouteTable,
    clusters: &'c HashMap<String, LiveCluster>,
    req: &RequestView,
    rng: &mut fastrand::Rng,
) -> Decision<'c> {
    let reply = |route, action| Decision {
        route,
        delay: None,
        cors_origin: None,
        action,
    };
    let Some(vhost) = table.vhost(req.authority) else {
        let detail = format!(
            "no route: no virtual host for authority {:?}",
            req.authority
        );
        return reply(None, Action::Reply(LocalReply::NoRoute { detail }));
    };
    if vhost.require_tls && req.scheme != "https" {
        // Envoy's SslRedirector: the same host (port kept) and path over https.
        let location = format!("https://{}{}", req.authority, req.path);
        return reply(
            None,
            Action::Reply(LocalReply::Redirect {
                status: StatusCode::MOVED_PERMANENTLY,
                location,
            }),
        );
    }
    let Some((route, how)) = vhost.route(req) else {
        let detail = format!("no route: nothing in {} matches {}", vhost.name, req.path);
        return reply(None, Action::Reply(LocalReply::NoRoute { detail }));
    };
    let cors_origin = match cors(route, req) {
        Cors::Answer(r) => return reply(Some(route), Action::Reply(r)),
        Cors::Continue(origin) => origin,
    };
    let mut delay = None;
    let action = act(route, how, clusters, req, rng, &mut delay);
    Decision {
        route: Some(route),
        delay,
        cors_origin,
        action,
    }
}

enum Cors {
    Answer(LocalReply),
    Continue(Option<String>),
}

/// Envoy's CORS filter runs before the router: preflights from allowed origins are
/// answered; an allowed origin is remembered for the response.
fn cors(route: &CompiledRoute, req: &RequestView) -> Cors {
    let (Some(policy), Some(origin)) = (
        &route.spec.cors,
        req.headers
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok()),
    ) else {
        return Cors::Continue(None);
    };
    let allowed = route.cors_allowed(origin).map(str::to_string);
    let preflight = req.method == "OPTIONS"
        && req
            .headers
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    match (preflight, allowed) {
        (true, Some(origin)) => Cors::Answer(LocalReply::CorsPreflight {
            headers: super::cors::preflight_headers(policy, &origin),
        }),
        (true, None) if !policy.forward_unmatched_preflights => {
            Cors::Answer(LocalReply::CorsIgnored)
        }
        (_, allowed) => Cors::Continue(allowed),
    }
}

/// The route's action: redirect, direct response, fault abort, or forward.
fn act<'c>(
    route: &'c CompiledRoute,
    how: UriMatched,
    clusters: &'c HashMap<String, LiveCluster>,
    req: &RequestView,
    rng: &mut fastrand::Rng,
    delay: &mut Option<Duration>,
) -> Action<'c> {
    let spec = &route.spec;
    if let Some(r) = &spec.redirect {
        let location =
            super::redirect::redirect_location(r, req.scheme, req.authority, req.path, how);
        let status = StatusCode::from_u16(r.code).unwrap_or(StatusCode::MOVED_PERMANENTLY);
        return Action::Reply(LocalReply::Redirect { status, location });
    }
    if let Some(d) = &spec.direct_response {
        let status = StatusCode::from_u16(d.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = Bytes::from(d.body.clone());
        return Action::Reply(LocalReply::Direct { status, body });
    }
    if let Some(f) = &spec.fault {
        let mut roll = |percent: f64| percent > 0.0 && rng.f64() * 100.0 < percent;
        *delay = f
            .delay_ms
            .filter(|_| roll(f.delay_percent))
            .map(Duration::from_millis);
        if roll(f.abort_percent) {
            if let Some(code) = f.abort_grpc {
                return Action::Reply(LocalReply::FaultAbortGrpc { code });
            }
            if let Some(status) = f.abort_status.and_then(|s| StatusCode::from_u16(s).ok()) {
                return Action::Reply(LocalReply::FaultAbort { status });
            }
        }
    }
    let Some((destination, cluster)) = route
        .pick_destination(rng)
        .and_then(|d| clusters.get(&d.cluster).map(|c| (d, c)))
    else {
        return Action::Reply(LocalReply::NoDestination {
            route: spec.name.clone(),
        });
    };
    let (path, authority) = match &route.rewrite {
        Some(rw) => (Some(rw.path(req.path, how)), rw.authority.clone()),
        None => (None, None),
    };
    let hash_path = path.as_deref().unwrap_or(req.path);
    let key = cluster.spec.hash.as_ref();
    let mut hash = key.and_then(|k| hash_key(k, req, hash_path));
    let mut set_cookie = None;
    if let (
        None,
        Some(HashKey::NewCookie {
            name,
            path,
            ttl_secs,
        }),
    ) = (hash, key)
    {
        let (value, header) = new_cookie(name, path.as_deref(), *ttl_secs, req, rng);
        hash = Some(crate::upstream::stable_hash(value.as_bytes()));
        set_cookie = header;
    }
    let mirrors = spec
        .mirrors
        .iter()
        .filter(|m| m.percent > 0.0 && rng.f64() * 100.0 < m.percent)
        .filter_map(|m| clusters.get(&m.cluster))
        .collect();
    Action::Forward(ForwardPlan {
        route,
        destination,
        cluster,
        path,
        authority,
        timeout: spec.timeout_ms.map(Duration::from_millis),
        retry: &spec.retry,
        hash,
        set_cookie,
        mirrors,
    })
}

/// Envoy's generated hash cookie: a value from the client's address and a random number,
/// and its `Set-Cookie` (`name="value"; Max-Age=ttl; Path=path; HttpOnly`).
fn new_cookie(
    name: &str,
    path: Option<&str>,
    ttl_secs: u64,
    req: &RequestView,
    rng: &mut fastrand::Rng,
) -> (String, Option<http::HeaderValue>) {
    let seed = format!("{}-{}", req.source_ip, rng.u64(..));
    let value = format!("{:016x}", crate::upstream::stable_hash(seed.as_bytes()));
    let mut cookie = format!("{name}=\"{value}\"");
    if ttl_secs > 0 {
        cookie.push_str(&format!("; Max-Age={ttl_secs}"));
    }
    if let Some(p) = path {
        cookie.push_str(&format!("; Path={p}"));
    }
    cookie.push_str("; HttpOnly");
    (value, http::HeaderValue::from_str(&cookie).ok())
}

/// The consistent-hash key of a request (none when the header, cookie or parameter is
/// absent: the pick is then random, as in Envoy).
fn hash_key(key: &HashKey, req: &RequestView, path: &str) -> Option<u64> {
    let value: Option<&[u8]> = match key {
        HashKey::Header(name) => req.headers.get(name.as_str()).map(|v| v.as_bytes()),
        HashKey::Cookie(name) | HashKey::NewCookie { name, .. } => req
            .headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .find(|(k, _)| k == name)
            // A quoted value (as the proxy sets it) hashes as its content.
            .map(|(_, v)| v.trim_matches('"').as_bytes()),
        HashKey::SourceIp => {
            return Some(crate::upstream::stable_hash(
                req.source_ip.to_string().as_bytes(),
            ))
        }
        HashKey::QueryParameter(name) => path
            .split_once('?')
            .and_then(|(_, q)| {
                q.split('&')
                    .filter_map(|kv| kv.split_once('='))
                    .find(|(k, _)| k == name)
            })
            .map(|(_, v)| v.as_bytes()),
    };
    value.map(crate::upstream::stable_hash)
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
