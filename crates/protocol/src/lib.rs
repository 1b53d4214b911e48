//! The control <-> proxy gRPC API: generated types and service stubs for `proto/weft.proto`,
//! plus the conversion between a `ConfigPush` and the model's `ProxyConfig`; and the SPIFFE
//! Workload API (`proto/spiffe/workload.proto`, the standard's names) in [`workload`].
#![forbid(unsafe_code)]

#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("weft.v1");
}

pub mod auth;
pub mod delta;

/// The SPIFFE Workload API as the standard defines it (no proto package: the gRPC
/// service is `SpiffeWorkloadAPI`), plus the metadata header every call must carry.
#[allow(clippy::all, missing_docs)]
pub mod workload {
    tonic::include_proto!("_");

    /// The header the standard requires on every Workload API call (`true`); a call
    /// without it is refused with InvalidArgument.
    pub const SECURITY_HEADER: &str = "workload.spiffe.io";

    /// The longest Workload API socket path weft uses: `sun_path` is 108 bytes on Linux
    /// and 104 on macOS, including the terminating NUL.
    pub const MAX_SOCKET_PATH: usize = 103;
}

pub use auth::ControlClient;
pub use pb::mesh_client::MeshClient;
pub use pb::mesh_server::{Mesh, MeshServer};

use weft_model::ProxyConfig;

/// The largest config message either side sends or accepts (gRPC's default is 4 MiB; both
/// ends set this deliberately). A config that would be larger is not sent: the proxy gets a
/// push with the reason instead ([`encode_config`]).
pub const MAX_PUSH_BYTES: usize = 64 << 20;

/// Encodes a compiled config for the wire. A config larger than `limit` bytes is replaced
/// by a push that says so (`error` set, no config), so the stream stays up and the proxy
/// can tell its operator why it gets nothing.
pub fn encode_config(version: &str, config: &ProxyConfig, limit: usize) -> pb::ConfigPush {
    let json = serde_json::to_vec(config).expect("ProxyConfig always serializes");
    if json.len() > limit {
        return pb::ConfigPush {
            version: version.to_string(),
            config_json: Vec::new(),
            error: format!(
                "this proxy's config is {} bytes, over the control plane's limit of {limit} \
                 bytes per push; it keeps its last good config. Fewer services, routes or \
                 endpoints visible to this proxy make it smaller",
                json.len()
            ),
            ..Default::default()
        };
    }
    pb::ConfigPush {
        version: version.to_string(),
        config_json: json,
        ..Default::default()
    }
}

/// Decodes a pushed config; the error says what in the payload is wrong, or why the
/// control plane sent none.
pub fn decode_config(push: &pb::ConfigPush) -> Result<ProxyConfig, String> {
    if !push.error.is_empty() {
        return Err(format!(
            "the control plane cannot serve config {}: {}",
            push.version, push.error
        ));
    }
    serde_json::from_slice(&push.config_json)
        .map_err(|e| format!("config {} does not decode: {e}", push.version))
}
