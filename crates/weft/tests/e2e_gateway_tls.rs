//! Istio's secure-gateways task on the real binary (`weft up` on the NECPGAME example),
//! with certificates made by the `openssl` CLI as the task makes them and real `curl`:
//! SIMPLE TLS (`curl --cacert --resolve`, HTTP/1.1 and HTTP/2), several hosts on one port
//! each with its own certificate (SNI), MUTUAL (no client certificate: the handshake
//! fails; with one: 200), `httpsRedirect` (301), and a server whose credential is missing
//! reported by name while the others serve.

mod common;

use common::*;
use std::path::Path;

/// `openssl ARGS` in `dir`, which must succeed.
fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The task's certificates: a root `example.com`, then a key, CSR and signed certificate
/// for `name` with subject `/CN=<cn>/O=<org>` — X.509 v1, as the task's `openssl x509
/// -req` makes them; with `v3`, the extensions a client certificate needs for rustls
/// (webpki verifies only v3 certificates).
fn leaf(dir: &Path, name: &str, cn: &str, v3: bool) {
    let subj = format!("/CN={cn}/O={name} organization");
    let ext = dir.join(format!("{name}.ext"));
    std::fs::write(
        &ext,
        format!("subjectAltName=DNS:{cn}\nextendedKeyUsage=clientAuth\n"),
    )
    .unwrap();
    let ext = ext.to_str().unwrap().to_string();
    let extfile: &[&str] = if v3 { &["-extfile", &ext] } else { &[] };
    openssl(
        dir,
        &[
            "req",
            "-out",
            &format!("{name}.csr"),
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-subj",
            &subj,
        ],
    );
    let csr = format!("{name}.csr");
    let crt = format!("{name}.crt");
    let mut args = vec![
        "x509",
        "-req",
        "-sha256",
        "-days",
        "365",
        "-CA",
        "example.com.crt",
        "-CAkey",
        "example.com.key",
        "-set_serial",
        "1",
        "-in",
        &csr,
        "-out",
        &crt,
    ];
    args.extend_from_slice(extfile);
    openssl(dir, &args);
}

fn certificates(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-sha256",
            "-nodes",
            "-days",
            "365",
            "-newkey",
            "rsa:2048",
            "-subj",
            "/O=example Inc./CN=example.com",
            "-keyout",
            "example.com.key",
            "-out",
            "example.com.crt",
        ],
    );
    leaf(dir, "game", GAME_HOST, false);
    leaf(dir, "admin", ADMIN_HOST, false);
    leaf(dir, "client", "client.example.com", true);
}

const ADMIN_HOST: &str = "admin.necpgame.local";

/// Istio's `kubectl create secret tls|generic` as files: `<config>/credentials/<name>/`.
fn credential(config: &Path, certs: &Path, name: &str, leaf: &str, ca: bool) {
    let d = config.join("credentials").join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::copy(certs.join(format!("{leaf}.crt")), d.join("tls.crt")).unwrap();
    std::fs::copy(certs.join(format!("{leaf}.key")), d.join("tls.key")).unwrap();
    if ca {
        std::fs::copy(certs.join("example.com.crt"), d.join("ca.crt")).unwrap();
    }
}

const SERVERS: &str = r#"  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [game.necpgame.local]
  - port: {number: 8080, name: http-redirect, protocol: HTTP}
    hosts: [game.necpgame.local]
    tls: {httpsRedirect: true}
  - port: {number: 443, name: https-game, protocol: HTTPS}
    hosts: [game.necpgame.local]
    tls: {mode: SIMPLE, credentialName: game-credential}
  - port: {number: 443, name: https-admin, protocol: HTTPS}
    hosts: [admin.necpgame.local]
    tls: {mode: MUTUAL, credentialName: admin-credential}
  - port: {number: 443, name: https-gone, protocol: HTTPS}
    hosts: [gone.necpgame.local]
    tls: {mode: SIMPLE, credentialName: no-such-credential}
"#;

fn https(mesh: &Mesh) -> String {
    let url = mesh.ready["gateways"]["443"]
        .as_str()
        .expect("port 443 in mesh_ready");
    url.strip_prefix("https://")
        .expect("an https:// URL")
        .to_string()
}

/// curl over HTTPS to `host` at the gateway's 443 (`--resolve`), `-w` code and version.
fn curl_https(ca: &Path, addr: &str, host: &str, extra: &[&str]) -> (bool, String) {
    let port = addr.rsplit_once(':').unwrap().1;
    let resolve = format!("{host}:{port}:127.0.0.1");
    let url = format!("https://{host}:{port}/api/v1/player/42");
    let mut args = vec![
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{http_version}",
        "--max-time",
        "10",
        "--cacert",
        ca.to_str().unwrap(),
        "--resolve",
        &resolve,
    ];
    args.extend_from_slice(extra);
    args.push(&url);
    let out = curl(&args);
    (
        out.status.success(),
        format!(
            "{}{}",
            stdout_of(&out),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn secure_gateways_simple_sni_mutual_and_redirect() {
    let tmp = TempDir::new("gwtls-certs");
    let certs = tmp.path().to_path_buf();
    certificates(&certs);
    let mesh = Mesh::up_with("gwtls", |config| {
        credential(config, &certs, "game-credential", "game", false);
        credential(config, &certs, "admin-credential", "admin", true);
        let path = config.join("istio-gateway.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        let start = text.find("  servers:").unwrap();
        let end = text.find("---").unwrap();
        let text = format!("{}{SERVERS}{}", &text[..start], &text[end..]);
        let text = text.replace(
            "  hosts: [game.necpgame.local]\n  gateways: [necpgame-gateway]",
            "  hosts: [game.necpgame.local, admin.necpgame.local]\n  gateways: [necpgame-gateway]",
        );
        std::fs::write(&path, text).unwrap();
    });
    let ca = certs.join("example.com.crt");
    let addr = https(&mesh);

    // SIMPLE: the task's `curl --cacert example.com.crt --resolve ...`, on HTTP/1.1 and h2.
    let (ok, out) = curl_https(&ca, &addr, GAME_HOST, &["--http1.1"]);
    assert!(ok && out.starts_with("200 1.1"), "{out}");
    let (ok, out) = curl_https(&ca, &addr, GAME_HOST, &["--http2"]);
    assert!(ok && out.starts_with("200 2"), "HTTP/2 by ALPN: {out}");

    // MUTUAL on the same port, another host with its own certificate (curl checks the
    // name, so each SNI got its host's certificate): without a client certificate the
    // handshake fails; with the client certificate the request passes.
    let (ok, out) = curl_https(&ca, &addr, ADMIN_HOST, &[]);
    assert!(
        !ok && !out.starts_with("200"),
        "no client certificate must fail: {out}"
    );
    let cert = certs.join("client.crt");
    let key = certs.join("client.key");
    let with = [
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ];
    let (ok, out) = curl_https(&ca, &addr, ADMIN_HOST, &with);
    assert!(
        ok && out.starts_with("200"),
        "with the client certificate: {out}"
    );

    // A host whose credential does not exist gets no handshake, and weft up says so.
    let (ok, out) = curl_https(&ca, &addr, "gone.necpgame.local", &[]);
    assert!(!ok, "{out}");
    let said = mesh.stderr.wait_contains(
        0,
        std::time::Duration::from_secs(10),
        &["no-such-credential"],
    );
    assert!(
        said.contains("does not serve the TLS server necpgame/necpgame-gateway/servers[4]"),
        "{said}"
    );

    // httpsRedirect: a 301 to https:// with the same host and path.
    let http = mesh.ready["gateways"]["8080"].as_str().unwrap();
    let out = curl(&[
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{redirect_url}",
        "-H",
        &format!("Host: {GAME_HOST}"),
        &format!("{http}/api/v1/player/42"),
    ]);
    assert_eq!(
        stdout_of(&out),
        format!("301 https://{GAME_HOST}/api/v1/player/42")
    );
    // The plain port stays plain.
    let out = curl(&[
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-H",
        &format!("Host: {GAME_HOST}"),
        &format!(
            "{}/api/v1/player/42",
            mesh.ready["gateways"]["80"].as_str().unwrap()
        ),
    ]);
    assert_eq!(stdout_of(&out), "200");
}
