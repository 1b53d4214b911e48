//! weft's model: the service registry and the compiler from Istio resources to the config
//! of each proxy. Pure — no I/O, no clocks — so every rule is unit-testable.
#![forbid(unsafe_code)]

mod actions;
pub mod authn;
pub mod authz;
pub mod authz_tcp;
pub mod compile;
pub mod config;
pub mod deps;
pub mod egress;
mod ext_authz;
pub mod gateway_tls;
mod locality;
mod matching;
pub mod mesh;
pub mod mtls;
mod names;
mod policy;
pub mod pool;
pub mod protocol;
pub mod registry;
pub mod report;
mod retry_on;
pub mod telemetry;
/// The CEL subset of access log filters (parsed at validation, evaluated by proxies).
pub use weft_api::cel;
mod sidecar;
mod tcp;
pub mod workload_meta;

pub use actions::{grpc_code, retry_policy};
pub use authn::{Authn, FetchedJwks, JwksKey, JwtProvider, TokenLocation};
pub use authz::{Authz, AuthzAction, AuthzAttr, AuthzField, AuthzPolicy, AuthzRule};
pub use compile::{compile, compile_prepared, CompileError, Prepared, ProxyRef, Role};
pub use config::*;
pub use egress::{Egress, OriginTls, Resolution, PASSTHROUGH_CLUSTER};
pub use ext_authz::ExtAuthzProvider;
pub use names::{cluster_name, parse_duration_ms};
pub use pool::PoolLimits;
pub use protocol::Protocol;
pub use registry::{fqdn, spiffe_id, LiveProxy, Registry};
pub use report::not_enforced;
pub use retry_on::{RetryCondition, RetryOn};
pub use workload_meta::WorkloadMeta;
