//! Every file of the shared Istio corpus must load; invalid files must not panic.

use std::path::PathBuf;

use weft_api::{load_path, load_str, Kind};

fn corpus() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/istio-corpus");
    assert!(
        dir.is_dir(),
        "Istio corpus not found at {} (it must sit beside the repository)",
        dir.display()
    );
    dir
}

fn yaml_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    files
}

/// Counts `kind:` lines at column 0 (one per document in this corpus).
fn count_kind_lines(text: &str) -> usize {
    text.lines().filter(|l| l.starts_with("kind:")).count()
}

#[test]
fn every_valid_file_loads_without_errors() {
    let files = yaml_files(&corpus().join("valid"));
    assert_eq!(files.len(), 101, "expected the 101 valid corpus files");
    let (mut resources, mut skipped) = (0, 0);
    let mut per_kind = std::collections::BTreeMap::<Kind, usize>::new();
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("readable corpus file");
        let result = load_str(&text, &file.display().to_string());
        failures.extend(result.errors.iter().map(|e| e.to_string()));
        assert_eq!(
            result.resources.len() + result.skipped.len(),
            count_kind_lines(&text),
            "every document of {} must be typed or skipped",
            file.display()
        );
        for s in &result.skipped {
            assert!(
                !s.api_version.contains("istio.io"),
                "{}: Istio document skipped",
                s.source
            );
        }
        for r in &result.resources {
            assert_eq!(r.kind, r.spec.kind());
            assert!(!r.name().is_empty());
            *per_kind.entry(r.kind).or_default() += 1;
        }
        resources += result.resources.len();
        skipped += result.skipped.len();
    }
    println!(
        "valid corpus: {} files, {resources} resources, {skipped} skipped",
        files.len()
    );
    for (kind, n) in &per_kind {
        println!("  {kind}: {n}");
    }
    assert!(
        failures.is_empty(),
        "errors in valid corpus:\n{}",
        failures.join("\n")
    );
    assert_eq!(per_kind.len(), 10, "all ten kinds are represented");
}

#[test]
fn load_path_on_valid_folder_matches_per_file_loading() {
    let result = load_path(&corpus().join("valid"));
    assert!(result.errors.is_empty(), "{:?}", result.errors);
    let mut files: Vec<&str> = result
        .resources
        .iter()
        .map(|r| r.source.file.as_str())
        .collect();
    files.dedup();
    let mut sorted = files.clone();
    sorted.sort();
    assert_eq!(files, sorted, "files are loaded in sorted order");
}

#[test]
fn invalid_files_do_not_panic() {
    let files = yaml_files(&corpus().join("invalid"));
    assert!(!files.is_empty());
    let (mut with_errors, mut loaded) = (0, 0);
    for file in &files {
        let text = std::fs::read_to_string(file).expect("readable corpus file");
        let result = load_str(&text, &file.display().to_string());
        if result.errors.is_empty() {
            loaded += 1;
        } else {
            with_errors += 1;
            for e in &result.errors {
                println!("{e}");
            }
        }
    }
    println!(
        "invalid corpus: {} files, {with_errors} rejected at load time, {loaded} left for validation",
        files.len()
    );
}
