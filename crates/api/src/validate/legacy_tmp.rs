//! Semantic validation of loaded resources — the skeleton's subset of Istio's rules:
//! match-string exclusivity, route weights, durations, required hosts and ports, subset
//! names. Every problem is reported at the resource's file:line with what to do.
//! (Istio's full rule set comes with the API-fidelity work.)

use crate::{Resource, Spec, StringMatch};
use std::collections::BTreeSet;

/// A validation problem, located at its resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    pub file: String,
    pub line: usize,
    pub resource: String,
    pub message: String,
}

impl std::fmt::Display for ValidationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.file, self.line, self.resource, self.message
        )
    }
}

impl std::error::Error for ValidationError {}

/// Validates every resource; an empty result means all are valid.
pub fn validate_all(resources: &[Resource]) -> Vec<ValidationError> {
    let mut out = Vec::new();
    for r in resources {
        for message in validate(r) {
            out.push(ValidationError {
                file: r.source.file.clone(),
                line: r.source.line,
                resource: r.key(),
                message,
            });
        }
    }
    out
}

fn string_match(m: &StringMatch, at: &str, errs: &mut Vec<String>) {
    let set = [m.exact.is_some(), m.prefix.is_some(), m.regex.is_some()]
        .iter()
        .filter(|b| **b)
        .count();
    if set > 1 {
        errs.push(format!(
            "{at}: only one of exact, prefix or regex may be set"
        ));
    }
}

/// Is `s` an Istio duration (`1h`, `5m`, `2s`, `0.5s`, `250ms`) of at least 1ms?
pub fn valid_duration(s: &str) -> bool {
    let (num, unit_ms) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3_600_000.0)
    } else {
        return false;
    };
    num.parse::<f64>()
        .map(|v| v.is_finite() && v * unit_ms >= 1.0)
        .unwrap_or(false)
}

fn port_ok(p: u32) -> bool {
    (1..=65535).contains(&p)
}

fn validate(r: &Resource) -> Vec<String> {
    let mut errs = Vec::new();
    match &r.spec {
        Spec::VirtualService(vs) => {
            // A VirtualService without hosts can only be a delegate, and delegates bind no gateways.
            if vs.hosts.is_empty() && !vs.gateways.is_empty() {
                errs.push("spec.hosts: at least one host is required (only a delegate VirtualService may omit hosts, and it must not set gateways)".into());
            }
            for (i, h) in vs.http.iter().enumerate() {
                for (j, m) in h.r#match.iter().enumerate() {
                    let at = format!("spec.http[{i}].match[{j}]");
                    for (name, sm) in [
                        ("uri", &m.uri),
                        ("method", &m.method),
                        ("authority", &m.authority),
                        ("scheme", &m.scheme),
                    ] {
                        if let Some(sm) = sm {
                            string_match(sm, &format!("{at}.{name}"), &mut errs);
                        }
                    }
                    for (k, sm) in &m.headers {
                        string_match(sm, &format!("{at}.headers.{k}"), &mut errs);
                    }
                }
                if let Some(t) = &h.timeout {
                    if !valid_duration(t) {
                        errs.push(format!("spec.http[{i}].timeout: {t:?} is not a duration of at least 1ms (e.g. \"2s\", \"250ms\")"));
                    }
                }
                let weights: Vec<i32> = h.route.iter().map(|d| d.weight.unwrap_or(0)).collect();
                if weights.iter().any(|w| *w < 0) {
                    errs.push(format!(
                        "spec.http[{i}].route: weights must not be negative"
                    ));
                }
                if weights.len() > 1 && weights.iter().all(|w| *w == 0) {
                    errs.push(format!("spec.http[{i}].route: with several destinations at least one needs a weight above 0"));
                }
                for (j, d) in h.route.iter().enumerate() {
                    if d.destination.host.is_empty() {
                        errs.push(format!(
                            "spec.http[{i}].route[{j}].destination.host is required"
                        ));
                    }
                }
            }
        }
        Spec::Gateway(gw) => {
            for (i, s) in gw.servers.iter().enumerate() {
                match &s.port {
                    None => errs.push(format!("spec.servers[{i}].port is required")),
                    Some(p) if !port_ok(p.number) => errs.push(format!(
                        "spec.servers[{i}].port.number {} is outside 1-65535",
                        p.number
                    )),
                    _ => {}
                }
                if s.hosts.is_empty() {
                    errs.push(format!(
                        "spec.servers[{i}].hosts: at least one host is required"
                    ));
                }
            }
        }
        Spec::DestinationRule(dr) => {
            if dr.host.is_empty() {
                errs.push("spec.host is required".into());
            }
            let mut seen = BTreeSet::new();
            for (i, s) in dr.subsets.iter().enumerate() {
                if s.name.is_empty() {
                    errs.push(format!("spec.subsets[{i}].name is required"));
                } else if !seen.insert(&s.name) {
                    errs.push(format!("spec.subsets[{i}].name {:?} is used twice", s.name));
                }
            }
        }
        Spec::ServiceEntry(se) => {
            if se.hosts.is_empty() {
                errs.push("spec.hosts: at least one host is required".into());
            }
            for (i, p) in se.ports.iter().enumerate() {
                if !port_ok(p.number) {
                    errs.push(format!(
                        "spec.ports[{i}].number {} is outside 1-65535",
                        p.number
                    ));
                }
            }
        }
        Spec::WorkloadEntry(we) => {
            for (name, p) in &we.ports {
                if !port_ok(*p) {
                    errs.push(format!("spec.ports.{name}: {p} is outside 1-65535"));
                }
            }
        }
        _ => {}
    }
    errs
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
    fn double_match_and_zero_weights_are_rejected() {
        let yaml = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a, namespace: x}\nspec:\n  hosts: [a]\n  http:\n  - match:\n    - uri: {exact: /a, prefix: /b}\n    route:\n    - destination: {host: a}\n      weight: 0\n    - destination: {host: b}\n      weight: 0\n";
        let loaded = crate::load_str(yaml, "t.yaml");
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        let errs = validate_all(&loaded.resources);
        let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(errs.len(), 2, "{text:?}");
        assert!(
            text[0].starts_with(
                "t.yaml:1: VirtualService/x/a: spec.http[0].match[0].uri: only one of"
            ),
            "{text:?}"
        );
        assert!(text[1].contains("at least one needs a weight"), "{text:?}");
    }
}
