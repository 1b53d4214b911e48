//! Output: rustc-style human diagnostics (header, ` --> file:line:col`, the source line
//! with a caret under the column, `= help:`) and JSON.

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::finding::{Finding, Severity};

/// Source texts by file name, for the snippet under each diagnostic. Files not added
/// explicitly (e.g. stdin) are read from disk on first use. Each text is indexed by line
/// once, so rendering stays linear in the number of findings.
#[derive(Debug, Default)]
pub struct Sources {
    texts: HashMap<String, Option<Indexed>>,
}

/// A text and the byte offset where each of its lines starts.
#[derive(Debug)]
struct Indexed {
    text: String,
    starts: Vec<usize>,
}

impl Indexed {
    fn new(text: String) -> Indexed {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Indexed { text, starts }
    }

    fn line(&self, n: usize) -> Option<&str> {
        let start = *self.starts.get(n.checked_sub(1)?)?;
        let end = self.starts.get(n).map_or(self.text.len(), |e| e - 1);
        let line = self.text.get(start..end.max(start))?;
        Some(line.strip_suffix('\r').unwrap_or(line))
    }
}

impl Sources {
    /// Registers the text of a file that cannot be re-read (stdin).
    pub fn insert(&mut self, file: &str, text: String) {
        self.texts.insert(file.to_owned(), Some(Indexed::new(text)));
    }

    /// Line `line` (1-based) of `file`, if it can be read.
    pub fn line(&mut self, file: &str, line: usize) -> Option<&str> {
        self.texts
            .entry(file.to_owned())
            .or_insert_with(|| std::fs::read_to_string(file).ok().map(Indexed::new))
            .as_ref()?
            .line(line)
    }
}

/// ANSI styling, or none.
#[derive(Debug, Clone, Copy)]
struct Style {
    color: bool,
}

impl Style {
    fn paint(self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }

    fn severity(self, sev: Severity) -> &'static str {
        match sev {
            Severity::Error => "1;31",
            Severity::Warning => "1;33",
            Severity::Info => "1;36",
        }
    }
}

/// Length (in chars, at least 1) of the token starting at char index `start`:
/// a quoted string, or a plain scalar up to a delimiter.
fn token_len(chars: &[char], start: usize) -> usize {
    let Some(&first) = chars.get(start) else {
        return 1;
    };
    if first == '"' || first == '\'' {
        let end = chars[start + 1..].iter().position(|&c| c == first);
        return end.map_or(chars.len() - start, |e| e + 2);
    }
    let mut n = 0;
    while let Some(&c) = chars.get(start + n) {
        let next = chars.get(start + n + 1).copied();
        if matches!(c, ',' | '}' | ']' | '#')
            || c.is_whitespace()
            || (c == ':' && next.is_none_or(char::is_whitespace))
        {
            break;
        }
        n += 1;
    }
    n.max(1)
}

/// One finding in rustc style.
pub fn human_one(f: &Finding, sources: &mut Sources, color: bool) -> String {
    let st = Style { color };
    let sev = st.severity(f.severity);
    let mut out = String::new();
    let head = format!("{}[{}]", f.severity, f.code);
    let subject = match f.resource_display() {
        Some(r) => format!("{r}: {}", f.message),
        None => f.message.clone(),
    };
    let _ = writeln!(
        out,
        "{}{}",
        st.paint(sev, &head),
        st.paint("1", &format!(": {subject}"))
    );
    let width = if f.line > 0 {
        f.line.to_string().len()
    } else {
        1
    };
    let pad = " ".repeat(width);
    let arrow = st.paint("1;34", "-->");
    let bar = st.paint("1;34", "|");
    if f.line == 0 {
        let _ = writeln!(out, "{pad}{arrow} {}", f.file);
    } else {
        let _ = writeln!(out, "{pad}{arrow} {}:{}:{}", f.file, f.line, f.column);
        if let Some(text) = sources.line(&f.file, f.line) {
            let chars: Vec<char> = text.chars().collect();
            let col = f.column.max(1) - 1;
            // Keep tabs so the caret lines up with the source line.
            let lead: String = chars
                .iter()
                .take(col)
                .map(|&c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            let carets = "^".repeat(token_len(&chars, col));
            let num = st.paint("1;34", &f.line.to_string());
            let _ = writeln!(out, "{pad} {bar}");
            let _ = writeln!(out, "{num} {bar} {text}");
            let _ = writeln!(out, "{pad} {bar} {lead}{}", st.paint(sev, &carets));
        }
    }
    if let Some(s) = &f.suggestion {
        let _ = writeln!(out, "{pad} {} {s}", st.paint("1", "= help:"));
    }
    out
}

/// Counts per severity: (errors, warnings, infos).
pub fn counts(findings: &[Finding]) -> (usize, usize, usize) {
    findings
        .iter()
        .fold((0, 0, 0), |(e, w, i), f| match f.severity {
            Severity::Error => (e + 1, w, i),
            Severity::Warning => (e, w + 1, i),
            Severity::Info => (e, w, i + 1),
        })
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// The summary line: `analyzed 23 resources in 6 files: 1 error, 2 warnings, 0 info`.
pub fn summary(findings: &[Finding], resources: usize, files: usize) -> String {
    let (e, w, i) = counts(findings);
    let scope = format!(
        "analyzed {} in {}",
        plural(resources, "resource"),
        plural(files, "file")
    );
    if findings.is_empty() {
        format!("{scope}: no problems found")
    } else {
        format!(
            "{scope}: {}, {}, {i} info",
            plural(e, "error"),
            plural(w, "warning")
        )
    }
}

/// All findings in rustc style, each followed by a blank line.
pub fn human(findings: &[Finding], sources: &mut Sources, color: bool) -> String {
    findings
        .iter()
        .map(|f| human_one(f, sources, color) + "\n")
        .collect()
}

/// The findings as a pretty JSON array of objects with `code`, `severity`, `resource`,
/// `file`, `line`, `column`, `message` and `suggestion`.
/// The findings as a JSON array; each carries `istio_code` where `istioctl analyze` has a
/// code for the same problem.
pub fn json(findings: &[Finding]) -> String {
    let values: Vec<serde_json::Value> = findings
        .iter()
        .map(|f| {
            // Serializing plain strings and numbers cannot fail.
            let mut v = serde_json::to_value(f).unwrap_or_default();
            if let Some(ist) = crate::finding::istio_code(f.code) {
                v["istio_code"] = ist.into();
            }
            v
        })
        .collect();
    serde_json::to_string_pretty(&values).unwrap_or_else(|_| "[]".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_found_by_index_as_str_lines_would() {
        let mut s = Sources::default();
        s.insert("f", "a\r\nbb\n\nlast".into());
        let got: Vec<Option<String>> = (0..6).map(|n| s.line("f", n).map(str::to_owned)).collect();
        let want = [None, Some("a"), Some("bb"), Some(""), Some("last"), None];
        assert_eq!(got, want.map(|w| w.map(str::to_owned)));
    }

    #[test]
    fn token_lengths() {
        let c: Vec<char> = "  - destination: {host: inventory, subset: v3}"
            .chars()
            .collect();
        assert_eq!(token_len(&c, 4), "destination".len());
        assert_eq!(token_len(&c, 43), 2);
        let q: Vec<char> = r#"  host: "a b""#.chars().collect();
        assert_eq!(token_len(&q, 8), 5);
        let url: Vec<char> = "x: http://a".chars().collect();
        assert_eq!(token_len(&url, 3), 8);
    }

    #[test]
    fn human_rendering_has_location_caret_and_help() {
        let mut sources = Sources::default();
        sources.insert("t.yaml", "a: 1\n  bad: thing\n".into());
        let f = Finding {
            code: "WA0001",
            severity: Severity::Error,
            resource: Some("Gateway/ns/gw".into()),
            file: "t.yaml".into(),
            line: 2,
            column: 3,
            message: "oops".into(),
            suggestion: Some("fix it".into()),
        };
        let text = human_one(&f, &mut sources, false);
        assert_eq!(
            text,
            "error[WA0001]: Gateway ns/gw: oops\n --> t.yaml:2:3\n  |\n2 |   bad: thing\n  |   ^^^\n  = help: fix it\n"
        );
    }
}
