//! `weft install`'s manifests: every object is a valid typed Kubernetes object (it
//! deserializes into its k8s-openapi struct and serializes back to the same JSON, so no
//! field is misspelled or misplaced), and the CRDs serve every Istio file of the corpus
//! (`../shared/istio-corpus/valid/`) at its apiVersion and accept it by their schema.

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;
use std::path::Path;
use weft_kube::install::{manifests, InstallOptions};

fn options(profile: &str) -> InstallOptions {
    InstallOptions {
        profile: profile.into(),
        namespace: "istio-system".into(),
        image: "ghcr.io/weft-mesh/weft:latest".into(),
        ca_cert_pem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(),
        ca_key_pem: "-----BEGIN PRIVATE KEY-----\nMIGH\n-----END PRIVATE KEY-----\n".into(),
    }
}

/// `value` with nulls and empty objects/lists left out (serializers differ on those).
fn normalized(value: &Value) -> Value {
    match value {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), normalized(v)))
                .filter(|(_, v)| !v.is_null())
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(normalized).collect()),
        v => v.clone(),
    }
}

fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(obj: &Value) {
    let typed: T = serde_json::from_value(obj.clone())
        .unwrap_or_else(|e| panic!("{} does not deserialize: {e}", obj["kind"]));
    let back = serde_json::to_value(&typed).unwrap();
    assert_eq!(
        normalized(&back),
        normalized(obj),
        "{} changed in a round trip",
        obj["kind"]
    );
}

#[test]
fn every_manifest_is_its_typed_kubernetes_object() {
    for profile in ["default", "minimal"] {
        let objs = manifests(&options(profile));
        for obj in &objs {
            match obj["kind"].as_str().unwrap() {
                "CustomResourceDefinition" => round_trip::<CustomResourceDefinition>(obj),
                "Namespace" => round_trip::<Namespace>(obj),
                "ServiceAccount" => round_trip::<ServiceAccount>(obj),
                "ClusterRole" => round_trip::<ClusterRole>(obj),
                "ClusterRoleBinding" => round_trip::<ClusterRoleBinding>(obj),
                "Secret" => round_trip::<Secret>(obj),
                "Deployment" => round_trip::<Deployment>(obj),
                "Service" => round_trip::<Service>(obj),
                "PodDisruptionBudget" => round_trip::<PodDisruptionBudget>(obj),
                "MutatingWebhookConfiguration" => round_trip::<MutatingWebhookConfiguration>(obj),
                "ValidatingWebhookConfiguration" => {
                    round_trip::<ValidatingWebhookConfiguration>(obj)
                }
                other => panic!("no typed check for {other}"),
            }
        }
        let gateways = objs
            .iter()
            .filter(|o| {
                o["metadata"]["name"] == "istio-ingressgateway" && o["kind"] == "Deployment"
            })
            .count();
        assert_eq!(gateways, usize::from(profile == "default"), "{profile}");
    }
}

/// The checks of a structural openAPIV3Schema this installer writes: `type`, nested
/// `properties`, and `x-kubernetes-preserve-unknown-fields`.
fn accepts(schema: &Value, value: &Value, path: &str) -> Result<(), String> {
    let ty = schema["type"].as_str().unwrap_or("");
    let ok = match ty {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        _ => true,
    };
    if !ok {
        return Err(format!("{path}: expected {ty}, found {value}"));
    }
    if let (Some(props), Some(obj)) = (schema["properties"].as_object(), value.as_object()) {
        let open = schema["x-kubernetes-preserve-unknown-fields"] == true;
        for (k, v) in obj {
            match props.get(k) {
                Some(s) => accepts(s, v, &format!("{path}.{k}"))?,
                None if open => {}
                // The API server prunes unknown fields; the top-level ones are kept.
                None if path.is_empty()
                    && ["apiVersion", "kind", "metadata"].contains(&k.as_str()) => {}
                None => return Err(format!("{path}.{k}: not in the schema (pruned)")),
            }
        }
    }
    Ok(())
}

#[test]
fn the_crds_serve_and_accept_every_valid_corpus_file() {
    let crds: Vec<Value> = manifests(&options("minimal"))
        .into_iter()
        .filter(|o| o["kind"] == "CustomResourceDefinition")
        .collect();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/istio-corpus/valid");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
        for doc in docs.iter().filter(|d| !d.is_null()) {
            let api_version = doc["apiVersion"].as_str().unwrap_or("");
            let Some((group, version)) = api_version.rsplit_once('/') else {
                continue;
            };
            if !weft_api::ISTIO_GROUPS.contains(&group) {
                continue;
            }
            let kind = doc["kind"].as_str().unwrap();
            let crd = crds
                .iter()
                .find(|c| c["spec"]["group"] == group && c["spec"]["names"]["kind"] == kind)
                .unwrap_or_else(|| panic!("{}: no CRD for {kind} in {group}", path.display()));
            let served = crd["spec"]["versions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["name"] == version && v["served"] == true)
                .unwrap_or_else(|| panic!("{}: {kind} is not served at {version}", path.display()));
            let schema = &served["schema"]["openAPIV3Schema"];
            accepts(schema, doc, "").unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            checked += 1;
        }
    }
    assert!(checked >= 100, "only {checked} Istio documents checked");
}
