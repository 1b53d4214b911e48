//! A rule's JWKS, compiled once per config: each usable key (RSA, EC P-256/P-384, Ed25519,
//! HMAC `oct`) with its `kid` and `alg`; keys weft cannot use are skipped and logged. The
//! signature check follows `jwt_verify_lib`: with a `kid` in the token, only keys with that
//! `kid` (or none) are tried, a key's `alg` must equal the token's, and the first key that
//! verifies wins; no candidate at all is a kid/alg mismatch.

use super::token::{Jwt, Status};
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

/// The key families (`kty`) and the algorithms each can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Rsa,
    Ec,
    Okp,
    Hmac,
}

impl Family {
    fn verifies(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            Family::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            Family::Ec => matches!(alg, ES256 | ES384),
            Family::Okp => alg == EdDSA,
            Family::Hmac => matches!(alg, HS256 | HS384 | HS512),
        }
    }
}

struct Key {
    kid: Option<String>,
    alg: Option<String>,
    family: Family,
    key: DecodingKey,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("family", &self.family)
            .finish()
    }
}

/// The usable keys of one JWKS document.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<Key>,
}

impl KeySet {
    /// Compiles `jwks`; `None` (never fetched) is an empty set. Keys that do not parse are
    /// skipped with a warning naming the issuer.
    pub fn build(issuer: &str, jwks: Option<&str>) -> KeySet {
        let Some(doc) = jwks else {
            return KeySet::default();
        };
        let keys = match serde_json::from_str::<Value>(doc) {
            Ok(v) => v.get("keys").and_then(Value::as_array).cloned(),
            Err(_) => None,
        };
        let Some(list) = keys else {
            tracing::warn!(%issuer, "the JWKS is not a JSON document with a \"keys\" list; tokens of this issuer fail");
            return KeySet::default();
        };
        let mut out = KeySet::default();
        for (i, k) in list.into_iter().enumerate() {
            match compile(k) {
                Ok(key) => out.keys.push(key),
                Err(why) => {
                    tracing::warn!(%issuer, key = i, reason = %why, "skipping a JWKS key weft cannot use")
                }
            }
        }
        out
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Checks the token's signature.
    pub fn verify(&self, jwt: &Jwt) -> Result<(), Status> {
        if self.keys.is_empty() {
            // Istio pushes a key nobody holds when it could not fetch the JWKS: every
            // token fails its signature check.
            return Err(Status::VerificationFail);
        }
        let mut matched = false;
        for k in &self.keys {
            if let (Some(want), Some(have)) = (&jwt.kid, &k.kid) {
                if want != have {
                    continue;
                }
            }
            if k.alg.as_ref().is_some_and(|a| *a != jwt.alg_name) {
                continue;
            }
            matched = true;
            if !k.family.verifies(jwt.alg) {
                continue;
            }
            let ok = jsonwebtoken::crypto::verify(
                &jwt.signature_b64,
                jwt.signed.as_bytes(),
                &k.key,
                jwt.alg,
            );
            if ok.unwrap_or(false) {
                return Ok(());
            }
        }
        Err(if matched {
            Status::VerificationFail
        } else {
            Status::KidAlgMismatch
        })
    }
}

fn compile(v: Value) -> Result<Key, String> {
    let kty = v
        .get("kty")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let alg = v.get("alg").and_then(Value::as_str).map(str::to_string);
    let jwk: Jwk = serde_json::from_value(v).map_err(|e| format!("{kty} key: {e}"))?;
    let family = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Family::Rsa,
        AlgorithmParameters::EllipticCurve(p) => {
            use jsonwebtoken::jwk::EllipticCurve::*;
            match p.curve {
                P256 | P384 => Family::Ec,
                _ => return Err("only the EC curves P-256 and P-384 are supported".into()),
            }
        }
        AlgorithmParameters::OctetKeyPair(_) => Family::Okp,
        AlgorithmParameters::OctetKey(_) => Family::Hmac,
    };
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| format!("{kty} key: {e}"))?;
    Ok(Key {
        kid: jwk.common.key_id.clone(),
        alg,
        family,
        key,
    })
}
