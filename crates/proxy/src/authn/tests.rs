//! Request authentication without sockets: token locations, Envoy's checks in order and
//! their words, kid selection, output headers, token removal, claims normalization.

use super::*;
use http::Request;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;
use weft_model::TokenLocation;

const K1: &str = include_str!("../../tests/testdata/jwt/rsa-k1.pem");
const K2: &str = include_str!("../../tests/testdata/jwt/rsa-k2.pem");
const EC: &str = include_str!("../../tests/testdata/jwt/ec-p256.pem");
const OTHER: &str = include_str!("../../tests/testdata/jwt/rsa-other.pem");
const JWKS: &str = include_str!("../../tests/testdata/jwt/jwks.json");
const ISS: &str = "https://issuer.example.com";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn sign(alg: Algorithm, pem: &str, kid: Option<&str>, claims: serde_json::Value) -> String {
    let key = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()),
        _ => EncodingKey::from_rsa_pem(pem.as_bytes()),
    }
    .unwrap();
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_string);
    encode(&h, &claims, &key).unwrap()
}

fn good(sub: &str) -> serde_json::Value {
    json!({"iss": ISS, "sub": sub, "exp": now() + 600, "scope": "read write"})
}

fn rule() -> JwtProvider {
    JwtProvider {
        policy: "ns.jwt".into(),
        issuer: ISS.into(),
        jwks: Some(JWKS.into()),
        locations: vec![
            TokenLocation::Header {
                name: "authorization".into(),
                prefix: "Bearer ".into(),
            },
            TokenLocation::Param("access_token".into()),
        ],
        space_delimited_claims: vec!["permission".into(), "scope".into()],
        ..Default::default()
    }
}

fn engine(rules: Vec<JwtProvider>) -> Engine {
    Engine::build(&Authn { rules }).unwrap()
}

fn bearer(token: &str) -> Request<()> {
    Request::get("/p?x=1")
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .unwrap()
}

fn status(e: &Engine, mut req: Request<()>) -> Option<Status> {
    e.authenticate(&mut req).err().map(|r| r.status)
}

#[test]
fn a_valid_token_names_the_caller_and_is_removed() {
    let e = engine(vec![rule()]);
    let mut req = bearer(&sign(Algorithm::RS256, K1, Some("k1"), good("alice")));
    let v = e.authenticate(&mut req).unwrap().expect("a token");
    assert_eq!(v.issuer, ISS);
    assert_eq!(v.subject.as_deref(), Some("alice"));
    assert_eq!(
        v.claims["scope"],
        json!(["read", "write"]),
        "space-delimited"
    );
    assert!(
        req.headers().get("authorization").is_none(),
        "not forwarded"
    );
    // No token: nothing to say; the request goes on without an identity.
    assert_eq!(
        e.authenticate(&mut Request::get("/").body(()).unwrap()),
        Ok(None)
    );
    // A prefix Envoy does not know (case-sensitive `Bearer `) is no token at all.
    let mut lower = Request::get("/")
        .header("authorization", "bearer abc")
        .body(())
        .unwrap();
    assert_eq!(e.authenticate(&mut lower), Ok(None));
}

#[test]
fn refusals_follow_envoys_order_and_words() {
    let e = engine(vec![rule()]);
    let k1 = |claims| sign(Algorithm::RS256, K1, Some("k1"), claims);
    let cases = [
        ("deadbeef".to_string(), Status::BadFormat),
        ("a.b.c".into(), Status::HeaderBadBase64),
        ("YWJj.b.c".into(), Status::HeaderBadJson),
        (
            sign(Algorithm::RS256, OTHER, None, good("x")),
            Status::VerificationFail,
        ),
        (k1(json!({"iss": ISS, "exp": now() - 120})), Status::Expired),
        (
            // Expired and badly signed: the time is checked first.
            sign(
                Algorithm::RS256,
                OTHER,
                None,
                json!({"iss": ISS, "exp": now() - 120}),
            ),
            Status::Expired,
        ),
        (
            k1(json!({"iss": ISS, "nbf": now() + 3600})),
            Status::NotYetValid,
        ),
        (k1(json!({"iss": "someone-else"})), Status::UnknownIssuer),
        (
            k1(json!({"iss": ISS, "exp": "soon"})),
            Status::ClaimNotInteger("exp"),
        ),
        (
            sign(Algorithm::RS256, K1, Some("nope"), good("x")),
            Status::KidAlgMismatch,
        ),
    ];
    for (token, want) in cases {
        assert_eq!(status(&e, bearer(&token)), Some(want), "{}", want.message());
    }
    // 60 s of clock skew.
    let just = k1(json!({"iss": ISS, "exp": now() - 30}));
    assert_eq!(status(&e, bearer(&just)), None);
    assert_eq!(Status::BadFormat.http_status(), 401);
    assert_eq!(Status::AudienceNotAllowed.http_status(), 403);
}

#[test]
fn keys_are_chosen_by_kid_and_alg_and_all_are_tried_without_one() {
    let e = engine(vec![rule()]);
    for token in [
        sign(Algorithm::RS256, K2, Some("k2"), good("a")),
        sign(Algorithm::RS256, K2, None, good("a")),
        sign(Algorithm::ES256, EC, Some("ec1"), good("a")),
        sign(Algorithm::PS256, K2, Some("k2"), good("a")),
    ] {
        assert_eq!(status(&e, bearer(&token)), None);
    }
    // k1 declares alg RS256: a PS256 token with kid k1 finds no key.
    let ps = sign(Algorithm::PS256, K1, Some("k1"), good("a"));
    assert_eq!(status(&e, bearer(&ps)), Some(Status::KidAlgMismatch));
    // k2's key under k1's kid: k1 is tried, and fails.
    let wrong = sign(Algorithm::RS256, K2, Some("k1"), good("a"));
    assert_eq!(status(&e, bearer(&wrong)), Some(Status::VerificationFail));
    // Never fetched: every token fails its signature, as with Istio's placeholder key.
    let unfetched = engine(vec![JwtProvider {
        jwks: None,
        ..rule()
    }]);
    let t = sign(Algorithm::RS256, K1, Some("k1"), good("a"));
    assert_eq!(
        status(&unfetched, bearer(&t)),
        Some(Status::VerificationFail)
    );
}

#[test]
fn audiences_are_compared_without_scheme_and_trailing_slash() {
    let e = engine(vec![JwtProvider {
        audiences: vec!["https://api.example.com/".into()],
        ..rule()
    }]);
    let with = |aud: serde_json::Value| {
        let mut c = good("a");
        c["aud"] = aud;
        bearer(&sign(Algorithm::RS256, K1, Some("k1"), c))
    };
    assert_eq!(status(&e, with(json!("api.example.com"))), None);
    assert_eq!(
        status(&e, with(json!(["x", "http://api.example.com"]))),
        None
    );
    assert_eq!(
        status(&e, with(json!("other"))),
        Some(Status::AudienceNotAllowed)
    );
    let mut none = good("a");
    none.as_object_mut().unwrap().remove("aud");
    assert_eq!(
        status(&e, bearer(&sign(Algorithm::RS256, K1, Some("k1"), none))),
        Some(Status::AudienceNotAllowed)
    );
}

#[test]
fn locations_outputs_and_forwarding() {
    let e = engine(vec![JwtProvider {
        locations: vec![
            TokenLocation::Header {
                name: "x-jwt".into(),
                prefix: "Token ".into(),
            },
            TokenLocation::Param("token".into()),
            TokenLocation::Cookie("session".into()),
        ],
        output_payload_to_header: Some("x-jwt-payload".into()),
        output_claim_to_headers: vec![("x-sub".into(), "sub".into())],
        ..rule()
    }]);
    let t = sign(Algorithm::RS256, K1, Some("k1"), good("bob"));
    // Forged output headers never reach the app, token or not.
    let mut forged = Request::get("/")
        .header("x-sub", "admin")
        .header("x-jwt-payload", "e30")
        .body(())
        .unwrap();
    assert_eq!(e.authenticate(&mut forged), Ok(None));
    assert!(forged.headers().get("x-sub").is_none());
    assert!(forged.headers().get("x-jwt-payload").is_none());

    let mut h = Request::get("/")
        .header("x-jwt", format!("Token {t}"))
        .header("x-sub", "admin")
        .body(())
        .unwrap();
    assert!(e.authenticate(&mut h).unwrap().is_some());
    assert_eq!(h.headers()["x-sub"], "bob", "the claim, not the forgery");
    let payload = t.split('.').nth(1).unwrap();
    assert_eq!(h.headers()["x-jwt-payload"], payload);
    assert!(h.headers().get("x-jwt").is_none());

    let mut q = Request::get(format!("/p?a=1&token={t}&b=2"))
        .body(())
        .unwrap();
    assert!(e.authenticate(&mut q).unwrap().is_some());
    assert_eq!(q.uri(), "/p?a=1&b=2", "the parameter is taken off");

    let mut c = Request::get("/")
        .header("cookie", format!("a=1; session={t}"))
        .body(())
        .unwrap();
    assert!(e.authenticate(&mut c).unwrap().is_some());
    // The default `Authorization` header is not one of this rule's locations.
    let bad = Request::get("/")
        .header("authorization", "Bearer deadbeef")
        .body(())
        .unwrap();
    assert_eq!(status(&e, bad), None);
}

#[test]
fn a_token_must_be_where_its_own_rule_looks_and_every_token_must_be_valid() {
    let other = JwtProvider {
        issuer: "other-issuer".into(),
        locations: vec![TokenLocation::Header {
            name: "x-other".into(),
            prefix: String::new(),
        }],
        ..rule()
    };
    let e = engine(vec![rule(), other]);
    let other_token = sign(
        Algorithm::RS256,
        K1,
        Some("k1"),
        json!({"iss": "other-issuer", "sub": "o"}),
    );
    let mut ok = Request::get("/")
        .header("x-other", &other_token)
        .body(())
        .unwrap();
    let v = e.authenticate(&mut ok).unwrap().unwrap();
    assert_eq!(v.issuer, "other-issuer");
    // The other issuer's token in the Authorization header: no rule for it looks there.
    assert_eq!(
        status(&e, bearer(&other_token)),
        Some(Status::UnknownIssuer)
    );
    // One good token and one bad one: refused.
    let mut two = bearer(&sign(Algorithm::RS256, K1, Some("k1"), good("a")));
    two.headers_mut()
        .insert("x-other", "not-a-jwt".parse().unwrap());
    assert_eq!(status(&e, two), Some(Status::BadFormat));
}

#[test]
fn cors_preflights_skip_the_check_and_the_realm_is_the_url() {
    let e = engine(vec![rule()]);
    let mut pre = Request::options("/")
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
        .header("authorization", "Bearer deadbeef")
        .body(())
        .unwrap();
    assert_eq!(e.authenticate(&mut pre), Ok(None));
    let req = Request::get("/headers?x=1")
        .header("host", "shop.example.com")
        .body(())
        .unwrap();
    assert_eq!(realm(&req, "http"), "http://shop.example.com/headers?x=1");
    let long = Request::get(format!("/{}", "a".repeat(400)))
        .header("host", "h")
        .header("x-forwarded-proto", "https")
        .body(())
        .unwrap();
    assert_eq!(realm(&long, "http").len(), "https://h".len() + 256);
}

#[test]
fn hostile_tokens_and_keys_are_refused_without_panicking() {
    let mut rng = fastrand::Rng::with_seed(7);
    let e = engine(vec![
        rule(),
        JwtProvider {
            issuer: "hmac".into(),
            jwks: Some(r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"},{"kty":"EC","crv":"P-521","x":"AA","y":"AA"},{"kty":"nope"},7]}"#.into()),
            ..rule()
        },
    ]);
    let seeds = [
        sign(Algorithm::RS256, K1, Some("k1"), good("a")),
        sign(Algorithm::ES256, EC, Some("ec1"), good("a")),
        sign(
            Algorithm::RS256,
            K1,
            None,
            json!({"iss": "hmac", "exp": u64::MAX, "nbf": i64::MIN, "aud": [1, 2]}),
        ),
    ];
    let alphabet = b"ABCxyz019-_.=%/+ \xc3\xa9";
    for i in 0..3000 {
        let mut t = seeds[i % seeds.len()].clone().into_bytes();
        for _ in 0..rng.usize(1..4) {
            match rng.u8(0..3) {
                0 if !t.is_empty() => {
                    let at = rng.usize(0..t.len());
                    t[at] = alphabet[rng.usize(0..alphabet.len())];
                }
                1 if !t.is_empty() => {
                    let at = rng.usize(0..t.len());
                    t.truncate(at);
                }
                _ => t.extend_from_slice(b".e30"),
            }
        }
        let t = String::from_utf8_lossy(&t).into_owned();
        let Ok(mut req) = Request::get(format!("/?access_token={}", t.replace(' ', "%20")))
            .header("authorization", format!("Bearer {t}"))
            .body(())
        else {
            continue;
        };
        let _ = e.authenticate(&mut req);
    }
    // A header-only HS256 key cannot verify a token signed for another family.
    let hs = encode(
        &Header::new(Algorithm::HS256),
        &json!({"iss": "hmac"}),
        &EncodingKey::from_secret(b"secret"),
    )
    .unwrap();
    assert_eq!(status(&e, bearer(&hs)), None, "the oct key verifies HS256");
    let rs_as_hmac = sign(Algorithm::RS256, K1, None, json!({"iss": "hmac"}));
    assert_eq!(
        status(&e, bearer(&rs_as_hmac)),
        Some(Status::VerificationFail)
    );
}
