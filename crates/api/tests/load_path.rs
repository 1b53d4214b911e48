//! `load_path` on folders: recursion, ordering, hidden entries, I/O errors.

use std::fs;
use std::path::PathBuf;

use weft_api::load_path;

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weft-api-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

fn gateway(name: &str) -> String {
    format!("apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: {name}}}\n")
}

#[test]
fn folders_are_loaded_recursively_in_sorted_order_skipping_hidden_entries() {
    let dir = scratch_dir("tree");
    fs::create_dir_all(dir.join("sub/deeper")).unwrap();
    fs::create_dir_all(dir.join(".hidden")).unwrap();
    fs::write(dir.join("b.yaml"), gateway("b")).unwrap();
    fs::write(dir.join("a.yml"), gateway("a")).unwrap();
    fs::write(dir.join("sub/deeper/c.YAML"), gateway("c")).unwrap();
    fs::write(dir.join("sub/notes.txt"), "not yaml").unwrap();
    fs::write(dir.join(".dot.yaml"), gateway("hidden-file")).unwrap();
    fs::write(dir.join(".hidden/d.yaml"), gateway("hidden-dir")).unwrap();
    fs::write(dir.join("sub/bad.yaml"), "apiVersion: [\n").unwrap();

    let result = load_path(&dir);
    let names: Vec<&str> = result.resources.iter().map(|r| r.name()).collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert_eq!(result.errors.len(), 1, "{:?}", result.errors);
    assert!(result.errors[0].file.ends_with("bad.yaml"));
    assert_eq!(result.errors[0].line, 1);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_single_file_and_a_missing_path() {
    let dir = scratch_dir("single");
    let file = dir.join("gw.yaml");
    fs::write(&file, gateway("x")).unwrap();
    let result = load_path(&file);
    assert_eq!(result.resources.len(), 1);
    assert_eq!(result.resources[0].source.file, file.display().to_string());

    let missing = load_path(&dir.join("missing.yaml"));
    assert_eq!(missing.errors.len(), 1);
    assert!(missing.errors[0]
        .to_string()
        .contains("missing.yaml: cannot read"));
    let _ = fs::remove_dir_all(&dir);
}
