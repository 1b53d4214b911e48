//! The proxy-side target: a proxy's memory grows with what it can reach, not with the
//! mesh. For each mesh size, the real `weft control` on the generated mesh and one real
//! `weft proxy` (the sidecar of `svc-0-0`, scoped by its namespace's Sidecar to ten hosts)
//! connected to it; once the proxy has applied its first config (and a settle of 2 s, so
//! that lazily built state is built), its VmRSS and VmHWM are read from /proc.

use crate::{control, mesh};
use anyhow::{bail, Context};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::time::Instant;

/// One measurement.
#[derive(Debug, Clone)]
pub struct ProxyRss {
    pub services: usize,
    pub rss_kib: u64,
    pub peak_kib: u64,
    /// From the proxy's start to its first applied config.
    pub first_config: Duration,
}

/// Measures one mesh size.
pub async fn measure(weft: &Path, services: usize, timeout: Duration) -> anyhow::Result<ProxyRss> {
    let root = tempfile::Builder::new()
        .prefix("weft-scale-rss-")
        .tempdir()
        .context("creating a temp folder")?;
    let mesh = mesh::generate(root.path(), services).context("writing the mesh")?;
    let control = control::Control::start(weft, &mesh.config, root.path(), timeout).await?;
    let started = Instant::now();
    let mut proxy = Command::new(weft)
        .args(["proxy", "--role", "sidecar", "--workload"])
        .arg(mesh::workload(0))
        .arg("--namespace")
        .arg(mesh::namespace(0))
        .args(["--control", &control.grpc, "--app", "127.0.0.1:9"])
        .args([
            "--admin-listen",
            "127.0.0.1:0",
            "--inbound-listen",
            "127.0.0.1:0",
        ])
        .args(["--outbound-listen", "127.0.0.1:0", "--concurrency", "1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(root.path().join("proxy.log"))?)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {} proxy", weft.display()))?;
    let pid = proxy.id().context("the proxy exited at once")?;
    let mut lines = BufReader::new(proxy.stdout.take().expect("piped")).lines();
    let first_config = loop {
        let line = tokio::time::timeout_at(started + timeout, lines.next_line()).await;
        match line {
            Ok(Ok(Some(l))) if l.contains(r#""event":"config_applied""#) => {
                break started.elapsed()
            }
            Ok(Ok(Some(_))) => {}
            Ok(_) => bail!("the proxy exited before it had a config (log: proxy.log)"),
            Err(_) => bail!("the proxy had no config after {} s", timeout.as_secs()),
        }
    };
    // Not a synchronization: the measured state is "applied and idle for a while".
    tokio::time::sleep(Duration::from_secs(2)).await;
    let read = |field| control::status_kib(pid, field).context("reading the proxy's /proc status");
    let (rss_kib, peak_kib) = (read("VmRSS")?, read("VmHWM")?);
    let _ = proxy.kill().await;
    control.stop().await;
    Ok(ProxyRss {
        services,
        rss_kib,
        peak_kib,
        first_config,
    })
}

/// The markdown table, with each row's difference to the first.
pub fn table(rows: &[ProxyRss]) -> String {
    let mut out = String::from(
        "| services in the mesh | proxy RSS | proxy peak RSS | Δ RSS vs first row | first config after |\n|---|---|---|---|---|\n",
    );
    let base = rows.first().map_or(0, |r| r.rss_kib as i64);
    for r in rows {
        out += &format!(
            "| {} | {:.1} MiB | {:.1} MiB | {:+} KiB | {} ms |\n",
            r.services,
            r.rss_kib as f64 / 1024.0,
            r.peak_kib as f64 / 1024.0,
            r.rss_kib as i64 - base,
            r.first_config.as_millis()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_each_row_against_the_first() {
        let row = |services, rss_kib| ProxyRss {
            services,
            rss_kib,
            peak_kib: rss_kib + 100,
            first_config: Duration::from_millis(40),
        };
        let t = table(&[row(10, 12_000), row(10_000, 12_300)]);
        assert!(
            t.contains("| 10 | 11.7 MiB | 11.8 MiB | +0 KiB | 40 ms |"),
            "{t}"
        );
        assert!(
            t.contains("| 10000 | 12.0 MiB | 12.1 MiB | +300 KiB | 40 ms |"),
            "{t}"
        );
    }
}
