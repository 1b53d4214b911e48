//! The Kubernetes subcommands and flags: `weft inject` (manual sidecar injection),
//! `weft webhook-config` (the MutatingWebhookConfiguration with its caBundle), and the
//! injection webhook `weft control --webhook-listen` serves.

use anyhow::Context;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use weft_kube::inject::InjectOptions;
use weft_kube::webhook::{self, WebhookService};

#[derive(clap::Args, Clone)]
pub(crate) struct InjectFlags {
    /// weft's container image for the injected containers.
    #[arg(long, default_value = "ghcr.io/weft-mesh/weft:latest")]
    pub(crate) image: String,
    /// The control plane's gRPC address as pods reach it.
    #[arg(long, default_value = "weft-control.istio-system.svc:15012")]
    pub(crate) control_address: String,
}

impl InjectFlags {
    fn options(&self) -> InjectOptions {
        InjectOptions {
            image: self.image.clone(),
            control: self.control_address.clone(),
        }
    }
}

#[derive(clap::Args)]
pub(crate) struct InjectArgs {
    /// A YAML file of Pods, Deployments, StatefulSets, DaemonSets, Jobs, CronJobs… (`-`
    /// for stdin); other documents pass through unchanged.
    #[arg(short = 'f', long = "filename")]
    pub(crate) file: PathBuf,
    #[command(flatten)]
    pub(crate) flags: InjectFlags,
}

#[derive(clap::Args, Clone)]
pub(crate) struct WebhookServiceArgs {
    /// The Service the API server calls the webhook through (its name, namespace, port).
    #[arg(long, default_value = "weft-control")]
    pub(crate) webhook_service: String,
    #[arg(long, default_value = "istio-system")]
    pub(crate) webhook_namespace: String,
    #[arg(long, default_value_t = 443)]
    pub(crate) webhook_port: u16,
}

impl WebhookServiceArgs {
    fn service(&self) -> WebhookService {
        WebhookService {
            name: self.webhook_service.clone(),
            namespace: self.webhook_namespace.clone(),
            port: self.webhook_port,
        }
    }
}

#[derive(clap::Args)]
pub(crate) struct WebhookConfigArgs {
    /// The control plane's state folder (its CA root is `<state>/ca/root-cert.pem`).
    #[arg(long, default_value = ".weft/control")]
    pub(crate) state_dir: PathBuf,
    /// The CA root to trust instead (PEM), e.g. `--cacerts`' root-cert.pem.
    #[arg(long)]
    pub(crate) root_cert: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) service: WebhookServiceArgs,
}

/// `weft inject`: prints the injected stream; notes go to stderr.
pub(crate) fn inject(a: &InjectArgs) -> anyhow::Result<u8> {
    let text = if a.file == Path::new("-") {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        s
    } else {
        std::fs::read_to_string(&a.file).with_context(|| format!("reading {}", a.file.display()))?
    };
    let (out, notes) =
        weft_kube::manual::inject_yaml(&text, &a.flags.options()).map_err(anyhow::Error::msg)?;
    for n in notes {
        eprintln!("{n}");
    }
    print!("{out}");
    Ok(0)
}

/// `weft webhook-config`: the MutatingWebhookConfiguration with the mesh root as caBundle.
pub(crate) fn webhook_config(a: &WebhookConfigArgs) -> anyhow::Result<u8> {
    let root = a
        .root_cert
        .clone()
        .unwrap_or_else(|| a.state_dir.join("ca").join(weft_identity::ROOT_CERT_FILE));
    let pem = std::fs::read_to_string(&root).with_context(|| {
        format!(
            "reading the mesh root {} (start `weft control` once to create it)",
            root.display()
        )
    })?;
    let cfg = webhook::webhook_configuration(&webhook::ca_bundle(&pem), &a.service.service());
    print!(
        "{}",
        weft_kube::manual::to_yaml(&cfg).map_err(anyhow::Error::msg)?
    );
    Ok(0)
}

/// The CA the control plane of `opts` signs with (its `--cacerts`, `--ca-cert`/`--ca-key`
/// or the generated root in its state folder).
fn control_ca(opts: &weft_control::ControlOptions) -> anyhow::Result<weft_identity::Ca> {
    let td = &opts.trust_domain;
    match (&opts.cacerts, &opts.ca_files) {
        (Some(dir), _) => weft_identity::Ca::from_istio_cacerts(dir, td),
        (None, Some((cert, key))) => weft_identity::Ca::from_pem_files(cert, key, td),
        (None, None) => weft_identity::Ca::load_or_create(&opts.state_dir.join("ca"), td),
    }
    .context("setting up the mesh CA for the webhooks")
}

/// Starts the admission webhooks for `weft control --webhook-listen`, with a certificate
/// from the CA the control plane uses; namespace labels from the Kubernetes source.
pub(crate) async fn start_webhook(
    listen: SocketAddr,
    opts: &weft_control::ControlOptions,
    service: &WebhookServiceArgs,
    flags: &InjectFlags,
    source: Option<&weft_kube::Source>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let ca = control_ca(opts)?;
    let tls = webhook::tls_config(&ca, &service.service().dns_names())?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the injection webhook on {listen}"))?;
    tracing::info!(webhook = %listener.local_addr()?, "sidecar injection webhook ready");
    let labels: webhook::NamespaceLabels = match source {
        Some(s) => s.namespace_labels(),
        None => Arc::new(|_: &str| None),
    };
    Ok(tokio::spawn(webhook::serve(
        listener,
        tls,
        labels,
        flags.options(),
    )))
}

#[derive(clap::Args)]
pub(crate) struct InstallArgs {
    /// `default` (control plane and ingress gateway) or `minimal` (control plane only).
    #[arg(long, default_value = "default", value_parser = ["default", "minimal"])]
    pub(crate) profile: String,
    /// The control plane's namespace.
    #[arg(long, default_value = "istio-system")]
    pub(crate) namespace: String,
    /// weft's container image.
    #[arg(long, default_value = "ghcr.io/weft-mesh/weft:latest")]
    pub(crate) image: String,
    /// Where the mesh CA is kept (created on first use, as `weft control` does); it goes
    /// into the `cacerts` Secret and the webhook's caBundle.
    #[arg(long, default_value = ".weft/cluster")]
    pub(crate) state_dir: PathBuf,
    #[arg(long, default_value = "cluster.local")]
    pub(crate) trust_domain: String,
}

/// `weft install`: prints the manifests (`weft install | kubectl apply -f -`).
pub(crate) fn install(a: &InstallArgs) -> anyhow::Result<u8> {
    let ca_dir = a.state_dir.join("ca");
    weft_identity::Ca::load_or_create(&ca_dir, &a.trust_domain)
        .map_err(|e| anyhow::anyhow!("setting up the mesh CA in {}: {e}", ca_dir.display()))?;
    let read = |f: &str| {
        std::fs::read_to_string(ca_dir.join(f))
            .with_context(|| format!("reading {}", ca_dir.join(f).display()))
    };
    let opts = weft_kube::install::InstallOptions {
        profile: a.profile.clone(),
        namespace: a.namespace.clone(),
        image: a.image.clone(),
        ca_cert_pem: read(weft_identity::ROOT_CERT_FILE)?,
        ca_key_pem: read(weft_identity::ROOT_KEY_FILE)?,
    };
    let docs: Vec<String> = weft_kube::install::manifests(&opts)
        .iter()
        .map(weft_kube::manual::to_yaml)
        .collect::<Result<_, _>>()
        .map_err(anyhow::Error::msg)?;
    print!("{}", docs.join("---\n"));
    Ok(0)
}
