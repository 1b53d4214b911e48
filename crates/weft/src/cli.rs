//! The `weft` command line: every subcommand and flag, with its help text.

use clap::{Parser, Subcommand, ValueEnum};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "weft",
    version,
    about = "A service mesh that speaks Istio's API: control plane, proxies and local meshes in one binary"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) cmd: Cmd,
}

#[derive(Subcommand)]
pub(crate) enum Cmd {
    /// Run the control plane (istiod's role): config folder -> proxies, plus the CA.
    Control(ControlArgs),
    /// Run a proxy (Envoy's role) as a sidecar or a gateway.
    Proxy(ProxyArgs),
    /// Run a whole mesh on this machine from a folder of Istio YAML.
    Up(UpArgs),
    /// Run the built-in NECPGAME example mesh with generated traffic.
    Demo(DemoArgs),
    /// The built-in demo workload: an HTTP echo service.
    DemoApp(DemoAppArgs),
    /// List the processes of a running local mesh.
    Status(StatusArgs),
    /// Show what one proxy of a running local mesh has (listeners, routes, clusters,
    /// endpoints with health, certificate).
    ProxyConfig(ProxyConfigArgs),
    /// Validate Istio YAML files or folders (`-` for stdin).
    Analyze(AnalyzeArgs),
    /// Serve a live web view of a running local mesh: the service graph with request
    /// rate, errors and latency per call, mTLS and circuit-breaker state, and the config
    /// that applies to each workload.
    Dashboard(DashboardArgs),
    /// Add weft's sidecar to the Pods and workloads of a YAML file (istioctl kube-inject).
    Inject(crate::kube_cmds::InjectArgs),
    /// Print the sidecar injection MutatingWebhookConfiguration, its caBundle the mesh
    /// root (`weft webhook-config | kubectl apply -f -`).
    WebhookConfig(crate::kube_cmds::WebhookConfigArgs),
    /// Print the manifests for a Kubernetes cluster: Istio's CRDs, the control plane, its
    /// CA, the injection webhook, the ingress gateway (`weft install | kubectl apply -f -`).
    Install(crate::kube_cmds::InstallArgs),
}

#[derive(clap::Args)]
pub(crate) struct ControlArgs {
    /// Folder of Istio YAML to serve and watch (the `folder` config source).
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
    /// Where the mesh config comes from: the `--config` folder, or the Kubernetes API
    /// server (Istio's CRDs, Services and Pods, watched).
    #[arg(long, value_enum, default_value = "folder")]
    pub(crate) config_source: ConfigSourceArg,
    /// The kubeconfig for `--config-source kubernetes` (default: in-cluster, then
    /// $KUBECONFIG, then ~/.kube/config).
    #[arg(long)]
    pub(crate) kubeconfig: Option<PathBuf>,
    /// Serve the sidecar injection webhook (HTTPS, `POST /inject`) on this address, its
    /// certificate from the mesh CA (see `weft webhook-config`).
    #[arg(long)]
    pub(crate) webhook_listen: Option<SocketAddr>,
    /// Serve the control plane's own metrics (pilot_xds, pilot_xds_pushes,
    /// pilot_proxy_convergence_time, …) as Prometheus text on `GET /metrics` here
    /// (istiod's 15014; port 0 picks one, printed in the `ready` event).
    #[arg(long)]
    pub(crate) metrics_listen: Option<SocketAddr>,
    #[command(flatten)]
    pub(crate) webhook_service: crate::kube_cmds::WebhookServiceArgs,
    #[command(flatten)]
    pub(crate) inject: crate::kube_cmds::InjectFlags,
    /// Folder for the CA root and other state.
    #[arg(long, default_value = ".weft/control")]
    pub(crate) state_dir: PathBuf,
    /// gRPC listen address (port 0 picks a free port; the bound one is printed).
    #[arg(long, default_value = "127.0.0.1:15012")]
    pub(crate) listen: SocketAddr,
    #[arg(long, default_value = "cluster.local")]
    pub(crate) trust_domain: String,
    /// Use this CA certificate (PEM) instead of a generated root; needs --ca-key.
    #[arg(long, requires = "ca_key")]
    pub(crate) ca_cert: Option<PathBuf>,
    /// Private key (PKCS#8 PEM) of --ca-cert.
    #[arg(long, requires = "ca_cert")]
    pub(crate) ca_key: Option<PathBuf>,
    /// Istio's plug-in CA folder: ca-cert.pem and ca-key.pem (an intermediate that signs
    /// workload certificates), root-cert.pem (the trust anchors), cert-chain.pem.
    #[arg(long, conflicts_with = "ca_cert")]
    pub(crate) cacerts: Option<PathBuf>,
    /// Lifetime of workload certificates, in seconds (renewed at half-life).
    #[arg(long, default_value_t = 86400)]
    pub(crate) cert_ttl_secs: u64,
    /// Require proxies to present this file's token (create one with e.g.
    /// `head -c 32 /dev/urandom | xxd -p -c 64 > token && chmod 600 token`).
    #[arg(long)]
    pub(crate) token_file: Option<PathBuf>,
    /// Per-workload tokens: a file of `<token> <role> <namespace>/<workload>` lines (mode
    /// 0600); each token admits only the proxy it names. `weft up` makes one per proxy.
    #[arg(long)]
    pub(crate) workload_tokens: Option<PathBuf>,
    /// Exit when stdin closes (set by `weft up` for its children).
    #[arg(long)]
    pub(crate) exit_with_parent: bool,
    /// Largest config push sent to a proxy, in bytes; a proxy whose config is larger gets
    /// the reason instead (logged, and a `proxy_unserved` event), never a broken stream.
    #[arg(long, default_value_t = weft_protocol::MAX_PUSH_BYTES)]
    pub(crate) max_push_bytes: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ConfigSourceArg {
    Folder,
    Kubernetes,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum RoleArg {
    Sidecar,
    Gateway,
}

#[derive(clap::Args)]
pub(crate) struct ProxyArgs {
    #[arg(long, value_enum)]
    pub(crate) role: RoleArg,
    /// Name of the WorkloadEntry this proxy fronts.
    #[arg(long)]
    pub(crate) workload: String,
    #[arg(long, default_value = "default")]
    pub(crate) namespace: String,
    /// Control plane address.
    #[arg(long, default_value = "127.0.0.1:15012")]
    pub(crate) control: String,
    /// The control plane's token (see `weft control --token-file`).
    #[arg(long)]
    pub(crate) token_file: Option<PathBuf>,
    /// The local app's address (sidecars).
    #[arg(long)]
    pub(crate) app: Option<String>,
    /// IP the inbound listener and gateway ports bind on. The outbound listener and the
    /// admin port stay on loopback whatever this says (an outbound listener reachable from
    /// the network would lend this workload's identity to anyone); move them only with
    /// --outbound-listen / --admin-listen.
    #[arg(long, default_value = "127.0.0.1")]
    pub(crate) bind_ip: IpAddr,
    /// Worker threads (Envoy's --concurrency); default: one per core this process may use.
    /// 1 runs everything on one thread.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub(crate) concurrency: Option<u16>,
    /// Downstream connections served at once, all listeners together; past it plaintext
    /// clients get a 503 and the connection closes (Envoy's overload manager role).
    #[arg(long, default_value_t = weft_proxy::state::MAX_DOWNSTREAM_CONNECTIONS)]
    pub(crate) max_connections: usize,
    /// Record no metrics (to measure what telemetry costs; `bench/` compares both).
    #[arg(long)]
    pub(crate) no_telemetry: bool,
    /// Serve Istio's merged metrics page (the agent's 15020: this proxy's metrics plus the
    /// app's) at `/stats/prometheus` on this address (port 0: any).
    #[arg(long)]
    pub(crate) merged_metrics_listen: Option<SocketAddr>,
    /// Merge the app's metrics into that page (`prometheus.io/scrape: "true"`), from this
    /// port (`prometheus.io/port`; default: the app's own port) ...
    #[arg(long, requires = "merged_metrics_listen")]
    pub(crate) app_metrics_port: Option<u16>,
    /// ... and path (`prometheus.io/path`). Either flag turns app scraping on.
    #[arg(long, requires = "merged_metrics_listen")]
    pub(crate) app_metrics_path: Option<String>,
    /// Bind a gateway port to a fixed address: `80=0.0.0.0:8080` (repeatable).
    #[arg(long = "port", value_parser = parse_port_map)]
    pub(crate) ports: Vec<(u32, SocketAddr)>,
    #[arg(long)]
    pub(crate) admin_listen: Option<SocketAddr>,
    #[arg(long)]
    pub(crate) inbound_listen: Option<SocketAddr>,
    #[arg(long)]
    pub(crate) outbound_listen: Option<SocketAddr>,
    /// Gateway `credentialName`s resolve to folders here: DIR/<name>/tls.crt + tls.key
    /// (or cert + key), and the client CA of MUTUAL in DIR/<name>/ca.crt (or cacert, or
    /// DIR/<name>-cacert/). `weft up` passes <config dir>/credentials.
    #[arg(long, value_name = "DIR")]
    pub(crate) credentials_dir: Option<PathBuf>,
    /// Resolve the names of services outside the mesh (ServiceEntry `resolution: DNS`,
    /// passthrough hosts) with the DNS server at IP:PORT instead of the system's
    /// (/etc/resolv.conf, /etc/hosts).
    #[arg(long, value_name = "IP:PORT")]
    pub(crate) dns_server: Option<SocketAddr>,
    /// Serve the SPIFFE Workload API (this workload's X.509-SVID, streamed on every
    /// rotation) on a Unix socket at PATH, mode 0600; tell the app
    /// `SPIFFE_ENDPOINT_SOCKET=unix://PATH`.
    #[arg(long, value_name = "PATH")]
    pub(crate) workload_api_socket: Option<PathBuf>,
    /// Take this workload's identity from the SPIFFE Workload API on the Unix socket at
    /// PATH (a SPIRE agent's) instead of the control plane's CA: its X.509-SVID and bundle
    /// serve mTLS, and each new SVID on the stream rotates them. Run the control plane with
    /// the SPIRE trust domain (--trust-domain); SPIFFE ids must be /ns/<ns>/sa/<sa>.
    #[arg(long, value_name = "PATH")]
    pub(crate) spiffe_socket: Option<PathBuf>,
    #[arg(long)]
    pub(crate) exit_with_parent: bool,
}

pub(crate) fn parse_port_map(s: &str) -> Result<(u32, SocketAddr), String> {
    let (port, addr) = s
        .split_once('=')
        .ok_or("expected PORT=ADDR, e.g. 80=127.0.0.1:8080")?;
    Ok((
        port.parse().map_err(|e| format!("port {port:?}: {e}"))?,
        addr.parse().map_err(|e| format!("address {addr:?}: {e}"))?,
    ))
}

#[derive(clap::Args)]
pub(crate) struct UpArgs {
    /// Folder of Istio YAML (services, workloads, routes, policies).
    pub(crate) dir: PathBuf,
    /// Folder for logs, the CA and mesh.json (default .weft/<folder name>).
    #[arg(long)]
    pub(crate) state_dir: Option<PathBuf>,
    /// Generate traffic through the gateway with a live per-route summary.
    #[arg(long)]
    pub(crate) traffic: bool,
    #[command(flatten)]
    pub(crate) traffic_opts: TrafficArgs,
    #[arg(long, default_value = "cluster.local")]
    pub(crate) trust_domain: String,
    /// Use this CA certificate (PEM) for the mesh instead of a generated root; needs --ca-key.
    #[arg(long, requires = "ca_key")]
    pub(crate) ca_cert: Option<PathBuf>,
    /// Private key (PKCS#8 PEM) of --ca-cert.
    #[arg(long, requires = "ca_cert")]
    pub(crate) ca_key: Option<PathBuf>,
    /// Istio's plug-in CA folder (see `weft control --cacerts`).
    #[arg(long, conflicts_with = "ca_cert")]
    pub(crate) cacerts: Option<PathBuf>,
    /// Lifetime of workload certificates, in seconds (renewed at half-life; Istio's default
    /// is 24 h).
    #[arg(long, default_value_t = 86400, value_parser = clap::value_parser!(u64).range(2..))]
    pub(crate) cert_ttl_secs: u64,
    /// Every proxy resolves the names of services outside the mesh with the DNS server at
    /// IP:PORT (passed on as `weft proxy --dns-server`); default: the system's.
    #[arg(long, value_name = "IP:PORT")]
    pub(crate) dns_server: Option<SocketAddr>,
}

#[derive(clap::Args)]
pub(crate) struct TrafficArgs {
    /// Requests per second of generated traffic.
    #[arg(long, default_value_t = 50)]
    pub(crate) rps: u32,
    /// Run this many seconds, print the final table, exit 0 only if success >= 99%.
    #[arg(long)]
    pub(crate) duration: Option<u64>,
}

#[derive(clap::Args)]
pub(crate) struct DemoArgs {
    #[arg(long, default_value = ".weft/demo")]
    pub(crate) state_dir: PathBuf,
    #[command(flatten)]
    pub(crate) traffic_opts: TrafficArgs,
}

#[derive(clap::Args)]
pub(crate) struct DemoAppArgs {
    #[arg(long)]
    pub(crate) service: String,
    #[arg(long, default_value = "v1")]
    pub(crate) version: String,
    /// Where to listen; default: `$WEFT_APP_ADDRESS` (what `weft up` tells every app), else
    /// 127.0.0.1:0.
    #[arg(long)]
    pub(crate) listen: Option<SocketAddr>,
    #[arg(long)]
    pub(crate) identity: Option<String>,
    #[arg(long, default_value_t = 0)]
    pub(crate) latency_ms: u64,
    /// Fraction of requests answered 503 (0..1).
    #[arg(long, default_value_t = 0.0)]
    pub(crate) error_rate: f64,
    #[arg(long)]
    pub(crate) exit_with_parent: bool,
}

#[derive(clap::Args)]
pub(crate) struct StatusArgs {
    #[arg(long)]
    pub(crate) state_dir: PathBuf,
    #[arg(long, value_enum, default_value = "text")]
    pub(crate) output: Output,
}

#[derive(clap::Args)]
pub(crate) struct DashboardArgs {
    /// The state folder of the running mesh (`weft up --state-dir`, `.weft/demo` for the demo).
    #[arg(long)]
    pub(crate) state_dir: PathBuf,
    /// Where to serve the page (port 0 picks a free port; the URL is printed).
    #[arg(long, default_value = "127.0.0.1:15080")]
    pub(crate) listen: SocketAddr,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum ProxyView {
    Listeners,
    Routes,
    Clusters,
    Endpoints,
    Certs,
}

#[derive(clap::Args)]
pub(crate) struct ProxyConfigArgs {
    #[arg(value_enum)]
    pub(crate) view: ProxyView,
    /// The proxy: its name in `weft status` (or a unique part of it, e.g. `inventory-v1`).
    pub(crate) proxy: String,
    #[arg(long)]
    pub(crate) state_dir: PathBuf,
    #[arg(long, value_enum, default_value = "text")]
    pub(crate) output: Output,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Output {
    Text,
    Json,
}

#[derive(clap::Args)]
pub(crate) struct AnalyzeArgs {
    /// Files or folders; `-` reads stdin.
    #[arg(required_unless_present = "state_dir")]
    pub(crate) paths: Vec<String>,
    /// Analyze the config folder a running local mesh (`weft up`/`weft demo`) serves.
    #[arg(long)]
    pub(crate) state_dir: Option<PathBuf>,
    /// `text`: rustc-style diagnostics; `json`: an array of findings (summary on stderr).
    #[arg(long, value_enum, default_value = "text")]
    pub(crate) output: Output,
    /// Exit 1 when a finding is at or above this severity.
    #[arg(long, default_value = "error", value_parser = ["error", "warning", "info"])]
    pub(crate) fail_threshold: String,
}
