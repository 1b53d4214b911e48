//! Edge hardening: what a hostile or sloppy client meets at a proxy's plaintext
//! listeners (sidecar outbound, gateway ports) — oversized header blocks, host and path
//! tricks, request smuggling, HTTP/2 floods, slowloris, spoofed identity headers, the
//! connection limit — and where the listeners are bound. Raw `TcpStream` writes
//! ([`support::raw`]) send what a client library would refuse to.

mod support;

use std::net::SocketAddr;
use std::time::Duration;
use support::conns::{ConnApp, Relay};
use support::custom::{sidecar_options, Custom};
use support::raw::h2::{self as h2f, RawH2};
use support::raw::{exchange, request, RawConn, Read};
use support::*;
use weft_model::{DirectResponse, RouteMatch, StringMatcher};
use weft_proxy::http::headers::{header_block_size, MAX_REQUEST_HEADERS_BYTES};

const CLIENT_ID: &str = "spiffe://cluster.local/ns/test/sa/client";
const SERVER_ID: &str = "spiffe://cluster.local/ns/test/sa/server";

// ---- helpers ----

/// `GET /` with `connection: close` and `x-pad-N` headers of 8000 bytes each, the last
/// one cut so the header block, as the proxy counts it (name + value + 32 per header),
/// is `block` bytes.
fn padded_request(host: &str, block: usize) -> Vec<u8> {
    let mut map = http::HeaderMap::new();
    map.insert("host", host.parse().unwrap());
    map.insert("connection", "close".parse().unwrap());
    let mut lines = vec![format!("host: {host}")];
    let mut i = 0;
    while header_block_size(&map) < block {
        let name = format!("x-pad-{i}");
        let left = block - header_block_size(&map) - (name.len() + 32);
        let value = "a".repeat(left.min(8000));
        map.insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
        lines.push(format!("{name}: {value}"));
        i += 1;
    }
    assert_eq!(header_block_size(&map), block);
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    request("/", &lines)
}

/// A route matching a path prefix.
fn prefix_route(name: &str, prefix: &str) -> weft_model::Route {
    weft_model::Route {
        name: name.into(),
        matches: vec![RouteMatch {
            uri: Some(StringMatcher::Prefix(prefix.into())),
            ..Default::default()
        }],
        origin: "harness".into(),
        ..Default::default()
    }
}

/// A sidecar pair whose server endpoint is reached through a counting [`Relay`], so a
/// test sees how many connections the client sidecar opened to its peer.
struct Relayed {
    _control: FakeControl,
    client: Proxy,
    server: Proxy,
    relay: Relay,
    host: String,
    cluster: String,
}

impl Relayed {
    async fn start(app: &App) -> Relayed {
        let control = FakeControl::start().await;
        let server = Proxy::sidecar("server").app(app.addr).start(&control).await;
        let client = Proxy::sidecar("client").start(&control).await;
        control
            .push_acked("server", &Config::sidecar(&server).build())
            .await;
        let relay = Relay::start(server.inbound()).await;
        let host = service_host("server", NAMESPACE);
        let mut ep = endpoint(&server);
        ep.address = relay.addr.to_string();
        let mut c = cluster(&host, 80, vec![ep]);
        c.outlier = Some(outlier(3, 30_000));
        let name = c.name.clone();
        let cfg = Config::sidecar(&client)
            .route(&host, route_to(&c.name))
            .cluster(c);
        control.push_acked("client", &cfg.build()).await;
        Relayed {
            _control: control,
            client,
            server,
            relay,
            host,
            cluster: name,
        }
    }
}

// ---- 1. oversized header blocks ----

/// 66 KiB (over the limit, under hyper's read buffer: the pipeline answers) and 420 KiB
/// (over hyper's buffer too: hyper's HTTP/1 parser answers).
const BIG: usize = 66 * 1024;
const HUGE: usize = 420 * 1024;

#[tokio::test]
async fn oversized_header_blocks_get_431_at_the_sidecar_and_do_not_hurt_the_peer() {
    let app = App::echo("server-app").await;
    let r = Relayed::start(&app).await;
    let out = r.client.outbound();
    assert_eq!(get(out, &r.host, "/warm").await.status, 200);
    assert_eq!(r.relay.accepted(), 1, "one h2 connection to the peer");

    for round in 0..5 {
        for size in [BIG, HUGE] {
            let resp = exchange(out, &padded_request(&r.host, size)).await;
            assert_eq!(resp.status, 431, "{size} bytes, round {round}: {resp:?}");
        }
        // Another client's request in between is served, over the same connection.
        let ok = get(out, &r.host, &format!("/ok{round}")).await;
        assert_eq!(ok.status, 200, "{}", ok.body);
    }
    let resp = exchange(out, &padded_request(&r.host, BIG)).await;
    assert!(
        resp.body.contains(&format!(
            "larger than this proxy's limit of {MAX_REQUEST_HEADERS_BYTES} bytes"
        )),
        "{resp:?}"
    );
    assert_eq!(app.count(), 6, "only the normal requests reached the app");
    assert!(app.requests().iter().all(|s| s.header("x-pad-0").is_none()));
    assert_eq!(
        r.relay.accepted(),
        1,
        "the h2 connection to the peer survived"
    );

    // The 10 refusals did not count against the endpoint (outlier: 3 consecutive 5xx).
    let clusters: serde_json::Value =
        serde_json::from_str(&admin(r.client.admin, "/clusters").await.body).unwrap();
    assert_eq!(clusters[&r.cluster]["ejected"], serde_json::json!([]));
    assert_eq!(get(out, &r.host, "/after").await.status, 200);
    assert_eq!(app.last().path, "/after");

    // The pipeline's 431s (the 66 KiB blocks) are counted with Envoy's DPE flag; the
    // 420 KiB ones hyper refuses are not (see `every_oversized_header_block_is_counted`).
    requests_total(
        r.client.admin,
        &[("response_code", "431"), ("response_flags", "DPE")],
        6.0,
    )
    .await;
}

#[tokio::test]
#[ignore = "blocks over hyper's HTTP/1 read buffer (http/server.rs http_server: max_buf_size = \
            MAX_HEAD_BYTES, 68 KiB) are refused by hyper's parser itself with an empty 431 that \
            never goes through the pipeline, so istio_requests_total does not count them; \
            Envoy counts every 431 with flag DPE"]
async fn every_oversized_header_block_is_counted_431_dpe() {
    let app = App::echo("server-app").await;
    let pair = Pair::start(&app, |r| r).await;
    let resp = exchange(pair.client.outbound(), &padded_request(&pair.host, HUGE)).await;
    assert_eq!(resp.status, 431);
    assert!(resp.body.contains("limit"), "says why: {resp:?}");
    requests_total(
        pair.client.admin,
        &[("response_code", "431"), ("response_flags", "DPE")],
        1.0,
    )
    .await;
}

#[tokio::test]
async fn a_block_the_client_sidecar_passes_but_its_own_headers_push_over_gets_431_from_the_peer() {
    // Just under the limit at the client sidecar; the headers it adds on the way
    // (x-request-id, peer metadata) put it over at the server sidecar, which refuses it
    // the same way: 431 DPE there, the app never sees it, the connection stays up.
    let app = App::echo("server-app").await;
    let r = Relayed::start(&app).await;
    let out = r.client.outbound();
    assert_eq!(get(out, &r.host, "/warm").await.status, 200);
    let resp = exchange(out, &padded_request(&r.host, MAX_REQUEST_HEADERS_BYTES - 8)).await;
    assert_eq!(resp.status, 431, "{resp:?}");
    assert_eq!(app.count(), 1);
    // Counted at the server (under the wrong reporter: see
    // `an_inbound_request_refused_at_the_edge_is_reported_by_the_destination`).
    requests_total(
        r.server.admin,
        &[("response_code", "431"), ("response_flags", "DPE")],
        1.0,
    )
    .await;
    for _ in 0..5 {
        let _ = exchange(out, &padded_request(&r.host, MAX_REQUEST_HEADERS_BYTES - 8)).await;
    }
    // 431 is not a 5xx: no ejection, and the h2 connection to the peer is the first one.
    let clusters: serde_json::Value =
        serde_json::from_str(&admin(r.client.admin, "/clusters").await.body).unwrap();
    assert_eq!(clusters[&r.cluster]["ejected"], serde_json::json!([]));
    assert_eq!(get(out, &r.host, "/after").await.status, 200);
    assert_eq!(r.relay.accepted(), 1);
    assert_eq!(app.count(), 2);
}

#[tokio::test]
async fn oversized_header_blocks_get_431_at_a_gateway() {
    let control = FakeControl::start().await;
    let app = App::echo("web").await;
    let web = Proxy::sidecar("web").app(app.addr).start(&control).await;
    let mut gw = Proxy::gateway("ingress").start(&control).await;
    control
        .push_acked("web", &Config::sidecar(&web).build())
        .await;
    let host = service_host("web", NAMESPACE);
    let c = cluster(&host, 80, vec![endpoint(&web)]);
    let cfg = Config::gateway()
        .gateway_route(80, "shop.example.com", route_to(&c.name))
        .cluster(c);
    control.push_acked("ingress", &cfg.build()).await;
    let port80 = gw.listener("gateway_80").await;

    for size in [BIG, HUGE, BIG, HUGE] {
        let resp = exchange(port80, &padded_request("shop.example.com", size)).await;
        assert_eq!(resp.status, 431, "{size}: {resp:?}");
        let ok = get(port80, "shop.example.com", "/ok").await;
        assert_eq!(ok.status, 200, "{}", ok.body);
    }
    assert_eq!(app.count(), 4, "only the normal requests reached the app");
    requests_total(
        gw.admin,
        &[("response_code", "431"), ("response_flags", "DPE")],
        2.0,
    )
    .await;
}

#[tokio::test]
async fn an_inbound_request_refused_at_the_edge_is_reported_by_the_destination() {
    let app = App::echo("server-app").await;
    let pair = Pair::start(&app, |r| r).await;
    let block = padded_request(&pair.host, MAX_REQUEST_HEADERS_BYTES - 8);
    assert_eq!(exchange(pair.client.outbound(), &block).await.status, 431);
    requests_total(
        pair.server.admin,
        &[
            ("reporter", "destination"),
            ("source_principal", CLIENT_ID),
            ("response_code", "431"),
            ("response_flags", "DPE"),
            ("connection_security_policy", "mutual_tls"),
        ],
        1.0,
    )
    .await;
}

// ---- 2. host rules ----

#[tokio::test]
async fn requests_without_exactly_one_agreeing_host_are_400() {
    let app = App::echo("server-app").await;
    let pair = Pair::start(&app, |r| r).await;
    let out = pair.client.outbound();
    let host = format!("host: {}", pair.host);
    let cases: [(&str, Vec<u8>, &str); 4] = [
        (
            "two Host headers",
            request("/", &[&host, "host: evil.local"]),
            "more than one Host",
        ),
        (
            "the same Host twice",
            request("/", &[&host, &host]),
            "more than one Host",
        ),
        // Stricter than Envoy, whose codec lets the absolute-form authority win.
        (
            "absolute form naming another host",
            request("http://a.local/", &["host: b.local"]),
            "disagrees",
        ),
        ("no Host on HTTP/1.1", request("/", &[]), "no Host header"),
    ];
    for (what, bytes, says) in cases {
        let resp = exchange(out, &bytes).await;
        assert_eq!(resp.status, 400, "{what}: {resp:?}");
        assert!(resp.body.contains(says), "{what}: {}", resp.body);
    }
    assert_eq!(app.count(), 0, "none reached the app");
    requests_total(
        pair.client.admin,
        &[("response_code", "400"), ("response_flags", "DPE")],
        4.0,
    )
    .await;

    // An absolute-form target whose Host agrees is served, with that host.
    let target = format!("http://{}/abs", pair.host);
    let resp = exchange(out, &request(&target, &[&host])).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(app.last().path, "/abs");
    assert_eq!(app.last().header("host"), Some(pair.host.as_str()));
}

// ---- 3. path normalization ----

#[tokio::test]
async fn paths_are_normalized_before_routing_and_the_app_never_sees_dot_segments() {
    let app = App::echo("server-app").await;
    let pair = Pair::start(&app, |r| r).await;
    // `/admin` (prefix) is answered 403 by the proxy; everything else goes to the app.
    let mut admin_route = prefix_route("admin", "/admin");
    admin_route.direct_response = Some(DirectResponse {
        status: 403,
        body: b"admin is off limits\n".to_vec(),
    });
    let c = cluster(&pair.host, 80, vec![endpoint(&pair.server)]);
    let cfg = Config::sidecar(&pair.client)
        .route(&pair.host, admin_route)
        .route(&pair.host, route_to(&c.name))
        .cluster(c);
    pair.control.push_acked("client", &cfg.build()).await;
    let out = pair.client.outbound();
    let host = format!("host: {}", pair.host);
    let get_raw = |target: &str| request(target, &[&host]);

    for target in [
        "/admin",
        "/x/../admin",
        "/./admin",
        "/%61dmin",
        "/%2e%2e/admin",
        "/%2E%2e/admin",
        "/x/y/../../admin/users",
        "/../../admin",
        "/admin/.",
        "/admin/x/..",
        "/x\\..\\admin",
    ] {
        let resp = exchange(out, &get_raw(target)).await;
        assert_eq!(resp.status, 403, "{target}: {resp:?}");
        assert_eq!(resp.body, "admin is off limits\n", "{target}");
    }
    assert_eq!(app.count(), 0, "every spelling of /admin was stopped");

    // Not /admin once normalized: the app sees exactly the normalized path. Istio's
    // default BASE (Envoy `normalize_path: true`, no `merge_slashes`) keeps `//`, so
    // `//admin` is not `/admin` for prefix matching (it needs MERGE_SLASHES), and
    // escaped slashes stay escaped (they need DECODE_AND_MERGE_SLASHES).
    for (target, seen) in [
        ("//admin", "//admin"),
        ("/x/%2e%2e/y/./z", "/y/z"),
        ("/%7Euser/a%2fb", "/~user/a%2fb"),
        ("/x/..%2fadmin", "/x/..%2fadmin"),
        ("/a/../b?q=/../admin", "/b?q=/../admin"),
        ("/administrator/../public", "/public"),
    ] {
        let resp = exchange(out, &get_raw(target)).await;
        assert_eq!(resp.status, 200, "{target}: {resp:?}");
        assert_eq!(app.last().path, seen, "{target}");
    }

    // A NUL, encoded or not, is refused.
    let resp = exchange(out, &get_raw("/a%00b")).await;
    assert_eq!(resp.status, 400, "{resp:?}");
    assert!(resp.body.contains("NUL"), "{}", resp.body);

    for seen in app.requests() {
        let path = seen.path.split('?').next().unwrap();
        assert!(
            !path.split('/').any(|s| s == ".." || s == "."),
            "the app saw a dot segment: {}",
            seen.path
        );
    }
}

// ---- 4. forwarding headers ----

#[tokio::test]
async fn gateways_append_the_peer_to_x_forwarded_for_and_set_the_proto() {
    let control = FakeControl::start().await;
    let app = App::echo("web").await;
    let web = Proxy::sidecar("web").app(app.addr).start(&control).await;
    let mut gw = Proxy::gateway("ingress").start(&control).await;
    control
        .push_acked("web", &Config::sidecar(&web).build())
        .await;
    let host = service_host("web", NAMESPACE);
    let c = cluster(&host, 80, vec![endpoint(&web)]);
    let cfg = Config::gateway()
        .gateway_route(80, "shop.example.com", route_to(&c.name))
        .cluster(c);
    control.push_acked("ingress", &cfg.build()).await;
    let port80 = gw.listener("gateway_80").await;

    let req = http::Request::get("/")
        .header("host", "shop.example.com")
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-forwarded-proto", "https")
        .header("x-envoy-external-address", "10.0.0.1")
        .body(Default::default())
        .unwrap();
    assert_eq!(send(port80, req).await.status, 200);
    let seen = app.last();
    // Envoy appends its own local address when the peer is loopback; here both are
    // 127.0.0.1, so either reading gives the same header.
    assert_eq!(
        seen.header("x-forwarded-for"),
        Some("203.0.113.7,127.0.0.1")
    );
    assert_eq!(
        seen.header("x-forwarded-proto"),
        Some("http"),
        "no trusted hops: the client's value is replaced"
    );
    assert_eq!(seen.header("x-envoy-external-address"), Some("127.0.0.1"));

    // Without a client value the gateway starts the list.
    assert_eq!(get(port80, "shop.example.com", "/").await.status, 200);
    assert_eq!(app.last().header("x-forwarded-for"), Some("127.0.0.1"));
}

#[tokio::test]
async fn a_sidecar_outbound_passes_x_forwarded_for_unchanged() {
    let app = App::echo("server-app").await;
    let pair = Pair::start(&app, |r| r).await;
    let req = http::Request::get("/")
        .header("host", pair.host.as_str())
        .header("x-forwarded-for", "203.0.113.7, 198.51.100.2")
        .body(Default::default())
        .unwrap();
    assert_eq!(send(pair.client.outbound(), req).await.status, 200);
    let seen = app.last();
    assert_eq!(
        seen.header("x-forwarded-for"),
        Some("203.0.113.7, 198.51.100.2")
    );
    assert_eq!(seen.header("x-forwarded-proto"), None);
}

// ---- 11. spoofed identity headers ----

#[tokio::test]
async fn spoofed_xfcc_and_peer_metadata_do_not_reach_the_app_or_the_metrics() {
    let app = App::echo("server-app").await;
    let pair = Pair::start(&app, |r| r).await;
    let req = http::Request::get("/")
        .header("host", pair.host.as_str())
        .header(
            "x-forwarded-client-cert",
            "By=x;URI=spiffe://cluster.local/ns/kube-system/sa/admin",
        )
        .header(
            weft_proxy::PEER_HEADER,
            "source_workload=admin;source_namespace=kube-system",
        )
        .body(Default::default())
        .unwrap();
    assert_eq!(send(pair.client.outbound(), req).await.status, 200);
    let seen = app.last();
    let xfcc: Vec<&str> = seen
        .headers
        .get_all("x-forwarded-client-cert")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(xfcc, [format!("By={SERVER_ID};URI={CLIENT_ID}")]);
    assert!(seen.header(weft_proxy::PEER_HEADER).is_none());

    let s = requests_total(
        pair.server.admin,
        &[
            ("reporter", "destination"),
            ("source_workload", "client"),
            ("source_workload_namespace", "test"),
            ("source_principal", CLIENT_ID),
        ],
        1.0,
    )
    .await;
    assert!(!s.contains("admin"), "no spoofed label: {s}");
    assert!(!s.contains("kube-system"), "no spoofed label: {s}");
}

// ---- 8. request smuggling ----

#[tokio::test]
async fn smuggling_attempts_never_deliver_a_second_request() {
    let app = App::echo("server-app").await;
    let pair = Pair::start(&app, |r| r).await;
    let out = pair.client.outbound();
    let h = &pair.host;
    let smuggled = format!("GET /smuggled HTTP/1.1\r\nhost: {h}\r\n\r\n");

    // Refused outright by the HTTP/1 parser: 400 and the connection closes.
    for (what, head) in [
        (
            "two different Content-Lengths",
            format!(
                "POST /a HTTP/1.1\r\nhost: {h}\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n"
            ),
        ),
        (
            "obs-fold continuation line",
            format!("GET /a HTTP/1.1\r\nhost: {h}\r\nx-folded: a\r\n b\r\n\r\n"),
        ),
        (
            "Transfer-Encoding not ending in chunked",
            format!(
                "POST /a HTTP/1.1\r\nhost: {h}\r\ntransfer-encoding: chunked, identity\r\n\r\n"
            ),
        ),
        (
            "whitespace before the colon",
            format!("POST /a HTTP/1.1\r\nhost: {h}\r\ntransfer-encoding : chunked\r\n\r\n"),
        ),
        (
            "Transfer-Encoding on HTTP/1.0",
            format!("POST /a HTTP/1.0\r\nhost: {h}\r\ntransfer-encoding: chunked\r\n\r\n"),
        ),
    ] {
        let mut c = RawConn::connect(out).await;
        c.send(format!("{head}0\r\n\r\n{smuggled}").as_bytes())
            .await;
        let resp = c.response().await;
        assert_eq!(resp.status, 400, "{what}: {resp:?}");
        assert_eq!(c.closed().await, b"", "{what}: closed after the 400");
    }
    assert_eq!(app.count(), 0, "nothing was forwarded");

    // Content-Length and chunked together: hyper lets Transfer-Encoding win (RFC 9112
    // §6.3), forwards the one request with its chunked body and closes the connection
    // after answering, so the bytes after the chunked body are never read as a request.
    // (Envoy refuses the request with 400 instead: see the ignored test below.)
    for order in [
        "content-length: 48\r\ntransfer-encoding: chunked",
        "transfer-encoding: chunked\r\ncontent-length: 48",
    ] {
        let mut c = RawConn::connect(out).await;
        let req =
            format!("POST /cl-te HTTP/1.1\r\nhost: {h}\r\n{order}\r\n\r\n0\r\n\r\n{smuggled}");
        c.send(req.as_bytes()).await;
        let resp = c.response().await;
        assert_eq!(resp.status, 200, "{order}: {resp:?}");
        assert_eq!(c.closed().await, b"", "{order}: closed after the response");
    }
    let paths: Vec<String> = app.requests().into_iter().map(|s| s.path).collect();
    assert_eq!(
        paths,
        ["/cl-te", "/cl-te"],
        "no smuggled request reached the app"
    );
    assert!(app.requests().iter().all(|s| s.body.is_empty()));
}

#[tokio::test]
#[ignore = "hyper's HTTP/1 parser accepts Content-Length + Transfer-Encoding: chunked (TE \
            wins, Content-Length is dropped from the headers before the pipeline sees them), \
            so http/edge.rs cannot refuse it and the proxy forwards the request; Envoy \
            answers 400 (http1.content_length_and_chunked_not_allowed)"]
async fn content_length_with_chunked_is_400() {
    let app = App::echo("server-app").await;
    let pair = Pair::start(&app, |r| r).await;
    let h = &pair.host;
    let req = format!(
        "POST / HTTP/1.1\r\nhost: {h}\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n"
    );
    let resp = exchange(pair.client.outbound(), req.as_bytes()).await;
    assert_eq!(resp.status, 400, "{resp:?}");
    assert_eq!(app.count(), 0);
}

// ---- 5. listener addresses ----

#[tokio::test]
async fn only_the_inbound_listener_follows_bind_ip() {
    let control = FakeControl::start().await;
    let app = App::echo("server-app").await;
    let alias: std::net::IpAddr = [127, 0, 0, 2].into();
    let mut opts = sidecar_options(&control, "server");
    opts.bind_ip = alias;
    opts.app = Some(app.addr.to_string());
    let server = Custom::start(opts).await;
    let loopback: std::net::IpAddr = [127, 0, 0, 1].into();
    assert_eq!(server.inbound().ip(), alias, "inbound follows --bind-ip");
    assert_eq!(
        server.outbound().ip(),
        loopback,
        "plaintext outbound stays on loopback"
    );
    assert_eq!(server.admin.ip(), loopback, "admin stays on loopback");
    assert_eq!(admin(server.admin, "/certs").await.status, 200);

    // Peers reach it on the alias, over mTLS.
    control
        .push_acked("server", &server.sidecar_config().build())
        .await;
    assert_eq!(
        control.node("server").unwrap().inbound_addr,
        server.inbound().to_string(),
        "the control plane is told the inbound address"
    );
    let client = Proxy::sidecar("client").start(&control).await;
    let host = service_host("server", NAMESPACE);
    let c = cluster(&host, 80, vec![server.endpoint()]);
    let cfg = Config::sidecar(&client)
        .route(&host, route_to(&c.name))
        .cluster(c);
    control.push_acked("client", &cfg.build()).await;
    assert_eq!(get(client.outbound(), &host, "/").await.status, 200);
    assert_eq!(app.count(), 1);

    // Explicit addresses still move the outbound and admin listeners.
    let mut opts = sidecar_options(&control, "moved");
    opts.bind_ip = alias;
    opts.outbound_listen = Some("127.0.0.3:0".parse().unwrap());
    opts.admin_listen = Some("127.0.0.2:0".parse().unwrap());
    let moved = Custom::start(opts).await;
    assert_eq!(moved.inbound().ip(), alias);
    assert_eq!(moved.outbound().ip().to_string(), "127.0.0.3");
    assert_eq!(moved.admin.ip().to_string(), "127.0.0.2");
    assert_eq!(admin(moved.admin, "/certs").await.status, 200);
    let no_config = get(moved.outbound(), &host, "/").await;
    assert_eq!(no_config.status, 404, "{}", no_config.body);
    moved.stop().await;
    server.stop().await;
}

// ---- 6. connection limit ----

#[tokio::test]
async fn past_the_connection_limit_a_client_gets_a_clear_503_and_a_freed_slot_is_reused() {
    let control = FakeControl::start().await;
    let mut opts = sidecar_options(&control, "limited");
    opts.max_connections = 3;
    let p = Custom::start(opts).await;
    let mut teapot = prefix_route("teapot", "/");
    teapot.direct_response = Some(DirectResponse {
        status: 200,
        body: b"short and stout\n".to_vec(),
    });
    let cfg = p.sidecar_config().route("svc.local", teapot);
    control.push_acked("limited", &cfg.build()).await;
    let out = p.outbound();
    let keep_alive = b"GET / HTTP/1.1\r\nhost: svc.local\r\n\r\n";

    // Three keep-alive connections are admitted and stay open, idle.
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = RawConn::connect(out).await;
        c.send(keep_alive).await;
        assert_eq!(c.response().await.status, 200);
        held.push(c);
    }
    // The fourth is told why and closed, without sending anything.
    let mut fourth = RawConn::connect(out).await;
    let refused = fourth.response().await;
    assert_eq!(refused.status, 503, "{refused:?}");
    assert!(
        refused
            .body
            .contains("this proxy is at its limit of downstream connections"),
        "{refused:?}"
    );
    assert_eq!(refused.header("connection"), Some("close"));
    assert_eq!(fourth.closed().await, b"");
    // The admin port is not subject to the limit.
    assert_eq!(admin(p.admin, "/ready").await.status, 200);

    // Once one closes, a new connection is served (the slot frees when the proxy sees
    // the close, so a refusal in between is retried).
    drop(held.remove(0));
    let mut fresh = within("a freed connection slot", async {
        loop {
            let mut c = RawConn::connect(out).await;
            c.send(keep_alive).await;
            match c.read().await {
                Read::Resp(r) if r.status == 200 => return c,
                Read::Resp(r) if r.status == 503 => {}
                Read::Closed(_) => {}
                Read::Resp(r) => panic!("unexpected {r:?}"),
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    // Every admitted connection keeps being served.
    for c in held.iter_mut().chain(std::iter::once(&mut fresh)) {
        c.send(keep_alive).await;
        assert_eq!(c.response().await.status, 200);
    }
    drop(held);
    drop(fresh);
    p.stop().await;
}

// ---- 7. pooled app connections ----

#[tokio::test(start_paused = true)]
async fn pooled_connections_to_the_app_close_after_their_idle_timeout() {
    use support::conns::Counts;
    use tokio::time::Instant;
    use weft_proxy::upstream::app::APP_IDLE_TIMEOUT;

    let app = ConnApp::start().await;
    let control = FakeControl::start().await;
    let server = Proxy::sidecar("server").app(app.addr).start(&control).await;
    let client = Proxy::sidecar("client").start(&control).await;
    control
        .push_acked("server", &Config::sidecar(&server).build())
        .await;
    let host = service_host("server", NAMESPACE);
    let c = cluster(&host, 80, vec![endpoint(&server)]);
    let cfg = Config::sidecar(&client)
        .route(&host, route_to(&c.name))
        .cluster(c);
    control.push_acked("client", &cfg.build()).await;

    for _ in 0..2 {
        let resp = get(client.outbound(), &host, "/").await;
        assert_eq!((resp.status, resp.body.as_str()), (200, "ok"));
    }
    let idle_since = Instant::now();
    assert_eq!(
        app.counts(),
        Counts {
            opened: 1,
            closed: 0
        },
        "one pooled connection, reused"
    );
    tokio::time::advance(APP_IDLE_TIMEOUT - Duration::from_secs(1)).await;
    tokio::task::yield_now().await;
    assert_eq!(
        app.counts().open(),
        1,
        "still pooled before the idle timeout"
    );

    app.wait("the idle app connection to close", |c| c.closed == 1)
        .await;
    let idle = idle_since.elapsed();
    // hyper's pool checks every APP_IDLE_TIMEOUT for connections idle longer than that.
    assert!(
        idle > APP_IDLE_TIMEOUT && idle <= 2 * APP_IDLE_TIMEOUT,
        "closed after {idle:?} idle"
    );
    // The next request opens a new connection.
    assert_eq!(get(client.outbound(), &host, "/").await.status, 200);
    assert_eq!(app.counts().opened, 2);
}

// ---- 9. HTTP/2 abuse ----

/// A well-behaved h2c (prior knowledge) client connection; closed on drop.
struct H2c {
    sender: hyper::client::conn::http2::SendRequest<http_body_util::Full<bytes::Bytes>>,
    conn: tokio::task::JoinHandle<()>,
}

impl H2c {
    async fn connect(addr: SocketAddr) -> H2c {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tcp),
        )
        .await
        .expect("h2c handshake");
        let conn = tokio::spawn(async move {
            let _ = conn.await;
        });
        H2c { sender, conn }
    }

    /// `GET http://host/path`: the status.
    async fn get(&mut self, host: &str, path: &str) -> u16 {
        let req = http::Request::get(format!("http://{host}{path}"))
            .body(Default::default())
            .unwrap();
        let resp = within("an h2c request", self.sender.send_request(req))
            .await
            .expect("h2c request");
        resp.status().as_u16()
    }
}

impl Drop for H2c {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

#[tokio::test]
async fn h2_rapid_reset_gets_goaway_and_other_clients_are_served() {
    let app = App::echo("server-app").await;
    let pair = Pair::start(&app, |r| r).await;
    let out = pair.client.outbound();
    let mut normal = H2c::connect(out).await;
    assert_eq!(normal.get(&pair.host, "/before").await, 200);

    let mut c = RawH2::connect(out).await;
    let block = h2f::get_block(&pair.host, "/reset");
    let mut burst = Vec::new();
    for i in 0..1000u32 {
        let id = 2 * i + 1;
        burst.extend(h2f::frame(
            h2f::HEADERS,
            h2f::END_STREAM | h2f::END_HEADERS,
            id,
            &block,
        ));
        burst.extend(h2f::frame(
            h2f::RST_STREAM,
            0,
            id,
            &h2f::CANCEL.to_be_bytes(),
        ));
    }
    c.send(&burst).await;
    let (end, _) = c.until_end().await;
    // h2 allows 20 streams reset before they were accepted, then ends the connection.
    assert_eq!(
        end,
        h2f::End::GoAway {
            code: h2f::ENHANCE_YOUR_CALM,
            debug: "too_many_resets".into()
        }
    );
    // Streams reset before they were accepted never reach the pipeline (0 in practice).
    let forwarded = app.requests().iter().filter(|s| s.path == "/reset").count();
    assert!(
        forwarded < 100,
        "{forwarded} of the reset streams were forwarded"
    );
    assert_eq!(normal.get(&pair.host, "/after").await, 200);
    assert_eq!(pair.get("/h1").await.status, 200);
}

#[tokio::test]
async fn h2_continuation_flood_gets_goaway_and_other_clients_are_served() {
    let app = App::echo("server-app").await;
    let pair = Pair::start(&app, |r| r).await;
    let out = pair.client.outbound();
    let mut normal = H2c::connect(out).await;

    let mut c = RawH2::connect(out).await;
    // HEADERS without END_HEADERS, then CONTINUATIONs that never end the block.
    let mut burst = h2f::frame(h2f::HEADERS, 0, 1, &h2f::get_block(&pair.host, "/"));
    for _ in 0..10_000 {
        burst.extend(h2f::frame(
            h2f::CONTINUATION,
            0,
            1,
            &h2f::literal("x-flood", "a"),
        ));
    }
    c.send(&burst).await;
    let (end, _) = c.until_end().await;
    assert_eq!(
        end,
        h2f::End::GoAway {
            code: h2f::ENHANCE_YOUR_CALM,
            debug: "too_many_continuations".into()
        }
    );
    assert_eq!(app.count(), 0);
    assert_eq!(normal.get(&pair.host, "/after").await, 200);
    assert_eq!(pair.get("/h1").await.status, 200);
}

#[tokio::test]
async fn h2_ping_flood_is_answered_with_backpressure_and_other_clients_are_served() {
    // h2 answers every PING but holds at most one pong: it reads the next frame only once
    // that pong is written, so a flooder that does not read is throttled by TCP, and one
    // that does gets one ACK per PING. It does not end the connection (Envoy would, past
    // `max_outbound_control_frames` queued for a client that does not read).
    let app = App::echo("server-app").await;
    let pair = Pair::start(&app, |r| r).await;
    let out = pair.client.outbound();
    let mut normal = H2c::connect(out).await;

    let mut c = RawH2::connect(out).await;
    const ROUNDS: u64 = 20;
    const PER_ROUND: u64 = 1_000;
    for round in 0..ROUNDS {
        let mut burst = Vec::new();
        for i in 0..PER_ROUND {
            burst.extend(h2f::frame(
                h2f::PING,
                0,
                0,
                &(round * PER_ROUND + i).to_be_bytes(),
            ));
        }
        assert!(c.send(&burst).await, "the connection is still open");
        let mut acks = 0;
        within("the PING ACKs", async {
            while acks < PER_ROUND {
                let f = c.next().await.expect("the connection stays open");
                if f.kind == h2f::PING && f.flags & h2f::ACK != 0 {
                    assert_eq!(f.payload, (round * PER_ROUND + acks).to_be_bytes());
                    acks += 1;
                }
            }
        })
        .await;
        // Other clients are served meanwhile.
        if round % 5 == 0 {
            assert_eq!(normal.get(&pair.host, "/during").await, 200);
        }
    }
    // The flooding connection itself still serves a request.
    let block = h2f::get_block(&pair.host, "/after-flood");
    c.send(&h2f::frame(
        h2f::HEADERS,
        h2f::END_STREAM | h2f::END_HEADERS,
        1,
        &block,
    ))
    .await;
    within("a response on the flooding connection", async {
        loop {
            let f = c.next().await.expect("the connection stays open");
            if f.kind == h2f::HEADERS && f.stream == 1 {
                break;
            }
        }
    })
    .await;
    assert_eq!(app.last().path, "/after-flood");
    assert_eq!(pair.get("/h1").await.status, 200);
}

// ---- 10. slowloris ----

/// The start of a request head that never ends.
const PARTIAL_HEAD: &[u8] = b"GET / HTTP/1.1\r\nhost: server.test.svc.cluster.local\r\nx-slow: ";

#[tokio::test]
async fn two_thousand_stalled_request_heads_do_not_starve_a_normal_client() {
    use tokio::io::AsyncWriteExt;
    let app = App::echo("server-app").await;
    let pair = Pair::start(&app, |r| r).await;
    let out = pair.client.outbound();
    let mut stalled = Vec::with_capacity(2_000);
    within("2000 stalled connections", async {
        for _ in 0..2_000 {
            let mut s = tokio::net::TcpStream::connect(out).await.expect("connect");
            s.write_all(PARTIAL_HEAD)
                .await
                .expect("write a partial head");
            stalled.push(s);
        }
    })
    .await;
    let start = std::time::Instant::now();
    let resp = pair.get("/normal").await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "a normal request took {:?} next to 2000 stalled ones",
        start.elapsed()
    );
    assert_eq!(app.count(), 1);
    // The proxy is alive: its admin answers and another request is served.
    assert_eq!(admin(pair.client.admin, "/ready").await.status, 200);
    assert_eq!(pair.get("/again").await.status, 200);
    drop(stalled);
}

#[tokio::test(start_paused = true)]
async fn stalled_request_heads_are_closed_by_the_header_read_timeout() {
    use tokio::time::Instant;
    use weft_proxy::http::server::HEADER_READ_TIMEOUT;
    let app = App::echo("server-app").await;
    let pair = Pair::start(&app, |r| r).await;
    let out = pair.client.outbound();
    let start = Instant::now();
    let mut stalled = Vec::new();
    for _ in 0..50 {
        let mut c = RawConn::connect(out).await;
        c.send(PARTIAL_HEAD).await;
        stalled.push(c);
    }
    // A trickler sending one more byte every 10 s does not extend its deadline.
    let trickle = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(out).await.expect("connect");
        s.write_all(PARTIAL_HEAD).await.expect("write");
        let mut buf = [0u8; 256];
        loop {
            tokio::select! {
                r = s.read(&mut buf) => return (r.map_err(|e| e.kind()), start.elapsed()),
                _ = tokio::time::sleep(Duration::from_secs(10)) => {
                    let _ = s.write_all(b"a").await;
                }
            }
        }
    });
    // A normal client is served meanwhile.
    assert_eq!(pair.get("/normal").await.status, 200);

    for c in &mut stalled {
        let sent = c.closed().await;
        assert_eq!(sent, b"", "closed without a response");
    }
    assert_eq!(
        start.elapsed(),
        HEADER_READ_TIMEOUT,
        "every stalled head is closed at the header-read timeout"
    );
    let (read, at) = within("the trickler to be closed", trickle).await.unwrap();
    assert_eq!(read, Ok(0), "closed without a response");
    assert_eq!(
        at, HEADER_READ_TIMEOUT,
        "trickling did not extend the deadline"
    );
    assert_eq!(pair.get("/after").await.status, 200);
    assert_eq!(app.count(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_connection_that_sends_nothing_is_closed_too() {
    use weft_proxy::http::server::HEADER_READ_TIMEOUT;
    let app = App::echo("server-app").await;
    let pair = Pair::start(&app, |r| r).await;
    let out = pair.client.outbound();
    let mut silent = RawConn::connect(out).await;
    let mut preface = RawConn::connect(out).await;
    preface.send(b"PRI * HTTP/2.0\r\n").await;
    for (what, c) in [("silent", &mut silent), ("partial preface", &mut preface)] {
        // Well past the header-read timeout (and under the harness watchdog).
        let wait = HEADER_READ_TIMEOUT + Duration::from_secs(20);
        let closed = tokio::time::timeout(wait, c.read()).await;
        assert!(
            matches!(closed, Ok(Read::Closed(_))),
            "the {what} connection is still open after {wait:?}"
        );
    }
}

/// The pending-connection queue (`ss`'s Send-Q of a listening socket) of a proxy's
/// listeners, read with iproute2's `ss`.
fn listen_backlog(addr: SocketAddr) -> u32 {
    let out = std::process::Command::new("ss")
        .args(["-ltnH", &format!("sport = :{}", addr.port())])
        .output()
        .expect("iproute2's ss");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let line = text
        .lines()
        .find(|l| l.contains(&format!(":{}", addr.port())))
        .unwrap_or_else(|| panic!("no listening socket on {addr} in:\n{text}"));
    line.split_whitespace()
        .nth(2)
        .and_then(|q| q.parse().ok())
        .unwrap_or_else(|| panic!("no Send-Q in {line:?}"))
}

/// Every listener queues as many pending connections as the kernel allows
/// (`net.core.somaxconn`, Envoy's default), not Rust's 128: with 128, a few hundred clients
/// connecting at once to a loaded gateway got resets from failed SYN cookies.
#[tokio::test]
async fn listeners_queue_somaxconn_pending_connections() {
    let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .expect("somaxconn")
        .trim()
        .parse()
        .expect("a number");
    let want = somaxconn.min(weft_proxy::tcp::LISTEN_BACKLOG);
    let control = FakeControl::start().await;
    let sidecar = Proxy::sidecar("client").start(&control).await;
    control
        .push_acked("client", &Config::sidecar(&sidecar).build())
        .await;
    let mut gw = Proxy::gateway("ingress").start(&control).await;
    let host = service_host("client", NAMESPACE);
    let c = cluster(&host, 80, vec![endpoint(&sidecar)]);
    let cfg = Config::gateway()
        .gateway_route(80, "a.example.com", route_to(&c.name))
        .cluster(c)
        .build();
    control.push_acked("ingress", &cfg).await;
    let port80 = gw.listener("gateway_80").await;
    for (what, addr) in [
        ("outbound", sidecar.outbound()),
        ("admin", sidecar.admin),
        ("gateway port", port80),
    ] {
        assert_eq!(listen_backlog(addr), want, "{what} listener at {addr}");
    }
    assert!(
        want > 128,
        "this machine's somaxconn ({somaxconn}) is no test of it"
    );
    gw.stop().await;
}
