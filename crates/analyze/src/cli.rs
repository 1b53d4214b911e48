//! The `weft analyze` command: load paths (files, folders, `-` for stdin), collect
//! findings, print them, and choose the exit code.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::Path;

use crate::finding::{Finding, Severity};
use crate::render::{self, Sources};

/// Exit code: nothing at or above the threshold.
pub const EXIT_OK: u8 = 0;
/// Exit code: at least one finding at or above the threshold.
pub const EXIT_FINDINGS: u8 = 1;
/// Exit code: usage error (e.g. a path that does not exist).
pub const EXIT_USAGE: u8 = 2;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// rustc-style diagnostics and a summary line.
    Human,
    /// A JSON array of findings on stdout; the summary goes to stderr.
    Json,
}

/// Options of one run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Files or folders; `-` reads stdin.
    pub paths: Vec<String>,
    pub format: Format,
    /// Exit 1 when a finding is at or above this severity.
    pub fail_threshold: Severity,
    /// ANSI colours in human output.
    pub color: bool,
}

/// Name under which stdin is reported.
pub const STDIN_NAME: &str = "<stdin>";

/// Runs `weft analyze`; returns the process exit code.
pub fn run(opts: &Options, stdin: &mut dyn Read, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    match run_inner(opts, stdin, out, err) {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(err, "weft analyze: error: {e}");
            EXIT_USAGE
        }
    }
}

fn run_inner(
    opts: &Options,
    stdin: &mut dyn Read,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> std::io::Result<u8> {
    if let Some(missing) = opts
        .paths
        .iter()
        .find(|p| p.as_str() != "-" && !Path::new(p).exists())
    {
        writeln!(err, "weft analyze: error: path `{missing}` does not exist")?;
        return Ok(EXIT_USAGE);
    }
    let mut sources = Sources::default();
    let mut loaded = weft_api::LoadResult::default();
    let mut stdin_read = false;
    for p in &opts.paths {
        if p == "-" {
            if stdin_read {
                continue; // stdin can only be read once
            }
            stdin_read = true;
            let mut bytes = Vec::new();
            stdin.read_to_end(&mut bytes)?;
            if let Ok(text) = std::str::from_utf8(&bytes) {
                sources.insert(STDIN_NAME, text.to_owned());
            }
            loaded.extend(weft_api::load_bytes(bytes, STDIN_NAME));
        } else {
            loaded.extend(weft_api::load_path(Path::new(p)));
        }
    }
    let findings = crate::findings_for(&loaded);
    let files: BTreeSet<&str> = loaded
        .resources
        .iter()
        .map(|r| r.source.file.as_str())
        .chain(loaded.errors.iter().map(|e| e.file.as_str()))
        .chain(loaded.skipped.iter().map(|s| s.source.file.as_str()))
        .collect();
    let mut summary = render::summary(&findings, loaded.resources.len(), files.len());
    let foreign = loaded
        .skipped
        .iter()
        .filter(|s| s.unsupported.is_none())
        .count();
    if foreign > 0 {
        summary.push_str(&format!(" ({foreign} non-Istio documents skipped)"));
    }
    match opts.format {
        Format::Human => {
            out.write_all(render::human(&findings, &mut sources, opts.color).as_bytes())?;
            writeln!(out, "{summary}")?;
        }
        Format::Json => {
            writeln!(out, "{}", render::json(&findings))?;
            writeln!(err, "{summary}")?;
        }
    }
    Ok(exit_code(&findings, opts.fail_threshold))
}

/// 1 when any finding is at or above `threshold`, else 0.
pub fn exit_code(findings: &[Finding], threshold: Severity) -> u8 {
    if findings.iter().any(|f| f.severity >= threshold) {
        EXIT_FINDINGS
    } else {
        EXIT_OK
    }
}
