//! RequestAuthentication for one proxy: which policies select its workload (the same scoping
//! as AuthorizationPolicy: the root namespace mesh-wide, the workload's namespace,
//! `selector`; `targetRef(s)` attach to nothing weft builds), and their JWT rules in the form
//! the proxy runs — token locations with Envoy's defaults filled in, the JWKS document (inline,
//! or the one the control plane fetched for `jwksUri`), output headers, and the claims
//! normalized as space-delimited lists. Also names the remote JWKS the control plane must
//! fetch ([`remote_jwks`]).

use crate::authz::in_scope;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use weft_api::{JwtRule, Resource, Spec};

/// Istio's default timeout for fetching a JWKS (`jwtRules[].timeout`).
pub const DEFAULT_JWKS_TIMEOUT_MS: u64 = 5_000;

/// The JWT rules one proxy validates tokens against, sorted by issuer (as Istio sorts them).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Authn {
    pub rules: Vec<JwtProvider>,
}

impl Authn {
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// One `jwtRules[]` entry as a proxy runs it (Envoy's `JwtProvider`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct JwtProvider {
    /// `namespace.name` of the RequestAuthentication (for logs).
    pub policy: String,
    pub issuer: String,
    /// When set, a token's `aud` must name one of them.
    pub audiences: Vec<String>,
    /// The JWKS document. `None`: a `jwksUri` (or the issuer's discovery document) the
    /// control plane has not fetched yet — every token of this issuer fails, as in Istio.
    pub jwks: Option<String>,
    /// Where the keys come from when not inline (for logs).
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// Where tokens are looked for (defaults filled in).
    pub locations: Vec<TokenLocation>,
    /// Keep the token on the request forwarded to the app (default: removed).
    pub forward_original_token: bool,
    /// Header that gets the token's payload, base64url-encoded.
    pub output_payload_to_header: Option<String>,
    /// (header, claim): the claim's value copied into the header.
    pub output_claim_to_headers: Vec<(String, String)>,
    /// Claims whose space-separated string value authorization and routing see as a list
    /// (always `scope` and `permission`, plus the rule's `spaceDelimitedClaims`).
    pub space_delimited_claims: Vec<String>,
}

/// Where a token may be found.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenLocation {
    /// A header (lower-case name); the token follows `prefix` (empty: the whole value).
    Header { name: String, prefix: String },
    /// A query parameter.
    Param(String),
    /// A cookie.
    Cookie(String),
}

/// Where a rule's keys come from when they are not inline: its `jwksUri`, or (neither
/// given) the `jwks_uri` of the issuer's OpenID discovery document.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JwksKey {
    pub issuer: String,
    pub uri: Option<String>,
}

impl JwksKey {
    /// The URL to fetch first: the JWKS itself, or the discovery document.
    pub fn url(&self) -> String {
        match &self.uri {
            Some(u) => u.clone(),
            None => format!(
                "{}/.well-known/openid-configuration",
                self.issuer.trim_end_matches('/')
            ),
        }
    }
}

/// The JWKS documents the control plane fetched, by source.
pub type FetchedJwks = BTreeMap<JwksKey, String>;

fn rules(resources: &[Resource]) -> impl Iterator<Item = (&Resource, &JwtRule)> {
    resources
        .iter()
        .filter_map(|r| match &r.spec {
            Spec::RequestAuthentication(ra) => Some((r, ra)),
            _ => None,
        })
        .flat_map(|(r, ra)| ra.jwt_rules.iter().map(move |j| (r, j)))
}

fn key_of(rule: &JwtRule) -> Option<JwksKey> {
    rule.jwks.is_none().then(|| JwksKey {
        issuer: rule.issuer.clone(),
        uri: rule.jwks_uri.clone(),
    })
}

/// Every JWKS the mesh's rules need fetched, with the fetch timeout (the shortest a rule
/// asks for). Rules of RequestAuthentications that select no workload count too (istiod
/// fetches what the config names).
pub fn remote_jwks(resources: &[Resource]) -> BTreeMap<JwksKey, u64> {
    let mut out: BTreeMap<JwksKey, u64> = BTreeMap::new();
    for (_, rule) in rules(resources) {
        let Some(key) = key_of(rule) else { continue };
        let timeout = rule
            .timeout
            .as_deref()
            .and_then(crate::parse_duration_ms)
            .filter(|t| *t > 0)
            .unwrap_or(DEFAULT_JWKS_TIMEOUT_MS);
        let slot = out.entry(key).or_insert(timeout);
        *slot = (*slot).min(timeout);
    }
    out
}

/// The RequestAuthentications that select the workload `(namespace, labels)`, compiled for
/// its proxy, with the keys of the resources used.
pub fn authn_for(
    resources: &[Resource],
    root_namespace: &str,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    fetched: &FetchedJwks,
) -> (Authn, Vec<String>) {
    let mut out = Authn::default();
    let mut used = Vec::new();
    for r in resources {
        let Spec::RequestAuthentication(ra) = &r.spec else {
            continue;
        };
        let targeted = ra.target_ref.is_some() || !ra.target_refs.is_empty();
        if !in_scope(
            r,
            ra.selector.as_ref(),
            targeted,
            root_namespace,
            namespace,
            labels,
        ) {
            continue;
        }
        used.push(r.key());
        let policy = format!("{}.{}", r.namespace(), r.name());
        for rule in &ra.jwt_rules {
            out.rules.push(provider(&policy, rule, fetched));
        }
    }
    // Istio sorts the merged rules by issuer so that the generated config is stable.
    out.rules.sort_by(|a, b| a.issuer.cmp(&b.issuer));
    (out, used)
}

fn provider(policy: &str, rule: &JwtRule, fetched: &FetchedJwks) -> JwtProvider {
    let mut locations: Vec<TokenLocation> = rule
        .from_headers
        .iter()
        .map(|h| TokenLocation::Header {
            name: h.name.to_ascii_lowercase(),
            prefix: h.prefix.clone().unwrap_or_default(),
        })
        .chain(rule.from_params.iter().cloned().map(TokenLocation::Param))
        .chain(rule.from_cookies.iter().cloned().map(TokenLocation::Cookie))
        .collect();
    if locations.is_empty() {
        // Envoy's defaults: `Authorization: Bearer <token>` and `?access_token=<token>`.
        locations = vec![
            TokenLocation::Header {
                name: "authorization".into(),
                prefix: "Bearer ".into(),
            },
            TokenLocation::Param("access_token".into()),
        ];
    }
    let mut space_delimited: Vec<String> = vec!["permission".into(), "scope".into()];
    for c in &rule.space_delimited_claims {
        if !space_delimited.contains(c) {
            space_delimited.push(c.clone());
        }
    }
    space_delimited.sort();
    let jwks = match key_of(rule) {
        None => rule.jwks.clone(),
        Some(key) => fetched.get(&key).cloned(),
    };
    JwtProvider {
        policy: policy.to_string(),
        issuer: rule.issuer.clone(),
        audiences: rule.audiences.clone(),
        jwks,
        jwks_uri: key_of(rule).map(|k| k.url()),
        locations,
        forward_original_token: rule.forward_original_token.unwrap_or(false),
        output_payload_to_header: rule
            .output_payload_to_header
            .as_ref()
            .map(|h| h.to_ascii_lowercase()),
        output_claim_to_headers: rule
            .output_claim_to_headers
            .iter()
            .map(|c| (c.header.to_ascii_lowercase(), c.claim.clone()))
            .collect(),
        space_delimited_claims: space_delimited,
    }
}

/// What of a RequestAuthentication weft loads but does not enforce.
pub(crate) fn report(ra: &weft_api::RequestAuthentication, push: &mut impl FnMut(String)) {
    if ra.target_ref.is_some() || !ra.target_refs.is_empty() {
        push("targetRef/targetRefs (policies for Kubernetes Gateway API gateways and waypoints, which weft does not build; this policy applies to no proxy)".into());
    }
    for (i, rule) in ra.jwt_rules.iter().enumerate() {
        if rule.issuer.is_empty() {
            push(format!(
                "jwtRules[{i}] without issuer (Istio accepts a jwksUri alone, and Envoy then takes any issuer the keys verify; weft matches a token to its rule by issuer, so this rule's tokens fail)"
            ));
        }
        let single_key = rule
            .jwks
            .as_deref()
            .and_then(|j| serde_json::from_str::<serde_json::Value>(j).ok())
            .is_some_and(|v| v.get("keys").is_none());
        if single_key {
            push(format!(
                "jwtRules[{i}].jwks as one JWK rather than a JWK Set (weft reads {{\"keys\": [...]}} only, so this rule's tokens fail; wrap the key in a \"keys\" list)"
            ));
        }
        if rule.presence.is_some() {
            push(format!(
                "jwtRules[{i}].presence (not built: a missing token always passes authentication)"
            ));
        }
    }
}
