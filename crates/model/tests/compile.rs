//! Compiler tests: small meshes in YAML in, per-proxy configs out.

use weft_model::*;

const MESH: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: inventory, namespace: game}
spec:
  hosts: [inventory.game.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{number: 8080, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: inventory}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: player, namespace: game}
spec:
  hosts: [player.game.svc.cluster.local]
  ports: [{number: 9000, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: player}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: inv-v1, namespace: game}
spec: {address: 127.0.0.1, labels: {app: inventory, version: v1}, serviceAccount: inventory}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: inv-v2, namespace: game}
spec: {address: 127.0.0.1, labels: {app: inventory, version: v2}, serviceAccount: inventory}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: player-v1, namespace: game}
spec: {address: 127.0.0.1, labels: {app: player, version: v1}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: gw, namespace: istio-system}
spec: {address: 127.0.0.1, labels: {istio: ingressgateway}, serviceAccount: gw}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: public, namespace: game}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [api.example.com]
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [api.example.com]
    tls: {mode: SIMPLE, credentialName: api-cert}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api, namespace: game}
spec:
  hosts: [api.example.com, other.example.com]
  gateways: [public]
  http:
  - name: premium
    match:
    - uri: {prefix: /inv}
      headers: {X-Tier: {exact: premium}}
    route:
    - destination: {host: inventory, subset: v2}
  - name: split
    match:
    - uri: {prefix: /inv}
    route:
    - destination: {host: inventory, subset: v1}
      weight: 80
    - destination: {host: inventory, subset: v2}
      weight: 20
    timeout: 1.5s
    retries: {attempts: 2}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: inventory, namespace: game}
spec:
  host: inventory
  trafficPolicy:
    loadBalancer: {simple: LEAST_CONN}
    outlierDetection: {consecutive5xxErrors: 5}
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      loadBalancer: {simple: ROUND_ROBIN}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: game}
spec:
  mtls: {mode: PERMISSIVE}
"#;

fn resources() -> Vec<weft_api::Resource> {
    let loaded = weft_api::load_str(MESH, "mesh.yaml");
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    assert!(weft_api::validate_all(&loaded.resources).is_empty());
    loaded.resources
}

fn live() -> Vec<LiveProxy> {
    ["inv-v1:1001", "inv-v2:1002", "player-v1:1003"]
        .iter()
        .map(|s| {
            let (w, port) = s.split_once(':').unwrap();
            LiveProxy {
                workload: w.into(),
                namespace: "game".into(),
                inbound_addr: format!("127.0.0.1:{port}"),
                listeners: Default::default(),
            }
        })
        .chain([LiveProxy {
            workload: "gw".into(),
            namespace: "istio-system".into(),
            inbound_addr: String::new(),
            listeners: Default::default(),
        }])
        .collect()
}

fn gateway_config() -> ProxyConfig {
    let res = resources();
    let reg = Registry::build(&res, &live());
    let gw = ProxyRef {
        role: Role::Gateway,
        workload: "gw".into(),
        namespace: "istio-system".into(),
    };
    compile(&res, &reg, "cluster.local", &gw).unwrap()
}

#[test]
fn gateway_gets_a_listener_per_server_port_and_https_terminates_by_sni() {
    let cfg = gateway_config();
    let ports: Vec<u32> = cfg.listeners.iter().map(|l| l.port).collect();
    assert_eq!(ports, vec![80, 443]);
    assert!(cfg.listeners[0].tls.is_none());
    let tls = cfg.listeners[1].tls.as_ref().expect("443 terminates TLS");
    assert_eq!(tls.chains.len(), 1);
    let chain = &tls.chains[0];
    assert_eq!(chain.sni, ["api.example.com"]);
    assert_eq!(
        chain.certificate,
        weft_model::gateway_tls::CertSource::Credential {
            name: "api-cert".into()
        }
    );
    // The HTTPS server's own route table holds the VirtualService bound to the gateway,
    // for the hosts it shares with that server only.
    let table = &cfg.routes[&chain.route_table];
    assert_eq!(table.virtual_hosts.len(), 1);
    assert_eq!(table.virtual_hosts[0].domains, ["api.example.com"]);
    assert!(!table.virtual_hosts[0].require_tls);
    assert!(
        !cfg.not_enforced
            .iter()
            .any(|n| n.what.starts_with("servers[1].tls")),
        "SIMPLE on HTTPS is built: {:?}",
        cfg.not_enforced
    );
}

#[test]
fn https_redirect_marks_its_servers_hosts_and_unbuilt_tls_stays_reported() {
    let yaml = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: public, namespace: game}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [api.example.com, docs.example.com]
    tls: {httpsRedirect: true}
  - port: {number: 8080, name: http-plain, protocol: HTTP}
    hosts: [api.example.com]
  - port: {number: 9443, name: tls, protocol: TLS}
    hosts: [db.example.com]
    tls: {mode: SIMPLE, credentialName: db-cert}
  - port: {number: 15443, name: auto, protocol: TLS}
    hosts: ["*.local"]
    tls: {mode: AUTO_PASSTHROUGH}
  - port: {number: 8443, name: https, protocol: HTTPS}
    hosts: [api.example.com]
    tls: {mode: MUTUAL, credentialName: api-cert, maxProtocolVersion: TLSV1_1, cipherSuites: [DES-CBC3-SHA]}
"#;
    let mut res = resources();
    res.retain(|r| !matches!(r.spec, weft_api::Spec::Gateway(_)));
    let loaded = weft_api::load_str(yaml, "gw.yaml");
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    res.extend(loaded.resources);
    let reg = Registry::build(&res, &live());
    let gw = ProxyRef {
        role: Role::Gateway,
        workload: "gw".into(),
        namespace: "istio-system".into(),
    };
    let cfg = compile(&res, &reg, "cluster.local", &gw).unwrap();
    let table = &cfg.routes["gateway_80"];
    let redirecting: Vec<(&[String], bool)> = table
        .virtual_hosts
        .iter()
        .map(|v| (v.domains.as_slice(), v.require_tls))
        .collect();
    // api.example.com has a VirtualService, docs.example.com none: both redirect.
    assert_eq!(
        redirecting,
        [
            (&["api.example.com".to_string()][..], true),
            (&["docs.example.com".to_string()][..], true)
        ]
    );
    assert!(cfg.routes["gateway_8080"]
        .virtual_hosts
        .iter()
        .all(|v| !v.require_tls));
    // A TLS server with SIMPLE is a TCP listener that terminates TLS first.
    let term: Vec<(&str, usize)> = cfg
        .tcp_listeners
        .iter()
        .map(|l| {
            (
                l.name.as_str(),
                l.tls.as_ref().map_or(0, |t| t.chains.len()),
            )
        })
        .collect();
    assert_eq!(term, [("gateway_tcp_9443", 1)]);
    assert_eq!(
        cfg.tcp_listeners[0].tls.as_ref().unwrap().chains[0].sni,
        ["db.example.com"]
    );
    // AUTO_PASSTHROUGH and a MUTUAL server whose maximum version rustls cannot speak are
    // not opened, and say so.
    let ports: Vec<u32> = cfg.listeners.iter().map(|l| l.port).collect();
    assert_eq!(ports, [80, 8080, 8443]);
    assert!(cfg.listeners[2].tls.as_ref().unwrap().chains.is_empty());
    let whats: Vec<&str> = cfg.not_enforced.iter().map(|n| n.what.as_str()).collect();
    for expected in [
        "servers[3].tls.mode AUTO_PASSTHROUGH",
        "servers[4].tls.maxProtocolVersion TLSV1_1",
        "servers[4].tls.cipherSuites DES-CBC3-SHA",
    ] {
        assert!(
            whats.iter().any(|w| w.starts_with(expected)),
            "missing {expected:?} in {whats:#?}"
        );
    }
    assert!(
        !whats
            .iter()
            .any(|w| w.starts_with("servers[0].tls") || w.starts_with("servers[2].tls")),
        "{whats:#?}"
    );
}

#[test]
fn gateway_routes_keep_order_matches_and_weights() {
    let cfg = gateway_config();
    let table = &cfg.routes["gateway_80"];
    assert_eq!(table.virtual_hosts.len(), 1);
    let vh = &table.virtual_hosts[0];
    // Only hosts the Gateway server admits.
    assert_eq!(vh.domains, vec!["api.example.com".to_string()]);
    let names: Vec<&str> = vh.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["premium", "split"]);
    let premium = &vh.routes[0];
    assert_eq!(
        premium.matches[0].headers[0].name, "x-tier",
        "header names are lower-cased"
    );
    assert_eq!(
        premium.destinations,
        vec![WeightedCluster {
            cluster: "outbound|8080|v2|inventory.game.svc.cluster.local".into(),
            weight: 100,
            ..Default::default()
        }]
    );
    let split = &vh.routes[1];
    let weights: Vec<u32> = split.destinations.iter().map(|d| d.weight).collect();
    assert_eq!(weights, [80, 20]);
    assert_eq!(split.timeout_ms, Some(1500));
}

#[test]
fn clusters_select_subset_endpoints_with_identity_and_lb() {
    let cfg = gateway_config();
    let v1 = &cfg.clusters["outbound|8080|v1|inventory.game.svc.cluster.local"];
    assert_eq!(v1.endpoints.len(), 1);
    assert_eq!(v1.endpoints[0].address, "127.0.0.1:1001");
    assert_eq!(
        v1.endpoints[0].identity,
        "spiffe://cluster.local/ns/game/sa/inventory"
    );
    assert_eq!(
        v1.lb,
        LbPolicy::LeastRequest,
        "LEAST_CONN is an alias of LEAST_REQUEST"
    );
    let v2 = &cfg.clusters["outbound|8080|v2|inventory.game.svc.cluster.local"];
    assert_eq!(v2.endpoints[0].address, "127.0.0.1:1002");
    assert_eq!(
        v2.lb,
        LbPolicy::RoundRobin,
        "subset traffic policy overrides the top level"
    );
}

#[test]
fn endpoints_follow_live_proxies() {
    let res = resources();
    let mut live = live();
    live.retain(|p| p.workload != "inv-v2");
    let reg = Registry::build(&res, &live);
    let gw = ProxyRef {
        role: Role::Gateway,
        workload: "gw".into(),
        namespace: "istio-system".into(),
    };
    let cfg = compile(&res, &reg, "cluster.local", &gw).unwrap();
    assert!(
        cfg.clusters["outbound|8080|v2|inventory.game.svc.cluster.local"]
            .endpoints
            .is_empty()
    );
}

#[test]
fn sidecar_gets_default_routes_short_names_and_inbound() {
    let res = resources();
    let reg = Registry::build(&res, &live());
    let p = ProxyRef {
        role: Role::Sidecar,
        workload: "player-v1".into(),
        namespace: "game".into(),
    };
    let cfg = compile(&res, &reg, "cluster.local", &p).unwrap();
    let table = &cfg.routes["outbound"];
    let inv = table
        .virtual_hosts
        .iter()
        .find(|v| v.name == "inventory.game.svc.cluster.local")
        .unwrap();
    assert!(
        inv.domains.contains(&"inventory".to_string()),
        "same-namespace short name"
    );
    assert!(inv.domains.contains(&"inventory.game".to_string()));
    // The gateway-bound VirtualService does not apply to sidecars: default route to all endpoints.
    assert_eq!(inv.routes.len(), 1);
    let all = &cfg.clusters[&inv.routes[0].destinations[0].cluster];
    assert_eq!(all.endpoints.len(), 2);
    let inbound = cfg.inbound.unwrap();
    assert_eq!(
        inbound.identity, "spiffe://cluster.local/ns/game/sa/default",
        "no serviceAccount means default"
    );
    assert_eq!(
        inbound.services,
        vec!["player.game.svc.cluster.local".to_string()]
    );
}

#[test]
fn unknown_subset_selects_nothing() {
    let text = MESH.replace(
        "subset: v2}\n  - name: split",
        "subset: v9}\n  - name: split",
    );
    let loaded = weft_api::load_str(&text, "mesh.yaml");
    let reg = Registry::build(&loaded.resources, &live());
    let gw = ProxyRef {
        role: Role::Gateway,
        workload: "gw".into(),
        namespace: "istio-system".into(),
    };
    let cfg = compile(&loaded.resources, &reg, "cluster.local", &gw).unwrap();
    assert!(
        cfg.clusters["outbound|8080|v9|inventory.game.svc.cluster.local"]
            .endpoints
            .is_empty()
    );
}

#[test]
fn unknown_workload_is_an_error_that_says_what_to_do() {
    let res = resources();
    let reg = Registry::build(&res, &live());
    let p = ProxyRef {
        role: Role::Sidecar,
        workload: "ghost".into(),
        namespace: "game".into(),
    };
    let err = compile(&res, &reg, "cluster.local", &p)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no WorkloadEntry game/ghost"), "{err}");
}

#[test]
fn unimplemented_semantics_are_reported_not_ignored() {
    let all = not_enforced(&resources());
    let whats: Vec<String> = all
        .iter()
        .map(|n| format!("{} {}", n.resource, n.what))
        .collect();
    // Implemented fields are not reported.
    assert!(
        !whats.iter().any(|w| [
            "loadBalancer",
            "timeout",
            ".match",
            "retries",
            "outlierDetection"
        ]
        .iter()
        .any(|f| w.contains(f))),
        "{whats:#?}"
    );
    assert!(all.iter().all(|n| n.location.starts_with("mesh.yaml:")));
}

#[test]
fn durations_parse_like_istio() {
    assert_eq!(parse_duration_ms("250ms"), Some(250));
    assert_eq!(parse_duration_ms("0.5s"), Some(500));
    assert_eq!(parse_duration_ms("2m"), Some(120_000));
    assert_eq!(parse_duration_ms("1h"), Some(3_600_000));
    assert_eq!(parse_duration_ms("5"), None);
}

fn compile_for(text: &str, role: Role, workload: &str, ns: &str) -> ProxyConfig {
    let loaded = weft_api::load_str(text, "mesh.yaml");
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let reg = Registry::build(&loaded.resources, &live());
    let p = ProxyRef {
        role,
        workload: workload.into(),
        namespace: ns.into(),
    };
    compile(&loaded.resources, &reg, "cluster.local", &p).unwrap()
}

#[test]
fn client_conditions_are_decided_per_proxy_and_never_widen_a_route() {
    let vs = r#"
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: inv-mesh, namespace: game}
spec:
  hosts: [inventory]
  http:
  - name: from-player
    match:
    - sourceLabels: {app: player}
    route: [{destination: {host: inventory, subset: v2}}]
  - name: from-other-ns
    match:
    - sourceNamespace: elsewhere
    route: [{destination: {host: inventory, subset: v2}}]
  - name: wrong-port
    match:
    - port: 1234
    route: [{destination: {host: inventory, subset: v2}}]
  - name: canary
    match:
    - queryParams: {canary: {exact: "true"}}
    route: [{destination: {host: inventory, subset: v2}}]
  - name: rest
    route: [{destination: {host: inventory, subset: v1}}]
"#;
    let text = format!("{MESH}{vs}");
    let cfg = compile_for(&text, Role::Sidecar, "player-v1", "game");
    let vh = cfg.routes["outbound"]
        .virtual_hosts
        .iter()
        .find(|v| v.name == "inventory.game.svc.cluster.local")
        .unwrap();
    let names: Vec<&str> = vh.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        ["from-player", "canary", "rest"],
        "routes for other clients or ports do not exist here"
    );
    assert!(
        vh.routes[0].matches[0].headers.is_empty(),
        "sourceLabels became nothing to check per request"
    );
    assert_eq!(
        vh.routes[1].matches[0].query_params[0].name, "canary",
        "query matches are kept, not dropped"
    );
    // inventory's own sidecar is not `app: player`: the first route is not there.
    let cfg = compile_for(&text, Role::Sidecar, "inv-v1", "game");
    let vh = cfg.routes["outbound"]
        .virtual_hosts
        .iter()
        .find(|v| v.name == "inventory.game.svc.cluster.local")
        .unwrap();
    assert_eq!(vh.routes[0].name, "canary");
}

#[test]
fn a_virtual_service_is_served_only_under_its_own_gateways_hosts() {
    let extra = r#"
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: catchall, namespace: game}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: wild, namespace: game}
spec:
  hosts: ["*.example.com"]
  gateways: [public]
  http:
  - route: [{destination: {host: inventory, subset: v1}}]
"#;
    let text = format!("{MESH}{extra}");
    let cfg = compile_for(&text, Role::Gateway, "gw", "istio-system");
    let table = &cfg.routes["gateway_80"];
    let api = table
        .virtual_hosts
        .iter()
        .find(|v| v.name == "VirtualService/game/api")
        .unwrap();
    // `public` admits only api.example.com; the catch-all Gateway does not widen it.
    assert_eq!(api.domains, vec!["api.example.com".to_string()]);
    let wild = table
        .virtual_hosts
        .iter()
        .find(|v| v.name == "VirtualService/game/wild")
        .unwrap();
    assert_eq!(
        wild.domains,
        vec!["api.example.com".to_string()],
        "the narrower of server and VirtualService host"
    );
}

#[test]
fn retry_policies_follow_istio_defaults() {
    let default = retry_policy(None);
    assert_eq!(default.attempts, 2);
    assert_eq!(
        default.retry_on.tokens(),
        [
            "connect-failure",
            "refused-stream",
            "cancelled",
            "unavailable"
        ]
    );
    assert!(default.ignore_previous_hosts);
    let off = weft_api::HttpRetry {
        attempts: Some(0),
        ..Default::default()
    };
    assert_eq!(
        retry_policy(Some(&off)).attempts,
        0,
        "attempts: 0 disables retries"
    );
    let custom = weft_api::HttpRetry {
        attempts: Some(3),
        per_try_timeout: Some("2s".into()),
        retry_on: Some("5xx,503,reset".into()),
        ..Default::default()
    };
    let p = retry_policy(Some(&custom));
    assert_eq!((p.attempts, p.per_try_timeout_ms), (3, Some(2000)));
    assert_eq!(
        p.retry_on.tokens(),
        ["5xx", "reset", "retriable-status-codes"]
    );
    assert_eq!(p.retriable_status_codes, [503]);
    assert_eq!(p.backoff_ms, 25);
}

#[test]
fn faults_disable_timeouts_and_retries_and_grpc_names_map_to_codes() {
    let vs = r#"
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: chaos, namespace: game}
spec:
  hosts: [player]
  http:
  - timeout: 2s
    retries: {attempts: 3, retryOn: 5xx}
    fault:
      delay: {fixedDelay: 50ms, percentage: {value: 10}}
      abort: {grpcStatus: UNAVAILABLE}
    route: [{destination: {host: player}}]
"#;
    let cfg = compile_for(&format!("{MESH}{vs}"), Role::Sidecar, "inv-v1", "game");
    let vh = cfg.routes["outbound"]
        .virtual_hosts
        .iter()
        .find(|v| v.name == "player.game.svc.cluster.local")
        .unwrap();
    let r = &vh.routes[0];
    assert_eq!(
        r.timeout_ms, None,
        "Istio: no timeout on a route with a fault"
    );
    assert_eq!(
        r.retry.attempts, 0,
        "Istio: no retries on a route with a fault"
    );
    let f = r.fault.as_ref().unwrap();
    assert_eq!((f.delay_ms, f.delay_percent), (Some(50), 10.0));
    assert_eq!(
        (f.abort_grpc, f.abort_percent),
        (Some(14), 0.0),
        "no percentage: nothing is aborted"
    );
    assert_eq!(grpc_code("unavailable"), Some(14));
    assert_eq!(grpc_code("NOPE"), None);
}

#[test]
fn tcp_gateway_servers_are_tcp_listeners_and_other_protocols_are_reported() {
    let extra = r#"
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: tcp-gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 31400, name: tcp, protocol: TCP}
    hosts: ["*"]
  - port: {number: 8081, name: http2, protocol: HTTP2}
    hosts: ["*"]
  - port: {number: 5353, name: udp, protocol: UDP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: cache, namespace: game}
spec:
  hosts: [cache.game.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{number: 6379, name: redis, protocol: REDIS}, {number: 8080, name: http, protocol: HTTP}, {number: 53, name: dns, protocol: UDP}]
  workloadSelector: {labels: {app: cache}}
"#;
    let text = format!("{MESH}{extra}");
    let loaded = weft_api::load_str(&text, "mesh.yaml");
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let reg = Registry::build(&loaded.resources, &live());
    let gw = ProxyRef {
        role: Role::Gateway,
        workload: "gw".into(),
        namespace: "istio-system".into(),
    };
    let cfg = compile(&loaded.resources, &reg, "cluster.local", &gw).unwrap();
    let ports: Vec<u32> = cfg.listeners.iter().map(|l| l.port).collect();
    assert!(ports.contains(&8081), "HTTP2 servers are HTTP: {ports:?}");
    assert!(
        !ports.contains(&31400) && !ports.contains(&5353),
        "TCP and UDP servers are never bound as HTTP: {ports:?}"
    );
    let tcp: Vec<u32> = cfg.tcp_listeners.iter().map(|l| l.port).collect();
    assert_eq!(tcp, vec![31400], "the TCP server is a TCP listener");
    let reported: Vec<String> = not_enforced(&loaded.resources)
        .into_iter()
        .map(|n| format!("{}: {}", n.resource, n.what))
        .collect();
    assert!(
        !reported
            .iter()
            .any(|r| r.contains("servers[0].port.protocol")
                || r.contains("servers[1].port.protocol")),
        "{reported:#?}"
    );
    assert!(
        reported
            .iter()
            .any(|r| r.starts_with("Gateway/istio-system/tcp-gw: servers[2].port.protocol UDP")),
        "{reported:#?}"
    );
    assert!(
        reported
            .iter()
            .any(|r| r.starts_with("ServiceEntry/game/cache: ports[2].protocol UDP")),
        "{reported:#?}"
    );
    assert!(
        !reported.iter().any(|r| r.contains("ports[0].protocol")),
        "REDIS is opaque TCP, built: {reported:#?}"
    );
}

#[test]
fn reports_say_modes_in_istios_words_not_rust_debug_text() {
    let dr = r#"
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: originate, namespace: game}
spec: {host: player, trafficPolicy: {tls: {mode: SIMPLE}}}
"#;
    let loaded = weft_api::load_str(&format!("{MESH}{dr}"), "mesh.yaml");
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let what: Vec<String> = not_enforced(&loaded.resources)
        .into_iter()
        .filter(|n| n.resource == "DestinationRule/game/originate")
        .map(|n| n.what)
        .collect();
    assert_eq!(
        what,
        ["trafficPolicy.tls.mode SIMPLE to a mesh service (TLS origination is built for services outside the mesh; the mesh's mTLS is used)"]
    );
    for n in not_enforced(&resources()) {
        assert!(
            !n.what.contains("Some(") && !n.what.contains("None"),
            "no Rust debug text: {}",
            n.what
        );
    }
}

#[test]
fn implemented_route_actions_are_not_reported() {
    let vs = r#"
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: actions, namespace: game}
spec:
  hosts: [player]
  http:
  - match: [{uri: {prefix: /old}}]
    redirect: {uri: /new}
  - match: [{uri: {exact: /down}}]
    directResponse: {status: 503}
  - fault: {abort: {httpStatus: 500, percentage: {value: 1}}}
    mirror: {host: inventory}
    mirrorPercentage: {value: 5}
    rewrite: {uri: /v2}
    headers: {request: {set: {x-a: b}}}
    route: [{destination: {host: player}, headers: {response: {remove: [x-b]}}}]
"#;
    let loaded = weft_api::load_str(&format!("{MESH}{vs}"), "mesh.yaml");
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let reported: Vec<_> = not_enforced(&loaded.resources)
        .into_iter()
        .filter(|n| n.resource == "VirtualService/game/actions")
        .collect();
    assert!(reported.is_empty(), "{reported:#?}");
    let cfg = compile_for(&format!("{MESH}{vs}"), Role::Sidecar, "inv-v1", "game");
    let vh = cfg.routes["outbound"]
        .virtual_hosts
        .iter()
        .find(|v| v.name == "player.game.svc.cluster.local")
        .unwrap();
    assert_eq!(vh.routes[2].mirrors[0].percent, 5.0);
    assert!(
        cfg.clusters.contains_key(&vh.routes[2].mirrors[0].cluster),
        "the mirror's cluster is built"
    );
}

#[test]
fn deprecated_consecutive_errors_and_empty_retry_on_follow_istio() {
    let dr = r#"
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: player, namespace: game}
spec:
  host: player
  trafficPolicy:
    outlierDetection: {consecutiveErrors: 7}
"#;
    let cfg = compile_for(&format!("{MESH}{dr}"), Role::Sidecar, "inv-v1", "game");
    let c = cfg
        .clusters
        .values()
        .find(|c| c.service == "player.game.svc.cluster.local")
        .unwrap();
    let o = c.outlier.as_ref().unwrap();
    assert_eq!(
        (o.consecutive_gateway, o.consecutive_5xx),
        (7, 0),
        "consecutiveErrors means gateway errors and turns the 5xx rule off"
    );
    let empty = weft_api::HttpRetry {
        attempts: Some(2),
        retry_on: Some(String::new()),
        ..Default::default()
    };
    assert_eq!(
        retry_policy(Some(&empty)).retry_on,
        retry_policy(None).retry_on,
        "an empty retryOn keeps the defaults"
    );
}

// ---------------------------------------------------------------------------------------
// The NECPGAME example (examples/necpgame) with the edits the proxy harness tests
// (crates/proxy/tests/harness_routing.rs, harness_resilience.rs) stand for: each test below
// pins the config the compiler makes of that YAML, which those tests build by hand.

/// The example's files, editable in memory.
struct Necpgame(Vec<(String, String)>);

impl Necpgame {
    fn load() -> Necpgame {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/necpgame");
        let mut files: Vec<(String, String)> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .map(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read_to_string(&p).unwrap())
            })
            .collect();
        files.sort();
        Necpgame(files)
    }

    fn file(&mut self, name: &str) -> &mut String {
        match self.0.iter().position(|(n, _)| n == name) {
            Some(i) => &mut self.0[i].1,
            None => {
                self.0.push((name.into(), String::new()));
                &mut self.0.last_mut().unwrap().1
            }
        }
    }

    /// Replaces `from` (which must be there) with `to` in `file`.
    fn edit(mut self, file: &str, from: &str, to: &str) -> Necpgame {
        let text = self.file(file);
        assert!(text.contains(from), "{file} no longer has {from:?}");
        *text = text.replacen(from, to, 1);
        self
    }

    fn insert_after(self, file: &str, anchor: &str, extra: &str) -> Necpgame {
        self.edit(file, anchor, &format!("{anchor}{extra}"))
    }

    /// A second leaderboard workload (v2) and a leaderboard DestinationRule with
    /// `traffic_policy`: what the outlier-detection and consistent-hash tests add.
    fn leaderboard_v2(mut self, traffic_policy: &str) -> Necpgame {
        self.file("registry.yaml").push_str("---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: leaderboard-v2\n  namespace: necpgame\n  annotations:\n    weft.dev/run: demo-app\nspec:\n  address: 127.0.0.1\n  labels: {app: leaderboard, version: v2}\n  serviceAccount: leaderboard\n");
        *self.file("leaderboard-dr.yaml") = format!("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: leaderboard\n  namespace: necpgame\nspec:\n  host: leaderboard\n  trafficPolicy:\n{traffic_policy}");
        self
    }

    /// The ingress gateway's config, every workload live.
    fn gateway(&self) -> ProxyConfig {
        let mut resources = Vec::new();
        for (name, text) in &self.0 {
            let loaded = weft_api::load_str(text, name);
            assert!(loaded.errors.is_empty(), "{name}: {:?}", loaded.errors);
            resources.extend(loaded.resources);
        }
        let errors = weft_api::validate_all(&resources);
        assert!(errors.is_empty(), "{errors:?}");
        let live: Vec<LiveProxy> = resources
            .iter()
            .filter(|r| r.key().starts_with("WorkloadEntry/"))
            .enumerate()
            .map(|(i, r)| LiveProxy {
                workload: r.name().into(),
                namespace: r.namespace().into(),
                inbound_addr: format!("127.0.0.1:{}", 2000 + i),
                listeners: Default::default(),
            })
            .collect();
        let reg = Registry::build(&resources, &live);
        let gw = ProxyRef {
            role: Role::Gateway,
            workload: "istio-ingressgateway".into(),
            namespace: "istio-system".into(),
        };
        compile(&resources, &reg, "cluster.local", &gw).unwrap()
    }
}

const NECPGAME_VS: &str = "VirtualService/necpgame/necpgame-api";
const LEADERBOARD_ROUTE: &str =
    "  - name: leaderboard\n    match:\n    - uri: {prefix: /api/v1/leaderboard}\n";
const PLAYER_CLUSTER: &str = "outbound|8080||player.necpgame.svc.cluster.local";
const LEADERBOARD_CLUSTER: &str = "outbound|8080||leaderboard.necpgame.svc.cluster.local";

/// The routes of the gateway's one virtual host, `game.necpgame.local`.
fn game_routes(cfg: &ProxyConfig) -> &[Route] {
    let table = &cfg.routes["gateway_80"];
    assert_eq!(table.virtual_hosts.len(), 1);
    let vh = &table.virtual_hosts[0];
    assert_eq!(vh.name, NECPGAME_VS);
    assert_eq!(vh.domains, ["game.necpgame.local"]);
    &vh.routes
}

fn game_route<'a>(cfg: &'a ProxyConfig, name: &str) -> &'a Route {
    game_routes(cfg)
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no route {name}"))
}

fn prefix(p: &str) -> Vec<RouteMatch> {
    vec![RouteMatch {
        uri: Some(StringMatcher::Prefix(p.into())),
        ..Default::default()
    }]
}

fn to(cluster: &str) -> Vec<WeightedCluster> {
    vec![WeightedCluster {
        cluster: cluster.into(),
        weight: 100,
        ..Default::default()
    }]
}

fn retry_on(tokens: &[&str]) -> RetryOn {
    tokens
        .iter()
        .map(|t| RetryCondition::parse(t).unwrap())
        .collect()
}

#[test]
fn necpgame_player_route_retries_and_attempts_zero_turns_them_off() {
    let cfg = Necpgame::load().gateway();
    let player = game_route(&cfg, "player");
    assert_eq!(player.matches, prefix("/api/v1/player"));
    assert_eq!(player.destinations, to(PLAYER_CLUSTER));
    assert_eq!(player.timeout_ms, Some(5_000));
    assert_eq!(
        player.retry,
        RetryPolicy {
            attempts: 3,
            per_try_timeout_ms: Some(2_000),
            retry_on: retry_on(&[
                "connect-failure",
                "refused-stream",
                "unavailable",
                "cancelled",
                "5xx"
            ]),
            retriable_status_codes: vec![],
            backoff_ms: 25,
            ignore_previous_hosts: true,
        }
    );
    assert_eq!(cfg.clusters[PLAYER_CLUSTER].lb, LbPolicy::RoundRobin);

    // The e2e edit: `attempts: 0`, perTryTimeout and retryOn removed.
    let cfg = Necpgame::load()
        .edit(
            "istio-gateway.yaml",
            "    retries:\n      attempts: 3\n      perTryTimeout: 2s\n      retryOn: connect-failure,refused-stream,unavailable,cancelled,5xx\n",
            "    retries:\n      attempts: 0\n",
        )
        .gateway();
    let player = game_route(&cfg, "player");
    assert_eq!(
        player.retry,
        RetryPolicy::default(),
        "no retries at all, not Istio's default policy"
    );
    assert_eq!(player.timeout_ms, Some(5_000));
}

#[test]
fn necpgame_rewrite_and_header_operations() {
    let cfg = Necpgame::load()
        .insert_after(
            "istio-gateway.yaml",
            LEADERBOARD_ROUTE,
            "    rewrite: {uri: /v2/board}\n    headers:\n      request:\n        set: {x-player-tier: gold}\n        remove: [user-agent]\n      response:\n        add: {x-served-by: weft}\n",
        )
        .gateway();
    let r = game_route(&cfg, "leaderboard");
    assert_eq!(r.matches, prefix("/api/v1/leaderboard"));
    assert_eq!(r.destinations, to(LEADERBOARD_CLUSTER));
    assert_eq!(
        r.rewrite,
        Some(Rewrite {
            uri: Some("/v2/board".into()),
            authority: None,
            uri_regex: None,
        })
    );
    assert_eq!(
        r.request_headers,
        HeaderOps {
            set: vec![("x-player-tier".into(), "gold".into())],
            add: vec![],
            remove: vec!["user-agent".into()],
        }
    );
    assert_eq!(
        r.response_headers,
        HeaderOps {
            add: vec![("x-served-by".into(), "weft".into())],
            ..Default::default()
        }
    );
    assert_eq!(r.retry, retry_policy(None), "no retries: Istio's default");
    assert_eq!(r.timeout_ms, None);
}

#[test]
fn necpgame_redirect_direct_response_and_fault_abort() {
    let extra = "  - name: old-api\n    match:\n    - uri: {prefix: /api/v0}\n    redirect: {uri: /api/v1/player/1, redirectCode: 302}\n  - name: maintenance\n    match:\n    - uri: {exact: /status}\n    directResponse: {status: 503, body: {string: down for maintenance}}\n  - name: chaos\n    match:\n    - uri: {prefix: /api/v1/chaos}\n    fault:\n      abort: {httpStatus: 418, percentage: {value: 100}}\n    route:\n    - destination: {host: player}\n";
    let cfg = Necpgame::load()
        .insert_after(
            "istio-gateway.yaml",
            "  gateways: [necpgame-gateway]\n  http:\n",
            extra,
        )
        .gateway();
    let names: Vec<&str> = game_routes(&cfg).iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names[..3],
        ["old-api", "maintenance", "chaos"],
        "first, in order"
    );

    let old = game_route(&cfg, "old-api");
    assert_eq!(old.matches, prefix("/api/v0"));
    assert!(old.destinations.is_empty());
    assert_eq!(
        old.redirect,
        Some(Redirect {
            uri: Some("/api/v1/player/1".into()),
            code: 302,
            ..Default::default()
        })
    );

    let down = game_route(&cfg, "maintenance");
    assert_eq!(
        down.matches,
        vec![RouteMatch {
            uri: Some(StringMatcher::Exact("/status".into())),
            ..Default::default()
        }]
    );
    assert_eq!(
        down.direct_response,
        Some(DirectResponse {
            status: 503,
            body: b"down for maintenance".to_vec(),
        })
    );

    let chaos = game_route(&cfg, "chaos");
    assert_eq!(chaos.matches, prefix("/api/v1/chaos"));
    assert_eq!(chaos.destinations, to(PLAYER_CLUSTER));
    assert_eq!(
        chaos.fault,
        Some(Fault {
            abort_status: Some(418),
            abort_percent: 100.0,
            ..Default::default()
        })
    );
    assert_eq!(
        (chaos.retry.clone(), chaos.timeout_ms),
        (RetryPolicy::default(), None)
    );
}

#[test]
fn necpgame_outlier_detection_on_a_second_leaderboard() {
    let cfg = Necpgame::load()
        .leaderboard_v2("    outlierDetection:\n      consecutive5xxErrors: 3\n      baseEjectionTime: 60s\n      maxEjectionPercent: 50\n")
        .gateway();
    let c = &cfg.clusters[LEADERBOARD_CLUSTER];
    assert_eq!(
        c.outlier,
        Some(Outlier {
            consecutive_5xx: 3,
            consecutive_gateway: 0,
            base_ejection_ms: 60_000,
            interval_ms: 10_000,
            max_ejection_percent: 50,
            min_health_percent: 0,
            split_local_origin: false,
            consecutive_local_origin: 5,
        })
    );
    assert_eq!(
        c.lb,
        LbPolicy::LeastRequest,
        "no loadBalancer: Istio's default"
    );
    assert_eq!((c.hash.clone(), c.max_requests), (None, None));
    let workloads: Vec<(&str, Option<&str>, &str)> = c
        .endpoints
        .iter()
        .map(|e| {
            (
                e.workload.as_str(),
                e.version.as_deref(),
                e.identity.as_str(),
            )
        })
        .collect();
    let sa = "spiffe://cluster.local/ns/necpgame/sa/leaderboard";
    assert_eq!(
        workloads,
        [
            ("leaderboard-v1", Some("v1"), sa),
            ("leaderboard-v2", Some("v2"), sa)
        ]
    );
    let r = game_route(&cfg, "leaderboard");
    assert_eq!(r.retry, retry_policy(None));
    assert_eq!(r.destinations, to(LEADERBOARD_CLUSTER));
}

#[test]
fn necpgame_consistent_hash_on_a_header() {
    let cfg = Necpgame::load()
        .leaderboard_v2(
            "    loadBalancer:\n      consistentHash:\n        httpHeaderName: x-player-id\n",
        )
        .gateway();
    let c = &cfg.clusters[LEADERBOARD_CLUSTER];
    assert_eq!(c.hash, Some(HashKey::Header("x-player-id".into())));
    assert_eq!(c.lb, LbPolicy::LeastRequest);
    assert_eq!(c.outlier, None);
    assert_eq!(c.endpoints.len(), 2);
}

#[test]
fn necpgame_mirror_defaults_to_every_request() {
    let cfg = Necpgame::load()
        .insert_after(
            "istio-gateway.yaml",
            "    - destination: {host: leaderboard}\n",
            "    mirror: {host: player}\n    mirrorPercentage: {value: 100}\n",
        )
        .gateway();
    let r = game_route(&cfg, "leaderboard");
    assert_eq!(r.destinations, to(LEADERBOARD_CLUSTER));
    assert_eq!(
        r.mirrors,
        vec![Mirror {
            cluster: PLAYER_CLUSTER.into(),
            percent: 100.0,
        }]
    );
    assert_eq!(cfg.clusters[PLAYER_CLUSTER].endpoints.len(), 1);
}

#[test]
fn necpgame_cors_policies_on_a_route_and_a_direct_response() {
    let cors = "    corsPolicy:\n      allowOrigins: [{exact: \"https://play.necpgame.example\"}]\n      allowMethods: [GET, POST]\n      allowHeaders: [x-player-id]\n      exposeHeaders: [x-weft-version]\n      maxAge: 24h\n      allowCredentials: true\n";
    let closed = "  - name: closed\n    match:\n    - uri: {exact: /api/v1/closed}\n    directResponse: {status: 503, body: {string: closed}}\n    headers:\n      response:\n        set: {x-closed: \"yes\"}\n    corsPolicy:\n      allowOrigins: [{exact: \"https://play.necpgame.example\"}]\n";
    let cfg = Necpgame::load()
        .edit(
            "istio-gateway.yaml",
            LEADERBOARD_ROUTE,
            &format!("{closed}{LEADERBOARD_ROUTE}{cors}"),
        )
        .gateway();
    let origin = || vec![StringMatcher::Exact("https://play.necpgame.example".into())];
    let r = game_route(&cfg, "leaderboard");
    assert_eq!(
        r.cors,
        Some(Cors {
            allow_origins: origin(),
            allow_methods: vec!["GET".into(), "POST".into()],
            allow_headers: vec!["x-player-id".into()],
            expose_headers: vec!["x-weft-version".into()],
            max_age_secs: Some(86_400),
            allow_credentials: true,
            forward_unmatched_preflights: true,
        })
    );
    let names: Vec<&str> = game_routes(&cfg).iter().map(|r| r.name.as_str()).collect();
    let at = |n| names.iter().position(|x| *x == n).unwrap();
    assert_eq!(at("closed") + 1, at("leaderboard"), "{names:?}");
    let closed = game_route(&cfg, "closed");
    assert_eq!(
        closed.direct_response,
        Some(DirectResponse {
            status: 503,
            body: b"closed".to_vec(),
        })
    );
    assert_eq!(
        closed.response_headers,
        HeaderOps {
            set: vec![("x-closed".into(), "yes".into())],
            ..Default::default()
        }
    );
    assert_eq!(
        closed.cors,
        Some(Cors {
            allow_origins: origin(),
            forward_unmatched_preflights: true,
            ..Default::default()
        })
    );
}

#[test]
fn a_workload_group_loads_and_is_reported_as_not_built() {
    let wg = "---\napiVersion: networking.istio.io/v1\nkind: WorkloadGroup\nmetadata: {name: vms, namespace: game}\nspec:\n  metadata: {labels: {app: vm}}\n  template: {serviceAccount: vm}\n  probe: {httpGet: {port: 8080, path: /ready}}\n";
    let loaded = weft_api::load_str(&format!("{MESH}{wg}"), "mesh.yaml");
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    assert!(weft_api::validate_all(&loaded.resources).is_empty());
    let what: Vec<String> = not_enforced(&loaded.resources)
        .into_iter()
        .filter(|n| n.resource == "WorkloadGroup/game/vms")
        .map(|n| n.what)
        .collect();
    assert_eq!(
        what,
        ["WorkloadGroup (workloads registering into a group are not built yet; declare each WorkloadEntry)"]
    );
}

#[test]
fn telemetry_meta_of_the_proxy_and_each_endpoint_comes_from_workload_labels() {
    let res = resources();
    let reg = Registry::build(&res, &live());
    let p = ProxyRef {
        role: Role::Sidecar,
        workload: "player-v1".into(),
        namespace: "game".into(),
    };
    let cfg = compile(&res, &reg, "cluster.local", &p).unwrap();
    let own = &cfg.workload_meta;
    assert_eq!(
        (
            own.app.as_str(),
            own.version.as_str(),
            own.canonical_service.as_str(),
            own.canonical_revision.as_str()
        ),
        ("player", "v1", "player", "v1")
    );
    let c = &cfg.clusters["outbound|8080||inventory.game.svc.cluster.local"];
    let mut metas: Vec<(&str, &str, &str)> = c
        .endpoints
        .iter()
        .map(|e| {
            (
                e.workload.as_str(),
                e.meta.canonical_service.as_str(),
                e.meta.canonical_revision.as_str(),
            )
        })
        .collect();
    metas.sort();
    assert_eq!(
        metas,
        [("inv-v1", "inventory", "v1"), ("inv-v2", "inventory", "v2")]
    );
    // The gateway's labels have no app: Istio's fallbacks.
    let gw = gateway_config().workload_meta;
    assert_eq!(
        (
            gw.app.as_str(),
            gw.canonical_service.as_str(),
            gw.canonical_revision.as_str(),
            gw.cluster.as_str()
        ),
        ("unknown", "gw", "latest", "Kubernetes")
    );
}

#[test]
fn necpgame_consistent_hash_on_a_cookie_with_and_without_ttl() {
    let with_ttl = Necpgame::load()
        .leaderboard_v2(
            "    loadBalancer:\n      consistentHash:\n        httpCookie: {name: session, path: /api, ttl: 1h}\n",
        )
        .gateway();
    assert_eq!(
        with_ttl.clusters[LEADERBOARD_CLUSTER].hash,
        Some(HashKey::NewCookie {
            name: "session".into(),
            path: Some("/api".into()),
            ttl_secs: 3600
        }),
        "with a ttl the proxy makes the cookie up"
    );
    let without = Necpgame::load()
        .leaderboard_v2(
            "    loadBalancer:\n      consistentHash:\n        httpCookie: {name: session}\n",
        )
        .gateway();
    assert_eq!(
        without.clusters[LEADERBOARD_CLUSTER].hash,
        Some(HashKey::Cookie("session".into()))
    );
}

#[test]
fn necpgame_consistent_hash_tables_ring_size_and_maglev() {
    let table = |yaml: &str| {
        Necpgame::load().leaderboard_v2(yaml).gateway().clusters[LEADERBOARD_CLUSTER].hash_table
    };
    let base = "    loadBalancer:\n      consistentHash:\n        httpHeaderName: x-player-id\n";
    assert_eq!(
        table(base),
        weft_model::HashTable::Ring { minimum_size: 1024 },
        "Envoy's default ring"
    );
    assert_eq!(
        table(&format!(
            "{base}        ringHash: {{minimumRingSize: 4096}}\n"
        )),
        weft_model::HashTable::Ring { minimum_size: 4096 }
    );
    assert_eq!(
        table(&format!("{base}        maglev: {{tableSize: 251}}\n")),
        weft_model::HashTable::Maglev { size: 251 }
    );
}
