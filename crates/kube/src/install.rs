//! `weft install`: the manifests for a cluster — Istio's CRDs under their real API groups
//! (so `kubectl apply` of Istio YAML works), the control plane (ServiceAccount, RBAC for
//! exactly what the config source watches, Deployment, Service, PodDisruptionBudget), its
//! CA as the `cacerts`-style Secret, the injection webhook configuration with that CA as
//! caBundle, and (profile `default`) the ingress gateway. The CRDs' schemas are
//! structural but open (`x-kubernetes-preserve-unknown-fields` under `spec`): the API
//! server stores what it is given, and weft's own validation decides what is served.

use crate::kinds::plural;
use crate::webhook::{ca_bundle, validating_configuration, webhook_configuration, WebhookService};
use base64::Engine;
use serde_json::{json, Value};
use weft_api::Kind;

/// What to install.
#[derive(Debug, Clone)]
pub struct InstallOptions {
    /// `default` (control plane + ingress gateway) or `minimal` (control plane only).
    pub profile: String,
    pub namespace: String,
    pub image: String,
    /// The mesh CA: its certificate and key (PEM), the root every proxy trusts.
    pub ca_cert_pem: String,
    pub ca_key_pem: String,
}

fn short_names(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::VirtualService => &["vs"],
        Kind::DestinationRule => &["dr"],
        Kind::Gateway => &["gw"],
        Kind::ServiceEntry => &["se"],
        Kind::WorkloadEntry => &["we"],
        Kind::WorkloadGroup => &["wg"],
        Kind::PeerAuthentication => &["pa"],
        Kind::RequestAuthentication => &["ra"],
        Kind::AuthorizationPolicy => &["ap"],
        _ => &[],
    }
}

/// The CRD of one Istio kind, serving every version Istio serves (storage: v1).
pub fn crd(kind: Kind) -> Value {
    let group = kind.group();
    let open = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
    let versions: Vec<Value> = kind
        .versions()
        .iter()
        .enumerate()
        .map(|(i, v)| {
            json!({
                "name": v, "served": true, "storage": i == 0,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": open, "status": open}}},
            })
        })
        .collect();
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{}.{group}", plural(kind)),
                     "labels": {"app": "weft", "chart": "istio"}},
        "spec": {
            "group": group,
            "names": {
                "kind": kind.as_str(), "listKind": format!("{}List", kind.as_str()),
                "plural": plural(kind), "singular": kind.as_str().to_ascii_lowercase(),
                "shortNames": short_names(kind),
                "categories": ["istio-io", group.replace('.', "-")],
            },
            "scope": "Namespaced",
            "versions": versions,
        },
    })
}

/// Every manifest, in apply order.
pub fn manifests(o: &InstallOptions) -> Vec<Value> {
    let ns = o.namespace.as_str();
    let mut out: Vec<Value> = Kind::ALL.iter().map(|k| crd(*k)).collect();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let app = json!({"app": "weft-control", "istio": "pilot"});
    let istio_groups: Vec<&str> = weft_api::ISTIO_GROUPS.to_vec();
    out.extend([
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": "weft-control", "namespace": ns}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "weft-control"},
        "rules": [
            {"apiGroups": istio_groups, "resources": ["*"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": [""], "resources": ["services", "pods", "nodes", "namespaces"],
             "verbs": ["get", "list", "watch"]},
        ]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": "weft-control"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                           "name": "weft-control"},
               "subjects": [{"kind": "ServiceAccount", "name": "weft-control", "namespace": ns}]}),
        json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
               "metadata": {"name": "cacerts", "namespace": ns},
               "data": {"ca-cert.pem": b64(&o.ca_cert_pem), "ca-key.pem": b64(&o.ca_key_pem),
                        "root-cert.pem": b64(&o.ca_cert_pem)}}),
        control_deployment(o, &app),
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "weft-control", "namespace": ns, "labels": app},
               "spec": {"selector": app, "ports": [
                   {"name": "grpc-xds", "port": 15012, "targetPort": 15012},
                   {"name": "https-webhook", "port": 443, "targetPort": 15017}]}}),
        json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
               "metadata": {"name": "weft-control", "namespace": ns},
               "spec": {"minAvailable": 1, "selector": {"matchLabels": app}}}),
    ]);
    let svc = WebhookService {
        name: "weft-control".into(),
        namespace: ns.into(),
        port: 443,
    };
    out.push(webhook_configuration(&ca_bundle(&o.ca_cert_pem), &svc));
    out.push(validating_configuration(&ca_bundle(&o.ca_cert_pem), &svc));
    if o.profile == "default" {
        out.extend(gateway(o));
    }
    out
}

fn control_deployment(o: &InstallOptions, app: &Value) -> Value {
    let ns = &o.namespace;
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "weft-control", "namespace": ns, "labels": app},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": app},
            "template": {
                "metadata": {"labels": app, "annotations": {"sidecar.istio.io/inject": "false"}},
                "spec": {
                    "serviceAccountName": "weft-control",
                    "containers": [{
                        "name": "discovery", "image": o.image,
                        "args": ["control", "--config-source", "kubernetes",
                                 "--listen", "0.0.0.0:15012", "--webhook-listen", "0.0.0.0:15017",
                                 "--webhook-namespace", ns, "--state-dir", "/var/lib/weft",
                                 "--ca-cert", "/etc/cacerts/ca-cert.pem",
                                 "--ca-key", "/etc/cacerts/ca-key.pem",
                                 "--control-address", format!("weft-control.{ns}.svc:15012"),
                                 "--image", o.image],
                        "ports": [{"containerPort": 15012, "name": "grpc-xds"},
                                  {"containerPort": 15017, "name": "https-webhook"}],
                        "volumeMounts": [{"name": "cacerts", "mountPath": "/etc/cacerts", "readOnly": true},
                                         {"name": "state", "mountPath": "/var/lib/weft"}],
                        "securityContext": {"runAsNonRoot": true, "runAsUser": 1337,
                                            "allowPrivilegeEscalation": false,
                                            "readOnlyRootFilesystem": true,
                                            "capabilities": {"drop": ["ALL"]}},
                    }],
                    "volumes": [{"name": "cacerts", "secret": {"secretName": "cacerts"}},
                                {"name": "state", "emptyDir": {}}],
                },
            },
        },
    })
}

fn gateway(o: &InstallOptions) -> Vec<Value> {
    let ns = &o.namespace;
    let app = json!({"app": "istio-ingressgateway", "istio": "ingressgateway"});
    vec![
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": "istio-ingressgateway", "namespace": ns}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "istio-ingressgateway", "namespace": ns, "labels": app},
        "spec": {"replicas": 1, "selector": {"matchLabels": app}, "template": {
            "metadata": {"labels": app, "annotations": {"sidecar.istio.io/inject": "false"}},
            "spec": {"serviceAccountName": "istio-ingressgateway", "containers": [{
                "name": "istio-proxy", "image": o.image,
                "args": ["proxy", "--role", "gateway", "--workload", "$(POD_NAME)",
                         "--namespace", "$(POD_NAMESPACE)",
                         "--control", format!("weft-control.{ns}.svc:15012"),
                         "--port", "80=0.0.0.0:8080", "--port", "443=0.0.0.0:8443",
                         "--admin-listen", "0.0.0.0:15021"],
                "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}],
                "ports": [{"containerPort": 8080, "name": "http2"},
                          {"containerPort": 8443, "name": "https"},
                          {"containerPort": 15021, "name": "status-port"}],
                "readinessProbe": {"httpGet": {"path": "/healthz/ready", "port": 15021},
                                   "periodSeconds": 2, "failureThreshold": 30},
            }]}}}}),
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "istio-ingressgateway", "namespace": ns, "labels": app},
               "spec": {"type": "LoadBalancer", "selector": app, "ports": [
                   {"name": "status-port", "port": 15021, "targetPort": 15021},
                   {"name": "http2", "port": 80, "targetPort": 8080},
                   {"name": "https", "port": 443, "targetPort": 8443}]}}),
    ]
}
