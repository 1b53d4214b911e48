//! Hostile input: every class of malformed or resource-exhausting YAML must give a
//! located `LoadError` (never a panic, a stack overflow or a hang), and must do so
//! quickly. Each load runs on its own thread with the default (2 MiB) stack, the
//! same as a tokio worker, and must finish within `DEADLINE`.
//!
//! Limits enforced by the loader (see `crates/api/src/loader.rs`): 16 MiB of text per
//! file, 10,000 documents per file, no control characters, nesting depth 64, and after
//! alias expansion 1,000,000 nodes and 64 MiB of scalar text per file, 250,000 nodes
//! and 100,000 alias-replayed events per document.

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use weft_api::{load_str, validate_all, LoadError, LoadResult};

/// A hang (a billion laughs fully expanded, a quadratic blow-up) takes minutes to
/// hours; the slowest case here, spending the whole per-file node budget, takes about
/// 0.3 s in a release build and 2.5 s in a debug build — up to 23 s with a 2-core CPU at
/// load average 9 (seen while the whole suite ran). The deadline only tells a hang apart.
const DEADLINE: Duration = Duration::from_secs(if cfg!(debug_assertions) { 90 } else { 20 });

/// Loads (and validates) `text` on a fresh 2 MiB-stack thread; fails the test if it
/// panics, overflows its stack (which aborts the whole test binary), or takes longer
/// than `DEADLINE`.
fn load_within_deadline(name: &str, text: String) -> LoadResult {
    let (tx, rx) = mpsc::channel();
    let start = Instant::now();
    let file = format!("{name}.yaml");
    thread::Builder::new()
        .name(name.to_owned())
        .stack_size(2 * 1024 * 1024)
        .spawn(move || {
            let result = load_str(&text, &file);
            let _ = validate_all(&result.resources);
            let _ = tx.send(result);
        })
        .expect("spawn loader thread");
    match rx.recv_timeout(DEADLINE) {
        Ok(result) => {
            eprintln!("{name}: {:?}", start.elapsed());
            result
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("{name}: load did not finish within {DEADLINE:?} (hang)")
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{name}: the loader panicked"),
    }
}

/// The load must fail with at least one located error whose message contains `needle`.
fn expect_error(name: &str, text: String, needle: &str) -> LoadError {
    let result = load_within_deadline(name, text);
    assert!(
        result.resources.is_empty(),
        "{name}: expected no resources, got {}",
        result.resources.len()
    );
    let error = result
        .errors
        .iter()
        .find(|e| e.message.contains(needle))
        .unwrap_or_else(|| {
            let shown: Vec<String> = result
                .errors
                .iter()
                .take(5)
                .map(|e| truncate(&e.to_string()))
                .collect();
            panic!("{name}: expected an error containing {needle:?}, got {shown:#?}")
        })
        .clone();
    assert!(
        error.message.len() < 4096,
        "{name}: error message is {} bytes long",
        error.message.len()
    );
    error
}

fn truncate(s: &str) -> String {
    s.chars().take(300).collect()
}

const GATEWAY: &str = "\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: gw
spec:
  servers:
  - port:
      number: 80
      name: http
      protocol: HTTP
    hosts:
    - \"*\"
";

// ---------------------------------------------------------------------------
// Alias bombs

#[test]
fn billion_laughs_is_rejected() {
    let mut text = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..=9 {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    let error = expect_error("billion_laughs", text, "alias");
    assert!(error.line > 0, "{error}");
}

#[test]
fn billion_laughs_inside_a_resource_is_rejected() {
    // The bomb hides in a free-form labels map of an otherwise valid Gateway.
    let mut text = String::from(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: gw\n  x: \
         &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n",
    );
    for i in 1..=12 {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        text.push_str(&format!("  x{i}: &a{i} [{refs}]\n"));
    }
    expect_error("billion_laughs_resource", text, "alias");
}

#[test]
fn alias_bomb_split_over_many_documents_is_bounded() {
    // Each document stays under the per-document alias limit; the per-file node
    // budget still stops the stream.
    let mut doc = String::from("---\na0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..=3 {
        let refs = vec![format!("*a{}", i - 1); 9].join(", ");
        doc.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    let text = doc.repeat(5_000);
    expect_error("alias_bomb_many_docs", text, "too many YAML nodes");
}

#[test]
fn alias_with_long_key_replayed_many_times_is_bounded() {
    // Each replay copies a 1 MiB key: without a byte budget on the expanded tree this
    // builds gigabytes of keys (and of the paths derived from them).
    let key = "k".repeat(1024 * 1024);
    let refs = vec!["*h"; 5_000].join(", ");
    let text = format!("a: &h {{{key}: v}}\nb: [{refs}]\n");
    expect_error("alias_long_key", text, "too much scalar text");
}

#[test]
fn long_keys_above_deep_subtrees_are_bounded() {
    // Every node below a key carries that key in its path (decoding, position index):
    // a 64 KiB key above 58 levels, replayed by 20 aliases, would cost ~75 MB of paths
    // from a 64 KiB document (gigabytes with a 1 MiB key).
    let key = "k".repeat(64 * 1024);
    let refs = vec!["*a"; 20].join(", ");
    let text = GATEWAY.replacen(
        "  name: gw\n",
        &format!(
            "  name: gw\n  managedFields: [&a {{{key}: {}x{}}}, {refs}]\n",
            "[".repeat(58),
            "]".repeat(58)
        ),
        1,
    );
    expect_error("long_keys_deep", text, "too complex");
}

#[test]
fn aliases_nesting_beyond_the_depth_limit_are_rejected() {
    // Every anchor is 50 levels deep and wraps the previous one: parsed depth stays
    // under the limit, the expanded tree does not.
    let mut text = String::new();
    text.push_str(&format!("a0: &a0 {}x{}\n", "[".repeat(50), "]".repeat(50)));
    for i in 1..40 {
        text.push_str(&format!(
            "a{i}: &a{i} {}*a{}{}\n",
            "[".repeat(50),
            i - 1,
            "]".repeat(50)
        ));
    }
    expect_error("alias_depth", text, "nesting is too deep");
}

// ---------------------------------------------------------------------------
// Deep nesting

#[test]
fn deep_flow_sequences_are_rejected() {
    let text = format!("{}x{}\n", "[".repeat(10_000), "]".repeat(10_000));
    expect_error("deep_flow_seq", text, "nest");
}

#[test]
fn deep_flow_mappings_are_rejected() {
    let text = format!("{}x{}\n", "{a: ".repeat(10_000), "}".repeat(10_000));
    expect_error("deep_flow_map", text, "nest");
}

#[test]
fn deep_block_sequences_are_rejected() {
    let text = format!("{}x\n", "- ".repeat(10_000));
    expect_error("deep_block_seq", text, "nest");
}

#[test]
fn deep_block_mappings_are_rejected() {
    let mut text = String::new();
    for depth in 0..3_000 {
        text.push_str(&" ".repeat(depth));
        text.push_str("a:\n");
    }
    expect_error("deep_block_map", text, "nest");
}

#[test]
fn deep_unclosed_flow_is_rejected() {
    let text = "[{".repeat(10_000);
    expect_error("deep_unclosed", text, "");
}

#[test]
fn nesting_just_under_the_limit_inside_a_resource_does_not_overflow() {
    // metadata.managedFields holds arbitrary JSON: 60 levels below it (63 in all) is
    // a valid resource, decoded, indexed, validated and serialized recursively.
    let text = GATEWAY.replacen(
        "  name: gw\n",
        &format!(
            "  name: gw\n  managedFields: [{}x{}]\n",
            "[".repeat(60),
            "]".repeat(60)
        ),
        1,
    );
    let (tx, rx) = mpsc::channel();
    thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(move || {
            let result = load_str(&text, "near_limit.yaml");
            let _ = validate_all(&result.resources);
            let json: Vec<_> = result
                .resources
                .iter()
                .map(weft_api::to_yaml_like_json)
                .collect();
            let copy = result.clone();
            drop(json);
            let _ = tx.send(copy);
        })
        .expect("spawn");
    let result = rx.recv_timeout(DEADLINE).expect("no panic, no hang");
    assert!(result.errors.is_empty(), "{:?}", result.errors);
    assert_eq!(result.resources.len(), 1);

    // One level more is refused before anything recurses.
    let text = GATEWAY.replacen(
        "  name: gw\n",
        &format!(
            "  name: gw\n  managedFields: [{}x{}]\n",
            "[".repeat(62),
            "]".repeat(62)
        ),
        1,
    );
    expect_error("over_limit", text, "nesting is too deep");
}

// ---------------------------------------------------------------------------
// Sizes and counts

#[test]
fn huge_scalar_is_rejected_with_a_size_error() {
    let text = format!("{GATEWAY}  x: \"{}\"\n", "x".repeat(50 * 1024 * 1024));
    let error = expect_error("huge_scalar", text, "too large");
    assert_eq!((error.line, error.column), (0, 0));
    assert!(error.message.contains("16 MiB"), "{error}");
}

#[test]
fn large_scalar_under_the_size_limit_loads() {
    // A 4 MiB annotation is legal and loads.
    let text = format!(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: gw\n  \
         annotations:\n    big: \"{}\"\nspec: {{}}\n",
        "x".repeat(4 * 1024 * 1024)
    );
    let result = load_within_deadline("large_scalar", text);
    assert!(result.errors.is_empty(), "{:?}", result.errors.first());
    assert_eq!(result.resources.len(), 1);
}

#[test]
fn too_many_documents_are_rejected() {
    let text = "---\na: 1\n".repeat(100_000);
    let error = expect_error("many_docs", text, "too many YAML documents");
    assert!(error.line > 0, "{error}");
}

#[test]
fn too_many_empty_documents_are_rejected() {
    let text = "---\n".repeat(100_000);
    expect_error("many_empty_docs", text, "too many YAML documents");
}

#[test]
fn many_valid_documents_under_the_limit_load() {
    let doc = format!("---\n{GATEWAY}");
    let text = doc.repeat(1_000);
    let result = load_within_deadline("many_valid_docs", text);
    assert!(result.errors.is_empty(), "{:?}", result.errors.first());
    assert_eq!(result.resources.len(), 1_000);
}

#[test]
fn huge_flat_sequence_is_rejected() {
    let text = format!("[{}1]\n", "1,".repeat(300_000));
    expect_error("huge_flat_seq", text, "too many");
}

#[test]
fn huge_flat_mapping_is_bounded() {
    // 150,000 distinct keys: must not go quadratic (duplicate-key checks).
    let mut text = String::with_capacity(4 * 1024 * 1024);
    for i in 0..150_000 {
        text.push_str(&format!("k{i}: {i}\n"));
    }
    load_within_deadline("huge_flat_map", text);
}

#[test]
fn many_unknown_top_level_fields_are_bounded() {
    let mut text = String::from(GATEWAY);
    for i in 0..100_000 {
        text.push_str(&format!("x{i}: 1\n"));
    }
    expect_error("many_unknown_fields", text, "unknown field");
}

// ---------------------------------------------------------------------------
// Encoding

/// Deterministic xorshift bytes.
fn pseudo_random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn invalid_utf8_converted_lossily_is_an_error() {
    let mut bytes = GATEWAY.as_bytes().to_vec();
    // Corrupt the `kind:` key and the name with invalid UTF-8 sequences.
    let kind = GATEWAY.find("kind").unwrap();
    bytes[kind + 1] = 0xff;
    let name = GATEWAY.find("gw").unwrap();
    bytes[name] = 0xc3;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    assert!(text.contains('\u{fffd}'));
    let error = expect_error("lossy_utf8", text, "kind");
    assert!(error.line > 0, "{error}");
}

#[test]
fn random_bytes_converted_lossily_do_not_panic() {
    for seed in 1..=50u64 {
        let bytes = pseudo_random_bytes(seed, 4096);
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let result = load_within_deadline(&format!("random_{seed}"), text);
        assert!(result.resources.is_empty());
    }
}

#[test]
fn nul_byte_is_an_error() {
    let text = GATEWAY.replace("name: gw", "name: g\0w");
    let error = expect_error("nul_byte", text, "");
    assert!(error.line > 0, "{error}");
}

#[test]
fn bom_at_the_start_loads() {
    let text = format!("\u{feff}{GATEWAY}");
    let result = load_within_deadline("bom", text);
    assert!(result.errors.is_empty(), "{:?}", result.errors);
    assert_eq!(result.resources.len(), 1);
}

#[test]
fn bom_in_the_middle_does_not_panic() {
    let text = format!("{GATEWAY}---\n\u{feff}{GATEWAY}\n\u{feff}\u{feff}x: [\u{feff}]\n");
    load_within_deadline("bom_middle", text);
}

#[test]
fn crlf_line_endings_load() {
    let text = format!("{GATEWAY}---\n{GATEWAY}").replace('\n', "\r\n");
    let result = load_within_deadline("crlf", text);
    assert!(result.errors.is_empty(), "{:?}", result.errors);
    assert_eq!(result.resources.len(), 2);
    assert_eq!(result.resources[1].source.line, 14);
}

#[test]
fn crlf_errors_keep_their_positions() {
    let text = format!("{GATEWAY}    bogus: 1\n").replace('\n', "\r\n");
    let error = expect_error("crlf_error", text, "unknown field `bogus`");
    assert_eq!((error.line, error.column), (13, 5), "{error}");
}

#[test]
fn lone_carriage_returns_do_not_panic() {
    load_within_deadline("lone_cr", GATEWAY.replace('\n', "\r"));
    load_within_deadline("mixed_cr", GATEWAY.replace("\n  ", "\r\n  \r"));
}

// ---------------------------------------------------------------------------
// Whitespace and indentation

#[test]
fn tab_indentation_is_an_error_with_a_position() {
    let text = GATEWAY.replace("  servers:", "\tservers:");
    let error = expect_error("tabs", text, "");
    assert!(error.line >= 5 && error.column > 0, "{error}");
}

#[test]
fn tab_inside_nested_block_is_an_error_with_a_position() {
    let text = GATEWAY.replace("      number: 80", "\t\tnumber: 80");
    let error = expect_error("tabs_nested", text, "");
    assert!(error.line >= 7 && error.column > 0, "{error}");
}

#[test]
fn weird_indentation_is_an_error_with_a_position() {
    for (name, text) in [
        (
            "dedent_mid_map",
            GATEWAY.replace("      name: http", "     name: http"),
        ),
        (
            "overindent",
            GATEWAY.replace("  servers:", "  servers:\n      - x\n    - y"),
        ),
        ("key_after_seq", format!("{GATEWAY}  - stray\n")),
        ("unterminated_quote", GATEWAY.replace("\"*\"", "\"*")),
        ("lone_colon", format!("{GATEWAY}:\n")),
    ] {
        let error = expect_error(name, text, "");
        assert!(error.line > 0, "{name}: {error}");
    }
}

#[test]
fn document_markers_in_odd_places_do_not_panic() {
    for text in [
        "---",
        "...",
        "--- ---",
        "---\n...\n---\n...",
        "--- |\n  x\n",
        "... x\n",
        "---\t\n",
        "key: ---\n",
        "- ---\n",
        "---\r\n---\r\n",
        "%YAML 1.2\n---\n",
        "%YAML 1.2\n%YAML 1.2\n---\n",
        "%TAG ! !x\n---\n!a b\n",
        "--- &a\n",
        "*a\n",
    ] {
        load_within_deadline("markers", text.to_owned());
    }
}

#[test]
fn odd_scalars_and_tags_do_not_panic() {
    for text in [
        "!!binary AAAA",
        "x: !!binary \"%%%\"",
        "x: !!int abc",
        "x: !!float 1e999999",
        "x: 0x7fffffffffffffffffffff",
        "x: -9223372036854775809",
        "x: 18446744073709551616",
        "? [a, b]\n: c",
        "? {a: b}\n: c",
        "{? a}",
        "<<: *nope",
        "<<: [1, 2]",
        "a: &x 1\n<<: *x",
        "a: !custom {b: c}",
        "&a [*a]",
        "a: |9\n x",
        "a: >-\n\n\n",
        "\"\\uD800\"",
        "\"\\U0010FFFF\\U00110000\"",
    ] {
        load_within_deadline("odd_scalars", text.to_owned());
        let resource = format!("{GATEWAY}  {}", text.replace('\n', "\n  "));
        load_within_deadline("odd_scalars_in_resource", resource);
    }
}

// ---------------------------------------------------------------------------
// Fuzzer findings

/// Every input the fuzzer (`fuzz/fuzz_targets/load_yaml.rs`) once failed on, checked
/// with the same invariants: no panic, no hang, errors located inside the text.
#[test]
fn fuzz_regressions() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions/load_yaml");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no regression inputs in {}",
        dir.display()
    );
    for file in files {
        let bytes = std::fs::read(&file).expect("readable regression input");
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let lines = yaml_line_count(&text);
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let result = load_within_deadline(&name, text);
        for error in &result.errors {
            assert!(
                error.line <= lines,
                "{name}: error past the end ({lines} lines): {error}"
            );
            assert!(error.line > 0 || error.column == 0, "{name}: {error}");
        }
    }
}

#[test]
fn error_at_the_end_without_a_final_line_break_points_inside_the_text() {
    let text = format!("{GATEWAY}    bogus");
    let error = expect_error("eof_no_newline", text, "");
    assert_eq!(error.line, 13, "{error}");
}

/// Lines as YAML counts them: CRLF, LF and a lone CR each end one.
fn yaml_line_count(text: &str) -> usize {
    text.replace("\r\n", "\n").split(['\n', '\r']).count()
}
