//! Benchmark: `weft analyze`'s text output against its JSON output for many findings, and
//! text at twice the findings — the ratios show the text renderer staying linear (each
//! finding looks its line up in an index, never rescans the file).
//!
//! `cargo run --release -p weft-analyze --example bench_render [-- FINDINGS]` (default
//! 20,000: one VirtualService per finding, routing to an undefined subset).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// VirtualServices `from..to` in one file, each routing to a subset no DestinationRule
/// defines.
fn mesh(from: usize, to: usize) -> String {
    let mut out = String::new();
    for i in from..to {
        let _ = write!(
            out,
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: vs{i}, namespace: shop}}\nspec:\n  hosts: [svc{i}]\n  http:\n  - route:\n    - destination: {{host: svc{i}.shop.svc.cluster.local, subset: v9}}\n---\n"
        );
    }
    out
}

/// (findings, text time, JSON time) for a mesh with about `n` findings.
fn measure(n: usize) -> (usize, Duration, Duration) {
    // Files of 5,000 documents (the loader bounds the nodes of one file).
    let mut loaded = weft_api::LoadResult::default();
    let mut sources = weft_analyze::render::Sources::default();
    for (k, from) in (0..n).step_by(5_000).enumerate() {
        let file = format!("bench-{k}.yaml");
        let yaml = mesh(from, (from + 5_000).min(n));
        loaded.extend(weft_api::load_str(&yaml, &file));
        sources.insert(&file, yaml);
    }
    assert!(loaded.errors.is_empty(), "{:?}", &loaded.errors[..1]);
    let findings = weft_analyze::findings_for(&loaded);
    let t = Instant::now();
    let text = weft_analyze::render::human(&findings, &mut sources, false);
    let t_text = t.elapsed();
    let t = Instant::now();
    let json = weft_analyze::render::json(&findings);
    let t_json = t.elapsed();
    assert!(text.len() > findings.len() && json.len() > findings.len());
    (findings.len(), t_text, t_json)
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let (f1, text1, json1) = measure(n);
    let (f2, text2, _) = measure(2 * n);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "findings: {f1}: text {:.1} ms, JSON {:.1} ms",
        ms(text1),
        ms(json1)
    );
    println!("findings: {f2}: text {:.1} ms", ms(text2));
    println!(
        "text / JSON at {f1} findings: {:.2}x",
        text1.as_secs_f64() / json1.as_secs_f64()
    );
    println!(
        "text at {f2} / text at {f1}: {:.2}x (linear: about 2)",
        text2.as_secs_f64() / text1.as_secs_f64()
    );
}
