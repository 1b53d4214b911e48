//! The control plane fetches RequestAuthentication JWKS (a `jwksUri`, or OpenID discovery
//! from the issuer) and pushes them inline: fetched before the first push, refreshed, kept
//! when the server goes down, retried when it was never reached. The JWKS server is a
//! tiny HTTP server in the test on 127.0.0.1:0.

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use weft_control::jwks::Jwks;
use weft_control::state::State;
use weft_protocol::delta::Desired;
use weft_protocol::pb;

/// What the test server answers: the JWKS (`None`: 503, "down") and the requests it saw.
#[derive(Default)]
struct Served {
    jwks: Option<String>,
    paths: Vec<String>,
}

struct JwksServer {
    addr: std::net::SocketAddr,
    served: Arc<Mutex<Served>>,
    changed: watch::Receiver<usize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl JwksServer {
    async fn start(jwks: Option<&str>) -> JwksServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let served = Arc::new(Mutex::new(Served {
            jwks: jwks.map(str::to_string),
            paths: vec![],
        }));
        let (tx, changed) = watch::channel(0);
        let tx = Arc::new(tx);
        let s = served.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (s, tx) = (s.clone(), tx.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let (s, tx) = (s.clone(), tx.clone());
                        async move {
                            let path = req.uri().path().to_string();
                            let mut st = s.lock().unwrap();
                            st.paths.push(path.clone());
                            tx.send_modify(|n| *n += 1);
                            let (code, body) = match (&st.jwks, path.as_str()) {
                                (None, _) => (503, "down".to_string()),
                                (Some(_), "/.well-known/openid-configuration") => {
                                    (200, format!(r#"{{"jwks_uri": "http://{addr}/keys"}}"#))
                                }
                                (Some(j), _) => (200, j.clone()),
                            };
                            Ok::<_, Infallible>(
                                http::Response::builder()
                                    .status(code)
                                    .body(Full::new(Bytes::from(body)))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        JwksServer {
            addr,
            served,
            changed,
            task,
        }
    }

    fn set(&self, jwks: Option<&str>) {
        self.served.lock().unwrap().jwks = jwks.map(str::to_string);
    }

    fn requests(&self) -> usize {
        self.served.lock().unwrap().paths.len()
    }

    /// Waits until the server has answered more than `n` requests.
    async fn wait_past(&mut self, n: usize) {
        let wait = self.changed.wait_for(|seen| *seen > n);
        tokio::time::timeout(Duration::from_secs(20), wait)
            .await
            .expect("the control plane fetches again")
            .unwrap();
    }
}

const DOC_A: &str = r#"{"keys":[{"kty":"oct","kid":"a","k":"c2VjcmV0"}]}"#;
const DOC_B: &str = r#"{"keys":[{"kty":"oct","kid":"b","k":"c2VjcmV0"}]}"#;

fn mesh(jwt_rule: &str) -> Vec<weft_api::Resource> {
    let yaml = format!(
        r#"
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: gw, namespace: istio-system}}
spec: {{address: 127.0.0.1, labels: {{istio: ingressgateway}}}}
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt, namespace: istio-system}}
spec:
  jwtRules: [{jwt_rule}]
"#
    );
    let loaded = weft_api::load_str(&yaml, "mesh.yaml");
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    loaded.resources
}

type Rx = watch::Receiver<Option<std::sync::Arc<Desired>>>;

async fn gateway(state: &State) -> Rx {
    let (tx, rx) = watch::channel(None);
    state
        .connect(
            pb::Node {
                id: "gateway~gw.istio-system".into(),
                role: "gateway".into(),
                workload: "gw".into(),
                namespace: "istio-system".into(),
                ..Default::default()
            },
            tx,
        )
        .expect("the only gateway connects");
    state.flush().await;
    rx
}

/// The JWKS of the first rule in the newest push.
fn pushed_jwks(rx: &mut Rx) -> Option<String> {
    let push = rx.borrow_and_update().clone().expect("a push");
    let cfg = push.config().unwrap();
    cfg.authn.rules[0].jwks.clone()
}

/// Waits for a push whose JWKS is `want`.
async fn push_with(rx: &mut Rx, want: Option<&str>) {
    let wait = async {
        loop {
            if pushed_jwks(rx).as_deref() == want {
                return;
            }
            rx.changed().await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(20), wait)
        .await
        .unwrap_or_else(|_| panic!("no push with JWKS {want:?}"));
}

#[tokio::test]
async fn fetched_before_the_first_push_refreshed_and_kept_when_the_server_is_down() {
    let mut server = JwksServer::start(Some(DOC_A)).await;
    let resources = mesh(&format!(
        r#"{{issuer: "https://example.com", jwksUri: "http://{}/jwks.json"}}"#,
        server.addr
    ));
    let jwks = Jwks::new(Duration::from_millis(200));
    let fetched = jwks.prefetch(&resources).await;
    assert_eq!(fetched.len(), 1);
    let state = State::new(resources, "cluster.local", weft_protocol::MAX_PUSH_BYTES);
    state.set_jwks(fetched);
    let mut rx = gateway(&state).await;
    assert_eq!(
        pushed_jwks(&mut rx).as_deref(),
        Some(DOC_A),
        "the first push carries the keys"
    );
    let refresher = tokio::spawn(jwks.clone().run(state.clone()));

    // Rotated keys reach the proxy at the next refresh.
    server.set(Some(DOC_B));
    push_with(&mut rx, Some(DOC_B)).await;

    // Down: fetches fail, the last good keys stay.
    server.set(None);
    let seen = server.requests();
    server.wait_past(seen + 1).await;
    assert_eq!(
        jwks.fetched().values().next().map(String::as_str),
        Some(DOC_B)
    );
    assert_eq!(pushed_jwks(&mut rx).as_deref(), Some(DOC_B));
    refresher.abort();
}

#[tokio::test]
async fn a_server_never_reached_is_retried_and_discovery_finds_the_keys() {
    let server = JwksServer::start(None).await;
    // No jwks, no jwksUri: the issuer's discovery document names the JWKS.
    let resources = mesh(&format!(r#"{{issuer: "http://{}"}}"#, server.addr));
    let jwks = Jwks::new(Duration::from_millis(200));
    let fetched = jwks.prefetch(&resources).await;
    assert!(fetched.is_empty(), "down at start: nothing fetched");
    let state = State::new(resources, "cluster.local", weft_protocol::MAX_PUSH_BYTES);
    state.set_jwks(fetched);
    let mut rx = gateway(&state).await;
    assert_eq!(
        pushed_jwks(&mut rx),
        None,
        "pushed without keys: its tokens fail"
    );
    let refresher = tokio::spawn(jwks.clone().run(state.clone()));
    server.set(Some(DOC_A));
    push_with(&mut rx, Some(DOC_A)).await;
    let paths = server.served.lock().unwrap().paths.clone();
    assert!(
        paths.contains(&"/.well-known/openid-configuration".to_string())
            && paths.contains(&"/keys".to_string()),
        "{paths:?}"
    );
    refresher.abort();
}

#[tokio::test]
async fn a_document_that_is_not_a_jwks_is_refused() {
    let server = JwksServer::start(Some(r#"{"not": "keys"}"#)).await;
    let key = weft_model::JwksKey {
        issuer: "i".into(),
        uri: Some(format!("http://{}/jwks.json", server.addr)),
    };
    let err = weft_control::jwks::fetch(&key, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(err.contains("not a JWKS document"), "{err}");
    server.set(None);
    let err = weft_control::jwks::fetch(&key, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(err.contains("status 503"), "{err}");
}
