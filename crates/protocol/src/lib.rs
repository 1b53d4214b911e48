//! The control <-> proxy gRPC API: generated types and service stubs for `proto/weft.proto`,
//! plus the conversion between a `ConfigPush` and the model's `ProxyConfig`; and the SPIFFE
//! Workload API (`proto/spiffe/workload.proto`, the standard's names) in [`workload`].
#![forbid(unsafe_code)]

#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("weft.v1");
}

pub mod auth;

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

/// Encodes a compiled config for the wire.
pub fn encode_config(version: &str, config: &ProxyConfig) -> pb::ConfigPush {
    pb::ConfigPush {
        version: version.to_string(),
        config_json: serde_json::to_vec(config).expect("ProxyConfig always serializes"),
    }
}

/// Decodes a pushed config; the error says what in the payload is wrong.
pub fn decode_config(push: &pb::ConfigPush) -> Result<ProxyConfig, String> {
    serde_json::from_slice(&push.config_json)
        .map_err(|e| format!("config {} does not decode: {e}", push.version))
}
