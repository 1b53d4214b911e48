//! PeerAuthentication and RequestAuthentication rules, as istio/istio's
//! `ValidatePeerAuthentication`, `ValidateRequestAuthentication`, `validateJwtRule` and
//! `warnPrivateJwksKeys` (`pkg/config/validation/validation.go`) and the CRDs' CEL rules:
//! selectors and target references, port-level mTLS, and JWT rules (issuer or jwksUri,
//! audiences, JWKS source, token locations, output headers, timeouts).

use std::collections::BTreeSet;

use super::authorization_policy::DRY_RUN;
use super::common::{duration, is_header_name, selector_labels, selector_without_labels};
use super::policy_target::target_refs;
use super::{Errs, WarningKind};
use crate::{JwtRule, PeerAuthentication, RequestAuthentication, Resource};

pub(super) fn peer_authentication(r: &Resource, pa: &PeerAuthentication, errs: &mut Errs) {
    let labels = pa.selector.as_ref().map(|s| &s.match_labels);
    if let Some(l) = labels {
        selector_labels(errs, "spec.selector.matchLabels", l);
        selector_without_labels(errs, "spec.selector", l);
    }
    let written = r.positions.get("spec.portLevelMtls").is_some();
    if written && pa.port_level_mtls.is_empty() {
        errs.at("spec.portLevelMtls", "spec.portLevelMtls in body should have at least 1 properties: list ports or remove the field");
    }
    if !pa.port_level_mtls.is_empty() && labels.is_none_or(|l| l.is_empty()) {
        errs.key(
            "spec.portLevelMtls",
            "portLevelMtls requires a selector with matchLabels (port numbers are workload ports)",
        );
    }
    for p in pa.port_level_mtls.keys() {
        if !(1..=65535).contains(p) {
            errs.key(
                format!("spec.portLevelMtls.{p}"),
                format!("portLevelMtls port {p} is invalid: port must be between 1-65535"),
            );
        }
    }
}

pub(super) fn request_authentication(r: &Resource, ra: &RequestAuthentication, errs: &mut Errs) {
    if let Some(sel) = &ra.selector {
        selector_labels(errs, "spec.selector.matchLabels", &sel.match_labels);
        selector_without_labels(errs, "spec.selector", &sel.match_labels);
    }
    target_refs(
        errs,
        ra.selector.is_some(),
        ra.target_ref.as_ref(),
        &ra.target_refs,
    );
    if r.metadata.annotations.contains_key(DRY_RUN) {
        errs.key(
            format!("metadata.annotations.{DRY_RUN}"),
            format!("{DRY_RUN} annotation is not supported on RequestAuthentication; remove it"),
        );
    }
    let mut issuers = BTreeSet::new();
    for (i, rule) in ra.jwt_rules.iter().enumerate() {
        let at = format!("spec.jwtRules[{i}]");
        if !rule.issuer.is_empty() && !issuers.insert(&rule.issuer) {
            errs.warn(
                WarningKind::Istio,
                format!("{at}.issuer"),
                format!("issuer {:?} has two jwtRules: Istio accepts it, but a token is checked against the first rule of its issuer only; merge them", rule.issuer),
            );
        }
        jwt_rule(errs, &at, rule);
    }
}

fn non_empty(errs: &mut Errs, at: &str, name: &str, list: &[String]) {
    for (i, v) in list.iter().enumerate() {
        if v.is_empty() {
            errs.at(
                format!("{at}.{name}[{i}]"),
                format!(
                    "{name}[{i}] in body should be at least 1 chars long: remove the empty entry"
                ),
            );
        }
    }
}

fn jwt_rule(errs: &mut Errs, at: &str, rule: &JwtRule) {
    if rule.issuer.is_empty() && rule.jwks_uri.as_deref().is_none_or(str::is_empty) {
        errs.key(
            format!("{at}.issuer"),
            "issuer or jwksUri must be set: the issuer is the `iss` of accepted tokens",
        );
    }
    non_empty(errs, at, "audiences", &rule.audiences);
    non_empty(errs, at, "fromParams", &rule.from_params);
    non_empty(errs, at, "fromCookies", &rule.from_cookies);
    non_empty(
        errs,
        at,
        "spaceDelimitedClaims",
        &rule.space_delimited_claims,
    );
    if rule.jwks_uri.is_some() && rule.jwks.is_some() {
        errs.key(
            format!("{at}.jwks"),
            "only one of jwksUri or jwks may be set",
        );
    }
    if let Some(uri) = &rule.jwks_uri {
        jwks_uri(errs, &format!("{at}.jwksUri"), uri);
    }
    if let Some(jwks) = &rule.jwks {
        inline_jwks(errs, &format!("{at}.jwks"), jwks);
    }
    for (i, h) in rule.from_headers.iter().enumerate() {
        if h.name.is_empty() {
            errs.key(
                format!("{at}.fromHeaders[{i}].name"),
                "fromHeaders[].name must not be empty: name the header carrying the token",
            );
        }
    }
    if let Some(h) = &rule.output_payload_to_header {
        if !is_header_name(h, false) {
            errs.at(
                format!("{at}.outputPayloadToHeader"),
                format!("outputPayloadToHeader {h:?} is not a valid header name"),
            );
        }
    }
    let mut seen = BTreeSet::new();
    for (i, c) in rule.output_claim_to_headers.iter().enumerate() {
        let cat = format!("{at}.outputClaimToHeaders[{i}]");
        if c.header.is_empty() {
            errs.at(format!("{cat}.header"), "outputClaimToHeaders[].header in body should be at least 1 chars long: name the header");
        } else if !is_header_name(&c.header, false) {
            errs.at(format!("{cat}.header"), format!("outputClaimToHeaders[].header {:?} is not a valid header name (letters, digits, `-`, `_`)", c.header));
        } else if !seen.insert(c.header.to_ascii_lowercase()) {
            errs.warn(
                WarningKind::Istio,
                format!("{cat}.header"),
                format!("outputClaimToHeaders[].header {:?} is used twice: Istio accepts it, but only one claim ends up in the header; use one header per claim", c.header),
            );
        }
        if c.claim.is_empty() {
            errs.key(
                format!("{cat}.claim"),
                "outputClaimToHeaders[].claim is required",
            );
        }
    }
    if let Some(t) = &rule.timeout {
        duration(errs, &format!("{at}.timeout"), t, false);
    }
}

/// Istio parses inline keys with `jwk.Parse`: a JWK Set (`{"keys": [...]}`) or one JWK
/// (`{"kty": ...}`); keys carrying private material draw a warning (`warnPrivateJwksKeys`).
fn inline_jwks(errs: &mut Errs, at: &str, jwks: &str) {
    let doc = serde_json::from_str::<serde_json::Value>(jwks).ok();
    let keys: Option<Vec<&serde_json::Value>> = doc.as_ref().and_then(|v| match v.get("keys") {
        Some(k) => k.as_array().map(|a| a.iter().collect()),
        None => v.get("kty").is_some().then(|| vec![v]),
    });
    let Some(keys) = keys else {
        errs.at(
            at,
            format!(
                "inline jwks {:?} is not a valid JWKS document (JSON with a \"keys\" array, or one JWK with \"kty\")",
                abbreviate(jwks)
            ),
        );
        return;
    };
    for (i, k) in keys.iter().enumerate() {
        if k.get("d").is_some() || k.get("kty").and_then(|t| t.as_str()) == Some("oct") {
            errs.warn(WarningKind::Istio, at, format!("jwks key at index {i} contains private key material; only public keys are used for verification: publish the public key only"));
        }
    }
}

fn abbreviate(s: &str) -> String {
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s.to_owned()
    }
}

fn jwks_uri(errs: &mut Errs, at: &str, uri: &str) {
    let Some((scheme, rest)) = uri.split_once("://") else {
        errs.at(
            at,
            format!("jwksUri {uri:?} is not a URL: url must have scheme http:// or https://"),
        );
        return;
    };
    if scheme != "http" && scheme != "https" {
        errs.at(
            at,
            format!("jwksUri {uri:?}: url must have scheme http or https"),
        );
        return;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() {
        errs.at(at, format!("jwksUri {uri:?} has no host"));
        return;
    }
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let port = if host_port.starts_with('[') {
        host_port.split_once("]:").map(|(_, p)| p)
    } else {
        host_port.split_once(':').map(|(_, p)| p)
    };
    if let Some(p) = port {
        if !p.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n)) {
            errs.at(at, format!("jwksUri {uri:?} has an invalid port {p:?}"));
        }
    }
}
