//! What weft loads but does not enforce yet, found by comparing each resource's fields
//! against the subset the compiler implements. Reported by name at startup and on every
//! reload — never silently ignored, never claimed.

use crate::config::NotEnforced;
use crate::protocol::Protocol;
use serde_json::Value;
use weft_api::{Resource, Spec};

mod kinds;
use kinds::{service_entry, sidecar, traffic_policy};

/// Every resource or field in `resources` whose semantics weft does not implement yet.
pub fn not_enforced(resources: &[Resource]) -> Vec<NotEnforced> {
    let mesh = crate::mesh::mesh_config(resources);
    let external = crate::egress::external_hosts(resources);
    let mut out = Vec::new();
    for r in resources {
        let mut push = |what: String| {
            out.push(NotEnforced {
                resource: r.key(),
                location: format!("{}:{}", r.source.file, r.source.line),
                what,
            })
        };
        match &r.spec {
            Spec::VirtualService(vs) => {
                extra_keys(
                    &json(vs),
                    "",
                    &["hosts", "gateways", "http", "tcp", "tls"],
                    &mut push,
                );
                l4_routes(vs, &mut push);
                for (i, h) in vs.http.iter().enumerate() {
                    let p = format!("http[{i}].");
                    extra_keys(&json(h), &p, &HTTP_ROUTE_ENFORCED, &mut push);
                    for (j, d) in h.route.iter().enumerate() {
                        if crate::actions::header_authority(d.headers.as_ref()).is_some() {
                            push(format!("{p}route[{j}].headers.request Host/:authority (a per-destination authority rewrite)"));
                        }
                    }
                    if let Some(f) = &h.fault {
                        if f.delay
                            .as_ref()
                            .is_some_and(|d| d.exponential_delay.is_some())
                        {
                            push(format!("{p}fault.delay.exponentialDelay"));
                        }
                        if f.abort.as_ref().is_some_and(|a| a.http2_error.is_some()) {
                            push(format!("{p}fault.abort.http2Error"));
                        }
                    }
                    if let Some(r) = &h.retries {
                        let enforced = [
                            "attempts",
                            "perTryTimeout",
                            "retryOn",
                            "retryIgnorePreviousHosts",
                            "backoff",
                        ];
                        extra_keys(&json(r), &format!("{p}retries."), &enforced, &mut push);
                    }
                    for (j, m) in h.r#match.iter().enumerate() {
                        let p = format!("http[{i}].match[{j}].");
                        extra_keys(
                            &json(m),
                            &p,
                            &[
                                "name",
                                "uri",
                                "scheme",
                                "method",
                                "authority",
                                "headers",
                                "withoutHeaders",
                                "queryParams",
                                "ignoreUriCase",
                                "sourceLabels",
                                "sourceNamespace",
                                "gateways",
                                "port",
                            ],
                            &mut push,
                        );
                    }
                    for (j, d) in h.route.iter().enumerate() {
                        extra_keys(
                            &json(d),
                            &format!("http[{i}].route[{j}]."),
                            &["destination", "weight", "headers"],
                            &mut push,
                        );
                    }
                }
            }
            Spec::DestinationRule(dr) => {
                extra_keys(
                    &json(dr),
                    "",
                    &["host", "trafficPolicy", "subsets"],
                    &mut push,
                );
                let outside = external.contains(&crate::registry::fqdn(&dr.host, r.namespace()));
                if let Some(tp) = &dr.traffic_policy {
                    traffic_policy(&json(tp), "trafficPolicy.", outside, &mut push);
                }
                for (i, s) in dr.subsets.iter().enumerate() {
                    if let Some(tp) = &s.traffic_policy {
                        traffic_policy(
                            &json(tp),
                            &format!("subsets[{i}].trafficPolicy."),
                            outside,
                            &mut push,
                        );
                    }
                }
            }
            Spec::Gateway(gw) => {
                for (i, s) in gw.servers.iter().enumerate() {
                    let proto = s.port.as_ref().map_or("", |p| p.protocol.as_str());
                    let tcp = Protocol::parse(proto) == Protocol::Tcp;
                    if s.tls.is_none() && !serves_http(proto) && !tcp {
                        push(format!(
                            "servers[{i}].port.protocol {proto} (only HTTP and TCP gateway servers are built; this port is not opened)"
                        ));
                    }
                    let enforced = gateway_server_tls(i, s, proto, &mut push);
                    extra_keys(&json(s), &format!("servers[{i}]."), enforced, &mut push);
                }
                mixed_tls_ports(&gw.servers, &mut push);
            }
            Spec::ServiceEntry(se) => service_entry(se, &mut push),
            Spec::WorkloadEntry(we) => {
                extra_keys(
                    &json(we),
                    "",
                    &["address", "ports", "labels", "serviceAccount"],
                    &mut push,
                );
            }
            // Every mode and port-level override is enforced.
            Spec::PeerAuthentication(_) => {}
            Spec::AuthorizationPolicy(ap) => crate::authz::report(ap, mesh, &mut push),
            Spec::RequestAuthentication(ra) => crate::authn::report(ra, &mut push),
            Spec::Telemetry(t) => crate::telemetry::report(t, mesh, &mut push),
            Spec::MeshConfig(mc) => crate::mesh::report(mc, &mut push),
            Spec::WorkloadGroup(_) => push(
                "WorkloadGroup (workloads registering into a group are not built yet; declare each WorkloadEntry)"
                    .into(),
            ),
            Spec::Sidecar(sc) => sidecar(sc, &mut push),
        }
    }
    out
}

/// Whether a reported policy-kind resource applies to a proxy in namespace `ns` (its own
/// namespace or the root namespace; MeshConfig everywhere).
pub(crate) fn policy_applies(n: &NotEnforced, ns: &str, root: &str) -> bool {
    let mut parts = n.resource.split('/');
    let (kind, rns) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let policy = matches!(
        kind,
        "PeerAuthentication"
            | "AuthorizationPolicy"
            | "RequestAuthentication"
            | "Telemetry"
            | "Sidecar"
            | "MeshConfig"
    );
    kind == "MeshConfig" || (policy && (rns == ns || rns == root))
}

/// The `tcp` and `tls` routes of a VirtualService: every field is enforced but a match's
/// `sourceSubnet` (deprecated; such a match is dropped).
fn l4_routes(vs: &weft_api::VirtualService, push: &mut impl FnMut(String)) {
    let dest = ["destination", "weight"];
    for (i, t) in vs.tcp.iter().enumerate() {
        extra_keys(&json(t), &format!("tcp[{i}]."), &["match", "route"], push);
        for (j, m) in t.r#match.iter().enumerate() {
            if m.source_subnet.is_some() {
                push(format!(
                    "tcp[{i}].match[{j}].sourceSubnet (this match is dropped)"
                ));
            }
        }
        for (j, d) in t.route.iter().enumerate() {
            extra_keys(&json(d), &format!("tcp[{i}].route[{j}]."), &dest, push);
        }
    }
    for (i, t) in vs.tls.iter().enumerate() {
        extra_keys(&json(t), &format!("tls[{i}]."), &["match", "route"], push);
        for (j, d) in t.route.iter().enumerate() {
            extra_keys(&json(d), &format!("tls[{i}].route[{j}]."), &dest, push);
        }
    }
}

pub(super) fn extra_keys(
    v: &Value,
    prefix: &str,
    enforced: &[&str],
    push: &mut impl FnMut(String),
) {
    if let Value::Object(map) = v {
        for k in map.keys() {
            if !enforced.contains(&k.as_str()) {
                push(format!("{prefix}{k}"));
            }
        }
    }
}

/// HTTPRoute fields weft implements.
const HTTP_ROUTE_ENFORCED: [&str; 17] = [
    "corsPolicy",
    "name",
    "match",
    "route",
    "timeout",
    "retries",
    "headers",
    "rewrite",
    "redirect",
    "directResponse",
    "delegate",
    "fault",
    "mirror",
    "mirrors",
    "mirrorPercentage",
    "mirrorPercent",
    "mirror_percent",
];

/// What a Gateway server's `tls` asks for that is not built; returns the server fields
/// that are then enforced. Built: PASSTHROUGH (said explicitly; its other TLS fields do
/// nothing), termination on HTTPS and TLS servers (`gateway_tls`), `httpsRedirect` on
/// HTTP ones.
fn gateway_server_tls(
    i: usize,
    s: &weft_api::Server,
    proto: &str,
    push: &mut impl FnMut(String),
) -> &'static [&'static str] {
    const WITH_TLS: &[&str] = &["port", "hosts", "name", "tls"];
    let Some(tls) = &s.tls else {
        return &["port", "hosts", "name"];
    };
    let mode = tls.mode;
    if crate::gateway_tls::terminates(s) {
        if proto.eq_ignore_ascii_case("HTTPS") || proto.eq_ignore_ascii_case("TLS") {
            crate::gateway_tls::report(i, tls, push);
        } else {
            push(format!(
                "servers[{i}].tls.mode {} on protocol {proto} (TLS termination is built for HTTPS and TLS servers only; this server is not opened)",
                json(&mode).as_str().unwrap_or_default()
            ));
        }
        return WITH_TLS;
    }
    match mode {
        Some(weft_api::ServerTlsMode::Passthrough) => WITH_TLS,
        Some(weft_api::ServerTlsMode::AutoPassthrough) => {
            push(format!(
                "servers[{i}].tls.mode AUTO_PASSTHROUGH (it routes by Istio's outbound_.<port>_.<subset>_.<host> SNI that sidecars send over mTLS; weft's sidecars tunnel over HTTP/2 CONNECT and never send that SNI; this server is not opened)"
            ));
            WITH_TLS
        }
        None if serves_http(proto) => {
            extra_keys(
                &json(tls),
                &format!("servers[{i}].tls."),
                &["httpsRedirect"],
                push,
            );
            WITH_TLS
        }
        _ => &["port", "hosts", "name"],
    }
}

/// PASSTHROUGH servers on a port that also has TLS-terminating servers: Istio splits one
/// listener's filter chains by SNI; weft opens one or the other kind per port.
fn mixed_tls_ports(servers: &[weft_api::Server], push: &mut impl FnMut(String)) {
    let port = |s: &weft_api::Server| s.port.as_ref().map(|p| p.number);
    for (i, s) in servers.iter().enumerate() {
        let passthrough =
            s.tls.as_ref().and_then(|t| t.mode) == Some(weft_api::ServerTlsMode::Passthrough);
        let beside = servers
            .iter()
            .any(|o| port(o) == port(s) && crate::gateway_tls::terminates(o));
        if passthrough && beside {
            push(format!(
                "servers[{i}].tls.mode PASSTHROUGH beside TLS-terminating servers on port {} (weft serves one kind per port; Istio tells them apart by SNI)",
                port(s).unwrap_or_default()
            ));
        }
    }
}

/// Serializes any API struct to JSON for field inspection.
pub(super) fn json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or_default()
}

/// Whether weft serves a port of this Istio protocol (HTTP and what rides on it). `HTTPS`
/// and `TLS` need TLS termination; `TCP`, `MONGO`, `REDIS`, `MYSQL`… are opaque TCP.
pub fn serves_http(protocol: &str) -> bool {
    ["HTTP", "HTTP2", "GRPC", "GRPC-WEB"]
        .iter()
        .any(|p| p.eq_ignore_ascii_case(protocol))
}
