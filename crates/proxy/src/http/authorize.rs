//! Phase 3 of the pipeline, authorization: the AuthorizationPolicies and
//! RequestAuthentications that select this workload, on a sidecar's inbound side and at
//! gateways (never on an app's own outbound calls). In Envoy's filter order: a matching
//! CUSTOM policy asks its external authorizer first (it sees the request as the client sent
//! it, token included; its allow may add request headers the later steps see), then the
//! request's JWTs are authenticated ([`crate::authn`]: an invalid token is refused with 401),
//! then DENY, then ALLOW, which see the validated token's principal and claims. Dry-run
//! decisions are logged and counted, never enforced.

use super::ext_authz as ext;
use super::pipeline::Conn;
use super::ports::{authority, authority_port};
use crate::authn::{Rejected, Verified};
use crate::authz::Input;
use crate::config::ActiveConfig;
use crate::reply::LocalReply;
use crate::state::ProxyState;
use http::{HeaderName, HeaderValue, Request};
use hyper::body::Incoming;
use std::net::IpAddr;
use weft_model::AuthzAction;

/// The request as authorization sees it.
fn input<'a>(
    req: &'a Request<Incoming>,
    conn: &'a Conn,
    host: &'a str,
    remote_ip: IpAddr,
    jwt: Option<&'a Verified>,
    inbound_port: Option<u16>,
) -> Input<'a> {
    let default_port = if req.uri().scheme_str() == Some("https") || conn.https {
        443
    } else {
        80
    };
    Input {
        peer: conn.peer_identity.as_deref(),
        source_ip: conn.peer.ip(),
        remote_ip,
        destination_ip: conn.local.ip(),
        // Gateways: the Gateway server's port; sidecars: one of the workload's ports.
        destination_port: conn
            .config_port
            .or(inbound_port)
            .or(authority_port(authority(req)))
            .unwrap_or(default_port),
        host,
        method: req.method().as_str(),
        path: req.uri().path_and_query().map_or("/", |p| p.as_str()),
        headers: req.headers(),
        sni: conn.sni.as_deref(),
        jwt,
    }
}

/// What authorization lets through: headers an external authorizer asked to add to the
/// client's response, and the request's validated JWT (routing reads its claims).
pub(super) struct Allowed {
    pub downstream: Vec<(HeaderName, HeaderValue)>,
    pub jwt: Option<Verified>,
}

/// May the caller do this? `Err` is the denial.
pub(super) async fn authorize(
    req: &mut Request<Incoming>,
    cfg: &ActiveConfig,
    conn: &Conn,
    remote_ip: IpAddr,
    state: &ProxyState,
    audit: &mut bool,
) -> Result<Allowed, LocalReply> {
    let host = authority(req).to_ascii_lowercase();
    let inbound_port = match conn.side {
        super::pipeline::Side::Inbound => Some(super::ports::inbound_port(req, cfg)?),
        _ => None,
    };
    let mut downstream = Vec::new();
    let custom = cfg
        .authz
        .custom(&input(req, conn, &host, remote_ip, None, inbound_port))
        .map(|(policy, provider)| (policy.to_string(), provider.clone()));
    if let Some((policy, provider)) = custom {
        match ext::check(state, cfg, &provider, req).await {
            ext::Decision::Allow(allow) => {
                allow.apply(req.headers_mut());
                downstream = allow.downstream;
            }
            ext::Decision::Deny(reply) => {
                state.metrics.authz(&policy, true, false);
                tracing::debug!(%policy, provider = %provider.name, "request denied by the external authorizer");
                return Err(reply.for_grpc(super::headers::is_grpc(req.headers())));
            }
        }
    }
    let jwt = authenticate(req, cfg, conn)?;
    let input = input(req, conn, &host, remote_ip, jwt.as_ref(), inbound_port);
    let verdict = cfg.authz.evaluate(&input);
    // An AUDIT policy marks the request for the access log, allowed or denied.
    *audit = verdict.audit;
    for sh in &verdict.shadow {
        let policy = sh.policy.as_deref().unwrap_or(match sh.action {
            AuthzAction::Allow => "no ALLOW policy matched",
            _ => "no DENY policy matched",
        });
        state.metrics.authz(policy, sh.denied, true);
        tracing::info!(
            dry_run = true,
            policy,
            result = if sh.denied { "denied" } else { "allowed" },
            method = input.method,
            path = input.path,
            peer = input.peer.unwrap_or("-"),
            "authorization dry-run"
        );
    }
    match verdict.denied {
        Some(policy) => {
            state.metrics.authz(&policy, true, false);
            tracing::debug!(%policy, method = input.method, path = input.path, peer = input.peer.unwrap_or("-"), "request denied by authorization policy");
            Err(LocalReply::Denied {
                grpc: super::headers::is_grpc(req.headers()),
            })
        }
        None => Ok(Allowed { downstream, jwt }),
    }
}

/// Request authentication: the request's JWTs against this workload's rules.
fn authenticate(
    req: &mut Request<Incoming>,
    cfg: &ActiveConfig,
    conn: &Conn,
) -> Result<Option<Verified>, LocalReply> {
    match cfg.authn.authenticate(req) {
        Ok(jwt) => Ok(jwt),
        Err(Rejected { status, issuer }) => {
            let scheme = if conn.peer_identity.is_some() || conn.https {
                "https"
            } else {
                "http"
            };
            let realm = crate::authn::realm(req, scheme);
            tracing::debug!(
                reason = status.message(),
                issuer = issuer.as_deref().unwrap_or("-"),
                method = %req.method(),
                path = req.uri().path(),
                "request refused by request authentication"
            );
            Err(LocalReply::JwtRejected {
                status: status.http_status(),
                reason: status.message(),
                realm,
                grpc: super::headers::is_grpc(req.headers()),
            })
        }
    }
}
