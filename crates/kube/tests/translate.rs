//! Kubernetes objects as weft resources: which Pods are workloads, what a Service
//! becomes, a node's locality.

use k8s_openapi::api::core::v1::{Node, Pod, Service};
use serde_json::json;
use weft_api::Spec;
use weft_kube::translate;

fn pod(status: serde_json::Value, deleting: bool) -> Pod {
    let mut v = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "shop", "labels": {"app": "a"}},
        "spec": {"containers": [{"name": "c"}], "nodeName": "n"}, "status": status});
    if deleting {
        v["metadata"]["deletionTimestamp"] = json!("2026-12-02T10:00:00Z");
    }
    serde_json::from_value(v).unwrap()
}

#[test]
fn only_pods_with_an_ip_that_are_not_finished_or_terminating_are_workloads() {
    let none = |_: &str| None;
    let running = json!({"phase": "Running", "podIP": "10.0.0.7"});
    let we = translate::pod(&pod(running.clone(), false), none).unwrap();
    let r = we.resource.unwrap();
    let Spec::WorkloadEntry(spec) = &r.spec else {
        panic!("{r:?}")
    };
    assert_eq!(
        spec.service_account.as_deref(),
        Some("default"),
        "no serviceAccountName"
    );
    assert_eq!(spec.locality, None, "the node's locality is unknown");
    assert!(
        translate::pod(&pod(running, true), none).is_none(),
        "terminating"
    );
    assert!(
        translate::pod(&pod(json!({"phase": "Pending"}), false), none).is_none(),
        "no IP yet"
    );
    let done = json!({"phase": "Failed", "podIP": "10.0.0.7"});
    assert!(
        translate::pod(&pod(done, false), none).is_none(),
        "finished"
    );
}

#[test]
fn a_service_becomes_the_loaders_service_entry() {
    let svc: Service = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "db", "namespace": "shop"},
        "spec": {"ports": [{"port": 5432, "name": "tcp-postgres", "targetPort": 5432}],
                 "selector": {"app": "db"}}}))
    .unwrap();
    let r = translate::service(&svc).resource.unwrap();
    assert_eq!(r.api_version, "v1");
    let Spec::ServiceEntry(se) = &r.spec else {
        panic!("{r:?}")
    };
    assert_eq!(se.hosts, ["db.shop.svc.cluster.local"]);
    assert_eq!(
        se.ports[0].protocol.as_deref(),
        Some("TCP"),
        "from the name's prefix"
    );
    assert_eq!(se.workload_selector.as_ref().unwrap().labels["app"], "db");
    let headless: Service = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "ext", "namespace": "shop"}, "spec": {"ports": [{"port": 80}]}}))
    .unwrap();
    let r = translate::service(&headless).resource.unwrap();
    let Spec::ServiceEntry(se) = &r.spec else {
        panic!("{r:?}")
    };
    assert!(se.workload_selector.is_none(), "no selector, no workloads");
}

#[test]
fn a_nodes_locality_is_region_zone_subzone_as_far_as_labelled() {
    let node = |labels: serde_json::Value| -> Node {
        serde_json::from_value(json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "n", "labels": labels}}))
        .unwrap()
    };
    let r = "topology.kubernetes.io/region";
    let z = "topology.kubernetes.io/zone";
    let s = "topology.istio.io/subzone";
    assert_eq!(translate::locality(&node(json!({}))), None);
    assert_eq!(
        translate::locality(&node(json!({r: "eu"}))).as_deref(),
        Some("eu")
    );
    let full = node(json!({r: "eu", z: "eu-1", s: "rack7"}));
    assert_eq!(translate::locality(&full).as_deref(), Some("eu/eu-1/rack7"));
    let gap = node(json!({r: "eu", s: "rack7"}));
    assert_eq!(
        translate::locality(&gap).as_deref(),
        Some("eu"),
        "no zone: no subzone"
    );
}
