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

/// Runs `openssl s_server` (the task's nginx: any real TLS server) on a free loopback
/// port and says where with a `ready` event once it accepts connections.
const S_SERVER: &str = r#"
import json, socket, subprocess, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
port = s.getsockname()[1]
s.close()
child = subprocess.Popen(["openssl", "s_server", "-quiet", "-www", "-accept", "127.0.0.1:%d" % port,
                          "-cert", sys.argv[1], "-key", sys.argv[2]], stdin=subprocess.DEVNULL)
deadline = time.time() + 20
while time.time() < deadline and child.poll() is None:
    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
        break
    except OSError:
        time.sleep(0.02)
print(json.dumps({"event": "ready", "address": "127.0.0.1:%d" % port}), flush=True)
sys.exit(child.wait())
"#;

/// Istio's TLS-passthrough task: the gateway routes the client's TLS by SNI, untouched,
/// to a workload that terminates it itself (`openssl s_server` with the task's
/// `nginx.example.com` certificate), reached with `curl --cacert --resolve`.
fn passthrough_config(launcher: &Path, certs: &Path) -> String {
    let (crt, key) = (certs.join("nginx.crt"), certs.join("nginx.key"));
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: istio-ingressgateway
  namespace: istio-system
  annotations: {{weft.dev/role: gateway}}
spec: {{address: 127.0.0.1, labels: {{istio: ingressgateway}}, serviceAccount: istio-ingressgateway}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: my-nginx
  namespace: default
  annotations:
    weft.dev/run: command
    weft.dev/command: "exec python3 {launcher} {crt} {key}"
spec: {{address: 127.0.0.1, serviceAccount: my-nginx, labels: {{run: my-nginx}}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: my-nginx, namespace: default}}
spec:
  hosts: [my-nginx.default.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{{number: 443, name: https, protocol: HTTPS}}]
  workloadSelector: {{labels: {{run: my-nginx}}}}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: mygateway, namespace: default}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 443, name: https, protocol: HTTPS}}
    tls: {{mode: PASSTHROUGH}}
    hosts: [nginx.example.com]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: nginx, namespace: default}}
spec:
  hosts: [nginx.example.com]
  gateways: [mygateway]
  tls:
  - match:
    - port: 443
      sniHosts: [nginx.example.com]
    route:
    - destination:
        host: my-nginx.default.svc.cluster.local
        port: {{number: 443}}
"#,
        launcher = launcher.display(),
        crt = crt.display(),
        key = key.display(),
    )
}

#[test]
fn tls_passthrough_reaches_a_real_tls_server_by_sni() {
    let tmp = TempDir::new("gwtls-passthrough");
    let certs = tmp.path().to_path_buf();
    std::fs::create_dir_all(&certs).unwrap();
    openssl(
        &certs,
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
    leaf(&certs, "nginx", "nginx.example.com", false);
    let launcher = certs.join("s_server.py");
    std::fs::write(&launcher, S_SERVER).unwrap();
    let mesh = Mesh::up_with("gwtls-passthrough", |dir| {
        std::fs::remove_dir_all(dir).unwrap();
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(
            dir.join("nginx.yaml"),
            passthrough_config(&launcher, &certs),
        )
        .unwrap();
    });
    let url = mesh.ready["gateways"]["443"].as_str().expect("port 443");
    let addr = url
        .strip_prefix("tcp://")
        .expect("a PASSTHROUGH server is a TCP listener");
    let port = addr.rsplit_once(':').unwrap().1;
    let resolve = format!("nginx.example.com:{port}:127.0.0.1");
    let target = format!("https://nginx.example.com:{port}/");
    let ca = certs.join("example.com.crt");
    // The certificate curl verifies is s_server's own: the gateway did not terminate.
    let out = poll_until(
        "s_server to answer through the gateway",
        std::time::Duration::from_secs(20),
        || {
            let out = curl(&[
                "-sS",
                "--max-time",
                "5",
                "--cacert",
                ca.to_str().unwrap(),
                "--resolve",
                &resolve,
                &target,
            ]);
            out.status.success().then_some(out)
        },
    );
    let body = stdout_of(&out);
    assert!(
        body.contains("s_server -quiet -www"),
        "s_server's status page: {body}"
    );
    // Another SNI has no route: the connection is closed.
    let other = format!("other.example.com:{port}:127.0.0.1");
    let out = curl(&[
        "-sS",
        "--max-time",
        "5",
        "-k",
        "--resolve",
        &other,
        &format!("https://other.example.com:{port}/"),
    ]);
    assert!(!out.status.success());
}

#[test]
fn weft_demo_serves_https_with_its_generated_certificate() {
    let _serial = serial();
    let dir = TempDir::new("gwtls-demo");
    let state = dir.path().join("state");
    let (mut child, stdout, stderr) = ChildGuard::spawn(
        std::process::Command::new(WEFT)
            .args(["demo", "--duration", "15", "--state-dir"])
            .arg(&state),
    );
    let line = stdout.wait_for(
        "the curl line",
        0,
        std::time::Duration::from_secs(60),
        |text| {
            text.lines()
                .find(|l| l.trim_start().starts_with("curl --cacert"))
                .map(|l| l.trim().to_string())
        },
    );
    let mut args: Vec<&str> = line.split_whitespace().skip(1).collect();
    args.splice(
        0..0,
        [
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{ssl_verify_result}",
        ],
    );
    let out = curl(&args);
    assert_eq!(
        stdout_of(&out),
        "200 0",
        "{line}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The demo's own traffic (plain HTTP on port 80) still passes.
    let status = child.wait_timeout(std::time::Duration::from_secs(120));
    let text = stdout.wait_closed(std::time::Duration::from_secs(10));
    assert!(
        status.success(),
        "weft demo exited with {status}\n{text}\n{}",
        stderr.text()
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("success") && l.contains("PASS")),
        "{text}"
    );
}
