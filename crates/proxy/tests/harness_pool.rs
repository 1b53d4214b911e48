//! DestinationRule `connectionPool` knobs through real sockets (client sidecar → mTLS →
//! server sidecar → app), with Envoy's overflow counters and breaker gauges read from the
//! client sidecar's `/stats/prometheus`: `maxConnections` slots and
//! `http1MaxPendingRequests` under HTTP/1.1 semantics, HTTP/2 semantics (no slots),
//! `maxRetries` and `connectTimeout` for HTTP.

mod support;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::time::Duration;
use support::*;
use tokio::task::JoinHandle;
use weft_model::PoolLimits;

fn cluster_stat(s: &str, name: &str, cluster: &str) -> f64 {
    sample_sum(
        s,
        &format!("envoy_cluster_{name}"),
        &[("cluster_name", cluster)],
    )
}

/// A request whose response headers have arrived and whose body is left unread: it
/// holds its upstream resources until dropped.
struct Held {
    _resp: http::Response<Incoming>,
    conn: JoinHandle<Result<(), hyper::Error>>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

async fn hold(pair: &Pair, path: &str) -> Held {
    within("a held request's response headers", async {
        let tcp = tokio::net::TcpStream::connect(pair.client.outbound())
            .await
            .unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        let conn = tokio::spawn(conn);
        let req = Request::get(path)
            .header(http::header::HOST, &pair.host)
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        Held { _resp: resp, conn }
    })
    .await
}

/// Polls the client's stats until `pred` holds.
async fn stats_until(pair: &Pair, what: &str, pred: impl Fn(&str) -> bool) -> String {
    within(what, async {
        loop {
            let s = stats(pair.client.admin).await;
            if pred(&s) {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// The first request's response body never ends (it holds its connection slot); every
/// other request is echoed.
async fn first_stalls() -> App {
    App::start("server-app", |n, seen| {
        if n == 0 {
            Reply::status(200).body("partial").stall()
        } else {
            Reply::echo(seen)
        }
    })
    .await
}

async fn pair_with(app: &App, limits: PoolLimits) -> (Pair, String) {
    let mut pair = Pair::start(app, |mut r| {
        r.retry = retries(2, &["5xx"], 1);
        r
    })
    .await;
    let name = weft_model::cluster_name(80, None, &pair.host);
    pair.config.0.clusters.get_mut(&name).unwrap().limits = limits;
    pair.control
        .push_acked("client", &pair.config.clone().build())
        .await;
    (pair, name)
}

#[tokio::test]
async fn http1_requests_wait_for_the_one_connection_and_overflow_past_one_pending() {
    let app = first_stalls().await;
    let (pair, name) = pair_with(
        &app,
        PoolLimits {
            max_connections: Some(1),
            max_pending: Some(1),
            ..Default::default()
        },
    )
    .await;
    let held = hold(&pair, "/held").await;
    let s = stats(pair.client.admin).await;
    assert_eq!(
        cluster_stat(&s, "circuit_breakers_default_cx_open", &name),
        1.0,
        "{s}"
    );
    let (outbound, host) = (pair.client.outbound(), pair.host.clone());
    let waiting = tokio::spawn(async move { get(outbound, &host, "/waiting").await });
    let s = stats_until(&pair, "the second request to be pending", |s| {
        cluster_stat(s, "circuit_breakers_default_rq_pending_open", &name) == 1.0
    })
    .await;
    assert_eq!(cluster_stat(&s, "upstream_cx_overflow", &name), 1.0, "{s}");
    assert_eq!(app.count(), 1, "the pending request is not sent yet");
    let refused = pair.get("/refused").await;
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert!(
        refused.body.contains("http1MaxPendingRequests"),
        "{}",
        refused.body
    );
    let s = requests_total(pair.client.admin, &[("response_flags", "UO")], 1.0).await;
    assert_eq!(
        cluster_stat(&s, "upstream_rq_pending_overflow", &name),
        1.0,
        "{s}"
    );
    assert_eq!(cluster_stat(&s, "upstream_cx_overflow", &name), 2.0, "{s}");
    drop(held);
    let resp = within("the pending request once the slot is free", waiting)
        .await
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    let s = stats_until(&pair, "the breakers to close", |s| {
        cluster_stat(s, "circuit_breakers_default_cx_open", &name) == 0.0
    })
    .await;
    assert_eq!(
        cluster_stat(&s, "circuit_breakers_default_rq_pending_open", &name),
        0.0,
        "{s}"
    );
    assert_eq!(pair.get("/after").await.status, 200);
}

#[tokio::test]
async fn http2_semantics_multiplex_past_max_connections() {
    let app = first_stalls().await;
    let (pair, name) = pair_with(
        &app,
        PoolLimits {
            max_connections: Some(1),
            max_pending: Some(1),
            http2: true,
            ..Default::default()
        },
    )
    .await;
    let _held = hold(&pair, "/held").await;
    for i in 0..3 {
        let resp = pair.get(&format!("/{i}")).await;
        assert_eq!(resp.status, 200, "{}", resp.body);
    }
    let s = stats(pair.client.admin).await;
    assert_eq!(cluster_stat(&s, "upstream_cx_overflow", &name), 0.0, "{s}");
    assert_eq!(
        cluster_stat(&s, "upstream_rq_pending_overflow", &name),
        0.0,
        "{s}"
    );
    assert_eq!(
        cluster_stat(&s, "circuit_breakers_default_cx_open", &name),
        0.0,
        "{s}"
    );
}

#[tokio::test]
async fn max_retries_zero_stops_retries_with_uo_and_counts_the_overflow() {
    let app = App::status("server-app", 503).await;
    let (mut pair, name) = pair_with(&app, PoolLimits::default()).await;
    assert_eq!(pair.get("/unlimited").await.status, 503);
    assert_eq!(app.count(), 3, "without maxRetries both retries go");
    pair.config
        .0
        .clusters
        .get_mut(&name)
        .unwrap()
        .limits
        .max_retries = Some(0);
    pair.control
        .push_acked("client", &pair.config.clone().build())
        .await;
    let before = app.count();
    let resp = pair.get("/limited").await;
    assert_eq!(resp.status, 503, "the upstream's own 503 is passed on");
    assert_eq!(app.count() - before, 1, "no retry was sent");
    let s = requests_total(pair.client.admin, &[("response_flags", "UO")], 1.0).await;
    assert_eq!(
        cluster_stat(&s, "upstream_rq_retry_overflow", &name),
        1.0,
        "{s}"
    );
    assert_eq!(
        cluster_stat(&s, "upstream_rq_retry", &name),
        2.0,
        "only the first request's two retries:\n{s}"
    );
}

#[tokio::test]
async fn connect_timeout_bounds_http_connects() {
    // A peer that completes TCP handshakes (the kernel's backlog) but never speaks TLS.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let app = App::echo("server-app").await;
    let mut pair = Pair::start(&app, |mut r| {
        r.retry = retries(0, &[], 1);
        r
    })
    .await;
    let name = weft_model::cluster_name(80, None, &pair.host);
    let c = pair.config.0.clusters.get_mut(&name).unwrap();
    c.endpoints[0].address = silent.local_addr().unwrap().to_string();
    c.tcp.connect_timeout_ms = 300;
    pair.control
        .push_acked("client", &pair.config.clone().build())
        .await;
    let started = std::time::Instant::now();
    let resp = pair.get("/").await;
    assert_eq!(resp.status, 503, "{}", resp.body);
    assert!(resp.body.contains("connectTimeout"), "{}", resp.body);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "well before Istio's default 10 s: {:?}",
        started.elapsed()
    );
    requests_total(pair.client.admin, &[("response_flags", "UF")], 1.0).await;
}

#[tokio::test]
async fn the_inbound_cluster_applies_the_limits_too() {
    let app = first_stalls().await;
    let pair = Pair::start(&app, |r| r).await;
    let mut server_cfg = Config::sidecar(&pair.server).build();
    let inbound = server_cfg
        .inbound
        .as_mut()
        .expect("a sidecar has an inbound side");
    inbound.limits = PoolLimits {
        max_connections: Some(1),
        max_pending: Some(1),
        ..Default::default()
    };
    pair.control.push_acked("server", &server_cfg).await;
    let _held = hold(&pair, "/held").await;
    let (outbound, host) = (pair.client.outbound(), pair.host.clone());
    let waiting = tokio::spawn(async move { get(outbound, &host, "/waiting").await });
    // The waiting request has left the client sidecar (it holds no slot there).
    within("the second request to reach the server sidecar", async {
        loop {
            let s = stats(pair.client.admin).await;
            let name = weft_model::cluster_name(80, None, &pair.host);
            if cluster_stat(&s, "upstream_rq_total", &name) == 2.0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    // Until the waiting request holds the server's one pending place, a third one could
    // take it: each try gives up (and its place) after a while.
    let refused = within("the third request to overflow", async {
        loop {
            let r = tokio::time::timeout(Duration::from_millis(500), pair.get("/refused")).await;
            if let Ok(r) = r {
                return r;
            }
        }
    })
    .await;
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert!(
        refused.body.contains("http1MaxPendingRequests"),
        "{}",
        refused.body
    );
    assert_eq!(
        app.count(),
        1,
        "neither the waiting nor the refused request reached the app"
    );
    requests_total(
        pair.server.admin,
        &[("reporter", "destination"), ("response_flags", "UO")],
        1.0,
    )
    .await;
    assert!(
        !waiting.is_finished(),
        "the waiting request still waits for the slot"
    );
    waiting.abort();
}

/// A pair whose client reaches the server through a [`support::conns::Relay`] (which
/// counts the client sidecar's connections), with `limits` on the cluster.
async fn relayed(app: &App, limits: PoolLimits) -> (Pair, support::conns::Relay, String) {
    let mut pair = Pair::start(app, |r| r).await;
    let relay = support::conns::Relay::start(pair.server.inbound()).await;
    let name = weft_model::cluster_name(80, None, &pair.host);
    let c = pair.config.0.clusters.get_mut(&name).unwrap();
    c.endpoints[0].address = relay.addr.to_string();
    c.limits = limits;
    pair.control
        .push_acked("client", &pair.config.clone().build())
        .await;
    (pair, relay, name)
}

#[tokio::test(start_paused = true)]
async fn http_idle_timeout_closes_a_pooled_connection_that_took_no_request() {
    let app = App::echo("server-app").await;
    let (pair, relay, name) = relayed(
        &app,
        PoolLimits {
            idle_timeout_ms: Some(10_000),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(pair.get("/1").await.status, 200);
    tokio::time::advance(Duration::from_secs(9)).await;
    assert_eq!(pair.get("/2").await.status, 200);
    assert_eq!(
        relay.accepted(),
        1,
        "within the idle timeout the connection is reused"
    );
    // 10 s without a request: the connection leaves the pool and closes.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let s = stats(pair.client.admin).await;
    assert_eq!(cluster_stat(&s, "upstream_cx_active", &name), 0.0, "{s}");
    assert_eq!(pair.get("/3").await.status, 200);
    assert_eq!(
        relay.accepted(),
        2,
        "a new connection after the idle timeout"
    );
}

#[tokio::test(start_paused = true)]
async fn max_connection_duration_replaces_a_busy_connection() {
    let app = App::echo("server-app").await;
    let (pair, relay, _) = relayed(
        &app,
        PoolLimits {
            max_connection_duration_ms: Some(10_000),
            ..Default::default()
        },
    )
    .await;
    // A request every 3 s keeps it from idling; at 10 s it is too old all the same.
    for i in 0..3 {
        assert_eq!(pair.get(&format!("/{i}")).await.status, 200);
        tokio::time::advance(Duration::from_secs(3)).await;
    }
    assert_eq!(relay.accepted(), 1, "9 s: still the first connection");
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(pair.get("/late").await.status, 200);
    assert_eq!(relay.accepted(), 2, "past 10 s a new connection takes over");
}

/// `ss`'s timer column for established connections to `port` (e.g.
/// `timer:(keepalive,9min59sec,0)`), one line per connection.
fn ss_timers(port: u16) -> String {
    let out = std::process::Command::new("ss")
        .args([
            "-tnoH",
            "state",
            "established",
            "dst",
            &format!("127.0.0.1:{port}"),
        ])
        .output()
        .expect("ss (iproute2) is installed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn tcp_keepalive_is_set_on_the_upstream_socket() {
    let app = App::echo("server-app").await;
    let (pair, relay, _) = relayed(&app, PoolLimits::default()).await;
    assert_eq!(pair.get("/").await.status, 200);
    let plain = ss_timers(relay.addr.port());
    assert!(!plain.is_empty(), "the pooled connection is listed");
    assert!(
        !plain.contains("keepalive"),
        "no keepalive unless asked:\n{plain}"
    );
    let (pair, relay, _) = relayed(
        &app,
        PoolLimits {
            keepalive: Some(weft_model::pool::Keepalive {
                time_ms: Some(600_000),
                interval_ms: Some(30_000),
                probes: Some(3),
            }),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(pair.get("/").await.status, 200);
    let timers = ss_timers(relay.addr.port());
    // The first probe is due in (just under) the 10 min idle time.
    assert!(
        timers.contains("timer:(keepalive,9min") || timers.contains("timer:(keepalive,10min"),
        "{timers}"
    );
}
