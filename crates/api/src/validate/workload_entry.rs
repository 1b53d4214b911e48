//! WorkloadEntry rules (also applied to ServiceEntry endpoints), as istio/istio's
//! `validateWorkloadEntry` and the CRD's CEL rules: address forms (IP, FQDN, unix socket),
//! unix-socket restrictions, port names and numbers, labels.

use std::net::IpAddr;

use super::common::{is_dns_label, is_dns_name, port_ok};
use super::{Errs, WarningKind};
use crate::WorkloadEntry;

/// What an endpoint address is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Address {
    Ip,
    Dns,
    Uds,
}

/// Classifies (and checks) a WorkloadEntry address; `None` when invalid (reported).
pub(super) fn address(errs: &mut Errs, at: &str, a: &str) -> Option<Address> {
    if let Some(path) = a.strip_prefix("unix://") {
        if path.ends_with('/') {
            errs.at(
                at,
                format!("UDS may not be a dir ({a:?}): point at the socket file"),
            );
            return None;
        }
        if !(path.starts_with('/') || path.starts_with('@')) || path.len() < 2 {
            errs.at(
                at,
                format!(
                    "unix socket address {a:?} must be unix:///absolute/path or unix://@abstract"
                ),
            );
            return None;
        }
        return Some(Address::Uds);
    }
    if a.parse::<IpAddr>().is_ok() {
        return Some(Address::Ip);
    }
    if is_dns_name(a) {
        return Some(Address::Dns);
    }
    errs.at(
        at,
        format!(
            "address {a:?} is neither an IP, FQDN nor unix socket (ports belong in spec.ports)"
        ),
    );
    None
}

/// Checks one WorkloadEntry spec at `at` (`spec` or `spec.endpoints[i]`).
pub(super) fn entry(errs: &mut Errs, at: &str, we: &WorkloadEntry) -> Option<Address> {
    let kind = match we.address.as_deref() {
        Some(a) if !a.is_empty() => address(errs, &format!("{at}.address"), a),
        _ => {
            match &we.network {
                None => errs.key(
                    at,
                    "Address is required (an IP, FQDN or unix socket) unless network is set",
                ),
                Some(n) => errs.warn(WarningKind::Istio, at, format!("address is unset with network {n:?}: the workload is reached through that network's gateway only")),
            }
            None
        }
    };
    if kind == Some(Address::Uds) && !we.ports.is_empty() {
        errs.key(
            format!("{at}.ports"),
            "UDS may not include ports: a unix socket address has no port",
        );
    }
    for (name, p) in &we.ports {
        let pat = format!("{at}.ports.{name}");
        if !is_dns_label(name) {
            errs.key(&pat, format!("{at}.ports: Invalid value {name:?}: port names must be DNS-1123 labels (e.g. http, grpc-web)"));
        }
        if !port_ok(*p) {
            errs.at(
                &pat,
                format!("port {p} is invalid: port must be between 1-65535"),
            );
        }
    }
    kind
}

pub(super) fn validate(we: &WorkloadEntry, errs: &mut Errs) {
    entry(errs, "spec", we);
    // Istio: `labels.Instance(we.Labels).Validate()`.
    super::common::k8s_labels(errs, "spec.labels", &we.labels);
}
