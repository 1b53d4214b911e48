//! `weft-demo`: the pieces behind `weft demo` — a configurable echo workload
//! that plays NECPGAME's game-backend services ([`demo_app`]), a paced HTTP
//! traffic generator with a live per-route table ([`loadgen`]) and a small
//! `x-forwarded-client-cert` parser ([`xfcc`]).
#![forbid(unsafe_code)]

pub mod demo_app;
pub mod loadgen;
pub mod xfcc;

pub use demo_app::{bind_demo_app, bind_demo_app_until, run_demo_app, DemoAppConfig};
pub use loadgen::{render_table, run_load, LoadConfig, LoadRoute, RouteStats, Summary};
