//! The whole benchmark at a tiny size (30 services × 5 proxies, 2 churn changes) against
//! the debug `weft` binary: every phase converges and reports its numbers. Skipped, with
//! the reason printed, when no debug `weft` has been built (`cargo build -p weft`).

use std::time::Duration;
use weft_scale_bench::phases::Outcome;
use weft_scale_bench::{find_weft, report, run, Options};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_mesh_converges_in_every_phase() {
    let weft = match find_weft("debug") {
        Ok(weft) => weft,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let opts = Options {
        weft,
        services: 30,
        proxies: 5,
        churn_rate: 20.0,
        churn_secs: 0.1,
        timeout: Duration::from_secs(60),
    };
    assert_eq!(opts.churn_changes(), 2);
    let r = run(&opts).await.expect("the benchmark runs");
    eprintln!(
        "{}\n{}",
        report::table(std::slice::from_ref(&r)),
        report::details(&r)
    );
    for (name, phase) in r.phases() {
        assert!(
            matches!(phase.outcome, Outcome::Converged(_)),
            "{name}: {:?}",
            phase.outcome
        );
        assert!(
            phase.pushes > 0 && phase.bytes > 0,
            "{name}: nothing pushed"
        );
        assert!(phase.cpu_secs.is_some(), "{name}: no CPU time");
    }
    // All five proxies are in ns-0 and see each other's service.
    assert_eq!(r.sync.latencies.len(), 5, "every proxy got a first config");
    assert_eq!(
        r.vs_change.latencies.len(),
        5,
        "every proxy sees svc-0's VirtualService"
    );
    assert_eq!(r.churn.changes, 2);
    assert_eq!(
        r.churn.latencies.len(),
        2 * 4,
        "each new address reaches the other four proxies"
    );
    assert_eq!(r.reconnect.latencies.len(), 1, "10 % of 5 proxies is one");
    assert!(r.total_cpu.is_some() && r.peak_rss_kib.is_some_and(|k| k > 0));
    let table = report::table(&[r]);
    assert!(
        table.contains("| 30 × 5 |") && !table.contains("not run"),
        "{table}"
    );
}

/// `--proxy-rss` at its small size against the debug `weft`: a real proxy gets its config
/// and its memory is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_proxy_in_a_small_mesh_reports_its_memory() {
    let weft = match find_weft("debug") {
        Ok(weft) => weft,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let r = weft_scale_bench::proxy_rss::measure(&weft, 10, Duration::from_secs(60))
        .await
        .expect("the proxy gets a config");
    assert_eq!(r.services, 10);
    assert!(r.rss_kib > 1024 && r.peak_kib >= r.rss_kib, "{r:?}");
}
