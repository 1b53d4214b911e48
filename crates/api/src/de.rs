//! A serde `Deserializer` over the position-tracking YAML tree of [`crate::yaml`]:
//! every error gets the position and dotted path (`VirtualService.spec.http[0]`) of
//! the innermost offending node.

use std::fmt;

use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};

use crate::yaml::{Node, Pos, Value};

/// An error produced while deserializing typed values from a [`Node`] tree.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DeError {
    /// The message before the path, e.g. "unknown field `foo`".
    head: String,
    /// The preposition joining head and path ("in" for containers, "at" for values).
    prep: &'static str,
    /// Text after the path, e.g. "; expected one of `a`, `b`".
    tail: String,
    /// Position and path, once known (the innermost node wins).
    located: Option<(Pos, String)>,
}

impl DeError {
    fn new(head: String, prep: &'static str, tail: String) -> Self {
        DeError {
            head,
            prep,
            tail,
            located: None,
        }
    }

    /// Attaches a position and path unless the error already has one.
    fn locate(mut self, pos: Pos, path: &str) -> Self {
        if self.located.is_none() {
            self.located = Some((pos, path.to_owned()));
        }
        self
    }

    /// The position of the offending node, if known.
    pub fn pos(&self) -> Option<Pos> {
        self.located.as_ref().map(|(p, _)| *p)
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.head)?;
        if let Some((_, path)) = &self.located {
            write!(f, " {} {path}", self.prep)?;
        }
        f.write_str(&self.tail)
    }
}

impl std::error::Error for DeError {}

fn one_of(names: &'static [&'static str]) -> String {
    match names {
        [] => "; no fields are allowed here".to_owned(),
        _ => {
            let list: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
            format!("; expected one of {}", list.join(", "))
        }
    }
}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError::new(msg.to_string(), "at", String::new())
    }
    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        DeError::new(format!("unknown field `{field}`"), "in", one_of(expected))
    }
    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        DeError::new(format!("unknown value `{variant}`"), "at", one_of(expected))
    }
    fn missing_field(field: &'static str) -> Self {
        DeError::new(format!("missing field `{field}`"), "in", String::new())
    }
    fn duplicate_field(field: &'static str) -> Self {
        DeError::new(format!("duplicate field `{field}`"), "in", String::new())
    }
}

/// Deserializes `T` from `node`, naming the node `path` in error messages.
pub(crate) fn from_node<T: DeserializeOwned>(node: &Node, path: &str) -> Result<T, DeError> {
    T::deserialize(NodeDe { node, path }).map_err(|e| e.locate(node.pos, path))
}

/// A serde `Deserializer` over a borrowed [`Node`].
struct NodeDe<'a> {
    node: &'a Node,
    path: &'a str,
}

impl<'de> de::Deserializer<'de> for NodeDe<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Int(i) => visitor.visit_i64(*i),
            Value::UInt(u) => visitor.visit_u64(*u),
            Value::Float(f) => visitor.visit_f64(*f),
            Value::Str(s) => visitor.visit_str(s),
            Value::Seq(items) => visitor.visit_seq(SeqDe {
                items: items.iter(),
                index: 0,
                path: self.path,
            }),
            Value::Map(entries) => visitor.visit_map(MapDe {
                entries: entries.iter(),
                value: None,
                path: self.path,
            }),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.node.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    // An explicit `null` for a list or an object means "absent" (as in Kubernetes).
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.node.value {
            Value::Null => visitor.visit_seq(SeqDe {
                items: [].iter(),
                index: 0,
                path: self.path,
            }),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.node.value {
            Value::Null => visitor.visit_map(MapDe {
                entries: [].iter(),
                value: None,
                path: self.path,
            }),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Str(s) => visitor.visit_enum(s.clone().into_deserializer()),
            _ => Err(de::Error::invalid_type(unexpected(self.node), &visitor)),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if let Some(text) = colon_terminated_scalar(self.node) {
            return visitor.visit_string(text);
        }
        match &self.node.value {
            Value::Bool(_) | Value::Int(_) | Value::UInt(_) | Value::Float(_) => {
                let text = self.node.key_text();
                Err(de::Error::custom(format_args!(
                    "expected a string, found {} `{text}` (quote it: \"{text}\")",
                    self.node.type_name()
                )))
            }
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char
        bytes byte_buf unit unit_struct tuple tuple_struct identifier
    }
}

/// go-yaml (used by Kubernetes and Istio) reads a plain scalar ending in `:` such as
/// the IPv6 address in `addresses: [2001:db8::]` as a string, while a YAML 1.2
/// parser reads it as a one-entry mapping `{"2001:db8:": null}`. Where a string is
/// expected, such a mapping is turned back into the original text.
fn colon_terminated_scalar(node: &Node) -> Option<String> {
    match &node.value {
        Value::Map(entries) => match entries.as_slice() {
            [(
                key,
                Node {
                    value: Value::Null, ..
                },
            )] if matches!(key.value, Value::Str(_) | Value::Int(_) | Value::UInt(_)) => {
                Some(format!("{}:", key.key_text()))
            }
            _ => None,
        },
        _ => None,
    }
}

fn unexpected(node: &Node) -> de::Unexpected<'_> {
    match &node.value {
        Value::Null => de::Unexpected::Unit,
        Value::Bool(b) => de::Unexpected::Bool(*b),
        Value::Int(i) => de::Unexpected::Signed(*i),
        Value::UInt(u) => de::Unexpected::Unsigned(*u),
        Value::Float(f) => de::Unexpected::Float(*f),
        Value::Str(s) => de::Unexpected::Str(s),
        Value::Seq(_) => de::Unexpected::Seq,
        Value::Map(_) => de::Unexpected::Map,
    }
}

struct SeqDe<'a> {
    items: std::slice::Iter<'a, Node>,
    index: usize,
    path: &'a str,
}

impl<'de> de::SeqAccess<'de> for SeqDe<'_> {
    type Error = DeError;

    fn next_element_seed<T: de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        let Some(node) = self.items.next() else {
            return Ok(None);
        };
        let path = format!("{}[{}]", self.path, self.index);
        self.index += 1;
        seed.deserialize(NodeDe { node, path: &path })
            .map(Some)
            .map_err(|e| e.locate(node.pos, &path))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapDe<'a> {
    entries: std::slice::Iter<'a, (Node, Node)>,
    value: Option<(&'a Node, String)>,
    path: &'a str,
}

impl<'de> de::MapAccess<'de> for MapDe<'_> {
    type Error = DeError;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        let text = key.key_text();
        let key_value = seed
            .deserialize(KeyDe { text: &text })
            .map_err(|e| e.locate(key.pos, self.path))?;
        self.value = Some((value, format!("{}.{}", self.path, text)));
        Ok(Some(key_value))
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, DeError> {
        let (node, path) = self
            .value
            .take()
            .ok_or_else(|| <DeError as de::Error>::custom("value requested before key"))?;
        seed.deserialize(NodeDe { node, path: &path })
            .map_err(|e| e.locate(node.pos, &path))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

/// Deserializer for mapping keys: keys are text, parsed into numbers on demand
/// (so `portLevelMtls: {8080: ...}` and `{"8080": ...}` both work, as in JSON).
struct KeyDe<'a> {
    text: &'a str,
}

macro_rules! key_number {
    ($($method:ident => $ty:ty, $visit:ident;)*) => {
        $(fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            match self.text.parse::<$ty>() {
                Ok(n) => visitor.$visit(n),
                Err(_) => Err(de::Error::invalid_type(de::Unexpected::Str(self.text), &visitor)),
            }
        })*
    };
}

impl<'de> de::Deserializer<'de> for KeyDe<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_str(self.text)
    }

    key_number! {
        deserialize_u8 => u8, visit_u8;
        deserialize_u16 => u16, visit_u16;
        deserialize_u32 => u32, visit_u32;
        deserialize_u64 => u64, visit_u64;
        deserialize_i8 => i8, visit_i8;
        deserialize_i16 => i16, visit_i16;
        deserialize_i32 => i32, visit_i32;
        deserialize_i64 => i64, visit_i64;
        deserialize_bool => bool, visit_bool;
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_enum(self.text.to_owned().into_deserializer())
    }

    serde::forward_to_deserialize_any! {
        i128 u128 f32 f64 char str string bytes byte_buf unit unit_struct seq tuple
        tuple_struct map struct identifier ignored_any
    }
}
