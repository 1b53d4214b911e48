//! CORS as Envoy's filter applies a VirtualService `corsPolicy`: the headers of an answered
//! preflight, and the headers added to actual responses for allowed origins.

use http::{HeaderMap, HeaderValue};

/// The headers of the answer to an allowed CORS preflight.
pub fn preflight_headers(c: &weft_model::Cors, origin: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let mut put = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    };
    put("access-control-allow-origin", origin.to_string());
    if !c.allow_methods.is_empty() {
        put("access-control-allow-methods", c.allow_methods.join(","));
    }
    if !c.allow_headers.is_empty() {
        put("access-control-allow-headers", c.allow_headers.join(","));
    }
    if let Some(age) = c.max_age_secs {
        put("access-control-max-age", age.to_string());
    }
    if c.allow_credentials {
        put("access-control-allow-credentials", "true".into());
    }
    headers
}

/// CORS headers on an actual (non-preflight) response to an allowed origin.
pub fn response_headers(c: &weft_model::Cors, origin: &str, headers: &mut HeaderMap) {
    if let Ok(v) = HeaderValue::from_str(origin) {
        headers.insert("access-control-allow-origin", v);
    }
    if c.allow_credentials {
        headers.insert(
            "access-control-allow-credentials",
            HeaderValue::from_static("true"),
        );
    }
    if !c.expose_headers.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&c.expose_headers.join(",")) {
            headers.insert("access-control-expose-headers", v);
        }
    }
}
