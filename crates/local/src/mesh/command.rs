//! The command line and environment that (re)start each process of the mesh.

use super::{field, Mesh, Role};
use crate::plan::App;
use std::path::PathBuf;

impl Mesh {
    /// The per-workload tokens `weft up` gives the control plane (`<state>/workload-tokens`).
    pub(crate) fn workload_tokens_file(&self) -> PathBuf {
        self.opts.state_dir.join("workload-tokens")
    }

    /// The token made for proxy process `name` (`<state>/tokens/<name>`): it admits only
    /// that proxy.
    pub(crate) fn token_file(&self, name: &str) -> PathBuf {
        self.opts.state_dir.join("tokens").join(name)
    }

    /// Creates a fresh token for every proxy (mode 0600 files) and the control plane's list.
    pub(crate) fn create_tokens(&self) -> std::io::Result<()> {
        std::fs::create_dir_all(self.opts.state_dir.join("tokens"))?;
        let mut list = String::new();
        for p in self
            .procs
            .iter()
            .filter(|p| matches!(p.role, Role::Gateway | Role::Sidecar))
        {
            let (name, ns) = p.workload.clone().unwrap_or_default();
            let token = weft_protocol::auth::create_token(&self.token_file(&p.name))?;
            list.push_str(&format!("{token} {} {ns}/{name}\n", p.role.as_str()));
        }
        weft_protocol::auth::write_private(&self.workload_tokens_file(), &list)
    }

    fn app_addr(&self, workload: &(String, String)) -> Option<String> {
        let p = self
            .procs
            .iter()
            .find(|p| p.role == Role::App && p.workload.as_ref() == Some(workload))?;
        match &p.app {
            Some(App::Command {
                address: Some(address),
                ..
            }) => Some(address.clone()),
            _ => field(&p.ready, "address"),
        }
    }

    /// The environment of process `i`: an app is told where its sidecar's outbound
    /// listener is, the way HTTP clients understand (`HTTP_PROXY`/`http_proxy`, which the
    /// sidecar serves as absolute-form requests), plus `WEFT_OUTBOUND`, and its own listen
    /// address (`WEFT_APP_ADDRESS`, `PORT`) — command apps and the built-in demo app alike —
    /// and where its sidecar serves the SPIFFE Workload API (`SPIFFE_ENDPOINT_SOCKET`, the
    /// standard's variable).
    pub(super) fn env(&self, i: usize) -> Vec<(String, String)> {
        let p = &self.procs[i];
        if p.role != Role::App {
            return Vec::new();
        }
        let mut env = Vec::new();
        let sidecar = self
            .procs
            .iter()
            .find(|s| s.role == Role::Sidecar && s.workload == p.workload);
        if let Some(s) = sidecar {
            let socket = self.workload_api_socket(&s.name);
            env.push((
                "SPIFFE_ENDPOINT_SOCKET".into(),
                format!("unix://{}", socket.display()),
            ));
        }
        let outbound = sidecar.and_then(|s| field(&s.ready, "outbound"));
        if let Some(o) = outbound {
            for k in ["HTTP_PROXY", "http_proxy"] {
                env.push((k.to_string(), format!("http://{o}")));
            }
            env.push(("NO_PROXY".into(), "localhost,127.0.0.1,::1".into()));
            env.push(("no_proxy".into(), "localhost,127.0.0.1,::1".into()));
            env.push(("WEFT_OUTBOUND".into(), o));
        }
        {
            // Without a configured address: bind port 0 and say where (a ready event); a
            // restart reuses the address it reported.
            let configured = match &p.app {
                Some(App::Command { address, .. }) => address.clone(),
                _ => None,
            };
            let address = configured
                .or_else(|| field(&p.ready, "address"))
                .unwrap_or_else(|| "127.0.0.1:0".into());
            env.push(("WEFT_APP_ADDRESS".into(), address.clone()));
            if let Some((_, port)) = address.rsplit_once(':') {
                env.push(("PORT".into(), port.to_string()));
            }
        }
        env
    }

    /// Program and arguments for (re)starting process `i`, reusing its previous addresses.
    pub(super) fn command(&self, i: usize) -> (PathBuf, Vec<String>) {
        let p = &self.procs[i];
        let s = |v: &str| v.to_string();
        let weft = self.opts.weft.clone();
        let prev = |k: &str| field(&p.ready, k).unwrap_or_else(|| "127.0.0.1:0".into());
        let (name, ns) = p.workload.clone().unwrap_or_default();
        let mut args = match p.role {
            Role::Control => vec![
                s("control"),
                s("--config"),
                self.opts.config_dir.display().to_string(),
                s("--state-dir"),
                self.opts.state_dir.display().to_string(),
                s("--listen"),
                prev("grpc"),
                s("--trust-domain"),
                self.opts.trust_domain.clone(),
                s("--workload-tokens"),
                self.workload_tokens_file().display().to_string(),
                s("--cert-ttl-secs"),
                self.opts.cert_ttl.as_secs().to_string(),
            ]
            .into_iter()
            .chain(
                self.opts
                    .cacerts
                    .iter()
                    .flat_map(|d| [s("--cacerts"), d.display().to_string()]),
            )
            .chain(self.opts.ca_files.iter().flat_map(|(c, k)| {
                [
                    s("--ca-cert"),
                    c.display().to_string(),
                    s("--ca-key"),
                    k.display().to_string(),
                ]
            }))
            .collect(),
            Role::Gateway | Role::Sidecar => {
                let mut a = vec![
                    s("proxy"),
                    s("--role"),
                    s(p.role.as_str()),
                    s("--workload"),
                    name.clone(),
                    s("--namespace"),
                    ns.clone(),
                ];
                a.extend([
                    s("--control"),
                    self.control_addr(),
                    s("--token-file"),
                    self.token_file(&p.name).display().to_string(),
                    s("--admin-listen"),
                    prev("admin"),
                    s("--merged-metrics-listen"),
                    prev("merged_metrics"),
                ]);
                if let Some(m) = &p.app_metrics {
                    a.extend([s("--app-metrics-path"), m.path.clone()]);
                    if let Some(port) = m.port {
                        a.extend([s("--app-metrics-port"), port.to_string()]);
                    }
                }
                for (port, addr) in &p.listeners {
                    a.extend([s("--port"), format!("{port}={addr}")]);
                }
                if p.role == Role::Gateway {
                    // Gateway credentialNames: <config dir>/credentials/<name>/.
                    let dir = self.opts.config_dir.join("credentials");
                    let dir = std::path::absolute(&dir).unwrap_or(dir);
                    a.extend([s("--credentials-dir"), dir.display().to_string()]);
                }
                if let Some(dns) = self.opts.dns_server {
                    a.extend([s("--dns-server"), dns.to_string()]);
                }
                if p.role == Role::Sidecar {
                    let app = self.app_addr(&(name, ns)).unwrap_or_default();
                    a.extend([
                        s("--app"),
                        app,
                        s("--inbound-listen"),
                        prev("inbound"),
                        s("--outbound-listen"),
                        prev("outbound"),
                        s("--workload-api-socket"),
                        self.workload_api_socket(&p.name).display().to_string(),
                    ]);
                }
                a
            }
            Role::App => match &p.app {
                Some(App::Demo {
                    service,
                    version,
                    latency,
                    error_rate,
                    identity,
                }) => vec![
                    s("demo-app"),
                    s("--service"),
                    service.clone(),
                    s("--version"),
                    version.clone(),
                    s("--latency-ms"),
                    latency.as_millis().to_string(),
                    s("--error-rate"),
                    error_rate.to_string(),
                    s("--identity"),
                    identity.clone(),
                ],
                Some(App::Command { command, .. }) => {
                    return (PathBuf::from("/bin/sh"), vec![s("-c"), command.clone()])
                }
                None => vec![],
            },
        };
        args.push(s("--exit-with-parent"));
        (weft, args)
    }
}
