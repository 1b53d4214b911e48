//! The SPIFFE Workload API on the real binary, with a client nobody here wrote: a
//! `weft.dev/run: command` app in Python using the PyPI `spiffe` package (py-spiffe) finds
//! its sidecar's socket through `SPIFFE_ENDPOINT_SOCKET`, as the standard says, fetches its
//! X.509-SVID and bundle, and writes them out; openssl then checks them against the mesh
//! root. (Its own test binary: it runs beside `e2e.rs`'s meshes.)

mod common;

use common::*;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// py-spiffe's version the test pins (its API: `WorkloadApiClient`, `X509Svid.save`).
const PY_SPIFFE: &str = "spiffe==0.3.2";

/// A Python with py-spiffe: a venv kept under the target folder, made (pip from PyPI) on
/// first use.
fn python_with_py_spiffe() -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("py-spiffe-venv");
    let python = venv.join("bin").join("python");
    let has = |p: &Path| {
        Command::new(p)
            .args(["-c", "import spiffe"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if has(&python) {
        return python;
    }
    let venv_s = venv.display().to_string();
    let made = run("python3", &["-m", "venv", "--clear", &venv_s]);
    assert!(
        made.status.success(),
        "python3 -m venv (Debian: apt-get install python3-venv): {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let py = python.display().to_string();
    let pip = run(
        &py,
        &[
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            PY_SPIFFE,
        ],
    );
    assert!(
        pip.status.success(),
        "pip install {PY_SPIFFE}: {}",
        String::from_utf8_lossy(&pip.stderr)
    );
    assert!(has(&python), "py-spiffe installed but does not import");
    python
}

/// The app: an HTTP server on the address weft gives it (port 0, said with a ready
/// event). Each GET fetches the app's SVID from the Workload API with py-spiffe (the
/// socket from `SPIFFE_ENDPOINT_SOCKET`), saves chain, key and bundle as PEM next to the
/// SPIFFE id in the folder given as argv[1], and answers with the id.
const SVID_APP_PY: &str = r#"
import http.server, json, os, sys
from cryptography.hazmat.primitives import serialization
from spiffe import WorkloadApiClient
out = sys.argv[1]
class App(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        with WorkloadApiClient() as client:
            svid = client.fetch_x509_svid()
            bundles = client.fetch_x509_bundles()
        svid.save(os.path.join(out, "svid.pem"), os.path.join(out, "key.pem"), serialization.Encoding.PEM)
        bundle = bundles.get_bundle_for_trust_domain(svid.spiffe_id.trust_domain)
        with open(os.path.join(out, "bundle.pem"), "wb") as f:
            for c in bundle.x509_authorities:
                f.write(c.public_bytes(serialization.Encoding.PEM))
        body = str(svid.spiffe_id).encode()
        with open(os.path.join(out, "spiffe-id.tmp"), "wb") as f:
            f.write(body)
        os.rename(os.path.join(out, "spiffe-id.tmp"), os.path.join(out, "spiffe-id"))
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
host, port = os.environ["WEFT_APP_ADDRESS"].rsplit(":", 1)
server = http.server.ThreadingHTTPServer((host, int(port)), App)
print(json.dumps({"event": "ready", "address": "%s:%d" % server.server_address}), flush=True)
server.serve_forever()
"#;

fn svid_app_yaml(python: &Path, script: &Path, out: &Path) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: svid-app, namespace: spiffe}}
spec:
  hosts: [svid-app.spiffe.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{{number: 8000, name: http, protocol: HTTP}}]
  workloadSelector: {{labels: {{app: svid-app}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: svid-app
  namespace: spiffe
  annotations:
    weft.dev/run: command
    weft.dev/command: "exec {} {} {}"
spec: {{address: 127.0.0.1, serviceAccount: svid-reader, labels: {{app: svid-app}}}}
"#,
        python.display(),
        script.display(),
        out.display()
    )
}

fn openssl_out(args: &[&str]) -> String {
    let out = run("openssl", args);
    assert!(
        out.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout_of(&out)
}

#[test]
fn an_app_fetches_its_own_svid_from_its_sidecar_with_py_spiffe() {
    let python = python_with_py_spiffe();
    let mut out = PathBuf::new();
    let mesh = Mesh::up_with("workload-api", |dir| {
        let base = dir.parent().expect("a temp dir");
        out = base.join("svid-out");
        std::fs::create_dir_all(&out).unwrap();
        let script = base.join("svid_app.py");
        std::fs::write(&script, SVID_APP_PY).expect("writing the app");
        std::fs::write(
            dir.join("svid-app.yaml"),
            svid_app_yaml(&python, &script, &out),
        )
        .expect("writing svid-app.yaml");
    });
    let want = "spiffe://cluster.local/ns/spiffe/sa/svid-reader";

    // The sidecar's socket: owner-only, where `weft status` says.
    let sidecar = "sidecar-svid-app.spiffe";
    let socket = mesh.addr(sidecar, "workload_api");
    let meta = std::fs::symlink_metadata(&socket).expect("the Workload API socket exists");
    assert!(meta.file_type().is_socket(), "{socket}");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{socket}");

    // A call through the mesh reaches the app, which asks the Workload API then.
    let player = mesh.addr(PLAYER_SIDECAR, "outbound");
    let resp = curl(&[
        "-sS",
        "-m",
        "20",
        "-x",
        &format!("http://{player}"),
        "-w",
        "\n%{http_code}",
        "http://svid-app.spiffe.svc.cluster.local:8000/",
    ]);
    let text = stdout_of(&resp);
    let (body, code) = text.rsplit_once('\n').expect("status line");
    assert_eq!(
        code,
        "200",
        "{body}\n{}\n{}",
        String::from_utf8_lossy(&resp.stderr),
        mesh.log("app-svid-app.spiffe")
    );
    assert_eq!(body, want);
    let id = std::fs::read_to_string(out.join("spiffe-id")).expect("the app wrote its id");
    assert_eq!(id, want);

    // What py-spiffe got is usable: the chain verifies against the mesh root (which is the
    // bundle it was given), the leaf carries the id, and the key is the leaf's.
    let p = |f: &str| out.join(f).display().to_string();
    let root = mesh.state_dir.join("ca").join("root-cert.pem");
    let root = root.display().to_string();
    let verified = openssl_out(&["verify", "-CAfile", &root, &p("svid.pem")]);
    assert!(verified.trim_end().ends_with(": OK"), "{verified}");
    let bundle_ok = openssl_out(&["verify", "-CAfile", &p("bundle.pem"), &p("svid.pem")]);
    assert!(bundle_ok.trim_end().ends_with(": OK"), "{bundle_ok}");
    let san = openssl_out(&[
        "x509",
        "-in",
        &p("svid.pem"),
        "-noout",
        "-ext",
        "subjectAltName",
    ]);
    assert!(san.contains(&format!("URI:{want}")), "{san}");
    let leaf_key = openssl_out(&["x509", "-in", &p("svid.pem"), "-noout", "-pubkey"]);
    let key = openssl_out(&["pkey", "-in", &p("key.pem"), "-pubout"]);
    assert_eq!(leaf_key, key, "the private key belongs to the leaf");
}
