//! `Reloader`: a folder loaded again and again (the control plane's watch) gives exactly
//! what a fresh `load_valid_report` gives after every kind of edit, while parsing only
//! the files that changed.

use std::fs;
use std::path::{Path, PathBuf};

use weft_api::{load_valid_report, Reloader};

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weft-api-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

fn corpus(file: &str) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/istio-corpus/valid");
    fs::read_to_string(dir.join(file)).expect("corpus file")
}

fn vs(name: &str, host: &str, weight: i64) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: default}}\n\
         spec:\n  hosts: [{host}]\n  http:\n  - route:\n    - destination: {{host: {host}, subset: v1}}\n      weight: {weight}\n    - destination: {{host: {host}, subset: v2}}\n      weight: {}\n",
        100 - weight
    )
}

/// The reloader's answer, compared field by field with a fresh load (errors in order).
fn same_as_fresh(reloader: &mut Reloader, dir: &Path) -> Result<usize, Vec<String>> {
    let fresh = load_valid_report(dir);
    let again = reloader.load(dir);
    match (&fresh, &again) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a.resources, b.resources);
            assert_eq!(a.unsupported, b.unsupported);
            assert_eq!(a.warnings, b.warnings);
        }
        (Err(a), Err(b)) => assert_eq!(a, b),
        _ => panic!("fresh load {fresh:?}, reload {again:?}"),
    }
    again.map(|v| v.resources.len())
}

#[test]
fn every_edit_reloads_to_what_a_fresh_load_gives() {
    let dir = scratch_dir("reload");
    fs::create_dir_all(dir.join("ns-a")).unwrap();
    fs::write(dir.join("ns-a/vs.yaml"), vs("reviews", "reviews", 90)).unwrap();
    fs::write(
        dir.join("ns-a/dr.yaml"),
        corpus("testdata-config__destination-rule-all.yaml"),
    )
    .unwrap();
    fs::write(
        dir.join("gw.yaml"),
        corpus("bookinfo__bookinfo-gateway.yaml"),
    )
    .unwrap();
    let mut reloader = Reloader::default();
    let first = same_as_fresh(&mut reloader, &dir).expect("loads");
    assert!(first >= 4, "{first} resources");

    // Unchanged, then one edit, then a file added, then one removed.
    assert_eq!(same_as_fresh(&mut reloader, &dir), Ok(first));
    let before = reloader.load(&dir).unwrap().resources;
    fs::write(dir.join("ns-a/vs.yaml"), vs("reviews", "reviews", 75)).unwrap();
    assert_eq!(same_as_fresh(&mut reloader, &dir), Ok(first));
    let after = reloader.load(&dir).unwrap().resources;
    assert_ne!(before, after, "the edit is seen");
    fs::write(dir.join("ns-a/vs2.yaml"), vs("ratings", "ratings", 50)).unwrap();
    assert_eq!(same_as_fresh(&mut reloader, &dir), Ok(first + 1));
    fs::remove_file(dir.join("ns-a/vs2.yaml")).unwrap();
    assert_eq!(same_as_fresh(&mut reloader, &dir), Ok(first));

    // Invalid (a weight over 100), a YAML syntax error, and a duplicate across files: the
    // same errors in the same order; fixed again, the same resources.
    fs::write(dir.join("ns-a/vs.yaml"), vs("reviews", "reviews", 150)).unwrap();
    assert!(same_as_fresh(&mut reloader, &dir).is_err());
    fs::write(dir.join("ns-a/bad.yaml"), "apiVersion: [\n").unwrap();
    let errors = same_as_fresh(&mut reloader, &dir).unwrap_err();
    assert!(errors.len() >= 2, "{errors:?}");
    fs::remove_file(dir.join("ns-a/bad.yaml")).unwrap();
    fs::write(dir.join("ns-a/vs.yaml"), vs("reviews", "reviews", 90)).unwrap();
    fs::write(dir.join("ns-a/copy.yaml"), vs("reviews", "reviews", 90)).unwrap();
    let errors = same_as_fresh(&mut reloader, &dir).unwrap_err();
    assert!(
        errors.iter().any(|e| e.contains("defined twice")),
        "{errors:?}"
    );
    fs::remove_file(dir.join("ns-a/copy.yaml")).unwrap();
    assert_eq!(same_as_fresh(&mut reloader, &dir), Ok(first));

    // A kind weft knows but does not support is reported as a fresh load reports it.
    fs::write(dir.join("unsupported.yaml"), "apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata: {name: f}\nspec: {}\n").unwrap();
    assert_eq!(same_as_fresh(&mut reloader, &dir), Ok(first));
    assert_eq!(reloader.load(&dir).unwrap().unsupported.len(), 1);
    fs::remove_dir_all(&dir).unwrap();
}
