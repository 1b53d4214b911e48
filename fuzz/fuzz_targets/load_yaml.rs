//! Fuzzes the YAML loader and validator: any bytes (made text with
//! `String::from_utf8_lossy`, as a caller reading a file lossily would) must give
//! resources and/or located errors — never a panic, a stack overflow or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let result = weft_api::load_str(&text, "fuzz.yaml");
    let _ = weft_api::validate_all(&result.resources);
    for resource in &result.resources {
        let _ = weft_api::to_yaml_like_json(resource);
        let _ = resource.key();
    }
    let lines = yaml_line_count(&text);
    for error in &result.errors {
        let _ = error.to_string();
        assert!(
            error.line <= lines,
            "error past the end of the text ({lines} lines): {error}"
        );
        assert!(
            error.line > 0 || error.column == 0,
            "column without line: {error}"
        );
    }
});

/// Lines as YAML counts them: CRLF, LF and a lone CR each end one.
fn yaml_line_count(text: &str) -> usize {
    text.replace("\r\n", "\n").split(['\n', '\r']).count()
}
