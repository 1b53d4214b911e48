//! End-to-end mTLS handshakes over in-memory pipes.

mod common;

use std::sync::Arc;

use common::*;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use weft_identity::{client_config, peer_spiffe_id, server_config, PeerCheck, SpiffeId};

const ALPN: &[&[u8]] = &[b"weft-mesh/1"];

struct Outcome {
    client: Result<Option<SpiffeId>, String>,
    server: Result<Option<SpiffeId>, String>,
}

/// Runs one handshake plus a ping/pong and reports what each side saw.
async fn handshake(
    client_cfg: Arc<rustls::ClientConfig>,
    server_cfg: Arc<rustls::ServerConfig>,
) -> Outcome {
    let (c_io, s_io) = tokio::io::duplex(64 * 1024);
    let server = tokio::spawn(async move {
        let mut tls = TlsAcceptor::from(server_cfg)
            .accept(s_io)
            .await
            .map_err(|e| e.to_string())?;
        let peer = tls.get_ref().1.peer_certificates().and_then(peer_spiffe_id);
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(ALPN[0]));
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        assert_eq!(&buf, b"ping");
        tls.write_all(b"pong").await.map_err(|e| e.to_string())?;
        tls.shutdown().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(peer)
    });
    let client = async {
        let name = ServerName::try_from("weft.mesh").unwrap();
        let mut tls = TlsConnector::from(client_cfg)
            .connect(name, c_io)
            .await
            .map_err(|e| e.to_string())?;
        let peer = tls.get_ref().1.peer_certificates().and_then(peer_spiffe_id);
        assert_eq!(
            tls.get_ref().1.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_3)
        );
        tls.write_all(b"ping").await.map_err(|e| e.to_string())?;
        tls.flush().await.map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        assert_eq!(&buf, b"pong");
        Ok::<_, String>(peer)
    }
    .await;
    // In TLS 1.3 the client finishes before the server has checked its
    // certificate, so a server-side rejection surfaces on the client's first read.
    let server = server.await.unwrap();
    Outcome { client, server }
}

#[tokio::test]
async fn mutual_tls_works_and_both_sides_see_spiffe_ids() {
    let ca = new_ca("tls-ok");
    let server_id = id("necpgame", "gateway");
    let client_id = id("necpgame", "player");
    let server = issue(&ca, &server_id);
    let client = issue(&ca, &client_id);

    for check in [
        PeerCheck::Exact(vec![id("x", "y"), server_id.clone()]),
        PeerCheck::TrustDomain,
    ] {
        let out = handshake(
            client_config(&client, check, ALPN).unwrap(),
            server_config(&server, ALPN).unwrap(),
        )
        .await;
        assert_eq!(out.client.unwrap(), Some(server_id.clone()));
        assert_eq!(out.server.unwrap(), Some(client_id.clone()));
    }
}

#[tokio::test]
async fn client_from_a_different_root_is_rejected() {
    let mesh = new_ca("tls-mesh");
    let rogue = new_ca("tls-rogue");
    let server = issue(&mesh, &id("ns", "server"));
    // Same trust domain name, different root; the intruder also trusts the mesh
    // root, so only the server's check can fail.
    let intruder = {
        let key = weft_identity::WorkloadKey::generate();
        let issued = rogue
            .sign_csr(
                &key.csr_pem(&id("ns", "client")).unwrap(),
                &id("ns", "client"),
                std::time::Duration::from_secs(600),
            )
            .unwrap();
        let roots = format!("{}{}", issued.root_pem, mesh.root_pem());
        weft_identity::Identity::new(key, &issued.cert_chain_pem, &roots).unwrap()
    };
    let out = handshake(
        client_config(&intruder, PeerCheck::TrustDomain, ALPN).unwrap(),
        server_config(&server, ALPN).unwrap(),
    )
    .await;
    let err = out.server.unwrap_err();
    // Both roots share a subject name, so webpki finds a candidate issuer whose
    // signature does not verify; with distinct names it would be UnknownIssuer.
    assert!(
        err.contains("BadSignature") || err.contains("UnknownIssuer"),
        "{err}"
    );
    assert!(out.client.is_err(), "client must not complete a session");
}

#[tokio::test]
async fn server_with_unexpected_identity_is_rejected() {
    let ca = new_ca("tls-exact");
    let server = issue(&ca, &id("ns", "impostor"));
    let client = issue(&ca, &id("ns", "client"));
    let out = handshake(
        client_config(
            &client,
            PeerCheck::Exact(vec![id("ns", "real-server")]),
            ALPN,
        )
        .unwrap(),
        server_config(&server, ALPN).unwrap(),
    )
    .await;
    let err = out.client.unwrap_err();
    assert!(err.contains("not one of the expected identities"), "{err}");
    assert!(out.server.is_err());
}

#[tokio::test]
async fn server_in_other_trust_domain_is_rejected_under_trust_domain_check() {
    // One root shared by two trust domains (the CA is per trust domain, so use two
    // CAs over the same root files).
    let dir = temp_dir("tls-td");
    let ca = weft_identity::Ca::load_or_create(&dir, TD).unwrap();
    let other_ca = weft_identity::Ca::load_or_create(&dir, "other.domain").unwrap();
    let server = issue(
        &other_ca,
        &SpiffeId::new("other.domain", "ns", "server").unwrap(),
    );
    let client = issue(&ca, &id("ns", "client"));
    let out = handshake(
        client_config(&client, PeerCheck::TrustDomain, ALPN).unwrap(),
        server_config(&server, ALPN).unwrap(),
    )
    .await;
    let err = out.client.unwrap_err();
    assert!(err.contains("trust domain"), "{err}");

    // And the server refuses a client from the other trust domain.
    let server = issue(&ca, &id("ns", "server"));
    let client = issue(
        &other_ca,
        &SpiffeId::new("other.domain", "ns", "client").unwrap(),
    );
    let out = handshake(
        client_config(&client, PeerCheck::Exact(vec![id("ns", "server")]), ALPN).unwrap(),
        server_config(&server, ALPN).unwrap(),
    )
    .await;
    let err = out.server.unwrap_err();
    assert!(err.contains("trust domain"), "{err}");
    assert!(out.client.is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[derive(Debug)]
struct NoClientCert;

impl rustls::client::ResolvesClientCert for NoClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        None
    }

    fn has_certs(&self) -> bool {
        false
    }
}

#[tokio::test]
async fn client_without_certificate_is_rejected() {
    let ca = new_ca("tls-nocert");
    let server = issue(&ca, &id("ns", "server"));
    // The mesh client config (so the server's SPIFFE cert is accepted), minus
    // the client certificate.
    let mut anon = (*client_config(&server, PeerCheck::TrustDomain, ALPN).unwrap()).clone();
    anon.client_auth_cert_resolver = Arc::new(NoClientCert);
    let out = handshake(Arc::new(anon), server_config(&server, ALPN).unwrap()).await;
    let err = out.server.unwrap_err();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    assert!(out.client.is_err());
}

#[tokio::test]
async fn plaintext_client_is_rejected() {
    let ca = new_ca("tls-plain");
    let server = issue(&ca, &id("ns", "server"));
    let (mut c_io, s_io) = tokio::io::duplex(4096);
    let accept =
        tokio::spawn(TlsAcceptor::from(server_config(&server, ALPN).unwrap()).accept(s_io));
    c_io.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(accept.await.unwrap().is_err());
}
