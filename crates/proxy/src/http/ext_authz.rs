//! External authorization for CUSTOM policies, as Envoy's HTTP `ext_authz` filter calls an
//! Istio `envoyExtAuthzHttp` provider: the check request carries the original method,
//! `pathPrefix` + the original path (query included), the original authority,
//! `authorization` and the headers the provider lists, with no body. `200` allows (the
//! listed response headers go to the upstream request and to the client); any other
//! status denies with the authorizer's status, headers and body; a failure (unreachable,
//! timeout, 5xx) fails open or answers `statusOnError`. The authorizer is a mesh service,
//! reached like any other over mTLS.

use crate::body::empty;
use crate::config::ActiveConfig;
use crate::reply::LocalReply;
use crate::state::ProxyState;
use crate::upstream::{Outgoing, Replay, Upstream};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::time::Duration;
use weft_model::{ExtAuthzProvider, RetryPolicy};

/// The most of a denial's body passed on to the client.
const MAX_DENY_BODY: usize = 64 * 1024;

/// The authorizer's answer.
pub enum Decision {
    Allow(Allowed),
    Deny(LocalReply),
}

/// What an allow changes.
#[derive(Default)]
pub struct Allowed {
    /// Set on the upstream request.
    pub upstream: Vec<(HeaderName, HeaderValue)>,
    /// Removed from the upstream request (`x-envoy-auth-headers-to-remove`).
    pub remove: Vec<HeaderName>,
    /// Added to the client's response.
    pub downstream: Vec<(HeaderName, HeaderValue)>,
}

impl Allowed {
    /// Applies the upstream changes to the request's headers.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for (k, v) in &self.upstream {
            headers.insert(k.clone(), v.clone());
        }
        for k in &self.remove {
            headers.remove(k);
        }
    }
}

/// Istio's header-name patterns: `x*` prefix, `*x` suffix, else exact; any case.
fn name_matches(pattern: &str, name: &str) -> bool {
    let p = pattern.to_ascii_lowercase();
    if let Some(prefix) = p.strip_suffix('*') {
        name.starts_with(prefix)
    } else if let Some(suffix) = p.strip_prefix('*') {
        name.ends_with(suffix)
    } else {
        name == p
    }
}

fn matching(headers: &HeaderMap, patterns: &[String]) -> Vec<(HeaderName, HeaderValue)> {
    headers
        .iter()
        .filter(|(k, _)| patterns.iter().any(|p| name_matches(p, k.as_str())))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The check request's headers.
fn check_headers(p: &ExtAuthzProvider, req: &Request<Incoming>) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in req.headers() {
        if k == http::header::HOST {
            continue; // the check's authority carries it
        }
        let always = k == http::header::AUTHORIZATION;
        if always
            || p.include_request_headers
                .iter()
                .any(|pat| name_matches(pat, k.as_str()))
        {
            h.append(k.clone(), v.clone());
        }
    }
    for (k, v) in &p.additional_headers {
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(k.as_str()), HeaderValue::try_from(v)) {
            h.insert(k, v);
        }
    }
    h.insert(http::header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    h
}

/// Asks `p` about `req`.
pub async fn check(
    state: &ProxyState,
    cfg: &ActiveConfig,
    p: &ExtAuthzProvider,
    req: &Request<Incoming>,
) -> Decision {
    let error = |why: String| {
        tracing::warn!(provider = %p.name, error = %why, fail_open = p.fail_open, "external authorizer failed");
        if p.fail_open {
            Decision::Allow(Allowed::default())
        } else {
            Decision::Deny(LocalReply::ExtAuthzError {
                status: StatusCode::from_u16(p.status_on_error).unwrap_or(StatusCode::FORBIDDEN),
                grpc: false,
            })
        }
    };
    let Some(cluster) = cfg.clusters.get(&p.cluster) else {
        return error(format!("no cluster {}", p.cluster));
    };
    let path = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let authority = super::ports::authority(req);
    let uri = match Uri::builder()
        .scheme("http")
        .authority(if authority.is_empty() {
            p.authority.as_str()
        } else {
            authority
        })
        .path_and_query(format!("{}{path}", p.path_prefix))
        .build()
    {
        Ok(u) => u,
        Err(e) => return error(format!("the check request's URI: {e}")),
    };
    let out = Outgoing {
        method: req.method().clone(),
        uri,
        headers: check_headers(p, req),
        body: Replay::new(empty(), 0, &state.replay_budget),
    };
    let policy = RetryPolicy::default();
    let up = Upstream {
        pool: &state.pool,
        cluster,
        policy: &policy,
        hash: None,
        timeout: Some(Duration::from_millis(p.timeout_ms)),
        client_h2: false,
    };
    let f = crate::upstream::forward(&up, &out, |_| {}).await;
    let resp = match f.result {
        Ok(r) => r,
        Err(e) => return error(e.into_failure().detail),
    };
    let status = resp.status();
    if status.is_server_error() {
        return error(format!("the authorizer answered {status}"));
    }
    let (parts, body) = resp.into_parts();
    if status == StatusCode::OK {
        let remove = parts
            .headers
            .get("x-envoy-auth-headers-to-remove")
            .and_then(|v| v.to_str().ok())
            .map(|list| {
                list.split(',')
                    .filter_map(|n| HeaderName::try_from(n.trim()).ok())
                    .collect()
            })
            .unwrap_or_default();
        return Decision::Allow(Allowed {
            upstream: matching(&parts.headers, &p.headers_to_upstream_on_allow),
            remove,
            downstream: matching(&parts.headers, &p.headers_to_downstream_on_allow),
        });
    }
    let body = read_capped(body, MAX_DENY_BODY).await;
    let mut headers = HeaderMap::new();
    for (k, v) in &parts.headers {
        let keep = if p.headers_to_downstream_on_deny.is_empty() {
            k != http::header::HOST
        } else {
            p.headers_to_downstream_on_deny
                .iter()
                .any(|pat| name_matches(pat, k.as_str()))
                || [http::header::WWW_AUTHENTICATE, http::header::LOCATION].contains(k)
        };
        if keep && k != http::header::CONTENT_LENGTH {
            headers.append(k.clone(), v.clone());
        }
    }
    super::headers::strip_hop_by_hop(&mut headers);
    Decision::Deny(LocalReply::ExtAuthzDenied {
        status,
        headers: Box::new(headers),
        body,
        grpc: false,
    })
}

/// The body, or nothing when it fails or is longer than `max`. (Read frame by frame: an
/// error conversion over boxed errors, as `Limited` does, trips the compiler's `Send`
/// proof of the pipeline future.)
async fn read_capped(mut body: crate::body::Body, max: usize) -> Bytes {
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Bytes::new();
        };
        if let Some(d) = frame.data_ref() {
            if buf.len() + d.len() > max {
                return Bytes::new();
            }
            buf.extend_from_slice(d);
        }
    }
    buf.freeze()
}
