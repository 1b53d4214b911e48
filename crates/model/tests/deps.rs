//! The dependency index (`weft_model::deps`): which proxies a change reaches. The rule it
//! must keep: a proxy whose compiled config would change is reached (over-approximating is
//! allowed, under-approximating is a missed push). Small Istio meshes in YAML; the
//! soundness property is checked by compiling every proxy before and after each edit.

use std::collections::BTreeSet;
use weft_api::Resource;
use weft_model::deps::{Change, View};
use weft_model::{compile, LiveProxy, Prepared, ProxyConfig, ProxyRef, Registry, Role};

/// Four namespaces and an ingress gateway:
/// - `a`: service `web` (web-v1, web-v2) with a VirtualService and a DestinationRule, a
///   client; Sidecar `./*`.
/// - `b`: service `api` (api-v1) whose VirtualService sends 10% to `web.a`, a client;
///   Sidecar `./*`, and api's own Sidecar admitting `a/*` only (it calls web, not itself).
/// - `c`: `free`, no Sidecar: it sees every service.
/// - `d`: TCP service `db`, a client; Sidecar `./*`.
/// - `e`: a service outside the mesh (`partner.example.com`), no workloads.
const MESH: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: web, namespace: a}
spec:
  hosts: [web.a.svc.cluster.local]
  ports: [{number: 8080, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: web}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: web-v1, namespace: a}
spec: {address: 127.0.0.1, labels: {app: web, version: v1}, serviceAccount: web}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: web-v2, namespace: a}
spec: {address: 127.0.0.1, labels: {app: web, version: v2}, serviceAccount: web}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: client-a, namespace: a}
spec: {address: 127.0.0.1, labels: {app: client}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: a}
spec:
  egress: [{hosts: ["./*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: a}
spec:
  hosts: [web]
  http:
  - route:
    - destination: {host: web, subset: v1}
      weight: 90
    - destination: {host: web, subset: v2}
      weight: 10
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web, namespace: a}
spec:
  host: web
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: b}
spec:
  hosts: [api.b.svc.cluster.local]
  ports: [{number: 9090, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: api}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: api-v1, namespace: b}
spec: {address: 127.0.0.1, labels: {app: api, version: v1}, serviceAccount: api}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: client-b, namespace: b}
spec: {address: 127.0.0.1, labels: {app: client}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: b}
spec:
  egress: [{hosts: ["./*"]}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: api, namespace: b}
spec:
  workloadSelector: {labels: {app: api}}
  egress: [{hosts: ["a/*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api, namespace: b}
spec:
  hosts: [api]
  http:
  - route:
    - destination: {host: api}
      weight: 90
    - destination: {host: web.a.svc.cluster.local}
      weight: 10
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: free, namespace: c}
spec: {address: 127.0.0.1, labels: {app: free}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db, namespace: d}
spec:
  hosts: [db.d.svc.cluster.local]
  ports: [{number: 5432, name: tcp-pg, protocol: TCP}]
  workloadSelector: {labels: {app: db}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: db-1, namespace: d}
spec: {address: 127.0.0.1, labels: {app: db}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: client-d, namespace: d}
spec: {address: 127.0.0.1, labels: {app: client}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: d}
spec:
  egress: [{hosts: ["./*"]}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: partner, namespace: e}
spec:
  hosts: [partner.example.com]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{number: 80, name: http, protocol: HTTP}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: ingress, namespace: istio-system}
spec: {address: 127.0.0.1, labels: {istio: ingressgateway}, serviceAccount: ingress}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: public, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [www.example.com]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: public, namespace: istio-system}
spec:
  hosts: [www.example.com]
  gateways: [public]
  http:
  - route:
    - destination: {host: web.a.svc.cluster.local}
"#;

fn parse(text: &str, file: &str) -> Vec<Resource> {
    let loaded = weft_api::load_str(text, file);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let invalid = weft_api::validate_all(&loaded.resources);
    assert!(invalid.is_empty(), "{invalid:?}");
    loaded.resources
}

fn mesh() -> Vec<Resource> {
    parse(MESH, "mesh.yaml")
}

/// `base` with each resource of `yaml` replacing the one with its key in place, or added.
fn edit(base: &[Resource], yaml: &str) -> Vec<Resource> {
    let mut out = base.to_vec();
    for r in parse(yaml, "edit.yaml") {
        match out.iter_mut().find(|o| o.key() == r.key()) {
            Some(slot) => *slot = r,
            None => out.push(r),
        }
    }
    out
}

/// `base` without the resource `key`.
fn without(base: &[Resource], key: &str) -> Vec<Resource> {
    let out: Vec<Resource> = base.iter().filter(|r| r.key() != key).cloned().collect();
    assert_eq!(out.len() + 1, base.len(), "{key} was in the config");
    out
}

fn sidecar(ns: &str, workload: &str) -> ProxyRef {
    ProxyRef {
        role: Role::Sidecar,
        workload: workload.into(),
        namespace: ns.into(),
    }
}

fn gateway() -> ProxyRef {
    ProxyRef {
        role: Role::Gateway,
        workload: "ingress".into(),
        namespace: "istio-system".into(),
    }
}

/// Every proxy of the mesh.
fn proxies() -> Vec<ProxyRef> {
    let mut out: Vec<ProxyRef> = [
        ("a", "web-v1"),
        ("a", "web-v2"),
        ("a", "client-a"),
        ("b", "api-v1"),
        ("b", "client-b"),
        ("c", "free"),
        ("d", "db-1"),
        ("d", "client-d"),
    ]
    .iter()
    .map(|(ns, w)| sidecar(ns, w))
    .collect();
    out.push(gateway());
    out
}

/// Every sidecar is live (so clusters have endpoints), except those in `absent`.
fn live_except(absent: &[(&str, &str)]) -> Vec<LiveProxy> {
    proxies()
        .iter()
        .enumerate()
        .filter(|(_, p)| p.role == Role::Sidecar)
        .filter(|(_, p)| !absent.contains(&(p.namespace.as_str(), p.workload.as_str())))
        .map(|(i, p)| LiveProxy {
            workload: p.workload.clone(),
            namespace: p.namespace.clone(),
            inbound_addr: format!("127.0.0.1:{}", 2000 + i),
            listeners: Default::default(),
        })
        .collect()
}

fn live() -> Vec<LiveProxy> {
    live_except(&[])
}

/// One version of the config, as the control plane holds it.
struct Version {
    resources: Vec<Resource>,
    prepared: Prepared,
    registry: Registry,
}

impl Version {
    fn new(resources: Vec<Resource>) -> Version {
        Version::with_live(resources, &live())
    }

    fn with_live(resources: Vec<Resource>, live: &[LiveProxy]) -> Version {
        Version {
            prepared: Prepared::new(&resources),
            registry: Registry::build(&resources, live),
            resources,
        }
    }

    fn compile(&self, proxy: &ProxyRef) -> ProxyConfig {
        compile(&self.resources, &self.registry, "cluster.local", proxy)
            .unwrap_or_else(|e| panic!("{proxy:?}: {e}"))
    }

    fn view(&self, proxy: &ProxyRef) -> View {
        View::of(&self.prepared, proxy, &self.registry, &self.compile(proxy))
    }
}

fn between(old: &Version, new: &Version) -> Change {
    Change::between(&old.resources, &new.resources, &old.registry, &new.registry)
}

/// Which of `proxies()` (by workload name) the change from `old` to `new` reaches.
fn reached(old: &Version, new: &Version) -> BTreeSet<String> {
    let change = between(old, new);
    proxies()
        .iter()
        .filter(|p| old.view(p).reached_by(&change))
        .map(|p| p.workload.clone())
        .collect()
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

const WEB_VS_EDIT: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: a}
spec:
  hosts: [web]
  http:
  - route:
    - destination: {host: web, subset: v1}
      weight: 50
    - destination: {host: web, subset: v2}
      weight: 50
"#;

#[test]
fn a_virtual_service_edit_reaches_the_proxies_that_see_its_host() {
    let old = Version::new(mesh());
    let new = Version::new(edit(&old.resources, WEB_VS_EDIT));
    let change = between(&old, &new);
    assert!(!change.all);
    assert!(change
        .hosts
        .contains(&("web.a.svc.cluster.local".into(), "a".into())));
    let reached = |ns, w| old.view(&sidecar(ns, w)).reached_by(&change);
    assert!(reached("a", "client-a"), "its Sidecar admits ./* in a");
    assert!(reached("c", "free"), "no Sidecar: it sees everything");
    assert!(
        !reached("d", "client-d"),
        "scoped to d, and no cluster for web"
    );
    assert!(reached("b", "api-v1"), "its own Sidecar admits a/*");
    assert!(old.view(&gateway()).reached_by(&change));
    // The reached proxies' configs did change.
    for (ns, w) in [("a", "client-a"), ("c", "free")] {
        assert_ne!(old.compile(&sidecar(ns, w)), new.compile(&sidecar(ns, w)));
    }
    assert_eq!(
        old.compile(&sidecar("d", "client-d")),
        new.compile(&sidecar("d", "client-d"))
    );
}

#[test]
fn a_destination_rule_edit_reaches_a_proxy_routed_to_its_host_outside_its_scope() {
    let old = Version::new(mesh());
    let client_b = sidecar("b", "client-b");
    let cfg = old.compile(&client_b);
    assert!(
        cfg.clusters
            .contains_key("outbound|8080||web.a.svc.cluster.local"),
        "api's VirtualService sends client-b to web.a: {:?}",
        cfg.clusters.keys().collect::<Vec<_>>()
    );
    let new = Version::new(edit(
        &old.resources,
        r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web, namespace: a}
spec:
  host: web
  trafficPolicy: {loadBalancer: {simple: RANDOM}}
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"#,
    ));
    assert_ne!(
        cfg,
        new.compile(&client_b),
        "client-b's web.a cluster changed"
    );
    let change = between(&old, &new);
    assert!(
        old.view(&client_b).reached_by(&change),
        "its scope (./* in b) does not admit web.a, but it holds a cluster for it"
    );
    assert!(!old.view(&sidecar("d", "client-d")).reached_by(&change));
}

#[test]
fn a_workload_entry_label_change_reaches_its_clients_and_its_own_proxy() {
    let old = Version::new(mesh());
    let new = Version::new(edit(
        &old.resources,
        r#"
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: web-v2, namespace: a}
spec: {address: 127.0.0.1, labels: {app: web, version: v3}, serviceAccount: web}
"#,
    ));
    let change = between(&old, &new);
    assert!(change.workloads.contains(&("a".into(), "web-v2".into())));
    assert!(change
        .hosts
        .contains(&("web.a.svc.cluster.local".into(), "a".into())));
    let got = reached(&old, &new);
    for w in [
        "web-v2", "client-a", "free", "client-b", "api-v1", "ingress",
    ] {
        assert!(got.contains(w), "{w} not reached: {got:?}");
    }
    assert!(
        !got.contains("client-d") && !got.contains("db-1"),
        "{got:?}"
    );
}

#[test]
fn a_proxy_connecting_reaches_the_clients_of_its_services_and_itself() {
    let resources = mesh();
    let before = Version::with_live(resources.clone(), &live_except(&[("d", "db-1")]));
    let after = Version::with_live(resources, &live());
    let change = Change::endpoint(&after.registry, "d", "db-1");
    assert_eq!(
        change.hosts,
        BTreeSet::from([("db.d.svc.cluster.local".to_string(), "d".to_string())])
    );
    let reached = |p: &ProxyRef| before.view(p).reached_by(&change);
    assert!(reached(&sidecar("d", "db-1")), "its own proxy");
    assert!(reached(&sidecar("d", "client-d")), "sees ./* in d");
    assert!(reached(&sidecar("c", "free")), "sees everything");
    assert!(!reached(&sidecar("a", "client-a")));
    assert!(!reached(&sidecar("b", "client-b")));
    assert!(!reached(&sidecar("b", "api-v1")));
    let cfg = after.compile(&sidecar("d", "client-d"));
    assert_ne!(cfg, before.compile(&sidecar("d", "client-d")));
}

#[test]
fn a_service_entry_in_a_namespace_reaches_its_proxies_even_scoped_away_from_it() {
    let old = Version::new(mesh());
    // A second service backed by api (in b), whose own Sidecar only admits a/*.
    let new = Version::new(edit(
        &old.resources,
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api-admin, namespace: b}
spec:
  hosts: [admin.b.svc.cluster.local]
  ports: [{number: 9091, name: http-admin, protocol: HTTP}]
  workloadSelector: {labels: {app: api}}
"#,
    ));
    let api = sidecar("b", "api-v1");
    let (before, after) = (old.compile(&api), new.compile(&api));
    assert_ne!(
        before.inbound.as_ref().unwrap().services,
        after.inbound.as_ref().unwrap().services,
        "api's inbound side backs the new service"
    );
    let change = between(&old, &new);
    assert!(change.namespaces.contains("b"));
    assert!(old.view(&api).reached_by(&change));
    assert!(!old.view(&sidecar("a", "client-a")).reached_by(&change));
}

#[test]
fn policy_kinds_reach_everyone() {
    let old = Version::new(mesh());
    let edits = [
        r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: web, namespace: a}
spec:
  selector: {matchLabels: {app: web}}
  action: ALLOW
  rules: [{from: [{source: {namespaces: [a]}}]}]
"#,
        r#"
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: d}
spec:
  mtls: {mode: STRICT}
"#,
        r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: c}
spec:
  egress: [{hosts: ["./*"]}]
"#,
        r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |-
    outboundTrafficPolicy:
      mode: REGISTRY_ONLY
"#,
    ];
    for yaml in edits {
        let new = Version::new(edit(&old.resources, yaml));
        let change = between(&old, &new);
        assert!(change.all, "{yaml}");
        assert_eq!(reached(&old, &new).len(), proxies().len());
    }
}

#[test]
fn a_gateway_edit_reaches_gateways_only() {
    let old = Version::new(mesh());
    let new = Version::new(edit(
        &old.resources,
        r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: public, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: [www.example.com]
"#,
    ));
    assert_ne!(old.compile(&gateway()), new.compile(&gateway()));
    assert_eq!(reached(&old, &new), names(&["ingress"]));
    // A gateway's view is reached by any change, even an empty one.
    assert!(old.view(&gateway()).reached_by(&Change::default()));
    assert!(!old
        .view(&sidecar("c", "free"))
        .reached_by(&Change::default()));
}

#[test]
fn a_delegate_virtual_service_reaches_everyone() {
    let old = Version::new(mesh());
    let new = Version::new(edit(
        &old.resources,
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web-delegate, namespace: a}
spec:
  http:
  - route: [{destination: {host: web, subset: v2}}]
"#,
    ));
    assert!(between(&old, &new).all);
    assert_eq!(reached(&old, &new).len(), proxies().len());
}

const API_POOL: &str = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api, namespace: b}
spec:
  host: api
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 7}
      http: {http2MaxRequests: 11}
"#;

#[test]
fn a_destination_rule_pool_edit_reaches_the_backends_of_its_host_outside_their_scope() {
    // A rule's connection pool also limits the inbound side of the workloads backing its
    // host. api-v1 backs api.b but its own Sidecar admits a/* only: it holds no cluster
    // for api.b, yet its config changes.
    let old = Version::new(mesh());
    let new = Version::new(edit(&old.resources, API_POOL));
    let api = sidecar("b", "api-v1");
    let (before, after) = (old.compile(&api), new.compile(&api));
    assert_ne!(
        before.inbound.as_ref().unwrap().limits,
        after.inbound.as_ref().unwrap().limits,
        "api's inbound limits come from the rule"
    );
    assert!(old.view(&api).reached_by(&between(&old, &new)));
}

const PARTNER_IN_A: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: partner, namespace: a}
spec:
  hosts: [partner.example.com]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{number: 80, name: http, protocol: HTTP}]
"#;

#[test]
fn a_service_entry_moving_namespace_reaches_proxies_scoped_to_the_new_one() {
    // partner.example.com moves from e to a: api-v1 (in b, scoped to a/*) now sees it.
    let old = Version::new(mesh());
    let new = Version::new(edit(
        &without(&old.resources, "ServiceEntry/e/partner"),
        PARTNER_IN_A,
    ));
    let api = sidecar("b", "api-v1");
    assert_ne!(old.compile(&api), new.compile(&api));
    let change = between(&old, &new);
    assert!(
        change
            .hosts
            .contains(&("partner.example.com".into(), "a".into())),
        "{change:?}"
    );
    assert!(old.view(&api).reached_by(&change));
}

#[test]
fn a_host_declared_in_two_namespaces_reaches_the_new_owners_scope_when_the_first_goes() {
    // The first ServiceEntry (in e) names the service's namespace; once it is gone the one
    // in a does, and api-v1 (scoped to a/*) sees the host.
    let old = Version::new(edit(&mesh(), PARTNER_IN_A));
    assert_eq!(
        old.registry.services["partner.example.com"].namespace, "e",
        "the first ServiceEntry in resource order names the namespace"
    );
    let new = Version::new(without(&old.resources, "ServiceEntry/e/partner"));
    let api = sidecar("b", "api-v1");
    assert_ne!(old.compile(&api), new.compile(&api));
    assert!(old.view(&api).reached_by(&between(&old, &new)));
}

/// For every proxy, a config that changes from `old` to `new` must be reached by the
/// change. Returns the proxies whose config changed and those the change reached.
fn check(name: &str, old: &Version, new: &Version) -> (BTreeSet<String>, BTreeSet<String>) {
    let change = between(old, new);
    let mut changed = BTreeSet::new();
    let mut reached = BTreeSet::new();
    let mut missed = Vec::new();
    for p in proxies() {
        let before = old.compile(&p);
        let after = new.compile(&p);
        let view = View::of(&old.prepared, &p, &old.registry, &before);
        let hit = view.reached_by(&change);
        if hit {
            reached.insert(p.workload.clone());
        }
        if before != after {
            changed.insert(p.workload.clone());
            if !hit {
                missed.push(p.workload.clone());
            }
        }
    }
    assert!(
        missed.is_empty(),
        "{name}: the config of {missed:?} changed but the change {change:?} does not reach it"
    );
    (changed, reached)
}

/// The edits of the soundness table: (name, the config after it).
fn edits() -> Vec<(&'static str, Vec<Resource>)> {
    let base = mesh();
    let e = |yaml: &str| edit(&base, yaml);
    vec![
        ("VirtualService weights", e(WEB_VS_EDIT)),
        (
            "VirtualService for api sends to db instead of web",
            e(r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api, namespace: b}
spec:
  hosts: [api]
  http:
  - route:
    - destination: {host: api}
      weight: 90
    - destination: {host: db.d.svc.cluster.local}
      weight: 10
"#),
        ),
        (
            "VirtualService tcp route for db sends to web",
            e(r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: db, namespace: d}
spec:
  hosts: [db]
  tcp:
  - route: [{destination: {host: web.a.svc.cluster.local, port: {number: 8080}}}]
"#),
        ),
        (
            "VirtualService for web.a moves from a to b",
            edit(
                &without(&base, "VirtualService/a/web"),
                r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web-from-b, namespace: b}
spec:
  hosts: [web.a.svc.cluster.local]
  http:
  - route: [{destination: {host: web.a.svc.cluster.local, subset: v2}}]
"#,
            ),
        ),
        (
            "VirtualService for web removed",
            without(&base, "VirtualService/a/web"),
        ),
        (
            "DestinationRule subsets",
            e(r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web, namespace: a}
spec:
  host: web
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {app: web}}
"#),
        ),
        (
            "DestinationRule load balancer for web",
            e(r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web, namespace: a}
spec:
  host: web
  trafficPolicy: {loadBalancer: {simple: RANDOM}}
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"#),
        ),
        ("DestinationRule connection pool for api", e(API_POOL)),
        (
            "ServiceEntry port added",
            e(r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: b}
spec:
  hosts: [api.b.svc.cluster.local]
  ports:
  - {number: 9090, name: http, protocol: HTTP}
  - {number: 9443, name: grpc, protocol: GRPC}
  workloadSelector: {labels: {app: api}}
"#),
        ),
        (
            "ServiceEntry added in d",
            e(r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: cache, namespace: d}
spec:
  hosts: [cache.d.svc.cluster.local]
  ports: [{number: 6379, name: tcp-redis, protocol: TCP}]
  workloadSelector: {labels: {app: db}}
"#),
        ),
        ("ServiceEntry removed", without(&base, "ServiceEntry/d/db")),
        (
            "ServiceEntry moved from namespace e to a",
            edit(&without(&base, "ServiceEntry/e/partner"), PARTNER_IN_A),
        ),
        (
            "WorkloadEntry labels changed (web-v2 leaves subset v2)",
            e(r#"
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: web-v2, namespace: a}
spec: {address: 127.0.0.1, labels: {app: web, version: v3}, serviceAccount: web}
"#),
        ),
        (
            "WorkloadEntry labels changed (db-1 stops backing db)",
            e(r#"
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: db-1, namespace: d}
spec: {address: 127.0.0.1, labels: {app: other}}
"#),
        ),
        (
            "WorkloadEntry service account changed",
            e(r#"
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: api-v1, namespace: b}
spec: {address: 127.0.0.1, labels: {app: api, version: v1}, serviceAccount: api2}
"#),
        ),
        (
            "Sidecar hosts changed in b",
            e(r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: b}
spec:
  egress: [{hosts: ["./*", "d/*"]}]
"#),
        ),
        (
            "AuthorizationPolicy added",
            e(r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: web, namespace: a}
spec:
  selector: {matchLabels: {app: web}}
  action: ALLOW
  rules: [{from: [{source: {namespaces: [a]}}]}]
"#),
        ),
        (
            "PeerAuthentication STRICT in a",
            e(r#"
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: a}
spec:
  mtls: {mode: STRICT}
"#),
        ),
        (
            "Gateway port changed",
            e(r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: public, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: [www.example.com]
"#),
        ),
    ]
}

#[test]
fn every_proxy_whose_config_changes_is_reached() {
    let old = Version::new(mesh());
    let mut failures = Vec::new();
    for (name, resources) in edits() {
        let new = Version::new(resources);
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(name, &old, &new)));
        match result {
            Ok((changed, reached)) => {
                assert!(!changed.is_empty(), "{name}: the edit changes no config");
                println!("{name}: changed {changed:?}, reached {reached:?}");
            }
            Err(e) => failures.push(
                e.downcast_ref::<String>()
                    .cloned()
                    .unwrap_or_else(|| name.to_string()),
            ),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn narrow_edits_leave_unrelated_proxies_alone() {
    // The index is useful only if it does not reach everyone: these edits must spare the
    // proxies scoped away from them.
    let old = Version::new(mesh());
    let edits = edits();
    let get = |name: &str| {
        let (_, r) = edits.iter().find(|(n, _)| *n == name).unwrap();
        Version::new(r.clone())
    };
    let vs = reached(&old, &get("VirtualService weights"));
    assert!(!vs.contains("client-d") && !vs.contains("db-1"), "{vs:?}");
    let we = reached(
        &old,
        &get("WorkloadEntry labels changed (db-1 stops backing db)"),
    );
    assert!(!we.contains("client-a") && !we.contains("web-v1"), "{we:?}");
}

#[test]
fn every_proxy_whose_config_changes_when_a_proxy_comes_or_goes_is_reached() {
    let resources = mesh();
    for p in proxies().iter().filter(|p| p.role == Role::Sidecar) {
        let key = (p.namespace.as_str(), p.workload.as_str());
        let without = Version::with_live(resources.clone(), &live_except(&[key]));
        let with = Version::with_live(resources.clone(), &live());
        // Coming, then going (the state marks with the registry after the update).
        for (old, new) in [(&without, &with), (&with, &without)] {
            let change = Change::endpoint(&new.registry, key.0, key.1);
            for q in proxies() {
                let before = old.compile(&q);
                if before != new.compile(&q) {
                    let view = View::of(&old.prepared, &q, &old.registry, &before);
                    assert!(
                        view.reached_by(&change),
                        "{} connecting or leaving changes {}'s config, not reached by {change:?}",
                        p.workload,
                        q.workload
                    );
                }
            }
        }
    }
}
