//! Telemetry the proxies record when a request ends abnormally: a client that goes away
//! before the response is counted by both sidecars with Envoy's `DC` flag and
//! `response_code="0"`, so error rates do not undercount abandoned requests.

mod support;

use std::time::Duration;
use support::*;
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn a_request_the_client_abandons_is_counted_dc_with_code_0_by_both_sidecars() {
    // The app never answers within the test: the client gives up first.
    let app = App::delayed("slow", Duration::from_secs(3600)).await;
    let pair = Pair::start(&app, |r| r).await;
    let mut tcp = tokio::net::TcpStream::connect(pair.client.outbound())
        .await
        .expect("connect to the outbound listener");
    let head = format!("GET /abandoned HTTP/1.1\r\nhost: {}\r\n\r\n", pair.host);
    tcp.write_all(head.as_bytes()).await.expect("send");
    within("the app to see the request", async {
        while app.count() == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    drop(tcp);
    let dc = [("response_code", "0"), ("response_flags", "DC")];
    let client = within(
        "the client sidecar to count the abandoned request",
        requests_total(
            pair.client.admin,
            &[&dc[..], &[("reporter", "source")]].concat(),
            1.0,
        ),
    )
    .await;
    assert!(
        client.contains(r#"destination_service_name="server""#),
        "the abandoned request keeps its destination labels:\n{client}"
    );
    within(
        "the server sidecar to count the abandoned request",
        requests_total(
            pair.server.admin,
            &[
                &dc[..],
                &[("reporter", "destination"), ("source_workload", "client")],
            ]
            .concat(),
            1.0,
        ),
    )
    .await;
}

/// Telemetry metric overrides as a push carries them: on the server side a label removed,
/// two added from CEL expressions (a header's value, `unknown` when it is absent), one
/// metric disabled; on the client side every Istio metric off.
#[tokio::test]
async fn metric_overrides_remove_add_and_disable_labels_and_metrics() {
    use weft_model::telemetry::metrics::{MetricOverride, MetricsSpec, TagOverride};
    let app = App::echo("server").await;
    let pair = Pair::start(&app, |r| r).await;
    let tag = |name: &str, value: Option<&str>| TagOverride {
        name: name.into(),
        value: value.map(str::to_string),
    };
    let mut server = Config::sidecar(&pair.server).build();
    server.telemetry.server.metrics = MetricsSpec {
        disabled: false,
        overrides: vec![
            MetricOverride {
                metric: "REQUEST_COUNT".into(),
                disabled: false,
                tags: vec![
                    tag("request_method", Some("request.method")),
                    tag("source_principal", None),
                    tag("tier", Some("request.headers['x-tier']")),
                ],
            },
            MetricOverride {
                metric: "REQUEST_DURATION".into(),
                disabled: true,
                tags: vec![],
            },
        ],
    };
    pair.control.push_acked("server", &server).await;
    let mut client = pair.config.clone().build();
    client.telemetry.client.metrics.disabled = true;
    pair.control.push_acked("client", &client).await;

    for tier in [Some("gold"), Some("gold"), None] {
        let mut req = http::Request::get("/items").header(http::header::HOST, &pair.host);
        if let Some(t) = tier {
            req = req.header("x-tier", t);
        }
        let resp = send(
            pair.client.outbound(),
            req.body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap(),
        )
        .await;
        assert_eq!(resp.status, 200);
    }
    let gold = [
        ("reporter", "destination"),
        ("request_method", "GET"),
        ("tier", "gold"),
    ];
    let stats = within(
        "the server to count the gold requests",
        requests_total(pair.server.admin, &gold, 2.0),
    )
    .await;
    let unknown = [("reporter", "destination"), ("tier", "unknown")];
    let stats = if sample_sum(&stats, "istio_requests_total", &unknown) < 1.0 {
        within(
            "the server to count the untiered request",
            requests_total(pair.server.admin, &unknown, 1.0),
        )
        .await
    } else {
        stats
    };
    for line in stats
        .lines()
        .filter(|l| l.starts_with("istio_requests_total{"))
    {
        assert!(
            !line.contains("source_principal="),
            "removed label still exported: {line}"
        );
        assert!(
            line.contains(r#"response_code="200""#),
            "standard labels kept: {line}"
        );
    }
    assert_eq!(
        sample_sum(
            &stats,
            "istio_request_duration_milliseconds_count",
            &[("reporter", "destination")]
        ),
        0.0,
        "REQUEST_DURATION is disabled on the server side:\n{stats}"
    );
    assert_eq!(
        sample_sum(
            &stats,
            "istio_request_bytes_count",
            &[("reporter", "destination"), ("source_workload", "client")]
        ),
        3.0,
        "metrics without an override keep Istio's labels:\n{stats}"
    );
    let client = support::stats(pair.client.admin).await;
    assert!(
        !client.lines().any(|l| l.starts_with("istio_request")),
        "the client side's Istio metrics are off:\n{client}"
    );
    // New overrides: requests after the push record under them, not under cached series
    // of the old ones.
    server.telemetry.server.metrics.overrides[0].tags =
        vec![tag("plan", Some("request.headers['x-tier']"))];
    pair.control.push_acked("server", &server).await;
    let req = http::Request::get("/items")
        .header(http::header::HOST, &pair.host)
        .header("x-tier", "silver")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    assert_eq!(send(pair.client.outbound(), req).await.status, 200);
    let plan = [("reporter", "destination"), ("plan", "silver")];
    let stats = within(
        "the server to count under the new overrides",
        requests_total(pair.server.admin, &plan, 1.0),
    )
    .await;
    assert_eq!(
        sample_sum(&stats, "istio_requests_total", &[("tier", "silver")]),
        0.0,
        "the old overrides are gone:\n{stats}"
    );
}
