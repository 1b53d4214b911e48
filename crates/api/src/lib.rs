//! weft-api: typed Istio configuration resources (the eleven supported kinds) and a
//! position-aware YAML loader.
//!
//! Entry points: [`load_str`] and [`load_path`] return a [`LoadResult`] with typed
//! [`Resource`]s, located [`LoadError`]s and [`Skipped`] non-Istio documents.
//!
//! ```
//! let yaml = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\n\
//!             spec:\n  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n    \
//!             hosts: ['*']\n    bogus: 1\n";
//! let result = weft_api::load_str(yaml, "gw.yaml");
//! assert!(result.resources.is_empty());
//! assert_eq!(
//!     result.errors[0].to_string(),
//!     "gw.yaml:8:5: unknown field `bogus` in Gateway.spec.servers[0]; expected one of \
//!      `port`, `bind`, `hosts`, `tls`, `name`, `defaultEndpoint`"
//! );
//! ```
#![forbid(unsafe_code)]

pub mod cel;
mod common;
mod connection_pool;
mod de;
mod destination_rule;
mod files;
mod gateway;
mod k8s_service;
mod load_balancer;
mod loader;
mod loader_k8s;
mod mesh_config;
mod positions;
mod resource;
mod security;
mod service_entry;
mod sidecar;
mod telemetry;
mod validate;
mod virtual_service;
mod workload_group;
mod yaml;

pub use common::*;
pub use connection_pool::*;
pub use destination_rule::*;
pub use files::{load_bytes, load_path};
pub use gateway::*;
pub use load_balancer::*;
pub use loader::{load_str, LoadError, LoadResult, Skipped};
pub use mesh_config::*;
pub use positions::Positions;
pub use resource::*;
pub use security::*;
pub use service_entry::*;
pub use sidecar::*;
pub use telemetry::*;
pub use validate::{
    duplicates, duration_ms, load_valid, load_valid_report, load_valid_with_unsupported,
    valid_duration, validate_all, validate_all_with_warnings, Reloader, ValidConfig,
    ValidationError, ValidationWarning, WarningKind,
};
pub use virtual_service::*;
pub use workload_group::*;
