//! Per-route accounting for the load generator: outcome recording, whole-run
//! and per-interval snapshots, percentiles and the aligned text table.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

/// Statistics for one route (over the whole run or one report interval).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RouteStats {
    /// Route display name.
    pub name: String,
    /// Requests attempted (responses of any status plus transport errors).
    pub requests: u64,
    /// Requests answered with a 2xx status.
    pub successes: u64,
    /// Median latency of received responses, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile latency of received responses, milliseconds.
    pub p99_ms: f64,
    /// Requests per second over the covered period.
    pub rps: f64,
    /// Responses per `x-weft-version` header value (`-` when absent).
    pub versions: BTreeMap<String, u64>,
    /// Transport-level failures (no HTTP response) per error kind.
    pub errors: BTreeMap<String, u64>,
}

/// Result of a load run (or of one live report interval).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Per-route statistics, in configuration order.
    pub routes: Vec<RouteStats>,
    /// Total requests over all routes.
    pub total: u64,
    /// Total 2xx responses over all routes.
    pub successes: u64,
    /// Covered wall-clock time.
    pub elapsed: Duration,
}

impl Summary {
    /// Fraction of requests answered 2xx (0.0 when nothing was sent).
    pub fn success_ratio(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.successes as f64 / self.total as f64
        }
    }

    /// Transport error counts per kind, summed over all routes.
    pub fn errors(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for r in &self.routes {
            for (k, v) in &r.errors {
                *out.entry(k.clone()).or_insert(0) += v;
            }
        }
        out
    }
}

/// What happened to one request.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    /// An HTTP response arrived (any status).
    Response {
        status: u16,
        latency: Duration,
        version: String,
    },
    /// No response: connect/IO/protocol error or timeout.
    Error { kind: String },
}

#[derive(Debug, Default, Clone)]
struct RouteAcc {
    requests: u64,
    successes: u64,
    latencies_us: Vec<u32>,
    versions: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
}

impl RouteAcc {
    fn record(&mut self, outcome: &Outcome) {
        self.requests += 1;
        match outcome {
            Outcome::Response {
                status,
                latency,
                version,
            } => {
                if (200..300).contains(status) {
                    self.successes += 1;
                }
                let us = u32::try_from(latency.as_micros()).unwrap_or(u32::MAX);
                self.latencies_us.push(us);
                *self.versions.entry(version.clone()).or_insert(0) += 1;
            }
            Outcome::Error { kind } => *self.errors.entry(kind.clone()).or_insert(0) += 1,
        }
    }

    fn stats(&self, name: &str, elapsed: Duration) -> RouteStats {
        let mut sorted = self.latencies_us.clone();
        sorted.sort_unstable();
        let secs = elapsed.as_secs_f64();
        RouteStats {
            name: name.to_string(),
            requests: self.requests,
            successes: self.successes,
            p50_ms: percentile_ms(&sorted, 0.50),
            p99_ms: percentile_ms(&sorted, 0.99),
            rps: if secs > 0.0 {
                self.requests as f64 / secs
            } else {
                0.0
            },
            versions: self.versions.clone(),
            errors: self.errors.clone(),
        }
    }
}

/// Nearest-rank percentile of an ascending slice of microseconds, in ms.
fn percentile_ms(sorted_us: &[u32], q: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted_us.len() as f64).ceil() as usize;
    let idx = rank.clamp(1, sorted_us.len()) - 1;
    f64::from(sorted_us[idx]) / 1000.0
}

fn summarize(names: &[String], accs: &[RouteAcc], elapsed: Duration) -> Summary {
    let routes: Vec<RouteStats> = names
        .iter()
        .zip(accs)
        .map(|(n, a)| a.stats(n, elapsed))
        .collect();
    Summary {
        total: routes.iter().map(|r| r.requests).sum(),
        successes: routes.iter().map(|r| r.successes).sum(),
        routes,
        elapsed,
    }
}

/// Thread-safe recorder keeping whole-run and current-interval accumulators.
#[derive(Debug)]
pub(crate) struct Recorder {
    names: Vec<String>,
    inner: Mutex<(Vec<RouteAcc>, Vec<RouteAcc>)>,
}

impl Recorder {
    pub(crate) fn new(names: Vec<String>) -> Self {
        let n = names.len();
        Self {
            names,
            inner: Mutex::new((vec![RouteAcc::default(); n], vec![RouteAcc::default(); n])),
        }
    }

    pub(crate) fn record(&self, route: usize, outcome: &Outcome) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (total, interval) = &mut *g;
        if let (Some(t), Some(i)) = (total.get_mut(route), interval.get_mut(route)) {
            t.record(outcome);
            i.record(outcome);
        }
    }

    /// Snapshot of the current interval (covering `elapsed`), then resets it.
    pub(crate) fn take_interval(&self, elapsed: Duration) -> Summary {
        let accs = {
            let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            let fresh = vec![RouteAcc::default(); self.names.len()];
            std::mem::replace(&mut g.1, fresh)
        };
        summarize(&self.names, &accs, elapsed)
    }

    /// Whole-run summary covering `elapsed`.
    pub(crate) fn total(&self, elapsed: Duration) -> Summary {
        let accs = {
            let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            g.0.clone()
        };
        summarize(&self.names, &accs, elapsed)
    }
}

fn join_counts(m: &BTreeMap<String, u64>) -> String {
    if m.is_empty() {
        return "-".to_string();
    }
    m.iter()
        .map(|(k, v)| format!("{k}:{v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn pct(successes: u64, requests: u64) -> String {
    if requests == 0 {
        "-".to_string()
    } else {
        format!("{:.1}%", successes as f64 * 100.0 / requests as f64)
    }
}

/// Renders an aligned text table:
/// `route | req/s | success % | p50 ms | p99 ms | versions` (plus an
/// `errors` column when any transport error occurred) and a `TOTAL` row.
pub fn render_table(s: &Summary) -> String {
    let with_errors = s.routes.iter().any(|r| !r.errors.is_empty());
    let mut rows: Vec<Vec<String>> = Vec::with_capacity(s.routes.len() + 2);
    let mut header: Vec<String> = [
        "route",
        "req/s",
        "success %",
        "p50 ms",
        "p99 ms",
        "versions",
    ]
    .iter()
    .map(|h| h.to_string())
    .collect();
    if with_errors {
        header.push("errors".into());
    }
    rows.push(header);
    for r in &s.routes {
        let mut row = vec![
            r.name.clone(),
            format!("{:.1}", r.rps),
            pct(r.successes, r.requests),
            format!("{:.2}", r.p50_ms),
            format!("{:.2}", r.p99_ms),
            join_counts(&r.versions),
        ];
        if with_errors {
            row.push(join_counts(&r.errors));
        }
        rows.push(row);
    }
    let secs = s.elapsed.as_secs_f64();
    let mut versions = BTreeMap::new();
    for r in &s.routes {
        for (k, v) in &r.versions {
            *versions.entry(k.clone()).or_insert(0) += v;
        }
    }
    let mut total = vec![
        "TOTAL".to_string(),
        format!(
            "{:.1}",
            if secs > 0.0 {
                s.total as f64 / secs
            } else {
                0.0
            }
        ),
        pct(s.successes, s.total),
        "-".to_string(),
        "-".to_string(),
        join_counts(&versions),
    ];
    if with_errors {
        total.push(join_counts(&s.errors()));
    }
    rows.push(total);

    let cols = rows[0].len();
    let widths: Vec<usize> = (0..cols)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c > 0 {
                line.push_str("  ");
            }
            let w = widths[c];
            // Text columns left-aligned, numeric columns right-aligned.
            if c == 0 || c >= 5 {
                let _ = write!(line, "{cell:<w$}");
            } else {
                let _ = write!(line, "{cell:>w$}");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_nearest_rank() {
        let v: Vec<u32> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentile_ms(&v, 0.5), 50.0);
        assert_eq!(percentile_ms(&v, 0.99), 99.0);
        assert_eq!(percentile_ms(&[], 0.5), 0.0);
        assert_eq!(percentile_ms(&[7000], 0.99), 7.0);
    }

    #[test]
    fn recorder_and_table() {
        let rec = Recorder::new(vec![
            "inventory (premium → v2)".into(),
            "matchmaking".into(),
        ]);
        for i in 0..10u16 {
            rec.record(
                0,
                &Outcome::Response {
                    status: if i < 9 { 200 } else { 503 },
                    latency: Duration::from_millis(u64::from(i) + 1),
                    version: if i % 2 == 0 { "v1" } else { "v2" }.into(),
                },
            );
        }
        rec.record(
            1,
            &Outcome::Error {
                kind: "connect: connection refused".into(),
            },
        );
        let iv = rec.take_interval(Duration::from_secs(1));
        assert_eq!(iv.total, 11);
        assert_eq!(rec.take_interval(Duration::from_secs(1)).total, 0);
        let s = rec.total(Duration::from_secs(2));
        assert_eq!((s.total, s.successes), (11, 9));
        assert_eq!(s.routes[0].versions["v1"], 5);
        assert_eq!(s.routes[0].rps, 5.0);
        assert_eq!(s.errors()["connect: connection refused"], 1);
        let t = render_table(&s);
        assert!(t.contains("inventory (premium → v2)"), "{t}");
        assert!(t.contains("v1:5 v2:5"), "{t}");
        assert!(t.contains("90.0%"), "{t}");
        assert!(t.contains("errors"), "{t}");
        // The right-aligned req/s column ends at the same character offset.
        let lines: Vec<Vec<char>> = t.lines().map(|l| l.chars().collect()).collect();
        assert_eq!(lines.len(), 4);
        let header: String = lines[0].iter().collect();
        let end = header.find("req/s").unwrap() + "req/s".len();
        for l in &lines[1..] {
            assert!(l[end - 1].is_ascii_digit() && l[end] == ' ', "{t}");
        }
    }
}
