//! Headers the proxy itself owns on the request path: hop-by-hop stripping, the request
//! id, `x-forwarded-client-cert` toward the app, and the header-size limit. (The
//! peer-metadata header is telemetry's: `telemetry::peer`.)

use http::{header, HeaderMap, HeaderValue};

/// Hop-by-hop headers never forwarded (and forbidden in HTTP/2).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
];

/// Envoy's default `max_request_headers_kb` (60 KiB), counted as HPACK does (name + value
/// + 32 bytes per header).
pub const MAX_REQUEST_HEADERS_BYTES: usize = 60 * 1024;

/// The size of a header block as HTTP/2 accounts for it.
pub fn header_block_size(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 32)
        .sum()
}

/// Removes hop-by-hop headers, including those named in `Connection` (RFC 9110 7.6.1);
/// keeps `te: trailers`, the one TE value HTTP/2 allows (gRPC needs it).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<String> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_ascii_lowercase())
            .filter(|t| !t.is_empty())
            .collect();
        for name in named {
            headers.remove(name.as_str());
        }
    }
    let trailers = headers
        .get(header::TE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
        });
    for h in HOP_BY_HOP {
        headers.remove(*h);
    }
    if trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// Adds `x-request-id` when the request has none (Envoy generates a UUID-like id).
pub fn ensure_request_id(headers: &mut HeaderMap) {
    if headers.contains_key("x-request-id") {
        return;
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = [0u8; 32];
    let (a, b) = (fastrand::u64(..), fastrand::u64(..));
    for (i, byte) in id.iter_mut().enumerate() {
        let word = if i < 16 { a } else { b };
        *byte = HEX[((word >> ((i % 16) * 4)) & 0xf) as usize];
    }
    if let Ok(mut v) = HeaderValue::from_bytes(&id) {
        // Unique per request: HPACK must not put it in the dynamic table (it would only
        // evict the entries that do repeat).
        v.set_sensitive(true);
        headers.insert("x-request-id", v);
    }
}

/// gRPC requests are labelled `request_protocol="grpc"`, as Istio does.
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// `x-forwarded-client-cert` as Istio's inbound sets it.
pub fn xfcc(own_id: &str, peer_id: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("By={own_id};URI={peer_id}"))
        .unwrap_or(HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go_including_those_named_in_connection() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "close, X-Internal"),
            ("x-internal", "secret"),
            ("keep-alive", "timeout=5"),
            ("te", "gzip, trailers"),
            ("x-kept", "1"),
        ] {
            h.insert(k, v.parse().unwrap());
        }
        strip_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(left, ["te", "x-kept"]);
        assert_eq!(
            h["te"], "trailers",
            "only `te: trailers` survives (HTTP/2 allows nothing else)"
        );
    }

    #[test]
    fn request_ids_are_generated_once() {
        let mut h = HeaderMap::new();
        ensure_request_id(&mut h);
        let id = h["x-request-id"].clone();
        assert_eq!(id.len(), 32);
        ensure_request_id(&mut h);
        assert_eq!(h["x-request-id"], id, "an existing id is kept");
    }
}
