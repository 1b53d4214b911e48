//! Traffic generator tests against demo apps started in-process.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::start;
use weft_demo::{render_table, run_load, DemoAppConfig, LoadConfig, LoadRoute};

fn routes() -> Vec<LoadRoute> {
    vec![
        LoadRoute {
            name: "inventory (premium → v2)".into(),
            authority: "inventory.necpgame".into(),
            path: "/api/v1/inventory/items".into(),
            headers: vec![("x-player-tier".into(), "premium".into())],
        },
        LoadRoute {
            name: "matchmaking".into(),
            authority: "matchmaking.necpgame".into(),
            path: "/api/v1/match?mode=ranked".into(),
            headers: vec![],
        },
    ]
}

fn config(target: SocketAddr, duration: Option<Duration>) -> LoadConfig {
    LoadConfig {
        target,
        routes: routes(),
        rps: 200,
        concurrency: 4,
        duration,
        report_every: Duration::from_millis(250),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_second_at_200_rps_two_routes() {
    let app = start(DemoAppConfig::new("inventory", "v1")).await;
    let mut out = Vec::new();
    let s = run_load(
        config(app.addr, Some(Duration::from_secs(1))),
        &mut out,
        std::future::pending(),
    )
    .await
    .expect("load run");
    app.stop().await;

    assert_eq!(s.total, s.successes, "{s:?}");
    assert!((120..=210).contains(&s.total), "total {}", s.total);
    assert_eq!(s.routes.len(), 2);
    assert_eq!(s.routes.iter().map(|r| r.requests).sum::<u64>(), s.total);
    for r in &s.routes {
        assert!(r.requests >= s.total / 2 - 1, "{r:?}");
        assert_eq!(r.versions.get("v1"), Some(&r.requests), "{r:?}");
        assert!(r.errors.is_empty(), "{r:?}");
        assert!(r.p50_ms > 0.0 && r.p99_ms >= r.p50_ms, "{r:?}");
        assert!(r.rps > 50.0, "{r:?}");
    }
    assert!((s.success_ratio() - 1.0).abs() < f64::EPSILON);
    assert!(s.elapsed >= Duration::from_secs(1));

    let table = render_table(&s);
    assert!(table.contains("inventory (premium → v2)"), "{table}");
    assert!(table.contains("matchmaking"), "{table}");
    assert!(
        table.contains("req/s") && table.contains("p99 ms"),
        "{table}"
    );

    let live = String::from_utf8(out).expect("utf8");
    assert!(live.contains("[t="), "{live}");
    assert!(live.contains("inventory (premium → v2)"), "{live}");
    assert!(live.contains("matchmaking"), "{live}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_errors_give_about_half_success() {
    let app = start(DemoAppConfig {
        error_rate: 0.5,
        ..DemoAppConfig::new("inventory", "v2")
    })
    .await;
    let s = run_load(
        config(app.addr, Some(Duration::from_secs(1))),
        std::io::sink(),
        std::future::pending(),
    )
    .await
    .expect("load run");
    app.stop().await;
    let ratio = s.success_ratio();
    assert!((0.3..=0.7).contains(&ratio), "ratio {ratio} in {s:?}");
    // 503s are HTTP responses (not transport errors) and still carry a version.
    assert!(s.routes.iter().all(|r| r.errors.is_empty()), "{s:?}");
    assert_eq!(
        s.routes.iter().map(|r| r.versions["v2"]).sum::<u64>(),
        s.total
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_future_ends_unbounded_run() {
    let app = start(DemoAppConfig::new("inventory", "v1")).await;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let load = tokio::spawn(run_load(config(app.addr, None), std::io::sink(), async {
        let _ = rx.await;
    }));
    // Trigger shutdown; the run must end promptly even with no duration.
    tx.send(()).expect("send shutdown");
    let s = tokio::time::timeout(Duration::from_secs(5), load)
        .await
        .expect("run_load ended")
        .expect("task")
        .expect("load run");
    assert_eq!(s.total, s.successes);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_errors_are_counted_not_fatal() {
    // Reserve an ephemeral port, then free it so connects are refused.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let mut cfg = config(addr, Some(Duration::from_millis(300)));
    cfg.report_every = Duration::from_millis(100);
    let mut out = Vec::new();
    let s = run_load(cfg, &mut out, std::future::pending())
        .await
        .expect("load run survives refused connections");
    assert!(s.total > 0);
    assert_eq!(s.successes, 0);
    let errors = s.errors();
    assert_eq!(errors.values().sum::<u64>(), s.total, "{errors:?}");
    assert!(
        errors.keys().all(|k| k.starts_with("connect")),
        "{errors:?}"
    );
    assert!(render_table(&s).contains("errors"));
}

#[tokio::test]
async fn invalid_configs_are_rejected() {
    let addr: SocketAddr = "127.0.0.1:9".parse().expect("addr");
    let mut cfg = config(addr, Some(Duration::from_millis(10)));
    cfg.routes.clear();
    assert!(run_load(cfg, std::io::sink(), async {}).await.is_err());
    let mut cfg = config(addr, Some(Duration::from_millis(10)));
    cfg.rps = 0;
    assert!(run_load(cfg, std::io::sink(), async {}).await.is_err());
    let mut cfg = config(addr, Some(Duration::from_millis(10)));
    cfg.routes[0]
        .headers
        .push(("bad header".into(), "x".into()));
    assert!(run_load(cfg, std::io::sink(), async {}).await.is_err());
}
