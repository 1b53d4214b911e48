//! The admission webhooks the Kubernetes API server calls over HTTPS with an
//! `AdmissionReview` v1: sidecar injection (istiod's `/inject`: the answer allows the pod
//! and, when [`crate::inject`] injects it, carries the change as a base64 JSONPatch, RFC
//! 6902) and validation (`/validate`: an invalid Istio object is denied with `weft
//! analyze`'s messages, before it is stored). Its serving certificate comes from the mesh CA, so the
//! MutatingWebhookConfiguration's `caBundle` is the mesh root ([`ca_bundle`]).

use crate::inject::{inject_template, InjectOptions};
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use tracing::{info, warn};

/// The namespace labels the webhook knows (`None`: unknown namespace).
pub type NamespaceLabels = Arc<dyn Fn(&str) -> Option<BTreeMap<String, String>> + Send + Sync>;

/// Answers one AdmissionReview v1 request. A request that is not a Pod, or a pod that
/// is not injected, is allowed unchanged.
pub fn review(request: &Value, labels: &NamespaceLabels, opts: &InjectOptions) -> Value {
    let req = &request["request"];
    let mut response = json!({"uid": req["uid"], "allowed": true});
    let is_pod = req["kind"]["kind"] == "Pod" && req["operation"] == "CREATE";
    if is_pod {
        let namespace = req["namespace"]
            .as_str()
            .or(req["object"]["metadata"]["namespace"].as_str())
            .unwrap_or("default")
            .to_string();
        let original = req["object"].clone();
        let mut pod = original.clone();
        if !pod["metadata"].is_object() {
            pod["metadata"] = json!({});
        }
        // A namespace the watch has not seen yet (just created): the API server's
        // namespaceSelector already chose to call us, so the pod decides, as in Istio.
        let known = labels(&namespace);
        let result = inject_template(&mut pod, &namespace, known.as_ref(), opts);
        let name = original["metadata"]["name"]
            .as_str()
            .or(original["metadata"]["generateName"].as_str())
            .unwrap_or("");
        info!(namespace = %namespace, pod = %name, injected = result.injected, reason = %result.reason, "admission review");
        if result.injected {
            let patch = json_patch::diff(&original, &pod);
            let patch = serde_json::to_vec(&patch).expect("patches serialize");
            response["patchType"] = json!("JSONPatch");
            response["patch"] = json!(base64::engine::general_purpose::STANDARD.encode(patch));
        }
        if !result.warnings.is_empty() {
            response["warnings"] = json!(result.warnings);
        }
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})
}

/// Answers one AdmissionReview v1 for an Istio object (istiod's `/validate`): denied,
/// with `weft analyze`'s messages, when it does not load or validate; allowed otherwise
/// (deletes, and kinds weft does not read, are allowed).
pub fn validate(request: &Value) -> Value {
    let req = &request["request"];
    let mut response = json!({"uid": req["uid"], "allowed": true});
    let kind = req["kind"]["kind"].as_str().unwrap_or("");
    let checked = matches!(req["operation"].as_str(), Some("CREATE" | "UPDATE"))
        && weft_api::Kind::from_name(kind).is_some();
    if checked {
        let obj = &req["object"];
        let at = crate::translate::location(
            kind,
            req["namespace"]
                .as_str()
                .or(obj["metadata"]["namespace"].as_str()),
            obj["metadata"]["name"].as_str().unwrap_or(""),
        );
        let t = crate::translate::load(obj, &at);
        if let Err(errors) = t.resource {
            info!(object = %at, errors = errors.len(), "admission denied: invalid");
            response["allowed"] = json!(false);
            response["status"] = json!({"status": "Failure", "reason": "Invalid", "code": 422,
                "message": format!("configuration is invalid: {}", errors.join("; "))});
        }
        if !t.warnings.is_empty() {
            response["warnings"] = json!(t.warnings);
        }
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})
}

/// The `caBundle` of the MutatingWebhookConfiguration: the mesh root, base64.
pub fn ca_bundle(root_pem: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(root_pem)
}

/// The TLS config the webhook serves with: a certificate for `dns_names` from `ca`.
pub fn tls_config(
    ca: &weft_identity::Ca,
    dns_names: &[String],
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let ttl = std::time::Duration::from_secs(365 * 24 * 3600);
    let (chain, key) = ca
        .issue_server_cert(dns_names, ttl)
        .map_err(|e| anyhow::anyhow!("issuing the webhook's certificate: {e}"))?;
    let certs = CertificateDer::pem_slice_iter(chain.as_bytes()).collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(Arc::new(config))
}

/// The largest AdmissionReview read (the API server's own request limit is 3 MiB).
const MAX_BODY: usize = 4 << 20;

/// Serves `POST /inject` over TLS on `listener` until the task is dropped.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    labels: NamespaceLabels,
    opts: InjectOptions,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let opts = Arc::new(opts);
    loop {
        let Ok((tcp, peer)) = listener.accept().await else {
            return;
        };
        let (acceptor, labels, opts) = (acceptor.clone(), labels.clone(), opts.clone());
        tokio::spawn(async move {
            let stream = match acceptor.accept(tcp).await {
                Ok(s) => s,
                Err(e) => return warn!(%peer, error = %e, "webhook TLS handshake failed"),
            };
            let svc = hyper::service::service_fn(move |req| {
                let (labels, opts) = (labels.clone(), opts.clone());
                async move { Ok::<_, std::convert::Infallible>(handle(req, &labels, &opts).await) }
            });
            let _ =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
        });
    }
}

async fn handle(
    req: hyper::Request<hyper::body::Incoming>,
    labels: &NamespaceLabels,
    opts: &InjectOptions,
) -> hyper::Response<Full<Bytes>> {
    let reply = |code: u16, body: String| {
        hyper::Response::builder()
            .status(code)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("a valid response")
    };
    let path = req.uri().path().to_string();
    if req.method() != hyper::Method::POST || !["/inject", "/validate"].contains(&path.as_str()) {
        return reply(
            404,
            r#"{"error":"the webhook serves POST /inject and /validate"}"#.into(),
        );
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return reply(
                400,
                json!({"error": format!("reading the request: {e}")}).to_string(),
            )
        }
    };
    match serde_json::from_slice::<Value>(&body) {
        Ok(r) if r["request"].is_object() && path == "/validate" => {
            reply(200, validate(&r).to_string())
        }
        Ok(r) if r["request"].is_object() => reply(200, review(&r, labels, opts).to_string()),
        _ => reply(
            400,
            json!({"error": "the body is not an AdmissionReview v1 with a request"}).to_string(),
        ),
    }
}

/// The ValidatingWebhookConfiguration (Istio's `istio-validator`): every create and
/// update of an Istio object goes through `/validate`.
pub fn validating_configuration(ca_bundle: &str, svc: &WebhookService) -> Value {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "weft-validator", "labels": {"app": "weft-control"}},
        "webhooks": [{
            "name": "validation.istio.io",
            "clientConfig": {
                "service": {"name": svc.name, "namespace": svc.namespace, "path": "/validate",
                            "port": svc.port},
                "caBundle": ca_bundle,
            },
            "rules": [{"operations": ["CREATE", "UPDATE"], "apiGroups": weft_api::ISTIO_GROUPS,
                       "apiVersions": ["*"], "resources": ["*"]}],
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "failurePolicy": "Fail",
        }],
    })
}

/// Where the API server reaches the webhook: the control plane's Service.
#[derive(Debug, Clone)]
pub struct WebhookService {
    pub name: String,
    pub namespace: String,
    pub port: u16,
}

impl WebhookService {
    /// The DNS names the serving certificate must carry.
    pub fn dns_names(&self) -> Vec<String> {
        let base = format!("{}.{}", self.name, self.namespace);
        vec![
            self.name.clone(),
            base.clone(),
            format!("{base}.svc"),
            format!("{base}.svc.cluster.local"),
        ]
    }
}

/// The MutatingWebhookConfiguration, as Istio's `istio-sidecar-injector`: one webhook for
/// namespaces labelled `istio-injection=enabled` (pods not labelled
/// `sidecar.istio.io/inject=false`), one for unlabelled namespaces' pods labelled
/// `sidecar.istio.io/inject=true`.
pub fn webhook_configuration(ca_bundle: &str, svc: &WebhookService) -> Value {
    let hook = |name: &str, namespace_selector: Value, object_selector: Value| {
        json!({
            "name": name,
            "clientConfig": {
                "service": {"name": svc.name, "namespace": svc.namespace, "path": "/inject",
                            "port": svc.port},
                "caBundle": ca_bundle,
            },
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                       "resources": ["pods"]}],
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "failurePolicy": "Fail",
            "reinvocationPolicy": "Never",
            "namespaceSelector": namespace_selector,
            "objectSelector": object_selector,
        })
    };
    let key = "sidecar.istio.io/inject";
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "weft-sidecar-injector", "labels": {"app": "sidecar-injector"}},
        "webhooks": [
            hook("namespace.sidecar-injector.istio.io",
                 json!({"matchExpressions": [{"key": "istio-injection", "operator": "In", "values": ["enabled"]}]}),
                 json!({"matchExpressions": [{"key": key, "operator": "NotIn", "values": ["false"]}]})),
            hook("object.sidecar-injector.istio.io",
                 json!({"matchExpressions": [{"key": "istio-injection", "operator": "DoesNotExist"},
                                             {"key": "istio.io/rev", "operator": "DoesNotExist"}]}),
                 json!({"matchExpressions": [{"key": key, "operator": "In", "values": ["true"]}]})),
        ],
    })
}
