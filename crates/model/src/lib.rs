//! weft's model: the service registry and the compiler from Istio resources to the config
//! of each proxy. Pure — no I/O, no clocks — so every rule is unit-testable.
#![forbid(unsafe_code)]

mod actions;
pub mod compile;
pub mod config;
mod matching;
pub mod registry;
pub mod report;

pub use actions::grpc_code;
pub use compile::{
    cluster_name, compile, parse_duration_ms, retry_policy, CompileError, ProxyRef, Role,
};
pub use config::*;
pub use registry::{fqdn, spiffe_id, LiveProxy, Registry};
pub use report::not_enforced;
