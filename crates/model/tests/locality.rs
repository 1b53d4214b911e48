//! Locality failover, on Istio's locality-failover task: helloworld in four localities, a
//! DestinationRule with `localityLbSetting.failover` region1 → region2 and outlier
//! detection, and a client in region1/zone1 — the endpoints get istiod's priorities
//! (same zone, same region, the failover region, the rest); without outlier detection,
//! or with `enabled: false`, there are none.

use weft_model::{compile, not_enforced, LiveProxy, ProxyRef, Registry, Role};

const TASK: &str = r#"
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: sleep, namespace: sample}
spec: {address: 127.0.0.1, labels: {app: sleep}, serviceAccount: sleep, locality: region1/zone1/subzone1}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: helloworld, namespace: sample}
spec:
  hosts: [helloworld.sample.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{number: 5000, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: helloworld}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: helloworld, namespace: sample}
spec:
  host: helloworld.sample.svc.cluster.local
  trafficPolicy:
    connectionPool: {http: {maxRequestsPerConnection: 1}}
    loadBalancer:
      simple: ROUND_ROBIN
      localityLbSetting:
        enabled: true
        failover:
        - {from: region1, to: region2}
    outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 1m}
"#;

fn workloads() -> String {
    [
        ("helloworld-r1z1", "region1/zone1/subzone1"),
        ("helloworld-r1z2", "region1/zone2/subzone1"),
        ("helloworld-r2z3", "region2/zone3/subzone1"),
        ("helloworld-r3z4", "region3/zone4/subzone1"),
    ]
    .iter()
    .map(|(name, locality)| {
        format!(
            "---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {{name: {name}, namespace: sample}}\nspec: {{address: 127.0.0.1, labels: {{app: helloworld}}, serviceAccount: helloworld, locality: {locality}}}\n"
        )
    })
    .collect()
}

/// The helloworld endpoints' (workload, priority), as the sleep sidecar gets them.
fn priorities(yaml: &str) -> Vec<(String, u32)> {
    let loaded = weft_api::load_str(&format!("{yaml}{}", workloads()), "locality.yaml");
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let names = [
        "sleep",
        "helloworld-r1z1",
        "helloworld-r1z2",
        "helloworld-r2z3",
        "helloworld-r3z4",
    ];
    let live: Vec<LiveProxy> = names
        .iter()
        .enumerate()
        .map(|(i, w)| LiveProxy {
            workload: w.to_string(),
            namespace: "sample".into(),
            inbound_addr: format!("127.0.0.1:{}", 3000 + i),
            listeners: Default::default(),
        })
        .collect();
    let reg = Registry::build(&loaded.resources, &live);
    let proxy = ProxyRef {
        role: Role::Sidecar,
        workload: "sleep".into(),
        namespace: "sample".into(),
    };
    let cfg = compile(&loaded.resources, &reg, "cluster.local", &proxy).unwrap();
    let mut out: Vec<(String, u32)> = cfg.clusters
        ["outbound|5000||helloworld.sample.svc.cluster.local"]
        .endpoints
        .iter()
        .map(|e| (e.workload.clone(), e.priority))
        .collect();
    out.sort();
    out
}

fn pairs(p: &[(&str, u32)]) -> Vec<(String, u32)> {
    p.iter().map(|(w, n)| (w.to_string(), *n)).collect()
}

#[test]
fn the_task_gets_istios_priorities() {
    assert_eq!(
        priorities(TASK),
        pairs(&[
            ("helloworld-r1z1", 0),
            ("helloworld-r1z2", 1),
            ("helloworld-r2z3", 2),
            ("helloworld-r3z4", 3),
        ]),
        "same zone, same region, the failover region, the rest (compacted)"
    );
    let loaded = weft_api::load_str(&format!("{TASK}{}", workloads()), "locality.yaml");
    assert!(
        !not_enforced(&loaded.resources)
            .iter()
            .any(|n| n.what.contains("localityLbSetting")),
        "{:#?}",
        not_enforced(&loaded.resources)
    );
}

#[test]
fn without_outlier_detection_or_enabled_false_nothing_is_prioritized() {
    let no_outlier = TASK.replace(
        "    outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 1m}\n",
        "",
    );
    assert!(priorities(&no_outlier).iter().all(|(_, p)| *p == 0));
    let loaded = weft_api::load_str(&format!("{no_outlier}{}", workloads()), "locality.yaml");
    assert!(
        not_enforced(&loaded.resources)
            .iter()
            .any(|n| n.what.contains("failover without outlierDetection")),
        "said, since nothing fails over"
    );
    let disabled = TASK.replace("enabled: true", "enabled: false");
    assert!(priorities(&disabled).iter().all(|(_, p)| *p == 0));
    // Without a failover entry the other regions are one level.
    let no_failover = TASK.replace(
        "        failover:\n        - {from: region1, to: region2}\n",
        "",
    );
    assert_eq!(
        priorities(&no_failover),
        pairs(&[
            ("helloworld-r1z1", 0),
            ("helloworld-r1z2", 1),
            ("helloworld-r2z3", 2),
            ("helloworld-r3z4", 2),
        ])
    );
}
