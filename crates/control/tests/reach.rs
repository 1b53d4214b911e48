//! The push cycle compiles only the proxies a change reaches (`weft_model::deps`): with
//! two namespaces each scoped by a Sidecar to `./*`, a change in one does not push to the
//! proxies of the other.

use std::sync::Arc;
use tokio::sync::watch;
use weft_control::state::State;
use weft_protocol::delta::Desired;
use weft_protocol::pb;

/// `a`: service web (web-v1) with a VirtualService; `b`: service api (api-v1) and a
/// client. Each namespace's Sidecar admits `./*`.
fn mesh(web_timeout: &str, api_version: &str) -> String {
    format!(
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: web, namespace: a}}
spec:
  hosts: [web.a.svc.cluster.local]
  ports: [{{number: 8080, name: http, protocol: HTTP}}]
  workloadSelector: {{labels: {{app: web}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: web-v1, namespace: a}}
spec: {{address: 127.0.0.1, labels: {{app: web, version: v1}}, serviceAccount: web}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: default, namespace: a}}
spec:
  egress: [{{hosts: ["./*"]}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: web, namespace: a}}
spec:
  hosts: [web]
  http:
  - route: [{{destination: {{host: web}}}}]
    timeout: {web_timeout}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: api, namespace: b}}
spec:
  hosts: [api.b.svc.cluster.local]
  ports: [{{number: 9090, name: http, protocol: HTTP}}]
  workloadSelector: {{labels: {{app: api}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: api-v1, namespace: b}}
spec: {{address: 127.0.0.1, labels: {{app: api, version: {api_version}}}, serviceAccount: api}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: client-b, namespace: b}}
spec: {{address: 127.0.0.1, labels: {{app: client}}}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: default, namespace: b}}
spec:
  egress: [{{hosts: ["./*"]}}]
"#
    )
}

fn resources(text: &str) -> Vec<weft_api::Resource> {
    let loaded = weft_api::load_str(text, "mesh.yaml");
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    loaded.resources
}

fn node(namespace: &str, workload: &str, inbound: &str) -> pb::Node {
    pb::Node {
        id: format!("sidecar~{workload}.{namespace}"),
        role: "sidecar".into(),
        workload: workload.into(),
        namespace: namespace.into(),
        inbound_addr: inbound.into(),
        build_version: "test".into(),
        config_version: String::new(),
    }
}

type Rx = watch::Receiver<Option<Arc<Desired>>>;

/// The newest push not yet seen, if any, once the push cycle has served every change so far.
async fn next(state: &State, rx: &mut Rx) -> Option<Arc<Desired>> {
    state.flush().await;
    if rx.has_changed().unwrap_or(false) {
        rx.borrow_and_update().clone()
    } else {
        None
    }
}

/// Connects `workload` and takes its first config.
async fn connect(state: &State, namespace: &str, workload: &str, inbound: &str) -> Rx {
    let (tx, mut rx) = watch::channel(None);
    state
        .connect(node(namespace, workload, inbound), tx)
        .unwrap();
    assert!(
        next(state, &mut rx).await.is_some(),
        "{workload} gets a config on connect"
    );
    rx
}

/// The timeout of the route to web.a in a config.
fn web_timeout(push: &Desired) -> Option<u64> {
    let cfg = push.config().unwrap();
    let vhost = cfg.routes["outbound"]
        .virtual_hosts
        .iter()
        .find(|v| v.name == "web.a.svc.cluster.local")
        .expect("web.a has a virtual host");
    vhost.routes[0].timeout_ms
}

#[tokio::test]
async fn a_route_change_in_one_namespace_pushes_to_its_proxies_only() {
    let state = State::new(
        resources(&mesh("1s", "v1")),
        "cluster.local",
        weft_protocol::MAX_PUSH_BYTES,
    );
    let mut web = connect(&state, "a", "web-v1", "127.0.0.1:1001").await;
    let mut api = connect(&state, "b", "api-v1", "127.0.0.1:1002").await;
    // api-v1 connecting does not reach web-v1: a's Sidecar does not admit api.b.
    assert!(next(&state, &mut web).await.is_none());
    let mut client = connect(&state, "b", "client-b", "127.0.0.1:1003").await;
    assert!(next(&state, &mut web).await.is_none());
    assert!(next(&state, &mut api).await.is_none());

    state.set_resources(resources(&mesh("2s", "v1")));
    let push = next(&state, &mut web)
        .await
        .expect("web-v1 sees web.a: its route changed");
    assert_eq!(web_timeout(&push), Some(2000));
    assert!(
        next(&state, &mut api).await.is_none(),
        "b's proxies do not see web.a"
    );
    assert!(next(&state, &mut client).await.is_none());
}

#[tokio::test]
async fn a_workload_entry_change_in_one_namespace_pushes_to_the_proxies_that_see_it() {
    let state = State::new(
        resources(&mesh("1s", "v1")),
        "cluster.local",
        weft_protocol::MAX_PUSH_BYTES,
    );
    let mut web = connect(&state, "a", "web-v1", "127.0.0.1:1001").await;
    let mut api = connect(&state, "b", "api-v1", "127.0.0.1:1002").await;
    let mut client = connect(&state, "b", "client-b", "127.0.0.1:1003").await;
    let _ = next(&state, &mut api).await;
    let _ = next(&state, &mut client).await;
    assert!(next(&state, &mut web).await.is_none());

    // api-v1's labels change: its own proxy (inbound version) and client-b (the endpoint's
    // version in its api.b cluster) get a push; web-v1 in a does not see api.b.
    state.set_resources(resources(&mesh("1s", "v2")));
    let own = (next(&state, &mut api).await.expect("api-v1's own proxy"))
        .config()
        .unwrap();
    assert_eq!(own.inbound.as_ref().unwrap().version.as_deref(), Some("v2"));
    let seen = (next(&state, &mut client)
        .await
        .expect("client-b sees api.b"))
    .config()
    .unwrap();
    let cluster = seen
        .clusters
        .values()
        .find(|c| c.service == "api.b.svc.cluster.local")
        .unwrap();
    assert_eq!(cluster.endpoints[0].version.as_deref(), Some("v2"));
    assert!(
        next(&state, &mut web).await.is_none(),
        "a's proxy does not see api.b"
    );
}

#[tokio::test]
async fn a_proxy_connecting_in_one_namespace_pushes_to_the_proxies_that_see_it() {
    let state = State::new(
        resources(&mesh("1s", "v1")),
        "cluster.local",
        weft_protocol::MAX_PUSH_BYTES,
    );
    let mut web = connect(&state, "a", "web-v1", "127.0.0.1:1001").await;
    let mut client = connect(&state, "b", "client-b", "127.0.0.1:1003").await;
    assert!(next(&state, &mut web).await.is_none());

    let (tx, _api) = watch::channel(None);
    let id = state
        .connect(node("b", "api-v1", "127.0.0.1:1002"), tx)
        .unwrap();
    let cfg = (next(&state, &mut client)
        .await
        .expect("api.b gained an endpoint"))
    .config()
    .unwrap();
    let cluster = cfg
        .clusters
        .values()
        .find(|c| c.service == "api.b.svc.cluster.local")
        .unwrap();
    assert_eq!(cluster.endpoints[0].address, "127.0.0.1:1002");
    assert!(next(&state, &mut web).await.is_none());

    state.disconnect(id);
    let cfg = (next(&state, &mut client).await.expect("api.b lost it"))
        .config()
        .unwrap();
    assert!(cfg
        .clusters
        .values()
        .filter(|c| c.service == "api.b.svc.cluster.local")
        .all(|c| c.endpoints.is_empty()));
    assert!(next(&state, &mut web).await.is_none());
}

/// api-v1's own Sidecar admits a/* only: it holds nothing of api.b but backs it.
const API_SCOPED_AWAY: &str = r#"
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: api, namespace: b}
spec:
  workloadSelector: {labels: {app: api}}
  egress: [{hosts: ["a/*"]}]
"#;

const API_POOL: &str = r#"
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api, namespace: b}
spec:
  host: api
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 7}
"#;

#[tokio::test]
async fn a_pool_limit_reaches_the_backend_whatever_its_scope() {
    let base = format!("{}{API_SCOPED_AWAY}", mesh("1s", "v1"));
    let state = State::new(
        resources(&base),
        "cluster.local",
        weft_protocol::MAX_PUSH_BYTES,
    );
    let mut api = connect(&state, "b", "api-v1", "127.0.0.1:1002").await;
    state.set_resources(resources(&format!("{base}{API_POOL}")));
    let cfg = (next(&state, &mut api)
        .await
        .expect("the rule limits api-v1's inbound side"))
    .config()
    .unwrap();
    assert_eq!(cfg.inbound.unwrap().limits.max_connections, Some(7));
}
