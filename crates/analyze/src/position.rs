//! Source positions of fields inside a resource, via the api crate's position index,
//! so the checks only name field paths (`spec.http[0].route[1].destination.subset`).

use weft_api::{Resource, ValidationError};

/// 1-based (line, column) of the field at `path` in `r`, falling back to the closest
/// ancestor that was written, then to the document's first line.
pub(crate) fn position(r: &Resource, path: &str) -> (usize, usize) {
    r.position_of(path)
}

/// 1-based (line, column) of a validation error.
pub(crate) fn validation_position(e: &ValidationError) -> (usize, usize) {
    (e.line, e.column.max(1))
}
