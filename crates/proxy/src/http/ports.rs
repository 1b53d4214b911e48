//! Where a request is addressed: its authority, and on a sidecar's inbound side which of
//! the workload's service ports it is for. weft's one inbound listener serves every port of
//! the workload (and sends all to its one app address), so the port is the one the
//! calling proxy says it called (peer metadata, trusted from a verified peer, as Envoy
//! knows the connection's destination port) when the workload serves it, else the one the
//! authority names; a workload with one port serves everything there, and with several a
//! request naming none of them is refused rather than judged under a port of the caller's
//! choosing. Unlike Envoy's destination port, the port does not pick the app port: every
//! port reaches the one app address, so a port-based AuthorizationPolicy holds only
//! against callers that do not choose their port (a caller may address any served port).

use crate::config::ActiveConfig;
use crate::reply::LocalReply;
use http::{header, Request};
use hyper::body::Incoming;

/// The service port a verified calling proxy says it called.
#[derive(Debug, Clone, Copy)]
pub(super) struct CalledPort(pub(super) u16);

/// The service port of an inbound request (see the module comment).
pub(super) fn inbound_port(req: &Request<Incoming>, cfg: &ActiveConfig) -> Result<u16, LocalReply> {
    let ports = cfg
        .config
        .inbound
        .as_ref()
        .map_or(&[][..], |i| i.ports.as_slice());
    let served = |p: &u16| ports.contains(&u32::from(*p));
    let named_by_authority = authority_port(authority(req));
    let named = req
        .extensions()
        .get::<CalledPort>()
        .map(|c| c.0)
        .filter(served)
        .or(named_by_authority);
    let ok = |p: u32| u16::try_from(p).ok();
    match (named, ports) {
        (n, []) => Ok(n.unwrap_or(80)),
        (Some(n), ports) if ports.contains(&u32::from(n)) => Ok(n),
        (_, [only]) => ok(*only).ok_or_else(|| LocalReply::BadRequest {
            detail: format!("port {only} is out of range"),
        }),
        (n, ports) => Err(LocalReply::BadRequest {
            detail: format!(
                "this workload serves ports {ports:?}; the request names {}: address one of them",
                n.map_or("none".to_string(), |n| n.to_string())
            ),
        }),
    }
}

/// The port of `host[:port]` (IPv6 literals in brackets).
pub(crate) fn authority_port(authority: &str) -> Option<u16> {
    match authority.rsplit_once(':') {
        Some((_, p)) if !p.contains(']') => p.parse().ok(),
        _ => None,
    }
}

/// The request's authority: the absolute-form URI's, else the Host header.
pub(crate) fn authority(req: &Request<Incoming>) -> &str {
    req.uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
        })
        .unwrap_or("")
}
