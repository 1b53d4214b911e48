//! The generated mesh: N services as Istio YAML, in namespaces `ns-0…` of ten services
//! each. Per service a ServiceEntry and one WorkloadEntry; every tenth service (the first
//! of each namespace) also a VirtualService (weighted subsets, retries, a timeout) and a
//! DestinationRule (subsets, connection pool, outlier detection); per namespace a Sidecar
//! that scopes its proxies to their own namespace and an AuthorizationPolicy that allows
//! that namespace's principals.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

/// Services per namespace.
pub const PER_NAMESPACE: usize = 10;

/// The VirtualService's weights as generated, and after the benchmark's change.
pub const WEIGHTS: (u32, u32) = (90, 10);
pub const CHANGED_WEIGHTS: (u32, u32) = (75, 25);

/// A generated mesh on disk.
#[derive(Debug)]
pub struct Mesh {
    pub services: usize,
    /// The folder `weft control --config` serves.
    pub config: PathBuf,
    /// Where a rewritten file is written before it is renamed into `config` (same file
    /// system, outside the watched folder), so the control plane never reads half a file.
    stage: PathBuf,
}

/// Name of service `i`.
pub fn service(i: usize) -> String {
    format!("svc-{i}")
}

/// Namespace of service `i`.
pub fn namespace(i: usize) -> String {
    format!("ns-{}", i / PER_NAMESPACE)
}

/// Name of service `i`'s WorkloadEntry.
pub fn workload(i: usize) -> String {
    format!("svc-{i}-0")
}

/// Fully qualified host of service `i`.
pub fn host(i: usize) -> String {
    format!("{}.{}.svc.cluster.local", service(i), namespace(i))
}

/// Service `i` has a VirtualService and a DestinationRule.
pub fn has_routing(i: usize) -> bool {
    i.is_multiple_of(PER_NAMESPACE)
}

/// Number of resources `generate` writes for `services` services.
pub fn resource_count(services: usize) -> usize {
    let namespaces = services.div_ceil(PER_NAMESPACE);
    let routed = (0..services).filter(|i| has_routing(*i)).count();
    2 * services + 2 * routed + 2 * namespaces
}

/// Writes the mesh under `root` (`root/config`, `root/stage`).
pub fn generate(root: &Path, services: usize) -> io::Result<Mesh> {
    let mesh = Mesh {
        services,
        config: root.join("config"),
        stage: root.join("stage"),
    };
    std::fs::create_dir_all(&mesh.stage)?;
    for first in (0..services).step_by(PER_NAMESPACE) {
        let last = (first + PER_NAMESPACE).min(services);
        let dir = mesh.config.join(namespace(first));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("services.yaml"), services_yaml(first..last))?;
        std::fs::write(dir.join("namespace.yaml"), namespace_yaml(first..last))?;
        for i in (first..last).filter(|i| has_routing(*i)) {
            std::fs::write(mesh.vs_path(i), virtual_service(i, WEIGHTS))?;
        }
    }
    Ok(mesh)
}

impl Mesh {
    fn vs_path(&self, i: usize) -> PathBuf {
        self.config
            .join(namespace(i))
            .join(format!("vs-{}.yaml", service(i)))
    }

    /// Rewrites service `i`'s VirtualService with other weights, atomically (write
    /// beside, then rename over the watched file).
    pub fn rewrite_virtual_service(&self, i: usize, weights: (u32, u32)) -> io::Result<()> {
        if !has_routing(i) || i >= self.services {
            return Err(io::Error::other(format!(
                "{} has no VirtualService",
                service(i)
            )));
        }
        let staged = self.stage.join(format!("vs-{}.yaml", service(i)));
        std::fs::write(&staged, virtual_service(i, weights))?;
        std::fs::rename(&staged, self.vs_path(i))
    }
}

/// ServiceEntry and WorkloadEntry of each service, and the DestinationRule of the routed
/// ones.
fn services_yaml(range: std::ops::Range<usize>) -> String {
    let mut out = String::new();
    for i in range {
        out.push_str(&service_entry(i));
        out.push_str(&workload_entry(i));
        if has_routing(i) {
            out.push_str(&destination_rule(i));
        }
    }
    out
}

fn service_entry(i: usize) -> String {
    let (name, ns, host) = (service(i), namespace(i), host(i));
    format!(
        "---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: {ns}}}
spec:
  hosts: [{host}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {{number: 8080, name: http, protocol: HTTP}}
  workloadSelector:
    labels: {{app: {name}}}
"
    )
}

fn workload_entry(i: usize) -> String {
    let (name, ns, we) = (service(i), namespace(i), workload(i));
    format!(
        "---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {we}, namespace: {ns}}}
spec:
  address: 127.0.0.1
  labels: {{app: {name}, version: v1}}
  serviceAccount: {name}
"
    )
}

fn destination_rule(i: usize) -> String {
    let (name, ns, host) = (service(i), namespace(i), host(i));
    format!(
        "---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {name}, namespace: {ns}}}
spec:
  host: {host}
  trafficPolicy:
    connectionPool:
      tcp: {{maxConnections: 100}}
      http: {{http2MaxRequests: 1000, maxRequestsPerConnection: 100}}
    outlierDetection:
      consecutive5xxErrors: 5
      interval: 10s
      baseEjectionTime: 30s
      maxEjectionPercent: 50
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
"
    )
}

/// Service `i`'s VirtualService: two weighted subsets, retries and a timeout.
pub fn virtual_service(i: usize, (v1, v2): (u32, u32)) -> String {
    let (name, ns, host) = (service(i), namespace(i), host(i));
    format!(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: {ns}}}
spec:
  hosts: [{host}]
  http:
  - route:
    - destination: {{host: {host}, subset: v1}}
      weight: {v1}
    - destination: {{host: {host}, subset: v2}}
      weight: {v2}
    timeout: 5s
    retries: {{attempts: 3, perTryTimeout: 2s, retryOn: \"5xx,connect-failure\"}}
"
    )
}

/// The namespace's Sidecar (its proxies see their own namespace and istio-system) and
/// AuthorizationPolicy (ALLOW from the namespace's service accounts).
fn namespace_yaml(range: std::ops::Range<usize>) -> String {
    let ns = namespace(range.start);
    let mut principals = String::new();
    for i in range {
        let sep = if principals.is_empty() { "" } else { ", " };
        let _ = write!(principals, "{sep}cluster.local/ns/{ns}/sa/{}", service(i));
    }
    format!(
        "apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: default, namespace: {ns}}}
spec:
  egress:
  - hosts: [\"./*\", \"istio-system/*\"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: allow-namespace, namespace: {ns}}}
spec:
  action: ALLOW
  rules:
  - from:
    - source:
        principals: [{principals}]
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(dir: &Path) -> Vec<weft_api::Resource> {
        match weft_api::load_valid_report(dir) {
            Ok(valid) => {
                assert!(valid.unsupported.is_empty(), "{:?}", valid.unsupported);
                assert!(valid.warnings.is_empty(), "{:?}", valid.warnings);
                valid.resources
            }
            Err(errors) => panic!("the generated mesh does not load:\n{}", errors.join("\n")),
        }
    }

    #[test]
    fn every_generated_file_loads_and_validates() {
        let root = tempfile::tempdir().unwrap();
        let mesh = generate(root.path(), 25).unwrap();
        let resources = load(&mesh.config);
        assert_eq!(resources.len(), resource_count(25));
        let kinds = |kind: &str| resources.iter().filter(|r| r.kind.as_str() == kind).count();
        assert_eq!(kinds("ServiceEntry"), 25);
        assert_eq!(kinds("WorkloadEntry"), 25);
        assert_eq!(kinds("VirtualService"), 3);
        assert_eq!(kinds("DestinationRule"), 3);
        assert_eq!(kinds("Sidecar"), 3);
        assert_eq!(kinds("AuthorizationPolicy"), 3);
    }

    #[test]
    fn a_rewritten_virtual_service_still_loads_with_the_new_weights() {
        let root = tempfile::tempdir().unwrap();
        let mesh = generate(root.path(), 10).unwrap();
        mesh.rewrite_virtual_service(0, CHANGED_WEIGHTS).unwrap();
        assert_eq!(load(&mesh.config).len(), resource_count(10));
        let text = std::fs::read_to_string(mesh.vs_path(0)).unwrap();
        assert!(
            text.contains("weight: 75") && text.contains("weight: 25"),
            "{text}"
        );
        assert!(mesh.rewrite_virtual_service(1, CHANGED_WEIGHTS).is_err());
        assert_eq!(std::fs::read_dir(&mesh.stage).unwrap().count(), 0);
    }
}
