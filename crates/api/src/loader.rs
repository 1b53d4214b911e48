//! Loading Istio YAML from strings, files and folders: multi-document splitting,
//! envelope checks (apiVersion/kind/metadata) and typed spec decoding, with every
//! error reported at `file:line:column`.

use std::fmt;

use serde::de::DeserializeOwned;

use crate::de;
use crate::positions::Positions;
use crate::resource::{
    Kind, ObjectMeta, Resource, Source, Spec, GATEWAY_API_GROUP, ISTIO_GROUPS, UNSUPPORTED_KINDS,
};
use crate::yaml::{self, Node, Pos, Value};

/// An error located in a file. `line`/`column` are 1-based; both are 0 when the
/// error concerns the whole file (e.g. an I/O error).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, thiserror::Error)]
pub struct LoadError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.line, self.column, self.message
            )
        }
    }
}

/// A document that is not loaded: not an Istio kind (e.g. a Kubernetes Service), or a kind
/// weft knows but does not support (`unsupported` says what weft does with it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub source: Source,
    pub api_version: String,
    pub kind: String,
    /// For a known but unsupported kind (EnvoyFilter, WasmPlugin, Gateway API kinds, …).
    pub unsupported: Option<String>,
}

/// Everything found while loading: typed resources, errors and skipped documents.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LoadResult {
    pub resources: Vec<Resource>,
    pub errors: Vec<LoadError>,
    pub skipped: Vec<Skipped>,
}

impl LoadResult {
    /// Appends another result (e.g. of the next file).
    pub fn extend(&mut self, other: LoadResult) {
        self.resources.extend(other.resources);
        self.errors.extend(other.errors);
        self.skipped.extend(other.skipped);
    }

    /// True when no errors were found.
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Loads every document of a (possibly multi-document) YAML text. `file` is only
/// used for `Source` and error locations. Empty documents are ignored.
///
/// Hostile input is refused with an error rather than exhausting memory, stack or
/// time: at most 16 MiB of text and 10,000 documents per file, no control
/// characters, nesting at most 64 deep, and at most one million nodes and 64 MiB of
/// scalar text per file after alias expansion.
pub fn load_str(text: &str, file: &str) -> LoadResult {
    let mut result = LoadResult::default();
    let whole_file_error = |line, column, message| LoadResult {
        errors: vec![LoadError {
            file: file.to_owned(),
            line,
            column,
            message,
        }],
        ..LoadResult::default()
    };
    if text.len() > MAX_FILE_BYTES {
        return whole_file_error(0, 0, too_large(text.len() as u64));
    }
    if let Some((pos, c)) = forbidden_char(text) {
        let message = format!(
            "invalid YAML: control character U+{:04X} is not allowed (YAML allows only \
             tab, line breaks and printable characters; escape it in a double-quoted string)",
            c as u32
        );
        return whole_file_error(pos.line, pos.column, message);
    }
    let documents = split_documents(text);
    if let Some((line, _)) = documents.get(MAX_DOCUMENTS) {
        let message =
            format!("too many YAML documents in one file (the limit is {MAX_DOCUMENTS}); split it");
        return whole_file_error(line + 1, 1, message);
    }
    let mut budget = yaml::TreeBudget::FILE;
    for (first_line, doc) in documents {
        if budget.nodes == 0 {
            break; // the file's allowance is spent: its error was already reported
        }
        let mut ctx = DocLoader {
            file,
            errors: Vec::new(),
        };
        match yaml::parse_document(doc, &mut budget) {
            Err((pos, message)) => ctx.error(
                Pos {
                    line: pos.line + first_line,
                    column: pos.column,
                },
                format!("invalid YAML: {message}"),
            ),
            Ok(None) => {}
            Ok(Some(mut root)) => {
                root.shift(first_line);
                let path_bytes = path_bytes(&root, 0);
                if path_bytes > MAX_PATH_BYTES {
                    let message = format!(
                        "YAML document too complex: the paths of its nodes add up to {path_bytes} \
                         bytes (the limit is {} MiB); use shorter keys or less nesting",
                        MAX_PATH_BYTES / (1024 * 1024)
                    );
                    ctx.error(root.pos, message);
                } else {
                    match ctx.load(&root) {
                        Some(Loaded::Resource(r)) => result.resources.push(*r),
                        Some(Loaded::Skipped(s)) => result.skipped.push(s),
                        None => {}
                    }
                }
            }
        }
        result.errors.extend(ctx.errors);
    }
    result
}

/// Largest file `load_str` and `load_path` accept (16 MiB): far above any real
/// Istio configuration, small enough to parse in well under a second.
pub(crate) const MAX_FILE_BYTES: usize = 16 * 1024 * 1024;

/// Most YAML documents (`---`-separated) `load_str` accepts in one file.
pub(crate) const MAX_DOCUMENTS: usize = 50_000;

/// Most bytes the dotted paths (`spec.http[0].route`) of all nodes of one document
/// may add up to. Decoding and position indexing build each node's path, so very
/// long keys above deep or wide subtrees (multiplied by aliases) would otherwise cost
/// gigabytes; real documents stay below a few MiB.
pub(crate) const MAX_PATH_BYTES: usize = 64 * 1024 * 1024;

/// The summed length of the paths of `node` and every node below it, when `node`'s
/// own path is `prefix` bytes long (saturating).
fn path_bytes(node: &Node, prefix: usize) -> usize {
    let below = match &node.value {
        Value::Seq(items) => items.iter().enumerate().fold(0usize, |sum, (i, item)| {
            let index_len = i.checked_ilog10().unwrap_or(0) as usize + 3; // "[i]"
            sum.saturating_add(path_bytes(item, prefix.saturating_add(index_len)))
        }),
        Value::Map(entries) => entries.iter().fold(0usize, |sum, (key, value)| {
            let key_len = match &key.value {
                Value::Str(s) => s.len(),
                _ => key.key_text().len(),
            };
            sum.saturating_add(path_bytes(value, prefix.saturating_add(key_len + 1)))
        }),
        _ => 0,
    };
    below.saturating_add(prefix)
}

pub(crate) fn too_large(len: u64) -> String {
    format!(
        "file is too large ({len} bytes; the limit is {} MiB)",
        MAX_FILE_BYTES / (1024 * 1024)
    )
}

/// The first character YAML does not allow in a stream (C0/C1 controls other than
/// tab, CR, LF and NEL; DEL; U+FFFE/U+FFFF), with its 1-based position. go-yaml,
/// and so kubectl, refuses these too.
fn forbidden_char(text: &str) -> Option<(Pos, char)> {
    let allowed = |c: char| {
        matches!(c, '\t' | '\n' | '\r' | ' '..='~' | '\u{85}' | '\u{a0}'..='\u{d7ff}')
            || matches!(c, '\u{e000}'..='\u{fffd}' | '\u{10000}'..)
    };
    let index = text.find(|c: char| !allowed(c))?;
    let before = &text[..index];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let pos = Pos {
        line: before.matches('\n').count() + 1,
        column: before[line_start..].chars().count() + 1,
    };
    Some((pos, text[index..].chars().next()?))
}

/// Splits a YAML stream into documents, returning each document's text with the
/// number of lines preceding it. A `---` line starts a new document (and belongs
/// to it); a `...` line ends the current one.
fn split_documents(text: &str) -> Vec<(usize, &str)> {
    fn is_marker(line: &str, marker: &str) -> bool {
        line.strip_prefix(marker)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n']))
    }
    let mut docs = Vec::new();
    let (mut start, mut start_line) = (0usize, 0usize);
    let mut offset = 0usize;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        if is_marker(line, "---") {
            docs.push((start_line, &text[start..offset]));
            (start, start_line) = (offset, index);
        } else if is_marker(line, "...") {
            docs.push((start_line, &text[start..offset + line.len()]));
            (start, start_line) = (offset + line.len(), index + 1);
        }
        offset += line.len();
    }
    docs.push((start_line, &text[start..]));
    docs
}

pub(crate) enum Loaded {
    Resource(Box<Resource>),
    Skipped(Skipped),
}

const TOP_LEVEL_FIELDS: &[&str] = &["apiVersion", "kind", "metadata", "spec", "status"];

pub(crate) struct DocLoader<'a> {
    file: &'a str,
    errors: Vec<LoadError>,
}

impl DocLoader<'_> {
    pub(crate) fn error(&mut self, pos: Pos, message: String) {
        self.errors.push(LoadError {
            file: self.file.to_owned(),
            line: pos.line,
            column: pos.column,
            message,
        });
    }

    /// Reads a required top-level string field (`apiVersion`, `kind`).
    fn required_str<'n>(&mut self, root: &'n Node, key: &str) -> Option<(&'n str, Pos)> {
        match root.get(key) {
            Some((
                _,
                Node {
                    value: Value::Str(s),
                    pos,
                },
            )) if !s.is_empty() => Some((s, *pos)),
            Some((_, node)) => {
                let found = node.type_name();
                self.error(
                    node.pos,
                    format!("`{key}` must be a non-empty string, found {found}"),
                );
                None
            }
            None => {
                self.error(
                    root.pos,
                    format!("missing field `{key}`; this is not a Kubernetes resource"),
                );
                None
            }
        }
    }

    pub(crate) fn decode<T: DeserializeOwned>(&mut self, node: &Node, path: &str) -> Option<T> {
        match de::from_node(node, path) {
            Ok(value) => Some(value),
            Err(err) => {
                self.error(err.pos().unwrap_or(node.pos), err.to_string());
                None
            }
        }
    }

    fn load(&mut self, root: &Node) -> Option<Loaded> {
        let Value::Map(entries) = &root.value else {
            let found = root.type_name();
            self.error(
                root.pos,
                format!("a resource must be a mapping, found {found}"),
            );
            return None;
        };
        let source = Source {
            file: self.file.to_owned(),
            line: root.pos.line,
        };
        let api_version = self.required_str(root, "apiVersion");
        let kind_name = self.required_str(root, "kind");
        let ((api_version, api_pos), (kind_name, kind_pos)) = (api_version?, kind_name?);
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let skipped = |unsupported| {
            Some(Loaded::Skipped(Skipped {
                source: source.clone(),
                api_version: api_version.to_owned(),
                kind: kind_name.to_owned(),
                unsupported,
            }))
        };
        if let Some((_, _, versions, note)) = UNSUPPORTED_KINDS
            .iter()
            .find(|(g, k, _, _)| *g == group && *k == kind_name)
        {
            if !versions.contains(&version) {
                let served: Vec<String> = versions.iter().map(|v| format!("{group}/{v}")).collect();
                let message = format!(
                    "unsupported apiVersion `{group}/{version}` for {kind_name}; expected one of {}",
                    served.join(", ")
                );
                self.error(api_pos, message);
                return None;
            }
            return skipped(Some(format!(
                "{kind_name} is not supported by weft ({note}); it is loaded and ignored"
            )));
        }
        if api_version == "v1" && kind_name == "Service" {
            return self.k8s_service(root, source);
        }
        if api_version == "v1" && kind_name == "ConfigMap" && DocLoader::is_mesh_config_map(root) {
            return self.mesh_config(root, source);
        }
        if !ISTIO_GROUPS.contains(&group) && group != GATEWAY_API_GROUP {
            return skipped(None);
        }
        let kind = self.resolve_kind(group, version, (kind_name, kind_pos), api_pos)?;

        for (key, _) in entries {
            let known =
                matches!(&key.value, Value::Str(k) if TOP_LEVEL_FIELDS.contains(&k.as_str()));
            if !known {
                let list = TOP_LEVEL_FIELDS
                    .iter()
                    .map(|f| format!("`{f}`"))
                    .collect::<Vec<_>>();
                let message = format!(
                    "unknown field `{}` in {kind}; expected one of {}",
                    key_display(key),
                    list.join(", ")
                );
                self.error(key.pos, message);
            }
        }

        let metadata = self.metadata(root, kind);
        let spec = match root.get("spec") {
            Some((_, node)) => self.spec(kind, node),
            None => Some(Spec::default_for(kind)),
        };
        if !self.errors.is_empty() {
            return None;
        }
        Some(Loaded::Resource(Box::new(Resource {
            api_version: api_version.to_owned(),
            kind,
            metadata: metadata?,
            spec: spec?,
            source,
            positions: Positions::from_node(root),
        })))
    }

    fn resolve_kind(
        &mut self,
        group: &str,
        version: &str,
        (kind_name, kind_pos): (&str, Pos),
        api_pos: Pos,
    ) -> Option<Kind> {
        let in_group: Vec<&str> = Kind::ALL
            .iter()
            .filter(|k| k.group() == group)
            .map(|k| k.as_str())
            .chain(
                UNSUPPORTED_KINDS
                    .iter()
                    .filter(|(g, ..)| *g == group)
                    .map(|(_, k, ..)| *k),
            )
            .collect();
        let Some(kind) = Kind::from_name(kind_name) else {
            let message = format!(
                "unknown kind `{kind_name}` in API group {group}; expected one of {}",
                in_group.join(", ")
            );
            self.error(kind_pos, message);
            return None;
        };
        if kind.group() != group {
            let message = format!(
                "kind {kind} belongs to API group {}, not {group} (use apiVersion {})",
                kind.group(),
                kind.default_api_version()
            );
            self.error(kind_pos, message);
            return None;
        }
        if !kind.versions().contains(&version) {
            let served: Vec<String> = kind
                .versions()
                .iter()
                .map(|v| format!("{group}/{v}"))
                .collect();
            let message = format!(
                "unsupported apiVersion `{group}/{version}` for {kind}; expected one of {}",
                served.join(", ")
            );
            self.error(api_pos, message);
            return None;
        }
        Some(kind)
    }

    fn metadata(&mut self, root: &Node, kind: Kind) -> Option<ObjectMeta> {
        let Some((key, node)) = root.get("metadata") else {
            self.error(
                root.pos,
                format!("missing field `metadata` in {kind} (metadata.name is required)"),
            );
            return None;
        };
        let meta: ObjectMeta = self.decode(node, &format!("{kind}.metadata"))?;
        if meta.name.is_empty() {
            let pos = node.get("name").map_or(key.pos, |(_, v)| v.pos);
            self.error(pos, format!("missing metadata.name in {kind}"));
            return None;
        }
        Some(meta)
    }

    fn spec(&mut self, kind: Kind, node: &Node) -> Option<Spec> {
        let path = format!("{kind}.spec");
        Some(match kind {
            Kind::VirtualService => Spec::VirtualService(self.decode(node, &path)?),
            Kind::DestinationRule => Spec::DestinationRule(self.decode(node, &path)?),
            Kind::Gateway => Spec::Gateway(self.decode(node, &path)?),
            Kind::ServiceEntry => Spec::ServiceEntry(self.decode(node, &path)?),
            Kind::WorkloadEntry => Spec::WorkloadEntry(self.decode(node, &path)?),
            Kind::Sidecar => Spec::Sidecar(self.decode(node, &path)?),
            Kind::PeerAuthentication => Spec::PeerAuthentication(self.decode(node, &path)?),
            Kind::AuthorizationPolicy => Spec::AuthorizationPolicy(self.decode(node, &path)?),
            Kind::RequestAuthentication => Spec::RequestAuthentication(self.decode(node, &path)?),
            Kind::Telemetry => Spec::Telemetry(self.decode(node, &path)?),
            Kind::WorkloadGroup => Spec::WorkloadGroup(self.decode(node, &path)?),
            Kind::MeshConfig => Spec::MeshConfig(Default::default()),
        })
    }
}

fn key_display(key: &Node) -> String {
    match &key.value {
        Value::Str(s) => s.clone(),
        _ => format!("<{}>", key.type_name()),
    }
}
