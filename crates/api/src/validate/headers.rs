//! Header manipulation rules (VirtualService routes and destinations), as istio/istio's
//! `ValidateHTTPHeaderWithAuthorityOperationName`, `ValidateHTTPHeaderOperationName` and
//! `ValidateHTTPHeaderValue`: non-empty names, request add/set may change the authority
//! (`:authority` or `Host`) but no other pseudo-header, responses and removals touch neither,
//! values are Envoy format strings without control characters.

use super::common::is_envoy_format;
use super::Errs;
use crate::{HeaderOperations, Headers};

pub(super) fn header_ops(errs: &mut Errs, at: &str, h: &Headers) {
    for (side, ops) in [("request", &h.request), ("response", &h.response)] {
        if let Some(ops) = ops {
            operations(errs, &format!("{at}.{side}"), side == "request", ops);
        }
    }
}

fn operations(errs: &mut Errs, at: &str, request: bool, ops: &HeaderOperations) {
    for (op, map) in [("set", &ops.set), ("add", &ops.add)] {
        for (name, value) in map {
            let hat = format!("{at}.{op}.{name}");
            name_rules(errs, &hat, op, name, request);
            if value
                .chars()
                .any(|c| (c < ' ' && c != '\t') || c == '\u{7f}')
            {
                errs.at(&hat, format!("header value {value:?} contains a control character, which no header may carry; remove it"));
            } else if !is_envoy_format(value) {
                errs.at(&hat, format!("header value {value:?} has an unescaped % (not a valid Envoy format string); write %% for a literal %"));
            }
        }
    }
    for (i, name) in ops.remove.iter().enumerate() {
        let hat = format!("{at}.remove[{i}]");
        if name.is_empty() {
            errs.at(
                &hat,
                "header operation with an empty header name; remove the entry or name the header",
            );
        } else if name.eq_ignore_ascii_case("host") || name.starts_with(':') {
            errs.at(&hat, format!("header {name:?} cannot be removed"));
        }
    }
}

fn name_rules(errs: &mut Errs, at: &str, op: &str, name: &str, request: bool) {
    if name.is_empty() {
        errs.key(
            at,
            format!("header operation with an empty header name in `{op}`; name the header"),
        );
    } else if name.eq_ignore_ascii_case("host") && !request {
        errs.key(
            at,
            "the Host header cannot be set on a response (on requests, set it or use rewrite.authority)",
        );
    } else if name.starts_with(':') && !(request && name.eq_ignore_ascii_case(":authority")) {
        errs.key(
            at,
            format!("pseudo-header {name:?} cannot be modified (only :authority on requests)"),
        );
    }
}
