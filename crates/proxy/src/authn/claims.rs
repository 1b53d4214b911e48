//! A verified token's claims as the rest of the proxy reads them: nested lookup
//! (`claims[a][b]`), the string values a condition compares (a string claim, or each string
//! of a list claim — Envoy's list-or-string metadata matcher), space-delimited claims
//! turned into lists, and the claim value Envoy copies into a header (strings, integers,
//! numbers, booleans).

use serde_json::{Map, Value};

/// The claim at `path` (each element one level down).
pub fn at<'a>(claims: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(claims, |v, key| v.get(key.as_str()))
}

/// The strings a condition compares against: the claim itself, or the strings of a list.
pub fn strings(v: &Value) -> Vec<&str> {
    match v {
        Value::String(s) => vec![s.as_str()],
        Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// The payload with each of `space_delimited` (top-level string claims) split into a list,
/// as Envoy's `normalize_payload_in_metadata` does.
pub fn normalize(mut payload: Map<String, Value>, space_delimited: &[String]) -> Value {
    for name in space_delimited {
        if let Some(Value::String(s)) = payload.get(name) {
            let list = s
                .split(' ')
                .filter(|p| !p.is_empty())
                .map(|p| Value::String(p.to_string()))
                .collect();
            payload.insert(name.clone(), Value::Array(list));
        }
    }
    Value::Object(payload)
}

/// The value `outputClaimToHeaders` writes for `claim` (`a.b` names a nested claim); `None`
/// for a missing claim or one that is not a string, number or boolean.
pub fn header_value(payload: &Map<String, Value>, claim: &str) -> Option<String> {
    let mut parts = claim.split('.');
    let mut v = payload.get(parts.next()?)?;
    for p in parts {
        v = v.get(p)?;
    }
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_u64(), n.as_f64()) {
            (Some(u), _) => u.to_string(),
            // Envoy prints other numbers with C++'s `std::to_string` (six decimals).
            (None, Some(f)) => format!("{f:.6}"),
            (None, None) => return None,
        },
        _ => return None,
    };
    (!s.is_empty()).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn claims_are_read_nested_as_lists_and_for_headers() {
        let Value::Object(payload) = json!({
            "sub": "alice", "scope": "read  write", "n": 42, "f": 1.5, "ok": true,
            "org": {"team": ["core", "infra"]}, "list": ["a", 1]
        }) else {
            unreachable!()
        };
        let claims = normalize(payload.clone(), &["scope".to_string()]);
        assert_eq!(
            strings(at(&claims, &["scope".into()]).unwrap()),
            ["read", "write"]
        );
        assert_eq!(
            strings(at(&claims, &["org".into(), "team".into()]).unwrap()),
            ["core", "infra"]
        );
        assert_eq!(strings(at(&claims, &["list".into()]).unwrap()), ["a"]);
        assert!(at(&claims, &["org".into(), "missing".into()]).is_none());
        assert_eq!(header_value(&payload, "sub").as_deref(), Some("alice"));
        assert_eq!(header_value(&payload, "n").as_deref(), Some("42"));
        assert_eq!(header_value(&payload, "f").as_deref(), Some("1.500000"));
        assert_eq!(header_value(&payload, "ok").as_deref(), Some("true"));
        assert_eq!(
            header_value(&payload, "org"),
            None,
            "objects are not copied"
        );
        assert_eq!(header_value(&payload, "org.team"), None, "nor lists");
        assert_eq!(
            header_value(&payload, "scope").as_deref(),
            Some("read  write"),
            "headers get the claim as sent"
        );
    }
}
