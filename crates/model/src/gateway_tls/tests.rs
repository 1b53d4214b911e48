use super::*;

/// A Gateway server, written as JSON.
fn server(json: &str) -> Server {
    serde_json::from_str(json).expect("server")
}

fn names(sni: &[&str]) -> TlsChain {
    TlsChain {
        name: "t".into(),
        sni: sni.iter().map(|s| s.to_string()).collect(),
        route_table: "r".into(),
        mode: TlsMode::Simple,
        certificate: CertSource::Mesh,
        client: None,
        versions: vec![TlsVersion::Tls12, TlsVersion::Tls13],
        tls12_suites: vec![],
    }
}

#[test]
fn sni_exact_beats_wildcard_beats_catch_all() {
    let chains = [
        names(&[]),
        names(&["*.example.com"]),
        names(&["a.example.com"]),
    ];
    let all = |_| true;
    assert_eq!(select_chain(&chains, Some("a.example.com"), all), Some(2));
    assert_eq!(select_chain(&chains, Some("B.example.com"), all), Some(1));
    assert_eq!(select_chain(&chains, Some("x.y.example.com"), all), Some(1));
    assert_eq!(select_chain(&chains, Some("example.com"), all), Some(0));
    assert_eq!(
        select_chain(&chains, None, all),
        Some(0),
        "no SNI: the chain without names"
    );
    let named = [names(&["a.example.com"])];
    assert_eq!(
        select_chain(&named, None, all),
        None,
        "no SNI and no catch-all: no chain"
    );
    assert_eq!(select_chain(&named, Some("b.example.com"), all), None);
}

#[test]
fn sni_longer_wildcard_wins_and_unusable_chains_are_skipped() {
    let chains = [names(&["*.com"]), names(&["*.example.com"])];
    assert_eq!(
        select_chain(&chains, Some("a.example.com"), |_| true),
        Some(1)
    );
    // A chain whose credential is missing is not there: the next best takes it.
    assert_eq!(
        select_chain(&chains, Some("a.example.com"), |i| i != 1),
        Some(0)
    );
}

#[test]
fn sni_hosts_strip_namespaces_and_star_means_any() {
    let s =
        server(r#"{"hosts": ["ns1/a.example.com", "./B.example.com"], "tls": {"mode": "SIMPLE"}}"#);
    assert_eq!(sni_hosts(&s), ["a.example.com", "b.example.com"]);
    let s = server(r#"{"hosts": ["a.example.com", "*"], "tls": {"mode": "SIMPLE"}}"#);
    assert!(sni_hosts(&s).is_empty());
}

#[test]
fn simple_from_files_with_istio_default_versions() {
    let s = server(
        r#"{"hosts": ["h"], "tls": {"mode": "SIMPLE", "serverCertificate": "/c.pem", "privateKey": "/k.pem"}}"#,
    );
    let c = chain(&s, "n".into(), "rt".into()).expect("chain");
    assert_eq!(c.mode, TlsMode::Simple);
    assert_eq!(
        c.certificate,
        CertSource::Files {
            cert: "/c.pem".into(),
            key: "/k.pem".into()
        }
    );
    assert_eq!(c.versions, [TlsVersion::Tls12, TlsVersion::Tls13]);
    assert!(c.client.is_none());
}

#[test]
fn mutual_by_credential_name_checks_the_client() {
    let s = server(
        r#"{"hosts": ["h"], "tls": {"mode": "MUTUAL", "credentialName": "cred",
            "subjectAltNames": ["client.example.com"], "verifyCertificateHash": ["AB:CD"],
            "minProtocolVersion": "TLSV1_3", "cipherSuites": ["[ECDHE-RSA-AES128-GCM-SHA256|ECDHE-RSA-CHACHA20-POLY1305]", "AES128-SHA"]}}"#,
    );
    let c = chain(&s, "n".into(), "rt".into()).expect("chain");
    assert_eq!(
        c.certificate,
        CertSource::Credential {
            name: "cred".into()
        }
    );
    let v = c.client.expect("client validation");
    assert_eq!(v.ca_credential.as_deref(), Some("cred"));
    assert_eq!(v.subject_alt_names, ["client.example.com"]);
    assert_eq!(v.cert_sha256, ["AB:CD"]);
    assert_eq!(c.versions, [TlsVersion::Tls13]);
    assert_eq!(
        c.tls12_suites,
        [
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"
        ]
    );
    let mut reported = Vec::new();
    report(0, s.tls.as_ref().unwrap(), &mut |m| reported.push(m));
    assert_eq!(
        reported,
        ["servers[0].tls.cipherSuites AES128-SHA (rustls has no such TLS 1.2 suite; it is not offered)"]
    );
}

#[test]
fn old_versions_are_reported_and_a_max_below_tls12_is_not_opened() {
    let s = server(
        r#"{"hosts": ["h"], "tls": {"mode": "SIMPLE", "credentialName": "c", "minProtocolVersion": "TLSV1_0"}}"#,
    );
    let c = chain(&s, "n".into(), "rt".into()).expect("still served from TLS 1.2");
    assert_eq!(c.versions, [TlsVersion::Tls12, TlsVersion::Tls13]);
    let mut reported = Vec::new();
    report(3, s.tls.as_ref().unwrap(), &mut |m| reported.push(m));
    assert_eq!(reported.len(), 1);
    assert!(reported[0].starts_with("servers[3].tls.minProtocolVersion TLSV1_0"));
    let s = server(
        r#"{"hosts": ["h"], "tls": {"mode": "SIMPLE", "credentialName": "c", "maxProtocolVersion": "TLSV1_1"}}"#,
    );
    assert!(chain(&s, "n".into(), "rt".into()).is_none());
}

#[test]
fn istio_mutual_uses_the_mesh_certificate_and_passthrough_is_not_a_chain() {
    let s = server(r#"{"hosts": ["*"], "tls": {"mode": "ISTIO_MUTUAL"}}"#);
    let c = chain(&s, "n".into(), "rt".into()).expect("chain");
    assert_eq!(c.certificate, CertSource::Mesh);
    assert!(c.sni.is_empty());
    let s = server(r#"{"hosts": ["*"], "tls": {"mode": "PASSTHROUGH"}}"#);
    assert!(!terminates(&s));
    assert!(chain(&s, "n".into(), "rt".into()).is_none());
}

#[test]
fn passthrough_beside_terminating_servers_on_one_port_is_reported() {
    let yaml = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: mixed, namespace: ns}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: pass, protocol: TLS}
    hosts: [a.example.com]
    tls: {mode: PASSTHROUGH}
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [b.example.com]
    tls: {mode: SIMPLE, credentialName: b}
  - port: {number: 8443, name: alone, protocol: TLS}
    hosts: [c.example.com]
    tls: {mode: PASSTHROUGH}
"#;
    let loaded = weft_api::load_str(yaml, "gw.yaml");
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let whats: Vec<String> = crate::not_enforced(&loaded.resources)
        .into_iter()
        .map(|n| n.what)
        .collect();
    assert_eq!(whats.len(), 1, "{whats:#?}");
    assert!(whats[0]
        .starts_with("servers[0].tls.mode PASSTHROUGH beside TLS-terminating servers on port 443"));
}
