//! Benchmark: generates a mesh of N resources (default 10,000: per service a ServiceEntry,
//! two WorkloadEntries, a DestinationRule with two subsets and a VirtualService with
//! matches and weights, over 20 namespaces), then times load, validation and analysis.
//!
//! `cargo run --release -p weft-analyze --example bench_analyze [-- RESOURCES]`

use std::fmt::Write as _;
use std::time::Instant;

fn service(out: &mut String, i: usize) {
    let ns = format!("ns{}", i % 20);
    let name = format!("svc{i}");
    let _ = write!(
        out,
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: {ns}}}
spec:
  hosts: [{name}.{ns}.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 8080, name: http, protocol: HTTP}}]
  workloadSelector: {{labels: {{app: {name}}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {name}-v1, namespace: {ns}}}
spec: {{address: 127.0.0.1, labels: {{app: {name}, version: v1}}, serviceAccount: {name}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {name}-v2, namespace: {ns}}}
spec: {{address: 127.0.0.1, labels: {{app: {name}, version: v2}}, serviceAccount: {name}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {name}, namespace: {ns}}}
spec:
  host: {name}
  trafficPolicy: {{loadBalancer: {{simple: LEAST_CONN}}}}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: {ns}}}
spec:
  hosts: [{name}]
  http:
  - name: canary
    match:
    - headers: {{x-canary: {{exact: 'yes'}}}}
      uri: {{prefix: /api/v2}}
    route:
    - destination: {{host: {name}, subset: v2}}
  - name: api
    match:
    - uri: {{prefix: /api}}
    route:
    - destination: {{host: {name}, subset: v1}}
      weight: 90
    - destination: {{host: {name}, subset: v2}}
      weight: 10
    timeout: 5s
  - route:
    - destination: {{host: {name}, subset: v1}}
---
"
    );
}

fn main() {
    let wanted: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let services = wanted.div_ceil(5);
    let mut yaml = String::new();
    for i in 0..services {
        service(&mut yaml, i);
    }

    let t0 = Instant::now();
    let loaded = weft_api::load_str(&yaml, "bench.yaml");
    let t_load = t0.elapsed();
    assert!(loaded.errors.is_empty(), "{:?}", &loaded.errors[..1]);

    let t1 = Instant::now();
    let invalid = weft_api::validate_all(&loaded.resources);
    let t_validate = t1.elapsed();

    let t2 = Instant::now();
    let findings = weft_analyze::analyze(&loaded.resources);
    let t_analyze = t2.elapsed();

    let t3 = Instant::now();
    let all = weft_analyze::findings_for(&loaded);
    let t_total_findings = t3.elapsed();

    let n = loaded.resources.len();
    let total = t_load + t_validate + t_analyze;
    let per_sec = |d: std::time::Duration| n as f64 / d.as_secs_f64();
    println!(
        "resources:           {n} ({} KiB of YAML)",
        yaml.len() / 1024
    );
    println!(
        "load:                {:>8.1} ms",
        t_load.as_secs_f64() * 1e3
    );
    println!(
        "validate:            {:>8.1} ms",
        t_validate.as_secs_f64() * 1e3
    );
    println!(
        "analyze:             {:>8.1} ms  ({:.0} resources/s)",
        t_analyze.as_secs_f64() * 1e3,
        per_sec(t_analyze)
    );
    println!(
        "load+validate+analyze {:>7.1} ms  ({:.0} resources/s)",
        total.as_secs_f64() * 1e3,
        per_sec(total)
    );
    println!(
        "findings_for (validate+analyze): {:.1} ms",
        t_total_findings.as_secs_f64() * 1e3
    );
    println!(
        "findings: {} analysis, {} validation, {} total",
        findings.len(),
        invalid.len(),
        all.len()
    );
    assert!(
        all.is_empty(),
        "the generated mesh should be clean: {:#?}",
        &all[..all.len().min(3)]
    );
}
