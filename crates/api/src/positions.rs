//! Source positions of every node of a loaded resource, indexed by path
//! (`spec.http[0].match[1].uri.exact`, `metadata.name`, `spec.subsets[2]`).
//!
//! Built by the loader from the position-tracking YAML tree; shared behind an
//! `Arc` so cloning a [`crate::Resource`] stays cheap.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::yaml::{Node, Value};

/// 1-based positions of a node's value and, for mapping entries, of its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    value: (usize, usize),
    key: Option<(usize, usize)>,
}

/// Path-indexed positions of a resource's nodes. Cheap to clone; empty by default.
///
/// Equality is always true: two resources are equal when their content is,
/// wherever it was written.
#[derive(Clone, Default)]
pub struct Positions {
    index: Option<Arc<HashMap<String, Entry>>>,
}

impl PartialEq for Positions {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl fmt::Debug for Positions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Positions({} nodes)", self.len())
    }
}

impl Positions {
    /// Indexes every node below `root` (the document's root mapping).
    pub(crate) fn from_node(root: &Node) -> Positions {
        let mut index = HashMap::new();
        let mut budget = PATH_BUDGET;
        walk(root, String::new(), None, &mut index, &mut budget);
        Positions {
            index: Some(Arc::new(index)),
        }
    }

    /// Number of indexed nodes.
    pub fn len(&self) -> usize {
        self.index.as_ref().map_or(0, |i| i.len())
    }

    /// True when nothing is indexed (e.g. a resource built in code).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// (line, column) of the value at exactly `path`, if it was written.
    pub fn get(&self, path: &str) -> Option<(usize, usize)> {
        self.index.as_ref()?.get(path).map(|e| e.value)
    }

    /// (line, column) of the key of the mapping entry at exactly `path`, if any.
    pub fn get_key(&self, path: &str) -> Option<(usize, usize)> {
        self.index.as_ref()?.get(path).and_then(|e| e.key)
    }

    /// (line, column) of `path`, or of its nearest written ancestor.
    pub fn nearest(&self, path: &str) -> Option<(usize, usize)> {
        let mut p = path;
        loop {
            if let Some(pos) = self.get(p) {
                return Some(pos);
            }
            if p.is_empty() {
                return None;
            }
            p = parent(p);
        }
    }

    /// Key position of `path` (value position when it is a sequence item), or of
    /// its nearest written ancestor.
    pub fn nearest_key(&self, path: &str) -> Option<(usize, usize)> {
        let mut p = path;
        loop {
            if let Some(e) = self.index.as_ref()?.get(p) {
                return Some(e.key.unwrap_or(e.value));
            }
            if p.is_empty() {
                return None;
            }
            p = parent(p);
        }
    }
}

/// The parent of a path: `a.b[1]` → `a.b`, `a.b` → `a`, `a` → ``.
fn parent(path: &str) -> &str {
    match path.rfind(['.', '[']) {
        Some(i) => &path[..i],
        None => "",
    }
}

/// Total bytes of indexed paths per resource: alias-expanded documents with long
/// keys would otherwise derive gigabytes of paths. Beyond it, nodes fall back to
/// their nearest indexed ancestor.
const PATH_BUDGET: usize = 8 * 1024 * 1024;

fn walk(
    node: &Node,
    path: String,
    key: Option<(usize, usize)>,
    index: &mut HashMap<String, Entry>,
    budget: &mut usize,
) {
    if path.len() > *budget {
        return;
    }
    *budget -= path.len();
    match &node.value {
        Value::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, format!("{path}[{i}]"), None, index, budget);
            }
        }
        Value::Map(entries) => {
            for (k, v) in entries {
                let name = k.key_text();
                let child = if path.is_empty() {
                    name
                } else {
                    format!("{path}.{name}")
                };
                walk(v, child, Some((k.pos.line, k.pos.column)), index, budget);
            }
        }
        _ => {}
    }
    index.insert(
        path,
        Entry {
            value: (node.pos.line, node.pos.column),
            key,
        },
    );
}

#[cfg(test)]
mod tests {
    use super::parent;

    #[test]
    fn parents() {
        assert_eq!(parent("spec.http[0].match[1]"), "spec.http[0].match");
        assert_eq!(parent("spec.http[0]"), "spec.http");
        assert_eq!(parent("spec"), "");
    }
}
