//! Kubernetes objects to weft's resources, through the same loader and validation as a
//! config folder: an object is serialized and loaded as a document whose "file" is
//! `Kind/ns/name`, so an invalid Istio object is rejected with the message `weft analyze`
//! gives for the same YAML, located at the object instead of file:line.

use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::api::DynamicObject;
use kube::discovery::ApiResource;
use kube::ResourceExt;
use serde_json::{json, Value};
use weft_api::Resource;

/// A loaded and validated object, or why it was rejected (`Kind/ns/name: path: message`).
pub struct Translated {
    pub resource: Result<Resource, Vec<String>>,
    /// What Istio accepts but warns about, `Kind/ns/name: path: message`.
    pub warnings: Vec<String>,
}

/// `Kind/ns/name`: where an object's problems are reported.
pub fn location(kind: &str, namespace: Option<&str>, name: &str) -> String {
    format!("{kind}/{}/{name}", namespace.unwrap_or("default"))
}

/// Loads one document (`value`, as JSON text, which is YAML) located at `at`, and
/// validates it the way a folder is validated.
pub fn load(value: &Value, at: &str) -> Translated {
    let text = serde_json::to_string_pretty(value).expect("JSON values serialize");
    let loaded = weft_api::load_str(&text, at);
    if !loaded.errors.is_empty() {
        let errors = loaded
            .errors
            .iter()
            .map(|e| format!("{at}: {}", e.message))
            .collect();
        return rejected(errors);
    }
    let Some(resource) = loaded.resources.into_iter().next() else {
        return rejected(vec![format!("{at}: not a kind weft reads")]);
    };
    let (errors, warnings) = weft_api::validate_all_with_warnings(std::slice::from_ref(&resource));
    let line = |e: &weft_api::ValidationError| format!("{}: {}: {}", e.resource, e.path, e.message);
    let warnings = warnings
        .iter()
        .map(|w| format!("{}: {}", w.kind.as_str(), line(&w.at)))
        .collect();
    if !errors.is_empty() {
        return Translated {
            resource: Err(errors.iter().map(line).collect()),
            warnings,
        };
    }
    Translated {
        resource: Ok(resource),
        warnings,
    }
}

fn rejected(errors: Vec<String>) -> Translated {
    Translated {
        resource: Err(errors),
        warnings: Vec::new(),
    }
}

/// An Istio object watched at `ar`'s apiVersion. Server-side bookkeeping (managedFields)
/// is dropped; everything the user wrote is checked as in a file.
pub fn istio(ar: &ApiResource, obj: &DynamicObject) -> Translated {
    let mut value = serde_json::to_value(obj).expect("objects serialize");
    value["apiVersion"] = json!(ar.api_version);
    value["kind"] = json!(ar.kind);
    if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    let at = location(&ar.kind, obj.metadata.namespace.as_deref(), &obj.name_any());
    load(&value, &at)
}

/// A Service, read as the loader reads one from a file (a MESH_INTERNAL ServiceEntry
/// with its selector, host `name.ns.svc.cluster.local`).
pub fn service(svc: &Service) -> Translated {
    let mut value = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": svc.name_any(),
            "namespace": svc.namespace().unwrap_or_else(|| "default".into()),
            "labels": svc.labels(),
        },
        "spec": {},
    });
    if let Some(spec) = &svc.spec {
        let ports: Vec<Value> = spec
            .ports
            .iter()
            .flatten()
            .map(|p| {
                let mut port = json!({"port": p.port});
                if let Some(name) = &p.name {
                    port["name"] = json!(name);
                }
                if let Some(proto) = &p.app_protocol {
                    port["appProtocol"] = json!(proto);
                }
                port
            })
            .collect();
        value["spec"] =
            json!({"ports": ports, "selector": spec.selector.clone().unwrap_or_default()});
    }
    load(
        &value,
        &location("Service", svc.namespace().as_deref(), &svc.name_any()),
    )
}

/// Istio's locality of a node: `region/zone/subzone` from its topology labels.
pub fn locality(node: &Node) -> Option<String> {
    let labels = node.labels();
    let region = labels.get("topology.kubernetes.io/region")?;
    let mut locality = region.clone();
    for key in ["topology.kubernetes.io/zone", "topology.istio.io/subzone"] {
        match labels.get(key) {
            Some(v) => locality = format!("{locality}/{v}"),
            None => break,
        }
    }
    Some(locality)
}

/// A Pod that has an IP and is not finished or terminating, as the WorkloadEntry Istio's
/// registry makes of it: its labels, its service account (its identity), its IP, and the
/// locality of its node (from `node_locality`, when known).
pub fn pod(pod: &Pod, node_locality: impl Fn(&str) -> Option<String>) -> Option<Translated> {
    let status = pod.status.as_ref()?;
    let ip = status.pod_ip.as_ref().filter(|ip| !ip.is_empty())?;
    let finished = matches!(status.phase.as_deref(), Some("Succeeded" | "Failed"));
    if finished || pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let spec = pod.spec.as_ref()?;
    let namespace = pod.namespace().unwrap_or_else(|| "default".into());
    let mut we = json!({
        "address": ip,
        "labels": pod.labels(),
        "serviceAccount": spec.service_account_name.as_deref().unwrap_or("default"),
    });
    if let Some(l) = spec.node_name.as_deref().and_then(node_locality) {
        we["locality"] = json!(l);
    }
    let value = json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "WorkloadEntry",
        "metadata": {"name": pod.name_any(), "namespace": namespace},
        "spec": we,
    });
    Some(load(
        &value,
        &location("Pod", Some(&namespace), &pod.name_any()),
    ))
}
