//! Loaded resources serialize back to (a normalized form of) their source documents.

use std::path::PathBuf;

use serde_json::Value;
use weft_api::{load_str, to_yaml_like_json, to_yaml_string};

fn valid_files() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/istio-corpus/valid");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("Istio corpus missing at {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// Drops nulls and empty lists/objects under object keys, turns numbers into f64,
/// and removes `status`, so that omitted and empty values compare equal.
fn normalize(v: &Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::Number(n) => Some(Value::from(n.as_f64().expect("finite number"))),
        Value::Array(items) => Some(Value::Array(
            items
                .iter()
                .map(|i| normalize(i).unwrap_or(Value::Object(Default::default())))
                .collect(),
        )),
        Value::Object(map) => {
            // go-yaml reads `[2001:db8::]` as a string; YAML 1.2 as `{"2001:db8:": null}`.
            if map.len() == 1 {
                if let Some((k, Value::Null)) = map.iter().next() {
                    return Some(Value::String(format!("{k}:")));
                }
            }
            let out: serde_json::Map<String, Value> = map
                .iter()
                .filter(|(k, _)| k.as_str() != "status")
                .filter_map(|(k, v)| {
                    let v = normalize(v)?;
                    let empty = matches!(&v, Value::Array(a) if a.is_empty())
                        || matches!(&v, Value::Object(o) if o.is_empty());
                    (!empty || is_meaningful_empty(k)).then(|| (k.clone(), v))
                })
                .collect();
            Some(Value::Object(out))
        }
        other => Some(other.clone()),
    }
}

/// Keys whose empty object value carries meaning and is kept by the typed model.
fn is_meaningful_empty(key: &str) -> bool {
    matches!(key, "outboundTrafficPolicy" | "mtls" | "spec")
}

#[test]
fn corpus_resources_serialize_back_to_their_documents() {
    let mut checked = 0;
    for file in valid_files() {
        let text = std::fs::read_to_string(&file).expect("readable");
        let mut result = load_str(&text, &file.display().to_string());
        assert!(result.errors.is_empty(), "{:?}", result.errors);
        // Kubernetes Services are read as registry entries, not Istio documents.
        result.resources.retain(|r| r.api_version != "v1");
        let docs: Vec<Value> = serde_saphyr::from_multiple(&text).expect("parses as YAML");
        let docs: Vec<&Value> = docs
            .iter()
            .filter(|d| {
                d.get("apiVersion")
                    .and_then(Value::as_str)
                    .is_some_and(|a| a.contains("istio.io"))
            })
            .collect();
        assert_eq!(docs.len(), result.resources.len(), "{}", file.display());
        for (doc, res) in docs.iter().zip(&result.resources) {
            let original = normalize(doc);
            let serialized = normalize(&to_yaml_like_json(res));
            assert_eq!(
                serialized,
                original,
                "{}: {} does not serialize back to its document",
                res.source,
                res.key()
            );
            // YAML round trip: serialize, reload, compare the typed values.
            let yaml = to_yaml_string(res).expect("serializes");
            let again = load_str(&yaml, "roundtrip.yaml");
            assert!(
                again.errors.is_empty(),
                "{}: {:?}\n{yaml}",
                res.source,
                again.errors
            );
            assert_eq!(again.resources.len(), 1);
            assert_eq!(again.resources[0].spec, res.spec, "{}", res.source);
            assert_eq!(again.resources[0].metadata, res.metadata, "{}", res.source);
            checked += 1;
        }
    }
    println!("round-tripped {checked} resources");
    assert!(checked >= 188);
}
