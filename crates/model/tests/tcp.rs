//! The compiler's TCP output: a sidecar's listener per (service, opaque port) with the
//! mesh VirtualService's `tls`/`tcp` routes (matches about the client decided here) and a
//! default route; no HTTP virtual host for a TCP-only service; DestinationRule
//! `connectionPool.tcp`; gateway `TCP` servers routed by bound VirtualServices; and what is
//! reported as not enforced.

use weft_model::{compile, not_enforced, LiveProxy, ProxyRef, Registry, Role};

const CONFIG: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: echo, namespace: shop}
spec:
  hosts: [tcp-echo.shop.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{number: 9000, name: tcp}, {number: 9443, name: tls-x, protocol: TLS}]
  workloadSelector: {labels: {app: tcp-echo}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: web, namespace: shop}
spec:
  hosts: [web.shop.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{number: 8080, name: web}]
  workloadSelector: {labels: {app: web}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: echo-v1, namespace: shop}
spec: {address: 127.0.0.1, labels: {app: tcp-echo, version: v1}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: echo-v2, namespace: shop}
spec: {address: 127.0.0.1, labels: {app: tcp-echo, version: v2}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: client, namespace: shop}
spec: {address: 127.0.0.1, labels: {app: client}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: gw, namespace: istio-system}
spec: {address: 127.0.0.1, labels: {istio: ingressgateway}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo, namespace: shop}
spec:
  host: tcp-echo
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 3, connectTimeout: 250ms, idleTimeout: 0s}
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: shop}
spec:
  hosts: [tcp-echo]
  tls:
  - match: [{port: 9443, sniHosts: [db.example.com]}]
    route: [{destination: {host: tcp-echo, subset: v2}}]
  tcp:
  - match: [{port: 9000, sourceLabels: {app: nobody}}]
    route: [{destination: {host: tcp-echo, subset: v2}}]
  - match: [{port: 9000}]
    route:
    - {destination: {host: tcp-echo, port: {number: 9000}, subset: v1}, weight: 80}
    - {destination: {host: tcp-echo, port: {number: 9000}, subset: v2}, weight: 20}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: client, namespace: shop}
spec:
  workloadSelector: {labels: {app: client}}
  egress:
  - port: {number: 9000, protocol: TCP, name: tcp}
    bind: 127.0.0.2
    captureMode: NONE
    hosts: [./tcp-echo.shop.svc.cluster.local]
  - hosts: ["./*"]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: tcp-gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 31400, name: tcp, protocol: TCP}
    hosts: ["*"]
  - port: {number: 443, name: tls, protocol: TLS}
    hosts: ["*.example.com"]
    tls: {mode: PASSTHROUGH}
  - port: {number: 8443, name: https, protocol: HTTPS}
    hosts: ["*.example.com"]
    tls: {mode: SIMPLE, credentialName: cert}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo-ingress, namespace: shop}
spec:
  hosts: ["*"]
  gateways: [istio-system/tcp-gw]
  tls:
  - match: [{port: 443, sniHosts: [db.example.com]}]
    route: [{destination: {host: tcp-echo, port: {number: 9443}, subset: v2}}]
  tcp:
  - match: [{port: 31400}]
    route: [{destination: {host: tcp-echo, port: {number: 9000}, subset: v1}}]
"#;

fn live() -> Vec<LiveProxy> {
    ["echo-v1:2001", "echo-v2:2002", "client:2003"]
        .iter()
        .map(|s| {
            let (w, port) = s.split_once(':').unwrap();
            LiveProxy {
                workload: w.into(),
                namespace: "shop".into(),
                inbound_addr: format!("127.0.0.1:{port}"),
                listeners: Default::default(),
            }
        })
        .collect()
}

fn compile_for(role: Role, workload: &str, namespace: &str) -> weft_model::ProxyConfig {
    let loaded = weft_api::load_str(CONFIG, "tcp.yaml");
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let reg = Registry::build(&loaded.resources, &live());
    let proxy = ProxyRef {
        role,
        workload: workload.into(),
        namespace: namespace.into(),
    };
    compile(&loaded.resources, &reg, "cluster.local", &proxy).unwrap()
}

#[test]
fn a_sidecar_gets_a_tcp_listener_per_opaque_port_with_its_routes() {
    let cfg = compile_for(Role::Sidecar, "client", "shop");
    let names: Vec<&str> = cfg.tcp_listeners.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "outbound_tcp|9000|tcp-echo.shop.svc.cluster.local",
            "outbound_tcp|9443|tcp-echo.shop.svc.cluster.local"
        ]
    );
    let tcp = &cfg.tcp_listeners[0];
    assert!(!tcp.sni);
    // The Sidecar's egress listener gives port 9000 a fixed address; 9443 keeps an
    // ephemeral one.
    assert_eq!(tcp.bind.as_deref(), Some("127.0.0.2:9000"));
    assert_eq!(cfg.tcp_listeners[1].bind, None);
    // The sourceLabels route is not for this client; the 80/20 route and the default are.
    let routes: Vec<&str> = tcp.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        routes,
        ["echo/tcp[1]", "default/tcp-echo.shop.svc.cluster.local"]
    );
    let weights: Vec<(&str, u32)> = tcp.routes[0]
        .destinations
        .iter()
        .map(|d| (d.cluster.as_str(), d.weight))
        .collect();
    assert_eq!(
        weights,
        [
            ("outbound|9000|v1|tcp-echo.shop.svc.cluster.local", 80),
            ("outbound|9000|v2|tcp-echo.shop.svc.cluster.local", 20)
        ]
    );
    // The TLS port: the SNI route (destination port from the listener), then the default.
    let tls = &cfg.tcp_listeners[1];
    assert!(tls.sni);
    assert_eq!(tls.routes[0].matches[0].sni_hosts, ["db.example.com"]);
    assert_eq!(
        tls.routes[0].destinations[0].cluster,
        "outbound|9443|v2|tcp-echo.shop.svc.cluster.local"
    );
    // Subset clusters with their endpoints and the DestinationRule's tcp pool.
    let v1 = &cfg.clusters["outbound|9000|v1|tcp-echo.shop.svc.cluster.local"];
    assert_eq!(v1.endpoints.len(), 1);
    assert_eq!(v1.endpoints[0].workload, "echo-v1");
    assert_eq!(v1.limits.max_connections, Some(3));
    assert_eq!(v1.tcp.connect_timeout_ms, 250);
    assert_eq!(v1.tcp.idle_timeout_ms, None, "0s: no idle timeout");
    // A TCP-only service has no HTTP virtual host; a port without a protocol stays HTTP.
    let hosts: Vec<&str> = cfg.routes["outbound"]
        .virtual_hosts
        .iter()
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(
        hosts,
        ["web.shop.svc.cluster.local", "allow_any"],
        "and Istio's ALLOW_ANY catch-all last"
    );
}

#[test]
fn the_inbound_side_knows_its_tcp_ports_and_defaults_follow_istio() {
    let cfg = compile_for(Role::Sidecar, "echo-v1", "shop");
    let inbound = cfg.inbound.unwrap();
    assert_eq!(inbound.tcp_ports, [9000, 9443]);
    let pool = weft_model::TcpPool::default();
    assert_eq!(
        (pool.connect_timeout_ms, pool.idle_timeout_ms),
        (10_000, Some(3_600_000))
    );
}

#[test]
fn a_gateway_tcp_server_is_routed_by_its_bound_virtual_service() {
    let cfg = compile_for(Role::Gateway, "gw", "istio-system");
    // Only the HTTPS server (SIMPLE) is an HTTP listener; TCP and TLS servers are not.
    let http: Vec<(u32, bool)> = cfg
        .listeners
        .iter()
        .map(|l| (l.port, l.tls.is_some()))
        .collect();
    assert_eq!(
        http,
        [(8443, true)],
        "no HTTP listener for TCP and TLS servers"
    );
    assert_eq!(
        cfg.tcp_listeners.len(),
        2,
        "the SIMPLE server is not opened"
    );
    let l = &cfg.tcp_listeners[0];
    assert_eq!((l.name.as_str(), l.port), ("gateway_tcp_31400", 31400));
    assert_eq!(l.routes.len(), 1, "no default route on a gateway");
    assert_eq!(
        l.routes[0].destinations[0].cluster,
        "outbound|9000|v1|tcp-echo.shop.svc.cluster.local"
    );
    assert!(cfg
        .clusters
        .contains_key("outbound|9000|v1|tcp-echo.shop.svc.cluster.local"));
    // PASSTHROUGH: routed by SNI with the tls routes (its tcp route is for port 31400).
    let tls = &cfg.tcp_listeners[1];
    assert_eq!(
        (tls.name.as_str(), tls.port, tls.sni),
        ("gateway_tls_443", 443, true)
    );
    let routes: Vec<(&str, &[String])> = tls
        .routes
        .iter()
        .map(|r| (r.name.as_str(), r.matches[0].sni_hosts.as_slice()))
        .collect();
    assert_eq!(
        routes,
        [("echo-ingress/tls[0]", &["db.example.com".to_string()][..])]
    );
    assert_eq!(
        tls.routes[0].destinations[0].cluster,
        "outbound|9443|v2|tcp-echo.shop.svc.cluster.local"
    );
}

#[test]
fn tcp_and_tls_routes_are_not_reported_but_sniffed_ports_are() {
    let loaded = weft_api::load_str(CONFIG, "tcp.yaml");
    let reported: Vec<String> = not_enforced(&loaded.resources)
        .into_iter()
        .map(|n| format!("{}: {}", n.resource, n.what))
        .collect();
    assert!(
        !reported.iter().any(|r| r.contains("VirtualService")),
        "{reported:#?}"
    );
    assert!(
        reported
            .iter()
            .any(|r| r.starts_with("ServiceEntry/shop/web: ports[0] web has no protocol")),
        "{reported:#?}"
    );
    assert!(
        !reported
            .iter()
            .any(|r| r.starts_with("ServiceEntry/shop/echo")),
        "`tcp` names a protocol: {reported:#?}"
    );
    assert!(
        !reported.iter().any(|r| r.contains("connectionPool.tcp")),
        "maxConnections and connectTimeout apply to HTTP too: {reported:#?}"
    );
    assert!(
        !reported.iter().any(|r| r.contains("egress[0].hosts")),
        "egress hosts scope the sidecar: {reported:#?}"
    );
    assert!(
        !reported.iter().any(|r| r.contains("captureMode")),
        "{reported:#?}"
    );
    let gateway: Vec<&String> = reported
        .iter()
        .filter(|r| r.starts_with("Gateway/"))
        .collect();
    assert!(
        gateway.is_empty(),
        "PASSTHROUGH and SIMPLE on HTTPS are built: {gateway:#?}"
    );
}
