//! Local meshes without Kubernetes: `weft up DIR` and `weft demo` (the built-in NECPGAME
//! example), the process supervisor behind them, and `weft status`.
#![forbid(unsafe_code)]

pub mod dashboard;
pub mod demo_egress;
pub mod examples;
pub mod mesh;
pub mod plan;
pub mod process;
pub mod proxy_config;
pub mod restart;
pub mod routes;
pub mod status;
pub mod up;

pub use demo_egress::demo;
pub use mesh::{TrafficOptions, UpOptions};
pub use up::up;
