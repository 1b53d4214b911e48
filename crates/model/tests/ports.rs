//! Services with several HTTP ports: one outbound virtual host per port (`host:port`, the
//! default port — 80, else the first — also taking the bare host), each routed as the
//! mesh VirtualService applies to that port (`match.port`), and a destination without a
//! port taking the port its route is for (Istio's `GetDestinationCluster`).

use weft_model::{compile, LiveProxy, ProxyRef, Registry, Role};

const CONFIG: &str = r#"
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: client, namespace: shop}
spec: {address: 127.0.0.1, labels: {app: client}, serviceAccount: client}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: api-v1, namespace: shop}
spec: {address: 127.0.0.1, labels: {app: api, version: v1}, serviceAccount: api}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: shop}
spec:
  hosts: [api.shop.svc.cluster.local]
  location: MESH_INTERNAL
  ports:
  - {number: 8080, name: http, protocol: HTTP}
  - {number: 9090, name: http-admin, protocol: HTTP}
  workloadSelector: {labels: {app: api}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api, namespace: shop}
spec:
  hosts: [api]
  http:
  - name: admin
    match: [{port: 9090}]
    route: [{destination: {host: api}}]
    timeout: 2s
  - name: app
    route: [{destination: {host: api}}]
"#;

#[test]
fn each_http_port_gets_its_own_virtual_host_and_routes() {
    let loaded = weft_api::load_str(CONFIG, "ports.yaml");
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let live: Vec<LiveProxy> = [("client", 2001), ("api-v1", 2002)]
        .iter()
        .map(|(w, port)| LiveProxy {
            workload: w.to_string(),
            namespace: "shop".into(),
            inbound_addr: format!("127.0.0.1:{port}"),
            listeners: Default::default(),
        })
        .collect();
    let reg = Registry::build(&loaded.resources, &live);
    let proxy = ProxyRef {
        role: Role::Sidecar,
        workload: "client".into(),
        namespace: "shop".into(),
    };
    let cfg = compile(&loaded.resources, &reg, "cluster.local", &proxy).unwrap();
    let vhosts = &cfg.routes["outbound"].virtual_hosts;
    let names: Vec<&str> = vhosts.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "api.shop.svc.cluster.local",
            "api.shop.svc.cluster.local:9090",
            "allow_any"
        ]
    );
    let default = &vhosts[0];
    assert!(
        default.domains.contains(&"api".to_string()),
        "{:?}",
        default.domains
    );
    assert!(default.domains.contains(&"api:8080".to_string()));
    assert!(!default.domains.iter().any(|d| d.ends_with(":9090")));
    let admin = &vhosts[1];
    assert_eq!(
        admin.domains,
        [
            "api.shop.svc.cluster.local:9090",
            "api.shop.svc:9090",
            "api.shop:9090",
            "api:9090"
        ]
    );
    // Port 8080: `match.port: 9090` does not apply; the destination takes 8080.
    let route_names: Vec<&str> = default.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(route_names, ["app"]);
    assert_eq!(
        default.routes[0].destinations[0].cluster,
        "outbound|8080||api.shop.svc.cluster.local"
    );
    // Port 9090: the admin route first, to the 9090 cluster, with its timeout.
    let route_names: Vec<&str> = admin.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(route_names, ["admin", "app"]);
    assert_eq!(
        admin.routes[0].destinations[0].cluster,
        "outbound|9090||api.shop.svc.cluster.local"
    );
    assert_eq!(admin.routes[0].timeout_ms, Some(2000));
    assert!(cfg
        .clusters
        .contains_key("outbound|9090||api.shop.svc.cluster.local"));
}

#[test]
fn sidecar_ingress_listeners_give_the_apps_address_per_port() {
    let sidecar = r#"
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: api, namespace: shop}
spec:
  workloadSelector: {labels: {app: api}}
  ingress:
  - port: {number: 9090, protocol: HTTP, name: http-admin}
    defaultEndpoint: 127.0.0.1:19090
  - port: {number: 8080, protocol: HTTP, name: http}
    defaultEndpoint: unix:///var/run/app.sock
"#;
    let loaded = weft_api::load_str(&format!("{CONFIG}{sidecar}"), "ports.yaml");
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let live = [LiveProxy {
        workload: "api-v1".into(),
        namespace: "shop".into(),
        inbound_addr: "127.0.0.1:2002".into(),
        listeners: Default::default(),
    }];
    let reg = Registry::build(&loaded.resources, &live);
    let proxy = ProxyRef {
        role: Role::Sidecar,
        workload: "api-v1".into(),
        namespace: "shop".into(),
    };
    let cfg = compile(&loaded.resources, &reg, "cluster.local", &proxy).unwrap();
    let inbound = cfg.inbound.unwrap();
    assert_eq!(
        inbound.app_ports,
        [(9090, "127.0.0.1:19090".to_string())].into(),
        "a Unix socket endpoint is not taken"
    );
    let reported: Vec<String> = weft_model::not_enforced(&loaded.resources)
        .into_iter()
        .filter(|n| n.resource == "Sidecar/shop/api")
        .map(|n| n.what)
        .collect();
    assert_eq!(
        reported,
        ["ingress[1].defaultEndpoint on a Unix socket (the app is dialled at its one address instead)"]
    );
}
