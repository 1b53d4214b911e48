//! The compiler's egress model (services outside the mesh), on Istio egress-task YAML:
//! ServiceEntries without a workloadSelector (MESH_EXTERNAL DNS, STATIC with endpoints
//! and subsets, DNS_ROUND_ROBIN, NONE) become sidecar TCP listeners (a Sidecar egress
//! `bind` placing them) and HTTP virtual hosts whose clusters carry `egress` (resolution,
//! plaintext endpoints, DestinationRule SIMPLE/MUTUAL TLS origination, a subset's `tls`
//! replacing the top-level one); `outboundTrafficPolicy` (no setting, MeshConfig,
//! Sidecar in the workload's namespace, in another namespace, in the root namespace)
//! picks the `allow_any` passthrough or the `block_all` 502 catch-all; what
//! `not_enforced` reports (and does not) about all of it; and a mesh service's
//! `tls.mode: DISABLE` still giving plaintext endpoints.

use weft_api::Resource;
use weft_model::{
    compile, not_enforced, Cluster, DirectResponse, Egress, LiveProxy, OriginTls, ProxyConfig,
    ProxyRef, Registry, Resolution, Role, VirtualHost, PASSTHROUGH_CLUSTER,
};

/// The mesh: a client and a mesh service `web` in `shop`, and services outside the mesh
/// as Istio's egress tasks declare them.
const BASE: &str = r#"
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: client, namespace: shop}
spec: {address: 127.0.0.1, labels: {app: client}, serviceAccount: client}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: web-v1, namespace: shop}
spec: {address: 127.0.0.1, labels: {app: web, version: v1}, serviceAccount: web}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: web, namespace: shop}
spec:
  hosts: [web.shop.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{number: 8080, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: web}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web, namespace: shop}
spec:
  host: web
  trafficPolicy: {tls: {mode: DISABLE}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: redis, namespace: shop}
spec:
  hosts: [redis.data.example]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{number: 6379, name: tcp-redis, protocol: TCP}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: postgres, namespace: shop}
spec:
  hosts: [pg.rr.example]
  location: MESH_EXTERNAL
  resolution: DNS_ROUND_ROBIN
  ports: [{number: 5432, name: tcp-pg, protocol: TCP}]
  endpoints:
  - {address: primary.pg.rr.example, ports: {tcp-pg: 15432}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: postgres, namespace: shop}
spec:
  host: pg.rr.example
  trafficPolicy: {tls: {mode: DISABLE}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: httpbin-ext, namespace: shop}
spec:
  hosts: [httpbin.example]
  location: MESH_EXTERNAL
  resolution: NONE
  ports: [{number: 80, name: http, protocol: HTTP}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: httpbin-ext, namespace: shop}
spec:
  host: httpbin.example
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: payments, namespace: shop}
spec:
  hosts: [payments.internal.example]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{number: 8080, name: http, protocol: HTTP, targetPort: 9080}]
  endpoints:
  - {address: 10.0.0.11, ports: {http: 18080}, labels: {version: v1}}
  - {address: 10.0.0.12, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: payments, namespace: shop}
spec:
  host: payments.internal.example
  trafficPolicy:
    tls: {mode: SIMPLE, caCertificates: /etc/certs/payments-ca.pem}
  subsets:
  - {name: v1, labels: {version: v1}}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      tls: {mode: SIMPLE, insecureSkipVerify: true}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: payments, namespace: shop}
spec:
  hosts: [payments.internal.example]
  http:
  - match: [{headers: {x-canary: {exact: "1"}}}]
    route: [{destination: {host: payments.internal.example, subset: v2}}]
  - match: [{headers: {x-tier: {exact: gold}}}]
    route: [{destination: {host: payments.internal.example, subset: v1}}]
  - route: [{destination: {host: payments.internal.example}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: partner-api, namespace: shop}
spec:
  hosts: [api.partner.example]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{number: 80, name: http, protocol: HTTP, targetPort: 443}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: partner-api, namespace: shop}
spec:
  host: api.partner.example
  trafficPolicy:
    tls:
      mode: SIMPLE
      sni: api.partner.example
      caCertificates: /etc/certs/partner-ca.pem
      subjectAltNames: [api.partner.example, spiffe://partner.example/api]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: partner-mtls, namespace: shop}
spec:
  hosts: [mtls.partner.example]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{number: 80, name: http, protocol: HTTP, targetPort: 443}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: partner-mtls, namespace: shop}
spec:
  host: mtls.partner.example
  trafficPolicy:
    tls:
      mode: MUTUAL
      clientCertificate: /etc/certs/client.pem
      privateKey: /etc/certs/client-key.pem
      caCertificates: /etc/certs/partner-ca.pem
      sni: mtls.partner.example
"#;

/// Sidecar egress listener placing redis's TCP listener at a fixed address.
const BIND: &str = r#"
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: client, namespace: shop}
spec:
  workloadSelector: {labels: {app: client}}
  egress:
  - port: {number: 6379, protocol: TCP, name: tcp}
    bind: 127.0.0.2
    captureMode: NONE
    hosts: ["./redis.data.example"]
"#;

const MESH_REGISTRY_ONLY: &str = r#"
---
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |-
    outboundTrafficPolicy:
      mode: REGISTRY_ONLY
"#;

const MESH_WITHOUT_POLICY: &str = r#"
---
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |-
    accessLogFile: /dev/stdout
"#;

fn sidecar_policy(namespace: &str, mode: &str) -> String {
    format!(
        r#"
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: default, namespace: {namespace}}}
spec:
  outboundTrafficPolicy: {{mode: {mode}}}
"#
    )
}

fn load(extra: &str) -> Vec<Resource> {
    let loaded = weft_api::load_str(&format!("{BASE}{extra}"), "egress.yaml");
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    loaded.resources
}

/// The base config with its resource `key` replaced by the one in `yaml`.
fn replacing(key: &str, yaml: &str, extra: &str) -> Vec<Resource> {
    let mut resources = load(extra);
    let before = resources.len();
    resources.retain(|r| r.key() != key);
    assert_eq!(resources.len(), before - 1, "{key} was in the config");
    let loaded = weft_api::load_str(yaml, "replacement.yaml");
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    assert!(loaded.resources.iter().all(|r| r.key() == key));
    resources.extend(loaded.resources);
    resources
}

fn live() -> Vec<LiveProxy> {
    [("client", 2001), ("web-v1", 2002)]
        .iter()
        .map(|(w, port)| LiveProxy {
            workload: w.to_string(),
            namespace: "shop".into(),
            inbound_addr: format!("127.0.0.1:{port}"),
            listeners: Default::default(),
        })
        .collect()
}

fn client(resources: &[Resource]) -> ProxyConfig {
    let reg = Registry::build(resources, &live());
    let proxy = ProxyRef {
        role: Role::Sidecar,
        workload: "client".into(),
        namespace: "shop".into(),
    };
    compile(resources, &reg, "cluster.local", &proxy).unwrap()
}

fn vhosts(cfg: &ProxyConfig) -> &[VirtualHost] {
    &cfg.routes["outbound"].virtual_hosts
}

fn vhost<'a>(cfg: &'a ProxyConfig, name: &str) -> &'a VirtualHost {
    vhosts(cfg)
        .iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no virtual host {name}: {:#?}", vhosts(cfg)))
}

fn cluster<'a>(cfg: &'a ProxyConfig, name: &str) -> &'a Cluster {
    cfg.clusters
        .get(name)
        .unwrap_or_else(|| panic!("no cluster {name}: {:?}", cfg.clusters.keys()))
}

fn addresses(c: &Cluster) -> Vec<&str> {
    c.endpoints.iter().map(|e| e.address.as_str()).collect()
}

/// What `not_enforced` says about one resource (`Kind/namespace/name`).
fn reported(resources: &[Resource], key: &str) -> Vec<String> {
    assert!(
        resources.iter().any(|r| r.key() == key),
        "no resource {key} in the config"
    );
    not_enforced(resources)
        .into_iter()
        .filter(|n| n.resource == key)
        .map(|n| n.what)
        .collect()
}

// 1. TCP listeners for services outside the mesh, and a Sidecar egress bind.

#[test]
fn an_external_tcp_service_gets_a_listener_routed_to_its_cluster() {
    let cfg = client(&load(""));
    let l = cfg
        .tcp_listeners
        .iter()
        .find(|l| l.name == "outbound_tcp|6379|redis.data.example")
        .unwrap_or_else(|| panic!("{:#?}", cfg.tcp_listeners));
    assert_eq!(l.port, 6379);
    assert_eq!(l.service.as_deref(), Some("redis.data.example"));
    assert_eq!(l.bind, None, "no Sidecar: an ephemeral loopback port");
    assert!(!l.sni);
    let last = l.routes.last().unwrap();
    assert_eq!(last.name, "default/redis.data.example");
    assert!(last.matches.is_empty());
    let to: Vec<(&str, u32)> = last
        .destinations
        .iter()
        .map(|d| (d.cluster.as_str(), d.weight))
        .collect();
    assert_eq!(to, [("outbound|6379||redis.data.example", 100)]);
    assert!(
        !vhosts(&cfg).iter().any(|v| v.name == "redis.data.example"),
        "a TCP-only service gets no HTTP virtual host"
    );
    let pg = cfg
        .tcp_listeners
        .iter()
        .find(|l| l.name == "outbound_tcp|5432|pg.rr.example")
        .expect("the DNS_ROUND_ROBIN TCP service has its listener too");
    assert_eq!(
        pg.routes.last().unwrap().destinations[0].cluster,
        "outbound|5432||pg.rr.example"
    );
}

#[test]
fn a_sidecar_egress_listener_binds_the_external_tcp_listener() {
    let cfg = client(&load(BIND));
    let bind_of = |name: &str| {
        cfg.tcp_listeners
            .iter()
            .find(|l| l.name == name)
            .unwrap_or_else(|| panic!("no {name}: {:#?}", cfg.tcp_listeners))
            .bind
            .clone()
    };
    assert_eq!(
        bind_of("outbound_tcp|6379|redis.data.example").as_deref(),
        Some("127.0.0.2:6379")
    );
    assert!(
        !cfg.tcp_listeners
            .iter()
            .any(|l| l.name == "outbound_tcp|5432|pg.rr.example"),
        "a host the Sidecar's egress hosts do not admit gets no listener"
    );
    assert!(
        !cfg.routes["outbound"]
            .virtual_hosts
            .iter()
            .any(|v| v.name == "web.shop.svc.cluster.local"),
        "nor a virtual host: the catch-all decides for it"
    );
}

#[test]
fn a_sidecar_egress_bind_in_another_namespace_than_the_service_entry_does_not_apply() {
    // `./redis.data.example` means the Sidecar's namespace: the ServiceEntry is in `shop`.
    let other_ns = r#"
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: client, namespace: batch}
spec: {address: 127.0.0.1, labels: {app: client}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: client, namespace: batch}
spec:
  egress:
  - port: {number: 6379, protocol: TCP, name: tcp}
    bind: 127.0.0.2
    hosts: ["./redis.data.example"]
"#;
    let resources = load(other_ns);
    let reg = Registry::build(&resources, &[]);
    let proxy = ProxyRef {
        role: Role::Sidecar,
        workload: "client".into(),
        namespace: "batch".into(),
    };
    let cfg = compile(&resources, &reg, "cluster.local", &proxy).unwrap();
    assert!(
        cfg.tcp_listeners.is_empty(),
        "the Sidecar's hosts admit nothing in shop: {:#?}",
        cfg.tcp_listeners
    );
}

// 2. Clusters: resolution and endpoints.

#[test]
fn a_dns_service_cluster_dials_its_host_in_plaintext() {
    let cfg = client(&load(""));
    let c = cluster(&cfg, "outbound|6379||redis.data.example");
    assert_eq!(
        c.egress,
        Some(Egress {
            resolution: Resolution::Dns,
            tls: None,
        })
    );
    assert_eq!(c.service, "redis.data.example");
    assert_eq!(c.namespace, "shop");
    assert_eq!(c.port, 6379);
    assert_eq!(addresses(c), ["redis.data.example:6379"]);
    let e = &c.endpoints[0];
    assert!(e.plaintext, "no mesh mTLS outside the mesh");
    assert_eq!(e.tls_identity(), "");
    assert_eq!(e.identity, "");
}

#[test]
fn static_endpoints_get_their_addresses_and_ports_by_name_and_subsets_select_them() {
    let cfg = client(&load(""));
    let all = cluster(&cfg, "outbound|8080||payments.internal.example");
    let eg = all.egress.as_ref().expect("outside the mesh");
    assert_eq!(eg.resolution, Resolution::Static);
    assert_eq!(
        addresses(all),
        ["10.0.0.11:18080", "10.0.0.12:9080"],
        "the endpoint's port named `http`, else the targetPort"
    );
    assert!(all
        .endpoints
        .iter()
        .all(|e| e.plaintext && e.tls_identity().is_empty()));
    let v1 = cluster(&cfg, "outbound|8080|v1|payments.internal.example");
    assert_eq!(addresses(v1), ["10.0.0.11:18080"]);
    assert_eq!(v1.endpoints[0].version.as_deref(), Some("v1"));
    assert_eq!(v1.subset.as_deref(), Some("v1"));
    let v2 = cluster(&cfg, "outbound|8080|v2|payments.internal.example");
    assert_eq!(addresses(v2), ["10.0.0.12:9080"]);
    assert_eq!(v2.endpoints[0].version.as_deref(), Some("v2"));
}

#[test]
fn dns_round_robin_and_none_resolutions() {
    let cfg = client(&load(""));
    let pg = cluster(&cfg, "outbound|5432||pg.rr.example");
    assert_eq!(
        pg.egress,
        Some(Egress {
            resolution: Resolution::DnsRoundRobin,
            tls: None,
        }),
        "DISABLE originates nothing"
    );
    assert_eq!(addresses(pg), ["primary.pg.rr.example:15432"]);
    assert!(pg.endpoints[0].plaintext);
    let httpbin = cluster(&cfg, "outbound|80||httpbin.example");
    assert_eq!(
        httpbin.egress,
        Some(Egress {
            resolution: Resolution::OriginalDestination,
            tls: None,
        }),
        "NONE: the app's destination; ISTIO_MUTUAL originates nothing"
    );
    assert_eq!(addresses(httpbin), ["httpbin.example:80"]);
    assert!(httpbin.endpoints[0].plaintext);
    assert_eq!(httpbin.endpoints[0].tls_identity(), "");
}

// 3. HTTP services outside the mesh, and TLS origination.

#[test]
fn an_external_http_service_gets_a_virtual_host_with_its_host() {
    let cfg = client(&load(""));
    for (host, cluster_name) in [
        ("httpbin.example", "outbound|80||httpbin.example"),
        ("api.partner.example", "outbound|80||api.partner.example"),
    ] {
        let v = vhost(&cfg, host);
        assert!(v.domains.iter().any(|d| d == host), "{:?}", v.domains);
        assert_eq!(v.routes.len(), 1);
        assert_eq!(v.routes[0].name, format!("default/{host}"));
        assert_eq!(v.routes[0].destinations[0].cluster, cluster_name);
        assert_eq!(v.routes[0].destinations[0].weight, 100);
    }
    let payments = vhost(&cfg, "payments.internal.example");
    let to: Vec<&str> = payments
        .routes
        .iter()
        .map(|r| r.destinations[0].cluster.as_str())
        .collect();
    assert_eq!(
        to,
        [
            "outbound|8080|v2|payments.internal.example",
            "outbound|8080|v1|payments.internal.example",
            "outbound|8080||payments.internal.example",
        ],
        "its VirtualService routes it"
    );
}

#[test]
fn simple_tls_origination_from_the_destination_rule() {
    let cfg = client(&load(""));
    let c = cluster(&cfg, "outbound|80||api.partner.example");
    assert_eq!(addresses(c), ["api.partner.example:443"], "the targetPort");
    assert!(
        c.endpoints[0].plaintext,
        "no mesh mTLS: the cluster's own TLS"
    );
    assert_eq!(
        c.egress,
        Some(Egress {
            resolution: Resolution::Dns,
            tls: Some(OriginTls {
                ca_certificates: Some("/etc/certs/partner-ca.pem".into()),
                client_certificate: None,
                private_key: None,
                sni: Some("api.partner.example".into()),
                subject_alt_names: vec![
                    "api.partner.example".into(),
                    "spiffe://partner.example/api".into()
                ],
                insecure_skip_verify: false,
            }),
        })
    );
    assert!(!c.limits.http2, "HTTP/1.1 to the service (an HTTP port)");
}

#[test]
fn mutual_tls_origination_sends_the_client_certificate() {
    let cfg = client(&load(""));
    let c = cluster(&cfg, "outbound|80||mtls.partner.example");
    assert_eq!(
        c.egress.as_ref().and_then(|e| e.tls.clone()),
        Some(OriginTls {
            ca_certificates: Some("/etc/certs/partner-ca.pem".into()),
            client_certificate: Some("/etc/certs/client.pem".into()),
            private_key: Some("/etc/certs/client-key.pem".into()),
            sni: Some("mtls.partner.example".into()),
            subject_alt_names: Vec::new(),
            insecure_skip_verify: false,
        })
    );
}

#[test]
fn a_subsets_tls_replaces_the_top_level_one() {
    let cfg = client(&load(""));
    let tls_of = |name: &str| cluster(&cfg, name).egress.clone().and_then(|e| e.tls);
    let top = OriginTls {
        ca_certificates: Some("/etc/certs/payments-ca.pem".into()),
        ..Default::default()
    };
    assert_eq!(
        tls_of("outbound|8080||payments.internal.example"),
        Some(top.clone())
    );
    assert_eq!(
        tls_of("outbound|8080|v1|payments.internal.example"),
        Some(top),
        "a subset without tls keeps the top level's"
    );
    assert_eq!(
        tls_of("outbound|8080|v2|payments.internal.example"),
        Some(OriginTls {
            insecure_skip_verify: true,
            ..Default::default()
        }),
        "replaced as a whole: no caCertificates from the top level"
    );
}

#[test]
fn a_subset_disabling_tls_turns_origination_off() {
    let vs = r#"
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: partner-api, namespace: shop}
spec:
  hosts: [api.partner.example]
  http: [{route: [{destination: {host: api.partner.example, subset: plain}}]}]
"#;
    let dr = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: partner-api, namespace: shop}
spec:
  host: api.partner.example
  trafficPolicy: {tls: {mode: SIMPLE, sni: api.partner.example}}
  subsets:
  - name: plain
    trafficPolicy: {tls: {mode: DISABLE}}
"#;
    let resources = replacing("DestinationRule/shop/partner-api", dr, vs);
    let cfg = client(&resources);
    let c = cluster(&cfg, "outbound|80|plain|api.partner.example");
    assert_eq!(
        c.egress,
        Some(Egress {
            resolution: Resolution::Dns,
            tls: None,
        })
    );
    assert_eq!(
        addresses(c),
        ["api.partner.example:443"],
        "a subset without labels selects the host"
    );
}

// 4. outboundTrafficPolicy.

fn assert_allow_any(cfg: &ProxyConfig) {
    let last = vhosts(cfg).last().unwrap();
    assert_eq!(last.name, "allow_any");
    assert_eq!(last.domains, ["*"]);
    assert_eq!(last.routes.len(), 1);
    let r = &last.routes[0];
    assert_eq!(r.name, "allow_any");
    assert_eq!(r.direct_response, None);
    let to: Vec<(&str, u32)> = r
        .destinations
        .iter()
        .map(|d| (d.cluster.as_str(), d.weight))
        .collect();
    assert_eq!(to, [(PASSTHROUGH_CLUSTER, 100)]);
    let c = cluster(cfg, "PassthroughCluster");
    assert_eq!(c.name, "PassthroughCluster");
    assert_eq!(
        c.egress,
        Some(Egress {
            resolution: Resolution::OriginalDestination,
            tls: None,
        })
    );
    assert_eq!(c.endpoints.len(), 1);
    assert!(c.endpoints[0].plaintext);
    assert_eq!(c.endpoints[0].tls_identity(), "");
    assert_eq!(c.limits.idle_timeout_ms, Some(300_000), "Istio's 5 min");
}

fn assert_block_all(cfg: &ProxyConfig) {
    let last = vhosts(cfg).last().unwrap();
    assert_eq!(last.name, "block_all");
    assert_eq!(last.domains, ["*"]);
    assert_eq!(last.routes.len(), 1);
    let r = &last.routes[0];
    assert_eq!(r.name, "block_all");
    assert_eq!(
        r.direct_response,
        Some(DirectResponse {
            status: 502,
            body: Vec::new()
        })
    );
    assert!(r.destinations.is_empty());
    assert!(
        !cfg.clusters.contains_key(PASSTHROUGH_CLUSTER),
        "{:?}",
        cfg.clusters.keys()
    );
}

#[test]
fn without_a_policy_unknown_hosts_pass_through() {
    assert_allow_any(&client(&load("")));
    assert_allow_any(&client(&load(MESH_WITHOUT_POLICY)));
    let cfg = client(&load(""));
    assert_eq!(
        vhosts(&cfg).iter().filter(|v| v.domains == ["*"]).count(),
        1,
        "one catch-all"
    );
}

#[test]
fn registry_only_in_mesh_config_blocks_unknown_hosts_with_502() {
    let cfg = client(&load(MESH_REGISTRY_ONLY));
    assert_block_all(&cfg);
    // The ServiceEntries are the registry: their hosts still route.
    assert_eq!(
        vhost(&cfg, "httpbin.example").routes[0].destinations[0].cluster,
        "outbound|80||httpbin.example"
    );
    assert!(cfg.clusters.contains_key("outbound|80||httpbin.example"));
    assert!(cfg
        .tcp_listeners
        .iter()
        .any(|l| l.name == "outbound_tcp|6379|redis.data.example"));
}

#[test]
fn a_sidecar_in_the_workloads_namespace_overrides_the_mesh_policy() {
    let allow = sidecar_policy("shop", "ALLOW_ANY");
    assert_allow_any(&client(&load(&format!("{MESH_REGISTRY_ONLY}{allow}"))));
    let block = sidecar_policy("shop", "REGISTRY_ONLY");
    assert_block_all(&client(&load(&block)));
}

#[test]
fn a_sidecar_in_another_namespace_does_not_apply() {
    let other = sidecar_policy("batch", "ALLOW_ANY");
    assert_block_all(&client(&load(&format!("{MESH_REGISTRY_ONLY}{other}"))));
    let other = sidecar_policy("batch", "REGISTRY_ONLY");
    assert_allow_any(&client(&load(&other)));
}

#[test]
fn the_root_namespaces_sidecar_applies_unless_the_workloads_namespace_has_one() {
    let root = sidecar_policy("istio-system", "REGISTRY_ONLY");
    assert_block_all(&client(&load(&root)));
    let own = sidecar_policy("shop", "ALLOW_ANY");
    assert_allow_any(&client(&load(&format!("{root}{own}"))));
}

#[test]
fn a_sidecar_without_a_policy_leaves_the_mesh_one() {
    // The bind Sidecar selects the client and says nothing about outboundTrafficPolicy.
    assert_block_all(&client(&load(&format!("{MESH_REGISTRY_ONLY}{BIND}"))));
    assert_allow_any(&client(&load(BIND)));
}

// 5. Reports.

#[test]
fn external_service_entries_and_their_origination_are_not_reported() {
    let resources = load(&format!("{MESH_REGISTRY_ONLY}{}", BIND));
    for key in [
        "ServiceEntry/shop/redis",
        "ServiceEntry/shop/postgres",
        "ServiceEntry/shop/httpbin-ext",
        "ServiceEntry/shop/payments",
        "ServiceEntry/shop/partner-api",
        "ServiceEntry/shop/partner-mtls",
        "DestinationRule/shop/payments",
        "DestinationRule/shop/partner-api",
        "DestinationRule/shop/partner-mtls",
        "DestinationRule/shop/postgres",
        "DestinationRule/shop/web",
        "VirtualService/shop/payments",
        "MeshConfig/istio-system/istio",
    ] {
        assert_eq!(reported(&resources, key), Vec::<String>::new(), "{key}");
    }
}

#[test]
fn dynamic_dns_is_reported_and_adds_no_service() {
    let dynamic = r#"
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: wildcard, namespace: shop}
spec:
  hosts: ["*.dyn.example"]
  location: MESH_EXTERNAL
  resolution: DYNAMIC_DNS
  ports: [{number: 80, name: http, protocol: HTTP}]
"#;
    let resources = load(dynamic);
    assert_eq!(
        reported(&resources, "ServiceEntry/shop/wildcard"),
        ["resolution DYNAMIC_DNS (not built: this entry adds no service)"]
    );
    let reg = Registry::build(&resources, &live());
    assert!(!reg.services.contains_key("*.dyn.example"));
    let cfg = client(&resources);
    assert!(!vhosts(&cfg).iter().any(|v| v.name == "*.dyn.example"));
}

#[test]
fn simple_tls_to_a_mesh_service_is_reported() {
    let dr = r#"
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web-simple, namespace: shop}
spec:
  host: web.shop.svc.cluster.local
  trafficPolicy: {tls: {mode: SIMPLE, sni: web.example}}
"#;
    let resources = load(dr);
    assert_eq!(
        reported(&resources, "DestinationRule/shop/web-simple"),
        ["trafficPolicy.tls.mode SIMPLE to a mesh service (TLS origination is built for services outside the mesh; the mesh's mTLS is used)"]
    );
}

#[test]
fn credential_name_on_an_external_host_is_reported() {
    let dr = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: partner-api, namespace: shop}
spec:
  host: api.partner.example
  trafficPolicy:
    tls: {mode: SIMPLE, credentialName: partner-client, sni: api.partner.example}
"#;
    let resources = replacing("DestinationRule/shop/partner-api", dr, "");
    assert_eq!(
        reported(&resources, "DestinationRule/shop/partner-api"),
        ["trafficPolicy.tls.credentialName"]
    );
}

#[test]
fn a_sidecars_policy_mode_is_not_reported_but_its_egress_proxy_is() {
    let mode_only = sidecar_policy("shop", "ALLOW_ANY");
    assert_eq!(
        reported(&load(&mode_only), "Sidecar/shop/default"),
        Vec::<String>::new()
    );
    let proxy = r#"
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: shop}
spec:
  outboundTrafficPolicy:
    mode: ALLOW_ANY
    egressProxy:
      host: egress.istio-system.svc.cluster.local
      port: {number: 80}
"#;
    assert_eq!(
        reported(&load(proxy), "Sidecar/shop/default"),
        ["outboundTrafficPolicy.egressProxy"]
    );
}

#[test]
fn http2_and_grpc_ports_to_external_services_get_http2() {
    let grpc = r#"
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: partner-grpc, namespace: shop}
spec:
  hosts: [grpc.partner.example]
  location: MESH_EXTERNAL
  resolution: DNS
  ports:
  - {number: 50051, name: grpc, protocol: GRPC}
  - {number: 8443, name: http2-api, protocol: HTTP2}
"#;
    let resources = load(grpc);
    assert_eq!(
        reported(&resources, "ServiceEntry/shop/partner-grpc"),
        Vec::<String>::new()
    );
    let cfg = client(&resources);
    let c = cluster(&cfg, "outbound|50051||grpc.partner.example");
    assert!(c.limits.http2, "HTTP/2 semantics for the circuit breakers");
    assert!(
        c.egress.is_some(),
        "outside the mesh, with HTTP/2 (the limits say)"
    );
    assert_eq!(addresses(c), ["grpc.partner.example:50051"]);
}

// 6. Mesh services are unchanged.

#[test]
fn a_mesh_services_disable_still_gives_plaintext_endpoints() {
    let cfg = client(&load(""));
    let c = cluster(&cfg, "outbound|8080||web.shop.svc.cluster.local");
    assert_eq!(c.egress, None, "a mesh service");
    assert_eq!(addresses(c), ["127.0.0.1:2002"]);
    let e = &c.endpoints[0];
    assert!(e.plaintext);
    assert_eq!(e.tls_identity(), "");
    assert_eq!(e.identity, "spiffe://cluster.local/ns/shop/sa/web");
    assert_eq!(e.workload, "web-v1");
    assert_eq!(
        vhost(&cfg, "web.shop.svc.cluster.local").domains,
        [
            "web.shop.svc.cluster.local",
            "web.shop.svc",
            "web.shop",
            "web",
            "web.shop.svc.cluster.local:8080",
            "web.shop.svc:8080",
            "web.shop:8080",
            "web:8080"
        ]
    );
}

#[test]
fn a_mesh_service_without_destination_rule_keeps_mtls() {
    let mut resources = load("");
    resources.retain(|r| r.key() != "DestinationRule/shop/web");
    let cfg = client(&resources);
    let c = cluster(&cfg, "outbound|8080||web.shop.svc.cluster.local");
    assert_eq!(c.egress, None);
    assert!(!c.endpoints[0].plaintext);
    assert_eq!(
        c.endpoints[0].tls_identity(),
        "spiffe://cluster.local/ns/shop/sa/web"
    );
}

// 7. Port-level settings: Istio's egress TLS-origination task writes its `tls` there.

#[test]
fn port_level_tls_originates_on_that_port_only() {
    let task = r#"
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: edition-cnn-com, namespace: shop}
spec:
  hosts: [edition.cnn.com]
  location: MESH_EXTERNAL
  resolution: DNS
  ports:
  - {number: 80, name: http-port, protocol: HTTP, targetPort: 443}
  - {number: 8080, name: http-plain, protocol: HTTP}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: edition-cnn-com, namespace: shop}
spec:
  hosts: [edition.cnn.com]
  http:
  - route:
    - destination: {host: edition.cnn.com, port: {number: 80}}
      weight: 50
    - destination: {host: edition.cnn.com, port: {number: 8080}}
      weight: 50
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: edition-cnn-com, namespace: shop}
spec:
  host: edition.cnn.com
  trafficPolicy:
    loadBalancer: {simple: RANDOM}
    portLevelSettings:
    - port: {number: 80}
      tls: {mode: SIMPLE}
"#;
    let resources = load(task);
    let cfg = client(&resources);
    let tls = cluster(&cfg, "outbound|80||edition.cnn.com").egress.clone();
    assert_eq!(
        tls.and_then(|e| e.tls),
        Some(OriginTls::default()),
        "SIMPLE on port 80: the system roots, the host as SNI"
    );
    let plain = cluster(&cfg, "outbound|8080||edition.cnn.com");
    assert_eq!(plain.egress.as_ref().and_then(|e| e.tls.clone()), None);
    assert_eq!(
        plain.lb,
        weft_model::LbPolicy::Random,
        "the rest of the policy applies to every port"
    );
    assert_eq!(
        reported(&resources, "DestinationRule/shop/edition-cnn-com"),
        Vec::<String>::new()
    );
}

// 8. Egress hosts scope what a sidecar holds (Istio's Sidecar `egress[].hosts`).

#[test]
fn egress_hosts_scope_the_virtual_hosts_and_tcp_listeners() {
    let everything = client(&load(""));
    let scoped = r#"
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: shop}
spec:
  egress:
  - hosts: ["./web.shop.svc.cluster.local", "*/httpbin.example"]
"#;
    let cfg = client(&load(scoped));
    let names: Vec<&str> = vhosts(&cfg).iter().map(|v| v.name.as_str()).collect();
    assert_eq!(
        names,
        ["httpbin.example", "web.shop.svc.cluster.local", "allow_any"],
        "only the admitted hosts, then the catch-all"
    );
    assert!(cfg.tcp_listeners.is_empty(), "{:#?}", cfg.tcp_listeners);
    let size = |c: &ProxyConfig| serde_json::to_vec(c).unwrap().len();
    assert!(
        size(&cfg) < size(&everything),
        "the push is smaller: {} vs {}",
        size(&cfg),
        size(&everything)
    );
    // `~/*` admits nothing: only the catch-all is left.
    let none = scoped.replace(
        r#"["./web.shop.svc.cluster.local", "*/httpbin.example"]"#,
        r#"["~/*"]"#,
    );
    let cfg = client(&load(&none));
    let names: Vec<&str> = vhosts(&cfg).iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["allow_any"]);
}

// 9. Istio's egress-gateway task: sidecar -> egress gateway -> the service outside.

const EGRESS_GATEWAY: &str = r#"
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: istio-egressgateway, namespace: istio-system}
spec: {address: 127.0.0.1, labels: {istio: egressgateway}, serviceAccount: istio-egressgateway}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: istio-egressgateway, namespace: istio-system}
spec:
  hosts: [istio-egressgateway.istio-system.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{number: 80, name: http, protocol: HTTP}, {number: 443, name: tls, protocol: TLS}]
  workloadSelector: {labels: {istio: egressgateway}}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: istio-egressgateway, namespace: shop}
spec:
  selector: {istio: egressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [httpbin.example]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: egressgateway-for-httpbin, namespace: shop}
spec:
  host: istio-egressgateway.istio-system.svc.cluster.local
  subsets: [{name: httpbin}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: direct-httpbin-through-egress-gateway, namespace: shop}
spec:
  hosts: [httpbin.example]
  gateways: [istio-egressgateway, mesh]
  http:
  - match: [{gateways: [mesh], port: 80}]
    route:
    - destination: {host: istio-egressgateway.istio-system.svc.cluster.local, subset: httpbin, port: {number: 80}}
  - match: [{gateways: [istio-egressgateway], port: 80}]
    route:
    - destination: {host: httpbin.example, port: {number: 80}}
"#;

#[test]
fn the_egress_gateway_task_routes_sidecars_through_the_gateway() {
    let resources = load(EGRESS_GATEWAY);
    let mut live = live();
    live.push(LiveProxy {
        workload: "istio-egressgateway".into(),
        namespace: "istio-system".into(),
        inbound_addr: String::new(),
        listeners: [(80, "127.0.0.1:4080".to_string())].into(),
    });
    let reg = Registry::build(&resources, &live);
    let sidecar = ProxyRef {
        role: Role::Sidecar,
        workload: "client".into(),
        namespace: "shop".into(),
    };
    let cfg = compile(&resources, &reg, "cluster.local", &sidecar).unwrap();
    let v = vhost(&cfg, "httpbin.example");
    let to = "outbound|80|httpbin|istio-egressgateway.istio-system.svc.cluster.local";
    assert_eq!(v.routes.len(), 1, "only the mesh route: {:#?}", v.routes);
    assert_eq!(v.routes[0].destinations[0].cluster, to);
    let gw = cluster(&cfg, to);
    assert_eq!(
        addresses(gw),
        ["127.0.0.1:4080"],
        "the gateway's port 80 server"
    );
    assert!(
        gw.endpoints[0].plaintext,
        "plain HTTP to the gateway's server"
    );
    assert!(
        cluster(
            &cfg,
            "outbound|443||istio-egressgateway.istio-system.svc.cluster.local"
        )
        .endpoints
        .is_empty(),
        "an opaque port of the gateway's service gets no gateway endpoint"
    );
    // The gateway itself: the gateway route to the service outside the mesh.
    let gateway = ProxyRef {
        role: Role::Gateway,
        workload: "istio-egressgateway".into(),
        namespace: "istio-system".into(),
    };
    let cfg = compile(&resources, &reg, "cluster.local", &gateway).unwrap();
    let table = &cfg.routes[&cfg.listeners[0].route_table];
    let v = table
        .virtual_hosts
        .iter()
        .find(|v| v.domains.iter().any(|d| d == "httpbin.example"))
        .unwrap_or_else(|| panic!("{table:#?}"));
    assert_eq!(
        v.routes[0].destinations[0].cluster,
        "outbound|80||httpbin.example"
    );
    assert!(cluster(&cfg, "outbound|80||httpbin.example")
        .egress
        .is_some());
}
