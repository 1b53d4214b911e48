//! Minimal parser for Envoy/Istio's `x-forwarded-client-cert` (XFCC) header.
//!
//! The header is a comma-separated list of elements (one per mTLS hop, most
//! recent last); each element is a `;`-separated list of `Key=Value` pairs
//! whose values may be double-quoted (quotes protect `,`, `;` and `=`, and
//! `\"` escapes a quote). Example:
//!
//! ```text
//! By=spiffe://cluster.local/ns/necpgame/sa/inventory;Hash=ab12;URI=spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway
//! ```

/// Splits `s` on `sep`, ignoring separators inside double quotes.
fn split_unquoted(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut in_quotes = false;
    let mut escaped = false;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            c if c == sep && !in_quotes => {
                parts.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// Removes surrounding double quotes and unescapes `\"` / `\\`.
fn unquote(v: &str) -> String {
    let v = v.trim();
    match v
        .strip_prefix('"')
        .and_then(|inner| inner.strip_suffix('"'))
    {
        Some(inner) => {
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    if let Some(next) = chars.next() {
                        out.push(next);
                    }
                } else {
                    out.push(c);
                }
            }
            out
        }
        None => v.to_string(),
    }
}

/// Returns the `(key, value)` pairs of one XFCC element (keys as written).
pub fn element_fields(element: &str) -> Vec<(String, String)> {
    split_unquoted(element, ';')
        .into_iter()
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            Some((k.trim().to_string(), unquote(v)))
        })
        .collect()
}

/// Extracts the caller's SPIFFE id (the `URI=` field) from an XFCC header
/// value.
///
/// When several elements are present (Envoy `APPEND_FORWARD`), the last one
/// describes the immediate downstream peer and is used. Returns `None` when
/// the header has no non-empty `URI` field.
pub fn peer_from_xfcc(value: &str) -> Option<String> {
    split_unquoted(value, ',')
        .into_iter()
        .rev()
        .find(|e| !e.trim().is_empty())
        .and_then(|element| {
            element_fields(element)
                .into_iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("uri"))
                .map(|(_, v)| v)
        })
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_example() {
        let h = "By=spiffe://cluster.local/ns/necpgame/sa/inventory;URI=spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway";
        assert_eq!(
            peer_from_xfcc(h).as_deref(),
            Some("spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway")
        );
    }

    #[test]
    fn quoted_subject_and_multiple_elements() {
        let h = "By=spiffe://a;URI=spiffe://first,By=spiffe://b;Hash=00;Subject=\"CN=x,O=y;z\";URI=\"spiffe://second\"";
        assert_eq!(peer_from_xfcc(h).as_deref(), Some("spiffe://second"));
        let fields = element_fields("Subject=\"a\\\"b\";uri=x");
        assert_eq!(fields[0], ("Subject".into(), "a\"b".into()));
        assert_eq!(fields[1], ("uri".into(), "x".into()));
    }

    #[test]
    fn missing_uri() {
        assert_eq!(peer_from_xfcc("By=spiffe://a;Hash=1"), None);
        assert_eq!(peer_from_xfcc(""), None);
        assert_eq!(peer_from_xfcc("URI="), None);
    }
}
