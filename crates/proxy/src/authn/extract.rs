//! Where tokens are found, as Envoy's JWT extractor looks: every distinct location of every
//! rule (headers first, then query parameters, then cookies, each in name order), each
//! knowing which issuers declared it. A header with a prefix yields the token that follows
//! the prefix (found anywhere in the value, the token starting at its first base64url
//! character); a query parameter its first value, percent-decoded; a cookie its value.
//! Removing a token (when it is not forwarded) drops its header or query parameter; a
//! cookie is left as Envoy leaves it.

use http::HeaderMap;
use std::collections::BTreeMap;
use weft_model::TokenLocation;

/// A location and the rules (indices) that look there.
#[derive(Debug, Clone)]
pub struct Location {
    pub at: TokenLocation,
    pub rules: Vec<usize>,
}

/// Every rule's locations, merged and in Envoy's order.
pub fn locations(rules: &[weft_model::JwtProvider]) -> Vec<Location> {
    let mut by: BTreeMap<(u8, String, String), Location> = BTreeMap::new();
    for (i, r) in rules.iter().enumerate() {
        for loc in &r.locations {
            let key = match loc {
                TokenLocation::Header { name, prefix } => (0, name.clone(), prefix.clone()),
                TokenLocation::Param(p) => (1, p.clone(), String::new()),
                TokenLocation::Cookie(c) => (2, c.clone(), String::new()),
            };
            let entry = by.entry(key).or_insert_with(|| Location {
                at: loc.clone(),
                rules: Vec::new(),
            });
            if !entry.rules.contains(&i) {
                entry.rules.push(i);
            }
        }
    }
    by.into_values().collect()
}

/// A token found on a request, and where.
#[derive(Debug, Clone)]
pub struct Found {
    pub token: String,
    /// Index into the [`locations`] list.
    pub location: usize,
}

const TOKEN_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.";

/// Every token on the request, in Envoy's order.
pub fn find(locations: &[Location], headers: &HeaderMap, path_and_query: &str) -> Vec<Found> {
    let mut out = Vec::new();
    let query = path_and_query.split_once('?').map(|(_, q)| q);
    for (i, loc) in locations.iter().enumerate() {
        match &loc.at {
            TokenLocation::Header { name, prefix } => {
                for v in headers.get_all(name.as_str()) {
                    let Ok(v) = v.to_str() else { continue };
                    let token = if prefix.is_empty() {
                        v
                    } else {
                        let Some(pos) = v.find(prefix.as_str()) else {
                            continue;
                        };
                        let after = &v[pos + prefix.len()..];
                        match after.bytes().position(|b| TOKEN_CHARS.contains(&b)) {
                            Some(start) => &after[start..],
                            None => v,
                        }
                    };
                    out.push(Found {
                        token: token.to_string(),
                        location: i,
                    });
                }
            }
            TokenLocation::Param(p) => {
                if let Some(v) = query.and_then(|q| param(q, p)) {
                    out.push(Found {
                        token: v,
                        location: i,
                    });
                }
            }
            TokenLocation::Cookie(c) => {
                if let Some(v) = cookie(headers, c) {
                    out.push(Found {
                        token: v,
                        location: i,
                    });
                }
            }
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The first value of query parameter `name`.
fn param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

/// The value of cookie `name` (the first one sent).
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k.trim() == name).then(|| v.trim().trim_matches('"').to_string())
        })
}

/// Takes a verified token off the request: its header, or its query parameter (the
/// returned path replaces the request's). Cookies stay.
pub fn remove(
    loc: &TokenLocation,
    headers: &mut HeaderMap,
    path_and_query: &str,
) -> Option<String> {
    match loc {
        TokenLocation::Header { name, .. } => {
            headers.remove(name.as_str());
            None
        }
        TokenLocation::Param(p) => {
            let (path, query) = path_and_query.split_once('?')?;
            let kept: Vec<&str> = query
                .split('&')
                .filter(|kv| percent_decode(kv.split_once('=').map_or(*kv, |(k, _)| k)) != *p)
                .collect();
            Some(if kept.is_empty() {
                path.to_string()
            } else {
                format!("{path}?{}", kept.join("&"))
            })
        }
        TokenLocation::Cookie(_) => None,
    }
}
