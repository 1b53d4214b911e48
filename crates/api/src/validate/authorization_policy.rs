//! AuthorizationPolicy rules, as istio/istio's `ValidateAuthorizationPolicy` and
//! `checkDryRunAnnotation` (`pkg/config/validation/validation.go`), the helpers of
//! `pkg/config/security` (`CheckServiceAccount`, `CheckTrustDomainValues`,
//! `ValidateAttribute`, `CheckValidPathTemplate`) and the CRD's CEL rules:
//! selector/targetRef exclusivity, action/provider, the dry-run annotation, rules
//! (`from`/`to`/`when`), source and operation value forms, condition keys, the identity
//! fields CUSTOM policies cannot use, and the DENY-on-TCP warning.

use super::common::{is_ip_or_cidr, max_items, selector_labels, selector_without_labels};
use super::policy_target::target_refs;
use super::{Errs, WarningKind};
use crate::{Action, AuthorizationPolicy, Condition, Operation, Resource, Rule, RuleSource};

const KEYS: &[&str] = &[
    "source.ip",
    "remote.ip",
    "source.namespace",
    "source.serviceAccount",
    "source.principal",
    "source.trustDomain",
    "request.auth.principal",
    "request.auth.audiences",
    "request.auth.presenter",
    "destination.ip",
    "destination.port",
    "connection.sni",
];

pub(super) const DRY_RUN: &str = "istio.io/dry-run";

pub(super) fn validate(r: &Resource, ap: &AuthorizationPolicy, errs: &mut Errs) {
    if let Some(sel) = &ap.selector {
        selector_labels(errs, "spec.selector.matchLabels", &sel.match_labels);
        selector_without_labels(errs, "spec.selector", &sel.match_labels);
    }
    target_refs(
        errs,
        ap.selector.is_some(),
        ap.target_ref.as_ref(),
        &ap.target_refs,
    );
    let action = ap.action.unwrap_or(Action::Allow);
    let provider = ap
        .provider
        .as_ref()
        .and_then(|p| p.name.as_deref())
        .unwrap_or_default();
    if action == Action::Custom && provider.is_empty() && ap.rules.is_some() {
        errs.key("spec.action", "CUSTOM action requires a non-empty provider.name (an extensionProviders entry of MeshConfig)");
    }
    if action != Action::Custom && ap.provider.is_some() {
        errs.key(
            "spec.provider",
            "provider may only be set with action CUSTOM",
        );
    }
    if ap.rules.is_none() && matches!(action, Action::Deny | Action::Custom) {
        let a = if action == Action::Deny {
            "DENY"
        } else {
            "CUSTOM"
        };
        errs.key("spec.action", format!("{a} action without rules would never match; add an empty rule {{}} to match everything"));
    }
    if let Some(v) = r.metadata.annotations.get(DRY_RUN) {
        let at = format!("metadata.annotations.{DRY_RUN}");
        // Go's strconv.ParseBool, as Istio parses it.
        const BOOLS: &[&str] = &[
            "1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False",
        ];
        if !BOOLS.contains(&v.as_str()) {
            errs.at(
                &at,
                format!("{DRY_RUN} annotation must be \"true\" or \"false\" ({v:?} given)"),
            );
        } else if !matches!(action, Action::Allow | Action::Deny) {
            errs.key(
                &at,
                format!("{DRY_RUN} is only supported on ALLOW and DENY policies"),
            );
        }
    }
    max_items(
        errs,
        "spec.rules",
        ap.rules.as_ref().map_or(0, Vec::len),
        512,
    );
    for (i, rule) in ap.rules.iter().flatten().enumerate() {
        max_items(
            errs,
            &format!("spec.rules[{i}].from"),
            rule.from.as_ref().map_or(0, Vec::len),
            512,
        );
        let at = format!("spec.rules[{i}]");
        if action == Action::Custom {
            custom_restrictions(errs, &at, rule);
        }
        if let Some(from) = &rule.from {
            if from.is_empty() {
                errs.key(
                    format!("{at}.from"),
                    "rule.from must not be an empty list: omit it to match any source",
                );
            }
            for (j, f) in from.iter().enumerate() {
                let fat = format!("{at}.from[{j}]");
                match &f.source {
                    None => errs.key(&fat, "rule.from entries must have a source"),
                    Some(s) => source(errs, &format!("{fat}.source"), s),
                }
            }
        }
        if let Some(to) = &rule.to {
            if to.is_empty() {
                errs.key(
                    format!("{at}.to"),
                    "rule.to must not be an empty list: omit it to match any operation",
                );
            }
            for (j, t) in to.iter().enumerate() {
                let tat = format!("{at}.to[{j}]");
                match &t.operation {
                    None => errs.key(&tat, "rule.to entries must have an operation"),
                    Some(o) => operation(errs, &format!("{tat}.operation"), o),
                }
            }
        }
        if action == Action::Deny {
            deny_http_only(errs, &at, rule);
        }
        if let Some(when) = &rule.when {
            if when.is_empty() {
                errs.key(format!("{at}.when"), "rule.when must not be an empty list");
            }
            for (j, c) in when.iter().enumerate() {
                condition(errs, &format!("{at}.when[{j}]"), c);
            }
        }
    }
}

fn no_empty(errs: &mut Errs, at: &str, name: &str, list: &[String]) {
    for (i, v) in list.iter().enumerate() {
        if v.is_empty() {
            errs.at(format!("{at}.{name}[{i}]"), format!("empty string in {name} is not allowed; remove it or use \"*\" to match any value"));
        }
    }
}

fn ips(errs: &mut Errs, at: &str, name: &str, list: &[String]) {
    for (i, v) in list.iter().enumerate() {
        if !v.is_empty() && !is_ip_or_cidr(v) {
            errs.at(format!("{at}.{name}[{i}]"), format!("{name}: {v:?} is not a valid IP or CIDR (bad CIDR range or address); ipBlocks/notIpBlocks must be IPs or CIDRs"));
        }
    }
}

fn source(errs: &mut Errs, at: &str, s: &RuleSource) {
    let lists: [(&str, &Vec<String>); 14] = [
        ("principals", &s.principals),
        ("notPrincipals", &s.not_principals),
        ("requestPrincipals", &s.request_principals),
        ("notRequestPrincipals", &s.not_request_principals),
        ("namespaces", &s.namespaces),
        ("notNamespaces", &s.not_namespaces),
        ("serviceAccounts", &s.service_accounts),
        ("notServiceAccounts", &s.not_service_accounts),
        ("ipBlocks", &s.ip_blocks),
        ("notIpBlocks", &s.not_ip_blocks),
        ("remoteIpBlocks", &s.remote_ip_blocks),
        ("notRemoteIpBlocks", &s.not_remote_ip_blocks),
        ("trustDomains", &s.trust_domains),
        ("notTrustDomains", &s.not_trust_domains),
    ];
    if lists.iter().all(|(_, l)| l.is_empty()) {
        errs.at(
            at,
            "source must not be empty: set at least one field, or omit `from`",
        );
    }
    for (name, list) in lists {
        no_empty(errs, at, name, list);
    }
    for (name, list) in [
        ("ipBlocks", &s.ip_blocks),
        ("notIpBlocks", &s.not_ip_blocks),
        ("remoteIpBlocks", &s.remote_ip_blocks),
        ("notRemoteIpBlocks", &s.not_remote_ip_blocks),
    ] {
        ips(errs, at, name, list);
    }
    let sa = !s.service_accounts.is_empty() || !s.not_service_accounts.is_empty();
    let others = !s.principals.is_empty()
        || !s.not_principals.is_empty()
        || !s.namespaces.is_empty()
        || !s.not_namespaces.is_empty();
    if sa && others {
        errs.key(format!("{at}.serviceAccounts"), "Cannot set serviceAccounts with namespaces or principals in the same source; use separate `from` entries");
    }
    for (name, list) in [
        ("serviceAccounts", &s.service_accounts),
        ("notServiceAccounts", &s.not_service_accounts),
    ] {
        if list.len() > 16 {
            errs.key(
                format!("{at}.{name}"),
                format!("at most 16 {name} may be listed"),
            );
        }
        for (i, v) in list.iter().enumerate() {
            if let Err(why) = service_account(v) {
                errs.at(format!("{at}.{name}[{i}]"), format!("{name}[{i}] {why}"));
            }
        }
    }
    for (name, list) in [
        ("trustDomains", &s.trust_domains),
        ("notTrustDomains", &s.not_trust_domains),
    ] {
        for (i, v) in list.iter().enumerate() {
            if let Err(why) = wildcard_value(v) {
                errs.at(
                    format!("{at}.{name}[{i}]"),
                    format!("trustDomains {why} ({v:?})"),
                );
            } else if v.contains('/') {
                errs.at(format!("{at}.{name}[{i}]"), format!("trust domain must not contain '/' ({v:?} given): a trust domain is a name such as cluster.local"));
            }
        }
    }
}

fn operation(errs: &mut Errs, at: &str, o: &Operation) {
    let lists: [(&str, &Vec<String>); 8] = [
        ("hosts", &o.hosts),
        ("notHosts", &o.not_hosts),
        ("ports", &o.ports),
        ("notPorts", &o.not_ports),
        ("methods", &o.methods),
        ("notMethods", &o.not_methods),
        ("paths", &o.paths),
        ("notPaths", &o.not_paths),
    ];
    if lists.iter().all(|(_, l)| l.is_empty()) {
        errs.at(
            at,
            "operation must not be empty: set at least one field, or omit `to`",
        );
    }
    for (name, list) in lists {
        no_empty(errs, at, name, list);
    }
    for (name, list) in [("paths", &o.paths), ("notPaths", &o.not_paths)] {
        for (i, v) in list.iter().enumerate() {
            if let Err(why) = path_template(v) {
                errs.at(
                    format!("{at}.{name}[{i}]"),
                    format!("{name} value {v:?} is not a supported path template: {why}"),
                );
            }
        }
    }
    for (name, list) in [("ports", &o.ports), ("notPorts", &o.not_ports)] {
        for (i, v) in list.iter().enumerate() {
            if !v.is_empty() && !v.parse::<u32>().is_ok_and(|p| p <= 65535) {
                errs.at(format!("{at}.{name}[{i}]"), format!("{name} value {v:?} must be numeric (0-65535); ports/notPorts take port numbers as strings"));
            }
        }
    }
}

fn condition(errs: &mut Errs, at: &str, c: &Condition) {
    let key = c.key.as_str();
    let bracketed = |prefix: &str| {
        key.strip_prefix(prefix)
            .and_then(|r| r.strip_prefix('['))
            .is_some_and(|r| r.ends_with(']') && r.len() > 1 && !r.starts_with(']'))
    };
    let known = KEYS.contains(&key)
        || bracketed("request.headers")
        || bracketed("request.auth.claims")
        || (key.starts_with("experimental.envoy.filters.") && key.ends_with(']'));
    if key.is_empty() {
        errs.key(format!("{at}.key"), "when condition key is required");
    } else if !known {
        errs.at(
            format!("{at}.key"),
            format!("unknown or unsupported when condition key {key:?}"),
        );
    }
    if c.values.is_empty() && c.not_values.is_empty() {
        errs.key(
            at,
            "when condition needs at least one of values or notValues",
        );
    }
    for (name, list) in [("values", &c.values), ("notValues", &c.not_values)] {
        no_empty(errs, at, name, list);
        for (i, v) in list.iter().enumerate() {
            let vat = format!("{at}.{name}[{i}]");
            match key {
                "source.ip" | "remote.ip" | "destination.ip"
                    if !v.is_empty() && !is_ip_or_cidr(v) =>
                {
                    errs.at(vat, format!("when {key} value {v:?} is not an IP/CIDR"));
                }
                "source.serviceAccount" => {
                    if let Err(why) = service_account(v) {
                        errs.at(vat, format!("when source.serviceAccount value {why}"));
                    }
                }
                "source.trustDomain" => {
                    if let Err(why) = wildcard_value(v) {
                        errs.at(vat, format!("when source.trustDomain value {v:?}: {why}"));
                    }
                }
                "destination.port" if !v.parse::<u32>().is_ok_and(|p| p <= 65535) => {
                    errs.at(
                        vat,
                        format!("when destination.port value {v:?} is not a port number"),
                    );
                }
                _ => {}
            }
        }
    }
}

/// Istio's `CheckServiceAccount`: `name` or `namespace/name`, no wildcard, at most 320
/// characters.
fn service_account(v: &str) -> Result<(), String> {
    if v.contains('*') {
        return Err(format!(
            "{v:?}: wildcard not allowed in serviceAccounts; list `namespace/name` or `name`"
        ));
    }
    if v.len() > 320 {
        return Err(format!("{v:?} exceeds 320 characters"));
    }
    let parts: Vec<&str> = v.split('/').collect();
    if v.is_empty() || parts.len() > 2 || parts.iter().any(|p| p.is_empty()) {
        return Err(format!(
            "{v:?}: expected format 'serviceAccount' or 'namespace/serviceAccount'"
        ));
    }
    Ok(())
}

/// Istio's `CheckWildcardValues`: at most one `*`, only at the start or end.
fn wildcard_value(v: &str) -> Result<(), &'static str> {
    let stars = v.matches('*').count();
    if stars > 1 {
        return Err("at most one wildcard is allowed");
    }
    if stars == 1 && !v.starts_with('*') && !v.ends_with('*') {
        return Err("wildcard only allowed at start or end");
    }
    Ok(())
}

/// Istio warns when a DENY rule uses only HTTP attributes: on a TCP port such a rule cannot
/// be evaluated, so it denies all traffic there.
fn deny_http_only(errs: &mut Errs, at: &str, rule: &Rule) {
    let sources: Vec<&RuleSource> = rule
        .from
        .iter()
        .flatten()
        .filter_map(|f| f.source.as_ref())
        .collect();
    let ops: Vec<&Operation> = rule
        .to
        .iter()
        .flatten()
        .filter_map(|t| t.operation.as_ref())
        .collect();
    let tcp_from = sources.iter().any(|s| {
        [
            &s.principals,
            &s.not_principals,
            &s.ip_blocks,
            &s.not_ip_blocks,
            &s.namespaces,
            &s.not_namespaces,
            &s.remote_ip_blocks,
            &s.not_remote_ip_blocks,
            &s.service_accounts,
            &s.not_service_accounts,
        ]
        .iter()
        .any(|l| !l.is_empty())
    });
    let tcp_to = ops
        .iter()
        .any(|o| !o.ports.is_empty() || !o.not_ports.is_empty());
    if (!sources.is_empty() && ops.is_empty() && !tcp_from) || (!ops.is_empty() && !tcp_to) {
        errs.warn(WarningKind::Istio, at, "this DENY rule uses only HTTP attributes, so it denies all traffic to TCP ports under the policy's scope: it is recommended to explicitly specify the port (to.operation.ports)");
    }
}

/// Source fields and condition keys that depend on the peer or request
/// identity, which Istio does not support with the CUSTOM action.
const CUSTOM_UNSUPPORTED_KEYS: &[&str] = &[
    "source.namespace",
    "source.serviceAccount",
    "source.principal",
    "source.trustDomain",
];

fn custom_restrictions(errs: &mut Errs, at: &str, rule: &Rule) {
    const HINT: &str = "CUSTOM policies only support request/connection attributes (ipBlocks, remoteIpBlocks, hosts, ports, methods, paths, headers); move identity checks to an ALLOW or DENY policy";
    for (j, f) in rule.from.iter().flatten().enumerate() {
        let Some(s) = &f.source else { continue };
        for (name, list) in [
            ("namespaces", &s.namespaces),
            ("notNamespaces", &s.not_namespaces),
            ("serviceAccounts", &s.service_accounts),
            ("notServiceAccounts", &s.not_service_accounts),
            ("principals", &s.principals),
            ("notPrincipals", &s.not_principals),
            ("requestPrincipals", &s.request_principals),
            ("notRequestPrincipals", &s.not_request_principals),
            ("trustDomains", &s.trust_domains),
            ("notTrustDomains", &s.not_trust_domains),
        ] {
            if !list.is_empty() {
                errs.key(
                    format!("{at}.from[{j}].source.{name}"),
                    format!("from.source.{name} is not supported with action CUSTOM: {HINT}"),
                );
            }
        }
    }
    for (j, c) in rule.when.iter().flatten().enumerate() {
        let key = c.key.as_str();
        if CUSTOM_UNSUPPORTED_KEYS.contains(&key) || key.starts_with("request.auth.") {
            errs.at(
                format!("{at}.when[{j}].key"),
                format!("when key {key:?} is not supported with action CUSTOM: {HINT}"),
            );
        }
    }
}

/// Istio's `CheckValidPathTemplate`: `{*}` matches one segment and `{**}` the
/// rest; `{**}` must be the last operator, no other `{`/`}` may appear, and in a
/// templated path every other segment must be a plain RFC 3986 `pchar` literal.
fn path_template(path: &str) -> Result<(), String> {
    let templated = path.contains("{*}") || path.contains("{**}");
    let mut any_seen = false;
    for glob in path.trim_matches('/').split('/') {
        match glob {
            "{*}" | "{**}" if any_seen => {
                return Err("{**} must be the last operator (no {*} or {**} after it)".into())
            }
            "{*}" => continue,
            "{**}" => {
                any_seen = true;
                continue;
            }
            _ => {}
        }
        if glob.contains(['{', '}']) {
            return Err(format!("segment {glob:?} contains '{{' or '}}' beyond a whole-segment {{*}} or {{**}} operator"));
        }
        let literal = !glob.is_empty()
            && glob
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~%!$&'()+,;:@=".contains(&b));
        if templated && !literal {
            return Err(format!("segment {glob:?} is not a valid literal in a templated path (no `*`, empty segments or other special characters)"));
        }
    }
    Ok(())
}
