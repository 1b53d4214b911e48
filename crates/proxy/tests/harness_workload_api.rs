//! The SPIFFE Workload API a sidecar serves to its app, driven by a client nobody here
//! wrote (the `spiffe` crate): the workload's own X.509-SVID (id, chain that verifies
//! against the bundle, the matching private key), the bundles, a new SVID on the open
//! stream after each rotation; and, with a raw tonic client, the standard's rules: no
//! `workload.spiffe.io` header → InvalidArgument, JWT profile → Unimplemented.

mod support;

use futures_util::StreamExt;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::*;
use tonic::Code;
use weft_protocol::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use weft_protocol::workload::{JwtsvidRequest, X509svidRequest};

/// A fresh short folder under the system temp dir (socket paths must stay short), removed
/// on drop.
struct Dir(PathBuf);

impl Dir {
    fn new() -> Dir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("wlapi-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    fn socket(&self) -> PathBuf {
        self.0.join("api.sock")
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn endpoint(socket: &Path) -> String {
    format!("unix://{}", socket.display())
}

/// Checks `svid` as a TLS peer would: the chain verifies against `bundle` now, and the
/// private key is the leaf's.
fn assert_usable(svid: &spiffe::X509Svid, bundle: &spiffe::X509Bundle) {
    let provider = rustls::crypto::ring::default_provider();
    let chain: Vec<CertificateDer<'static>> = svid
        .cert_chain()
        .iter()
        .map(|c| CertificateDer::from(c.as_bytes().to_vec()))
        .collect();
    let mut roots = rustls::RootCertStore::empty();
    for a in bundle.authorities() {
        roots
            .add(CertificateDer::from(a.as_bytes().to_vec()))
            .unwrap();
    }
    let leaf = rustls::server::ParsedCertificate::try_from(&chain[0]).unwrap();
    rustls::client::verify_server_cert_signed_by_trust_anchor(
        &leaf,
        &roots,
        &chain[1..],
        UnixTime::now(),
        provider.signature_verification_algorithms.all,
    )
    .expect("the SVID's chain verifies against the bundle");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        svid.private_key().as_bytes().to_vec(),
    ));
    let key = provider
        .key_provider
        .load_private_key(key)
        .expect("the SVID key is PKCS#8 rustls can use");
    rustls::sign::CertifiedKey::new(chain, key)
        .keys_match()
        .expect("the SVID key belongs to the leaf");
}

/// DER certificates of a PEM bundle.
fn pem_ders(pem: &str) -> Vec<Vec<u8>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|c| c.unwrap().to_vec())
        .collect()
}

#[tokio::test]
async fn the_spiffe_crate_fetches_the_workloads_own_svid_and_bundle() {
    let control = FakeControl::start().await;
    let dir = Dir::new();
    let socket = dir.socket();
    let proxy = Proxy::sidecar("player")
        .workload_api(&socket)
        .start(&control)
        .await;
    let meta = std::fs::symlink_metadata(&socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "owner only");

    let client = spiffe::WorkloadApiClient::connect_to(endpoint(&socket))
        .await
        .expect("the spiffe crate connects");
    let ctx = within("the X.509 context", client.fetch_x509_context())
        .await
        .expect("FetchX509SVID answers");
    let svid = ctx.default_svid().expect("one SVID");
    assert_eq!(svid.spiffe_id().to_string(), proxy.identity);
    assert_eq!(proxy.identity, "spiffe://cluster.local/ns/test/sa/player");
    let td = spiffe::TrustDomain::try_from("cluster.local").unwrap();
    let bundle = ctx
        .bundle_set()
        .get(&td)
        .expect("the bundle of the workload's trust domain");
    assert_usable(svid, &bundle);
    let authorities: Vec<Vec<u8>> = bundle
        .authorities()
        .iter()
        .map(|a| a.as_bytes().to_vec())
        .collect();
    assert_eq!(authorities, pem_ders(&control.root_pem()), "the mesh root");

    // FetchX509Bundles: the same bundle, keyed by trust domain.
    let bundles = within("the X.509 bundles", client.fetch_x509_bundles())
        .await
        .expect("FetchX509Bundles answers");
    assert_eq!(bundles.len(), 1);
    assert_eq!(
        bundles.get(&td).unwrap().authorities(),
        bundle.authorities()
    );

    proxy.stop().await;
    assert!(!socket.exists(), "a stopped proxy removes its socket");
}

#[tokio::test]
async fn the_open_stream_delivers_a_new_svid_after_each_rotation() {
    // 2 s certificates: the proxy renews about every second.
    let control = FakeControl::builder()
        .cert_ttl(Duration::from_secs(2))
        .start()
        .await;
    let dir = Dir::new();
    let socket = dir.socket();
    let proxy = Proxy::sidecar("player")
        .workload_api(&socket)
        .start(&control)
        .await;
    let client = spiffe::WorkloadApiClient::connect_to(endpoint(&socket))
        .await
        .unwrap();
    let mut svids = client.stream_x509_svids().await.unwrap();
    let mut leaves = Vec::new();
    while leaves.len() < 3 {
        let svid = within("the next SVID on the stream", svids.next())
            .await
            .expect("the stream stays open")
            .expect("a valid SVID");
        assert_eq!(svid.spiffe_id().to_string(), proxy.identity);
        let leaf = svid.leaf().as_bytes().to_vec();
        if leaves.last() != Some(&leaf) {
            leaves.push(leaf);
        }
    }
    // Each rotation brought a new certificate (and key): the first, then two renewals.
    assert_eq!(leaves.len(), 3);
    assert_ne!(leaves[0], leaves[2]);

    // X509Source, the crate's long-lived source, follows rotations too.
    let source = spiffe::X509Source::builder()
        .endpoint(endpoint(&socket))
        .build()
        .await
        .expect("an X509Source on the socket");
    let first = source.svid().unwrap().leaf().as_bytes().to_vec();
    let mut updates = source.updated();
    within("the source to see a rotation", updates.changed())
        .await
        .unwrap();
    let next = source.svid().unwrap();
    assert_ne!(next.leaf().as_bytes(), first.as_slice());
    let td = spiffe::TrustDomain::try_from("cluster.local").unwrap();
    assert_usable(&next, &source.bundle_set().unwrap().get(&td).unwrap());
    source.shutdown().await;
    proxy.stop().await;
}

/// A plain tonic client of the standard's service on `socket`, adding no metadata.
async fn raw_client(socket: &Path) -> SpiffeWorkloadApiClient<tonic::transport::Channel> {
    let socket = socket.to_path_buf();
    let channel = tonic::transport::Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_| {
            let socket = socket.clone();
            async move {
                let s = tokio::net::UnixStream::connect(socket).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
            }
        }))
        .await
        .expect("connecting over the Unix socket");
    SpiffeWorkloadApiClient::new(channel)
}

#[tokio::test]
async fn calls_without_the_security_header_are_refused_and_jwt_is_unimplemented() {
    let control = FakeControl::start().await;
    let dir = Dir::new();
    let socket = dir.socket();
    let proxy = Proxy::sidecar("player")
        .workload_api(&socket)
        .start(&control)
        .await;
    let mut client = raw_client(&socket).await;

    let refused = client
        .fetch_x509svid(X509svidRequest {})
        .await
        .expect_err("no security header");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(
        refused.message().contains("workload.spiffe.io"),
        "{refused:?}"
    );
    let mut wrong = tonic::Request::new(X509svidRequest {});
    wrong
        .metadata_mut()
        .insert("workload.spiffe.io", "yes".parse().unwrap());
    let refused = client.fetch_x509svid(wrong).await.expect_err("not `true`");
    assert_eq!(refused.code(), Code::InvalidArgument);

    let mut ok = tonic::Request::new(X509svidRequest {});
    ok.metadata_mut()
        .insert("workload.spiffe.io", "true".parse().unwrap());
    let mut stream = client.fetch_x509svid(ok).await.unwrap().into_inner();
    let first = within("the first response", stream.message())
        .await
        .unwrap()
        .expect("a response at once");
    assert_eq!(first.svids.len(), 1);
    assert_eq!(first.svids[0].spiffe_id, proxy.identity);

    let mut jwt = tonic::Request::new(JwtsvidRequest {
        audience: vec!["a".into()],
        spiffe_id: String::new(),
    });
    jwt.metadata_mut()
        .insert("workload.spiffe.io", "true".parse().unwrap());
    let unimplemented = client.fetch_jwtsvid(jwt).await.expect_err("no JWT-SVIDs");
    assert_eq!(unimplemented.code(), Code::Unimplemented);
    assert!(
        unimplemented
            .message()
            .contains("JWT-SVID profile is not built"),
        "{unimplemented:?}"
    );

    // Shutting down ends the open stream (the client sees it end, not hang).
    proxy.stop().await;
    let end = within("the stream to end", async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                other => return other,
            }
        }
    })
    .await;
    assert!(!matches!(end, Ok(Some(_))));
}

#[tokio::test]
async fn a_second_proxy_cannot_take_a_live_socket_but_replaces_a_stale_one() {
    let control = FakeControl::start().await;
    let dir = Dir::new();
    let socket = dir.socket();
    let first = Proxy::sidecar("player")
        .workload_api(&socket)
        .start(&control)
        .await;
    let second = Proxy::sidecar("player-2")
        .workload_api(&socket)
        .try_start(&control)
        .await;
    let err = second.err().expect("the live socket is not taken over");
    assert!(err.contains("another process already serves"), "{err}");
    first.stop().await;
    assert!(!socket.exists());

    // A socket file nobody serves (a proxy that was killed) is replaced.
    let _ = std::fs::remove_file(&socket);
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    let proxy = Proxy::sidecar("player")
        .workload_api(&socket)
        .start(&control)
        .await;
    let client = spiffe::WorkloadApiClient::connect_to(endpoint(&socket))
        .await
        .unwrap();
    let svid = within("the SVID", client.fetch_x509_svid()).await.unwrap();
    assert_eq!(svid.spiffe_id().to_string(), proxy.identity);
}

#[tokio::test]
async fn a_socket_path_too_long_for_unix_sockets_is_an_error_in_words() {
    let control = FakeControl::start().await;
    let dir = Dir::new();
    let long = dir.0.join("s".repeat(120)).join("api.sock");
    let err = Proxy::sidecar("player")
        .workload_api(&long)
        .try_start(&control)
        .await
        .err()
        .expect("refused");
    assert!(
        err.contains("Unix socket paths must be at most 103 bytes"),
        "{err}"
    );
}
