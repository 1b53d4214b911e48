//! What is not enforced in ServiceEntries, Sidecars and DestinationRule traffic policies
//! (the kinds egress, scoping and load balancing read field by field).

use super::{extra_keys, json, serves_http};
use crate::protocol::Protocol;
use serde_json::Value;

/// A Sidecar: egress listeners' `bind` + `port` place TCP listeners; the rest is not built.
pub(super) fn sidecar(sc: &weft_api::Sidecar, push: &mut impl FnMut(String)) {
    extra_keys(
        &json(sc),
        "",
        &[
            "workloadSelector",
            "egress",
            "outboundTrafficPolicy",
            "ingress",
        ],
        push,
    );
    for (i, l) in sc.ingress.iter().enumerate() {
        // A port's app address is built; the rest of an ingress listener is not.
        extra_keys(
            &json(l),
            &format!("ingress[{i}]."),
            &["port", "defaultEndpoint", "captureMode"],
            push,
        );
        if l.default_endpoint
            .as_deref()
            .is_some_and(|e| e.starts_with("unix://"))
        {
            push(format!(
                "ingress[{i}].defaultEndpoint on a Unix socket (the app is dialled at its one address instead)"
            ));
        }
    }
    let policy = sc.outbound_traffic_policy.as_ref();
    if policy.is_some_and(|p| p.egress_proxy.is_some()) {
        push("outboundTrafficPolicy.egressProxy".into());
    }
    for (i, e) in sc.egress.iter().enumerate() {
        let http_port = e.port.as_ref().is_some_and(|p| {
            let proto = (!p.protocol.is_empty()).then_some(p.protocol.as_str());
            !Protocol::of_port(proto, &p.name).is_opaque()
        });
        if e.bind.is_some() && http_port {
            push(format!(
                "egress[{i}].bind/port on an HTTP port (only opaque TCP ports of its hosts get a listener there; HTTP goes through the sidecar's outbound listener)"
            ));
        } else if e.bind.is_some() != e.port.is_some() {
            push(format!("egress[{i}].bind/port (one without the other)"));
        }
        if e.capture_mode
            .is_some_and(|m| m != weft_api::CaptureMode::None)
        {
            push(format!(
                "egress[{i}].captureMode (there is no traffic capture)"
            ));
        }
    }
}
/// A ServiceEntry: hosts, ports, location, resolution, endpoints and workloadSelector are
/// built (mesh services, or services outside the mesh: `crate::egress`).
pub(super) fn service_entry(se: &weft_api::ServiceEntry, push: &mut impl FnMut(String)) {
    for (i, p) in se.ports.iter().enumerate() {
        if Protocol::of_port(p.protocol.as_deref(), &p.name) == Protocol::Unknown
            && p.protocol.as_deref().is_none_or(str::is_empty)
        {
            push(format!(
                "ports[{i}] {} has no protocol (Istio sniffs HTTP or TCP; weft serves it as HTTP only: declare protocol TCP for opaque TCP)",
                p.name
            ));
        }
        let proto = p.protocol.as_deref().filter(|p| !serves_http(p));
        if let Some(proto) = proto.filter(|p| !Protocol::parse(p).is_opaque()) {
            push(format!(
                "ports[{i}].protocol {proto} (neither HTTP nor TCP: nothing reaches this port through the mesh)"
            ));
        }
    }
    let external_location = matches!(se.location, Some(weft_api::Location::MeshExternal));
    if se.resolution == Some(weft_api::Resolution::DynamicDns) {
        push("resolution DYNAMIC_DNS (not built: this entry adds no service)".into());
    } else if external_location && se.workload_selector.is_some() {
        push("location MESH_EXTERNAL with a workloadSelector (mesh workloads as an external service: this entry adds no service)".into());
    }
    if crate::egress::external_of(se).is_some() && !se.addresses.is_empty() {
        push("addresses (there is no traffic capture: apps reach services outside the mesh through the sidecar's listeners, by name)".into());
    }
    extra_keys(
        &json(se),
        "",
        &[
            "hosts",
            "ports",
            "location",
            "workloadSelector",
            "resolution",
            "endpoints",
            "addresses",
        ],
        push,
    );
    for (i, e) in se.endpoints.iter().enumerate() {
        extra_keys(
            &json(e),
            &format!("endpoints[{i}]."),
            &["address", "ports", "labels"],
            push,
        );
    }
}
pub(super) fn traffic_policy(
    v: &Value,
    prefix: &str,
    outside: bool,
    push: &mut impl FnMut(String),
) {
    extra_keys(
        v,
        prefix,
        &[
            "loadBalancer",
            "outlierDetection",
            "connectionPool",
            "tls",
            "portLevelSettings",
            // (a port-level entry's selector)
            "port",
        ],
        push,
    );
    let ports = v.get("portLevelSettings").and_then(Value::as_array);
    for (i, p) in ports.into_iter().flatten().enumerate() {
        traffic_policy(
            p,
            &format!("{prefix}portLevelSettings[{i}]."),
            outside,
            push,
        );
    }
    if let Some(tls) = v.get("tls") {
        match tls.get("mode").and_then(Value::as_str) {
            Some(m @ ("SIMPLE" | "MUTUAL")) if !outside => push(format!(
                "{prefix}tls.mode {m} to a mesh service (TLS origination is built for services outside the mesh; the mesh's mTLS is used)"
            )),
            Some("ISTIO_MUTUAL") if outside => push(format!(
                "{prefix}tls.mode ISTIO_MUTUAL to a service outside the mesh (it has no mesh identity: weft sends plaintext; use SIMPLE or MUTUAL)"
            )),
            Some("SIMPLE" | "MUTUAL") => {
                let built = [
                    "mode",
                    "caCertificates",
                    "clientCertificate",
                    "privateKey",
                    "sni",
                    "subjectAltNames",
                    "insecureSkipVerify",
                ];
                extra_keys(tls, &format!("{prefix}tls."), &built, push)
            }
            _ => extra_keys(tls, &format!("{prefix}tls."), &["mode"], push),
        }
    }
    if let Some(lb) = v.get("loadBalancer") {
        extra_keys(
            lb,
            &format!("{prefix}loadBalancer."),
            &["simple", "consistentHash", "localityLbSetting"],
            push,
        );
        if let Some(l) = lb.get("localityLbSetting") {
            let at = format!("{prefix}loadBalancer.localityLbSetting.");
            extra_keys(l, &at, &["enabled", "failover"], push);
            if v.get("outlierDetection").is_none() && l.get("enabled") != Some(&Value::Bool(false))
            {
                push(format!(
                    "{at}failover without outlierDetection (Istio applies locality failover only with outlier detection: nothing fails over)"
                ));
            }
        }
        if let Some(ch) = lb.get("consistentHash") {
            let at = format!("{prefix}loadBalancer.consistentHash.");
            extra_keys(
                ch,
                &at,
                &[
                    "httpHeaderName",
                    "httpCookie",
                    "useSourceIp",
                    "httpQueryParameterName",
                    "ringHash",
                    "maglev",
                    "minimumRingSize",
                ],
                push,
            );
            if ch
                .get("httpCookie")
                .and_then(|c| c.get("attributes"))
                .is_some()
            {
                push(format!("{at}httpCookie.attributes"));
            }
        }
        if lb.get("simple").and_then(Value::as_str) == Some("PASSTHROUGH") {
            push(format!("{prefix}loadBalancer.simple PASSTHROUGH"));
        }
    }
    if let Some(od) = v.get("outlierDetection") {
        let enforced = [
            "consecutive5xxErrors",
            "consecutiveGatewayErrors",
            "consecutiveErrors",
            "interval",
            "baseEjectionTime",
            "maxEjectionPercent",
            "minHealthPercent",
            "splitExternalLocalOriginErrors",
            "consecutiveLocalOriginFailures",
        ];
        extra_keys(od, &format!("{prefix}outlierDetection."), &enforced, push);
    }
    if let Some(cp) = v.get("connectionPool") {
        extra_keys(
            cp,
            &format!("{prefix}connectionPool."),
            &["http", "tcp"],
            push,
        );
        if let Some(tcp) = cp.get("tcp") {
            let at = format!("{prefix}connectionPool.tcp.");
            extra_keys(
                tcp,
                &at,
                &[
                    "maxConnections",
                    "connectTimeout",
                    "idleTimeout",
                    "maxConnectionDuration",
                    "tcpKeepalive",
                ],
                push,
            );
            // HTTP/2 semantics keep one multiplexed connection per endpoint: there the
            // connection count has nothing to act on.
            let upgrade = cp
                .get("http")
                .and_then(|h| h.get("h2UpgradePolicy"))
                .and_then(Value::as_str)
                == Some("UPGRADE");
            if upgrade && tcp.get("maxConnections").is_some() {
                push(format!(
                    "{at}maxConnections with h2UpgradePolicy UPGRADE (one multiplexed HTTP/2 connection per endpoint)"
                ));
            }
        }
        if let Some(http) = cp.get("http") {
            // The circuit breakers (requests, pending requests, retries), the request count
            // per connection and the protocol semantics are enforced.
            extra_keys(
                http,
                &format!("{prefix}connectionPool.http."),
                &[
                    "http2MaxRequests",
                    "maxRequestsPerConnection",
                    "http1MaxPendingRequests",
                    "maxRetries",
                    "h2UpgradePolicy",
                    "useClientProtocol",
                    "idleTimeout",
                ],
                push,
            );
        }
    }
}
