//! DestinationRule `connectionPool` compiled for both sides, on Istio's circuit-breaking
//! task's rule: the client's outbound cluster and (as istiod's inbound cluster builder
//! does) the server's inbound side get its limits; what is not built stays reported.

use weft_model::{compile, not_enforced, LiveProxy, ProxyRef, Registry, Role};

const CONFIG: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: httpbin, namespace: default}
spec:
  hosts: [httpbin.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 8000, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: httpbin}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: httpbin, namespace: default}
spec: {address: 127.0.0.1, serviceAccount: httpbin, labels: {app: httpbin}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: fortio, namespace: default}
spec: {address: 127.0.0.1, serviceAccount: fortio, labels: {app: fortio}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: httpbin, namespace: default}
spec:
  host: httpbin
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 1, connectTimeout: 250ms, maxConnectionDuration: 1m, tcpKeepalive: {time: 10s}}
      http:
        http1MaxPendingRequests: 1
        maxRequestsPerConnection: 1
        maxRetries: 3
        http2MaxRequests: 7
        idleTimeout: 5s
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: other, namespace: default}
spec:
  host: other.example.com
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 5}
      http: {h2UpgradePolicy: UPGRADE, maxConcurrentStreams: 10}
"#;

fn compile_for(workload: &str) -> weft_model::ProxyConfig {
    let loaded = weft_api::load_str(CONFIG, "pool.yaml");
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let live: Vec<LiveProxy> = [("httpbin", 2001), ("fortio", 2002)]
        .iter()
        .map(|(w, port)| LiveProxy {
            workload: (*w).into(),
            namespace: "default".into(),
            inbound_addr: format!("127.0.0.1:{port}"),
            listeners: Default::default(),
        })
        .collect();
    let reg = Registry::build(&loaded.resources, &live);
    let proxy = ProxyRef {
        role: Role::Sidecar,
        workload: workload.into(),
        namespace: "default".into(),
    };
    compile(&loaded.resources, &reg, "cluster.local", &proxy).unwrap()
}

#[test]
fn the_client_cluster_and_the_server_inbound_get_the_rules_limits() {
    let client = compile_for("fortio");
    let c = &client.clusters["outbound|8000||httpbin.default.svc.cluster.local"];
    assert_eq!(c.limits.max_connections, Some(1));
    assert_eq!(c.limits.max_pending, Some(1));
    assert_eq!(c.limits.max_retries, Some(3));
    assert!(
        !c.limits.multiplexed(false),
        "Istio's default: DO_NOT_UPGRADE"
    );
    assert_eq!(
        c.tcp.connect_timeout_ms, 250,
        "connectTimeout bounds HTTP connects too"
    );
    assert_eq!(
        (c.max_requests, c.max_requests_per_connection),
        (Some(7), Some(1))
    );
    let server = compile_for("httpbin");
    let inbound = server.inbound.expect("a sidecar");
    assert_eq!(inbound.limits, c.limits);
    assert_eq!(inbound.max_requests, Some(7));
    let fortio_inbound = client.inbound.expect("a sidecar");
    assert_eq!(
        fortio_inbound.limits,
        Default::default(),
        "fortio backs no service"
    );
}

#[test]
fn only_the_knobs_not_built_are_reported() {
    let loaded = weft_api::load_str(CONFIG, "pool.yaml");
    let reported: Vec<String> = not_enforced(&loaded.resources)
        .into_iter()
        .map(|n| n.what)
        .collect();
    let at = "trafficPolicy.connectionPool.";
    assert_eq!(
        reported,
        [
            format!("{at}tcp.maxConnections with h2UpgradePolicy UPGRADE (one multiplexed HTTP/2 connection per endpoint)"),
            format!("{at}http.maxConcurrentStreams"),
        ],
        "only the second rule's knobs that are not built: {reported:#?}"
    );
}

#[test]
fn http2_max_requests_zero_is_unlimited_as_in_istio() {
    // istiod's `applyConnectionPool` replaces the unlimited default only with a value > 0.
    let zero = CONFIG.replace("http2MaxRequests: 7", "http2MaxRequests: 0");
    let loaded = weft_api::load_str(&zero, "pool.yaml");
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let live = [LiveProxy {
        workload: "fortio".into(),
        namespace: "default".into(),
        inbound_addr: "127.0.0.1:2002".into(),
        listeners: Default::default(),
    }];
    let reg = Registry::build(&loaded.resources, &live);
    let proxy = ProxyRef {
        role: Role::Sidecar,
        workload: "fortio".into(),
        namespace: "default".into(),
    };
    let cfg = compile(&loaded.resources, &reg, "cluster.local", &proxy).unwrap();
    let c = &cfg.clusters["outbound|8000||httpbin.default.svc.cluster.local"];
    assert_eq!(c.max_requests, None);
}
