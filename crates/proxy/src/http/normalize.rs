//! Request path normalization before routing and authorization.
//!
//! This module owns the rewrite of the `:path` (path and query) that Envoy's
//! HTTP connection manager applies before any route or RBAC decision, selected
//! by Istio's MeshConfig `pathNormalization` (default `BASE`):
//!
//! | Istio mode                 | Envoy HCM settings                                                    |
//! |----------------------------|-----------------------------------------------------------------------|
//! | `NONE`                     | `normalize_path: false`                                               |
//! | `BASE`                     | `normalize_path: true`                                                |
//! | `MERGE_SLASHES`            | `normalize_path: true`, `merge_slashes: true`                         |
//! | `DECODE_AND_MERGE_SLASHES` | the above + `path_with_escaped_slashes_action: UNESCAPE_AND_FORWARD` |
//!
//! The steps, in Envoy's order (`ConnectionManagerUtility::maybeNormalizePath`):
//!
//! 1. A path that is empty or does not start with `/` is refused, in every mode
//!    (Envoy answers 404; see [`Rejected::status`]).
//! 2. A `#fragment` is cut off, in every mode: Istio turns Envoy's
//!    `http_reject_path_with_fragment` off, so the fragment is stripped rather
//!    than refused. The cut is at the first `#`, even inside the query.
//! 3. `DECODE_AND_MERGE_SLASHES` only: `%2F`/`%2f` become `/` and `%5C`/`%5c`
//!    become `\` (`PathUtil::unescapeSlashes`).
//! 4. Every mode but `NONE`: the path is canonicalized the way Envoy's Chromium
//!    URL canonicalizer does it (`url::CanonicalizePath`): percent-encoded
//!    unreserved characters (`ALPHA DIGIT - . _ ~`) are decoded, `\` becomes
//!    `/`, `.` and `..` segments are resolved (never above the root, RFC 3986
//!    §5.2.4), characters that may not appear in a path are percent-encoded,
//!    and a NUL (literal or `%00`) is refused. Like Envoy, and unlike RFC 3986
//!    §6.2.2.1, the hex digits of the escapes that stay encoded keep their case
//!    (`%2f` stays `%2f`).
//! 5. `MERGE_SLASHES` and `DECODE_AND_MERGE_SLASHES`: runs of `/` are merged.
//!
//! The query string is never touched. A path that needs no change is returned
//! borrowed, without allocating.

use std::borrow::Cow;
use std::fmt;

/// How request paths are normalized: Istio MeshConfig
/// `ProxyPathNormalization.NormalizationType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PathNormalization {
    /// No normalization: the path is forwarded as received.
    None,
    /// RFC 3986 normalization plus backslash conversion (Istio's default).
    #[default]
    Base,
    /// `Base`, then adjacent slashes merged.
    MergeSlashes,
    /// Escaped slashes and backslashes decoded, then `MergeSlashes`.
    DecodeAndMergeSlashes,
}

impl PathNormalization {
    fn canonicalizes(self) -> bool {
        self != PathNormalization::None
    }

    fn merges_slashes(self) -> bool {
        matches!(
            self,
            PathNormalization::MergeSlashes | PathNormalization::DecodeAndMergeSlashes
        )
    }

    fn decodes_slashes(self) -> bool {
        self == PathNormalization::DecodeAndMergeSlashes
    }
}

/// Why a request path was refused; the text suits a local reply body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// The request has an empty path.
    EmptyPath,
    /// The path does not start with `/` (absolute-form, `*`, or relative).
    NotAbsolute,
    /// The path holds a raw NUL byte.
    Nul,
    /// The path holds `%00`.
    EncodedNul,
}

impl Rejected {
    /// The status Envoy replies with: 404 for a missing or non-origin-form path
    /// (`downstream_rq_non_relative_path`), 400 for a failed normalization.
    pub fn status(self) -> http::StatusCode {
        match self {
            Rejected::EmptyPath | Rejected::NotAbsolute => http::StatusCode::NOT_FOUND,
            Rejected::Nul | Rejected::EncodedNul => http::StatusCode::BAD_REQUEST,
        }
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rejected::EmptyPath => "request path is empty",
            Rejected::NotAbsolute => "path is not absolute (it must start with '/')",
            Rejected::Nul => "path contains a NUL character",
            Rejected::EncodedNul => "path contains an encoded NUL (%00)",
        })
    }
}

impl std::error::Error for Rejected {}

/// Normalizes the path part of `path_and_query` (a request's `:path`) for
/// `mode`, keeping the query as it is. Returns the input, borrowed, when
/// nothing changes (a stripped fragment is still a borrow of the input).
pub fn normalize(path_and_query: &str, mode: PathNormalization) -> Result<Cow<'_, str>, Rejected> {
    check_origin_form(path_and_query)?;
    let target = strip_fragment(path_and_query);
    if !mode.canonicalizes() {
        return Ok(Cow::Borrowed(target));
    }
    let (path, query) = split_query(target);
    let path = normalize_path(path, mode)?;
    Ok(match path {
        Cow::Borrowed(_) => Cow::Borrowed(target),
        Cow::Owned(mut path) => {
            path.push_str(query);
            Cow::Owned(path)
        }
    })
}

fn check_origin_form(target: &str) -> Result<(), Rejected> {
    match target.as_bytes().first() {
        None => Err(Rejected::EmptyPath),
        Some(b'/') => Ok(()),
        Some(_) => Err(Rejected::NotAbsolute),
    }
}

fn strip_fragment(target: &str) -> &str {
    target.find('#').map_or(target, |at| &target[..at])
}

/// Splits at the first `?`; the query keeps its `?`.
fn split_query(target: &str) -> (&str, &str) {
    target
        .find('?')
        .map_or((target, ""), |at| target.split_at(at))
}

/// Steps 3 to 5 on a path that starts with `/` and has no query.
fn normalize_path(path: &str, mode: PathNormalization) -> Result<Cow<'_, str>, Rejected> {
    let path = if mode.decodes_slashes() && has_escaped_slash(path.as_bytes()) {
        Cow::Owned(unescape_slashes(path))
    } else {
        Cow::Borrowed(path)
    };
    let path = canonicalize(path)?;
    Ok(if mode.merges_slashes() && path.contains("//") {
        Cow::Owned(merge_slashes(&path))
    } else {
        path
    })
}

// ---- Escaped slashes (PathUtil::unescapeSlashes) ----

/// The byte an escape at `at` decodes to when it is `%2F` or `%5C`, any case.
fn escaped_slash_at(path: &[u8], at: usize) -> Option<u8> {
    match path.get(at..at + 3)? {
        [b'%', b'2', b'f' | b'F'] => Some(b'/'),
        [b'%', b'5', b'c' | b'C'] => Some(b'\\'),
        _ => None,
    }
}

fn has_escaped_slash(path: &[u8]) -> bool {
    (0..path.len()).any(|at| escaped_slash_at(path, at).is_some())
}

/// One left-to-right pass; the result is never scanned again, so `%252F`
/// stays as it is (no double decoding).
fn unescape_slashes(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut start = 0;
    let mut at = 0;
    while at < bytes.len() {
        if let Some(slash) = escaped_slash_at(bytes, at) {
            out.push_str(&path[start..at]);
            out.push(char::from(slash));
            at += 3;
            start = at;
        } else {
            at += 1;
        }
    }
    out.push_str(&path[start..]);
    out
}

// ---- Canonicalization (Chromium url::CanonicalizePath, as used by Envoy) ----

/// How the canonicalizer treats a byte, escaped or not (Chromium's
/// `kPathCharLookup`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Copied as it is, and kept escaped when it comes escaped.
    Pass,
    /// Copied as it is, and decoded when it comes escaped (unreserved).
    Unescape,
    /// Percent-encoded in the output.
    Escape,
    /// `.`, handled as a possible dot segment.
    Dot,
    /// NUL: the path is refused.
    Invalid,
}

fn class(b: u8) -> Class {
    match b {
        0 => Class::Invalid,
        b'.' => Class::Dot,
        b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'~' => Class::Unescape,
        b'!' | b'$' | b'&'..=b',' | b'/' | b':' | b';' | b'=' | b'@' | b'[' | b']' => Class::Pass,
        // Controls, space " # % < > ? \ ^ ` { | } DEL and every byte >= 0x80.
        _ => Class::Escape,
    }
}

/// True when canonicalization would return `path` unchanged: no byte needs
/// escaping or decoding and no segment is `.` or `..`.
fn is_canonical(path: &[u8]) -> bool {
    let plain = path
        .iter()
        .all(|&b| matches!(class(b), Class::Pass | Class::Unescape | Class::Dot));
    plain && !path.split(|&b| b == b'/').any(|s| s == b"." || s == b"..")
}

fn canonicalize(path: Cow<'_, str>) -> Result<Cow<'_, str>, Rejected> {
    if is_canonical(path.as_bytes()) {
        return Ok(path);
    }
    let out = canonical_bytes(path.as_bytes())?;
    if out == path.as_bytes() {
        return Ok(path);
    }
    // Every byte written to `out` is ASCII, so this is an exact conversion.
    Ok(Cow::Owned(out.into_iter().map(char::from).collect()))
}

/// `DoPartialPath` for a path that starts with `/`. Chromium carries on after
/// a NUL and fails at the end; stopping at once gives the same answer.
fn canonical_bytes(path: &[u8]) -> Result<Vec<u8>, Rejected> {
    let mut out = Vec::with_capacity(path.len() + 8);
    // Output index of the last `%` that did not start a valid escape.
    let mut bad_percent: Option<usize> = None;
    let mut at = 0;
    while at < path.len() {
        let b = path[at];
        at = if let Some(dot_len) = dot_len(path, at) {
            push_dot(path, at, dot_len, &mut out)
        } else if b == b'%' {
            push_percent(path, at, &mut bad_percent, &mut out)?
        } else {
            push_plain(b, &mut out)?;
            at + 1
        };
    }
    Ok(out)
}

fn push_plain(b: u8, out: &mut Vec<u8>) -> Result<(), Rejected> {
    match class(b) {
        Class::Invalid => return Err(Rejected::Nul),
        Class::Escape if b == b'\\' => out.push(b'/'),
        Class::Escape => push_escaped(b, out),
        Class::Pass | Class::Unescape | Class::Dot => out.push(b),
    }
    Ok(())
}

fn push_escaped(b: u8, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
}

/// Handles the `%` at `at`; returns the next input index.
fn push_percent(
    path: &[u8],
    at: usize,
    bad_percent: &mut Option<usize>,
    out: &mut Vec<u8>,
) -> Result<usize, Rejected> {
    let Some(value) = decode_escape(path, at) else {
        // Not an escape: copied, and remembered for the nested-escape check.
        *bad_percent = Some(out.len());
        out.push(b'%');
        return Ok(at + 1);
    };
    match class(value) {
        Class::Invalid => return Err(Rejected::EncodedNul),
        Class::Unescape => {
            out.push(value);
            if let Some(bad) = *bad_percent {
                if bad + 3 >= out.len() {
                    fix_nested_escape(path, at + 3, bad, out);
                }
            }
        }
        // Kept escaped, hex digits copied with their case.
        _ => out.extend_from_slice(&path[at..at + 3]),
    }
    Ok(at + 3)
}

/// The byte that a valid `%XX` at `at` stands for.
fn decode_escape(bytes: &[u8], at: usize) -> Option<u8> {
    match bytes.get(at..at + 3)? {
        [b'%', hi, lo] => Some((hex_value(*hi)? << 4) | hex_value(*lo)?),
        _ => None,
    }
}

fn hex_value(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// Chromium's `CheckForNestedEscapes`: a decoded byte just written within two
/// characters of an earlier stray `%` must not complete a new escape (as
/// `%%30%30` would become `%00`), so that `%` is written as `%25` instead.
fn fix_nested_escape(path: &[u8], next: usize, bad: usize, out: &mut Vec<u8>) {
    let len = out.len();
    let Some(&decoded) = out.last() else { return };
    let append_next = bad + 2 == len;
    if append_next {
        match path.get(next) {
            Some(&b) if b < 0x80 => out.push(b),
            _ => return,
        }
    }
    if decode_escape(out, bad).is_none() {
        if append_next {
            out.truncate(len);
        }
        return;
    }
    if !append_next {
        let first = out[bad + 1];
        out.push(first);
    }
    out[bad + 1] = b'2';
    out[bad + 2] = b'5';
    out.push(decoded);
}

/// Length of a `.` or `%2e`/`%2E` at `at`, or `None`.
fn dot_len(path: &[u8], at: usize) -> Option<usize> {
    match path.get(at..) {
        Some([b'.', ..]) => Some(1),
        Some([b'%', b'2', b'e' | b'E', ..]) => Some(3),
        _ => None,
    }
}

fn is_slash(b: Option<&u8>) -> bool {
    matches!(b, Some(b'/' | b'\\'))
}

/// Handles a dot at `at`; returns the next input index.
fn push_dot(path: &[u8], at: usize, first_len: usize, out: &mut Vec<u8>) -> usize {
    let after = at + first_len;
    if out.last() != Some(&b'/') {
        out.push(b'.');
        return after;
    }
    if after == path.len() || is_slash(path.get(after)) {
        // `.` segment: dropped, with its slash.
        return after + usize::from(after < path.len());
    }
    if let Some(second) = dot_len(path, after) {
        let end = after + second;
        if end == path.len() || is_slash(path.get(end)) {
            // `..` segment: back up one segment, never above the root.
            back_up_to_previous_slash(out);
            return end + usize::from(end < path.len());
        }
    }
    out.push(b'.');
    after
}

/// Removes the last segment of `out`, which ends with `/`; keeps the root.
fn back_up_to_previous_slash(out: &mut Vec<u8>) {
    let Some(slash) = out.len().checked_sub(1) else {
        return;
    };
    let keep = out[..slash].iter().rposition(|&b| b == b'/').unwrap_or(0);
    out.truncate(keep + 1);
}

// ---- Slash merging (PathUtil::mergeSlashes) ----

/// Collapses each run of `/` into one.
fn merge_slashes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if !(c == '/' && out.ends_with('/')) {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use PathNormalization::{Base, DecodeAndMergeSlashes, MergeSlashes};

    const NONE: PathNormalization = PathNormalization::None;
    const ALL: [PathNormalization; 4] = [NONE, Base, MergeSlashes, DecodeAndMergeSlashes];
    const NORMALIZING: [PathNormalization; 3] = [Base, MergeSlashes, DecodeAndMergeSlashes];

    fn norm(path: &str, mode: PathNormalization) -> String {
        match normalize(path, mode) {
            Ok(out) => out.into_owned(),
            Err(e) => panic!("{path:?} rejected in {mode:?}: {e}"),
        }
    }

    fn assert_all(modes: &[PathNormalization], input: &str, want: &str) {
        for &mode in modes {
            assert_eq!(norm(input, mode), want, "input {input:?}, mode {mode:?}");
        }
    }

    #[test]
    fn clean_path_is_borrowed_in_every_mode() {
        for input in [
            "/api/v1/items?x=1",
            "/",
            "/index.html",
            "/a/.b/..c/...",
            "/a-b_c~d",
        ] {
            for mode in ALL {
                let out = normalize(input, mode).expect("clean path");
                assert!(matches!(out, Cow::Borrowed(_)), "{input:?} {mode:?}");
                assert!(std::ptr::eq(out.as_ptr(), input.as_ptr()));
                assert_eq!(out, input);
            }
        }
    }

    #[test]
    fn default_mode_is_base() {
        assert_eq!(PathNormalization::default(), Base);
    }

    #[test]
    fn dot_segments_cannot_reach_admin() {
        for input in [
            "/x/../admin",
            "/./admin",
            "/%61dmin",
            "/%2e%2e/admin",
            "/%2E%2E/admin",
            "/%2e%2E/admin",
            "/.%2e/admin",
            "/x/%2e%2e/admin",
            "/x/y/../../admin",
            "/../admin",
            "/../../../admin",
            "/x/..%2fadmin/../../admin",
        ] {
            assert_all(&NORMALIZING, input, "/admin");
        }
    }

    #[test]
    fn trailing_dot_segments() {
        assert_all(&NORMALIZING, "/admin/.", "/admin/");
        assert_all(&NORMALIZING, "/admin/x/..", "/admin/");
        assert_all(&NORMALIZING, "/admin/%2e", "/admin/");
        assert_all(&NORMALIZING, "/..", "/");
        assert_all(&NORMALIZING, "/.", "/");
    }

    #[test]
    fn none_mode_forwards_as_received() {
        for input in ["/x/../admin", "/%61dmin", "//admin", "/a%2fb", "/a\\b"] {
            let out = normalize(input, NONE).expect("forwarded");
            assert!(matches!(out, Cow::Borrowed(_)));
            assert_eq!(out, input);
        }
    }

    #[test]
    fn envoy_rfc_normalize_cases() {
        // From Envoy's test/common/http/path_utility_test.cc.
        let cases = [
            ("/a/b/../c", "/a/c"),
            ("/a/b/./c", "/a/b/c"),
            ("/a/b/../../../../c", "/c"),
            ("/a/..\\c", "/c"),
            ("/%c0%af", "/%c0%af"),
            ("/%5c%25", "/%5c%25"),
            ("/a/b/%2E%2E/c", "/a/c"),
            ("/a/b/%2E./c", "/a/c"),
            ("/a/b/%2E/c", "/a/b/c"),
            ("/../a/b", "/a/b"),
            ("/./a/b", "/a/b"),
            ("/A/B/C", "/A/B/C"),
            ("/a/%2F%2f/c", "/a/%2F%2f/c"),
        ];
        for (input, want) in cases {
            assert_eq!(norm(input, Base), want, "input {input:?}");
        }
    }

    #[test]
    fn unreserved_escapes_are_decoded() {
        assert_all(&NORMALIZING, "/%41%5a%61%7A%30%39%2D%5F%7E", "/AZaz09-_~");
    }

    #[test]
    fn reserved_escapes_keep_their_case() {
        assert_all(&NORMALIZING[..2], "/a%2fb%3F%3d%25", "/a%2fb%3F%3d%25");
        assert_all(&NORMALIZING, "/q%3fx%23y", "/q%3fx%23y");
    }

    #[test]
    fn disallowed_characters_are_escaped() {
        assert_all(
            &NORMALIZING,
            "/a b\"<>^`{|}",
            "/a%20b%22%3C%3E%5E%60%7B%7C%7D",
        );
        assert_all(&NORMALIZING, "/caf\u{e9}", "/caf%C3%A9");
        assert_all(&NORMALIZING, "/tab\there", "/tab%09here");
    }

    #[test]
    fn nul_is_rejected() {
        for mode in NORMALIZING {
            assert_eq!(normalize("/a%00b", mode), Err(Rejected::EncodedNul));
            assert_eq!(
                normalize("/xyz/.%00../abc", mode),
                Err(Rejected::EncodedNul)
            );
            assert_eq!(
                normalize("/xyz/%00.%00./abc", mode),
                Err(Rejected::EncodedNul)
            );
            assert_eq!(
                normalize("/xyz/AAAAA%%0000/abc", mode),
                Err(Rejected::EncodedNul)
            );
            assert_eq!(normalize("/a\0b", mode), Err(Rejected::Nul));
        }
        assert_eq!(Rejected::EncodedNul.status(), http::StatusCode::BAD_REQUEST);
        assert_eq!(
            Rejected::EncodedNul.to_string(),
            "path contains an encoded NUL (%00)"
        );
    }

    #[test]
    fn non_origin_form_is_rejected_in_every_mode() {
        for mode in ALL {
            assert_eq!(normalize("", mode), Err(Rejected::EmptyPath));
            assert_eq!(normalize("admin", mode), Err(Rejected::NotAbsolute));
            assert_eq!(normalize("*", mode), Err(Rejected::NotAbsolute));
            assert_eq!(
                normalize("http://h/admin", mode),
                Err(Rejected::NotAbsolute)
            );
            assert_eq!(normalize("\\admin", mode), Err(Rejected::NotAbsolute));
            assert_eq!(normalize("#/admin", mode), Err(Rejected::NotAbsolute));
        }
        assert_eq!(Rejected::NotAbsolute.status(), http::StatusCode::NOT_FOUND);
        assert!(Rejected::NotAbsolute.to_string().contains("not absolute"));
    }

    #[test]
    fn invalid_escapes_pass_through() {
        assert_all(&NORMALIZING, "/a%zzb%4", "/a%zzb%4");
        assert_all(&NORMALIZING, "/100%", "/100%");
    }

    #[test]
    fn nested_escapes_cannot_form_new_escapes() {
        // %%30%30 must not become %00 (which a later decoder would read as NUL).
        assert_all(&NORMALIZING, "/%%30%30", "/%2500");
        assert_all(&NORMALIZING, "/%%32%65", "/%252e");
        assert_all(&NORMALIZING, "/%2%65", "/%252e");
        assert_all(&NORMALIZING, "/%%3zz", "/%%3zz");
    }

    #[test]
    fn backslashes_become_slashes() {
        assert_all(&NORMALIZING, "/a\\b", "/a/b");
        assert_all(&NORMALIZING, "/x\\..\\admin", "/admin");
        assert_eq!(norm("/\\admin", Base), "//admin");
        assert_eq!(norm("/\\admin", MergeSlashes), "/admin");
        // Escaped backslash stays escaped unless slashes are decoded.
        assert_eq!(norm("/x%5c..%5cadmin", Base), "/x%5c..%5cadmin");
        assert_eq!(norm("/x%5C..%5Cadmin", DecodeAndMergeSlashes), "/admin");
    }

    #[test]
    fn merge_slashes_only_when_asked() {
        let borrowed = normalize("//admin", Base).expect("valid");
        assert!(matches!(borrowed, Cow::Borrowed("//admin")));
        assert_all(&NORMALIZING[1..], "//admin", "/admin");
        assert_all(&NORMALIZING[1..], "/a///b//c//", "/a/b/c/");
        assert_all(&NORMALIZING[1..], "//a/?b//c", "/a/?b//c");
        assert_all(&NORMALIZING[1..], "///", "/");
        // Merging happens after dot resolution, as in Envoy.
        assert_all(&NORMALIZING[1..], "/a//../admin", "/a/admin");
    }

    #[test]
    fn escaped_slashes_decoded_only_in_decode_mode() {
        assert_eq!(norm("/admin%2F", Base), "/admin%2F");
        assert_eq!(norm("/admin%2F", MergeSlashes), "/admin%2F");
        assert_eq!(norm("/admin%2F", DecodeAndMergeSlashes), "/admin/");
        assert_eq!(norm("/a%2fb", Base), "/a%2fb");
        assert_eq!(norm("/a%2fb", DecodeAndMergeSlashes), "/a/b");
        assert_eq!(norm("/x%2F..%2Fadmin", DecodeAndMergeSlashes), "/admin");
        assert_eq!(norm("/%2F%2fadmin", DecodeAndMergeSlashes), "/admin");
        // No double decoding.
        assert_eq!(norm("/a%252Fb", DecodeAndMergeSlashes), "/a%252Fb");
        assert_eq!(
            norm("/some%2fdata/%61%62%63", DecodeAndMergeSlashes),
            "/some/data/abc"
        );
    }

    #[test]
    fn query_is_untouched() {
        assert_all(&NORMALIZING, "/a/../b?x=/../y", "/b?x=/../y");
        assert_all(&NORMALIZING, "/%61?q=%61%2F//\\", "/a?q=%61%2F//\\");
        assert_all(&NORMALIZING[1..], "/a//b?", "/a/b?");
        assert_all(&NORMALIZING, "/b?x=/../y", "/b?x=/../y");
    }

    #[test]
    fn fragment_is_stripped_in_every_mode() {
        for mode in ALL {
            let out = normalize("/a?x=1#frag", mode).expect("valid");
            assert!(matches!(out, Cow::Borrowed("/a?x=1")), "{mode:?}");
            assert_eq!(norm("/a#b?c", mode), "/a");
        }
        assert_all(&NORMALIZING, "/x/..#/../admin", "/");
    }

    #[test]
    fn ordinary_dots_are_kept() {
        assert_all(&NORMALIZING, "/a/.b/..c/.../d.", "/a/.b/..c/.../d.");
        assert_all(&NORMALIZING, "/a/%2eb", "/a/.b");
    }

    /// Deterministic pseudo-random paths over the characters that matter.
    fn generated_paths() -> impl Iterator<Item = String> {
        const ALPHABET: &[u8] = b"/./%2eEfF5cC0034a\\?#";
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        (0..20_000).map(move |_| {
            let mut path = String::from("/");
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            let len = (state >> 59) as usize + 1;
            for _ in 0..len {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                let pick = (state >> 33) as usize % ALPHABET.len();
                path.push(char::from(ALPHABET[pick]));
            }
            path
        })
    }

    #[test]
    fn output_is_stable_and_free_of_dot_segments() {
        for input in generated_paths() {
            for mode in NORMALIZING {
                let Ok(out) = normalize(&input, mode) else {
                    continue;
                };
                let again = normalize(&out, mode);
                assert!(
                    matches!(again, Ok(Cow::Borrowed(_))),
                    "{input:?} {mode:?}: {out:?} -> {again:?}"
                );
                let path = out.split('?').next().unwrap_or_default();
                assert!(
                    path.starts_with('/') && !path.contains('\\'),
                    "{input:?} -> {out:?}"
                );
                let dots = path.split('/').any(|s| s == "." || s == "..");
                assert!(!dots, "{input:?} {mode:?} -> {out:?}");
                if mode != Base {
                    assert!(!path.contains("//"), "{input:?} {mode:?} -> {out:?}");
                }
            }
        }
    }
}
