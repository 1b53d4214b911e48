//! Sidecar injection (Istio's `pkg/kube/inject` role), one function for `weft inject` and
//! the admission webhook: whether a pod is injected (Istio's rules: the namespace label
//! `istio-injection`, the pod's `sidecar.istio.io/inject` label, then annotation), and
//! what is added — the capture init container (`weft iptables`, Istio's `istio-init`,
//! with the `traffic.sidecar.istio.io/*` exclusions) and weft's proxy as a native sidecar
//! (an init container with `restartPolicy: Always`: it starts before the app and stops
//! after it), ready on 15021, its identity the pod's service account.

use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// What the injected containers run and where they find the control plane.
#[derive(Debug, Clone)]
pub struct InjectOptions {
    /// weft's container image.
    pub image: String,
    /// The control plane's gRPC address, as seen from pods.
    pub control: String,
}

impl Default for InjectOptions {
    fn default() -> Self {
        InjectOptions {
            image: "ghcr.io/weft-mesh/weft:latest".into(),
            control: "weft-control.istio-system.svc:15012".into(),
        }
    }
}

/// The proxy's fixed ports, as Istio's: outbound capture, inbound capture, health.
pub const OUTBOUND_PORT: u16 = 15001;
pub const INBOUND_PORT: u16 = 15006;
pub const HEALTH_PORT: u16 = 15021;
/// The proxy's UID: its own traffic is not captured.
pub const PROXY_UID: i64 = 1337;
/// Namespaces Istio never injects into.
const IGNORED_NAMESPACES: [&str; 3] = ["kube-system", "kube-public", "istio-system"];
/// The annotation an injected pod carries (also how a second injection is refused).
pub const STATUS_ANNOTATION: &str = "sidecar.istio.io/status";

/// Annotations weft reads; any other `sidecar.istio.io/*`, `traffic.sidecar.istio.io/*`
/// or `proxy.istio.io/*` annotation is reported as not applied.
const APPLIED: [&str; 13] = [
    "sidecar.istio.io/inject",
    "sidecar.istio.io/status",
    "sidecar.istio.io/proxyImage",
    "sidecar.istio.io/proxyCPU",
    "sidecar.istio.io/proxyMemory",
    "sidecar.istio.io/proxyCPULimit",
    "sidecar.istio.io/proxyMemoryLimit",
    "sidecar.istio.io/interceptionMode",
    "traffic.sidecar.istio.io/includeOutboundIPRanges",
    "traffic.sidecar.istio.io/excludeOutboundIPRanges",
    "traffic.sidecar.istio.io/includeInboundPorts",
    "traffic.sidecar.istio.io/excludeInboundPorts",
    "traffic.sidecar.istio.io/excludeOutboundPorts",
];

fn truthy(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "y" | "yes" | "on" | "enabled" => Some(true),
        "false" | "n" | "no" | "off" | "disabled" => Some(false),
        _ => None,
    }
}

fn strings(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a pod (its `metadata` and `spec`) in `namespace` is injected, with the reason.
/// `namespace_labels` is `None` when unknown (`weft inject`, as `istioctl kube-inject`,
/// and the webhook for a namespace its watch has not seen yet): inject unless the pod
/// says no.
pub fn decide(
    pod_meta: &Value,
    pod_spec: &Value,
    namespace: &str,
    namespace_labels: Option<&BTreeMap<String, String>>,
) -> (bool, String) {
    let labels = strings(&pod_meta["labels"]);
    let annotations = strings(&pod_meta["annotations"]);
    if pod_spec["hostNetwork"].as_bool() == Some(true) {
        return (false, "the pod uses the host network".into());
    }
    if annotations.contains_key(STATUS_ANNOTATION) {
        return (false, "the pod is already injected".into());
    }
    if IGNORED_NAMESPACES.contains(&namespace) {
        return (false, format!("namespace {namespace} is never injected"));
    }
    let ns_label = namespace_labels.and_then(|l| l.get("istio-injection"));
    if ns_label.map(String::as_str) == Some("disabled") {
        return (false, "the namespace has istio-injection=disabled".into());
    }
    const KEY: &str = "sidecar.istio.io/inject";
    if let Some(v) = labels.get(KEY).and_then(|v| truthy(v)) {
        return (v, format!("the pod label {KEY}={v}"));
    }
    if let Some(v) = annotations.get(KEY).and_then(|v| truthy(v)) {
        return (v, format!("the pod annotation {KEY}={v}"));
    }
    match (namespace_labels, ns_label.map(String::as_str)) {
        (_, Some("enabled")) => (true, "the namespace has istio-injection=enabled".into()),
        (None, _) => (
            true,
            "the namespace's labels are not known (manual injection): injected unless the pod says no"
                .into(),
        ),
        (Some(_), _) => (
            false,
            "neither the namespace nor the pod asks for it".into(),
        ),
    }
}

/// An injected pod template, and what was noticed on the way.
pub struct Injected {
    pub injected: bool,
    pub reason: String,
    /// Annotations that apply to Istio's injector but not (yet) to weft's, by name.
    pub warnings: Vec<String>,
}

/// Injects into a pod template (`{metadata, spec}`, a Pod or a workload's
/// `spec.template`) in place, when [`decide`] says so.
pub fn inject_template(
    template: &mut Value,
    namespace: &str,
    namespace_labels: Option<&BTreeMap<String, String>>,
    opts: &InjectOptions,
) -> Injected {
    let (injected, reason) = decide(
        &template["metadata"],
        &template["spec"],
        namespace,
        namespace_labels,
    );
    let annotations = strings(&template["metadata"]["annotations"]);
    let warnings = annotations
        .keys()
        .filter(|k| {
            let ours = k.starts_with("sidecar.istio.io/")
                || k.starts_with("traffic.sidecar.istio.io/")
                || k.starts_with("proxy.istio.io/");
            ours && !APPLIED.contains(&k.as_str())
        })
        .map(|k| format!("annotation {k} is not applied by weft's injector yet"))
        .collect();
    if injected {
        add_sidecar(template, &annotations, opts);
    }
    Injected {
        injected,
        reason,
        warnings,
    }
}

fn annotation<'a>(a: &'a BTreeMap<String, String>, key: &str, default: &'a str) -> &'a str {
    a.get(key).map(String::as_str).unwrap_or(default)
}

/// The capture step's arguments (istio-iptables' flags), from the pod's annotations.
fn capture_args(a: &BTreeMap<String, String>) -> Vec<String> {
    let mut exclude_inbound = format!("15090,{HEALTH_PORT},15020");
    if let Some(extra) = a.get("traffic.sidecar.istio.io/excludeInboundPorts") {
        exclude_inbound = format!("{exclude_inbound},{extra}");
    }
    let t = "traffic.sidecar.istio.io/";
    let mut args: Vec<String> = vec![
        "iptables".into(),
        "-p".into(),
        OUTBOUND_PORT.to_string(),
        "-z".into(),
        INBOUND_PORT.to_string(),
        "-u".into(),
        PROXY_UID.to_string(),
        "-m".into(),
        annotation(a, "sidecar.istio.io/interceptionMode", "REDIRECT").into(),
        "-i".into(),
        annotation(a, &format!("{t}includeOutboundIPRanges"), "*").into(),
        "-x".into(),
        annotation(a, &format!("{t}excludeOutboundIPRanges"), "").into(),
        "-b".into(),
        annotation(a, &format!("{t}includeInboundPorts"), "*").into(),
        "-d".into(),
        exclude_inbound,
    ];
    if let Some(ports) = a.get(&format!("{t}excludeOutboundPorts")) {
        args.extend(["-o".into(), ports.clone()]);
    }
    args
}

/// The first port the app's containers declare: where the sidecar forwards inbound.
fn app_port(spec: &Value) -> Option<i64> {
    spec["containers"]
        .as_array()?
        .iter()
        .flat_map(|c| c["ports"].as_array().into_iter().flatten())
        .find_map(|p| p["containerPort"].as_i64())
}

fn field_env(name: &str, path: &str) -> Value {
    json!({"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}})
}

fn add_sidecar(template: &mut Value, a: &BTreeMap<String, String>, opts: &InjectOptions) {
    let image = annotation(a, "sidecar.istio.io/proxyImage", &opts.image).to_string();
    let mut proxy_args: Vec<String> = [
        "proxy",
        "--role",
        "sidecar",
        "--workload",
        "$(POD_NAME)",
        "--namespace",
        "$(POD_NAMESPACE)",
        "--control",
        &opts.control,
        "--bind-ip",
        "0.0.0.0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    proxy_args.extend([
        "--inbound-listen".into(),
        format!("0.0.0.0:{INBOUND_PORT}"),
        "--outbound-listen".into(),
        format!("127.0.0.1:{OUTBOUND_PORT}"),
        "--admin-listen".into(),
        format!("0.0.0.0:{HEALTH_PORT}"),
    ]);
    if let Some(port) = app_port(&template["spec"]) {
        proxy_args.extend(["--app".into(), format!("127.0.0.1:{port}")]);
    }
    // Istio's defaults, unless the pod's annotations say otherwise.
    let p = "sidecar.istio.io/proxy";
    let requests = json!({
        "cpu": annotation(a, &format!("{p}CPU"), "100m"),
        "memory": annotation(a, &format!("{p}Memory"), "128Mi"),
    });
    let limits = json!({
        "cpu": annotation(a, &format!("{p}CPULimit"), "2000m"),
        "memory": annotation(a, &format!("{p}MemoryLimit"), "1024Mi"),
    });
    let init = json!({
        "name": "istio-init",
        "image": image,
        "args": capture_args(a),
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]},
            "privileged": false,
            "readOnlyRootFilesystem": false,
            "runAsGroup": 0,
            "runAsNonRoot": false,
            "runAsUser": 0,
        },
    });
    let proxy = json!({
        "name": "istio-proxy",
        "image": image,
        "args": proxy_args,
        // A native sidecar: started before the app's containers, stopped after them.
        "restartPolicy": "Always",
        "env": [
            field_env("POD_NAME", "metadata.name"),
            field_env("POD_NAMESPACE", "metadata.namespace"),
            field_env("INSTANCE_IP", "status.podIP"),
            field_env("SERVICE_ACCOUNT", "spec.serviceAccountName"),
        ],
        "ports": [{"containerPort": HEALTH_PORT, "name": "health", "protocol": "TCP"}],
        "readinessProbe": {
            "httpGet": {"path": "/healthz/ready", "port": HEALTH_PORT},
            "initialDelaySeconds": 0, "periodSeconds": 15, "timeoutSeconds": 3,
            "failureThreshold": 4,
        },
        "startupProbe": {
            "httpGet": {"path": "/healthz/ready", "port": HEALTH_PORT},
            "initialDelaySeconds": 0, "periodSeconds": 1, "timeoutSeconds": 3,
            "failureThreshold": 600,
        },
        "resources": {"requests": requests, "limits": limits},
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]},
            "privileged": false,
            "readOnlyRootFilesystem": true,
            "runAsGroup": PROXY_UID,
            "runAsNonRoot": true,
            "runAsUser": PROXY_UID,
        },
    });
    let spec = template["spec"]
        .as_object_mut()
        .expect("a pod template has a spec");
    let inits = spec
        .entry("initContainers")
        .or_insert_with(|| json!([]))
        .as_array_mut()
        .expect("initContainers is a list");
    // Capture first, then the proxy, then the pod's own init containers (they start
    // with the proxy running, as with Istio's native sidecars).
    inits.splice(0..0, [init, proxy]);
    let meta = template["metadata"]
        .as_object_mut()
        .expect("a pod template has metadata");
    let labels = strings(meta.get("labels").unwrap_or(&Value::Null));
    let canonical = labels
        .get("service.istio.io/canonical-name")
        .or_else(|| labels.get("app.kubernetes.io/name"))
        .or_else(|| labels.get("app"))
        .cloned();
    let revision = labels
        .get("service.istio.io/canonical-revision")
        .or_else(|| labels.get("app.kubernetes.io/version"))
        .or_else(|| labels.get("version"))
        .cloned()
        .unwrap_or_else(|| "latest".into());
    let labels = object(meta, "labels");
    labels.insert("security.istio.io/tlsMode".into(), json!("istio"));
    if let Some(name) = canonical {
        labels.insert("service.istio.io/canonical-name".into(), json!(name));
    }
    labels.insert(
        "service.istio.io/canonical-revision".into(),
        json!(revision),
    );
    let status = json!({"initContainers": ["istio-init", "istio-proxy"], "containers": [],
                        "volumes": [], "imagePullSecrets": null, "revision": "default"});
    object(meta, "annotations").insert(STATUS_ANNOTATION.into(), json!(status.to_string()));
}

fn object<'a>(m: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let v = m.entry(key).or_insert_with(|| json!({}));
    if !v.is_object() {
        *v = json!({});
    }
    v.as_object_mut().expect("just made an object")
}

/// The pod template inside a document: a Pod itself, `spec.template` of Deployments,
/// StatefulSets, DaemonSets, ReplicaSets and Jobs, `spec.jobTemplate.spec.template` of
/// CronJobs; `None` for other kinds.
pub fn template_of(doc: &mut Value) -> Option<&mut Value> {
    match doc["kind"].as_str()? {
        "Pod" => Some(doc),
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "Job"
        | "ReplicationController" => Some(&mut doc["spec"]["template"]),
        "CronJob" => Some(&mut doc["spec"]["jobTemplate"]["spec"]["template"]),
        _ => None,
    }
}

/// Injects into one document (`weft inject`): its namespace is its own, else `default`.
pub fn inject_document(doc: &mut Value, opts: &InjectOptions) -> Option<Injected> {
    let namespace = doc["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default")
        .to_string();
    let template = template_of(doc)?;
    if !template["spec"].is_object() {
        return None;
    }
    if !template["metadata"].is_object() {
        template["metadata"] = json!({});
    }
    Some(inject_template(template, &namespace, None, opts))
}
