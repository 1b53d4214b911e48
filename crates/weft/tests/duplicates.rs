//! Two resources with the same kind, namespace and name in different files (what
//! `kubectl apply` of two files produces) through the real binary: `weft up` refuses to
//! load the folder naming both places, and `weft analyze` reports it as its own finding.

use std::path::PathBuf;
use std::process::{Command, Stdio};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");

/// A copy of the example with `routes-copy.yaml` defining the gateway's VirtualService again.
fn example_with_a_duplicate(tag: &str) -> PathBuf {
    let example = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/necpgame");
    let dir = std::env::temp_dir().join(format!("weft-dup-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    for entry in std::fs::read_dir(&example).expect("example dir") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, dir.join(path.file_name().expect("name"))).expect("copy");
    }
    let gateway = std::fs::read_to_string(dir.join("istio-gateway.yaml")).expect("gateway file");
    let vs = gateway
        .split("\n---")
        .find(|doc| doc.contains("kind: VirtualService"))
        .expect("the example's VirtualService");
    std::fs::write(
        dir.join("routes-copy.yaml"),
        format!("# a second copy\n{}\n", vs.trim()),
    )
    .expect("write the copy");
    dir
}

#[test]
fn weft_up_refuses_a_folder_with_a_duplicate_naming_both_places() {
    let dir = example_with_a_duplicate("up");
    let state = dir.join(".state");
    let out = Command::new(WEFT)
        .args([
            "up",
            dir.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .output()
        .expect("running weft up");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success(),
        "weft up must refuse the folder:\n{all}"
    );
    assert!(
        all.contains("routes-copy.yaml:") && all.contains("istio-gateway.yaml:"),
        "both places are named:\n{all}"
    );
    assert!(all.contains("is defined twice"), "{all}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn weft_analyze_reports_a_duplicate_as_its_own_finding() {
    let dir = example_with_a_duplicate("analyze");
    let out = Command::new(WEFT)
        .args(["analyze", dir.to_str().unwrap()])
        .stdin(Stdio::null())
        .output()
        .expect("running weft analyze");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("error[WA0115]"), "{stdout}");
    assert!(stdout.contains("routes-copy.yaml:"), "{stdout}");
    assert!(stdout.contains("is defined twice: here and at"), "{stdout}");
    let json = Command::new(WEFT)
        .args(["analyze", "--output", "json", dir.to_str().unwrap()])
        .stdin(Stdio::null())
        .output()
        .expect("running weft analyze --output json");
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json output");
    let text = v.to_string();
    assert!(text.contains("WA0115"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
