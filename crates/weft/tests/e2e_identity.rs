//! Identity on the real binary: PeerAuthentication (Istio's mTLS migration task), the
//! per-workload bootstrap tokens against a rogue proxy, Istio's plug-in CA and root
//! rotation under load — with curl and openssl as the clients.

mod common;

use common::*;
use std::time::Duration;

const INVENTORY_PATH: &str = "/api/v1/inventory/items";

/// `curl` straight to a sidecar's inbound port, as a client without a sidecar: the HTTP
/// status, or `None` when the connection is refused or cut.
fn plaintext_status(inbound: &str) -> Option<u16> {
    let out = curl(&[
        "-s",
        "-m",
        "5",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-H",
        &format!("Host: {INVENTORY_HOST}"),
        &format!("http://{inbound}/api/v1/inventory/items"),
    ]);
    let code: u16 = stdout_of(&out).trim().parse().unwrap_or(0);
    (out.status.success() && code != 0).then_some(code)
}

/// Istio's "Mutual TLS Migration" task: a client without a sidecar reaches a PERMISSIVE
/// workload in plaintext, and is refused once the namespace is STRICT — while mesh traffic
/// keeps flowing through both changes.
#[test]
fn mutual_tls_migration_from_permissive_to_strict() {
    let mesh = Mesh::up_with("mtls-migration", |dir| {
        // The task runs without authorization policies.
        std::fs::remove_file(dir.join("authorization-policy.yaml")).expect("removing policies");
        edit(
            &dir.join("peer-authentication.yaml"),
            "mode: STRICT",
            "mode: PERMISSIVE",
        );
    });
    let inbound = mesh.addr(INVENTORY_V1_SIDECAR, "inbound");
    assert_eq!(
        plaintext_status(&inbound),
        Some(200),
        "PERMISSIVE takes plaintext"
    );
    let mut conn = HttpConn::connect(&mesh.gateway()).unwrap();
    assert_eq!(
        conn.get(GAME_HOST, INVENTORY_PATH, &[]).unwrap().status,
        200
    );

    // Lock the namespace down: plaintext is refused, the mesh still works.
    edit(
        &mesh.config_dir.join("peer-authentication.yaml"),
        "mode: PERMISSIVE",
        "mode: STRICT",
    );
    poll_until(
        "STRICT to refuse the plaintext client",
        Duration::from_secs(10),
        || plaintext_status(&inbound).is_none().then_some(()),
    );
    let r = conn
        .get_retry_closed(GAME_HOST, INVENTORY_PATH, &[])
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
}

/// Starts `weft proxy` as a sidecar for `workload` with the token file `token`.
fn rogue_sidecar(mesh: &Mesh, workload: &str, token: &std::path::Path) -> (ChildGuard, Captured) {
    let control = mesh.ready["control"]
        .as_str()
        .expect("control address")
        .to_string();
    let (child, _out, err) = ChildGuard::spawn(
        std::process::Command::new(WEFT)
            .args(["proxy", "--role", "sidecar", "--workload", workload])
            .args(["--namespace", "necpgame", "--control", &control])
            .args(["--app", "127.0.0.1:9", "--token-file"])
            .arg(token),
    );
    (child, err)
}

/// The hole Istio closes with service-account tokens: in `weft up` each proxy has its own
/// bootstrap token, so a process holding one workload's token cannot get another's identity,
/// and a second proxy for a connected workload is refused — never swapped in.
#[test]
fn a_rogue_proxy_cannot_take_another_workloads_identity_or_endpoint() {
    let mesh = Mesh::up("rogue");
    let tokens = mesh.state_dir.join("tokens");
    // inventory's token, claiming to be player: no certificate, no config.
    let (mut rogue, err) = rogue_sidecar(&mesh, "player-v1", &tokens.join(INVENTORY_V1_SIDECAR));
    let status = rogue.wait_timeout(Duration::from_secs(30));
    assert!(!status.success());
    let text = err.wait_closed(Duration::from_secs(10));
    assert!(
        text.contains("this token was made for the sidecar necpgame/inventory-v1"),
        "{text}"
    );

    // player's own token while player is connected: refused as a second player.
    let (mut rogue, err) = rogue_sidecar(&mesh, "player-v1", &tokens.join(PLAYER_SIDECAR));
    err.wait_for("the refusal", 0, Duration::from_secs(30), |t| {
        t.contains("already has a connected proxy").then_some(())
    });
    // Every request still reaches the real player (the rogue's "app" would answer 503).
    let mut conn = HttpConn::connect(&mesh.gateway()).unwrap();
    for _ in 0..100 {
        let r = conn.get(GAME_HOST, "/api/v1/player/7", &[]).unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
    }
    rogue.stop(Duration::from_secs(10));
}

fn openssl(args: &[&str]) {
    let out = run("openssl", args);
    assert!(
        out.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An offline root and an intermediate signing CA under it, in Istio's `cacerts` layout.
fn plug_in_ca(dir: &std::path::Path) {
    let p = |f: &str| dir.join(f).display().to_string();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut root = vec!["req", "-x509"];
    root.extend(ec);
    let (root_key, root_cert) = (p("root-key.pem"), p("root-cert.pem"));
    root.extend(["-keyout", &root_key, "-out", &root_cert]);
    root.extend(["-subj", "/O=NECPGAME/CN=offline root", "-days", "3"]);
    openssl(&root);
    let ext = p("ca.ext");
    std::fs::write(
        &ext,
        "[v3_ca]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid:always\n",
    )
    .unwrap();
    let (ca_key, csr, ca_cert) = (p("ca-key.pem"), p("ca.csr"), p("ca-cert.pem"));
    let mut req = vec!["req", "-new"];
    req.extend(ec);
    req.extend([
        "-keyout",
        &ca_key,
        "-out",
        &csr,
        "-subj",
        "/O=NECPGAME/CN=mesh intermediate",
    ]);
    openssl(&req);
    openssl(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &root_cert,
        "-CAkey",
        &root_key,
        "-CAcreateserial",
        "-out",
        &ca_cert,
        "-days",
        "2",
        "-extfile",
        &ext,
        "-extensions",
        "v3_ca",
    ]);
    let chain = format!(
        "{}{}",
        std::fs::read_to_string(&ca_cert).unwrap(),
        std::fs::read_to_string(&root_cert).unwrap()
    );
    std::fs::write(dir.join("cert-chain.pem"), chain).unwrap();
}

/// Istio's "Plug in CA certificates" task: workloads get certificates from an intermediate
/// under an offline root; peers are sent the chain and verify it against the root alone.
#[test]
fn plugged_in_intermediate_ca_signs_workloads_and_peers_get_the_chain() {
    let cacerts = TempDir::new("cacerts");
    plug_in_ca(cacerts.path());
    let dir = cacerts.path().to_str().unwrap().to_string();
    let mesh = Mesh::up_with_args("plug-in-ca", &["--cacerts", &dir], |_| {});
    let mut conn = HttpConn::connect(&mesh.gateway()).unwrap();
    assert_eq!(
        conn.get(GAME_HOST, INVENTORY_PATH, &[]).unwrap().status,
        200
    );

    let inbound = mesh.addr(INVENTORY_V1_SIDECAR, "inbound");
    let out = run("openssl", &["s_client", "-connect", &inbound, "-showcerts"]);
    let text = stdout_of(&out);
    let certs: Vec<&str> = text
        .match_indices("-----BEGIN CERTIFICATE-----")
        .map(|(i, _)| {
            let end = text[i..].find("-----END CERTIFICATE-----").unwrap() + i + 25;
            &text[i..end]
        })
        .collect();
    assert_eq!(certs.len(), 2, "leaf and intermediate are sent:\n{text}");
    let (leaf, chain) = (
        cacerts.path().join("leaf.pem"),
        cacerts.path().join("sent-chain.pem"),
    );
    std::fs::write(&leaf, format!("{}\n", certs[0])).unwrap();
    std::fs::write(&chain, format!("{}\n", certs[1])).unwrap();
    let root = cacerts.path().join("root-cert.pem");
    let ok = run(
        "openssl",
        &[
            "verify",
            "-CAfile",
            root.to_str().unwrap(),
            "-untrusted",
            chain.to_str().unwrap(),
            leaf.to_str().unwrap(),
        ],
    );
    assert!(
        ok.status.success(),
        "{}{}",
        stdout_of(&ok),
        String::from_utf8_lossy(&ok.stderr)
    );
    // The intermediate alone is not what peers trust: the root is.
    let issuer = run(
        "openssl",
        &["x509", "-in", leaf.to_str().unwrap(), "-noout", "-issuer"],
    );
    assert!(
        stdout_of(&issuer).contains("mesh intermediate"),
        "{}",
        stdout_of(&issuer)
    );
}

/// A root and an intermediate under it, written as `<name>-root-*.pem`, `<name>-int-*.pem`.
fn root_and_intermediate(dir: &std::path::Path, name: &str) {
    let p = |f: &str| dir.join(format!("{name}-{f}")).display().to_string();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let (root_key, root_cert) = (p("root-key.pem"), p("root-cert.pem"));
    let subj = format!("/O=NECPGAME/CN=root {name}");
    let mut root = vec!["req", "-x509"];
    root.extend(ec);
    root.extend([
        "-keyout", &root_key, "-out", &root_cert, "-subj", &subj, "-days", "3",
    ]);
    openssl(&root);
    let ext = p("ca.ext");
    std::fs::write(
        &ext,
        "[v3_ca]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid:always\n",
    )
    .unwrap();
    let (key, csr, cert) = (p("int-key.pem"), p("int.csr"), p("int-cert.pem"));
    let isubj = format!("/O=NECPGAME/CN=intermediate {name}");
    let mut req = vec!["req", "-new"];
    req.extend(ec);
    req.extend(["-keyout", &key, "-out", &csr, "-subj", &isubj]);
    openssl(&req);
    openssl(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &root_cert,
        "-CAkey",
        &root_key,
        "-CAcreateserial",
        "-out",
        &cert,
        "-days",
        "2",
        "-extfile",
        &ext,
        "-extensions",
        "v3_ca",
    ]);
}

/// Writes the `cacerts` folder: signing with `signer`'s intermediate, trusting `roots`.
fn install_cacerts(
    keys: &std::path::Path,
    cacerts: &std::path::Path,
    signer: &str,
    roots: &[&str],
) {
    let read = |f: String| std::fs::read_to_string(keys.join(f)).unwrap();
    let bundle: String = roots
        .iter()
        .map(|r| read(format!("{r}-root-cert.pem")))
        .collect();
    let int = read(format!("{signer}-int-cert.pem"));
    let chain = format!("{int}{}", read(format!("{signer}-root-cert.pem")));
    // Written to temporary names and renamed, so no request sees a half-written file.
    for (name, text) in [
        ("root-cert.pem", bundle),
        ("cert-chain.pem", chain),
        ("ca-key.pem", read(format!("{signer}-int-key.pem"))),
        ("ca-cert.pem", int),
    ] {
        let tmp = cacerts.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, cacerts.join(name)).unwrap();
    }
}

/// Every proxy's renewals so far (admin address -> count).
fn rotations(mesh: &Mesh) -> Vec<(String, f64)> {
    mesh.names()
        .into_iter()
        .filter(|n| n.starts_with("sidecar-") || n.starts_with("gateway-"))
        .map(|n| {
            let admin = mesh.addr(&n, "admin");
            let stats = admin_get(&admin, "/stats/prometheus");
            (
                admin,
                metric_sum(&stats, "weft_certificate_rotations_total", &[]),
            )
        })
        .collect()
}

/// Waits until every proxy renewed twice more than in `before` (so each holds a
/// certificate and trust bundle from after the change).
fn await_renewals(mesh: &Mesh, before: &[(String, f64)], what: &str) {
    poll_until(what, Duration::from_secs(60), || {
        rotations(mesh)
            .iter()
            .zip(before)
            .all(|((_, now), (_, then))| *now >= then + 2.0)
            .then_some(())
    });
}

/// Istio's root-certificate rotation: trust old and new roots, switch the signer to an
/// intermediate of the new root, then drop the old root — under steady load, with every
/// peer connection re-handshaking often (maxRequestsPerConnection), and no failed request.
#[test]
fn the_mesh_root_rotates_under_load_with_no_failed_request() {
    let keys = TempDir::new("root-rotation-keys");
    let cacerts = TempDir::new("root-rotation-cacerts");
    root_and_intermediate(keys.path(), "old");
    root_and_intermediate(keys.path(), "new");
    install_cacerts(keys.path(), cacerts.path(), "old", &["old"]);
    let dir = cacerts.path().to_str().unwrap().to_string();
    let mesh = Mesh::up_with_args(
        "root-rotation",
        &["--cacerts", &dir, "--cert-ttl-secs", "4"],
        |config| {
            edit(
                &config.join("destination-rule.yaml"),
                "maxRequestsPerConnection: 100",
                "maxRequestsPerConnection: 5",
            )
        },
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (gateway, stop) = (mesh.gateway(), stop.clone());
        std::thread::spawn(move || {
            let (mut sent, mut failed) = (0u32, Vec::new());
            let mut conn = HttpConn::connect(&gateway).unwrap();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = conn.get_retry_closed(GAME_HOST, INVENTORY_PATH, &[]);
                sent += 1;
                match r {
                    Ok(r) if r.status == 200 => {}
                    Ok(r) => failed.push(format!("{} {}", r.status, r.body)),
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (sent, failed)
        })
    };
    for (step, signer, roots) in [
        ("trust both roots", "old", &["old", "new"][..]),
        (
            "sign with the new root's intermediate",
            "new",
            &["old", "new"][..],
        ),
        ("trust only the new root", "new", &["new"][..]),
    ] {
        let before = rotations(&mesh);
        install_cacerts(keys.path(), cacerts.path(), signer, roots);
        await_renewals(&mesh, &before, step);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (sent, failed) = load.join().unwrap();
    assert!(sent > 100, "only {sent} requests were sent");
    assert!(
        failed.is_empty(),
        "{} of {sent} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );

    // Every sidecar now presents a chain to the new root, which alone verifies it.
    let inbound = mesh.addr(INVENTORY_V1_SIDECAR, "inbound");
    let out = run("openssl", &["s_client", "-connect", &inbound, "-showcerts"]);
    let text = stdout_of(&out);
    assert!(text.contains("intermediate new"), "{text}");
    assert!(!text.contains("intermediate old"), "{text}");
}
