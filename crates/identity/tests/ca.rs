//! CA persistence, CSR signing and plug-in CA tests.

mod common;

use std::time::{Duration, SystemTime};

use common::*;
use rustls::pki_types::CertificateDer;
use weft_identity::{Ca, Error, Identity, SpiffeId, WorkloadKey, ROOT_CERT_FILE, ROOT_KEY_FILE};
use x509_parser::prelude::*;

#[test]
fn root_is_created_then_reloaded_identically() {
    let dir = temp_dir("reload");
    let ca = Ca::load_or_create(&dir, TD).unwrap();
    assert!(dir.join(ROOT_CERT_FILE).exists());
    assert!(dir.join(ROOT_KEY_FILE).exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join(ROOT_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "key file mode {mode:o}");
    }
    let again = Ca::load_or_create(&dir, TD).unwrap();
    assert_eq!(ca.root_pem(), again.root_pem());
    assert_eq!(ca.roots(), again.roots());
    assert_eq!(ca.not_after(), again.not_after());

    // The root has the advertised shape.
    let (_, root) = parse_x509_certificate(&ca.roots()[0]).unwrap();
    assert!(root.basic_constraints().unwrap().unwrap().value.ca);
    assert!(root.key_usage().unwrap().unwrap().value.key_cert_sign());
    assert!(root.subject().to_string().contains("O=weft"));
    assert!(root.subject().to_string().contains(TD));
    let validity = root.validity().time_to_expiration().unwrap();
    assert!(validity > ::time::Duration::days(3640), "{validity}");

    // A leaf from the first instance verifies against the reloaded one and vice versa.
    let a = issue(&ca, &id("ns", "a"));
    let b = issue(&again, &id("ns", "b"));
    assert_eq!(a.roots(), b.roots());

    std::fs::remove_file(dir.join(ROOT_CERT_FILE)).unwrap();
    let err = Ca::load_or_create(&dir, TD).unwrap_err();
    assert!(matches!(err, Error::InvalidCa(_)), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn csr_gets_exactly_the_identity_the_ca_chose() {
    let ca = new_ca("choose");
    let key = WorkloadKey::generate();
    let asked = id("attacker", "admin");
    let csr = key.csr_pem(&asked).unwrap();
    let decided = id("necpgame", "player");
    let ttl = Duration::from_secs(3600);
    let before = SystemTime::now();
    let issued = ca.sign_csr(&csr, &decided, ttl).unwrap();
    assert_eq!(issued.root_pem, ca.root_pem());
    assert!(issued.not_after <= before + ttl + Duration::from_secs(1));
    assert!(issued.not_after >= before + ttl - Duration::from_secs(2));

    let (_, der) = pem_decode(&issued.cert_chain_pem);
    let (_, leaf) = parse_x509_certificate(&der).unwrap();
    let san = leaf.subject_alternative_name().unwrap().unwrap();
    assert!(san.critical, "SAN must be critical with an empty subject");
    assert_eq!(
        san.value.general_names,
        vec![GeneralName::URI(
            "spiffe://cluster.local/ns/necpgame/sa/player"
        )]
    );
    assert_eq!(leaf.subject().iter().count(), 0);
    assert!(!leaf.basic_constraints().unwrap().unwrap().value.ca);
    let ku = leaf.key_usage().unwrap().unwrap().value;
    assert!(ku.digital_signature() && ku.key_encipherment() && !ku.key_cert_sign());
    let eku = leaf.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);
    let nb = SystemTime::from(leaf.validity().not_before.to_datetime());
    assert!(
        nb <= before - Duration::from_secs(59),
        "not_before is backdated"
    );
    assert_eq!(
        SystemTime::from(leaf.validity().not_after.to_datetime()),
        issued.not_after
    );

    // Chains to the root (Identity::new verifies with webpki) and reports the CA's choice.
    let ident = Identity::new(key, &issued.cert_chain_pem, &issued.root_pem).unwrap();
    assert_eq!(ident.spiffe_id(), &decided);
    assert_eq!(ident.not_after(), issued.not_after);
    assert_eq!(
        weft_identity::peer_spiffe_id(ident.cert_chain()),
        Some(decided)
    );

    // Serials are random.
    let again = ca.sign_csr(&csr, &id("necpgame", "player"), ttl).unwrap();
    let (_, der2) = pem_decode(&again.cert_chain_pem);
    let (_, leaf2) = parse_x509_certificate(&der2).unwrap();
    assert_ne!(leaf.raw_serial(), leaf2.raw_serial());
}

#[test]
fn leaf_from_another_ca_does_not_chain() {
    let ca = new_ca("chain-a");
    let other = new_ca("chain-b");
    let key = WorkloadKey::generate();
    let issued = ca
        .sign_csr(
            &key.csr_pem(&id("a", "b")).unwrap(),
            &id("a", "b"),
            Duration::from_secs(60),
        )
        .unwrap();
    let err = Identity::new(key, &issued.cert_chain_pem, &other.root_pem()).unwrap_err();
    assert!(matches!(err, Error::InvalidCertificate(_)), "{err}");
}

#[test]
fn identity_rejects_foreign_key() {
    let ca = new_ca("foreign-key");
    let key = WorkloadKey::generate();
    let issued = ca
        .sign_csr(
            &key.csr_pem(&id("a", "b")).unwrap(),
            &id("a", "b"),
            Duration::from_secs(60),
        )
        .unwrap();
    let err = Identity::new(
        WorkloadKey::generate(),
        &issued.cert_chain_pem,
        &issued.root_pem,
    )
    .unwrap_err();
    assert!(matches!(err, Error::KeyMismatch(_)), "{err}");
}

#[test]
fn tampered_csr_is_rejected() {
    let ca = new_ca("tamper");
    let key = WorkloadKey::generate();
    let csr = key.csr_pem(&id("ns", "sa")).unwrap();
    let (label, mut der) = pem_decode(&csr);
    assert_eq!(label, "CERTIFICATE REQUEST");
    // Change the requested URI inside the signed CertificationRequestInfo.
    let pos = der.windows(3).position(|w| w == b"/sa").unwrap();
    der[pos + 4] ^= 0x01;
    let tampered = pem_encode(&label, &der);
    let err = ca
        .sign_csr(&tampered, &id("ns", "sa"), Duration::from_secs(60))
        .unwrap_err();
    assert!(matches!(err, Error::CsrSignature), "{err}");

    // Flip a bit in the signature itself.
    let (_, mut der) = pem_decode(&csr);
    let last = der.len() - 1;
    der[last] ^= 0x01;
    let err = ca
        .sign_csr(
            &pem_encode(&label, &der),
            &id("ns", "sa"),
            Duration::from_secs(60),
        )
        .unwrap_err();
    assert!(matches!(err, Error::CsrSignature), "{err}");

    assert!(matches!(
        ca.sign_csr("garbage", &id("ns", "sa"), Duration::from_secs(60)),
        Err(Error::InvalidCsr(_))
    ));
}

#[test]
fn sign_csr_validates_request() {
    let ca = new_ca("validate");
    let key = WorkloadKey::generate();
    let csr = key.csr_pem(&id("ns", "sa")).unwrap();
    let foreign = SpiffeId::new("other.domain", "ns", "sa").unwrap();
    assert!(matches!(
        ca.sign_csr(&csr, &foreign, Duration::from_secs(60)),
        Err(Error::WrongTrustDomain { .. })
    ));
    assert!(matches!(
        ca.sign_csr(&csr, &id("ns", "sa"), Duration::ZERO),
        Err(Error::InvalidTtl(_))
    ));
    // A TTL beyond the CA's lifetime is capped at the CA's expiry.
    let issued = ca
        .sign_csr(
            &csr,
            &id("ns", "sa"),
            Duration::from_secs(100 * 365 * 86400),
        )
        .unwrap();
    assert_eq!(issued.not_after, ca.not_after());
}

#[test]
fn plug_in_ca_with_intermediate() {
    // Root CA on disk, then an intermediate signed by it, used as the signing CA.
    let root_dir = temp_dir("plugin-root");
    let root = Ca::load_or_create(&root_dir, TD).unwrap();
    let root_key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(root_dir.join(ROOT_KEY_FILE)).unwrap())
            .unwrap();
    let root_issuer = rcgen::Issuer::from_ca_cert_pem(&root.root_pem(), root_key).unwrap();
    let int_key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "weft intermediate");
    params.not_before = ::time::OffsetDateTime::now_utc() - ::time::Duration::minutes(1);
    params.not_after = ::time::OffsetDateTime::now_utc() + ::time::Duration::days(30);
    params.use_authority_key_identifier_extension = true;
    let int_cert = params.signed_by(&int_key, &root_issuer).unwrap();

    let dir = temp_dir("plugin-files");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ca-cert.pem"), int_cert.pem()).unwrap();
    std::fs::write(dir.join("ca-key.pem"), int_key.serialize_pem()).unwrap();
    let ca = Ca::from_pem_files_with_root(
        &dir.join("ca-cert.pem"),
        &dir.join("ca-key.pem"),
        None,
        &root_dir.join(ROOT_CERT_FILE),
        TD,
    )
    .unwrap();
    assert_eq!(ca.root_pem(), root.root_pem());
    let ident = issue(&ca, &id("ns", "sa"));
    assert_eq!(ident.cert_chain().len(), 2, "leaf + intermediate");
    assert_eq!(
        ident.cert_chain()[1],
        CertificateDer::from(int_cert.der().to_vec())
    );
    assert!(ident.not_after() <= ca.not_after());

    // Without the root, the intermediate alone would be treated as the anchor.
    let alone = Ca::from_pem_files(&dir.join("ca-cert.pem"), &dir.join("ca-key.pem"), TD).unwrap();
    assert_eq!(alone.roots().len(), 1);

    // Mismatched key is refused.
    std::fs::write(
        dir.join("ca-key.pem"),
        rcgen::KeyPair::generate().unwrap().serialize_pem(),
    )
    .unwrap();
    let err =
        Ca::from_pem_files(&dir.join("ca-cert.pem"), &dir.join("ca-key.pem"), TD).unwrap_err();
    assert!(matches!(err, Error::KeyMismatch(_)), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&root_dir).unwrap();
}

/// An X.509-SVID as the SPIFFE Workload API carries it (concatenated DER, PKCS#8 key)
/// becomes the same identity; a key that is not the leaf's, or a bundle it does not chain
/// to, is refused.
#[test]
fn identity_round_trips_through_the_workload_api_encoding() {
    let ca = new_ca("x509-svid");
    let identity = issue(&ca, &id("game", "player"));
    let concat = |certs: &[CertificateDer<'static>]| -> Vec<u8> {
        certs.iter().flat_map(|c| c.as_ref().to_vec()).collect()
    };
    let chain = concat(identity.cert_chain());
    let bundle = concat(identity.roots());
    let back = Identity::from_x509_svid(&chain, identity.private_key_pkcs8_der(), &bundle).unwrap();
    assert_eq!(back.spiffe_id(), identity.spiffe_id());
    assert_eq!(back.cert_chain(), identity.cert_chain());
    assert_eq!(back.roots(), identity.roots());
    assert_eq!(
        back.private_key_pkcs8_der(),
        identity.private_key_pkcs8_der()
    );

    let other = issue(&ca, &id("game", "other"));
    let err = Identity::from_x509_svid(&chain, other.private_key_pkcs8_der(), &bundle).unwrap_err();
    assert!(matches!(err, Error::KeyMismatch(_)), "{err}");
    let foreign = concat(new_ca("x509-svid-other").roots());
    let err =
        Identity::from_x509_svid(&chain, identity.private_key_pkcs8_der(), &foreign).unwrap_err();
    assert!(err.to_string().contains("does not verify"), "{err}");
    let err = Identity::from_x509_svid(&chain[..10], identity.private_key_pkcs8_der(), &bundle)
        .unwrap_err();
    assert!(err.to_string().contains("X.509-SVID"), "{err}");
}
