//! The resource envelope: `Kind`, `Spec`, Kubernetes `ObjectMeta`, `Source` and
//! `Resource`, plus serialization back to a JSON/YAML-shaped value.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize};

use crate::{
    AuthorizationPolicy, DestinationRule, Gateway, PeerAuthentication, Positions,
    RequestAuthentication, ServiceEntry, Sidecar, Telemetry, VirtualService, WorkloadEntry,
};

/// API group of the networking kinds.
pub const NETWORKING_GROUP: &str = "networking.istio.io";
/// API group of the security kinds.
pub const SECURITY_GROUP: &str = "security.istio.io";
/// API group of Telemetry.
pub const TELEMETRY_GROUP: &str = "telemetry.istio.io";
/// The Istio API groups this crate understands; documents in these groups must
/// be one of the supported kinds and versions.
pub const ISTIO_GROUPS: [&str; 3] = [NETWORKING_GROUP, SECURITY_GROUP, TELEMETRY_GROUP];

/// Kinds of Istio's (and the Kubernetes Gateway API's) groups that weft knows but does not
/// implement: (API group, kind, served versions, what weft does with it). Documents of these
/// kinds load as skipped and are reported by name, never as "unknown kind".
pub const UNSUPPORTED_KINDS: &[(&str, &str, &[&str], &str)] = &[
    (
        NETWORKING_GROUP,
        "EnvoyFilter",
        &["v1alpha3"],
        "Envoy-specific patches have no meaning for weft's proxy",
    ),
    (
        NETWORKING_GROUP,
        "ProxyConfig",
        &["v1beta1"],
        "proxy settings are not applied yet",
    ),
    (
        "extensions.istio.io",
        "WasmPlugin",
        &["v1alpha1"],
        "Wasm extensions are not supported",
    ),
    (
        GATEWAY_API_GROUP,
        "Gateway",
        &["v1", "v1beta1"],
        "the Kubernetes Gateway API is not built yet; use Istio's Gateway and VirtualService",
    ),
    (
        GATEWAY_API_GROUP,
        "GatewayClass",
        &["v1", "v1beta1"],
        "the Kubernetes Gateway API is not built yet",
    ),
    (
        GATEWAY_API_GROUP,
        "HTTPRoute",
        &["v1", "v1beta1"],
        "the Kubernetes Gateway API is not built yet; use a VirtualService",
    ),
    (
        GATEWAY_API_GROUP,
        "GRPCRoute",
        &["v1", "v1alpha2"],
        "the Kubernetes Gateway API is not built yet; use a VirtualService",
    ),
    (
        GATEWAY_API_GROUP,
        "ReferenceGrant",
        &["v1beta1", "v1alpha2"],
        "the Kubernetes Gateway API is not built yet",
    ),
    (
        GATEWAY_API_GROUP,
        "TCPRoute",
        &["v1alpha2"],
        "the Kubernetes Gateway API is not built yet",
    ),
    (
        GATEWAY_API_GROUP,
        "TLSRoute",
        &["v1alpha2"],
        "the Kubernetes Gateway API is not built yet",
    ),
    (
        GATEWAY_API_GROUP,
        "UDPRoute",
        &["v1alpha2"],
        "the Kubernetes Gateway API is not built yet",
    ),
];

/// The Kubernetes Gateway API group.
pub const GATEWAY_API_GROUP: &str = "gateway.networking.k8s.io";

/// The eleven supported Istio kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Kind {
    VirtualService,
    DestinationRule,
    Gateway,
    ServiceEntry,
    WorkloadEntry,
    Sidecar,
    PeerAuthentication,
    AuthorizationPolicy,
    RequestAuthentication,
    Telemetry,
    WorkloadGroup,
    /// Istio's MeshConfig, from the ConfigMap `istio` in `istio-system` (not in
    /// [`Kind::ALL`]: it is not a kind of its own in YAML).
    MeshConfig,
}

impl Kind {
    /// All kinds, in declaration order.
    pub const ALL: [Kind; 11] = [
        Kind::VirtualService,
        Kind::DestinationRule,
        Kind::Gateway,
        Kind::ServiceEntry,
        Kind::WorkloadEntry,
        Kind::Sidecar,
        Kind::PeerAuthentication,
        Kind::AuthorizationPolicy,
        Kind::RequestAuthentication,
        Kind::Telemetry,
        Kind::WorkloadGroup,
    ];

    /// The kind name as written in YAML (`VirtualService`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::VirtualService => "VirtualService",
            Kind::DestinationRule => "DestinationRule",
            Kind::Gateway => "Gateway",
            Kind::ServiceEntry => "ServiceEntry",
            Kind::WorkloadEntry => "WorkloadEntry",
            Kind::Sidecar => "Sidecar",
            Kind::PeerAuthentication => "PeerAuthentication",
            Kind::AuthorizationPolicy => "AuthorizationPolicy",
            Kind::RequestAuthentication => "RequestAuthentication",
            Kind::Telemetry => "Telemetry",
            Kind::WorkloadGroup => "WorkloadGroup",
            Kind::MeshConfig => "MeshConfig",
        }
    }

    /// Looks a kind up by its YAML name (case-sensitive).
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// The API group serving this kind.
    pub fn group(self) -> &'static str {
        match self {
            Kind::PeerAuthentication | Kind::AuthorizationPolicy | Kind::RequestAuthentication => {
                SECURITY_GROUP
            }
            Kind::Telemetry => TELEMETRY_GROUP,
            Kind::MeshConfig => "",
            _ => NETWORKING_GROUP,
        }
    }

    /// The served versions of this kind (storage version first).
    pub fn versions(self) -> &'static [&'static str] {
        match self.group() {
            "" => &["v1"],
            SECURITY_GROUP => &["v1", "v1beta1"],
            TELEMETRY_GROUP => &["v1", "v1alpha1"],
            _ => &["v1", "v1beta1", "v1alpha3"],
        }
    }

    /// The preferred `apiVersion` (`networking.istio.io/v1`).
    pub fn default_api_version(self) -> String {
        format!("{}/{}", self.group(), self.versions()[0])
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error returned by `Kind::from_str` for an unknown kind name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown Istio kind `{0}`")]
pub struct UnknownKind(pub String);

impl FromStr for Kind {
    type Err = UnknownKind;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::from_name(s).ok_or_else(|| UnknownKind(s.to_owned()))
    }
}

/// The typed `spec` of a resource.
#[allow(
    clippy::large_enum_variant,
    reason = "variants are part of the public contract unboxed; resources are few and long-lived"
)]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Spec {
    VirtualService(VirtualService),
    DestinationRule(DestinationRule),
    Gateway(Gateway),
    ServiceEntry(ServiceEntry),
    WorkloadEntry(WorkloadEntry),
    Sidecar(Sidecar),
    PeerAuthentication(PeerAuthentication),
    AuthorizationPolicy(AuthorizationPolicy),
    RequestAuthentication(RequestAuthentication),
    Telemetry(Telemetry),
    WorkloadGroup(crate::WorkloadGroup),
    MeshConfig(crate::MeshConfig),
}

impl Spec {
    /// The kind of this spec.
    pub fn kind(&self) -> Kind {
        match self {
            Spec::VirtualService(_) => Kind::VirtualService,
            Spec::DestinationRule(_) => Kind::DestinationRule,
            Spec::Gateway(_) => Kind::Gateway,
            Spec::ServiceEntry(_) => Kind::ServiceEntry,
            Spec::WorkloadEntry(_) => Kind::WorkloadEntry,
            Spec::Sidecar(_) => Kind::Sidecar,
            Spec::PeerAuthentication(_) => Kind::PeerAuthentication,
            Spec::AuthorizationPolicy(_) => Kind::AuthorizationPolicy,
            Spec::RequestAuthentication(_) => Kind::RequestAuthentication,
            Spec::Telemetry(_) => Kind::Telemetry,
            Spec::WorkloadGroup(_) => Kind::WorkloadGroup,
            Spec::MeshConfig(_) => Kind::MeshConfig,
        }
    }

    /// An empty spec of the given kind.
    pub fn default_for(kind: Kind) -> Spec {
        match kind {
            Kind::VirtualService => Spec::VirtualService(Default::default()),
            Kind::DestinationRule => Spec::DestinationRule(Default::default()),
            Kind::Gateway => Spec::Gateway(Default::default()),
            Kind::ServiceEntry => Spec::ServiceEntry(Default::default()),
            Kind::WorkloadEntry => Spec::WorkloadEntry(Default::default()),
            Kind::Sidecar => Spec::Sidecar(Default::default()),
            Kind::PeerAuthentication => Spec::PeerAuthentication(Default::default()),
            Kind::AuthorizationPolicy => Spec::AuthorizationPolicy(Default::default()),
            Kind::RequestAuthentication => Spec::RequestAuthentication(Default::default()),
            Kind::Telemetry => Spec::Telemetry(Default::default()),
            Kind::WorkloadGroup => Spec::WorkloadGroup(Default::default()),
            Kind::MeshConfig => Spec::MeshConfig(Default::default()),
        }
    }
}

/// Kubernetes object metadata.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectMeta {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_timestamp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_grace_period_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_link: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owner_references: Vec<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub managed_fields: Vec<serde_json::Value>,
}

/// Where a document came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub struct Source {
    pub file: String,
    /// 1-based line on which the document's content starts.
    pub line: usize,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// A loaded, typed Istio resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub api_version: String,
    pub kind: Kind,
    pub metadata: ObjectMeta,
    pub spec: Spec,
    pub source: Source,
    /// Where each node was written (empty for resources built in code).
    pub positions: Positions,
}

impl Resource {
    /// `metadata.namespace`, or `"default"` when unset.
    pub fn namespace(&self) -> &str {
        self.metadata.namespace.as_deref().unwrap_or("default")
    }

    /// `metadata.name`.
    pub fn name(&self) -> &str {
        &self.metadata.name
    }

    /// `Kind/namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}/{}", self.kind, self.namespace(), self.name())
    }

    /// 1-based (line, column) of the node at `path` (`spec.http[0].match[1].uri.exact`,
    /// `metadata.name`, `spec.subsets[2]`), falling back to the nearest written
    /// ancestor, then to `(source.line, 1)`.
    pub fn position_of(&self, path: &str) -> (usize, usize) {
        self.positions
            .nearest(path)
            .unwrap_or((self.source.line, 1))
    }

    /// 1-based (line, column) of the KEY of the mapping entry at `path` (for
    /// "unknown/forbidden field" messages); for a sequence item, the item itself.
    /// Falls back like [`Resource::position_of`].
    pub fn key_position_of(&self, path: &str) -> (usize, usize) {
        self.positions
            .nearest_key(path)
            .unwrap_or((self.source.line, 1))
    }
}

/// Serializes as the Kubernetes document (`apiVersion`, `kind`, `metadata`, `spec`);
/// `source` is not serialized.
impl Serialize for Resource {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Resource", 4)?;
        s.serialize_field("apiVersion", &self.api_version)?;
        s.serialize_field("kind", self.kind.as_str())?;
        s.serialize_field("metadata", &self.metadata)?;
        s.serialize_field("spec", &self.spec)?;
        s.end()
    }
}

/// The resource as a JSON value shaped like its YAML document.
pub fn to_yaml_like_json(resource: &Resource) -> serde_json::Value {
    // Serialization of these plain data types cannot fail (no non-string map keys
    // reach serde_json: u32 keys are stringified by serde_json itself).
    serde_json::to_value(resource).unwrap_or(serde_json::Value::Null)
}

/// The resource as a YAML document.
pub fn to_yaml_string(resource: &Resource) -> Result<String, serde_saphyr::ser::Error> {
    serde_saphyr::to_string(resource)
}
