//! Route decisions: the compiled route table (virtual hosts, matchers, weighted
//! destinations), the pure [`decide`] function, and what a route does to a request or
//! response (rewrites, header operations, redirects, CORS).

pub mod cors;
mod decide;
mod matcher;
pub mod redirect;
pub mod rewrite;
mod table;

pub use decide::{decide, Action, Decision, ForwardPlan};
pub use matcher::{CompiledMatch, Matcher, RequestView};
pub use table::{split_authority, strip_port, CompiledRoute, RouteTable, VirtualHost};
