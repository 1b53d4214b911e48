//! Demo workload tests driven by the real `curl` binary (HTTP/1.1 and h2c).

mod common;

use std::time::Duration;

use common::start;
use serde_json::Value;
use tokio::process::Command;
use weft_demo::{bind_demo_app, run_demo_app, DemoAppConfig};

const XFCC: &str = "By=spiffe://cluster.local/ns/necpgame/sa/inventory;URI=spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway";

struct CurlResult {
    status: u16,
    http_version: String,
    headers: String,
    body: String,
}

/// Runs `/usr/bin/curl` against `url` with extra args; returns status, HTTP
/// version, raw response headers and body.
async fn curl(url: &str, extra: &[&str]) -> CurlResult {
    let out = Command::new("/usr/bin/curl")
        .args(["-sS", "--max-time", "10", "-D", "-", "-o", "-"])
        .args(["-w", "\n%{http_code} %{http_version}"])
        .args(extra)
        .arg(url)
        .output()
        .await
        .expect("run curl");
    assert!(out.status.success(), "curl failed: {out:?}");
    let text = String::from_utf8(out.stdout).expect("utf8");
    let (rest, trailer) = text.rsplit_once('\n').expect("trailer line");
    let (code, version) = trailer.split_once(' ').expect("code and version");
    let (headers, body) = rest.split_once("\r\n\r\n").expect("header/body split");
    CurlResult {
        status: code.parse().expect("status code"),
        http_version: version.to_string(),
        headers: headers.to_ascii_lowercase(),
        body: body.to_string(),
    }
}

fn inventory_v2() -> DemoAppConfig {
    DemoAppConfig {
        identity: Some("spiffe://cluster.local/ns/necpgame/sa/inventory".into()),
        ..DemoAppConfig::new("inventory", "v2")
    }
}

#[tokio::test]
async fn echo_http1_with_xfcc() {
    let app = start(inventory_v2()).await;
    let url = format!("http://{}/api/x?y=1", app.addr);
    let r = curl(
        &url,
        &[
            "-H",
            &format!("x-forwarded-client-cert: {XFCC}"),
            "-H",
            "x-player-tier: premium",
            "-H",
            "Host: inventory.necpgame.svc.cluster.local",
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.http_version, "1.1");
    assert!(
        r.headers.contains("content-type: application/json"),
        "{}",
        r.headers
    );
    assert!(
        r.headers.contains("x-weft-service: inventory"),
        "{}",
        r.headers
    );
    assert!(r.headers.contains("x-weft-version: v2"), "{}", r.headers);
    let v: Value = serde_json::from_str(&r.body).expect("json body");
    assert_eq!(v["service"], "inventory");
    assert_eq!(v["version"], "v2");
    assert_eq!(
        v["identity"],
        "spiffe://cluster.local/ns/necpgame/sa/inventory"
    );
    assert_eq!(v["method"], "GET");
    assert_eq!(v["path"], "/api/x?y=1");
    assert_eq!(v["host"], "inventory.necpgame.svc.cluster.local");
    assert_eq!(
        v["peer"],
        "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway"
    );
    assert_eq!(v["headers"]["x-forwarded-client-cert"], XFCC);
    assert_eq!(v["headers"]["x-player-tier"], "premium");
    assert!(v["headers"]["user-agent"]
        .as_str()
        .unwrap()
        .starts_with("curl/"));
    assert!(v["headers"].get("x-request-id").is_none());
    app.stop().await;
}

#[tokio::test]
async fn echo_h2c_prior_knowledge_and_null_peer() {
    let app = start(inventory_v2()).await;
    let url = format!("http://{}/api/x", app.addr);
    let r = curl(
        &url,
        &["--http2-prior-knowledge", "-H", "x-request-id: abc"],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.http_version, "2");
    let v: Value = serde_json::from_str(&r.body).expect("json body");
    assert_eq!(v["service"], "inventory");
    assert_eq!(v["version"], "v2");
    assert_eq!(v["path"], "/api/x");
    assert_eq!(v["host"], app.addr.to_string());
    assert!(v["peer"].is_null());
    assert_eq!(v["headers"]["x-request-id"], "abc");
    app.stop().await;
}

#[tokio::test]
async fn status_path_and_healthz() {
    let app = start(DemoAppConfig {
        error_rate: 1.0,
        ..inventory_v2()
    })
    .await;
    let base = format!("http://{}", app.addr);
    let r = curl(&format!("{base}/status/503"), &[]).await;
    assert_eq!(r.status, 503);
    let r = curl(&format!("{base}/status/418"), &["--http2-prior-knowledge"]).await;
    assert_eq!(r.status, 418);
    let r = curl(&format!("{base}/status/42"), &[]).await;
    assert_eq!(r.status, 400);
    // /healthz is never fault-injected, even at error_rate 1.0.
    let r = curl(&format!("{base}/healthz"), &[]).await;
    assert_eq!((r.status, r.body.as_str()), (200, "ok"));
    // /status/200 overrides injection too.
    let r = curl(&format!("{base}/status/200"), &[]).await;
    assert_eq!(r.status, 200);
    app.stop().await;
}

#[tokio::test]
async fn error_rate_extremes() {
    let failing = start(DemoAppConfig {
        error_rate: 1.0,
        ..inventory_v2()
    })
    .await;
    let healthy = start(DemoAppConfig {
        error_rate: 0.0,
        ..inventory_v2()
    })
    .await;
    for _ in 0..5 {
        let r = curl(&format!("http://{}/api/x", failing.addr), &[]).await;
        assert_eq!(r.status, 503);
        let v: Value = serde_json::from_str(&r.body).expect("json error body");
        assert_eq!(v["error"], "injected fault");
        assert!(r.headers.contains("x-weft-version: v2"));
        let r = curl(&format!("http://{}/api/x", healthy.addr), &[]).await;
        assert_eq!(r.status, 200);
    }
    failing.stop().await;
    healthy.stop().await;
}

#[tokio::test]
async fn latency_is_applied() {
    let app = start(DemoAppConfig {
        latency: Duration::from_millis(150),
        ..inventory_v2()
    })
    .await;
    let t = std::time::Instant::now();
    let r = curl(&format!("http://{}/api/x", app.addr), &[]).await;
    assert_eq!(r.status, 200);
    assert!(t.elapsed() >= Duration::from_millis(150));
    app.stop().await;
}

#[tokio::test]
async fn shutdown_stops_accepting() {
    let app = start(inventory_v2()).await;
    let addr = app.addr;
    assert_eq!(
        curl(&format!("http://{addr}/healthz"), &[]).await.status,
        200
    );
    app.stop().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn run_demo_app_returns_on_shutdown_and_rejects_bad_config() {
    run_demo_app(inventory_v2(), async {})
        .await
        .expect("clean exit");
    let bad = DemoAppConfig {
        error_rate: 1.5,
        ..inventory_v2()
    };
    assert!(run_demo_app(bad, async {}).await.is_err());
    // bind_demo_app: dropping the serving future stops the server.
    let (addr, serve) = bind_demo_app(inventory_v2()).await.expect("bind");
    drop(serve);
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
