//! Istio's standard metrics and Envoy's cluster statistics, through real sockets: the
//! full label set on both reporters (app, canonical service/revision, cluster from each
//! side's workload meta and the caller's peer metadata), request/response sizes in Envoy's
//! default buckets, gRPC message counts and status, circuit-breaker overflow and the
//! `rq_open` gauge, retries, outlier ejections and membership, the self metrics, and the
//! merged (proxy + app) page with an app that fails.

mod support;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Request};
use http_body_util::{BodyExt, Full};
use hyper::body::Frame;
use std::time::Duration;
use support::custom::{sidecar_options, Custom};
use support::stream::{grpc_frame, read, AppBody, Client, StreamApp};
use support::*;
use weft_model::WorkloadMeta;

fn meta(app: &str, version: &str, service: &str, revision: &str) -> WorkloadMeta {
    WorkloadMeta {
        app: app.into(),
        version: version.into(),
        canonical_service: service.into(),
        canonical_revision: revision.into(),
        cluster: "Kubernetes".into(),
    }
}

/// A client and a server sidecar whose configs carry workload meta, as `compile` sets it.
async fn labelled_pair(
    app: std::net::SocketAddr,
    http2: bool,
) -> (FakeControl, Proxy, Proxy, String) {
    let control = FakeControl::start().await;
    let server = Proxy::sidecar("server").app(app).start(&control).await;
    let client = Proxy::sidecar("client").start(&control).await;
    let server_meta = meta("server-app", "v2", "server-svc", "r2");
    let mut s = Config::sidecar(&server).build();
    s.workload_meta = server_meta.clone();
    if let Some(i) = s.inbound.as_mut() {
        i.app_http2 = http2;
        i.version = Some("v2".into());
    }
    control.push_acked("server", &s).await;
    let host = service_host("server", NAMESPACE);
    let mut e = endpoint(&server);
    e.meta = server_meta;
    e.version = Some("v2".into());
    let c = cluster(&host, 80, vec![e]);
    let mut cfg = Config::sidecar(&client)
        .route(&host, route_to(&c.name))
        .cluster(c)
        .build();
    cfg.workload_meta = meta("client-app", "v1", "client-svc", "r1");
    control.push_acked("client", &cfg).await;
    (control, client, server, host)
}

#[tokio::test]
async fn both_reporters_carry_istios_labels_and_sizes_in_envoys_buckets() {
    let app = App::start("server", |_, _| Reply::status(200).body(vec![b'x'; 20_000])).await;
    let (_control, client, server, host) = labelled_pair(app.addr, false).await;
    let req = Request::post(format!("http://{host}/upload"))
        .header(header::HOST, host.as_str())
        .body(Full::new(Bytes::from(vec![b'y'; 10_000])))
        .unwrap();
    assert_eq!(send(client.outbound(), req).await.status, 200);
    let common = [
        ("source_workload", "client"),
        ("source_app", "client-app"),
        ("source_canonical_service", "client-svc"),
        ("source_canonical_revision", "r1"),
        ("source_version", "v1"),
        ("source_cluster", "Kubernetes"),
        ("destination_workload", "server"),
        ("destination_app", "server-app"),
        ("destination_version", "v2"),
        ("destination_canonical_service", "server-svc"),
        ("destination_canonical_revision", "r2"),
        ("destination_cluster", "Kubernetes"),
        ("destination_service_name", "server"),
        ("request_protocol", "http"),
        ("response_code", "200"),
        ("grpc_response_status", ""),
    ];
    for (who, admin, reporter) in [
        ("client", client.admin, "source"),
        ("server", server.admin, "destination"),
    ] {
        let labels = [&common[..], &[("reporter", reporter)]].concat();
        let s = within(
            &format!("the {who} to count the request"),
            requests_total(admin, &labels, 1.0),
        )
        .await;
        let bucket = |m: &str, le: &str| {
            let l = [&labels[..], &[("le", le)]].concat();
            sample_sum(&s, &format!("{m}_bucket"), &l)
        };
        // 10,000 body bytes plus headers: above the 10000 bucket, inside 30000.
        assert_eq!(bucket("istio_request_bytes", "10000"), 0.0, "{who}:\n{s}");
        assert_eq!(bucket("istio_request_bytes", "30000"), 1.0, "{who}:\n{s}");
        assert_eq!(bucket("istio_response_bytes", "10000"), 0.0, "{who}:\n{s}");
        assert_eq!(bucket("istio_response_bytes", "30000"), 1.0, "{who}:\n{s}");
        let req = sample_sum(&s, "istio_request_bytes_sum", &labels);
        let resp = sample_sum(&s, "istio_response_bytes_sum", &labels);
        assert!(
            (10_000.0..12_000.0).contains(&req),
            "{who}: request bytes {req}"
        );
        assert!(
            (20_000.0..22_000.0).contains(&resp),
            "{who}: response bytes {resp}"
        );
        assert!(
            bucket("istio_request_duration_milliseconds", "3600000") == 1.0,
            "Envoy's last bucket, {who}"
        );
        assert_eq!(
            sample_sum(&s, "istio_request_messages_total", &[]),
            0.0,
            "no gRPC, no message series"
        );
    }
}

/// An h2c gRPC app: reads the whole request stream, answers three messages and
/// `grpc-status: 7`.
async fn grpc_app() -> StreamApp {
    StreamApp::start(|req: Request<hyper::body::Incoming>| async move {
        let _ = req.into_body().collect().await;
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("7"));
        let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = vec![
            Ok(Frame::data(grpc_frame(b"one"))),
            Ok(Frame::data(
                [grpc_frame(b"two"), grpc_frame(b"")].concat().into(),
            )),
            Ok(Frame::trailers(trailers)),
        ];
        let body: AppBody =
            http_body_util::StreamBody::new(futures_util::stream::iter(frames)).boxed();
        http::Response::builder()
            .header(header::CONTENT_TYPE, "application/grpc")
            .body(body)
            .unwrap()
    })
    .await
}

#[tokio::test]
async fn grpc_messages_and_status_are_counted_on_both_sides() {
    let app = grpc_app().await;
    let (_control, client, server, host) = labelled_pair(app.addr, true).await;
    let mut c = Client::<Full<Bytes>>::h2(client.outbound()).await;
    let body = [grpc_frame(b"hello"), grpc_frame(&[0u8; 70_000])].concat();
    let req = Request::post(format!("http://{host}/game.Match/Find"))
        .header(header::CONTENT_TYPE, "application/grpc")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let resp = read(
        within("the gRPC call", c.send(req))
            .await
            .expect("response"),
    )
    .await
    .unwrap();
    assert_eq!(resp.trailers.as_ref().unwrap()["grpc-status"], "7");
    for (who, admin, reporter) in [
        ("client", client.admin, "source"),
        ("server", server.admin, "destination"),
    ] {
        let labels = [
            ("reporter", reporter),
            ("request_protocol", "grpc"),
            ("grpc_response_status", "7"),
            ("response_code", "200"),
        ];
        let s = within(
            &format!("the {who} to count the call"),
            requests_total(admin, &labels, 1.0),
        )
        .await;
        assert_eq!(
            sample_sum(&s, "istio_request_messages_total", &labels),
            2.0,
            "{who}:\n{s}"
        );
        assert_eq!(
            sample_sum(&s, "istio_response_messages_total", &labels),
            3.0,
            "{who}:\n{s}"
        );
    }
}

fn cluster_stat(s: &str, name: &str, cluster: &str) -> f64 {
    sample_sum(
        s,
        &format!("envoy_cluster_{name}"),
        &[("cluster_name", cluster)],
    )
}

#[tokio::test]
async fn request_limit_overflow_is_counted_and_the_breaker_shows_open() {
    let app = App::delayed("slow", Duration::from_secs(3600)).await;
    let mut pair = Pair::start(&app, |r| r).await;
    let name = weft_model::cluster_name(80, None, &pair.host);
    pair.config.0.clusters.get_mut(&name).unwrap().max_requests = Some(1);
    pair.control
        .push_acked("client", &pair.config.clone().build())
        .await;
    let (outbound, host) = (pair.client.outbound(), pair.host.clone());
    let held = tokio::spawn(async move { get(outbound, &host, "/held").await });
    within("the first request to reach the app", app.wait_for_count(1)).await;
    let s = stats(pair.client.admin).await;
    assert_eq!(
        cluster_stat(&s, "circuit_breakers_default_rq_open", &name),
        1.0,
        "{s}"
    );
    assert_eq!(cluster_stat(&s, "upstream_rq_active", &name), 1.0, "{s}");
    assert_eq!(
        cluster_stat(&s, "upstream_cx_active", &name),
        1.0,
        "one pooled mTLS connection:\n{s}"
    );
    let refused = pair.get("/second").await;
    assert_eq!(refused.status, 503);
    let s = requests_total(pair.client.admin, &[("response_flags", "UO")], 1.0).await;
    assert_eq!(
        cluster_stat(&s, "upstream_rq_pending_overflow", &name),
        1.0,
        "{s}"
    );
    assert_eq!(
        cluster_stat(&s, "upstream_rq_total", &name),
        1.0,
        "the refused one was never sent:\n{s}"
    );
    held.abort();
}

#[tokio::test]
async fn retries_and_exhausted_retries_are_counted_per_cluster() {
    let app = App::fail_first("flaky", 1, 503).await;
    let pair = Pair::start(&app, |mut r| {
        r.retry = retries(2, &["5xx"], 1);
        r
    })
    .await;
    let name = weft_model::cluster_name(80, None, &pair.host);
    assert_eq!(
        pair.get("/").await.status,
        200,
        "the retry hides the first 503"
    );
    let s = requests_total(pair.client.admin, &[("response_code", "200")], 1.0).await;
    assert_eq!(cluster_stat(&s, "upstream_rq_total", &name), 2.0, "{s}");
    assert_eq!(cluster_stat(&s, "upstream_rq_retry", &name), 1.0, "{s}");
    assert_eq!(
        cluster_stat(&s, "upstream_rq_retry_limit_exceeded", &name),
        0.0,
        "{s}"
    );
    app.set_script(|_, _| Reply::status(503));
    assert_eq!(pair.get("/").await.status, 503);
    let s = requests_total(pair.client.admin, &[("response_flags", "URX")], 1.0).await;
    assert_eq!(cluster_stat(&s, "upstream_rq_total", &name), 5.0, "{s}");
    assert_eq!(cluster_stat(&s, "upstream_rq_retry", &name), 3.0, "{s}");
    assert_eq!(
        cluster_stat(&s, "upstream_rq_retry_limit_exceeded", &name),
        1.0,
        "{s}"
    );
}

#[tokio::test]
async fn an_ejection_shows_in_the_counters_and_membership() {
    let app = App::status("bad", 500).await;
    let mut pair = Pair::start(&app, |r| r).await;
    let name = weft_model::cluster_name(80, None, &pair.host);
    pair.config.0.clusters.get_mut(&name).unwrap().outlier = Some(outlier(1, 30_000));
    pair.control
        .push_acked("client", &pair.config.clone().build())
        .await;
    let s = stats(pair.client.admin).await;
    assert_eq!(cluster_stat(&s, "membership_healthy", &name), 1.0, "{s}");
    assert_eq!(pair.get("/").await.status, 500);
    let s = requests_total(pair.client.admin, &[("response_code", "500")], 1.0).await;
    assert_eq!(cluster_stat(&s, "membership_total", &name), 1.0, "{s}");
    assert_eq!(cluster_stat(&s, "membership_healthy", &name), 0.0, "{s}");
    assert_eq!(
        cluster_stat(&s, "outlier_detection_ejections_active", &name),
        1.0,
        "{s}"
    );
    assert_eq!(
        cluster_stat(&s, "outlier_detection_ejections_enforced_total", &name),
        1.0,
        "{s}"
    );
    assert_eq!(
        cluster_stat(&s, "outlier_detection_ejections_total", &name),
        1.0,
        "{s}"
    );
    assert_eq!(
        pair.get("/").await.status,
        503,
        "no healthy upstream while ejected"
    );
}

#[tokio::test]
async fn self_metrics_report_memory_connections_config_and_build() {
    let app = App::echo("app").await;
    let pair = Pair::start(&app, |r| r).await;
    let s = stats(pair.client.admin).await;
    assert!(
        sample_sum(&s, "process_resident_memory_bytes", &[]) > 1e6,
        "{s}"
    );
    assert!(sample_sum(&s, "weft_config_version", &[]) >= 1.0, "{s}");
    let pushed = sample_sum(&s, "weft_config_last_push_timestamp_seconds", &[]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (now - pushed).abs() < 600.0,
        "last push {pushed}, now {now}"
    );
    assert_eq!(
        sample_sum(&s, "istio_build", &[("component", "proxy")]),
        1.0,
        "{s}"
    );
    assert!(sample_sum(&s, "envoy_server_days_until_first_cert_expiring", &[]) >= 0.0);
    // One client connection held open shows as an open downstream connection.
    let mut held = support::stream::Client::<Full<Bytes>>::h1(pair.client.outbound()).await;
    let req = Request::get(format!("http://{}/", pair.host))
        .header(header::HOST, pair.host.as_str())
        .body(Full::new(Bytes::new()))
        .unwrap();
    let _ = read(held.send(req).await.unwrap()).await.unwrap();
    let s = stats(pair.client.admin).await;
    assert!(
        sample_sum(&s, "envoy_server_total_connections", &[]) >= 1.0,
        "{s}"
    );
    let resp = admin(pair.client.admin, "/stats/prometheus").await;
    assert_eq!(
        resp.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(
        s.contains("# TYPE istio_requests_total counter") && !s.contains("# EOF"),
        "{s}"
    );
}

#[tokio::test]
async fn the_merged_page_has_proxy_and_app_metrics_and_outlives_a_failing_app() {
    let app = App::start("metrics-app", |_, seen| match seen.path.as_str() {
        "/app-metrics" => Reply::status(200).body("# TYPE app_up gauge\napp_up 1\n# EOF\n"),
        _ => Reply::status(404),
    })
    .await;
    let control = FakeControl::start().await;
    let mut opts = sidecar_options(&control, "merged");
    opts.app = Some(app.addr.to_string());
    opts.merged_metrics = Some(weft_proxy::merged::MergedMetrics {
        listen: "127.0.0.1:0".parse().unwrap(),
        app: Some(weft_proxy::merged::AppScrape {
            port: None,
            path: "/app-metrics".into(),
        }),
    });
    let proxy = Custom::start(opts).await;
    control
        .push_acked("merged", &proxy.sidecar_config().build())
        .await;
    let merged = proxy
        .merged_metrics
        .expect("the merged page's address in the Ready event");
    let page = admin(merged, "/stats/prometheus").await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("\napp_up 1\n"),
        "the app's metrics:\n{}",
        page.body
    );
    assert!(
        page.body
            .contains("# TYPE envoy_server_days_until_first_cert_expiring gauge"),
        "the proxy's:\n{}",
        page.body
    );
    assert!(
        !page.body.contains("# EOF"),
        "the app's OpenMetrics end marker is dropped"
    );
    assert!(
        page.body
            .contains("istio_agent_scrape_failures_total{type=\"application\"} 0"),
        "{}",
        page.body
    );
    app.set_script(|_, _| Reply::status(500));
    let page = admin(merged, "/stats/prometheus").await;
    assert_eq!(
        page.status, 200,
        "the proxy's metrics are served though the app's failed"
    );
    assert!(!page.body.contains("app_up"), "{}", page.body);
    assert!(
        page.body
            .contains("istio_agent_scrape_failures_total{type=\"application\"} 1"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("envoy_server_total_connections"),
        "{}",
        page.body
    );
    drop(app);
    let page = admin(merged, "/stats/prometheus").await;
    assert_eq!(page.status, 200, "an app that is gone fails its part only");
    assert!(
        page.body
            .contains("istio_agent_scrape_failures_total{type=\"application\"} 2"),
        "{}",
        page.body
    );
    proxy.stop().await;
}

#[tokio::test]
async fn an_abandoned_response_records_the_bytes_that_did_pass() {
    // 5,000 body bytes, then the body never ends: the client reads them and goes away.
    let app = App::start("stalls", |_, _| {
        Reply::status(200).body(vec![b'z'; 5_000]).stall()
    })
    .await;
    let pair = Pair::start(&app, |r| r).await;
    let mut c = Client::<Full<Bytes>>::h1(pair.client.outbound()).await;
    let req = Request::get(format!("http://{}/stall", pair.host))
        .header(header::HOST, pair.host.as_str())
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = within("the stalled response's head", c.send(req))
        .await
        .unwrap();
    let mut body = resp.into_body();
    let mut got = 0;
    while got < 5_000 {
        let f = within("the body so far", body.frame())
            .await
            .unwrap()
            .unwrap();
        got += f.into_data().map_or(0, |d| d.len());
    }
    drop(body);
    drop(c);
    let labels = [
        ("reporter", "source"),
        ("response_code", "200"),
        ("response_flags", "DC"),
    ];
    let s = within(
        "the client sidecar to count it",
        requests_total(pair.client.admin, &labels, 1.0),
    )
    .await;
    let bytes = sample_sum(&s, "istio_response_bytes_sum", &labels);
    assert!(
        (5_000.0..7_000.0).contains(&bytes),
        "response bytes of a DC request: {bytes}\n{s}"
    );
    assert_eq!(
        sample_sum(
            &s,
            "istio_response_bytes_bucket",
            &[&labels[..], &[("le", "5000")]].concat()
        ),
        0.0,
        "5,000 body bytes plus headers"
    );
}
