//! Rules shared by several kinds: durations, ports, string matches, host names,
//! IPs/CIDRs, DNS labels, selectors, exportTo, Istio host-name matching and
//! header names/values.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::Errs;
use crate::StringMatch;

/// Is `s` an Istio duration (`1h`, `5m`, `2s`, `0.5s`, `250ms`) of at least 1ms?
pub fn valid_duration(s: &str) -> bool {
    duration_ms(s).is_some_and(|ms| ms >= 1.0)
}

/// The value of a duration in milliseconds (`None` when it is not a duration).
pub fn duration_ms(s: &str) -> Option<f64> {
    let (num, unit_ms) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix("ns") {
        (n, 0.000_001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3_600_000.0)
    } else {
        return None;
    };
    if num.is_empty()
        || !num
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == '-')
    {
        return None;
    }
    num.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .map(|v| v * unit_ms)
}

/// Checks a duration field: a duration, whole milliseconds, and at least 1ms
/// unless `allow_zero` (fields where `0s` is meaningful).
pub(crate) fn duration(errs: &mut Errs, path: &str, value: &str, allow_zero: bool) {
    let what = if allow_zero {
        "of 0s or more"
    } else {
        "greater than or equal to 1ms"
    };
    match duration_ms(value) {
        Some(ms) if ms >= 0.0 && (allow_zero || ms >= 1.0) => {
            if (ms - ms.round()).abs() > 1e-6 {
                errs.at(
                    path,
                    format!(
                        "{value:?} must have millisecond precision (e.g. \"2s\" or \"2001ms\")"
                    ),
                );
            }
        }
        _ => errs.at(
            path,
            format!("{value:?} must be a valid duration {what} (e.g. \"2s\", \"250ms\", \"1m\")"),
        ),
    }
}

pub(crate) fn port_ok(p: u32) -> bool {
    (1..=65535).contains(&p)
}

/// Checks a port number is within 1-65535.
pub(crate) fn port(errs: &mut Errs, path: &str, p: u32) {
    if !port_ok(p) {
        errs.at(
            path,
            format!("port {p} is invalid: port must be between 1-65535"),
        );
    }
}

/// Which `StringMatch` forms may be empty.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum EmptyPrefix {
    Allowed,
    Rejected,
}

/// `StringMatch`: one of exact/prefix/regex, RE2 regexes, no empty prefix/regex
/// unless allowed.
pub(crate) fn string_match(
    m: &StringMatch,
    at: &str,
    what: &str,
    empty: EmptyPrefix,
    errs: &mut Errs,
) {
    let set = [m.exact.is_some(), m.prefix.is_some(), m.regex.is_some()]
        .iter()
        .filter(|b| **b)
        .count();
    if set > 1 {
        errs.at(
            at,
            format!("only one of exact, prefix or regex may be set in a {what} match; keep one"),
        );
    }
    if empty == EmptyPrefix::Rejected && m.prefix.as_deref() == Some("") {
        errs.at(
            format!("{at}.prefix"),
            format!("{what} match with an empty prefix is not allowed (only uri may use an empty prefix); remove the match or give a prefix"),
        );
    }
    if let Some(re) = &m.regex {
        if re.is_empty() {
            errs.at(
                format!("{at}.regex"),
                format!("{what} match with an empty regex is not allowed"),
            );
        } else {
            regex(errs, &format!("{at}.regex"), re, what);
        }
    }
}

/// Checks `re` compiles as an RE2-compatible regular expression.
pub(crate) fn regex(errs: &mut Errs, path: &str, re: &str, what: &str) {
    if re.len() > 1024 {
        errs.at(path, format!("{what} regex is too large ({} characters, at most 1024 allowed: Envoy limits RE2 program size); simplify it or split the match", re.len()));
        return;
    }
    if let Err(e) = regex::Regex::new(re) {
        let first = e
            .to_string()
            .lines()
            .rfind(|l| l.trim_start().starts_with("error:"))
            .unwrap_or("invalid syntax")
            .trim()
            .to_owned();
        errs.at(
            path,
            format!("{what} regex {re:?} is not a valid RE2 expression ({first})"),
        );
    }
}

/// A DNS-1123 label (letters, digits, `-`; 1-63 chars; alphanumeric at both ends).
pub(crate) fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A namespace reference as Istio checks it (`labels.IsDNS1123Label`: letters of either
/// case, digits, `-`). Kubernetes names are lowercase, so an uppercase one matches nothing.
pub(crate) fn is_namespace(s: &str) -> bool {
    is_dns_label(s)
}

/// Dot-separated DNS-1123 labels (a trailing dot is accepted) whose last label is not all
/// digits (Istio's `ValidateDNS1123Labels`: `foo.123` is no domain name).
pub(crate) fn is_dns_name(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    let tld_numeric = s
        .rsplit('.')
        .next()
        .is_some_and(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()));
    !s.is_empty() && s.len() <= 255 && s.split('.').all(is_dns_label) && !tld_numeric
}

/// Host forms accepted by VirtualService/DestinationRule/ServiceEntry: `*`, a DNS
/// name, or a DNS name whose first label is `*`, `*x` or `*-x`.
pub(crate) fn is_wildcard_domain(s: &str) -> bool {
    if s == "*" {
        return true;
    }
    let (first, rest) = match s.split_once('.') {
        Some((f, r)) => (f, Some(r)),
        None => (s, None),
    };
    let first_ok = match first.strip_prefix('*') {
        Some("") => true,
        Some(tail) => is_dns_label(tail.strip_prefix('-').unwrap_or(tail)),
        None => is_dns_label(first),
    };
    first_ok && rest.is_none_or(is_dns_name)
}

/// The SNI names AUTO_PASSTHROUGH gateways route on, `outbound_.<port>_._.<host>`, which
/// Istio accepts as hosts of a gateway-bound VirtualService with TLS routes
/// (`ValidateWildcardDomainForVirtualServiceBoundToGateway`).
pub(crate) fn is_auto_passthrough_sni(s: &str) -> bool {
    let parts: Vec<&str> = s.split('_').collect();
    parts.len() >= 4
        && parts[0] == "outbound"
        && parts[1]
            .trim_matches('.')
            .bytes()
            .any(|b| b.is_ascii_digit())
        && parts[3]
            .trim_matches('.')
            .bytes()
            .any(|b| b.is_ascii_alphabetic())
}

/// Checks a host name, explaining what is wrong.
pub(crate) fn host(errs: &mut Errs, path: &str, h: &str) {
    if h.is_empty() {
        errs.at(path, "host must not be empty: give a service name or FQDN");
    } else if !is_wildcard_domain(h) && h.parse::<IpAddr>().is_err() {
        errs.at(
            path,
            format!("host {h:?} is not a valid domain name: use an FQDN such as reviews.prod.svc.cluster.local, optionally starting with a single `*.` label"),
        );
    }
}

/// Checks a host where Istio takes a domain only (`ValidateWildcardDomain`: ServiceEntry
/// hosts, DestinationRule hosts, route destinations): an IP address is refused there.
pub(crate) fn domain_host(errs: &mut Errs, path: &str, h: &str) {
    if h.parse::<IpAddr>().is_ok() {
        errs.at(path, format!("host {h:?} is an IP address, not a domain name: name the service (a ServiceEntry host such as db.example.com, with the IP in its addresses or endpoints)"));
    } else {
        host(errs, path, h);
    }
}

/// An IP address or CIDR block (`10.0.0.0/8`, `2001:db8::/32`).
pub(crate) fn is_ip_or_cidr(s: &str) -> bool {
    match s.split_once('/') {
        None => s.parse::<IpAddr>().is_ok(),
        Some((ip, len)) => match (ip.parse::<IpAddr>(), len.parse::<u8>()) {
            (Ok(IpAddr::V4(_)), Ok(n)) => n <= 32 && !len.starts_with('+'),
            (Ok(IpAddr::V6(_)), Ok(n)) => n <= 128 && !len.starts_with('+'),
            _ => false,
        },
    }
}

pub(crate) fn ip_or_cidr(errs: &mut Errs, path: &str, s: &str, what: &str) {
    if !is_ip_or_cidr(s) {
        errs.at(path, format!("{what} {s:?} is not a valid IP address or CIDR range (e.g. 10.0.0.1 or 10.0.0.0/16)"));
    }
}

/// A Kubernetes label name or value part: at most 63 of `[A-Za-z0-9._-]`, starting and
/// ending alphanumeric (a value may also be empty).
fn label_part(s: &str) -> bool {
    s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && s.bytes().next().is_none_or(|b| b.is_ascii_alphanumeric())
        && s.bytes().last().is_none_or(|b| b.is_ascii_alphanumeric())
}

/// Labels as Istio's `labels.Instance.Validate` checks them (Kubernetes' syntax): keys are
/// `[prefix/]name` with a DNS-subdomain prefix, values label parts.
pub(crate) fn k8s_labels(errs: &mut Errs, path: &str, labels: &BTreeMap<String, String>) {
    for (k, v) in labels {
        let (prefix, name) = match k.rsplit_once('/') {
            Some((p, n)) => (Some(p), n),
            None => (None, k.as_str()),
        };
        let key_ok = !name.is_empty()
            && label_part(name)
            && prefix.is_none_or(|p| !p.is_empty() && p.len() <= 253 && is_dns_name(p));
        if !key_ok {
            errs.at(
                format!("{path}.{k}"),
                format!("invalid label key {k:?}: a key is an optional DNS-subdomain prefix and `/`, then at most 63 letters, digits, `-`, `_`, `.` starting and ending with a letter or digit"),
            );
        }
        if !label_part(v) {
            errs.at(
                format!("{path}.{k}"),
                format!("invalid label value {v:?} for {k:?}: at most 63 letters, digits, `-`, `_`, `.`, starting and ending with a letter or digit"),
            );
        }
    }
}

/// Istio's `validateWorkloadSelector` warning: a selector without labels selects every
/// workload of the namespace.
pub(crate) fn selector_without_labels(
    errs: &mut Errs,
    path: &str,
    labels: &BTreeMap<String, String>,
) {
    if labels.is_empty() {
        errs.warn(
            super::WarningKind::Istio,
            path,
            "workload selector specified without labels: it applies to every workload of the namespace; list labels, or remove the selector to say so",
        );
    }
}

/// An HTTP header name as Istio's `validHeaderNameRegex` (RFC 7230 token characters).
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Status codes Go's `net/http.StatusText` knows (what Istio accepts as a `retryOn` code).
pub(crate) fn is_known_status(code: u32) -> bool {
    matches!(code, 100..=103 | 200..=208 | 226 | 300..=305 | 307 | 308 | 400..=418 | 421..=426 | 428 | 429 | 431 | 451 | 500..=508 | 510 | 511)
}

/// Selector labels: no empty keys, no `*` in keys or values.
pub(crate) fn selector_labels(errs: &mut Errs, path: &str, labels: &BTreeMap<String, String>) {
    for (k, v) in labels {
        let at = format!("{path}.{k}");
        if k.is_empty() {
            errs.key(at, "selector label keys must not be empty");
        } else if k.contains('*') || v.contains('*') {
            errs.at(
                at,
                format!(
                    "wildcard is not supported in selector ({k}: {v:?}): list exact label values"
                ),
            );
        } else if v.len() > 63 {
            errs.at(at, format!("selector value for {k:?} is {} characters long, at most 63 allowed (a label value)", v.len()));
        }
    }
}

/// The CRD's `maxItems`: a list longer than `max` is refused by the API server.
pub(crate) fn max_items(errs: &mut Errs, path: &str, len: usize, max: usize) {
    if len > max {
        errs.key(
            path,
            format!("{path} has {len} entries, at most {max} allowed (the CRD's limit); split the resource"),
        );
    }
}

/// `exportTo`: `.`, `*`, (`~` when allowed) or namespace names; no duplicates;
/// `*` and `~` alone.
pub(crate) fn export_to(errs: &mut Errs, list: &[String], own_ns: &str, allow_tilde: bool) {
    let mut seen = BTreeSet::new();
    for (i, e) in list.iter().enumerate() {
        let at = format!("spec.exportTo[{i}]");
        let ok = e == "." || e == "*" || (allow_tilde && e == "~") || is_namespace(e);
        if !ok {
            let forms = if allow_tilde {
                "`.`, `*`, `~`"
            } else {
                "`.`, `*`"
            };
            errs.at(
                &at,
                format!("exportTo entry {e:?} is invalid: use {forms} or a namespace name"),
            );
            continue;
        }
        let norm = if e == "." { own_ns } else { e.as_str() };
        if !seen.insert(norm.to_owned()) {
            errs.at(
                &at,
                format!("exportTo entry {e:?} duplicates an earlier entry (`.` means {own_ns})"),
            );
        }
        if (e == "*" || e == "~") && list.len() > 1 {
            errs.at(&at, format!("exportTo {e:?} must be the only entry"));
        }
    }
}

/// Istio's `host.Name.Matches`: do the two (possibly `*`-prefixed) host names
/// overlap, in either direction (`*.foo.bar` and `*.bar`, `*` and anything)?
pub(crate) fn hosts_overlap(a: &str, b: &str) -> bool {
    match (a.strip_prefix('*'), b.strip_prefix('*')) {
        (Some(sa), Some(sb)) => sa.ends_with(sb) || sb.ends_with(sa),
        (Some(sa), None) => b.ends_with(sa),
        (None, Some(sb)) => a.ends_with(sb),
        (None, None) => a == b,
    }
}

/// Istio's `host.Name.SubsetOf`: is every name matched by `n` also matched by
/// `o` (`a.foo.com` and `*.a.foo.com` fall within `*.foo.com`)?
pub(crate) fn host_within(n: &str, o: &str) -> bool {
    match (n.strip_prefix('*'), o.strip_prefix('*')) {
        (Some(sn), Some(so)) => n.len() >= o.len() && sn.ends_with(so),
        (Some(_), None) => false,
        (None, Some(so)) => n.ends_with(so),
        (None, None) => n == o,
    }
}

/// An HTTP header name (`^[-_A-Za-z0-9]+$`; pseudo-headers with a leading `:`
/// when `pseudo`).
pub(crate) fn is_header_name(s: &str, pseudo: bool) -> bool {
    let body = if pseudo {
        s.strip_prefix(':').unwrap_or(s)
    } else {
        s
    };
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// An Envoy header value format: every `%` is `%%` or opens a `%COMMAND...%`.
pub(crate) fn is_envoy_format(v: &str) -> bool {
    let mut rest = v;
    while let Some(i) = rest.find('%') {
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('%') {
            rest = r;
            continue;
        }
        let Some(end) = rest.find('%') else {
            return false;
        };
        let cmd = &rest[..end];
        let op = cmd.split(['(', ':']).next().unwrap_or_default();
        if op.is_empty()
            || !op
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        {
            return false;
        }
        rest = &rest[end + 1..];
    }
    true
}

/// Checks a percentage value is within [0, 100].
pub(crate) fn percent(errs: &mut Errs, path: &str, what: &str, v: f64) {
    if !(0.0..=100.0).contains(&v) {
        let hint = if v < 0.0 {
            "it must not be negative"
        } else {
            "it must not exceed 100"
        };
        errs.at(
            path,
            format!("{what} must be within [0, 100] ({v} given): {hint}"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        for ok in ["1h", "5m", "2s", "0.5s", "250ms", "1ms"] {
            assert!(valid_duration(ok), "{ok}");
        }
        for bad in ["", "5", "0s", "0.1ms", "abc", "1d", "-2s"] {
            assert!(!valid_duration(bad), "{bad}");
        }
    }

    #[test]
    fn hosts() {
        for ok in [
            "*",
            "a",
            "reviews.prod.svc.cluster.local",
            "*.x.com",
            "*bar.com",
            "x.com.",
        ] {
            assert!(is_wildcard_domain(ok), "{ok}");
        }
        for bad in ["-", "foo.ba!r", "a.*.com", "", "a..b"] {
            assert!(!is_wildcard_domain(bad), "{bad}");
        }
    }

    #[test]
    fn cidrs_and_formats() {
        assert!(
            is_ip_or_cidr("10.0.0.0/8") && is_ip_or_cidr("::1") && !is_ip_or_cidr("10.0.0.0/33")
        );
        assert!(is_envoy_format(
            "%DOWNSTREAM_REMOTE_ADDRESS% x %% y %REQ(x-a)%"
        ));
        assert!(!is_envoy_format("abcd%oijasodifj"));
    }
}
