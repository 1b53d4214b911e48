//! Position-tracking YAML tree, parsed with serde-saphyr.
//!
//! Documents are first parsed by serde-saphyr into a [`Node`] tree in which every
//! node (and every mapping key) remembers its 1-based line/column. The typed
//! resources are then deserialized from that tree by [`crate::de::from_node`].

use std::cell::Cell;
use std::fmt;

use serde::de::{self, Visitor};
use serde::Deserialize;
use serde_saphyr::budget::BudgetBreach;

/// Maximum nesting depth of sequences and mappings, alias expansions included.
/// Istio resources need about 10; the typed decoding, position indexing and
/// validation recurse once per level, so this also bounds their stack use.
pub(crate) const MAX_DEPTH: usize = 64;
/// Maximum YAML nodes built from one document, alias expansions included.
const MAX_DOCUMENT_NODES: usize = 250_000;
/// Maximum events replayed by aliases in one document (alias bombs).
const MAX_ALIAS_REPLAYED_EVENTS: usize = 100_000;

/// What is left of the tree-building allowance of a whole file, shared by its
/// documents (each of which also has serde-saphyr's per-document budget). Counts
/// every node and every scalar byte actually built, alias expansions included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TreeBudget {
    pub nodes: usize,
    pub scalar_bytes: usize,
}

impl TreeBudget {
    /// Per file: one million nodes and 64 MiB of scalar text.
    pub const FILE: TreeBudget = TreeBudget {
        nodes: 1_000_000,
        scalar_bytes: 64 * 1024 * 1024,
    };
}

thread_local! {
    /// The budget of the `parse_document` call running on this thread (serde's
    /// `Deserialize` has no way to carry it).
    static BUDGET: Cell<TreeBudget> = const { Cell::new(TreeBudget { nodes: 0, scalar_bytes: 0 }) };
}

fn spend_node<E: de::Error>() -> Result<(), E> {
    BUDGET.with(|b| {
        let mut budget = b.get();
        if budget.nodes == 0 {
            return Err(E::custom(format_args!(
                "too many YAML nodes in this file (limit {}, counting alias expansions)",
                TreeBudget::FILE.nodes
            )));
        }
        budget.nodes -= 1;
        b.set(budget);
        Ok(())
    })
}

fn spend_bytes<E: de::Error>(len: usize) -> Result<(), E> {
    BUDGET.with(|b| {
        let mut budget = b.get();
        if budget.scalar_bytes < len {
            b.set(TreeBudget { nodes: 0, ..budget }); // spent: stop the file here
            return Err(E::custom(format_args!(
                "too much scalar text in this file (limit {} MiB, counting alias expansions)",
                TreeBudget::FILE.scalar_bytes / (1024 * 1024)
            )));
        }
        budget.scalar_bytes -= len;
        b.set(budget);
        Ok(())
    })
}

/// A 1-based line/column position inside a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Pos {
    pub line: usize,
    pub column: usize,
}

/// A YAML node with its position.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub pos: Pos,
    pub value: Value,
}

/// The value of a YAML node (scalars already resolved by the YAML core schema).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// Looks up a key in a mapping node.
    pub fn get(&self, key: &str) -> Option<(&Node, &Node)> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| matches!(&k.value, Value::Str(s) if s == key))
                .map(|(k, v)| (k, v)),
            _ => None,
        }
    }

    /// Shifts every position by `lines` (used when a document was parsed on its own).
    pub fn shift(&mut self, lines: usize) {
        self.pos.line += lines;
        match &mut self.value {
            Value::Seq(items) => items.iter_mut().for_each(|n| n.shift(lines)),
            Value::Map(entries) => entries.iter_mut().for_each(|(k, v)| {
                k.shift(lines);
                v.shift(lines);
            }),
            _ => {}
        }
    }

    /// A short description of the node's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match &self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) | Value::UInt(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a sequence",
            Value::Map(_) => "a mapping",
        }
    }

    /// The textual form of a scalar (used for mapping keys).
    pub fn key_text(&self) -> String {
        match &self.value {
            Value::Null => "null".to_owned(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::UInt(u) => u.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Str(s) => s.clone(),
            Value::Seq(_) | Value::Map(_) => "<complex key>".to_owned(),
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        spend_node::<D::Error>()?;
        let spanned = serde_saphyr::Spanned::<Value>::deserialize(d)?;
        Ok(Node {
            pos: Pos {
                line: spanned.referenced.line() as usize,
                column: spanned.referenced.column() as usize,
            },
            value: spanned.value,
        })
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_newtype_struct<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(i64::try_from(v).map_or(Value::UInt(v), Value::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        spend_bytes::<E>(v.len())?;
        Ok(Value::Str(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        spend_bytes::<E>(v.len())?;
        Ok(Value::Str(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Value, E> {
        spend_bytes::<E>(v.len())?;
        Ok(Value::Str(String::from_utf8_lossy(v).into_owned()))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(n) = seq.next_element::<Node>()? {
            items.push(n);
        }
        Ok(Value::Seq(items))
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(k) = map.next_key::<Node>()? {
            let v = map.next_value::<Node>()?;
            entries.push((k, v));
        }
        Ok(Value::Map(entries))
    }
}

/// Parses one YAML document (no `---` splitting here) into a tree, spending
/// `budget` (what is left of the file's allowance) on the nodes it builds.
/// Returns `Ok(None)` for an empty document.
pub(crate) fn parse_document(
    text: &str,
    budget: &mut TreeBudget,
) -> Result<Option<Node>, (Pos, String)> {
    let options = serde_saphyr::Options {
        with_snippet: false,
        budget: Some(serde_saphyr::Budget {
            max_depth: MAX_DEPTH,
            max_nodes: MAX_DOCUMENT_NODES,
            ..serde_saphyr::Budget::default()
        }),
        alias_limits: serde_saphyr::options::AliasLimits {
            max_total_replayed_events: MAX_ALIAS_REPLAYED_EVENTS,
            ..serde_saphyr::options::AliasLimits::default()
        },
        ..serde_saphyr::Options::default()
    };
    BUDGET.with(|b| b.set(*budget));
    let parsed = serde_saphyr::from_str_with_options::<Option<Node>>(text, options);
    *budget = BUDGET.with(|b| {
        b.replace(TreeBudget {
            nodes: 0,
            scalar_bytes: 0,
        })
    });
    match parsed {
        Ok(Some(Node {
            value: Value::Null, ..
        }))
        | Ok(None) => Ok(None),
        Ok(Some(node)) => Ok(Some(node)),
        Err(err) => {
            let err = err.without_snippet();
            let pos = err.location().map_or(Pos { line: 1, column: 1 }, |l| Pos {
                line: l.line().max(1) as usize,
                column: l.column().max(1) as usize,
            });
            Err((clamp_to_text(pos, text), saphyr_message(err)))
        }
    }
}

/// An error at the end of a text that does not end in a line break is reported by
/// serde-saphyr on the line after the last one: point at the end of the last line.
/// (Lines as YAML counts them: CRLF, LF and a lone CR each end one.)
fn clamp_to_text(pos: Pos, text: &str) -> Pos {
    let last_line = text.rsplit(['\n', '\r']).next().unwrap_or("");
    let lines =
        text.matches('\n').count() + text.matches('\r').count() - text.matches("\r\n").count() + 1;
    if pos.line > lines {
        Pos {
            line: lines,
            column: last_line.chars().count() + 1,
        }
    } else {
        pos
    }
}

/// The message of a serde-saphyr error without its trailing "at line X, column Y".
fn saphyr_message(err: &serde_saphyr::Error) -> String {
    let text = match err {
        serde_saphyr::Error::Message { msg, .. } => msg.clone(),
        serde_saphyr::Error::Budget { breach, .. } => return budget_message(breach),
        _ => {
            let text = err.to_string();
            match text.rfind(" at line ") {
                Some(i) if text[i..].contains(", column ") => text[..i].to_owned(),
                _ => text,
            }
        }
    };
    if text == "recursion limit exceeded" {
        return format!("YAML nesting is too deep (the parser's {text})");
    }
    text
}

/// A readable message for a serde-saphyr budget breach (its `Debug` form otherwise).
fn budget_message(breach: &BudgetBreach) -> String {
    let what = match breach {
        BudgetBreach::Depth { .. } => {
            format!("YAML nesting is too deep (more than {MAX_DEPTH} levels)")
        }
        BudgetBreach::Nodes { .. } => {
            format!("too many YAML nodes in one document (more than {MAX_DOCUMENT_NODES})")
        }
        BudgetBreach::ScalarBytes { .. } => "too much scalar text in one document".to_owned(),
        BudgetBreach::Aliases { aliases } => format!("too many aliases ({aliases})"),
        BudgetBreach::AliasAnchorRatio { aliases, anchors } => format!(
            "too many aliases for the anchors defined ({aliases} aliases, {anchors} anchors)"
        ),
        other => format!("YAML budget exceeded: {other:?}"),
    };
    format!("{what}; refusing to load (this limit protects against malicious YAML)")
}
