//! The value forms of AuthorizationPolicy fields, compiled once per config: Istio's string
//! forms (`exact`, `prefix*`, `*suffix`, `*` for any non-empty value), path templates
//! (`{*}` one segment, `{**}` any rest), IPs and CIDRs, port numbers, and Istio's
//! `iss/sub` forms of requestPrincipals.

use ipnet::IpNet;
use regex::Regex;
use std::net::IpAddr;
use weft_model::{AuthzAttr, AuthzField};

/// One value of a string-valued field.
#[derive(Debug, Clone)]
pub(super) enum Str {
    Exact(String),
    Prefix(String),
    Suffix(String),
    /// `*`: present and non-empty.
    Any,
    /// `*` on a header or method: present, even if empty (Envoy's `present_match`).
    Present,
    /// A namespace with `*` inside (Istio turns each `*` into `.*`).
    Glob(Regex),
    /// A `{*}`/`{**}` path template, as an anchored regex.
    Template(Regex),
}

impl Str {
    fn parse(v: &str, case_insensitive: bool) -> Str {
        let v = if case_insensitive {
            v.to_ascii_lowercase()
        } else {
            v.to_string()
        };
        if v == "*" {
            Str::Any
        } else if let Some(p) = v.strip_suffix('*') {
            Str::Prefix(p.to_string())
        } else if let Some(s) = v.strip_prefix('*') {
            Str::Suffix(s.to_string())
        } else {
            Str::Exact(v)
        }
    }

    /// Header values and methods: `*` is presence.
    fn header(v: &str) -> Str {
        match v {
            "*" => Str::Present,
            _ => Str::parse(v, false),
        }
    }

    /// Namespaces: `*` anywhere matches any run of characters.
    fn namespace(v: &str) -> Result<Str, String> {
        if v == "*" || !v.contains('*') {
            return Ok(Str::parse(v, false));
        }
        let re: Vec<String> = v.split('*').map(regex::escape).collect();
        Regex::new(&format!("^{}$", re.join(".*")))
            .map(Str::Glob)
            .map_err(|e| format!("namespace {v:?}: {e}"))
    }

    fn path(v: &str) -> Result<Str, String> {
        if !(v.contains("{*}") || v.contains("{**}")) {
            return Ok(Str::parse(v, false));
        }
        // Envoy's uri_template: `{*}` is one non-empty segment of path characters, `{**}`
        // any run of them and `/` (it may be empty).
        const PCHAR: &str = r"[A-Za-z0-9\-._~%!$&'()+,;:@=]";
        let mut re = String::from("^");
        for (i, seg) in v.split('/').enumerate() {
            if i > 0 {
                re.push('/');
            }
            match seg {
                "{*}" => re.push_str(&format!("{PCHAR}+")),
                "{**}" => re.push_str(&format!("(?:{PCHAR}|/)*")),
                lit => re.push_str(&regex::escape(lit)),
            }
        }
        re.push('$');
        Regex::new(&re)
            .map(Str::Template)
            .map_err(|e| format!("path template {v:?}: {e}"))
    }

    fn matches(&self, value: &str) -> bool {
        match self {
            Str::Exact(e) => value == e,
            Str::Prefix(p) => value.starts_with(p.as_str()),
            Str::Suffix(s) => value.ends_with(s.as_str()),
            Str::Any => !value.is_empty(),
            Str::Present => true,
            Str::Template(re) | Str::Glob(re) => re.is_match(value),
        }
    }
}

/// The values of one field, by kind of attribute.
#[derive(Debug, Clone)]
pub(super) enum Values {
    Strings(Vec<Str>),
    Ips(Vec<IpNet>),
    Ports(Vec<u16>),
    /// requestPrincipals: `iss/sub` forms (issuer matcher, subject matcher).
    RequestPrincipals(Vec<(Str, Str)>),
}

/// A compiled [`AuthzField`].
#[derive(Debug, Clone)]
pub(super) struct Field {
    pub attr: AuthzAttr,
    values: Option<Values>,
    not_values: Option<Values>,
}

/// An attribute's value on one request.
pub(super) enum Actual<'a> {
    Str(&'a str),
    Owned(String),
    Ip(IpAddr),
    Port(u16),
    /// A JWT claim: a string, or a list whose strings each count.
    Claim(&'a serde_json::Value),
    /// The JWT's issuer and subject.
    RequestPrincipal(&'a str, Option<&'a str>),
    Absent,
}

/// Istio's requestPrincipals form: split at the last `/` into issuer and subject; `*` any
/// (non-empty) both; `*x` a suffix (of the issuer when `x` has a `/`, the subject is then
/// exact); `x*` a prefix (of the subject when `x` has a `/`, the issuer then exact);
/// otherwise both exact (no `/`: an empty subject).
fn request_principal(v: &str) -> (Str, Str) {
    let (iss, sub, slash) = match v.rfind('/') {
        Some(i) => (&v[..i], &v[i + 1..], true),
        None => (v, "", false),
    };
    let exact = |s: &str| Str::Exact(s.to_string());
    if v == "*" {
        (Str::Any, Str::Any)
    } else if let Some(rest) = v.strip_prefix('*') {
        match slash {
            true if iss == "*" => (Str::Any, exact(sub)),
            true => (Str::Suffix(iss[1..].to_string()), exact(sub)),
            false => (Str::Any, Str::Suffix(rest.to_string())),
        }
    } else if let Some(rest) = v.strip_suffix('*') {
        match slash {
            true if sub == "*" => (exact(iss), Str::Any),
            true => (exact(iss), Str::Prefix(sub[..sub.len() - 1].to_string())),
            false => (Str::Prefix(rest.to_string()), Str::Any),
        }
    } else {
        (exact(iss), exact(sub))
    }
}

fn ip_net(v: &str) -> Result<IpNet, String> {
    v.parse::<IpNet>()
        .or_else(|_| v.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{v:?} is not an IP address or CIDR"))
}

fn compile_values(attr: &AuthzAttr, list: &[String]) -> Result<Option<Values>, String> {
    if list.is_empty() {
        return Ok(None);
    }
    Ok(Some(match attr {
        AuthzAttr::SourceIp | AuthzAttr::RemoteIp | AuthzAttr::DestinationIp => {
            Values::Ips(list.iter().map(|v| ip_net(v)).collect::<Result<_, _>>()?)
        }
        AuthzAttr::Port => Values::Ports(
            list.iter()
                .map(|v| v.parse().map_err(|_| format!("{v:?} is not a port number")))
                .collect::<Result<_, _>>()?,
        ),
        AuthzAttr::Path => Values::Strings(
            list.iter()
                .map(|v| Str::path(v))
                .collect::<Result<_, _>>()?,
        ),
        AuthzAttr::Host => Values::Strings(list.iter().map(|v| Str::parse(v, true)).collect()),
        AuthzAttr::Header(_) | AuthzAttr::Method => {
            Values::Strings(list.iter().map(|v| Str::header(v)).collect())
        }
        AuthzAttr::RequestPrincipal => {
            Values::RequestPrincipals(list.iter().map(|v| request_principal(v)).collect())
        }
        AuthzAttr::Namespace => Values::Strings(
            list.iter()
                .map(|v| Str::namespace(v))
                .collect::<Result<_, _>>()?,
        ),
        _ => Values::Strings(list.iter().map(|v| Str::parse(v, false)).collect()),
    }))
}

impl Field {
    pub(super) fn compile(f: &AuthzField) -> Result<Field, String> {
        Ok(Field {
            attr: f.attr.clone(),
            values: compile_values(&f.attr, &f.values)?,
            not_values: compile_values(&f.attr, &f.not_values)?,
        })
    }

    /// In `values` (if any are given) and in none of `not_values`.
    pub(super) fn matches(&self, actual: &Actual) -> bool {
        self.values.as_ref().is_none_or(|v| any(v, actual))
            && !self.not_values.as_ref().is_some_and(|v| any(v, actual))
    }
}

fn any(values: &Values, actual: &Actual) -> bool {
    match (values, actual) {
        (Values::Strings(list), Actual::Str(s)) => list.iter().any(|m| m.matches(s)),
        (Values::Strings(list), Actual::Owned(s)) => list.iter().any(|m| m.matches(s)),
        (Values::Ips(list), Actual::Ip(ip)) => list.iter().any(|n| n.contains(ip)),
        (Values::Ports(list), Actual::Port(p)) => list.contains(p),
        (Values::Strings(list), Actual::Claim(v)) => crate::authn::claims::strings(v)
            .iter()
            .any(|s| list.iter().any(|m| m.matches(s))),
        (Values::RequestPrincipals(list), Actual::RequestPrincipal(iss, sub)) => list
            .iter()
            .any(|(mi, ms)| mi.matches(iss) && sub.is_some_and(|s| ms.matches(s))),
        _ => false,
    }
}
