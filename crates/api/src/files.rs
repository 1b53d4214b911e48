//! Reading configuration from disk: a file, or every YAML file below a folder (sorted,
//! hidden entries skipped), with size limits, UTF-8 checked at a line and column, and I/O
//! errors as [`LoadError`]s. Parsing is [`crate::loader`]'s.

use std::path::{Path, PathBuf};

use crate::loader::{load_str, too_large, LoadError, LoadResult, MAX_FILE_BYTES};

/// Loads a file, or every `*.yaml`/`*.yml` file below a folder (sorted by path;
/// hidden files and folders skipped). I/O errors become `LoadError`s.
pub fn load_path(path: &Path) -> LoadResult {
    let (files, errors) = yaml_files(path);
    let mut result = LoadResult {
        errors,
        ..Default::default()
    };
    for file in files {
        let name = file.display().to_string();
        match read(&file) {
            Ok(bytes) => result.extend(load_bytes(bytes, &name)),
            Err(e) => result.errors.push(e),
        }
    }
    result
}

/// The files [`load_path`] loads, in its order, and the errors of listing them.
pub(crate) fn yaml_files(path: &Path) -> (Vec<PathBuf>, Vec<LoadError>) {
    let (mut files, mut errors) = (Vec::new(), Vec::new());
    if path.is_dir() {
        collect_yaml_files(path, &mut files, &mut errors);
        files.sort();
    } else {
        files.push(path.to_path_buf());
    }
    (files, errors)
}

/// A file's bytes, refused when larger than [`MAX_FILE_BYTES`].
pub(crate) fn read(file: &Path) -> Result<Vec<u8>, LoadError> {
    let name = || file.display().to_string();
    if let Ok(meta) = std::fs::metadata(file) {
        if meta.len() > MAX_FILE_BYTES as u64 {
            return Err(LoadError {
                file: name(),
                line: 0,
                column: 0,
                message: too_large(meta.len()),
            });
        }
    }
    std::fs::read(file).map_err(|err| io_error(&name(), &err))
}

/// Loads a file's bytes: like [`load_str`], and a text that is not UTF-8 is an error at the
/// line and column where it stops being UTF-8.
pub fn load_bytes(bytes: Vec<u8>, name: &str) -> LoadResult {
    match String::from_utf8(bytes) {
        Ok(text) => load_str(&text, name),
        Err(e) => {
            let mut result = LoadResult::default();
            result
                .errors
                .push(not_utf8(name, e.as_bytes(), e.utf8_error()));
            result
        }
    }
}

/// Where a file stops being UTF-8, as line and column (of the characters before it).
fn not_utf8(file: &str, bytes: &[u8], err: std::str::Utf8Error) -> LoadError {
    let valid = &bytes[..err.valid_up_to()];
    let line_start = valid.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let column = String::from_utf8_lossy(&valid[line_start..])
        .chars()
        .count()
        + 1;
    LoadError {
        file: file.to_owned(),
        line: valid.iter().filter(|b| **b == b'\n').count() + 1,
        column,
        message: format!(
            "invalid UTF-8 (byte 0x{:02x}): YAML files must be UTF-8; re-save the file as UTF-8",
            bytes.get(err.valid_up_to()).copied().unwrap_or(0)
        ),
    }
}

fn io_error(file: &str, err: &std::io::Error) -> LoadError {
    LoadError {
        file: file.to_owned(),
        line: 0,
        column: 0,
        message: format!("cannot read: {err}"),
    }
}

fn collect_yaml_files(dir: &Path, files: &mut Vec<PathBuf>, errors: &mut Vec<LoadError>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) => return errors.push(io_error(&dir.display().to_string(), &err)),
    };
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(err) => {
                errors.push(io_error(&dir.display().to_string(), &err));
                continue;
            }
        };
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            collect_yaml_files(&path, files, errors);
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"))
        {
            files.push(path);
        }
    }
}
