//! End-to-end tests of `weft analyze` (the real binary): exit codes, rustc-style output
//! with file:line:col and a caret line, JSON output, stdin, thresholds, usage errors.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");

fn necpgame() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/necpgame")
}

fn weft(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(WEFT)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning weft");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).expect("writing stdin");
    }
    drop(input);
    child.wait_with_output().expect("waiting for weft")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A temp dir holding a copy of the example with `edit` applied to the gateway file.
fn broken_example(name: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weft-analyze-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    for entry in std::fs::read_dir(necpgame()).expect("example dir") {
        let path = entry.expect("entry").path();
        let mut content = std::fs::read_to_string(&path).expect("example file");
        if path.file_name().is_some_and(|n| n == "istio-gateway.yaml") {
            content = edit(content);
        }
        std::fs::write(dir.join(path.file_name().expect("name")), content).expect("write");
    }
    dir
}

/// A WorkloadGroup: loaded, but weft does not build it (reported as not enforced).
const WORKLOAD_GROUP: &str = "apiVersion: networking.istio.io/v1\nkind: WorkloadGroup\nmetadata: {name: bots, namespace: necpgame}\nspec:\n  metadata: {labels: {app: bots}}\n  template: {serviceAccount: bots}\n";

#[test]
fn necpgame_example_is_clean_and_what_is_not_enforced_is_said() {
    let out = weft(&["analyze", necpgame().to_str().unwrap()], None);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    // Everything in the example is built (its egress ServiceEntries included), so there
    // is nothing to say at any severity.
    assert!(!stdout.contains("error["), "{stdout}");
    assert!(!stdout.contains("warning["), "{stdout}");
    assert!(!stdout.contains("info["), "{stdout}");
    let strict = |dir: &std::path::Path| {
        weft(
            &["analyze", "--fail-threshold", "info", dir.to_str().unwrap()],
            None,
        )
    };
    assert_eq!(strict(&necpgame()).status.code(), Some(0));
    // Something weft loads but does not build: analyze says so instead of "no problems
    // found" (the same list `weft up` prints).
    let dir = broken_example("not-enforced", |s| s);
    std::fs::write(dir.join("workload-group.yaml"), WORKLOAD_GROUP).expect("write");
    let out = weft(&["analyze", dir.to_str().unwrap()], None);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("info[WA0200]: WorkloadGroup necpgame/bots"),
        "{stdout}"
    );
    assert!(
        stdout.contains("is loaded but not enforced yet"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("AuthorizationPolicy necpgame/"),
        "enforced policies are not listed: {stdout}"
    );
    assert!(stdout.contains("0 errors, 0 warnings,"), "{stdout}");
    assert_eq!(
        strict(&dir).status.code(),
        Some(1),
        "--fail-threshold info fails on what is not enforced"
    );
}

#[test]
fn broken_subset_shows_location_caret_and_help_and_exits_1() {
    let dir = broken_example("subset", |s| {
        s.replacen(
            "{host: inventory, subset: v2}\n      weight: 20",
            "{host: inventory, subset: v3}\n      weight: 20",
            1,
        )
    });
    let out = weft(&["analyze", dir.to_str().unwrap()], None);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let file = dir.join("istio-gateway.yaml");
    let lines: Vec<&str> = stdout.lines().collect();
    let head = lines
        .iter()
        .position(|l| {
            l.starts_with("error[WA0103]: VirtualService necpgame/necpgame-api: subset `v3`")
        })
        .unwrap_or_else(|| panic!("no WA0103 header in\n{stdout}"));
    assert_eq!(
        lines[head + 1],
        format!("  --> {}:46:46", file.display()),
        "{stdout}"
    );
    assert_eq!(
        lines[head + 3],
        "46 |     - destination: {host: inventory, subset: v3}"
    );
    assert_eq!(lines[head + 4], format!("   | {}^^", " ".repeat(45)));
    assert!(
        lines[head + 5].starts_with("   = help: defined subsets: `v1`, `v2`"),
        "{stdout}"
    );
    assert!(
        lines.last().unwrap().contains("1 error, 0 warnings, "),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn json_output_parses() {
    let dir = broken_example("json", |s| {
        s.replace("gateways: [necpgame-gateway]", "gateways: [nope]")
    });
    let out = weft(
        &["analyze", "--output", "json", dir.to_str().unwrap()],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    let all = v.as_array().expect("an array");
    // Exactly the one error.
    assert_eq!(all.len(), 1, "{v:#}");
    let f = &all[0];
    assert_eq!(f["code"], "WA0101");
    assert_eq!(
        f["istio_code"], "IST0101",
        "the istioctl code next to weft's"
    );
    assert_eq!(f["severity"], "error");
    assert_eq!(f["resource"], "VirtualService/necpgame/necpgame-api");
    assert_eq!(
        (f["line"].as_u64(), f["column"].as_u64()),
        (Some(31), Some(14))
    );
    assert!(f["file"].as_str().unwrap().ends_with("istio-gateway.yaml"));
    assert!(f["message"].as_str().unwrap().contains("does not exist"));
    assert!(f["suggestion"]
        .as_str()
        .unwrap()
        .contains("necpgame-gateway"));
    assert!(
        text(&out.stderr).contains("1 error"),
        "summary goes to stderr"
    );
    // A clean config: an empty array; with something not enforced, only that info.
    let out = weft(
        &["analyze", "--output", "json", necpgame().to_str().unwrap()],
        None,
    );
    assert_eq!(out.status.code(), Some(0));
    let clean: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(clean, serde_json::json!([]));
    std::fs::write(dir.join("workload-group.yaml"), WORKLOAD_GROUP).expect("write");
    let fixed = std::fs::read_to_string(dir.join("istio-gateway.yaml"))
        .unwrap()
        .replace("gateways: [nope]", "gateways: [necpgame-gateway]");
    std::fs::write(dir.join("istio-gateway.yaml"), fixed).unwrap();
    let out = weft(
        &["analyze", "--output", "json", dir.to_str().unwrap()],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let infos: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let infos = infos.as_array().expect("an array");
    assert!(!infos.is_empty());
    assert!(
        infos
            .iter()
            .all(|f| f["code"] == "WA0200" && f["severity"] == "info"),
        "{infos:#?}"
    );
}

#[test]
fn stdin_is_read_with_dash_and_parse_errors_point_at_the_column() {
    let yaml = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: ['*']\n    bogus: 1\n";
    let out = weft(&["analyze", "-"], Some(yaml));
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("error[WA0001]: unknown field `bogus`"),
        "{stdout}"
    );
    assert!(stdout.contains(" --> <stdin>:8:5\n"), "{stdout}");
    assert!(
        stdout.contains("8 |     bogus: 1\n  |     ^^^^^\n"),
        "{stdout}"
    );
}

const WARNING_ONLY: &str = "\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ghost, namespace: shop}
spec:
  host: ghost.example.org
";

#[test]
fn fail_threshold_warning_flips_the_exit_code() {
    let out = weft(&["analyze", "-"], Some(WARNING_ONLY));
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("warning[WA0114]"), "{stdout}");
    let out = weft(
        &["analyze", "--fail-threshold", "warning", "-"],
        Some(WARNING_ONLY),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
}

#[test]
fn usage_errors_exit_2() {
    let out = weft(&["analyze", "/definitely/not/here.yaml"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("path `/definitely/not/here.yaml` does not exist"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(weft(&["analyze"], None).status.code(), Some(2));
    assert_eq!(
        weft(&["analyze", "--fail-threshold", "fatal", "-"], Some(""))
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn invalid_utf8_is_reported_at_its_line_and_column() {
    let doc = b"apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: a, namespace: b}\nspec:\n  hosts: [x\xff.example]\n";
    let dir = std::env::temp_dir().join(format!("weft-analyze-utf8-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("bad.yaml");
    std::fs::write(&file, doc).expect("write");
    let out = weft(&["analyze", file.to_str().unwrap()], None);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("invalid UTF-8"), "{stdout}");
    assert!(stdout.contains("bad.yaml:5:12"), "{stdout}");
    let mut child = std::process::Command::new(WEFT)
        .args(["analyze", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawning weft");
    child.stdin.take().unwrap().write_all(doc).unwrap();
    let piped = child.wait_with_output().unwrap();
    assert!(
        text(&piped.stdout).contains("<stdin>:5:12"),
        "{}",
        text(&piped.stdout)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn known_kinds_weft_does_not_support_are_named_never_unknown() {
    let docs = "apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata: {name: ef, namespace: default}\nspec: {}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r, namespace: default}\nspec: {}\n---\napiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: {name: w, namespace: default}\nspec: {}\n";
    let out = weft(&["analyze", "-"], Some(docs));
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(!stdout.contains("unknown kind"), "{stdout}");
    for kind in ["EnvoyFilter", "HTTPRoute", "WasmPlugin"] {
        assert!(
            stdout.contains(&format!("{kind} is not supported by weft")),
            "{kind}: {stdout}"
        );
    }
    assert!(stdout.contains("info[WA0201]"), "{stdout}");
    // A wrong apiVersion for a known kind says so; an unknown kind lists its group's kinds.
    let wrong =
        "apiVersion: networking.istio.io/v1\nkind: EnvoyFilter\nmetadata: {name: ef}\nspec: {}\n";
    let out = weft(&["analyze", "-"], Some(wrong));
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("unsupported apiVersion `networking.istio.io/v1` for EnvoyFilter; expected one of networking.istio.io/v1alpha3"),
        "{stdout}"
    );
    let unknown =
        "apiVersion: networking.istio.io/v1\nkind: VirtualServce\nmetadata: {name: x}\nspec: {}\n";
    let stdout = text(&weft(&["analyze", "-"], Some(unknown)).stdout);
    assert!(stdout.contains("unknown kind `VirtualServce`"), "{stdout}");
    for kind in [
        "VirtualService",
        "Gateway",
        "EnvoyFilter",
        "WorkloadGroup",
        "ProxyConfig",
    ] {
        assert!(
            stdout.contains(kind),
            "the group's kinds include {kind}: {stdout}"
        );
    }
}

#[test]
fn a_kubernetes_service_in_the_folder_defines_its_host() {
    // What Istio's own task YAML looks like: a Service, and a VirtualService routing to it.
    let docs = "apiVersion: v1\nkind: Service\nmetadata: {name: reviews, namespace: shop, labels: {app: reviews}}\nspec:\n  selector: {app: reviews}\n  ports:\n  - {name: http, port: 9080, targetPort: 9080}\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews, namespace: shop}\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews}\n";
    let out = weft(&["analyze", "-"], Some(docs));
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        !stdout.contains("WA0102"),
        "the Service defines reviews: {stdout}"
    );
    assert!(!stdout.contains("non-Istio documents skipped"), "{stdout}");
    // Without the Service the host is missing.
    let vs_only = docs.split("---\n").nth(1).unwrap();
    let out = weft(&["analyze", "-"], Some(vs_only));
    assert!(
        text(&out.stdout).contains("WA0102"),
        "{}",
        text(&out.stdout)
    );
}
