//! WorkloadGroup rules, as istio/istio's `ValidateWorkloadGroup`: a template is required
//! (not validated as a WorkloadEntry: registration fills in its address), metadata labels
//! must be valid labels, and the readiness probe has non-negative timings and exactly one
//! valid method.

use super::common::k8s_labels;
use super::Errs;
use crate::{ReadinessProbe, WorkloadGroup};

pub(super) fn validate(wg: &WorkloadGroup, errs: &mut Errs) {
    if wg.template.is_none() {
        errs.key(
            "spec",
            "template is required: the WorkloadEntry fields registered workloads start from",
        );
    }
    if let Some(m) = &wg.metadata {
        k8s_labels(errs, "spec.metadata.labels", &m.labels);
    }
    if let Some(p) = &wg.probe {
        probe(p, errs);
    }
}

fn valid_port(p: u32) -> bool {
    (1..=65535).contains(&p)
}

fn probe(p: &ReadinessProbe, errs: &mut Errs) {
    for (name, v) in [
        ("periodSeconds", p.period_seconds),
        ("initialDelaySeconds", p.initial_delay_seconds),
        ("timeoutSeconds", p.timeout_seconds),
        ("successThreshold", p.success_threshold),
        ("failureThreshold", p.failure_threshold),
    ] {
        if v < 0 {
            errs.at(
                format!("spec.probe.{name}"),
                format!("{name} must be non-negative ({v} given)"),
            );
        }
    }
    let methods = [
        p.http_get.is_some(),
        p.tcp_socket.is_some(),
        p.exec.is_some(),
        p.grpc.is_some(),
    ];
    match methods.iter().filter(|m| **m).count() {
        0 => errs.key(
            "spec.probe",
            "the probe needs a health check method: one of httpGet, tcpSocket, exec, grpc",
        ),
        1 => {}
        _ => errs.key(
            "spec.probe",
            "only one of httpGet, tcpSocket, exec, grpc may be set",
        ),
    }
    if let Some(h) = &p.http_get {
        if !valid_port(h.port) {
            errs.at(
                "spec.probe.httpGet.port",
                format!("port number {} must be in the range 1..65535", h.port),
            );
        }
        if let Some(s) = h.scheme.as_deref().filter(|s| !s.is_empty()) {
            if s != "HTTP" && s != "HTTPS" {
                errs.at(
                    "spec.probe.httpGet.scheme",
                    format!("httpGet.scheme must be one of \"HTTPS\", \"HTTP\" ({s:?} given)"),
                );
            }
        }
        for (i, header) in h.http_headers.iter().enumerate() {
            let token = !header.name.is_empty()
                && header
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !token {
                errs.at(
                    format!("spec.probe.httpGet.httpHeaders[{i}].name"),
                    format!(
                        "invalid probe header name {:?}: a header name is a non-empty HTTP token",
                        header.name
                    ),
                );
            }
        }
    }
    if let Some(t) = &p.tcp_socket {
        if !valid_port(t.port) {
            errs.at(
                "spec.probe.tcpSocket.port",
                format!("port number {} must be in the range 1..65535", t.port),
            );
        }
    }
    if let Some(e) = &p.exec {
        if e.command.is_empty() {
            errs.key("spec.probe.exec", "exec.command is required");
        }
    }
    if let Some(g) = &p.grpc {
        if !valid_port(g.port) {
            errs.at(
                "spec.probe.grpc.port",
                format!("port number {} must be in the range 1..65535", g.port),
            );
        }
    }
}
