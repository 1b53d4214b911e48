//! Route actions at the ingress gateway, on the NECPGAME example's routes (moved from the
//! e2e suite, crates/weft/tests/e2e.rs, assertions kept): rewrite and header operations,
//! redirect / direct response / fault abort, CORS, mirrors. Each test builds the gateway
//! config compile makes of the e2e test's YAML (pinned by the `necpgame_*` tests in
//! crates/model/tests/compile.rs) and sends the e2e test's requests.

mod support;

use support::routing::*;
use support::*;
use weft_model::{
    Cors, DirectResponse, Fault, HeaderOps, LbPolicy, Mirror, Redirect, RetryPolicy, Rewrite,
    StringMatcher,
};

const LEADERBOARD: &str = "/api/v1/leaderboard";

#[tokio::test]
async fn rewrite_and_header_operations_reach_app_and_client() {
    let control = FakeControl::start().await;
    let board = Workload::start(
        &control,
        "leaderboard",
        "v1",
        App::echo("leaderboard-v1").await,
    )
    .await;
    // rewrite: {uri: /v2/board}; headers: request set x-player-tier: gold, remove
    // user-agent; response add x-served-by: weft.
    let c = game_cluster("leaderboard", LbPolicy::LeastRequest, &[&board]);
    let mut route = prefix_route("leaderboard", LEADERBOARD, &c.name);
    route.rewrite = Some(Rewrite {
        uri: Some("/v2/board".into()),
        authority: None,
        uri_regex: None,
    });
    route.request_headers = HeaderOps {
        set: vec![("x-player-tier".into(), "gold".into())],
        add: vec![],
        remove: vec!["user-agent".into()],
    };
    route.response_headers = HeaderOps {
        add: vec![("x-served-by".into(), "weft".into())],
        ..Default::default()
    };
    let gw = Gateway::start(&control, &gateway_config(vec![route], vec![c])).await;

    let resp = game_get(
        gw.addr,
        "/api/v1/leaderboard/top?n=10",
        &[("x-player-tier", "bronze"), ("user-agent", "curl/8.5.0")],
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(
        resp.header("x-served-by"),
        Some("weft"),
        "response header added: {:?}",
        resp.headers
    );
    let seen = board.app.last();
    assert_eq!(
        seen.path, "/v2/board/top?n=10",
        "prefix rewritten, rest and query kept"
    );
    let tiers: Vec<_> = seen.headers.get_all("x-player-tier").iter().collect();
    assert_eq!(tiers, ["gold"], "request header set (not appended)");
    assert!(
        seen.header("user-agent").is_none(),
        "request header removed: {:?}",
        seen.headers
    );
}

#[tokio::test]
async fn redirect_direct_response_and_fault_abort() {
    let control = FakeControl::start().await;
    let player = Workload::start(&control, "player", "v1", App::echo("player-v1").await).await;
    let c = game_cluster("player", LbPolicy::RoundRobin, &[&player]);
    // Three routes ahead of the example's: old-api, maintenance, chaos.
    let mut old = game_route("old-api", StringMatcher::Prefix("/api/v0".into()), None);
    old.redirect = Some(Redirect {
        uri: Some("/api/v1/player/1".into()),
        code: 302,
        ..Default::default()
    });
    let mut down = game_route("maintenance", StringMatcher::Exact("/status".into()), None);
    down.direct_response = Some(DirectResponse {
        status: 503,
        body: b"down for maintenance".to_vec(),
    });
    let mut chaos = prefix_route("chaos", "/api/v1/chaos", &c.name);
    chaos.fault = Some(Fault {
        abort_status: Some(418),
        abort_percent: 100.0,
        ..Default::default()
    });
    // Istio: a route with a fault has neither retries nor a timeout.
    chaos.retry = RetryPolicy::default();
    let gw = Gateway::start(&control, &gateway_config(vec![old, down, chaos], vec![c])).await;

    let r = game_get(gw.addr, "/api/v0/old?x=1", &[]).await;
    assert_eq!(r.status, 302, "{}", r.body);
    assert_eq!(
        r.header("location"),
        Some(format!("http://{GAME_HOST}/api/v1/player/1?x=1").as_str()),
        "the path replaced, the query kept"
    );

    let r = game_get(gw.addr, "/status", &[]).await;
    assert_eq!((r.status, r.body.as_str()), (503, "down for maintenance"));

    let r = game_get(gw.addr, "/api/v1/chaos/1", &[]).await;
    assert_eq!(r.status, 418, "{}", r.body);
    let fi = [("response_code", "418"), ("response_flags", "FI")];
    let stats = requests_total(gw.admin(), &fi, 1.0).await;
    assert_eq!(
        sample_sum(&stats, "istio_requests_total", &fi),
        1.0,
        "{stats}"
    );
    // The fault aborted at the gateway: player's sidecar never saw it.
    let side = support::stats(player.sidecar.admin).await;
    assert_eq!(
        sample_sum(&side, "istio_requests_total", &[("response_code", "418")]),
        0.0,
        "{side}"
    );
    assert_eq!(
        sample_sum(&side, "istio_requests_total", &[]),
        0.0,
        "{side}"
    );
    assert_eq!(player.app.count(), 0);
}

const PLAY_ORIGIN: &str = "https://play.necpgame.example";

#[tokio::test]
async fn cors_preflights_are_answered_and_origins_echoed() {
    let control = FakeControl::start().await;
    let board = Workload::start(
        &control,
        "leaderboard",
        "v1",
        App::echo("leaderboard-v1").await,
    )
    .await;
    let c = game_cluster("leaderboard", LbPolicy::LeastRequest, &[&board]);
    let origins = || vec![StringMatcher::Exact(PLAY_ORIGIN.into())];
    // `closed` (a direct response with a response header and its own corsPolicy) ahead of
    // the leaderboard route with the full corsPolicy.
    let mut closed = game_route(
        "closed",
        StringMatcher::Exact("/api/v1/closed".into()),
        None,
    );
    closed.direct_response = Some(DirectResponse {
        status: 503,
        body: b"closed".to_vec(),
    });
    closed.response_headers = HeaderOps {
        set: vec![("x-closed".into(), "yes".into())],
        ..Default::default()
    };
    closed.cors = Some(Cors {
        allow_origins: origins(),
        forward_unmatched_preflights: true,
        ..Default::default()
    });
    let mut route = prefix_route("leaderboard", LEADERBOARD, &c.name);
    route.cors = Some(Cors {
        allow_origins: origins(),
        allow_methods: vec!["GET".into(), "POST".into()],
        allow_headers: vec!["x-player-id".into()],
        expose_headers: vec!["x-weft-version".into()],
        max_age_secs: Some(86_400),
        allow_credentials: true,
        forward_unmatched_preflights: true,
    });
    let gw = Gateway::start(&control, &gateway_config(vec![closed, route], vec![c])).await;
    let top = "/api/v1/leaderboard/top";

    // An allowed preflight is answered by the proxy.
    let pre = send(
        gw.addr,
        game_request(
            "OPTIONS",
            top,
            &[
                ("origin", PLAY_ORIGIN),
                ("access-control-request-method", "POST"),
            ],
        ),
    )
    .await;
    assert_eq!(pre.status, 200, "{pre:?}");
    for (name, value) in [
        ("access-control-allow-origin", PLAY_ORIGIN),
        ("access-control-allow-methods", "GET,POST"),
        ("access-control-allow-headers", "x-player-id"),
        ("access-control-max-age", "86400"),
        ("access-control-allow-credentials", "true"),
    ] {
        assert_eq!(pre.header(name), Some(value), "{name} in {:?}", pre.headers);
    }
    assert_eq!(board.app.count(), 0, "the preflight did not reach the app");

    // A real request from that origin gets the origin echoed; another origin gets nothing.
    let ok = game_get(gw.addr, top, &[("origin", PLAY_ORIGIN)]).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(
        ok.header("access-control-allow-origin"),
        Some(PLAY_ORIGIN),
        "{:?}",
        ok.headers
    );
    assert_eq!(
        ok.header("access-control-expose-headers"),
        Some("x-weft-version"),
        "{:?}",
        ok.headers
    );
    assert_eq!(board.app.count(), 1);

    // Local replies of a route (here a direct response) get CORS and response headers too.
    let closed = game_get(gw.addr, "/api/v1/closed", &[("origin", PLAY_ORIGIN)]).await;
    assert_eq!(closed.status, 503, "{}", closed.body);
    assert_eq!(
        closed.header("access-control-allow-origin"),
        Some(PLAY_ORIGIN),
        "{:?}",
        closed.headers
    );
    assert_eq!(
        closed.header("x-closed"),
        Some("yes"),
        "{:?}",
        closed.headers
    );

    let other = game_get(gw.addr, top, &[("origin", "https://evil.example")]).await;
    assert_eq!(other.status, 200, "{}", other.body);
    assert!(
        other.header("access-control-allow-origin").is_none(),
        "{:?}",
        other.headers
    );
}

#[tokio::test]
async fn mirror_sends_shadow_copies_and_keeps_the_real_response() {
    // Every leaderboard request is also mirrored to player; the client only sees leaderboard.
    let control = FakeControl::start().await;
    let board = Workload::start(
        &control,
        "leaderboard",
        "v1",
        App::echo("leaderboard-v1").await,
    )
    .await;
    let player = Workload::start(&control, "player", "v1", App::echo("player-v1").await).await;
    let lc = game_cluster("leaderboard", LbPolicy::LeastRequest, &[&board]);
    let pc = game_cluster("player", LbPolicy::RoundRobin, &[&player]);
    let mut route = prefix_route("leaderboard", LEADERBOARD, &lc.name);
    route.mirrors = vec![Mirror {
        cluster: pc.name.clone(),
        percent: 100.0,
    }];
    let gw = Gateway::start(&control, &gateway_config(vec![route], vec![lc, pc])).await;

    let mut conn = KeepAlive::connect(gw.addr).await;
    for _ in 0..10 {
        let r = conn.get("/api/v1/leaderboard/top", &[]).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.header(APP_HEADER), Some("leaderboard-v1"));
    }
    assert_eq!(board.app.count(), 10);
    // player's sidecar receives the 10 shadow copies (the responses are discarded).
    player.app.wait_for_count(10).await;
    let labels = [("reporter", "destination"), ("response_code", "200")];
    let side = requests_total(player.sidecar.admin, &labels, 10.0).await;
    assert_eq!(
        sample_sum(&side, "istio_requests_total", &labels),
        10.0,
        "{side}"
    );
    assert_eq!(player.app.count(), 10, "one copy per request");
    for seen in player.app.requests() {
        assert_eq!(seen.path, "/api/v1/leaderboard/top");
        assert_eq!(
            seen.header("host"),
            Some(format!("{GAME_HOST}-shadow").as_str()),
            "Envoy's shadow authority"
        );
    }
}
