//! The Prometheus text exposition (format 0.0.4, what Envoy's `/stats/prometheus` serves):
//! the registry's families (encoded as OpenMetrics by `prometheus_client`, turned into the
//! classic format so Envoy's `_total`-less counter names can sit beside them), and the
//! proxy's self metrics read at scrape time.

use super::Metrics;
use std::borrow::Cow;
use std::fmt::Write;

/// The content type of [`registry_text`] and everything appended to it.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A label value escaped for the text format.
pub fn escape(v: &str) -> Cow<'_, str> {
    if !v.contains(['\\', '"', '\n']) {
        return Cow::Borrowed(v);
    }
    Cow::Owned(
        v.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n"),
    )
}

/// Every registered family in Prometheus text format.
pub fn registry_text(m: &Metrics) -> String {
    let left = (m.cert.not_after.get() - unix_now()).max(0) / 86_400;
    m.cert.days_left.set(left);
    let mut om = String::new();
    let registry = m.registry.lock().unwrap_or_else(|p| p.into_inner());
    prometheus_client::encoding::text::encode(&mut om, &registry)
        .expect("writing to a String cannot fail");
    drop(registry);
    openmetrics_to_text(&om)
}

/// OpenMetrics as `prometheus_client` writes it -> the 0.0.4 text format: a counter
/// family `x` becomes `x_total` in its HELP and TYPE lines (its samples are already named
/// so), `# UNIT` and `# EOF` go.
pub fn openmetrics_to_text(om: &str) -> String {
    let mut out = String::with_capacity(om.len());
    let mut help: Option<&str> = None;
    for line in om.lines() {
        if line.starts_with("# HELP ") {
            if let Some(h) = help.replace(line) {
                out.push_str(h);
                out.push('\n');
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            let counter = kind == "counter" && !name.ends_with("_total");
            let suffix = if counter { "_total" } else { "" };
            if let Some(h) = help.take() {
                let text = h.strip_prefix("# HELP ").and_then(|h| h.split_once(' '));
                match text {
                    Some((_, text)) => {
                        let _ = writeln!(out, "# HELP {name}{suffix} {text}");
                    }
                    None => {
                        let _ = writeln!(out, "# HELP {name}{suffix}");
                    }
                }
            }
            let _ = writeln!(out, "# TYPE {name}{suffix} {kind}");
            continue;
        }
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        push_sample(&mut out, line);
    }
    out
}

/// A sample line, with a bucket bound written as Envoy writes it (`le="10000"`, not
/// `le="10000.0"`), so series match what Envoy-based meshes stored.
fn push_sample(out: &mut String, line: &str) {
    let label = line.find("{le=\"").or_else(|| line.find(",le=\""));
    let Some(at) = label.map(|i| i + 5) else {
        out.push_str(line);
        out.push('\n');
        return;
    };
    let end = line[at..].find('"').map_or(line.len(), |e| at + e);
    let bound = &line[at..end];
    out.push_str(&line[..at]);
    out.push_str(bound.strip_suffix(".0").unwrap_or(bound));
    out.push_str(&line[end..]);
    out.push('\n');
}

/// The proxy's resident memory (Linux `/proc/self/status`), if known.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kb * 1024)
}

/// Appends the self metrics read now: memory, open downstream connections, build.
pub fn process_metrics(out: &mut String, open_connections: usize) {
    let mut gauge = |name: &str, help: &str, labels: &str, v: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{labels} {v}"
        );
    };
    if let Some(rss) = resident_bytes() {
        gauge(
            "process_resident_memory_bytes",
            "Resident memory of the proxy process",
            "",
            rss,
        );
    }
    let help = "Downstream connections open now (all listeners)";
    gauge(
        "envoy_server_total_connections",
        help,
        "",
        open_connections as u64,
    );
    let labels = format!(
        "{{component=\"proxy\",tag=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    gauge(
        "istio_build",
        "The proxy's build (weft's version)",
        &labels,
        1,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_get_total_in_help_and_type_and_eof_goes() {
        let om = "# HELP istio_requests Requests.\n# TYPE istio_requests counter\nistio_requests_total{a=\"b\"} 3\n# HELP g A gauge.\n# TYPE g gauge\ng 1\nh_bucket{le=\"10000.0\",a=\"b\"} 2\nh_bucket{le=\"0.5\"} 1\n# EOF\n";
        let text = openmetrics_to_text(om);
        assert_eq!(
            text,
            "# HELP istio_requests_total Requests.\n# TYPE istio_requests_total counter\nistio_requests_total{a=\"b\"} 3\n# HELP g A gauge.\n# TYPE g gauge\ng 1\nh_bucket{le=\"10000\",a=\"b\"} 2\nh_bucket{le=\"0.5\"} 1\n"
        );
        assert_eq!(escape("a\"b\\c"), "a\\\"b\\\\c");
    }
}
