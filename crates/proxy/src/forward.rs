//! Sending one downstream request upstream, with Envoy's retry semantics as Istio
//! configures them: up to 1 + `attempts` tries, each on an endpoint not tried yet
//! (`retryIgnorePreviousHosts`), a per-try timeout inside the route timeout, jittered
//! exponential backoff (25 ms base, 10x cap), and `retryOn` deciding which outcomes are
//! retried. A request that never left (connect failure, or a pooled connection found dead
//! before it was written) is recovered intact; one that was sent is replayed only if its
//! body was buffered (bodies up to 1 MiB with a known length, when retries are possible).

use crate::lb::{Outcome, Pick};
use crate::metrics::RequestLabels;
use crate::runtime::RuntimeCluster;
use crate::upstream::Body;
use crate::{local_response, Shared};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::time::Duration;
use tokio::time::Instant;
use tracing::{debug, warn};
use weft_model::RetryPolicy;

/// Largest request body kept for replay (Envoy's default buffer limit).
const MAX_BUFFERED_BODY: usize = 1024 * 1024;

/// The request being retried: everything but the body is rebuilt for each try.
pub(crate) struct Outgoing {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    body: ReqBody,
}

enum ReqBody {
    Buffered(crate::replay::Buffered),
    /// Not replayable once sent; `None` after it was handed out.
    Stream(Option<Body>),
}

impl Outgoing {
    /// Buffers the body when a retry or a mirror might need to replay it.
    pub async fn new(
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Incoming,
        replay: bool,
    ) -> Result<Outgoing, String> {
        let body = if !replay {
            ReqBody::Stream(Some(body.map_err(Into::into).boxed()))
        } else {
            match crate::replay::buffer(body, MAX_BUFFERED_BODY).await {
                Ok(Ok(buffered)) => ReqBody::Buffered(buffered),
                Ok(Err(streaming)) => ReqBody::Stream(Some(streaming)),
                Err(e) => return Err(format!("reading the request body: {e}")),
            }
        };
        Ok(Outgoing {
            method,
            uri,
            headers,
            body,
        })
    }

    /// A copy for a traffic mirror: Envoy appends `-shadow` to the authority. `None` when
    /// the body was not buffered (too large or of unknown length).
    pub fn shadow(&self) -> Option<Request<Body>> {
        let ReqBody::Buffered(b) = &self.body else {
            return None;
        };
        let mut uri = self.uri.clone().into_parts();
        if let Some(a) = &uri.authority {
            let (host, port) = match a.port() {
                Some(p) => (a.host(), format!(":{p}")),
                None => (a.as_str(), String::new()),
            };
            uri.authority = format!("{host}-shadow{port}").parse().ok();
        }
        let mut req = Request::new(b.body());
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = Uri::from_parts(uri).ok()?;
        *req.version_mut() = Version::HTTP_2;
        *req.headers_mut() = self.headers.clone();
        Some(req)
    }

    fn replayable(&self) -> bool {
        matches!(self.body, ReqBody::Buffered(_))
    }

    fn build(&mut self) -> Option<Request<Body>> {
        let body = match &mut self.body {
            ReqBody::Buffered(b) => b.body(),
            ReqBody::Stream(b) => b.take()?,
        };
        let mut req = Request::new(body);
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.version_mut() = Version::HTTP_2;
        *req.headers_mut() = self.headers.clone();
        Some(req)
    }

    /// Takes back a request that was never written.
    fn recover(&mut self, req: Request<Body>) {
        if let ReqBody::Stream(slot) = &mut self.body {
            *slot = Some(req.into_body());
        }
    }
}

fn on(policy: &RetryPolicy, token: &str) -> bool {
    policy.retry_on.iter().any(|t| t == token)
}

/// Is this upstream response one `retryOn` retries?
pub(crate) fn retriable_response(
    policy: &RetryPolicy,
    status: StatusCode,
    headers: &HeaderMap,
) -> bool {
    let code = status.as_u16();
    if (on(policy, "5xx") && code >= 500)
        || (on(policy, "gateway-error") && matches!(code, 502..=504))
        || (on(policy, "retriable-4xx") && code == 409)
        || (on(policy, "retriable-status-codes") && policy.retriable_status_codes.contains(&code))
    {
        return true;
    }
    let grpc = headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u8>().ok());
    let token = match grpc {
        Some(1) => "cancelled",
        Some(4) => "deadline-exceeded",
        Some(8) => "resource-exhausted",
        Some(13) => "internal",
        Some(14) => "unavailable",
        _ => return false,
    };
    on(policy, token)
}

/// Envoy's fully jittered exponential backoff before retry `n` (1-based).
pub(crate) fn backoff(policy: &RetryPolicy, n: u32) -> Duration {
    let base = policy.backoff_ms.max(1);
    let ceiling = base
        .saturating_mul((1u64 << n.clamp(1, 16)) - 1)
        .min(base.saturating_mul(10));
    Duration::from_millis(fastrand::u64(0..ceiling.max(1)))
}

fn pick(
    cluster: &RuntimeCluster,
    tried: &[String],
    avoid: bool,
    hash: Option<u64>,
) -> Option<Pick> {
    // With a hash key every try follows the ring (ejected endpoints are skipped): Istio's
    // consistent-hash retry policy keeps sessions on their endpoint.
    if hash.is_some() || tried.is_empty() {
        return cluster.lb.pick_for(hash);
    }
    let mut p = cluster.lb.pick()?;
    for _ in 0..4 {
        if !avoid || !tried.contains(&p.endpoint.address) {
            break;
        }
        p = cluster.lb.pick()?;
    }
    Some(p)
}

fn timeout() -> (Response<Body>, &'static str) {
    (
        local_response(StatusCode::GATEWAY_TIMEOUT, "upstream request timeout"),
        "UT",
    )
}

/// Sends a shadow copy to a mirror cluster in the background; its response is discarded
/// and its failures only logged (they never affect the real request).
pub(crate) fn mirror(
    shared: std::sync::Arc<Shared>,
    lb: std::sync::Arc<crate::lb::LbState>,
    name: String,
    req: Request<Body>,
) {
    tokio::spawn(async move {
        let Some(p) = lb.pick() else {
            debug!(mirror = %name, "no endpoint for the mirror");
            return;
        };
        let sent = async {
            let mut sender = shared
                .pool
                .get(&p.endpoint.address, &p.endpoint.identity)
                .await
                .map_err(|e| e.to_string())?;
            let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
            // Drain the body so the stream completes.
            let _ = resp.into_body().collect().await;
            Ok::<_, String>(())
        };
        if let Err(e) = tokio::time::timeout(Duration::from_secs(30), sent)
            .await
            .unwrap_or(Err("timed out".into()))
        {
            debug!(mirror = %name, error = %e, "mirrored request failed");
        }
    });
}

/// Sends `out` to `cluster`; returns the response (whose body holds the LB pick) and
/// Envoy's response flag.
pub(crate) async fn forward(
    shared: &Shared,
    cluster: &RuntimeCluster,
    mut out: Outgoing,
    policy: &RetryPolicy,
    deadline: Option<Instant>,
    hash: Option<u64>,
    labels: &mut RequestLabels,
) -> (Response<Body>, Option<Pick>, &'static str) {
    if cluster.lb.overflowing() {
        let msg = format!(
            "upstream overflow: {} is at its request limit",
            cluster.spec.name
        );
        return with_pick_none(local_response(StatusCode::SERVICE_UNAVAILABLE, &msg), "UO");
    }
    let tries = 1 + policy.attempts;
    let mut tried: Vec<String> = Vec::new();
    let mut last: Option<(Response<Body>, Pick, &'static str)> = None;
    for n in 1..=tries {
        if n > 1 {
            let wait = backoff(policy, n - 1);
            if deadline.is_some_and(|d| Instant::now().checked_add(wait).is_none_or(|t| t >= d)) {
                break;
            }
            tokio::time::sleep(wait).await;
        }
        let Some(p) = pick(
            cluster,
            &tried,
            policy.ignore_previous_hosts || policy.attempts == 0,
            hash,
        ) else {
            let msg = format!("no healthy upstream in {}", cluster.spec.name);
            return with_pick_none(local_response(StatusCode::SERVICE_UNAVAILABLE, &msg), "UH");
        };
        let addr = p.endpoint.address.clone();
        let identity = p.endpoint.identity.clone();
        tried.push(addr.clone());
        labels.destination_workload = p.endpoint.workload.clone();
        labels.destination_workload_namespace = cluster.spec.namespace.clone();
        labels.destination_principal = identity.clone();
        labels.destination_version = p
            .endpoint
            .version
            .clone()
            .unwrap_or_else(|| "unknown".into());
        // This try's deadline: the per-try timeout, inside the route's.
        let try_deadline = match (deadline, policy.per_try_timeout_ms) {
            (d, None) => d,
            (None, Some(t)) => Instant::now().checked_add(Duration::from_millis(t)),
            (Some(d), Some(t)) => Some(
                Instant::now()
                    .checked_add(Duration::from_millis(t))
                    .map_or(d, |t| d.min(t)),
            ),
        };
        let per_try_expired = |d: Option<Instant>| d.is_some() && d != deadline;
        let connected = match try_deadline {
            Some(d) => tokio::time::timeout_at(d, shared.pool.get(&addr, &identity))
                .await
                .ok(),
            None => Some(shared.pool.get(&addr, &identity).await),
        };
        let mut sender = match connected {
            None if per_try_expired(try_deadline)
                && (on(policy, "5xx") || on(policy, "gateway-error") || on(policy, "reset")) =>
            {
                cluster.lb.report(&p, Outcome::LocalFailure);
                last = Some((timeout().0, p, "UT"));
                continue;
            }
            None => {
                cluster.lb.report(&p, Outcome::LocalFailure);
                return with_pick(timeout(), p);
            }
            Some(Err(e)) => {
                warn!(cluster = %cluster.spec.name, error = %e, "upstream connect failed");
                shared.pool.evict(&addr, &identity);
                cluster.lb.report(&p, Outcome::LocalFailure);
                let msg = format!("upstream connect error: {e}");
                last = Some((
                    local_response(StatusCode::SERVICE_UNAVAILABLE, &msg),
                    p,
                    "UF",
                ));
                if ["connect-failure", "reset", "5xx", "gateway-error"]
                    .iter()
                    .any(|t| on(policy, t))
                {
                    continue;
                }
                break;
            }
            Some(Ok(s)) => s,
        };
        let Some(req) = out.build() else { break };
        let sent = sender.try_send_request(req);
        let result = match try_deadline {
            Some(d) => match tokio::time::timeout_at(d, sent).await {
                Ok(r) => r,
                Err(_)
                    if per_try_expired(try_deadline)
                        && out.replayable()
                        && (on(policy, "5xx")
                            || on(policy, "gateway-error")
                            || on(policy, "reset")) =>
                {
                    cluster.lb.report(&p, Outcome::LocalFailure);
                    last = Some((timeout().0, p, "UT"));
                    continue;
                }
                Err(_) => {
                    cluster.lb.report(&p, Outcome::LocalFailure);
                    return with_pick(timeout(), p);
                }
            },
            None => sent.await,
        };
        match result {
            Ok(resp) => {
                cluster
                    .lb
                    .report(&p, Outcome::Status(resp.status().as_u16()));
                let retry = n < tries
                    && out.replayable()
                    && retriable_response(policy, resp.status(), resp.headers());
                if retry {
                    debug!(status = %resp.status(), upstream = %addr, "retriable response; retrying");
                    last = Some((resp.map(|b| b.map_err(Into::into).boxed()), p, "URX"));
                    continue;
                }
                let flag = if retriable_response(policy, resp.status(), resp.headers())
                    && policy.attempts > 0
                    && n > 1
                {
                    "URX"
                } else {
                    "-"
                };
                return (resp.map(|b| b.map_err(Into::into).boxed()), Some(p), flag);
            }
            Err(mut e) => {
                shared.pool.evict(&addr, &identity);
                match e.take_message() {
                    // Never written: safe to send elsewhere whatever the method.
                    Some(unsent) => {
                        debug!(error = %e.error(), upstream = %addr, "connection was dead before the request was written; retrying");
                        out.recover(unsent);
                        let msg = format!("upstream connect error: {}", e.error());
                        last = Some((
                            local_response(StatusCode::SERVICE_UNAVAILABLE, &msg),
                            p,
                            "UF",
                        ));
                    }
                    None => {
                        cluster.lb.report(&p, Outcome::LocalFailure);
                        warn!(error = %e.error(), upstream = %cluster.spec.name, "upstream request failed");
                        let msg = format!("upstream reset: {}", e.error());
                        last = Some((
                            local_response(StatusCode::SERVICE_UNAVAILABLE, &msg),
                            p,
                            "UC",
                        ));
                        if !(out.replayable() && (on(policy, "reset") || on(policy, "5xx"))) {
                            break;
                        }
                    }
                }
            }
        }
    }
    match last {
        Some((resp, p, flag)) => (resp, Some(p), if flag == "-" { "URX" } else { flag }),
        None => with_pick_none(
            local_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "no upstream try was possible",
            ),
            "UF",
        ),
    }
}

fn with_pick(
    (resp, flag): (Response<Body>, &'static str),
    p: Pick,
) -> (Response<Body>, Option<Pick>, &'static str) {
    (resp, Some(p), flag)
}

fn with_pick_none(
    resp: Response<Body>,
    flag: &'static str,
) -> (Response<Body>, Option<Pick>, &'static str) {
    (resp, None, flag)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(on: &[&str], codes: &[u16]) -> RetryPolicy {
        RetryPolicy {
            attempts: 2,
            retry_on: on.iter().map(|s| s.to_string()).collect(),
            retriable_status_codes: codes.to_vec(),
            backoff_ms: 25,
            ..Default::default()
        }
    }

    #[test]
    fn retry_on_tokens() {
        let h = HeaderMap::new();
        let s = |c: u16| StatusCode::from_u16(c).unwrap();
        assert!(retriable_response(&policy(&["5xx"], &[]), s(500), &h));
        assert!(!retriable_response(
            &policy(&["gateway-error"], &[]),
            s(500),
            &h
        ));
        assert!(retriable_response(
            &policy(&["gateway-error"], &[]),
            s(503),
            &h
        ));
        assert!(retriable_response(
            &policy(&["retriable-4xx"], &[]),
            s(409),
            &h
        ));
        assert!(retriable_response(
            &policy(&["retriable-status-codes"], &[418]),
            s(418),
            &h
        ));
        assert!(
            !retriable_response(&policy(&["connect-failure"], &[]), s(503), &h),
            "Istio's default does not retry 503"
        );
        let mut grpc = HeaderMap::new();
        grpc.insert("grpc-status", "14".parse().unwrap());
        assert!(retriable_response(
            &policy(&["unavailable"], &[]),
            s(200),
            &grpc
        ));
        assert!(!retriable_response(
            &policy(&["cancelled"], &[]),
            s(200),
            &grpc
        ));
    }

    #[test]
    fn backoff_is_jittered_and_capped() {
        let p = policy(&[], &[]);
        for n in 1..20 {
            assert!(
                backoff(&p, n) < Duration::from_millis(250),
                "Envoy caps at 10x the base"
            );
        }
    }
}
