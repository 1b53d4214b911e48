//! Time-based behaviour under paused tokio time: retry backoff, route and per-try
//! timeouts, outlier ejection. Every party (control plane, proxies, apps, client) runs in
//! the test's current-thread runtime, so loopback I/O is ready at once and the clock only
//! moves (auto-advance) when every task waits on a timer. Elapsed times below are virtual,
//! hence exact.

mod support;

use std::time::Duration;
use support::*;
use tokio::time::Instant;

#[tokio::test(start_paused = true)]
async fn retries_on_5xx_back_off_and_succeed_on_the_n_plus_first_try() {
    const FAILURES: usize = 3;
    const BACKOFF_MS: u64 = 100;
    let app = App::fail_first("flaky", FAILURES, 503).await;
    let pair = Pair::start(&app, |mut r| {
        r.retry = retries(FAILURES as u32, &["5xx"], BACKOFF_MS);
        r
    })
    .await;

    let start = Instant::now();
    let resp = pair.get("/").await;
    let took = start.elapsed();
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(app.count(), FAILURES + 1);
    // Envoy's fully jittered backoff: retry n waits up to base × (2^n - 1), capped at
    // 10 × base; IO takes no virtual time, so the request took only the backoffs.
    let ceiling: u64 = (1..=FAILURES as u32)
        .map(|n| (BACKOFF_MS * ((1 << n) - 1)).min(BACKOFF_MS * 10))
        .sum();
    assert!(
        took < Duration::from_millis(ceiling),
        "{took:?} >= {ceiling} ms"
    );
    requests_total(
        pair.client.admin,
        &[("response_code", "200"), ("response_flags", "-")],
        1.0,
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn retries_run_out_with_urx() {
    let app = App::status("broken", 503).await;
    let pair = Pair::start(&app, |mut r| {
        r.retry = retries(2, &["5xx"], 25);
        r
    })
    .await;
    let resp = pair.get("/").await;
    assert_eq!(resp.status, 503);
    assert_eq!(resp.header(APP_HEADER), Some("broken"), "the app's own 503");
    assert_eq!(app.count(), 3, "one try and two retries");
    requests_total(
        pair.client.admin,
        &[("response_code", "503"), ("response_flags", "URX")],
        1.0,
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_route_timeout_answers_504_ut() {
    let app = App::delayed("slow", Duration::from_secs(10)).await;
    let pair = Pair::start(&app, |mut r| {
        r.timeout_ms = Some(1_000);
        r
    })
    .await;

    let start = Instant::now();
    let resp = pair.get("/").await;
    let took = start.elapsed();
    assert_eq!(resp.status, 504, "{}", resp.body);
    assert!(
        resp.body.contains("upstream request timeout"),
        "{}",
        resp.body
    );
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_millis(1_050),
        "{took:?}"
    );
    assert_eq!(app.count(), 1, "the app got the request");
    let stats = requests_total(
        pair.client.admin,
        &[("response_code", "504"), ("response_flags", "UT")],
        1.0,
    )
    .await;
    assert!(
        stats.contains("response_flags=\"UT\""),
        "visible in /stats/prometheus"
    );
}

#[tokio::test(start_paused = true)]
async fn the_route_timeout_also_covers_a_stalled_response_body() {
    let app = App::start("stalls", |_, _| Reply::status(200).body("partial").stall()).await;
    let pair = Pair::start(&app, |mut r| {
        r.timeout_ms = Some(2_000);
        r
    })
    .await;
    let req = http::Request::get("/")
        .header(http::header::HOST, pair.host.as_str())
        .body(Default::default())
        .unwrap();
    let start = Instant::now();
    let err = try_send(pair.client.outbound(), req)
        .await
        .expect_err("the body is cut off");
    assert!(err.contains("response body"), "{err}");
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(2),
        "cut at the route timeout"
    );
}

#[tokio::test(start_paused = true)]
async fn a_per_try_timeout_retries_and_the_second_try_answers() {
    // The first request hangs for a minute; the rest answer at once.
    let app = App::start("first-hangs", |n, seen| {
        let r = Reply::echo(seen);
        if n == 0 {
            r.delay(Duration::from_secs(50))
        } else {
            r
        }
    })
    .await;
    let pair = Pair::start(&app, |mut r| {
        r.timeout_ms = Some(5_000);
        r.retry = retries(2, &["5xx"], 25);
        r.retry.per_try_timeout_ms = Some(500);
        r
    })
    .await;

    let start = Instant::now();
    let resp = pair.get("/").await;
    let took = start.elapsed();
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(app.count(), 2);
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_millis(500 + 25 + 10),
        "one per-try timeout and one backoff: {took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_per_try_timeout_without_retries_left_is_504_ut() {
    let app = App::delayed("slow", Duration::from_secs(50)).await;
    let pair = Pair::start(&app, |mut r| {
        r.retry = retries(1, &["5xx"], 25);
        r.retry.per_try_timeout_ms = Some(200);
        r
    })
    .await;
    let start = Instant::now();
    let resp = pair.get("/").await;
    assert_eq!(resp.status, 504, "{}", resp.body);
    assert_eq!(app.count(), 2, "both tries timed out");
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    // Envoy flags both: the timeout that ended the last try and the exhausted retries.
    requests_total(pair.client.admin, &[("response_flags", "UT,URX")], 1.0).await;
}

/// Two server sidecars behind one cluster: `good` answers 200, `bad` always 500.
struct Outlier {
    _control: FakeControl,
    client: Proxy,
    _good: Proxy,
    bad: Proxy,
    good_app: App,
    bad_app: App,
    host: String,
}

const BASE_EJECTION: Duration = Duration::from_secs(30);
const CONSECUTIVE_5XX: u32 = 3;

impl Outlier {
    async fn start() -> Outlier {
        let control = FakeControl::start().await;
        let good_app = App::echo("good").await;
        let bad_app = App::status("bad", 500).await;
        let good = Proxy::sidecar("good")
            .app(good_app.addr)
            .start(&control)
            .await;
        let bad = Proxy::sidecar("bad")
            .app(bad_app.addr)
            .start(&control)
            .await;
        let client = Proxy::sidecar("client").start(&control).await;
        let host = service_host("shop", NAMESPACE);
        let mut c = cluster(&host, 80, vec![endpoint(&good), endpoint(&bad)]);
        c.outlier = Some(outlier(CONSECUTIVE_5XX, BASE_EJECTION.as_millis() as u64));
        let cfg = Config::sidecar(&client)
            .route(&host, route_to(&c.name))
            .cluster(c);
        control.push_acked("client", &cfg.build()).await;
        Outlier {
            _control: control,
            client,
            _good: good,
            bad,
            good_app,
            bad_app,
            host,
        }
    }

    async fn get(&self) -> Resp {
        get(self.client.outbound(), &self.host, "/").await
    }

    /// Round robin alternates, so `bad` is ejected after its CONSECUTIVE_5XX-th 500.
    async fn eject_bad(&self) {
        let mut errors = 0;
        for _ in 0..2 * CONSECUTIVE_5XX {
            if self.get().await.status == 500 {
                errors += 1;
            }
        }
        assert_eq!(errors, CONSECUTIVE_5XX);
        assert_eq!(self.bad_app.count(), CONSECUTIVE_5XX as usize);
        assert_eq!(
            self.ejected().await,
            serde_json::json!([self.bad.inbound().to_string()])
        );
    }

    /// The client's `/clusters` view of ejected endpoints.
    async fn ejected(&self) -> serde_json::Value {
        let clusters: serde_json::Value =
            serde_json::from_str(&admin(self.client.admin, "/clusters").await.body).unwrap();
        clusters["outbound|80||shop.test.svc.cluster.local"]["ejected"].clone()
    }
}

#[tokio::test(start_paused = true)]
async fn consecutive_5xx_eject_an_endpoint_and_traffic_goes_to_the_healthy_one() {
    let o = Outlier::start().await;
    o.eject_bad().await;
    for _ in 0..10 {
        let resp = o.get().await;
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header(APP_HEADER), Some("good"));
    }
    assert_eq!(
        o.bad_app.count(),
        CONSECUTIVE_5XX as usize,
        "bad got nothing more"
    );
    assert_eq!(o.good_app.count(), CONSECUTIVE_5XX as usize + 10);

    // Still ejected just before the base ejection time is over.
    tokio::time::advance(BASE_EJECTION - Duration::from_secs(1)).await;
    assert_eq!(o.get().await.header(APP_HEADER), Some("good"));
    assert_eq!(o.get().await.header(APP_HEADER), Some("good"));
    assert_eq!(o.bad_app.count(), CONSECUTIVE_5XX as usize);
}

#[tokio::test(start_paused = true)]

async fn an_ejected_endpoint_returns_after_the_base_ejection_time() {
    let o = Outlier::start().await;
    o.eject_bad().await;
    tokio::time::advance(BASE_EJECTION + Duration::from_millis(1)).await;
    // Round robin over both endpoints again: one of the next two requests reaches `bad`.
    let answers = [o.get().await, o.get().await];
    assert!(
        answers.iter().any(|r| r.header(APP_HEADER) == Some("bad")),
        "bad is back in rotation after {BASE_EJECTION:?}"
    );
    assert_eq!(o.bad_app.count(), CONSECUTIVE_5XX as usize + 1);
    assert_eq!(o.ejected().await, serde_json::json!([]));
}
