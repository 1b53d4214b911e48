//! Sending one request to a cluster with Envoy's retry semantics as Istio configures them:
//! up to 1 + `attempts` tries, each on an endpoint not tried yet (unless the cluster
//! hashes), jittered exponential backoff (25 ms base, 10x cap), a per-try timeout inside
//! the route timeout (both start when the downstream request has ended, as Envoy's do),
//! and typed outcomes deciding what is retried. A try that never left is always safe to
//! send elsewhere; a sent one is replayed only when its whole body was kept.

use super::lb::{Ejection, Outcome, Pick};
use super::outcome::{response_retriable, Timer, TryError};
use super::pool::PeerPool;
use super::replay::Replay;
use super::LiveCluster;
use crate::body::Body;
use crate::telemetry::{ClusterStats, ResponseFlags};
use http::{HeaderMap, Method, Request, Response, Uri, Version};
use http_body_util::BodyExt;
use std::time::Duration;
use tokio::time::Instant;
use tracing::debug;
use weft_model::RetryPolicy;

/// The request being sent: everything but the body is the same for every try.
pub struct Outgoing {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Replay,
}

impl Outgoing {
    fn request(&self) -> Request<Body> {
        let mut req = Request::new(self.body.body().boxed());
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.version_mut() = Version::HTTP_2;
        *req.headers_mut() = self.headers.clone();
        req
    }

    /// The request as HTTP/1.1 to a server outside the mesh: origin-form URI, `Host` from
    /// the authority, no mesh metadata.
    fn request_h1(&self) -> Request<Body> {
        let mut req = Request::new(self.body.body().boxed());
        *req.method_mut() = self.method.clone();
        let path = self.uri.path_and_query().map_or("/", |p| p.as_str());
        *req.uri_mut() = Uri::try_from(path).unwrap_or_else(|_| Uri::from_static("/"));
        *req.version_mut() = Version::HTTP_11;
        let mut headers = self.headers.clone();
        headers.remove(crate::telemetry::PEER_HEADER);
        if let Some(a) = self.uri.authority() {
            if let Ok(v) = http::HeaderValue::from_str(a.as_str()) {
                headers.insert(http::header::HOST, v);
            }
        }
        *req.headers_mut() = headers;
        req
    }
}

/// Where and how to send.
pub struct Upstream<'a> {
    pub pool: &'a PeerPool,
    pub cluster: &'a LiveCluster,
    pub policy: &'a RetryPolicy,
    pub hash: Option<u64>,
    pub timeout: Option<Duration>,
    /// The client spoke HTTP/2 (for `useClientProtocol`).
    pub client_h2: bool,
}

/// The response (or why there is none), the endpoint it came from and the flags.
pub struct Forwarded {
    pub result: Result<Response<Body>, TryError>,
    /// Holds the endpoint's active-request count until the response body is done.
    pub pick: Option<Pick>,
    pub flags: ResponseFlags,
}

/// Envoy's fully jittered exponential backoff before retry `n` (1-based).
pub fn backoff(policy: &RetryPolicy, n: u32) -> Duration {
    let base = policy.backoff_ms.max(1);
    let ceiling = base
        .saturating_mul((1u64 << n.clamp(1, 16)) - 1)
        .min(base.saturating_mul(10));
    Duration::from_millis(fastrand::u64(0..ceiling.max(1)))
}

/// Resolves when `d` has passed since the request body ended (never, without `d`).
async fn expiry(body: &Replay, d: Option<Duration>, not_before: Option<Instant>) {
    let Some(d) = d else {
        return std::future::pending().await;
    };
    body.ended().await;
    let from = body.ended_at().unwrap_or_else(Instant::now);
    let from = not_before.map_or(from, |t| t.max(from));
    match from.checked_add(d) {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Sends `out` to the cluster; `on_pick` sees each endpoint picked (for telemetry).
pub async fn forward(up: &Upstream<'_>, out: &Outgoing, on_pick: impl FnMut(&Pick)) -> Forwarded {
    let f = tries(up, out, on_pick).await;
    if f.flags
        .contains(ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED)
    {
        ClusterStats::inc(&up.cluster.labels.stats.rq_retry_limit_exceeded);
    }
    f
}

/// Envoy's outlier-detection counters for what `report` did.
fn count_ejection(stats: &ClusterStats, e: Ejection) {
    match e {
        Ejection::None => {}
        Ejection::Enforced => ClusterStats::inc(&stats.ejections_enforced),
        Ejection::Overflow => ClusterStats::inc(&stats.ejections_overflow),
    }
}

async fn tries(up: &Upstream<'_>, out: &Outgoing, mut on_pick: impl FnMut(&Pick)) -> Forwarded {
    let cluster = up.cluster;
    let stats = &cluster.labels.stats;
    let fail = |e: TryError, pick| Forwarded {
        flags: e.flags(),
        result: Err(e),
        pick,
    };
    if cluster.lb.overflowing() {
        ClusterStats::inc(&stats.rq_pending_overflow);
        let name = cluster.spec.name.clone();
        let limit = "request limit (http2MaxRequests)";
        return fail(
            TryError::Overflow {
                cluster: name,
                limit,
            },
            None,
        );
    }
    let route_timer = expiry(&out.body, up.timeout, None);
    tokio::pin!(route_timer);
    let tries = 1 + up.policy.attempts;
    let mut tried: Vec<usize> = Vec::new();
    let mut last: Option<Forwarded> = None;
    for n in 1..=tries {
        if n > 1 {
            // Envoy's retry circuit breaker: a retry holds a place while it is scheduled.
            let Some(_retry) = cluster.lb.limits.retry() else {
                ClusterStats::inc(&stats.rq_retry_overflow);
                let mut f = last.unwrap_or_else(|| {
                    let cluster = cluster.spec.name.clone();
                    let limit = "retry limit (maxRetries)";
                    fail(TryError::Overflow { cluster, limit }, None)
                });
                f.flags |= ResponseFlags::UPSTREAM_OVERFLOW;
                return f;
            };
            tokio::select! {
                biased;
                _ = tokio::time::sleep(backoff(up.policy, n - 1)) => {}
                _ = &mut route_timer => return timed_out(last),
            }
        }
        let Some(mut pick) = pick(up, &tried) else {
            let name = cluster.spec.name.clone();
            return fail(TryError::NoHealthyUpstream { cluster: name }, None);
        };
        let admitted = tokio::select! {
            biased;
            a = super::admit::admit(up, &pick) => a,
            _ = &mut route_timer => Err(TryError::Timeout(Timer::Route)),
        };
        let pending = match admitted {
            Ok((slot, pending)) => {
                pick.slot = slot;
                pending
            }
            Err(e) => return fail(e, None),
        };
        tried.push(pick.index);
        on_pick(&pick);
        ClusterStats::inc(&stats.rq_total);
        if n > 1 {
            ClusterStats::inc(&stats.rq_retry);
        }
        // `biased`: no random branch order (it costs an RNG call per request).
        let result = tokio::select! {
            biased;
            r = try_once(up, &pick, out, pending) => r,
            _ = &mut route_timer => Err(TryError::Timeout(Timer::Route)),
        };
        let more = n < tries;
        match result {
            Ok(resp) => {
                let e = cluster
                    .lb
                    .report(&pick, Outcome::Status(resp.status().as_u16()));
                count_ejection(stats, e);
                let retriable = response_retriable(up.policy, resp.status(), resp.headers());
                if more && retriable && out.body.replayable() {
                    debug!(status = %resp.status(), upstream = %pick.endpoint.address, "retriable response; retrying");
                    last = Some(Forwarded {
                        result: Ok(resp),
                        pick: Some(pick),
                        flags: ResponseFlags::NONE,
                    });
                    continue;
                }
                // URX: a retriable answer, and the retries are used up.
                let flags = if retriable && !more && up.policy.attempts > 0 {
                    ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED
                } else {
                    ResponseFlags::NONE
                };
                return Forwarded {
                    result: Ok(resp),
                    pick: Some(pick),
                    flags,
                };
            }
            Err(e) => {
                if e.counts_against_endpoint() {
                    count_ejection(stats, cluster.lb.report(&pick, Outcome::LocalFailure));
                }
                if matches!(
                    e,
                    TryError::Connect { .. }
                        | TryError::Unsent { .. }
                        | TryError::ConnectionTerminated { .. }
                ) {
                    up.pool
                        .evict(&pick.endpoint.address, pick.endpoint.tls_identity());
                }
                let replay_ok = !e.sent() || out.body.replayable();
                let retriable = replay_ok && e.retry_allowed(up.policy.retry_on);
                let retry = more && retriable;
                debug!(error = ?e, upstream = %pick.endpoint.address, retry, "upstream try failed");
                let mut f = fail(e, Some(pick));
                if retriable && !more && up.policy.attempts > 0 {
                    // Envoy's URX: the failure was retriable, the retries are used up.
                    f.flags |= ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED;
                }
                if !retry {
                    return f;
                }
                last = Some(f);
            }
        }
    }
    let mut f = last.unwrap_or_else(|| {
        fail(
            TryError::Connect {
                detail: "no upstream try was possible".into(),
            },
            None,
        )
    });
    f.flags |= ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED;
    f
}

/// The route timer fired between tries.
fn timed_out(last: Option<Forwarded>) -> Forwarded {
    let e = TryError::Timeout(Timer::Route);
    Forwarded {
        flags: e.flags(),
        result: Err(e),
        pick: last.and_then(|l| l.pick),
    }
}

fn pick(up: &Upstream<'_>, tried: &[usize]) -> Option<Pick> {
    let lb = &up.cluster.lb;
    // With a hash key every try follows the ring (ejected endpoints are skipped): Istio's
    // consistent-hash retry policy keeps sessions on their endpoint.
    if up.hash.is_some() || tried.is_empty() {
        return lb.pick_for(up.hash);
    }
    let avoid = up.policy.ignore_previous_hosts || up.policy.attempts == 0;
    let mut p = lb.pick()?;
    // Istio's `host_selection_retry_max_attempts: 5`.
    for _ in 0..5 {
        if !avoid || !tried.contains(&p.index) {
            break;
        }
        p = lb.pick()?;
    }
    Some(p)
}

/// One try on one endpoint, bounded by the per-try timeout.
/// `pending` (the request's pending place while it waits for its connection) is given
/// back once the connection is there.
async fn try_once(
    up: &Upstream<'_>,
    pick: &Pick,
    out: &Outgoing,
    pending: Option<super::limits::Held>,
) -> Result<Response<Body>, TryError> {
    let started = Instant::now();
    let direct = up.cluster.egress.as_ref().map(|egress| {
        let authority = out.uri.authority().map(http::uri::Authority::as_str);
        (egress, egress.target(&pick.endpoint, authority))
    });
    let send = async {
        let e = &pick.endpoint;
        if let Some((egress, addr)) = direct {
            drop(pending);
            let req = match egress.http2() {
                true => {
                    let mut r = out.request();
                    r.headers_mut().remove(crate::telemetry::PEER_HEADER);
                    r
                }
                false => out.request_h1(),
            };
            return egress.send(&addr, req).await;
        }
        let mut sender = up
            .pool
            .get_named(
                &e.address,
                e.tls_identity(),
                e.sni.as_deref(),
                &up.cluster.opts,
            )
            .await
            .map_err(|err| TryError::Connect {
                detail: err.to_string(),
            })?;
        drop(pending);
        sender
            .try_send_request(out.request())
            .await
            .map(|r| r.map(crate::body::incoming))
            .map_err(|mut err| {
                let written = err.take_message().is_none();
                TryError::from_send(err.error(), written)
            })
    };
    tokio::select! {
        biased;
        r = send => r,
        _ = expiry(&out.body, up.policy.per_try_timeout_ms.map(Duration::from_millis), Some(started)) => {
            Err(TryError::Timeout(Timer::PerTry))
        }
    }
}
