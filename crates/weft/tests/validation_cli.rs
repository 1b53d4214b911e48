//! `weft analyze` (the real binary) on validation no stricter and no looser than Istio:
//! what Istio accepts with a warning loads and is reported as a warning (deprecated field,
//! ignored setting, Istio's own validation warning; exit 0), what Istio rejects is an error
//! at its file:line (exit 1).

use std::io::Write;
use std::process::{Command, Output, Stdio};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");

fn analyze(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(WEFT)
        .arg("analyze")
        .args(args)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning weft");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.as_bytes()).expect("writing stdin");
    drop(input);
    child.wait_with_output().expect("waiting for weft")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Three things Istio accepts and warns about, each of another kind.
const WARNINGS: &str = "\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: old, namespace: shop}
spec:
  host: reviews.shop.svc.cluster.local
  trafficPolicy:
    outlierDetection: {consecutiveErrors: 5}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: s, namespace: shop}
spec:
  egress:
  - bind: 127.0.0.1
    hosts: [\"./*\"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-post, namespace: shop}
spec:
  action: DENY
  rules:
  - to:
    - operation: {methods: [POST]}
";

#[test]
fn what_istio_accepts_with_a_warning_loads_and_is_reported_as_a_warning() {
    let out = analyze(&[], WARNINGS);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(!stdout.contains("error["), "{stdout}");
    for (code, gist, line) in [
        ("WA0003", "consecutiveErrors is deprecated", 7),
        ("WA0116", "bind without a port is ignored", 14),
        ("WA0004", "denies all traffic to TCP ports", 23),
    ] {
        assert!(
            stdout.contains(&format!("warning[{code}]")) && stdout.contains(gist),
            "{code}: {stdout}"
        );
        assert!(
            stdout.contains(&format!("<stdin>:{line}:")),
            "{code} at line {line}: {stdout}"
        );
    }
    let failed = analyze(&["--fail-threshold", "warning"], WARNINGS);
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed.stdout));

    let json = analyze(&["--output", "json"], WARNINGS);
    let findings: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON findings");
    let istio: Vec<&str> = findings
        .as_array()
        .expect("an array")
        .iter()
        .filter(|f| f["severity"] == "warning")
        .filter_map(|f| f["istio_code"].as_str())
        .collect();
    assert!(
        istio.contains(&"IST0002") && istio.contains(&"IST0133"),
        "{findings:#}"
    );
}

#[test]
fn what_istio_rejects_is_an_error_at_its_line() {
    // Istio requires a Gateway server port name (the CRD and validateServerPort).
    let gw = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: shop}\nspec:\n  servers:\n  - port: {number: 80, protocol: HTTP}\n    hosts: [\"*\"]\n";
    let out = analyze(&[], gw);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("error[WA0002]"), "{stdout}");
    assert!(stdout.contains("server port name must be set"), "{stdout}");
    assert!(stdout.contains("<stdin>:6:"), "{stdout}");

    // A rule weft used to refuse and Istio accepts now loads clean: a Host header set on
    // requests (Istio treats it as the authority).
    let vs = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v, namespace: shop}\nspec:\n  hosts: [a.example.com]\n  gateways: [gw]\n  http:\n  - headers: {request: {set: {Host: b.example.com}}}\n    route:\n    - destination: {host: a.example.com}\n";
    let named = gw.replace("protocol: HTTP}", "name: http, protocol: HTTP}");
    let out = analyze(&[], &format!("{named}---\n{vs}"));
    let stdout = text(&out.stdout);
    assert!(!stdout.contains("error[WA0002]"), "{stdout}");
}

#[test]
fn weft_up_prints_the_warnings_on_its_terminal() {
    // The folder loads (a deprecated field is a warning); its WorkloadEntry names an app
    // kind weft does not know, so `weft up` stops at planning — after the config report,
    // before starting any process.
    let dir = std::env::temp_dir().join(format!("weft-validation-up-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let we = "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: reviews\n  namespace: shop\n  annotations: {weft.dev/run: nope}\nspec:\n  address: 127.0.0.1\n  labels: {app: reviews}\n";
    std::fs::write(dir.join("mesh.yaml"), format!("{WARNINGS}---\n{we}")).expect("write");
    let out = Command::new(WEFT)
        .args(["up", dir.to_str().unwrap(), "--state-dir"])
        .arg(dir.join(".state"))
        .stdin(Stdio::null())
        .output()
        .expect("running weft up");
    let stderr = text(&out.stderr);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("weft: config warnings (3 items"),
        "{stderr}"
    );
    assert!(
        stderr.contains("mesh.yaml:7:") && stderr.contains("deprecated: DestinationRule/shop/old"),
        "{stderr}"
    );
    assert!(
        stderr.contains("is not one of demo-app, command"),
        "{stderr}"
    );
}
