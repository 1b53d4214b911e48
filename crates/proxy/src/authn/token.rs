//! A JWT as Envoy's `jwt_verify_lib` reads it: three base64url sections, a header with a
//! supported `alg` and an optional string `kid`, a JSON payload whose registered claims
//! have their types (`iss`, `sub`, `jti` strings; `iat`, `nbf`, `exp` integers; `aud` a
//! string or a list of strings) — and the failure statuses with Envoy's words and codes.

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use serde_json::{Map, Value};

/// base64url, with or without padding (as `absl::WebSafeBase64Unescape` reads it).
pub(super) const B64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a token was refused, as Envoy's `jwt_verify_lib` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    BadFormat,
    HeaderBadBase64,
    HeaderBadJson,
    HeaderBadAlg,
    HeaderNotImplementedAlg,
    HeaderBadKid,
    PayloadBadBase64,
    PayloadBadJson,
    ClaimNotString(&'static str),
    ClaimNotInteger(&'static str),
    AudNotString,
    SignatureBadBase64,
    UnknownIssuer,
    NotYetValid,
    Expired,
    AudienceNotAllowed,
    VerificationFail,
    KidAlgMismatch,
}

impl Status {
    /// Envoy's reply body for this status.
    pub fn message(self) -> &'static str {
        match self {
            Status::BadFormat => {
                "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"
            }
            Status::HeaderBadBase64 => "Jwt header is an invalid Base64url encoded",
            Status::HeaderBadJson => "Jwt header is an invalid JSON",
            Status::HeaderBadAlg => "Jwt header [alg] field is required and must be a string",
            Status::HeaderNotImplementedAlg => "Jwt header [alg] is not supported",
            Status::HeaderBadKid => "Jwt header [kid] field is not a string",
            Status::PayloadBadBase64 => "Jwt payload is an invalid Base64url encoded",
            Status::PayloadBadJson => "Jwt payload is an invalid JSON",
            Status::ClaimNotString("iss") => "Jwt payload [iss] field is not a string",
            Status::ClaimNotString("sub") => "Jwt payload [sub] field is not a string",
            Status::ClaimNotString(_) => "Jwt payload [jti] field is not a string",
            Status::ClaimNotInteger("iat") => "Jwt payload [iat] field is not an integer",
            Status::ClaimNotInteger("nbf") => "Jwt payload [nbf] field is not an integer",
            Status::ClaimNotInteger(_) => "Jwt payload [exp] field is not an integer",
            Status::AudNotString => "Jwt payload [aud] field is not a string or string list",
            Status::SignatureBadBase64 => "Jwt signature is an invalid Base64url encoded",
            Status::UnknownIssuer => "Jwt issuer is not configured",
            Status::NotYetValid => "Jwt not yet valid",
            Status::Expired => "Jwt is expired",
            Status::AudienceNotAllowed => "Audiences in Jwt are not allowed",
            Status::VerificationFail => "Jwt verification fails",
            Status::KidAlgMismatch => "Jwks doesn't have key to match kid or alg from Jwt",
        }
    }

    /// Envoy answers 403 for a wrong audience and 401 for everything else.
    pub fn http_status(self) -> http::StatusCode {
        match self {
            Status::AudienceNotAllowed => http::StatusCode::FORBIDDEN,
            _ => http::StatusCode::UNAUTHORIZED,
        }
    }
}

/// A parsed (not yet verified) token.
#[derive(Debug, Clone)]
pub struct Jwt {
    /// `header.payload`, the signed bytes.
    pub signed: String,
    /// The payload section as sent (for `outputPayloadToHeader`).
    pub payload_b64: String,
    /// The signature section without padding.
    pub signature_b64: String,
    pub alg: jsonwebtoken::Algorithm,
    pub alg_name: String,
    pub kid: Option<String>,
    pub payload: Map<String, Value>,
    pub iss: String,
    pub nbf: Option<i64>,
    pub exp: Option<i64>,
    pub audiences: Vec<String>,
}

fn json_object(
    section: &str,
    bad_b64: Status,
    bad_json: Status,
) -> Result<Map<String, Value>, Status> {
    let bytes = B64URL.decode(section).map_err(|_| bad_b64)?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(bad_json),
    }
}

fn string_claim(m: &Map<String, Value>, name: &'static str) -> Result<Option<String>, Status> {
    match m.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Status::ClaimNotString(name)),
    }
}

fn int_claim(m: &Map<String, Value>, name: &'static str) -> Result<Option<i64>, Status> {
    match m.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_i64()
            .or_else(|| v.as_u64().map(|u| i64::try_from(u).unwrap_or(i64::MAX)))
            .map(Some)
            .ok_or(Status::ClaimNotInteger(name)),
    }
}

impl Jwt {
    /// Parses `token` in `jwt_verify_lib`'s order of checks.
    pub fn parse(token: &str) -> Result<Jwt, Status> {
        let parts: Vec<&str> = token.split('.').collect();
        if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
            return Err(Status::BadFormat);
        }
        let header = json_object(parts[0], Status::HeaderBadBase64, Status::HeaderBadJson)?;
        let alg_name = match header.get("alg") {
            Some(Value::String(a)) => a.clone(),
            _ => return Err(Status::HeaderBadAlg),
        };
        let alg: jsonwebtoken::Algorithm = alg_name
            .parse()
            .map_err(|_| Status::HeaderNotImplementedAlg)?;
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(k)) => Some(k.clone()),
            Some(_) => return Err(Status::HeaderBadKid),
        };
        let payload = json_object(parts[1], Status::PayloadBadBase64, Status::PayloadBadJson)?;
        let iss = string_claim(&payload, "iss")?.unwrap_or_default();
        string_claim(&payload, "sub")?;
        int_claim(&payload, "iat")?;
        let nbf = int_claim(&payload, "nbf")?;
        let exp = int_claim(&payload, "exp")?;
        string_claim(&payload, "jti")?;
        let audiences = match payload.get("aud") {
            None => Vec::new(),
            Some(Value::String(a)) => vec![a.clone()],
            Some(Value::Array(list)) => list
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or(Status::AudNotString)?,
            Some(_) => return Err(Status::AudNotString),
        };
        let signature_b64 = parts[2].trim_end_matches('=').to_string();
        B64URL
            .decode(&signature_b64)
            .map_err(|_| Status::SignatureBadBase64)?;
        Ok(Jwt {
            signed: format!("{}.{}", parts[0], parts[1]),
            payload_b64: parts[1].to_string(),
            signature_b64,
            alg,
            alg_name,
            kid,
            payload,
            iss,
            nbf,
            exp,
            audiences,
        })
    }

    /// `nbf` and `exp` against `now`, with Envoy's 60 s of clock skew.
    pub fn check_time(&self, now: i64) -> Result<(), Status> {
        const SKEW: i64 = 60;
        if self.nbf.is_some_and(|nbf| now.saturating_add(SKEW) < nbf) {
            return Err(Status::NotYetValid);
        }
        if self
            .exp
            .is_some_and(|exp| exp != 0 && now > exp.saturating_add(SKEW))
        {
            return Err(Status::Expired);
        }
        Ok(())
    }

    /// Envoy's audience check: with audiences configured, one of the token's must be among
    /// them, compared without the URL scheme and trailing slash.
    pub fn check_audience(&self, allowed: &[String]) -> Result<(), Status> {
        if allowed.is_empty() {
            return Ok(());
        }
        let norm = |a: &str| -> String {
            let a = a
                .strip_prefix("http://")
                .or_else(|| a.strip_prefix("https://"))
                .unwrap_or(a);
            a.strip_suffix('/').unwrap_or(a).to_string()
        };
        let allowed: Vec<String> = allowed.iter().map(|a| norm(a)).collect();
        if self.audiences.iter().any(|a| allowed.contains(&norm(a))) {
            Ok(())
        } else {
            Err(Status::AudienceNotAllowed)
        }
    }
}
