//! Request authentication (RequestAuthentication, Envoy's `jwt_authn` as Istio configures
//! it): the JWT rules of this workload, compiled once per config (keys, merged token
//! locations, output header names), and the per-request check. Headers the rules output are
//! first removed from what the client sent (no one can forge them); a CORS preflight skips
//! the check; a request without a token passes with no identity (authorization decides);
//! every token found must be valid — parsed, its `iss` one that a rule looking in that
//! location names, within `nbf`/`exp` (60 s skew), of an allowed audience, signed by one of
//! the rule's keys — or the request is refused (401, or 403 for the audience) with Envoy's
//! reason. A valid token's payload and claims go to the headers its rule names, the token
//! is removed unless `forwardOriginalToken`, and the first token's issuer, subject and
//! claims become the request's JWT identity for authorization and routing.
//!
//! Known difference from Envoy: Istio's requirement tree lets a request through when one
//! rule's token verifies even if another location carries an invalid token, and with
//! several tokens only the first checked decides under `allow_missing`; weft refuses a
//! request that carries any invalid token.

pub mod claims;
mod extract;
mod keys;
#[cfg(test)]
mod tests;
pub mod token;

use extract::Location;
use http::{HeaderName, HeaderValue, Request, Uri};
use keys::KeySet;
use serde_json::Value;
use std::time::{SystemTime, UNIX_EPOCH};
use token::Jwt;
pub use token::Status;
use weft_model::{Authn, JwtProvider};

/// The validated token of a request: who issued it, about whom, and its claims
/// (space-delimited claims already split into lists).
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub issuer: String,
    /// `sub`, if the token has one.
    pub subject: Option<String>,
    pub claims: Value,
}

/// A refused request: why, and the issuer whose rule refused it (if one matched).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub status: Status,
    pub issuer: Option<String>,
}

#[derive(Debug)]
struct Rule {
    spec: JwtProvider,
    keys: KeySet,
    payload_header: Option<HeaderName>,
    claim_headers: Vec<(HeaderName, String)>,
}

/// The compiled JWT rules of one config.
#[derive(Debug, Default)]
pub struct Engine {
    rules: Vec<Rule>,
    locations: Vec<Location>,
    /// Every header a rule writes (removed from requests before the check).
    outputs: Vec<HeaderName>,
}

fn header_name(name: &str, policy: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("RequestAuthentication {policy}: {name:?} is not a valid header name"))
}

impl Engine {
    /// Compiles the rules of a pushed config (a bad header name fails the push).
    pub fn build(authn: &Authn) -> Result<Engine, String> {
        let mut rules = Vec::new();
        let mut outputs: Vec<HeaderName> = Vec::new();
        for spec in &authn.rules {
            let keys = KeySet::build(&spec.issuer, spec.jwks.as_deref());
            if spec.jwks.is_none() {
                tracing::warn!(issuer = %spec.issuer, jwks_uri = spec.jwks_uri.as_deref().unwrap_or("-"), "no JWKS for this issuer yet (not fetched by the control plane); its tokens fail");
            } else {
                tracing::debug!(issuer = %spec.issuer, policy = %spec.policy, keys = keys.len(), "JWT rule compiled");
            }
            let payload_header = spec
                .output_payload_to_header
                .as_deref()
                .map(|h| header_name(h, &spec.policy))
                .transpose()?;
            let claim_headers = spec
                .output_claim_to_headers
                .iter()
                .map(|(h, c)| Ok((header_name(h, &spec.policy)?, c.clone())))
                .collect::<Result<Vec<_>, String>>()?;
            for h in payload_header
                .iter()
                .chain(claim_headers.iter().map(|(h, _)| h))
            {
                if !outputs.contains(h) {
                    outputs.push(h.clone());
                }
            }
            rules.push(Rule {
                spec: spec.clone(),
                keys,
                payload_header,
                claim_headers,
            });
        }
        Ok(Engine {
            locations: extract::locations(&authn.rules),
            rules,
            outputs,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Authenticates the request's tokens (see the module documentation). `Ok(None)`: no
    /// token (or no rules, or a CORS preflight).
    pub fn authenticate<B>(&self, req: &mut Request<B>) -> Result<Option<Verified>, Rejected> {
        if self.rules.is_empty() {
            return Ok(None);
        }
        for h in &self.outputs {
            req.headers_mut().remove(h);
        }
        if cors_preflight(req) {
            return Ok(None);
        }
        let pq = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let found = extract::find(&self.locations, req.headers(), &pq);
        if found.is_empty() {
            return Ok(None);
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let mut good: Vec<(usize, usize, Jwt)> = Vec::new();
        for f in &found {
            let jwt = Jwt::parse(&f.token).map_err(|status| Rejected {
                status,
                issuer: None,
            })?;
            let rule = self.check(&self.locations[f.location].rules, &jwt, now)?;
            good.push((f.location, rule, jwt));
        }
        let mut path = None;
        for (loc, r, jwt) in &good {
            let rule = &self.rules[*r];
            let h = req.headers_mut();
            if let Some(name) = &rule.payload_header {
                if let Ok(v) = HeaderValue::from_str(&jwt.payload_b64) {
                    h.append(name.clone(), v);
                }
            }
            for (name, claim) in &rule.claim_headers {
                let value = claims::header_value(&jwt.payload, claim);
                if let Some(v) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
                    h.append(name.clone(), v);
                }
            }
            if !rule.spec.forward_original_token {
                let current = path.clone().unwrap_or_else(|| pq.clone());
                if let Some(p) = extract::remove(&self.locations[*loc].at, h, &current) {
                    path = Some(p);
                }
            }
        }
        if let Some(p) = path {
            set_path(req, &p);
        }
        let (_, r, jwt) = good.swap_remove(0);
        let subject = jwt
            .payload
            .get("sub")
            .and_then(Value::as_str)
            .map(str::to_string);
        Ok(Some(Verified {
            issuer: jwt.iss,
            subject,
            claims: claims::normalize(jwt.payload, &self.rules[r].spec.space_delimited_claims),
        }))
    }

    /// Verifies `jwt` against the rules (`candidates`) that look where it was found: the
    /// first whose issuer it names and that accepts it; else the first refusal.
    fn check(&self, candidates: &[usize], jwt: &Jwt, now: i64) -> Result<usize, Rejected> {
        let mut refusal = None;
        for &i in candidates {
            let rule = &self.rules[i];
            if rule.spec.issuer != jwt.iss {
                continue;
            }
            let verdict = jwt
                .check_time(now)
                .and_then(|()| jwt.check_audience(&rule.spec.audiences))
                .and_then(|()| rule.keys.verify(jwt));
            match verdict {
                Ok(()) => return Ok(i),
                Err(status) => {
                    refusal.get_or_insert(Rejected {
                        status,
                        issuer: Some(rule.spec.issuer.clone()),
                    });
                }
            }
        }
        Err(refusal.unwrap_or(Rejected {
            status: Status::UnknownIssuer,
            issuer: None,
        }))
    }
}

/// Envoy's JWT filter lets CORS preflights through (they carry no credentials).
fn cors_preflight<B>(req: &Request<B>) -> bool {
    let h = req.headers();
    req.method() == http::Method::OPTIONS
        && h.get(http::header::ORIGIN).is_some_and(|v| !v.is_empty())
        && h.get(http::header::ACCESS_CONTROL_REQUEST_METHOD)
            .is_some_and(|v| !v.is_empty())
}

fn set_path<B>(req: &mut Request<B>, path_and_query: &str) {
    let mut parts = req.uri().clone().into_parts();
    if let Ok(pq) = path_and_query.parse() {
        parts.path_and_query = Some(pq);
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
}

/// The `realm` of Envoy's `www-authenticate` challenge: the request's original URL
/// (`x-forwarded-proto` or the listener's scheme, host, path cut at 256 bytes).
pub fn realm<B>(req: &Request<B>, scheme: &str) -> String {
    let h = req.headers();
    let proto = h
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .unwrap_or(scheme);
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| h.get(http::header::HOST).and_then(|v| v.to_str().ok()))
        .unwrap_or("");
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let mut end = path.len().min(256);
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    format!("{proto}://{host}{}", &path[..end])
}
