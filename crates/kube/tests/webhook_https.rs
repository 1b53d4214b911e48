//! The injection webhook over real HTTPS: served with a certificate from the mesh CA,
//! called by curl (trusting only the mesh root, the webhook's caBundle) with a real
//! AdmissionReview v1 as the API server sends it; the JSONPatch it answers, applied to
//! the pod, gives the pod `weft inject` makes.

use base64::Engine;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use weft_kube::inject::InjectOptions;
use weft_kube::webhook::{self, WebhookService};

/// A temporary folder removed on drop.
struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir(tag: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!("weft-webhook-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

struct Webhook {
    port: u16,
    root: PathBuf,
    task: tokio::task::JoinHandle<()>,
}
impl Drop for Webhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start(dir: &Path, svc: &WebhookService) -> Webhook {
    let ca = weft_identity::Ca::load_or_create(&dir.join("ca"), "cluster.local").unwrap();
    let root = dir.join("root.pem");
    std::fs::write(&root, ca.root_pem()).unwrap();
    let tls = webhook::tls_config(&ca, &svc.dns_names()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let labels: webhook::NamespaceLabels = Arc::new(|ns: &str| {
        (ns == "shop").then(|| BTreeMap::from([("istio-injection".into(), "enabled".into())]))
    });
    let task = tokio::spawn(webhook::serve(
        listener,
        tls,
        labels,
        InjectOptions::default(),
    ));
    Webhook { port, root, task }
}

/// POSTs `review` with curl to the webhook by its Service name, trusting only the mesh root.
async fn call(hook: &Webhook, svc: &WebhookService, review: &Value) -> Value {
    call_path(hook, svc, review, "/inject").await
}

async fn call_path(hook: &Webhook, svc: &WebhookService, review: &Value, path: &str) -> Value {
    let host = format!("{}.{}.svc", svc.name, svc.namespace);
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--fail", "--cacert"])
        .arg(&hook.root)
        .arg("--resolve")
        .arg(format!("{host}:{}:127.0.0.1", hook.port))
        .args([
            "-H",
            "content-type: application/json",
            "--data-binary",
            "@-",
        ])
        .arg(format!("https://{host}:{}{path}", hook.port))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut child = out;
    use tokio::io::AsyncWriteExt;
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(review.to_string().as_bytes())
        .await
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success(), "curl failed: {out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn review() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/admission/review.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[tokio::test]
async fn webhook_over_https_patch_gives_the_pod_weft_inject_makes() {
    let dir = temp_dir("inject");
    let svc = WebhookService {
        name: "weft-control".into(),
        namespace: "istio-system".into(),
        port: 443,
    };
    let hook = start(&dir.0, &svc).await;
    let request = review();
    let answer = call(&hook, &svc, &request).await;
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(answer["kind"], "AdmissionReview");
    let response = &answer["response"];
    assert_eq!(response["uid"], request["request"]["uid"]);
    assert_eq!(response["allowed"], true);
    assert_eq!(response["patchType"], "JSONPatch");
    let patch = base64::engine::general_purpose::STANDARD
        .decode(response["patch"].as_str().unwrap())
        .unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&patch).unwrap();
    let mut pod = request["request"]["object"].clone();
    json_patch::patch(&mut pod, &patch).unwrap();

    // The same pod through `weft inject` (manual injection, as YAML).
    let yaml = weft_kube::manual::to_yaml(&request["request"]["object"]).unwrap();
    let (text, _) = weft_kube::manual::inject_yaml(&yaml, &InjectOptions::default()).unwrap();
    let by_weft_inject: Value = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(pod, by_weft_inject);
    assert_eq!(pod["spec"]["initContainers"][1]["restartPolicy"], "Always");

    // A namespace the watch has not seen yet: the API server's selector chose to call
    // the webhook, so the pod is injected (it does not say no).
    let mut fresh = request.clone();
    fresh["request"]["namespace"] = json!("just-created");
    let answer = call(&hook, &svc, &fresh).await;
    assert_eq!(answer["response"]["patchType"], "JSONPatch", "{answer}");

    // A pod that says no is allowed unchanged.
    let mut no = request.clone();
    no["request"]["object"]["metadata"]["labels"]["sidecar.istio.io/inject"] = json!("false");
    let answer = call(&hook, &svc, &no).await;
    assert_eq!(answer["response"]["allowed"], true);
    assert!(answer["response"].get("patch").is_none(), "{answer}");
}

#[test]
fn webhook_configuration_is_a_typed_mutating_webhook_configuration() {
    use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
    let svc = WebhookService {
        name: "weft-control".into(),
        namespace: "istio-system".into(),
        port: 443,
    };
    let cfg = webhook::webhook_configuration(&webhook::ca_bundle("ROOT"), &svc);
    let typed: MutatingWebhookConfiguration = serde_json::from_value(cfg).unwrap();
    let hooks = typed.webhooks.unwrap();
    assert_eq!(hooks.len(), 2);
    let client = &hooks[0].client_config;
    assert_eq!(client.ca_bundle.as_ref().unwrap().0, b"ROOT");
    let service = client.service.as_ref().unwrap();
    assert_eq!(service.path.as_deref(), Some("/inject"));
}

const BAD_VS: &str = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bad, namespace: shop}
spec:
  hosts: [ratings]
  http:
  - timeout: 2 seconds
    route: [{destination: {host: ratings}}]
"#;

#[tokio::test]
async fn validating_webhook_over_https_denies_an_invalid_virtual_service_with_weft_analyze_message()
{
    let findings = weft_analyze::findings_for(&weft_api::load_str(BAD_VS, "bad.yaml"));
    let error = findings
        .iter()
        .find(|f| f.severity == weft_analyze::Severity::Error)
        .expect("weft analyze rejects the file");
    let dir = temp_dir("validate");
    let svc = WebhookService {
        name: "weft-control".into(),
        namespace: "istio-system".into(),
        port: 443,
    };
    let hook = start(&dir.0, &svc).await;
    let review = |obj: Value| {
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": "5f5f0df2-8fbd-11e8-bc74-36e6bb280816",
            "kind": {"group": "networking.istio.io", "version": "v1", "kind": "VirtualService"},
            "resource": {"group": "networking.istio.io", "version": "v1", "resource": "virtualservices"},
            "namespace": "shop", "name": "bad", "operation": "CREATE",
            "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters", "system:authenticated"]},
            "object": obj, "oldObject": null, "dryRun": false}})
    };
    let bad: Value = serde_saphyr::from_str(BAD_VS).unwrap();
    let answer = call_path(&hook, &svc, &review(bad.clone()), "/validate").await;
    let response = &answer["response"];
    assert_eq!(response["allowed"], false, "{answer}");
    let message = response["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("VirtualService/shop/bad: spec.http[0].timeout: ")
            && message.contains(&error.message),
        "{message} / {}",
        error.message
    );
    let mut good = bad;
    good["spec"]["http"][0]["timeout"] = json!("2s");
    let answer = call_path(&hook, &svc, &review(good), "/validate").await;
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
}
