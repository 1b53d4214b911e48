//! The `weft` binary: command-line parsing and wiring only; every behaviour lives in the
//! crates (control, proxy, local, demo, api).
#![forbid(unsafe_code)]

mod cli;
mod kube_cmds;

use anyhow::{bail, Context};
use clap::Parser;
use cli::*;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

/// Resolves on Ctrl-C, SIGTERM, or (with `exit_with_parent`) when stdin closes.
async fn shutdown_signal(exit_with_parent: bool) {
    let stdin_closed = async {
        if exit_with_parent {
            let mut buf = [0u8; 64];
            let mut stdin = tokio::io::stdin();
            while tokio::io::AsyncReadExt::read(&mut stdin, &mut buf)
                .await
                .is_ok_and(|n| n > 0)
            {}
        } else {
            std::future::pending::<()>().await;
        }
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        _ = stdin_closed => {}
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("WEFT_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if std::env::var("WEFT_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The runtime: `weft proxy --concurrency 1` runs on one thread (no work stealing, no
/// cross-thread wakeups); otherwise one worker per core the process may use, or N.
fn runtime(cli: &Cli) -> std::io::Result<tokio::runtime::Runtime> {
    let workers = match &cli.cmd {
        Cmd::Proxy(a) => a.concurrency.map(usize::from),
        _ => None,
    };
    match workers {
        Some(1) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
        None => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging();
    let rt = match runtime(&cli) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("weft: error: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("weft: error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

/// istiod's `PILOT_JWT_PUB_KEY_REFRESH_INTERVAL` (a duration such as `20m`, `30s`): how
/// often the control plane fetches RequestAuthentication JWKS again.
fn jwks_refresh() -> anyhow::Result<Duration> {
    const VAR: &str = "PILOT_JWT_PUB_KEY_REFRESH_INTERVAL";
    match std::env::var(VAR) {
        Err(_) => Ok(weft_control::jwks::DEFAULT_REFRESH),
        Ok(v) => weft_model::parse_duration_ms(&v)
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis)
            .ok_or_else(|| anyhow::anyhow!("{VAR}={v:?} is not a duration such as 20m or 30s")),
    }
}

async fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.cmd {
        Cmd::Control(a) => {
            // Held for as long as the control plane runs: dropping it stops the watches.
            let kube = match a.config_source {
                cli::ConfigSourceArg::Folder if a.config.is_none() => {
                    bail!("weft control needs --config DIR (a folder of Istio YAML) or --config-source kubernetes")
                }
                cli::ConfigSourceArg::Folder => None,
                cli::ConfigSourceArg::Kubernetes => {
                    let client = weft_kube::client(a.kubeconfig.as_deref()).await?;
                    Some(weft_kube::start(client).await?)
                }
            };
            let opts = weft_control::ControlOptions {
                config_dir: a.config.unwrap_or_default(),
                state_dir: a.state_dir,
                listen: a.listen,
                trust_domain: a.trust_domain,
                ca_files: a.ca_cert.zip(a.ca_key),
                cacerts: a.cacerts,
                cert_ttl: Duration::from_secs(a.cert_ttl_secs),
                token: read_token(a.token_file.as_deref())?,
                workload_tokens: match &a.workload_tokens {
                    Some(p) => {
                        weft_protocol::auth::read_workload_tokens(p).map_err(anyhow::Error::msg)?
                    }
                    None => Vec::new(),
                },
                jwks_refresh: jwks_refresh()?,
                max_push_bytes: a.max_push_bytes,
                feed: kube.as_ref().map(|k| k.feed.clone()),
                metrics_listen: a.metrics_listen,
            };
            let webhook = match a.webhook_listen {
                Some(listen) => {
                    let (svc, flags) = (&a.webhook_service, &a.inject);
                    Some(kube_cmds::start_webhook(listen, &opts, svc, flags, kube.as_ref()).await?)
                }
                None => None,
            };
            weft_control::run(opts, shutdown_signal(a.exit_with_parent)).await?;
            if let Some(w) = webhook {
                w.abort();
            }
            Ok(0)
        }
        Cmd::Proxy(a) => {
            let opts = weft_proxy::ProxyOptions {
                role: match a.role {
                    RoleArg::Sidecar => weft_proxy::Role::Sidecar,
                    RoleArg::Gateway => weft_proxy::Role::Gateway,
                },
                workload: a.workload,
                namespace: a.namespace,
                control: a.control,
                token: read_token(a.token_file.as_deref())?,
                app: a.app,
                bind_ip: a.bind_ip,
                port_map: a.ports.into_iter().collect::<HashMap<_, _>>(),
                admin_listen: a.admin_listen,
                inbound_listen: a.inbound_listen,
                outbound_listen: a.outbound_listen,
                max_connections: a.max_connections,
                telemetry: !a.no_telemetry,
                merged_metrics: a.merged_metrics_listen.map(|listen| {
                    weft_proxy::merged::MergedMetrics {
                        listen,
                        app: (a.app_metrics_port.is_some() || a.app_metrics_path.is_some()).then(
                            || weft_proxy::merged::AppScrape {
                                port: a.app_metrics_port,
                                path: a
                                    .app_metrics_path
                                    .clone()
                                    .unwrap_or_else(|| "/metrics".into()),
                            },
                        ),
                    }
                }),
                spiffe_socket: a.spiffe_socket,
                workload_api_socket: a.workload_api_socket,
                credentials_dir: a.credentials_dir,
                dns_server: a.dns_server,
                events: weft_proxy::EventSink::Stdout,
            };
            if opts.spiffe_socket.is_some() && opts.spiffe_socket == opts.workload_api_socket {
                bail!("--spiffe-socket (where this proxy gets its identity) and --workload-api-socket (where it serves its app) must be different sockets");
            }
            if matches!(opts.role, weft_proxy::Role::Sidecar) && opts.app.is_none() {
                bail!("a sidecar needs --app HOST:PORT (where its local app listens)");
            }
            weft_proxy::run(opts, shutdown_signal(a.exit_with_parent)).await?;
            Ok(0)
        }
        Cmd::Up(a) => {
            let name = a
                .dir
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_else(|| "mesh".into());
            let opts = weft_local::UpOptions {
                config_dir: a.dir.clone(),
                state_dir: a
                    .state_dir
                    .unwrap_or_else(|| PathBuf::from(".weft").join(name)),
                weft: std::env::current_exe().context("locating the weft executable")?,
                trust_domain: a.trust_domain,
                ca_files: a.ca_cert.zip(a.ca_key),
                cacerts: a.cacerts,
                cert_ttl: Duration::from_secs(a.cert_ttl_secs),
                traffic: (a.traffic || a.traffic_opts.duration.is_some())
                    .then(|| traffic(&a.traffic_opts)),
                https_hint: None,
                dns_server: a.dns_server,
            };
            Ok(weft_local::up(opts, shutdown_signal(false)).await? as u8)
        }
        Cmd::Demo(a) => {
            let config_dir = a.state_dir.join("config");
            weft_local::examples::write_necpgame(&config_dir)?;
            let https_hint = weft_local::examples::necpgame_tls(&config_dir, &a.state_dir)?;
            let opts = weft_local::UpOptions {
                config_dir,
                state_dir: a.state_dir,
                weft: std::env::current_exe().context("locating the weft executable")?,
                trust_domain: "cluster.local".into(),
                ca_files: None,
                cacerts: None,
                cert_ttl: Duration::from_secs(86400),
                traffic: Some(traffic(&a.traffic_opts)),
                https_hint: Some(https_hint),
                dns_server: None,
            };
            Ok(weft_local::demo(opts, shutdown_signal(false)).await? as u8)
        }
        Cmd::DemoApp(a) => {
            let mut cfg = weft_demo::DemoAppConfig::new(a.service, a.version);
            cfg.listen = match a.listen {
                Some(l) => l,
                None => match std::env::var("WEFT_APP_ADDRESS") {
                    Ok(v) => v.parse().with_context(|| {
                        format!("WEFT_APP_ADDRESS {v:?} is not an address like 127.0.0.1:8080")
                    })?,
                    Err(_) => "127.0.0.1:0".parse().expect("static address"),
                },
            };
            cfg.identity = a.identity;
            cfg.latency = Duration::from_millis(a.latency_ms);
            cfg.error_rate = a.error_rate;
            let (addr, serve) =
                weft_demo::bind_demo_app_until(cfg, shutdown_signal(a.exit_with_parent)).await?;
            println!(
                "{}",
                serde_json::json!({"event": "ready", "role": "app", "address": addr.to_string()})
            );
            serve.await?;
            Ok(0)
        }
        Cmd::Dashboard(a) => {
            weft_local::dashboard::serve(&a.state_dir, a.listen, |addr| {
                println!("dashboard: http://{addr}/ (Ctrl-C stops it)");
            })
            .await?;
            Ok(0)
        }
        Cmd::Status(a) => {
            println!(
                "{}",
                weft_local::status::status_command(&a.state_dir, matches!(a.output, Output::Json))?
            );
            Ok(0)
        }
        Cmd::ProxyConfig(a) => {
            use weft_local::proxy_config::View;
            let view = match a.view {
                ProxyView::Listeners => View::Listeners,
                ProxyView::Routes => View::Routes,
                ProxyView::Clusters => View::Clusters,
                ProxyView::Endpoints => View::Endpoints,
                ProxyView::Certs => View::Certs,
            };
            let json = matches!(a.output, Output::Json);
            println!(
                "{}",
                weft_local::proxy_config::proxy_config(&a.state_dir, &a.proxy, view, json).await?
            );
            Ok(0)
        }
        Cmd::Analyze(a) => analyze(&a),
        Cmd::Inject(a) => kube_cmds::inject(&a),
        Cmd::WebhookConfig(a) => kube_cmds::webhook_config(&a),
        Cmd::Install(a) => kube_cmds::install(&a),
    }
}

fn read_token(path: Option<&std::path::Path>) -> anyhow::Result<Option<String>> {
    path.map(weft_protocol::auth::read_token)
        .transpose()
        .map_err(anyhow::Error::msg)
}

fn traffic(t: &TrafficArgs) -> weft_local::TrafficOptions {
    weft_local::TrafficOptions {
        rps: t.rps,
        duration: t.duration.map(Duration::from_secs),
    }
}

fn analyze(a: &AnalyzeArgs) -> anyhow::Result<u8> {
    use std::io::IsTerminal;
    let mut paths = a.paths.clone();
    if let Some(state) = &a.state_dir {
        let mesh = weft_local::status::read(state)?;
        paths.push(mesh.config_dir);
    }
    let opts = weft_analyze::cli::Options {
        paths,
        format: match a.output {
            Output::Text => weft_analyze::cli::Format::Human,
            Output::Json => weft_analyze::cli::Format::Json,
        },
        fail_threshold: a.fail_threshold.parse().map_err(anyhow::Error::msg)?,
        color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    let (mut stdin, mut stdout, mut stderr) =
        (std::io::stdin(), std::io::stdout(), std::io::stderr());
    Ok(weft_analyze::cli::run(
        &opts,
        &mut stdin,
        &mut stdout,
        &mut stderr,
    ))
}
