//! Retries, outlier detection and consistent hashing at the ingress gateway, on the
//! NECPGAME example's routes (moved from the e2e suite, crates/weft/tests/e2e.rs,
//! assertions kept or tightened). Each test builds the gateway config compile makes of
//! the e2e test's YAML (pinned by the `necpgame_*` tests in crates/model/tests/compile.rs).
//! Retry backoff and ejection windows run on paused tokio time.

mod support;

use std::collections::BTreeMap;
use support::routing::*;
use support::*;
use weft_model::{HashKey, LbPolicy, Outlier, RetryPolicy};

/// player answers 503 to 30% of requests: the first 3 of every 10 it receives. (The e2e
/// test drew them at random; a fixed pattern makes the ratios exact. At most 3 fail in
/// a row, so 3 retries always reach a 200.)
fn flaky(n: usize) -> bool {
    n % 10 < 3
}

/// Requests player receives to answer `ok` of them with 200, retrying every 503.
fn received_for(ok: usize) -> usize {
    let cycles = ok / 7;
    let rest = ok % 7;
    cycles * 10 + if rest > 0 { 3 + rest } else { 0 }
}

/// Fraction of `n` `GET /api/v1/player/1` on `conn` answered 200.
async fn player_success(conn: &mut KeepAlive, n: usize) -> f64 {
    let mut ok = 0;
    for _ in 0..n {
        let r = conn.get("/api/v1/player/1", &[]).await;
        assert!(matches!(r.status, 200 | 503), "{} {}", r.status, r.body);
        if r.status == 200 {
            ok += 1;
        }
    }
    ok as f64 / n as f64
}

#[tokio::test(start_paused = true)]
async fn virtual_service_retries_hide_flaky_upstreams_and_attempts_zero_turns_them_off() {
    let control = FakeControl::start().await;
    let app = App::start("player-v1", |n, seen| {
        if flaky(n) {
            Reply::status(503)
        } else {
            Reply::echo(seen)
        }
    })
    .await;
    let player = Workload::start(&control, "player", "v1", app).await;
    let c = game_cluster("player", LbPolicy::RoundRobin, &[&player]);
    // The example's player route: timeout 5s; retries: attempts 3, perTryTimeout 2s,
    // retryOn connect-failure,refused-stream,unavailable,cancelled,5xx.
    let mut route = prefix_route("player", "/api/v1/player", &c.name);
    route.timeout_ms = Some(5_000);
    route.retry = retries(
        3,
        &[
            "connect-failure",
            "refused-stream",
            "unavailable",
            "cancelled",
            "5xx",
        ],
        25,
    );
    route.retry.per_try_timeout_ms = Some(2_000);
    let cfg = gateway_config(vec![route], vec![c]);
    let gw = Gateway::start(&control, &cfg).await;

    let mut conn = KeepAlive::connect(gw.addr).await;
    // With 4 tries every request gets through (the e2e test, at random: >= 95%).
    let with_retries = player_success(&mut conn, 200).await;
    assert_eq!(with_retries, 1.0, "success with retries");
    assert_eq!(
        player.app.count(),
        received_for(200),
        "each 503 was retried"
    );

    // Chunked bodies (no content-length, as gRPC clients send them) are kept and replayed
    // too: 60 chunked POSTs on one connection.
    let before = player.app.count();
    let mut ok = 0;
    for _ in 0..60 {
        let req = http::Request::post("/api/v1/player/1")
            .header(http::header::HOST, GAME_HOST)
            .body(Chunked::new(&["move=", "e2e4"]))
            .unwrap();
        if conn.send(req).await.status == 200 {
            ok += 1;
        }
    }
    assert_eq!(ok, 60, "chunked POSTs with retries: {ok}/60 succeeded");
    let posts = &player.app.requests()[before..];
    assert!(posts.len() > 60, "some POSTs were retried: {}", posts.len());
    for seen in posts {
        assert_eq!(
            (seen.method.as_str(), &seen.body[..]),
            ("POST", &b"move=e2e4"[..]),
            "every try carries the whole body"
        );
    }
    let gw503 = [("response_code", "503")];
    requests_total(gw.admin(), &[("response_code", "200")], 260.0).await;
    assert_eq!(
        sample_sum(&stats(gw.admin()).await, "istio_requests_total", &gw503),
        0.0
    );

    // attempts: 0 disables retries: 70% succeed (the e2e test, at random: 55-85%).
    let mut cfg = cfg;
    let player_route = &mut cfg.routes.get_mut("gateway_80").unwrap().virtual_hosts[0].routes[0];
    player_route.retry = RetryPolicy::default();
    gw.push(&control, &cfg).await;
    let dump: serde_json::Value =
        serde_json::from_str(&admin(gw.admin(), "/config_dump").await.body).unwrap();
    let routes = dump["config"]["routes"]["gateway_80"]["virtual_hosts"][0]["routes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        routes
            .iter()
            .any(|r| r["name"] == "player" && r["retry"]["attempts"] == 0),
        "the gateway has the route without retries: {routes:?}"
    );
    let without = player_success(&mut conn, 200).await;
    assert_eq!(without, 0.7, "success without retries");
    assert!(
        (0.55..=0.85).contains(&without),
        "success without retries: {without}"
    );
    let stats = requests_total(gw.admin(), &gw503, 60.0).await;
    assert_eq!(sample_sum(&stats, "istio_requests_total", &gw503), 60.0);
}

#[tokio::test(start_paused = true)]
async fn outlier_detection_ejects_a_failing_endpoint() {
    // leaderboard gets a second workload that always answers 503, and a DestinationRule
    // that ejects after 3 consecutive 5xx (baseEjectionTime 60s, maxEjectionPercent 50).
    let control = FakeControl::start().await;
    let v1 = Workload::start(
        &control,
        "leaderboard",
        "v1",
        App::echo("leaderboard-v1").await,
    )
    .await;
    let v2 = Workload::start(
        &control,
        "leaderboard",
        "v2",
        App::status("leaderboard-v2", 503).await,
    )
    .await;
    let mut c = game_cluster("leaderboard", LbPolicy::LeastRequest, &[&v1, &v2]);
    c.outlier = Some(Outlier {
        consecutive_5xx: 3,
        consecutive_gateway: 0,
        base_ejection_ms: 60_000,
        interval_ms: 10_000,
        max_ejection_percent: 50,
        min_health_percent: 0,
        split_local_origin: false,
        consecutive_local_origin: 5,
    });
    let cluster_name = c.name.clone();
    let route = prefix_route("leaderboard", "/api/v1/leaderboard", &c.name);
    let gw = Gateway::start(&control, &gateway_config(vec![route], vec![c])).await;

    let mut conn = KeepAlive::connect(gw.addr).await;
    let mut statuses = Vec::new();
    for _ in 0..60 {
        statuses.push(conn.get("/api/v1/leaderboard/top", &[]).await.status);
    }
    let failures = statuses.iter().filter(|s| **s == 503).count();
    // Istio's default retry policy does not retry a 503 response: each one reaches the
    // client, and v2 is ejected at its third.
    assert_eq!(
        failures, 3,
        "v2 fails 3 times before it is ejected: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| matches!(s, 200 | 503)),
        "{statuses:?}"
    );
    assert!(
        statuses[statuses.len() - 30..].iter().all(|s| *s == 200),
        "after ejection only v1 answers: {statuses:?}"
    );
    assert_eq!(v2.app.count(), 3);
    assert_eq!(v1.app.count(), 57);

    let clusters: serde_json::Value =
        serde_json::from_str(&admin(gw.admin(), "/clusters").await.body).unwrap();
    let lb = &clusters[cluster_name.as_str()];
    assert_eq!(
        lb["endpoints"].as_array().map(Vec::len),
        Some(2),
        "{clusters}"
    );
    assert_eq!(
        lb["ejected"],
        serde_json::json!([v2.sidecar.inbound().to_string()]),
        "one endpoint, v2, ejected: {clusters}"
    );
}

#[tokio::test]
async fn consistent_hash_keeps_a_player_on_one_endpoint() {
    let control = FakeControl::start().await;
    let v1 = Workload::start(
        &control,
        "leaderboard",
        "v1",
        App::echo("leaderboard-v1").await,
    )
    .await;
    let v2 = Workload::start(
        &control,
        "leaderboard",
        "v2",
        App::echo("leaderboard-v2").await,
    )
    .await;
    // loadBalancer: consistentHash: httpHeaderName: x-player-id
    let mut c = game_cluster("leaderboard", LbPolicy::LeastRequest, &[&v1, &v2]);
    c.hash = Some(HashKey::Header("x-player-id".into()));
    let route = prefix_route("leaderboard", "/api/v1/leaderboard", &c.name);
    let gw = Gateway::start(&control, &gateway_config(vec![route], vec![c])).await;

    let mut conn = KeepAlive::connect(gw.addr).await;
    let mut seen = BTreeMap::new();
    for player in 0..16 {
        let id = format!("player-{player}");
        let mut apps = Vec::new();
        for _ in 0..5 {
            let r = conn
                .get("/api/v1/leaderboard/top", &[("x-player-id", id.as_str())])
                .await;
            assert_eq!(r.status, 200, "{}", r.body);
            apps.push(r.header(APP_HEADER).unwrap_or_default().to_string());
        }
        assert!(
            apps.iter().all(|a| *a == apps[0]),
            "{id} moved between endpoints: {apps:?}"
        );
        *seen.entry(apps[0].clone()).or_insert(0) += 1;
    }
    assert_eq!(
        seen.len(),
        2,
        "16 players should land on both endpoints: {seen:?}"
    );
    assert_eq!(v1.app.count() + v2.app.count(), 80);
}

#[tokio::test]
async fn max_requests_per_connection_opens_a_new_connection_past_the_count() {
    let app = App::echo("server-app").await;
    let control = FakeControl::start().await;
    let server = Proxy::sidecar("server").app(app.addr).start(&control).await;
    let client = Proxy::sidecar("client").start(&control).await;
    control
        .push_acked("server", &Config::sidecar(&server).build())
        .await;
    let relay = support::conns::Relay::start(server.inbound()).await;
    let host = service_host("server", NAMESPACE);
    let mut ep = endpoint(&server);
    ep.address = relay.addr.to_string();
    let mut c = cluster(&host, 80, vec![ep]);
    c.max_requests_per_connection = Some(3);
    let cfg = Config::sidecar(&client)
        .route(&host, route_to(&c.name))
        .cluster(c);
    control.push_acked("client", &cfg.build()).await;
    for i in 0..9 {
        let resp = get(client.outbound(), &host, &format!("/{i}")).await;
        assert_eq!(resp.status, 200, "{}", resp.body);
    }
    assert_eq!(
        relay.accepted(),
        3,
        "3 requests per connection: 9 requests, 3 connections"
    );
}

#[tokio::test(start_paused = true)]
async fn locality_failover_keeps_traffic_local_until_outlier_detection_ejects_it() {
    // Istio's locality-failover task: the local workload (priority 0, the compiler's
    // number for the client's own region/zone/subzone) takes everything while healthy;
    // once it fails and is ejected, the other region (priority 1) takes over.
    let control = FakeControl::start().await;
    let local = Workload::start(
        &control,
        "leaderboard",
        "local",
        App::echo("leaderboard-local").await,
    )
    .await;
    let remote = Workload::start(
        &control,
        "leaderboard",
        "remote",
        App::echo("leaderboard-remote").await,
    )
    .await;
    let mut c = game_cluster("leaderboard", LbPolicy::RoundRobin, &[&local, &remote]);
    c.endpoints[1].priority = 1;
    c.outlier = Some(Outlier {
        consecutive_5xx: 1,
        consecutive_gateway: 0,
        base_ejection_ms: 60_000,
        interval_ms: 10_000,
        max_ejection_percent: 100,
        min_health_percent: 0,
        split_local_origin: false,
        consecutive_local_origin: 5,
    });
    let route = prefix_route("leaderboard", "/api/v1/leaderboard", &c.name);
    let gw = Gateway::start(&control, &gateway_config(vec![route], vec![c])).await;
    let mut conn = KeepAlive::connect(gw.addr).await;
    for _ in 0..20 {
        assert_eq!(conn.get("/api/v1/leaderboard/top", &[]).await.status, 200);
    }
    assert_eq!(
        (local.app.count(), remote.app.count()),
        (20, 0),
        "round robin stays within the local priority"
    );
    // The local workload breaks: its first 503 ejects it, and the remote one serves.
    local.app.set_script(|_, _| Reply::status(503));
    let mut statuses = Vec::new();
    for _ in 0..20 {
        statuses.push(conn.get("/api/v1/leaderboard/top", &[]).await.status);
    }
    assert_eq!(statuses[0], 503, "{statuses:?}");
    assert!(statuses[1..].iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!((local.app.count(), remote.app.count()), (21, 19));
    // Back after the ejection time, and healthy again: traffic returns home.
    local.app.set_script(|_, seen| Reply::echo(seen));
    tokio::time::advance(std::time::Duration::from_secs(61)).await;
    // (The idle client connection was closed meanwhile.)
    let mut conn = KeepAlive::connect(gw.addr).await;
    for _ in 0..10 {
        assert_eq!(conn.get("/api/v1/leaderboard/top", &[]).await.status, 200);
    }
    assert_eq!((local.app.count(), remote.app.count()), (31, 19));
}

#[tokio::test]
async fn a_hash_cookie_with_ttl_is_made_up_once_and_keeps_the_client_on_its_endpoint() {
    // consistentHash: httpCookie: {name: session, path: /, ttl: 1h}
    let control = FakeControl::start().await;
    let v1 = Workload::start(&control, "leaderboard", "v1", App::echo("lb-v1").await).await;
    let v2 = Workload::start(&control, "leaderboard", "v2", App::echo("lb-v2").await).await;
    let mut c = game_cluster("leaderboard", LbPolicy::LeastRequest, &[&v1, &v2]);
    c.hash = Some(HashKey::NewCookie {
        name: "session".into(),
        path: Some("/".into()),
        ttl_secs: 3600,
    });
    let route = prefix_route("leaderboard", "/api/v1/leaderboard", &c.name);
    let gw = Gateway::start(&control, &gateway_config(vec![route], vec![c])).await;
    let mut conn = KeepAlive::connect(gw.addr).await;
    let mut seen = BTreeMap::new();
    for _ in 0..12 {
        // A new client: no cookie, so the proxy makes one up and sets it.
        let first = conn.get("/api/v1/leaderboard/top", &[]).await;
        assert_eq!(first.status, 200, "{}", first.body);
        let set = first
            .header("set-cookie")
            .expect("a cookie is set")
            .to_string();
        assert!(
            set.starts_with("session=\"") && set.ends_with("\"; Max-Age=3600; Path=/; HttpOnly"),
            "{set}"
        );
        let cookie = set.split(';').next().unwrap().to_string();
        let app = first.header(APP_HEADER).unwrap().to_string();
        // Sent back, it keeps the client where the first request went; no new cookie.
        for _ in 0..4 {
            let r = conn
                .get("/api/v1/leaderboard/top", &[("cookie", cookie.as_str())])
                .await;
            assert_eq!(r.header(APP_HEADER), Some(app.as_str()), "{cookie}");
            assert_eq!(r.header("set-cookie"), None);
        }
        *seen.entry(app).or_insert(0) += 1;
    }
    assert_eq!(
        seen.len(),
        2,
        "new clients spread over both endpoints: {seen:?}"
    );
}
