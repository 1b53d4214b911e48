//! The report: percentiles, the markdown table (one row per N × M), a detail section per
//! run, and the header (date, machine, git commit).

use crate::phases::{Outcome, Phase};
use crate::RunResult;
use std::fmt::Write as _;
use std::time::Duration;

/// The `p`th percentile (nearest rank) of `values`, or `None` when there are none.
pub fn percentile(values: &[Duration], p: f64) -> Option<Duration> {
    let mut sorted = values.to_vec();
    sorted.sort();
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.max(1) - 1).copied()
}

/// `0.4 ms`, `123 ms`, `1.23 s`, `12.3 s`.
pub fn duration(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    match ms {
        ms if ms < 10.0 => format!("{ms:.1} ms"),
        ms if ms < 1000.0 => format!("{ms:.0} ms"),
        ms if ms < 10_000.0 => format!("{:.2} s", ms / 1000.0),
        ms => format!("{:.1} s", ms / 1000.0),
    }
}

/// `512 B`, `12.3 KiB`, `4.5 MiB`.
pub fn bytes(n: u64) -> String {
    match n as f64 {
        b if b < 1024.0 => format!("{n} B"),
        b if b < 1024.0 * 1024.0 => format!("{:.1} KiB", b / 1024.0),
        b => format!("{:.1} MiB", b / (1024.0 * 1024.0)),
    }
}

fn cpu(s: Option<f64>) -> String {
    s.map_or("?".into(), |s| format!("{s:.2}"))
}

/// The phase's outcome when it did not converge (the table shows it instead of numbers).
fn failure(phase: &Phase) -> Option<String> {
    match &phase.outcome {
        Outcome::Converged(_) => None,
        Outcome::Failed(why) if why.starts_with("did not converge") => {
            Some(why.split(" (").next().unwrap_or(why).into())
        }
        Outcome::Failed(_) => Some("failed (see below)".into()),
        Outcome::NotRun => Some("not run".into()),
    }
}

/// `p50 / p99`, or why there are none.
fn spread(phase: &Phase) -> String {
    if let Some(f) = failure(phase) {
        return f;
    }
    match (
        percentile(&phase.latencies, 50.0),
        percentile(&phase.latencies, 99.0),
    ) {
        (Some(p50), Some(p99)) => format!("{} / {}", duration(p50), duration(p99)),
        _ => "no proxy reached".into(),
    }
}

/// How many (change, proxy) pairs were reached and the bytes pushed per change.
fn reach(phase: &Phase) -> String {
    if failure(phase).is_some() {
        return "–".into();
    }
    let per_change = phase.bytes / phase.changes.max(1) as u64;
    format!("{} · {}", phase.latencies.len(), bytes(per_change))
}

fn sync_cell(r: &RunResult) -> String {
    match (&r.sync.outcome, failure(&r.sync)) {
        (Outcome::Converged(d), _) => duration(*d),
        (_, f) => format!(
            "{}: {} of {} proxies had a config",
            f.unwrap_or_default(),
            r.sync.latencies.len(),
            r.proxies
        ),
    }
}

/// The markdown table, one row per run.
pub fn table(runs: &[RunResult]) -> String {
    let mut out = String::from(
        "| services × proxies | initial sync | VS change p50 / p99 | VS reached · bytes | churn p50 / p99 | churn reached · bytes/change | 10 % reconnect p50 / p99 | CP CPU s: sync / VS / churn / reconn / total | CP peak RSS |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for r in runs {
        let cpus = [&r.sync, &r.vs_change, &r.churn, &r.reconnect]
            .map(|p| cpu(p.cpu_secs))
            .join(" / ");
        let rss = r.peak_rss_kib.map_or("?".into(), |k| bytes(k * 1024));
        let _ = writeln!(
            out,
            "| {} × {} | {} | {} | {} | {} | {} | {} | {} / {} | {} |",
            r.services,
            r.proxies,
            sync_cell(r),
            spread(&r.vs_change),
            reach(&r.vs_change),
            spread(&r.churn),
            reach(&r.churn),
            spread(&r.reconnect),
            cpus,
            cpu(r.total_cpu),
            rss,
        );
    }
    out
}

/// One line per phase: when it converged, pushes, bytes, failures in full.
pub fn details(r: &RunResult) -> String {
    let mut out = format!(
        "{} services × {} proxies ({} resources): control plane ready in {} ({} CPU s)\n",
        r.services,
        r.proxies,
        r.resources,
        duration(r.startup),
        cpu(r.startup_cpu)
    );
    for (name, phase) in r.phases() {
        let outcome = match &phase.outcome {
            Outcome::Converged(d) => format!("converged after {}", duration(*d)),
            Outcome::Failed(why) => why.clone(),
            Outcome::NotRun => "not run (an earlier phase did not converge)".into(),
        };
        let _ = writeln!(
            out,
            "- {name}: {outcome}; {} changes, {} pushes, {} in all, {} latency samples{}, {} CPU s",
            phase.changes,
            phase.pushes,
            bytes(phase.bytes),
            phase.latencies.len(),
            latency_range(phase),
            cpu(phase.cpu_secs)
        );
    }
    out
}

/// ` (p50 … p99 … max)` of a phase's latencies, or nothing when there are none.
fn latency_range(phase: &Phase) -> String {
    let at = |p| percentile(&phase.latencies, p).map(duration);
    match (at(50.0), at(99.0), at(100.0)) {
        (Some(p50), Some(p99), Some(max)) => format!(" (p50 {p50}, p99 {p99}, max {max})"),
        _ => String::new(),
    }
}

/// Date, machine and commit, for the top of a report.
pub fn header() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|v| v.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let repo = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let commit = command("git", &["-C", repo, "rev-parse", "--short", "HEAD"]);
    let dirty = command(
        "git",
        &["-C", repo, "status", "--porcelain", "--untracked-files=no"],
    );
    let dirty = if dirty.is_empty() {
        ""
    } else {
        " (with uncommitted changes)"
    };
    format!(
        "date: {}\nmachine: {model}, {cores} cores\nweft commit: {}{dirty}\n",
        command("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        if commit.is_empty() {
            "unknown".into()
        } else {
            commit
        },
    )
}

fn command(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let ms: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        assert_eq!(percentile(&ms, 50.0), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&ms, 99.0), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&ms[..1], 99.0), Some(Duration::from_millis(100)));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn numbers_are_formatted_for_people() {
        assert_eq!(duration(Duration::from_micros(420)), "0.4 ms");
        assert_eq!(duration(Duration::from_millis(123)), "123 ms");
        assert_eq!(duration(Duration::from_millis(1234)), "1.23 s");
        assert_eq!(duration(Duration::from_secs(75)), "75.0 s");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(12 * 1024 + 300), "12.3 KiB");
    }

    #[test]
    fn a_phase_that_did_not_converge_says_so_in_the_table() {
        let failed = Phase {
            outcome: Outcome::Failed(
                "did not converge in 120 s (3 proxy session failures, e.g. x)".into(),
            ),
            ..Phase::not_run()
        };
        assert_eq!(spread(&failed), "did not converge in 120 s");
        assert_eq!(spread(&Phase::not_run()), "not run");
        assert_eq!(reach(&failed), "–");
    }
}
