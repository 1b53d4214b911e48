//! Delta pushes. A proxy's config is split into named parts ([`split`]; names in
//! `proto/weft.proto`, `ConfigResource`); a stream's [`Sent`] remembers what it sent and
//! turns each newer [`Desired`] state into the pushes that carry only the parts that
//! changed or went away, split into messages under the transport limit; a proxy's
//! [`Received`] applies them to what it has and gives back the whole config when a version
//! is complete ([`assemble`]). Parts of kinds a proxy does not know are ignored, and
//! unknown fields inside a part too, so a proxy and a control plane one version apart work
//! together.

use crate::pb;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use weft_model::ProxyConfig;

/// One encoded part.
pub type Body = Arc<[u8]>;

/// What a proxy should have now: its parts, or why the control plane cannot serve it.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub version: String,
    pub parts: BTreeMap<String, Body>,
    pub error: String,
}

impl Desired {
    /// The state for `cfg` at `version`.
    pub fn new(version: &str, cfg: &ProxyConfig) -> Desired {
        Desired {
            version: version.to_string(),
            parts: split(cfg),
            error: String::new(),
        }
    }

    /// The config these parts make (tests, tools).
    pub fn config(&self) -> Result<ProxyConfig, String> {
        if !self.error.is_empty() {
            return Err(self.error.clone());
        }
        assemble(&self.parts)
    }
}

/// The order of the listeners and of each route table's virtual hosts, by part key.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Layout {
    #[serde(default)]
    listeners: Vec<String>,
    #[serde(default)]
    tcp_listeners: Vec<String>,
    #[serde(default)]
    routes: BTreeMap<String, Vec<String>>,
}

fn json<T: Serialize>(value: &T) -> Body {
    serde_json::to_vec(value)
        .expect("config parts always serialize")
        .into()
}

/// Unique keys for named items: the name, `name#<i>` for a repeat.
fn keys<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    names
        .map(|n| {
            let count = seen.entry(n).or_default();
            *count += 1;
            match *count {
                1 => n.to_string(),
                i => format!("{n}#{i}"),
            }
        })
        .collect()
}

/// Splits a config into named parts.
pub fn split(cfg: &ProxyConfig) -> BTreeMap<String, Body> {
    let mut parts = BTreeMap::new();
    let mut layout = Layout {
        listeners: keys(cfg.listeners.iter().map(|l| l.name.as_str())),
        tcp_listeners: keys(cfg.tcp_listeners.iter().map(|l| l.name.as_str())),
        routes: BTreeMap::new(),
    };
    for (key, l) in layout.listeners.iter().zip(&cfg.listeners) {
        parts.insert(format!("listener/{key}"), json(l));
    }
    for (key, l) in layout.tcp_listeners.iter().zip(&cfg.tcp_listeners) {
        parts.insert(format!("tcp_listener/{key}"), json(l));
    }
    for (table, routes) in &cfg.routes {
        let vhosts = keys(routes.virtual_hosts.iter().map(|v| v.name.as_str()));
        for (key, v) in vhosts.iter().zip(&routes.virtual_hosts) {
            parts.insert(format!("vhost/{table}/{key}"), json(v));
        }
        layout.routes.insert(table.clone(), vhosts);
    }
    for (name, c) in &cfg.clusters {
        parts.insert(format!("cluster/{name}"), json(c));
    }
    parts.insert("layout".into(), json(&layout));
    parts.insert("inbound".into(), json(&cfg.inbound));
    parts.insert("authz".into(), json(&cfg.authz));
    parts.insert("authn".into(), json(&cfg.authn));
    parts.insert("mesh".into(), json(&cfg.mesh));
    parts.insert("telemetry".into(), json(&cfg.telemetry));
    parts.insert("workload_meta".into(), json(&cfg.workload_meta));
    parts.insert("not_enforced".into(), json(&cfg.not_enforced));
    parts
}

fn decode<T: for<'de> Deserialize<'de> + Default>(
    parts: &BTreeMap<String, Body>,
    name: &str,
) -> Result<T, String> {
    match parts.get(name) {
        None => Ok(T::default()),
        Some(b) => {
            serde_json::from_slice(b).map_err(|e| format!("part {name} does not decode: {e}"))
        }
    }
}

fn required<T: for<'de> Deserialize<'de>>(
    parts: &BTreeMap<String, Body>,
    name: &str,
) -> Result<T, String> {
    let b = parts
        .get(name)
        .ok_or_else(|| format!("the layout names part {name}, which was never sent"))?;
    serde_json::from_slice(b).map_err(|e| format!("part {name} does not decode: {e}"))
}

/// The config the parts make; the error names the part that is missing or does not decode.
pub fn assemble(parts: &BTreeMap<String, Body>) -> Result<ProxyConfig, String> {
    let layout: Layout = decode(parts, "layout")?;
    let mut cfg = ProxyConfig {
        inbound: decode(parts, "inbound")?,
        authz: decode(parts, "authz")?,
        authn: decode(parts, "authn")?,
        mesh: decode(parts, "mesh")?,
        telemetry: decode(parts, "telemetry")?,
        workload_meta: decode(parts, "workload_meta")?,
        not_enforced: decode(parts, "not_enforced")?,
        ..ProxyConfig::default()
    };
    for key in &layout.listeners {
        cfg.listeners
            .push(required(parts, &format!("listener/{key}"))?);
    }
    for key in &layout.tcp_listeners {
        cfg.tcp_listeners
            .push(required(parts, &format!("tcp_listener/{key}"))?);
    }
    for (table, vhosts) in &layout.routes {
        let mut t = weft_model::RouteTable::default();
        for key in vhosts {
            t.virtual_hosts
                .push(required(parts, &format!("vhost/{table}/{key}"))?);
        }
        cfg.routes.insert(table.clone(), t);
    }
    for (name, body) in parts.range("cluster/".to_string()..) {
        let Some(cluster) = name.strip_prefix("cluster/") else {
            break;
        };
        let c = serde_json::from_slice(body)
            .map_err(|e| format!("part {name} does not decode: {e}"))?;
        cfg.clusters.insert(cluster.to_string(), c);
    }
    Ok(cfg)
}

/// What one stream has sent (the control plane's side).
#[derive(Debug, Default)]
pub struct Sent {
    parts: HashMap<String, Body>,
    started: bool,
}

/// Bytes a part adds to a message beyond its name and body (tags and lengths).
const PART_OVERHEAD: usize = 16;

impl Sent {
    /// The pushes that bring the proxy from what was sent to `desired`: the changed and
    /// removed parts (everything on the stream's first push), in messages of at most
    /// `limit` bytes. A part larger than `limit` alone cannot be sent: the proxy gets one
    /// push saying which (it keeps its last good config) and the stream's state stays as
    /// it was, so the next state is diffed against what the proxy really has.
    pub fn pushes(&mut self, desired: &Desired, limit: usize) -> Vec<pb::ConfigPush> {
        let error = |error: String| pb::ConfigPush {
            version: desired.version.clone(),
            error,
            ..Default::default()
        };
        if !desired.error.is_empty() {
            return vec![error(desired.error.clone())];
        }
        let full = !self.started;
        let changed: Vec<(&String, &Body)> = desired
            .parts
            .iter()
            .filter(|(name, body)| full || self.parts.get(*name).is_none_or(|b| b[..] != body[..]))
            .collect();
        if let Some((name, body)) = changed
            .iter()
            .find(|(_, b)| b.len() + PART_OVERHEAD > limit)
        {
            return vec![error(format!(
                "part {name} of this proxy's config is {} bytes, over the control plane's \
                 limit of {limit} bytes per message; the proxy keeps its last good config. \
                 Fewer routes or endpoints in it make it smaller, or raise --max-push-bytes",
                body.len()
            ))];
        }
        let removed: Vec<String> = match full {
            true => Vec::new(),
            false => self
                .parts
                .keys()
                .filter(|n| !desired.parts.contains_key(*n))
                .cloned()
                .collect(),
        };
        let mut pushes = vec![pb::ConfigPush {
            version: desired.version.clone(),
            full,
            removed,
            ..Default::default()
        }];
        let mut size = 0;
        for (name, body) in changed {
            let add = name.len() + body.len() + PART_OVERHEAD;
            if size + add > limit && size > 0 {
                pushes.push(pb::ConfigPush {
                    version: desired.version.clone(),
                    ..Default::default()
                });
                size = 0;
            }
            size += add;
            let last = pushes.last_mut().expect("one push at least");
            last.resources.push(pb::ConfigResource {
                name: name.clone(),
                body_json: body.to_vec(),
            });
        }
        let n = pushes.len();
        for p in &mut pushes[..n - 1] {
            p.more = true;
        }
        self.parts = desired.parts.clone().into_iter().collect();
        self.started = true;
        pushes
    }
}

/// What one proxy has received on its stream (the proxy's side).
#[derive(Debug, Default)]
pub struct Received {
    parts: BTreeMap<String, Body>,
}

impl Received {
    /// Applies one push. `Ok(Some(config))` when its version is complete, `Ok(None)` when
    /// more messages of it follow, `Err` when the control plane sent an error or the parts
    /// do not make a config (the proxy NACKs and keeps serving its last good config; the
    /// parts stay as the control plane sent them, so the next delta applies on top).
    pub fn apply(&mut self, push: &pb::ConfigPush) -> Result<Option<ProxyConfig>, String> {
        if !push.error.is_empty() {
            return Err(format!(
                "the control plane cannot serve config {}: {}",
                push.version, push.error
            ));
        }
        if !push.config_json.is_empty() {
            // A whole config (an older control plane).
            self.parts.clear();
            return crate::decode_config(push).map(Some);
        }
        if push.full {
            self.parts.clear();
        }
        for name in &push.removed {
            self.parts.remove(name);
        }
        for r in &push.resources {
            self.parts
                .insert(r.name.clone(), r.body_json.as_slice().into());
        }
        if push.more {
            return Ok(None);
        }
        assemble(&self.parts)
            .map(Some)
            .map_err(|e| format!("config {} does not assemble: {e}", push.version))
    }
}
