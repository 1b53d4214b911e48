//! Proxies that take their identity from an existing SPIFFE Workload API (a SPIRE agent's
//! socket, `--spiffe-socket`) instead of the control plane's CA: the agent's SVIDs (from a
//! CA the control plane knows nothing of) serve mTLS between two sidecars, and an SVID the
//! agent rotates reaches the proxy's credentials on the open stream. The stand-in agent is
//! weft's own Workload API server fed by a separate CA (the served API itself is tested
//! with independent clients in harness_workload_api.rs).

mod support;

use futures_util::StreamExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use support::*;
use tokio::sync::watch;
use weft_identity::{Ca, Identity, SpiffeId, WorkloadKey};
use weft_proxy::tls::{Credentials, TlsState};
use weft_proxy::workload_api::Endpoint;

/// A short private folder (socket paths must stay short), removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new() -> Dir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("spire-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A stand-in SPIRE agent: serves one SVID for `id` from `ca` on `socket` and rotates it
/// on demand. Dropping it stops the server.
struct Agent {
    ca: Arc<Ca>,
    id: SpiffeId,
    tls: Arc<TlsState>,
    _stop: watch::Sender<bool>,
}

fn svid(ca: &Ca, id: &SpiffeId) -> Credentials {
    let key = WorkloadKey::generate();
    let issued = ca
        .sign_csr(&key.csr_pem(id).unwrap(), id, Duration::from_secs(3600))
        .unwrap();
    Credentials::new(Identity::new(key, &issued.cert_chain_pem, &issued.root_pem).unwrap()).unwrap()
}

impl Agent {
    async fn start(ca: Arc<Ca>, id: &str, socket: &Path) -> Agent {
        let id: SpiffeId = id.parse().unwrap();
        let tls = TlsState::new(svid(&ca, &id));
        let (stop, stopped) = watch::channel(false);
        let endpoint = Endpoint::bind(socket).await.unwrap();
        tokio::spawn(endpoint.serve(tls.clone(), stopped));
        Agent {
            ca,
            id,
            tls,
            _stop: stop,
        }
    }

    /// Issues a new SVID (new key, new certificate) and returns its leaf.
    fn rotate(&self) -> Vec<u8> {
        let creds = svid(&self.ca, &self.id);
        let leaf = creds.identity.cert_chain()[0].to_vec();
        self.tls.rotate(creds);
        leaf
    }
}

#[tokio::test]
async fn sidecars_with_spire_svids_talk_mtls_and_follow_the_agents_rotations() {
    let dir = Dir::new();
    weft_identity::install_default_provider();
    // SPIRE's CA: the control plane's (FakeControl's own) is a different root.
    let spire = Arc::new(Ca::load_or_create(&dir.0.join("spire-ca"), "cluster.local").unwrap());
    let control = FakeControl::start().await;
    assert_ne!(spire.root_pem(), control.root_pem());
    let server_id = "spiffe://cluster.local/ns/test/sa/spire-server";
    let client_id = "spiffe://cluster.local/ns/test/sa/spire-client";
    let server_agent = Agent::start(spire.clone(), server_id, &dir.0.join("a.sock")).await;
    let _client_agent = Agent::start(spire.clone(), client_id, &dir.0.join("b.sock")).await;

    let app = App::echo("server-app").await;
    let own_api = dir.0.join("own.sock");
    let server = Proxy::sidecar("server")
        .app(app.addr)
        .spiffe_socket(&dir.0.join("a.sock"))
        .workload_api(&own_api)
        .start(&control)
        .await;
    let client = Proxy::sidecar("client")
        .spiffe_socket(&dir.0.join("b.sock"))
        .start(&control)
        .await;
    // The identities are SPIRE's, not what the control plane would have issued.
    assert_eq!(server.identity, server_id);
    assert_eq!(client.identity, client_id);

    control
        .push_acked("server", &Config::sidecar(&server).build())
        .await;
    let host = service_host("server", NAMESPACE);
    let c = cluster(&host, 80, vec![endpoint(&server)]);
    let cfg = Config::sidecar(&client)
        .route(&host, route_to(&c.name))
        .cluster(c);
    control.push_acked("client", &cfg.build()).await;
    let resp = get(client.outbound(), &host, "/spire").await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let xfcc = app
        .last()
        .header("x-forwarded-client-cert")
        .unwrap()
        .to_string();
    assert_eq!(xfcc, format!("By={server_id};URI={client_id}"));

    // The proxy serves on what the agent gives: its own Workload API (chained here) shows
    // the agent's SVID, and the agent's next SVID once it rotates.
    let api = spiffe::WorkloadApiClient::connect_to(format!("unix://{}", own_api.display()))
        .await
        .unwrap();
    let mut svids = api.stream_x509_svids().await.unwrap();
    let first = within("the proxy's SVID", svids.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.spiffe_id().to_string(), server_id);
    let rotated = server_agent.rotate();
    let next = within("the rotated SVID to reach the proxy", async {
        loop {
            let s = svids.next().await.unwrap().unwrap();
            if s.leaf().as_bytes() == rotated.as_slice() {
                return s;
            }
        }
    })
    .await;
    assert_eq!(next.spiffe_id().to_string(), server_id);
    let s = stats(server.admin).await;
    assert_eq!(
        sample_sum(&s, "weft_certificate_rotations_total", &[]),
        1.0,
        "{s}"
    );
    // Traffic still flows with the rotated certificate.
    assert_eq!(get(client.outbound(), &host, "/after").await.status, 200);
}

#[tokio::test]
async fn a_proxy_retries_until_the_agent_answers() {
    let dir = Dir::new();
    let spire = Arc::new(Ca::load_or_create(&dir.0.join("spire-ca"), "cluster.local").unwrap());
    let control = FakeControl::start().await;
    let socket = dir.0.join("late.sock");
    // Something that is not a Workload API holds the socket at first: the proxy's attempt
    // fails (accepted, then closed), and it tries again (the standard's advice for an
    // endpoint that cannot be reached) once the agent serves there.
    let not_yet = tokio::net::UnixListener::bind(&socket).unwrap();
    let starting = Proxy::sidecar("late")
        .spiffe_socket(&socket)
        .start(&control);
    let agent = async {
        let (conn, _) = within("the proxy's first attempt", not_yet.accept())
            .await
            .unwrap();
        drop((conn, not_yet));
        std::fs::remove_file(&socket).unwrap();
        Agent::start(
            spire.clone(),
            "spiffe://cluster.local/ns/test/sa/late",
            &socket,
        )
        .await
    };
    let (proxy, _agent) = tokio::join!(starting, agent);
    assert_eq!(proxy.identity, "spiffe://cluster.local/ns/test/sa/late");
}
