//! The JWT attributes of AuthorizationPolicy, without sockets: Istio's requestPrincipals
//! forms (`iss/sub` split at the last `/`, `*`, prefix, suffix), `request.auth.audiences`,
//! `presenter` and `claims[a][b]` over string and list claims, and absent tokens.

use super::*;
use crate::authn::Verified;
use serde_json::json;
use weft_model::{AuthzField, AuthzPolicy, AuthzRule};

fn allow(attr: AuthzAttr, values: &[&str], not_values: &[&str]) -> Engine {
    let field = AuthzField {
        attr,
        values: values.iter().map(|s| s.to_string()).collect(),
        not_values: not_values.iter().map(|s| s.to_string()).collect(),
    };
    Engine::build(&Authz {
        policies: vec![AuthzPolicy {
            name: "ns.jwt".into(),
            action: AuthzAction::Allow,
            dry_run: false,
            rules: vec![AuthzRule {
                from: vec![vec![field]],
                ..Default::default()
            }],
            provider: None,
        }],
        providers: vec![],
    })
    .expect("compiles")
}

fn allowed(e: &Engine, jwt: Option<&Verified>) -> bool {
    let headers = http::HeaderMap::new();
    e.evaluate(&Input {
        peer: None,
        source_ip: [127, 0, 0, 1].into(),
        remote_ip: [127, 0, 0, 1].into(),
        destination_ip: [127, 0, 0, 1].into(),
        destination_port: 80,
        host: "h",
        method: "GET",
        path: "/",
        headers: &headers,
        sni: None,
        jwt,
    })
    .denied
    .is_none()
}

fn token(iss: &str, sub: Option<&str>, claims: serde_json::Value) -> Verified {
    Verified {
        issuer: iss.into(),
        subject: sub.map(str::to_string),
        claims,
    }
}

#[test]
fn request_principals_take_istios_forms() {
    let alice = token("https://issuer.example.com", Some("alice"), json!({}));
    let no_sub = token("https://issuer.example.com", None, json!({}));
    let cases: &[(&str, bool)] = &[
        ("*", true),
        ("https://issuer.example.com/alice", true),
        ("https://issuer.example.com/bob", false),
        ("https://issuer.example.com/*", true),
        ("https://issuer.example.com/al*", true),
        ("https://other.example.com/*", false),
        ("*/alice", true),
        ("*example.com/alice", true),
        ("*example.org/alice", false),
        ("*ice", true),
        // Split at the last `/`: issuer `https:/`, subject prefix `issuer`.
        ("https://issuer*", false),
        ("https://issuer.example.com", false),
    ];
    for (value, want) in cases {
        let e = allow(AuthzAttr::RequestPrincipal, &[value], &[]);
        assert_eq!(allowed(&e, Some(&alice)), *want, "{value}");
        assert!(!allowed(&e, None), "{value}: no token, no principal");
    }
    let any = allow(AuthzAttr::RequestPrincipal, &["*"], &[]);
    assert!(!allowed(&any, Some(&no_sub)), "`*` needs a subject too");
    let not = allow(AuthzAttr::RequestPrincipal, &[], &["*"]);
    assert!(
        allowed(&not, None),
        "notRequestPrincipals matches a request without a token"
    );
    assert!(!allowed(&not, Some(&alice)));
}

#[test]
fn audiences_presenter_and_nested_claims_match_strings_and_lists() {
    let t = token(
        "iss",
        Some("sub"),
        json!({
            "aud": ["web", "api"], "azp": "frontend",
            "groups": ["dev", "admin"], "org": {"team": "core-infra"}, "level": 3
        }),
    );
    let cases: Vec<(AuthzAttr, &str, bool)> = vec![
        (AuthzAttr::AuthAudience, "api", true),
        (AuthzAttr::AuthAudience, "mobile", false),
        (AuthzAttr::AuthPresenter, "front*", true),
        (AuthzAttr::AuthClaim(vec!["groups".into()]), "admin", true),
        (AuthzAttr::AuthClaim(vec!["groups".into()]), "ops", false),
        (
            AuthzAttr::AuthClaim(vec!["org".into(), "team".into()]),
            "*-infra",
            true,
        ),
        (AuthzAttr::AuthClaim(vec!["missing".into()]), "*", false),
        (
            AuthzAttr::AuthClaim(vec!["level".into()]),
            "3",
            false, // numbers are not strings (Envoy's string matcher)
        ),
    ];
    for (attr, value, want) in cases {
        let e = allow(attr.clone(), &[value], &[]);
        assert_eq!(allowed(&e, Some(&t)), want, "{attr:?} {value}");
        assert!(!allowed(&e, None), "{attr:?}: absent without a token");
    }
}
