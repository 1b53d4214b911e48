//! `weft inject` (istioctl kube-inject's role): injects into every Pod and workload of a
//! YAML stream and prints the stream back; other documents pass through unchanged.

use crate::inject::{inject_document, InjectOptions};
use serde_json::Value;

/// The injected stream, and one note per document (injected or why not, warnings).
pub fn inject_yaml(text: &str, opts: &InjectOptions) -> Result<(String, Vec<String>), String> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text)
        .map_err(|e| format!("the input is not a YAML stream of Kubernetes objects: {e}"))?;
    let mut out = Vec::new();
    let mut notes = Vec::new();
    for mut doc in docs.into_iter().filter(|d| !d.is_null()) {
        let what = format!(
            "{} {}",
            doc["kind"].as_str().unwrap_or("document"),
            doc["metadata"]["name"].as_str().unwrap_or("(unnamed)")
        );
        if let Some(result) = inject_document(&mut doc, opts) {
            let verb = if result.injected {
                "injected"
            } else {
                "not injected"
            };
            notes.push(format!("{what}: {verb} ({})", result.reason));
            notes.extend(result.warnings.iter().map(|w| format!("{what}: {w}")));
        }
        let yaml = serde_saphyr::to_string(&doc)
            .map_err(|e| format!("cannot write {what} back as YAML: {e}"))?;
        out.push(yaml);
    }
    Ok((out.join("---\n"), notes))
}

/// One object as YAML.
pub fn to_yaml(value: &Value) -> Result<String, String> {
    serde_saphyr::to_string(value).map_err(|e| format!("cannot write YAML: {e}"))
}
