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
