//! Local replies: every response the proxy makes itself (no route, redirects, direct
//! responses, CORS preflights, fault aborts, bad requests, upstream failures). Each kind
//! knows its status and Envoy response flags; this is the one place that renders them.

use crate::body::{empty, full, Body};
use crate::telemetry::ResponseFlags;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};

/// A response the proxy answers itself.
#[derive(Debug)]
pub enum LocalReply {
    /// No virtual host or route matches (404, `NR`).
    NoRoute { detail: String },
    /// The route has no destination with weight (503, `NR`).
    NoDestination { route: String },
    /// A VirtualService redirect.
    Redirect {
        status: StatusCode,
        location: String,
    },
    /// A VirtualService directResponse.
    Direct { status: StatusCode, body: Bytes },
    /// An allowed CORS preflight, answered.
    CorsPreflight { headers: HeaderMap },
    /// A preflight from an origin the policy does not allow, with `unmatchedPreflights: IGNORE`.
    CorsIgnored,
    /// A fault abort with an HTTP status (`FI`).
    FaultAbort { status: StatusCode },
    /// A fault abort with a gRPC status (`FI`).
    FaultAbortGrpc { code: u8 },
    /// The request breaks HTTP rules (400, `DPE`).
    BadRequest { detail: String },
    /// The path cannot be normalized (400) or is not origin-form (404), as Envoy answers (`DPE`).
    InvalidPath { status: StatusCode, detail: String },
    /// The request's header block is over the limit (431, `DPE`).
    HeadersTooLarge { limit: usize },
    /// Sending upstream failed (`UH`, `UF`, `UO`, `UT`, `UC`, `UR`, …).
    Upstream(UpstreamFailure),
    /// An AuthorizationPolicy denied the request (403 `RBAC: access denied`; a gRPC
    /// request gets `grpc-status: 7`, PERMISSION_DENIED, as Envoy maps 403).
    Denied { grpc: bool },
    /// A plaintext request to a port whose PeerAuthentication is STRICT (403).
    PlaintextRefused { port: u32 },
    /// An external authorizer (CUSTOM policy) denied: its status, headers and body (`UAEX`).
    /// A gRPC request (`grpc`) gets HTTP 200 with the status mapped to a `grpc-status` and
    /// the body as `grpc-message`, as Envoy turns local replies to gRPC callers.
    ExtAuthzDenied {
        status: StatusCode,
        headers: Box<HeaderMap>,
        body: Bytes,
        grpc: bool,
    },
    /// The external authorizer failed and the provider does not fail open: its
    /// `statusOnError` with no body (`UAEX`); mapped for gRPC requests as above.
    ExtAuthzError { status: StatusCode, grpc: bool },
    /// RequestAuthentication refused the request's token, as Envoy's `jwt_authn` answers:
    /// 401 (403 for a wrong audience), the reason as the body, a `www-authenticate: Bearer`
    /// challenge naming the request's URL; gRPC requests get UNAUTHENTICATED (16) or
    /// PERMISSION_DENIED (7).
    JwtRejected {
        status: StatusCode,
        reason: &'static str,
        realm: String,
        grpc: bool,
    },
}

/// The body of an authorization denial (Envoy's RBAC filter's).
pub const RBAC_DENIED: &str = "RBAC: access denied";

/// Why the upstream side could not produce a response.
#[derive(Debug)]
pub struct UpstreamFailure {
    pub status: StatusCode,
    pub flags: ResponseFlags,
    /// In words, for the body of the reply and the logs.
    pub detail: String,
}

impl LocalReply {
    /// Envoy's response flags for this reply.
    pub fn flags(&self) -> ResponseFlags {
        match self {
            LocalReply::NoRoute { .. } | LocalReply::NoDestination { .. } => {
                ResponseFlags::NO_ROUTE_FOUND
            }
            LocalReply::FaultAbort { .. } | LocalReply::FaultAbortGrpc { .. } => {
                ResponseFlags::FAULT_INJECTED
            }
            LocalReply::BadRequest { .. }
            | LocalReply::InvalidPath { .. }
            | LocalReply::HeadersTooLarge { .. } => ResponseFlags::DOWNSTREAM_PROTOCOL_ERROR,
            LocalReply::Upstream(f) => f.flags,
            LocalReply::ExtAuthzDenied { .. } | LocalReply::ExtAuthzError { .. } => {
                ResponseFlags::UNAUTHORIZED_EXTERNAL_SERVICE
            }
            LocalReply::Redirect { .. }
            | LocalReply::Direct { .. }
            | LocalReply::CorsPreflight { .. }
            | LocalReply::CorsIgnored
            // Envoy's JWT filter sets no response flag either.
            | LocalReply::JwtRejected { .. }
            // Envoy has no response flag for an RBAC denial (its details say
            // `rbac_access_denied_matched_policy[…]`): `-`, as Istio's metrics show it.
            | LocalReply::Denied { .. }
            | LocalReply::PlaintextRefused { .. } => ResponseFlags::NONE,
        }
    }

    /// Envoy's `%RESPONSE_CODE_DETAILS%` for this reply.
    pub fn details(&self) -> &'static str {
        use ResponseFlags as F;
        match self {
            LocalReply::NoRoute { .. } => "route_not_found",
            LocalReply::NoDestination { .. } => "cluster_not_found",
            LocalReply::Redirect { .. } | LocalReply::Direct { .. } => "direct_response",
            LocalReply::CorsPreflight { .. } | LocalReply::CorsIgnored => "cors_response",
            LocalReply::FaultAbort { .. } | LocalReply::FaultAbortGrpc { .. } => {
                "fault_filter_abort"
            }
            LocalReply::BadRequest { .. } | LocalReply::InvalidPath { .. } => {
                "downstream_protocol_error"
            }
            LocalReply::HeadersTooLarge { .. } => "request_headers_too_large",
            LocalReply::Denied { .. } => "rbac_access_denied_matched_policy[none]",
            LocalReply::PlaintextRefused { .. } => "plaintext_refused_by_strict_mtls",
            LocalReply::ExtAuthzDenied { .. } => "ext_authz_denied",
            LocalReply::ExtAuthzError { .. } => "ext_authz_error",
            LocalReply::JwtRejected { .. } => "jwt_authn_access_denied",
            LocalReply::Upstream(f) => {
                let pairs = [
                    (
                        F::UPSTREAM_OVERFLOW,
                        "upstream_reset_before_response_started{overflow}",
                    ),
                    (F::NO_HEALTHY_UPSTREAM, "no_healthy_upstream"),
                    (F::UPSTREAM_REQUEST_TIMEOUT, "response_timeout"),
                    (
                        F::UPSTREAM_CONNECTION_FAILURE,
                        "upstream_reset_before_response_started{connection_failure}",
                    ),
                    (
                        F::UPSTREAM_CONNECTION_TERMINATION,
                        "upstream_reset_before_response_started{connection_termination}",
                    ),
                    (
                        F::UPSTREAM_REMOTE_RESET,
                        "upstream_reset_before_response_started{remote_reset}",
                    ),
                    (F::STREAM_IDLE_TIMEOUT, "stream_idle_timeout"),
                ];
                pairs
                    .iter()
                    .find(|(fl, _)| f.flags.contains(*fl))
                    .map_or("upstream_reset_before_response_started", |(_, d)| d)
            }
        }
    }

    /// The response to send.
    pub fn into_response(self) -> Response<Body> {
        match self {
            LocalReply::NoRoute { detail } => text(StatusCode::NOT_FOUND, &detail),
            LocalReply::NoDestination { route } => text(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("route {route} has no destination with weight"),
            ),
            LocalReply::Redirect { status, location } => {
                let mut resp = Response::new(empty());
                *resp.status_mut() = status;
                match HeaderValue::from_str(&location) {
                    Ok(v) => {
                        resp.headers_mut().insert(header::LOCATION, v);
                        resp
                    }
                    Err(_) => text(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        &format!("redirect location {location:?} is not a valid header value"),
                    ),
                }
            }
            LocalReply::Direct { status, body } => {
                let mut resp = Response::new(full(body));
                *resp.status_mut() = status;
                resp
            }
            LocalReply::CorsPreflight { headers } => {
                let mut resp = Response::new(empty());
                *resp.headers_mut() = headers;
                resp
            }
            LocalReply::CorsIgnored => Response::new(empty()),
            LocalReply::FaultAbort { status } => text(status, "fault filter abort"),
            LocalReply::FaultAbortGrpc { code } => grpc_code_reply(u16::from(code), "fault filter abort"),
            LocalReply::BadRequest { detail } => text(StatusCode::BAD_REQUEST, &detail),
            LocalReply::InvalidPath { status, detail } => text(status, &detail),
            LocalReply::HeadersTooLarge { limit } => text(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                &format!("request headers are larger than this proxy's limit of {limit} bytes"),
            ),
            LocalReply::Upstream(f) => text(f.status, &f.detail),
            LocalReply::ExtAuthzDenied {
                status,
                headers,
                body,
                grpc: false,
            } => {
                let mut resp = Response::new(full(body));
                *resp.status_mut() = status;
                *resp.headers_mut() = *headers;
                resp
            }
            LocalReply::ExtAuthzDenied {
                status,
                headers,
                body,
                grpc: true,
            } => {
                let mut resp = grpc_reply(status, &String::from_utf8_lossy(&body));
                for (k, v) in headers.iter() {
                    if k != header::CONTENT_TYPE {
                        resp.headers_mut().append(k.clone(), v.clone());
                    }
                }
                resp
            }
            LocalReply::ExtAuthzError { status, grpc: true } => grpc_reply(status, ""),
            LocalReply::PlaintextRefused { port } => text(
                StatusCode::FORBIDDEN,
                &format!("port {port} requires mutual TLS (PeerAuthentication STRICT); plaintext requests are refused"),
            ),
            LocalReply::ExtAuthzError {
                status,
                grpc: false,
            } => {
                let mut resp = Response::new(empty());
                *resp.status_mut() = status;
                resp
            }
            LocalReply::JwtRejected {
                status,
                reason,
                realm,
                grpc,
            } => jwt_rejected(status, reason, &realm, grpc),
            LocalReply::Denied { grpc: false } => {
                let mut resp = Response::new(full(RBAC_DENIED));
                *resp.status_mut() = StatusCode::FORBIDDEN;
                resp.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
                resp
            }
            LocalReply::Denied { grpc: true } => grpc_reply(StatusCode::FORBIDDEN, RBAC_DENIED),
        }
    }
}

/// Envoy's `Grpc::Utility::httpToGrpcStatus`.
fn grpc_status_of(status: StatusCode) -> u16 {
    match status.as_u16() {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502 | 503 | 504 => 14,
        _ => 2,
    }
}

/// A local reply to a gRPC caller: HTTP 200, `grpc-status` mapped from `status`, the
/// message (when it is a valid header value).
fn grpc_reply(status: StatusCode, message: &str) -> Response<Body> {
    grpc_code_reply(grpc_status_of(status), message)
}

/// A trailers-only gRPC answer: HTTP 200, `grpc-status: code`, the message if any.
fn grpc_code_reply(code: u16, message: &str) -> Response<Body> {
    let mut resp = Response::new(empty());
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert("grpc-status", HeaderValue::from(code));
    if let Ok(v) = HeaderValue::from_str(message.trim()) {
        if !v.is_empty() {
            h.insert("grpc-message", v);
        }
    }
    resp
}

impl LocalReply {
    /// Marks an external authorizer's answer as one to a gRPC caller.
    pub fn for_grpc(mut self, is_grpc: bool) -> LocalReply {
        if let LocalReply::ExtAuthzDenied { grpc, .. } | LocalReply::ExtAuthzError { grpc, .. } =
            &mut self
        {
            *grpc = is_grpc;
        }
        self
    }
}

fn jwt_rejected(
    status: StatusCode,
    reason: &'static str,
    realm: &str,
    grpc: bool,
) -> Response<Body> {
    let mut resp = if grpc {
        // 401 -> UNAUTHENTICATED (16), 403 -> PERMISSION_DENIED (7).
        grpc_reply(status, reason)
    } else {
        let mut resp = Response::new(full(reason));
        *resp.status_mut() = status;
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        resp
    };
    let challenge = format!("Bearer realm=\"{realm}\", error=\"invalid_token\"");
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    resp
}

/// A plain-text reply (Envoy-style: the reason in the body).
pub fn text(status: StatusCode, msg: &str) -> Response<Body> {
    let mut resp = Response::new(full(format!("{msg}\n")));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    h.insert(header::SERVER, HeaderValue::from_static("weft"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reply_has_its_status_and_flags() {
        let r = LocalReply::NoRoute {
            detail: "no route".into(),
        };
        assert_eq!(r.flags().render(), "NR");
        assert_eq!(r.into_response().status(), 404);
        let r = LocalReply::FaultAbortGrpc { code: 14 };
        assert_eq!(r.flags().render(), "FI");
        let resp = r.into_response();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["grpc-status"], "14");
        let r = LocalReply::HeadersTooLarge { limit: 61440 };
        assert_eq!(r.flags().render(), "DPE");
        assert_eq!(r.into_response().status(), 431);
        let r = LocalReply::Redirect {
            status: StatusCode::MOVED_PERMANENTLY,
            location: "http://x/\n".into(),
        };
        assert_eq!(
            r.into_response().status(),
            500,
            "an unencodable location is an error, not a panic"
        );
    }

    #[test]
    fn an_external_authorizers_answer_to_a_grpc_caller_is_a_grpc_status() {
        let mut h = HeaderMap::new();
        h.insert("x-why", HeaderValue::from_static("quota"));
        let denied = LocalReply::ExtAuthzDenied {
            status: StatusCode::FORBIDDEN,
            headers: Box::new(h),
            body: Bytes::from_static(b"not you"),
            grpc: false,
        };
        let resp = denied.for_grpc(true).into_response();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["content-type"], "application/grpc");
        assert_eq!(resp.headers()["grpc-status"], "7");
        assert_eq!(resp.headers()["grpc-message"], "not you");
        assert_eq!(resp.headers()["x-why"], "quota");
        let failed = LocalReply::ExtAuthzError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            grpc: false,
        };
        assert_eq!(
            failed.for_grpc(true).into_response().headers()["grpc-status"],
            "14"
        );
        let plain = LocalReply::ExtAuthzError {
            status: StatusCode::UNAUTHORIZED,
            grpc: false,
        };
        let resp = plain.for_grpc(false).into_response();
        assert_eq!(
            resp.status(),
            StatusCode::UNAUTHORIZED,
            "HTTP callers keep the status"
        );
        assert!(resp.headers().get("grpc-status").is_none());
    }
}
