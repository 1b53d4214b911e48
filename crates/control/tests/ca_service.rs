//! The CA service: identities come from the registry, never from the CSR.

use std::sync::Arc;
use std::time::Duration;
use weft_control::server::MeshService;
use weft_control::state::State;
use weft_identity::{Ca, SpiffeId, WorkloadKey};
use weft_protocol::{pb, Mesh};

const MESH: &str = r#"
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: inv-v1, namespace: game}
spec: {address: 127.0.0.1, labels: {app: inventory}, serviceAccount: inventory}
"#;

fn service(dir: &std::path::Path) -> MeshService {
    let loaded = weft_api::load_str(MESH, "mesh.yaml");
    MeshService {
        state: State::new(
            loaded.resources,
            "cluster.local",
            weft_protocol::MAX_PUSH_BYTES,
        ),
        ca: Arc::new(weft_control::ca_source::CaSource::fixed(
            Ca::load_or_create(dir, "cluster.local").unwrap(),
        )),
        cert_ttl: Duration::from_secs(3600),
    }
}

fn request(workload: &str, asked: &SpiffeId) -> tonic::Request<pb::CertificateRequest> {
    let key = WorkloadKey::generate();
    tonic::Request::new(pb::CertificateRequest {
        node: Some(pb::Node {
            workload: workload.into(),
            namespace: "game".into(),
            ..Default::default()
        }),
        csr_pem: key.csr_pem(asked).unwrap(),
    })
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("weft-ca-service-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[tokio::test]
async fn identity_comes_from_the_workload_entry_not_the_csr() {
    let dir = temp_dir("issue");
    let svc = service(&dir);
    let asked = SpiffeId::new("cluster.local", "kube-system", "admin").unwrap();
    let resp = svc
        .create_certificate(request("inv-v1", &asked))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        resp.spiffe_id,
        "spiffe://cluster.local/ns/game/sa/inventory"
    );
    assert!(resp.cert_chain_pem.contains("BEGIN CERTIFICATE"));
    assert_eq!(
        resp.root_pem,
        std::fs::read_to_string(dir.join("root-cert.pem")).unwrap()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn unregistered_workload_is_refused_with_what_to_do() {
    let dir = temp_dir("refuse");
    let svc = service(&dir);
    let asked = SpiffeId::new("cluster.local", "game", "ghost").unwrap();
    let err = svc
        .create_certificate(request("ghost", &asked))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    assert!(
        err.message().contains("no WorkloadEntry game/ghost"),
        "{}",
        err.message()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
