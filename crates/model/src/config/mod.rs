//! The compiled, per-proxy configuration: what the control plane pushes and a proxy runs.
//! Plain data (serde), independent of how it is transported.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

mod upstream;
pub use upstream::*;

/// Everything one proxy needs: listeners, routes, clusters (with endpoints), its inbound side.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ProxyConfig {
    /// Listeners that accept plaintext HTTP from apps or clients (gateway ports, sidecar outbound).
    pub listeners: Vec<Listener>,
    /// Listeners that carry opaque TCP (gateway `TCP` servers; one per (service, TCP port)
    /// on a sidecar's outbound side).
    #[serde(default)]
    pub tcp_listeners: Vec<L4Listener>,
    /// Route tables, by name.
    pub routes: BTreeMap<String, RouteTable>,
    /// Upstream clusters, by name (`outbound|port|subset|host`).
    pub clusters: BTreeMap<String, Cluster>,
    /// The sidecar's inbound side; `None` for gateways.
    pub inbound: Option<Inbound>,
    /// AuthorizationPolicies that select this proxy's workload (inbound and gateways).
    #[serde(default)]
    pub authz: crate::authz::Authz,
    /// RequestAuthentications (JWT rules) that select this proxy's workload (inbound and
    /// gateways).
    #[serde(default)]
    pub authn: crate::authn::Authn,
    /// Mesh-wide settings (MeshConfig).
    #[serde(default)]
    pub mesh: crate::mesh::MeshOptions,
    /// Tracing and access logging (Telemetry API and MeshConfig), per side.
    #[serde(default)]
    pub telemetry: crate::telemetry::TelemetryConfig,
    /// This proxy's workload as telemetry names it (app, canonical service, …).
    #[serde(default)]
    pub workload_meta: crate::WorkloadMeta,
    /// Resources (or fields) that reach this proxy but whose semantics weft does not enforce yet.
    pub not_enforced: Vec<NotEnforced>,
}

/// Where a listener sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListenerKind {
    /// A gateway server port (Gateway `servers[].port`).
    Gateway,
    /// The sidecar's outbound listener, where its app sends requests for mesh services.
    Outbound,
}

/// An HTTP listener: plaintext, or HTTPS when `tls` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Listener {
    /// e.g. `gateway_80` or `outbound`.
    pub name: String,
    pub kind: ListenerKind,
    /// The port the config asks for (Gateway server port); the proxy may map it to another
    /// local port (loopback meshes bind port 0 and report the mapping). 0 for outbound.
    pub port: u32,
    /// Name of the route table in [`ProxyConfig::routes`] (HTTPS: each TLS chain names
    /// its own).
    pub route_table: String,
    /// Gateway HTTPS servers on this port: TLS is terminated, by SNI (`gateway_tls`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::gateway_tls::ServerTls>,
}

/// A listener for opaque TCP: each accepted connection is routed by `routes` (first match
/// wins) to one cluster and piped there whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct L4Listener {
    /// `gateway_tcp_<port>` or `outbound_tcp|<port>|<host>`.
    pub name: String,
    pub kind: ListenerKind,
    /// The port the config asks for (Gateway server port, or the service port a sidecar's
    /// listener stands for); the proxy binds an ephemeral loopback port for sidecars.
    pub port: u32,
    /// Sidecar outbound: the service this listener reaches.
    #[serde(default)]
    pub service: Option<String>,
    /// Read the client's TLS ClientHello (without terminating) for SNI matches.
    #[serde(default)]
    pub sni: bool,
    /// Sidecar outbound: the fixed `ip:port` a Sidecar egress listener gives it (`bind` +
    /// `port`); none = an ephemeral loopback port.
    #[serde(default)]
    pub bind: Option<String>,
    pub routes: Vec<L4Route>,
    /// Gateway `TLS` servers with SIMPLE/MUTUAL: TLS is terminated (by SNI, as on HTTPS
    /// ports) before `routes` (their `tcp` routes) take the decrypted bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::gateway_tls::ServerTls>,
}

/// A VirtualService `tcp` or `tls` route.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct L4Route {
    /// `<vs>/tcp[i]`, `<vs>/tls[i]` or `default/<host>`.
    pub name: String,
    /// Any of them (none = every connection).
    pub matches: Vec<L4Match>,
    pub destinations: Vec<WeightedCluster>,
    pub origin: String,
}

/// Connection conditions left for the proxy (port, sourceLabels, sourceNamespace and
/// gateways were decided by the compiler).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct L4Match {
    /// The ClientHello's server name must match one (`*.example.com` wildcards); empty =
    /// any (a `tcp` route).
    pub sni_hosts: Vec<String>,
    /// The address the connection was made to must be in one of these (IPs or CIDRs).
    pub destination_subnets: Vec<String>,
}

/// Virtual hosts of one listener; chosen by the request's authority.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RouteTable {
    pub virtual_hosts: Vec<VirtualHost>,
}

/// The routes for a set of domains. Domains: exact host, `host:port`, `*.suffix`, or `*`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct VirtualHost {
    pub name: String,
    pub domains: Vec<String>,
    /// Ordered; the first route whose match applies wins.
    pub routes: Vec<Route>,
    /// Envoy's `require_tls: ALL` (a Gateway HTTP server's `tls.httpsRedirect`): a
    /// request that did not come over TLS gets a 301 to `https://`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_tls: bool,
}

/// One HTTP route: any of `matches` (none = match everything) sends to the weighted clusters.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Route {
    /// Stable name for logs and debugging: the HTTPRoute name or `<vs>/http[i]`.
    pub name: String,
    pub matches: Vec<RouteMatch>,
    pub destinations: Vec<WeightedCluster>,
    /// Whole-request timeout in milliseconds (VirtualService `timeout`); none = no timeout.
    pub timeout_ms: Option<u64>,
    /// Retries (VirtualService `retries`, or Istio's default policy when unset).
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Header operations on the request (before forwarding) and response (route level).
    #[serde(default)]
    pub request_headers: HeaderOps,
    #[serde(default)]
    pub response_headers: HeaderOps,
    /// Path/authority rewrite before forwarding (VirtualService `rewrite`).
    #[serde(default)]
    pub rewrite: Option<Rewrite>,
    /// Answer with a redirect instead of forwarding.
    #[serde(default)]
    pub redirect: Option<Redirect>,
    /// Answer with this response instead of forwarding.
    #[serde(default)]
    pub direct_response: Option<DirectResponse>,
    /// Client-side fault injection (delays and aborts).
    #[serde(default)]
    pub fault: Option<Fault>,
    /// Shadow copies of the request (fire and forget; responses ignored).
    #[serde(default)]
    pub mirrors: Vec<Mirror>,
    /// CORS (VirtualService `corsPolicy`): preflights answered, origins echoed.
    #[serde(default)]
    pub cors: Option<Cors>,
    /// `Kind/namespace/name` of the resource the route came from, and its file:line.
    pub origin: String,
}

/// When and how often to retry (Envoy's retry policy, as Istio configures it).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Retries after the first try; 0 = none.
    pub attempts: u32,
    /// Timeout of each try; none = only the route timeout.
    pub per_try_timeout_ms: Option<u64>,
    /// Envoy's `retry_on` conditions (typed; serialized as Envoy's tokens).
    pub retry_on: crate::RetryOn,
    /// Statuses retried under `retriable-status-codes`.
    pub retriable_status_codes: Vec<u16>,
    /// Base of the jittered exponential backoff between tries (Envoy: 25 ms).
    pub backoff_ms: u64,
    /// Retry on a different endpoint than the ones tried (Istio's default).
    pub ignore_previous_hosts: bool,
}

/// A request matcher: every present condition must hold. (Conditions about the client —
/// sourceLabels, sourceNamespace, gateways, port — were decided by the compiler.)
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RouteMatch {
    pub uri: Option<StringMatcher>,
    pub scheme: Option<StringMatcher>,
    pub method: Option<StringMatcher>,
    pub authority: Option<StringMatcher>,
    pub headers: Vec<HeaderMatcher>,
    /// Headers that must NOT match (Istio's `withoutHeaders`).
    #[serde(default)]
    pub without_headers: Vec<HeaderMatcher>,
    /// Query parameters (names case-sensitive).
    #[serde(default)]
    pub query_params: Vec<HeaderMatcher>,
    /// Claims of the request's validated JWT (`@request.auth.claims.a.b` header matches):
    /// a string claim, or any string in a list claim, must match. A request without a
    /// validated token (and every request on a sidecar) has no claims.
    #[serde(default)]
    pub claims: Vec<ClaimMatcher>,
    /// Claims that must NOT match (the same keys under `withoutHeaders`).
    #[serde(default)]
    pub without_claims: Vec<ClaimMatcher>,
    pub ignore_uri_case: bool,
}

/// A condition on a JWT claim; `path` names nested claims (`["group", "id"]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimMatcher {
    pub path: Vec<String>,
    pub matcher: StringMatcher,
}

/// Istio's StringMatch, after validation (exactly one form).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StringMatcher {
    Exact(String),
    Prefix(String),
    /// RE2 syntax, applied to the whole value.
    Regex(String),
    /// Any value, as long as the header or parameter is present (an empty StringMatch).
    Present,
}

/// A header (names lower-case) or query-parameter condition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeaderMatcher {
    pub name: String,
    pub matcher: StringMatcher,
}

/// A destination cluster with its share of traffic.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct WeightedCluster {
    pub cluster: String,
    pub weight: u32,
    /// Destination-level header operations (applied after the route's on requests, before
    /// them on responses).
    #[serde(default)]
    pub request_headers: HeaderOps,
    #[serde(default)]
    pub response_headers: HeaderOps,
}

/// Istio's HeaderOperations: `set` overwrites, `add` appends, `remove` deletes.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct HeaderOps {
    pub set: Vec<(String, String)>,
    pub add: Vec<(String, String)>,
    pub remove: Vec<String>,
}

impl HeaderOps {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}

/// Istio's CorsPolicy.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Cors {
    /// An origin matching any of these is echoed back in `access-control-allow-origin`.
    pub allow_origins: Vec<StringMatcher>,
    pub allow_methods: Vec<String>,
    pub allow_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub max_age_secs: Option<u64>,
    pub allow_credentials: bool,
    /// `unmatchedPreflights: FORWARD` (the default): preflights from origins that do not
    /// match go to the upstream; `IGNORE` answers them without CORS headers.
    pub forward_unmatched_preflights: bool,
}

/// A traffic mirror: a share of requests copied to another cluster.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Mirror {
    pub cluster: String,
    /// 0-100.
    pub percent: f64,
}

/// Istio's HTTPRedirect.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Redirect {
    /// Replaces the whole path.
    pub uri: Option<String>,
    /// Replaces the matched prefix.
    pub prefix_rewrite: Option<String>,
    pub authority: Option<String>,
    pub scheme: Option<String>,
    pub port: Option<u32>,
    /// `derivePort: FROM_REQUEST_PORT` (otherwise the scheme's default port).
    pub port_from_request: bool,
    /// 301 unless set.
    pub code: u16,
}

/// Istio's HTTPDirectResponse.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DirectResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Istio's HTTPFaultInjection; percentages are 0-100.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Fault {
    pub delay_ms: Option<u64>,
    pub delay_percent: f64,
    pub abort_status: Option<u16>,
    /// gRPC status code for `grpcStatus` aborts.
    pub abort_grpc: Option<u8>,
    pub abort_percent: f64,
}

/// Istio's HTTPRewrite.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Rewrite {
    /// Replaces the matched URI prefix (the whole path for exact/regex/no URI match).
    pub uri: Option<String>,
    /// Replaces the authority (Host).
    pub authority: Option<String>,
    /// RE2 pattern and replacement (`\1` groups) applied to the path.
    pub uri_regex: Option<(String, String)>,
}

/// The sidecar's inbound side: who it is and what it accepts.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Inbound {
    pub workload: String,
    pub namespace: String,
    /// This workload's SPIFFE id.
    pub identity: String,
    /// Only peers with certificates from this trust domain are accepted.
    pub trust_domain: String,
    /// What the inbound side accepts: mTLS, plaintext or both (PeerAuthentication).
    #[serde(default)]
    pub mtls: crate::mtls::InboundMtls,
    /// The service ports this workload serves (sorted): the ports a request to it may
    /// name, which authorization and port-level mTLS judge.
    #[serde(default)]
    pub ports: Vec<u32>,
    /// Services this workload backs (for `destination_service` in metrics).
    pub services: Vec<String>,
    pub version: Option<String>,
    /// The ports of `ports` that carry opaque TCP (TCP, TLS…): tunnelled connections to
    /// them are piped to the app.
    #[serde(default)]
    pub tcp_ports: Vec<u32>,
    /// Speak HTTP/2 (prior knowledge) to the app: a service it backs declares a `GRPC` or
    /// `HTTP2` port, as Istio does for the inbound cluster. Otherwise HTTP/1.1.
    #[serde(default)]
    pub app_http2: bool,
    /// The circuit breakers of the inbound cluster (sidecar → app): as Istio does, the
    /// DestinationRule of the (first) service this workload backs applies here too.
    #[serde(default)]
    pub limits: crate::pool::PoolLimits,
    /// That rule's `http2MaxRequests`.
    #[serde(default)]
    pub max_requests: Option<u32>,
    /// Sidecar ingress listeners' `defaultEndpoint`s by port: where the app serves that
    /// port (`127.0.0.1:8080`; `0.0.0.0:P` = the app's host on port P). Other ports: the
    /// app's one address.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub app_ports: BTreeMap<u32, String>,
}

/// Something the user configured that weft loads but does not enforce yet. Reported, never
/// silently ignored.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NotEnforced {
    /// `Kind/namespace/name`.
    pub resource: String,
    /// `file:line`.
    pub location: String,
    /// What is not enforced, e.g. `trafficPolicy.outlierDetection`.
    pub what: String,
}
