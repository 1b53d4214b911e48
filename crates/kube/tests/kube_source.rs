//! The Kubernetes config source against a FAKE API server: no real Kubernetes API server
//! can run on these machines, so `fake_apiserver` speaks the real list/watch protocol
//! (Lists with resourceVersion, `?watch=true` streams of JSON WatchEvents, bookmarks,
//! `410 Gone` then relist) over real HTTP, serving objects recorded in the shape an API
//! server returns them (`recorded/cluster.json`), to a real kube-rs client and watcher.

mod fake_apiserver;

use fake_apiserver::FakeApiServer;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use weft_control::source::Snapshot;
use weft_model::{compile, LiveProxy, ProxyConfig, ProxyRef, Registry, Role};

const PODS: [(&str, &str); 2] = [
    ("reviews-v1-7f9c6d5b8-x2kqp", "10.244.1.5"),
    ("ratings-v1-5c9b7d6f4-8wq2m", "10.244.1.6"),
];

fn recorded() -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/recorded/cluster.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn folder_text() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/recorded/folder/mesh.yaml");
    std::fs::read_to_string(path).unwrap()
}

/// Every pod's compiled sidecar config, with both pods' sidecars live. Where each resource
/// came from (`mesh.yaml:41` or `VirtualService/shop/ratings`) is in the config (routes'
/// origins, the not-enforced report), so both sides are first located by their key alone.
fn compile_all(resources: &[weft_api::Resource]) -> BTreeMap<String, ProxyConfig> {
    let resources: Vec<weft_api::Resource> = resources
        .iter()
        .cloned()
        .map(|mut r| {
            r.source = weft_api::Source {
                file: r.key(),
                line: 1,
            };
            r
        })
        .collect();
    let resources = &resources[..];
    let live: Vec<LiveProxy> = PODS
        .iter()
        .map(|(name, ip)| LiveProxy {
            workload: name.to_string(),
            namespace: "shop".into(),
            inbound_addr: format!("{ip}:15006"),
            listeners: Default::default(),
        })
        .collect();
    let registry = Registry::build(resources, &live);
    PODS.iter()
        .map(|(name, _)| {
            let proxy = ProxyRef {
                role: Role::Sidecar,
                workload: name.to_string(),
                namespace: "shop".into(),
            };
            let cfg = compile(resources, &registry, "cluster.local", &proxy)
                .unwrap_or_else(|e| panic!("compiling {name}: {e}"));
            (name.to_string(), cfg)
        })
        .collect()
}

fn folder_resources(text: &str) -> Vec<weft_api::Resource> {
    let loaded = weft_api::load_str(text, "mesh.yaml");
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let (errors, _) = weft_api::validate_all_with_warnings(&loaded.resources);
    assert!(errors.is_empty(), "{errors:?}");
    loaded.resources
}

async fn start(server: &FakeApiServer) -> weft_kube::Source {
    let config = kube::Config::new(server.url.parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    tokio::time::timeout(Duration::from_secs(20), weft_kube::start(client))
        .await
        .expect("the source syncs with the fake API server")
        .unwrap()
}

/// Waits (10 s at most) for a snapshot that passes `ok`.
async fn wait_for(source: &mut weft_kube::Source, ok: impl Fn(&Snapshot) -> bool) -> Arc<Snapshot> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = source.feed.borrow_and_update().clone();
        if ok(&now) {
            return now;
        }
        match tokio::time::timeout_at(deadline, source.feed.changed()).await {
            Ok(Ok(())) => {}
            _ => panic!("no such snapshot within 10 s; the last one: {now:#?}"),
        }
    }
}

fn find<'a>(s: &'a Snapshot, kind: &str, name: &str) -> Option<&'a weft_api::Resource> {
    s.resources
        .iter()
        .find(|r| r.kind.as_str() == kind && r.name() == name)
}

fn vs_timeout(s: &Snapshot) -> Option<String> {
    let r = find(s, "VirtualService", "ratings")?;
    let weft_api::Spec::VirtualService(vs) = &r.spec else {
        return None;
    };
    let v = serde_json::to_value(vs).unwrap();
    v["http"][0]["timeout"].as_str().map(str::to_string)
}

#[tokio::test]
async fn fake_api_server_registry_compiles_to_the_same_proxy_configs_as_the_folder() {
    let server = FakeApiServer::start(recorded()).await;
    let source = start(&server).await;
    let snapshot = source.feed.borrow().clone();
    assert!(snapshot.rejected.is_empty(), "{:?}", snapshot.rejected);
    let folder = folder_resources(&folder_text());
    // One resource per object although every Istio kind is watched at each served
    // version; the finished Job's pod is not a workload.
    assert_eq!(snapshot.resources.len(), folder.len(), "{snapshot:#?}");
    assert!(find(&snapshot, "WorkloadEntry", "db-migrate-4hh2x").is_none());
    // The Pod's WorkloadEntry: labels, service account, IP, and its node's locality.
    let pod = find(&snapshot, "WorkloadEntry", PODS[0].0).unwrap();
    let weft_api::Spec::WorkloadEntry(we) = &pod.spec else {
        panic!("{pod:?}")
    };
    assert_eq!(we.address.as_deref(), Some(PODS[0].1));
    assert_eq!(we.service_account.as_deref(), Some("bookinfo-reviews"));
    assert_eq!(we.locality.as_deref(), Some("eu-west1/eu-west1-b"));
    assert_eq!(we.labels.get("version").map(String::as_str), Some("v1"));
    let from_cluster = compile_all(&snapshot.resources);
    let from_folder = compile_all(&folder);
    for (name, cfg) in &from_folder {
        assert_eq!(
            from_cluster.get(name),
            Some(cfg),
            "{name}: the cluster's config differs from the folder's"
        );
    }
    // The comparison can fail: a different folder compiles to a different config.
    let other = folder_resources(&folder_text().replace("timeout: 2s", "timeout: 3s"));
    assert_ne!(compile_all(&other), from_cluster);
    // Watched at every served version (v1, v1beta1, v1alpha3): each one was listed.
    assert!(server.lists("networking.istio.io", "virtualservices") >= 3);
}

#[tokio::test]
async fn fake_api_server_watch_events_edit_and_delete_reach_the_model() {
    let server = FakeApiServer::start(recorded()).await;
    let mut source = start(&server).await;
    assert_eq!(vs_timeout(&source.feed.borrow()).as_deref(), Some("2s"));
    let mut vs = recorded()
        .into_iter()
        .find(|o| o["kind"] == "VirtualService")
        .unwrap();
    vs["spec"]["http"][0]["timeout"] = json!("5s");
    server.apply(vs);
    let snapshot = wait_for(&mut source, |s| vs_timeout(s).as_deref() == Some("5s")).await;
    let folder = folder_resources(&folder_text().replace("timeout: 2s", "timeout: 5s"));
    assert_eq!(compile_all(&snapshot.resources), compile_all(&folder));

    let pod = recorded()
        .into_iter()
        .find(|o| o["metadata"]["name"] == PODS[1].0)
        .unwrap();
    server.delete(&pod);
    wait_for(&mut source, |s| {
        find(s, "WorkloadEntry", PODS[1].0).is_none()
    })
    .await;
}

#[tokio::test]
async fn fake_api_server_410_gone_relists_and_the_change_still_arrives() {
    let server = FakeApiServer::start(recorded()).await;
    let mut source = start(&server).await;
    let lists_before = server.lists("networking.istio.io", "virtualservices");
    server.compact_and_drop_watches();
    let mut vs = recorded()
        .into_iter()
        .find(|o| o["kind"] == "VirtualService")
        .unwrap();
    vs["spec"]["http"][0]["timeout"] = json!("7s");
    server.apply(vs);
    wait_for(&mut source, |s| vs_timeout(s).as_deref() == Some("7s")).await;
    assert!(
        server.lists("networking.istio.io", "virtualservices") > lists_before,
        "the watcher relisted after 410 Gone"
    );
    assert!(server.gone() > 0, "the old watches were answered 410 Gone");
}

const BAD_VS: &str = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: bad
  namespace: shop
spec:
  hosts: [ratings]
  http:
  - timeout: 2 seconds
    route:
    - destination: {host: ratings}
"#;

#[tokio::test]
async fn fake_api_server_invalid_virtual_service_is_rejected_with_weft_analyze_message() {
    let findings = weft_analyze::findings_for(&weft_api::load_str(BAD_VS, "bad.yaml"));
    let error = findings
        .iter()
        .find(|f| f.severity == weft_analyze::Severity::Error)
        .expect("weft analyze rejects the file");
    let server = FakeApiServer::start(recorded()).await;
    let mut source = start(&server).await;
    let mut obj: Value = serde_saphyr::from_str(BAD_VS).unwrap();
    obj["metadata"]["uid"] = json!("6a1f0c2e-1111-4c1e-9d55-0a00000000ff");
    server.apply(obj);
    let snapshot = wait_for(&mut source, |s| !s.rejected.is_empty()).await;
    assert_eq!(snapshot.rejected.len(), 1, "{:?}", snapshot.rejected);
    let rejected = &snapshot.rejected[0];
    assert!(
        rejected.starts_with("VirtualService/shop/bad: ") && rejected.ends_with(&error.message),
        "rejected as {rejected:?}; weft analyze says {:?}",
        error.message
    );
    assert!(find(&snapshot, "VirtualService", "bad").is_none());
    assert!(find(&snapshot, "VirtualService", "ratings").is_some());
}

#[tokio::test]
async fn fake_api_server_an_unserved_api_version_does_not_block_the_sync() {
    let server = FakeApiServer::start(recorded()).await;
    // A cluster whose Istio CRDs no longer serve the oldest versions.
    server.stop_serving("telemetry.istio.io/v1alpha1");
    server.stop_serving("networking.istio.io/v1alpha3");
    let source = start(&server).await;
    let snapshot = source.feed.borrow().clone();
    assert!(
        find(&snapshot, "VirtualService", "ratings").is_some(),
        "{snapshot:#?}"
    );
    assert_eq!(
        server.lists("networking.istio.io", "virtualservices"),
        2,
        "v1 and v1beta1"
    );
}
