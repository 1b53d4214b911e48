//! Certificate lifecycle in running proxies: renewal at half-life under steady load with
//! no failed request, the rotated certificates used for new mTLS handshakes, expiry and
//! rotations exposed as metrics. (Real time: certificate validity is wall-clock time.)

mod support;

use std::time::Duration;
use support::conns::Relay;
use support::*;

fn rotations(stats: &str) -> f64 {
    sample_sum(stats, "weft_certificate_rotations_total", &[])
}

#[tokio::test]
async fn ten_rotations_under_load_fail_no_request() {
    // 2 s certificates: each proxy renews about every second.
    let control = FakeControl::builder()
        .cert_ttl(Duration::from_secs(2))
        .start()
        .await;
    let app = App::echo("server-app").await;
    let server = Proxy::sidecar("server").app(app.addr).start(&control).await;
    let client = Proxy::sidecar("client").start(&control).await;
    control
        .push_acked("server", &Config::sidecar(&server).build())
        .await;
    let host = service_host("server", NAMESPACE);
    let c = cluster(&host, 80, vec![endpoint(&server)]);
    let cfg = Config::sidecar(&client)
        .route(&host, route_to(&c.name))
        .cluster(c.clone());
    control.push_acked("client", &cfg.clone().build()).await;

    let (mut sent, mut failed) = (0, 0);
    let started = std::time::Instant::now();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "10 rotations did not happen within 60 s"
        );
        let resp = get(client.outbound(), &host, "/steady").await;
        sent += 1;
        if resp.status != 200 {
            failed += 1;
        }
        if sent % 50 == 0 {
            let (s, c) = (stats(server.admin).await, stats(client.admin).await);
            if rotations(&s) >= 10.0 && rotations(&c) >= 10.0 {
                assert!(
                    s.contains("weft_certificate_expiration_timestamp_seconds"),
                    "{s}"
                );
                assert_eq!(
                    sample_sum(&s, "weft_certificate_renewal_failures_total", &[]),
                    0.0
                );
                break;
            }
        }
    }
    assert_eq!(
        failed, 0,
        "{failed} of {sent} requests failed across the rotations"
    );

    // The first certificates have long expired: a new mTLS handshake (through a relay, a
    // new pool key) works only if both sides present their renewed certificates.
    let relay = Relay::start(server.inbound()).await;
    let mut moved = endpoint(&server);
    moved.address = relay.addr.to_string();
    let cfg = Config::sidecar(&client)
        .route(&host, route_to(&c.name))
        .cluster(cluster(&host, 80, vec![moved]));
    control.push_acked("client", &cfg.build()).await;
    let resp = get(client.outbound(), &host, "/fresh-handshake").await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(relay.accepted(), 1);
}

#[tokio::test]
async fn cut_off_from_the_control_plane_a_proxy_serves_on_and_counts_failed_renewals() {
    let control = FakeControl::builder()
        .cert_ttl(Duration::from_secs(4))
        .start()
        .await;
    let app = App::echo("server-app").await;
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
    assert_eq!(get(client.outbound(), &host, "/before").await.status, 200);
    let expires = sample_sum(
        &stats(client.admin).await,
        "weft_certificate_expiration_timestamp_seconds",
        &[],
    );
    assert!(expires > 0.0);
    drop(control);
    // Renewal is due at half-life (2 s); it fails, is counted, and is retried, while the
    // proxy keeps serving with the certificate it has.
    let started = std::time::Instant::now();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no failed renewal was counted within 30 s"
        );
        assert_eq!(get(client.outbound(), &host, "/during").await.status, 200);
        let s = stats(client.admin).await;
        if sample_sum(&s, "weft_certificate_renewal_failures_total", &[]) >= 1.0 {
            assert_eq!(rotations(&s), 0.0);
            break;
        }
        // Polling pace, not synchronization: the loop ends on the counter.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
