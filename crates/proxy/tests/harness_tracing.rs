//! Tracing through in-process sidecars and a real OTLP receiver: one trace with correctly
//! parented spans (client span on the caller's sidecar, server span on the callee's),
//! W3C and B3 contexts continued, Envoy's sampling rules (an upstream decision wins, 0 %
//! sends nothing, 100 % everything), OTLP/HTTP, and a collector that never answers costs
//! dropped spans, never request time.

mod support;

use std::time::{Duration, Instant};
use support::otlp::{Got, Receiver};
use support::*;
use weft_model::telemetry::{Collector, SideTelemetry, TelemetryConfig, TracingSpec, WorkloadTags};

fn spec(collector: std::net::SocketAddr, percent: f64, http: bool) -> TracingSpec {
    TracingSpec {
        provider: "otel".into(),
        collector: Collector {
            address: collector.to_string(),
            http_path: http.then(|| "/v1/traces".into()),
            timeout_ms: 5_000,
            format: Default::default(),
        },
        sampling_percent: percent,
        report_spans: true,
        istio_tags: true,
        propagate: true,
        custom_tags: vec![weft_model::telemetry::CustomTag {
            name: "tier".into(),
            source: weft_model::telemetry::TagSource::Header {
                name: "x-tier".into(),
                default: Some("none".into()),
            },
        }],
        max_tag_length: 256,
        propagation: Default::default(),
        trace_id_64bit: false,
    }
}

fn traced(workload: &str, spec: &TracingSpec) -> TelemetryConfig {
    let side = SideTelemetry {
        metrics: Default::default(),
        tracing: Some(spec.clone()),
        access_logs: vec![],
    };
    TelemetryConfig {
        client: side.clone(),
        server: side,
        workload: WorkloadTags {
            canonical_service: workload.into(),
            canonical_revision: "v1".into(),
            namespace: NAMESPACE.into(),
            mesh_id: "cluster.local".into(),
            workload: workload.into(),
        },
    }
}

/// A pair whose sidecars both trace to `rx` at `percent`.
async fn traced_pair(app: &App, rx: &Receiver, percent: f64, http: bool) -> Pair {
    let pair = Pair::start(app, |r| r).await;
    let s = spec(rx.addr, percent, http);
    let mut server = Config::sidecar(&pair.server).build();
    server.telemetry = traced("server", &s);
    pair.control.push_acked("server", &server).await;
    let mut client = pair.config.clone().build();
    client.telemetry = traced("client", &s);
    pair.control.push_acked("client", &client).await;
    pair
}

async fn get_with(pair: &Pair, headers: &[(&str, &str)]) -> Resp {
    let mut req = http::Request::get("/items").header(http::header::HOST, &pair.host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(
        pair.client.outbound(),
        req.body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap(),
    )
    .await
}

fn by_kind(spans: &[Got], kind: i32) -> &Got {
    spans
        .iter()
        .find(|s| s.span.kind == kind)
        .unwrap_or_else(|| panic!("no span of kind {kind}: {spans:#?}"))
}

const SERVER: i32 = 2;
const CLIENT: i32 = 3;

#[tokio::test]
async fn one_trace_with_a_client_span_and_a_child_server_span_from_a_w3c_caller() {
    let rx = Receiver::grpc().await;
    let app = App::echo("server").await;
    let pair = traced_pair(&app, &rx, 1.0, false).await;
    let caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let resp = get_with(
        &pair,
        &[
            ("traceparent", caller),
            ("tracestate", "congo=t61rcWkgMzE"),
            ("x-tier", "gold"),
            ("x-request-id", "rid-1"),
        ],
    )
    .await;
    assert_eq!(resp.status, 200);
    let spans = rx.wait_for(2).await;
    let (client, server) = (by_kind(&spans, CLIENT), by_kind(&spans, SERVER));
    assert_eq!(
        client.trace_id(),
        "0af7651916cd43dd8448eb211c80319c",
        "the caller's trace continues"
    );
    assert_eq!(server.trace_id(), client.trace_id());
    assert_eq!(
        client.parent_id(),
        "b7ad6b7169203331",
        "the client span's parent is the caller's span"
    );
    assert_eq!(
        server.parent_id(),
        client.span_id(),
        "the server span is the client span's child"
    );
    // The app sees the server span as its parent, and the caller's tracestate.
    let seen = app.last();
    let tp = seen.header("traceparent").unwrap();
    assert_eq!(
        tp,
        format!(
            "00-0af7651916cd43dd8448eb211c80319c-{}-01",
            server.span_id()
        )
    );
    assert_eq!(seen.header("tracestate"), Some("congo=t61rcWkgMzE"));
    assert_eq!(
        seen.header("x-request-id"),
        Some("rid-1"),
        "x-request-id kept"
    );
    // Istio's names and tags.
    let op = format!("{}:80/*", pair.host);
    assert_eq!(client.span.name, op);
    assert_eq!(server.span.name, op);
    assert_eq!(
        (client.service.as_str(), server.service.as_str()),
        ("client.test", "server.test")
    );
    for (k, v) in [
        ("http.status_code", "200"),
        ("http.method", "GET"),
        ("response_flags", "-"),
        ("component", "proxy"),
        ("guid:x-request-id", "rid-1"),
        ("istio.namespace", NAMESPACE),
        ("istio.mesh_id", "cluster.local"),
        ("tier", "gold"),
    ] {
        assert_eq!(client.attr(k).as_deref(), Some(v), "client {k}");
        assert_eq!(server.attr(k).as_deref(), Some(v), "server {k}");
    }
    assert_eq!(
        client.attr("istio.canonical_service").as_deref(),
        Some("client")
    );
    assert_eq!(
        server.attr("istio.canonical_service").as_deref(),
        Some("server")
    );
    assert_eq!(
        client.attr("upstream_cluster"),
        Some(format!("outbound|80||{}", pair.host))
    );
    assert_eq!(
        client.attr("http.url"),
        Some(format!("http://{}/items", pair.host))
    );
    assert!(
        client.attr("node_id").is_some_and(|n| n.contains("client")),
        "{:?}",
        client.attr("node_id")
    );
    assert_eq!(
        client.attr("upstream_address"),
        Some(pair.server.inbound().to_string())
    );
}

#[tokio::test]
async fn b3_multi_and_single_headers_continue_the_callers_trace() {
    let rx = Receiver::grpc().await;
    let app = App::echo("server").await;
    let pair = traced_pair(&app, &rx, 0.0, false).await;
    let resp = get_with(
        &pair,
        &[
            ("x-b3-traceid", "463ac35c9f6413ad48485a3953bb6124"),
            ("x-b3-spanid", "a2fb4a1d1a96d312"),
            ("x-b3-sampled", "1"),
        ],
    )
    .await;
    assert_eq!(resp.status, 200);
    let spans = rx.wait_for(2).await;
    let client = by_kind(&spans, CLIENT);
    let server = by_kind(&spans, SERVER);
    assert_eq!(client.trace_id(), "463ac35c9f6413ad48485a3953bb6124");
    assert_eq!(client.parent_id(), "a2fb4a1d1a96d312");
    assert_eq!(server.parent_id(), client.span_id());
    let seen = app.last();
    assert_eq!(
        seen.header("x-b3-traceid"),
        Some("463ac35c9f6413ad48485a3953bb6124")
    );
    assert_eq!(
        seen.header("x-b3-spanid"),
        Some(server.span_id().as_str()),
        "B3 rewritten per hop"
    );
    assert_eq!(
        seen.header("x-b3-parentspanid"),
        Some(client.span_id().as_str())
    );
    assert_eq!(seen.header("x-b3-sampled"), Some("1"));
    // Single `b3`, 64-bit trace id.
    get_with(&pair, &[("b3", "80f198ee56343ba8-e457b5a2e4d86bd1-1")]).await;
    let spans = rx.wait_for(4).await;
    let second: Vec<&Got> = spans[2..].iter().collect();
    assert!(
        second
            .iter()
            .all(|s| s.trace_id() == "000000000000000080f198ee56343ba8"),
        "{second:#?}"
    );
    assert!(second.iter().any(|s| s.parent_id() == "e457b5a2e4d86bd1"));
    let b3 = app.last().header("b3").unwrap().to_string();
    assert!(b3.starts_with("000000000000000080f198ee56343ba8-"), "{b3}");
}

#[tokio::test]
async fn zero_percent_sends_nothing_but_an_upstream_decision_wins_both_ways() {
    let rx = Receiver::grpc().await;
    let app = App::echo("server").await;
    let pair = traced_pair(&app, &rx, 0.0, false).await;
    for _ in 0..20 {
        assert_eq!(pair.get("/unsampled").await.status, 200);
    }
    // The app still gets a context, marked not sampled.
    let tp = app.last().header("traceparent").unwrap().to_string();
    assert!(tp.ends_with("-00"), "{tp}");
    // A caller's sampled decision is honoured at 0 %; the spans queued after the 20
    // unsampled requests arrive alone (one queue per collector, in order).
    let sampled = "00-11111111111111111111111111111111-2222222222222222-01";
    get_with(&pair, &[("traceparent", sampled)]).await;
    let spans = rx.wait_for(2).await;
    assert_eq!(
        spans.len(),
        2,
        "only the sampled request was sent: {spans:#?}"
    );
    assert!(spans
        .iter()
        .all(|s| s.trace_id() == "11111111111111111111111111111111"));
}

#[tokio::test]
async fn a_hundred_percent_sends_every_request_and_a_callers_no_wins() {
    let rx = Receiver::grpc().await;
    let app = App::echo("server").await;
    let pair = traced_pair(&app, &rx, 100.0, false).await;
    // The caller said "not sampled": nothing, even at 100 %.
    get_with(
        &pair,
        &[(
            "traceparent",
            "00-33333333333333333333333333333333-4444444444444444-00",
        )],
    )
    .await;
    for _ in 0..10 {
        assert_eq!(pair.get("/all").await.status, 200);
    }
    let spans = rx.wait_for(20).await;
    assert_eq!(spans.len(), 20);
    assert!(spans
        .iter()
        .all(|s| s.trace_id() != "33333333333333333333333333333333"));
    let traces: std::collections::BTreeSet<String> = spans.iter().map(Got::trace_id).collect();
    assert_eq!(traces.len(), 10, "one trace per request");
}

#[tokio::test]
async fn spans_go_over_otlp_http_too() {
    let rx = Receiver::http().await;
    let app = App::status("server", 503).await;
    let pair = traced_pair(&app, &rx, 100.0, true).await;
    assert_eq!(pair.get("/fails").await.status, 503);
    let spans = rx.wait_for(2).await;
    let server = by_kind(&spans, SERVER);
    assert_eq!(server.attr("http.status_code").as_deref(), Some("503"));
    assert_eq!(server.attr("error").as_deref(), Some("true"));
    assert_eq!(
        server.span.status.as_ref().map(|s| s.code),
        Some(2),
        "status ERROR"
    );
}

#[tokio::test]
async fn a_collector_that_never_answers_costs_spans_not_request_time() {
    // Accepts connections and never answers a byte.
    let stuck = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = stuck.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = stuck.accept().await {
            conns.push(c);
        }
    });
    let app = App::echo("server").await;
    let pair = Pair::start(&app, |r| r).await;
    let mut s = spec(addr, 100.0, false);
    s.collector.timeout_ms = 60_000;
    let mut client = pair.config.clone().build();
    client.telemetry = traced("client", &s);
    pair.control.push_acked("client", &client).await;
    let began = Instant::now();
    for _ in 0..50 {
        assert_eq!(pair.get("/x").await.status, 200);
    }
    assert!(
        began.elapsed() < Duration::from_secs(20),
        "requests waited on the collector: {:?}",
        began.elapsed()
    );
    let stats = admin(pair.client.admin, "/stats/prometheus").await.body;
    assert!(
        stats.contains("weft_tracing_spans_exported_total 0"),
        "{stats}"
    );
    held.abort();
}

#[tokio::test]
async fn spans_past_a_full_queue_are_dropped_and_counted() {
    use weft_proxy::telemetry::export::{SpanQueue, TraceStats, QUEUE};
    let stuck = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let s = spec(stuck.local_addr().unwrap(), 100.0, false);
    let stats = std::sync::Arc::new(TraceStats::default());
    let queue = SpanQueue::start(
        &s.collector,
        opentelemetry_sdk::Resource::builder_empty().build(),
        stats.clone(),
    )
    .unwrap();
    // On this current-thread runtime the export task cannot run between the pushes.
    let n = QUEUE + 1000;
    for i in 0..n {
        queue.push(span(i as u64 + 1));
    }
    let dropped = stats.dropped.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        dropped, 1000,
        "everything past the queue is dropped and counted"
    );
    drop(stuck);
}

fn span(id: u64) -> opentelemetry_sdk::trace::SpanData {
    use opentelemetry::trace::{
        SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
    };
    opentelemetry_sdk::trace::SpanData {
        span_context: SpanContext::new(
            TraceId::from(u128::from(id)),
            SpanId::from(id),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ),
        parent_span_id: SpanId::INVALID,
        parent_span_is_remote: false,
        span_kind: SpanKind::Client,
        name: "x".into(),
        start_time: std::time::SystemTime::now(),
        end_time: std::time::SystemTime::now(),
        attributes: vec![],
        dropped_attributes_count: 0,
        events: Default::default(),
        links: Default::default(),
        status: Status::Unset,
        instrumentation_scope: Default::default(),
    }
}

/// A Zipkin collector for the test: keeps every span POSTed as JSON v2 to `/api/v2/spans`.
struct ZipkinRx {
    addr: std::net::SocketAddr,
    spans: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl ZipkinRx {
    async fn start() -> ZipkinRx {
        use http_body_util::BodyExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let spans = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let kept = spans.clone();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = tokio::select! {
                    a = listener.accept() => a.unwrap(),
                    _ = &mut stopped => return,
                };
                let kept = kept.clone();
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let kept = kept.clone();
                        async move {
                            let ok = req.method() == http::Method::POST
                                && req.uri().path() == "/api/v2/spans"
                                && req.headers()[http::header::CONTENT_TYPE] == "application/json";
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let parsed: Vec<serde_json::Value> =
                                serde_json::from_slice(&body).unwrap_or_default();
                            let status = if ok && !parsed.is_empty() { 202 } else { 400 };
                            kept.lock().unwrap().extend(parsed);
                            Ok::<_, std::convert::Infallible>(
                                http::Response::builder()
                                    .status(status)
                                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                                    .unwrap(),
                            )
                        }
                    });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc),
                );
            }
        });
        ZipkinRx {
            addr,
            spans,
            _stop: stop,
        }
    }

    async fn wait_for(&self, n: usize) -> Vec<serde_json::Value> {
        within("the Zipkin collector to get the spans", async {
            loop {
                let got = self.spans.lock().unwrap().clone();
                if got.len() >= n {
                    return got;
                }
                tokio::task::yield_now().await;
            }
        })
        .await
    }
}

/// MeshConfig `zipkin` providers: spans as Zipkin JSON v2, parented across the two
/// sidecars, and B3 headers (no `traceparent`) written per hop as Envoy's Zipkin tracer
/// does; `enable64bitTraceId` starts 64-bit traces.
#[tokio::test]
async fn zipkin_providers_get_json_spans_and_b3_headers() {
    use weft_model::telemetry::{Propagation, SpanFormat};
    let rx = ZipkinRx::start().await;
    let app = App::echo("server").await;
    let pair = Pair::start(&app, |r| r).await;
    let mut s = spec(rx.addr, 100.0, true);
    s.provider = "zipkin".into();
    s.collector.http_path = Some("/api/v2/spans".into());
    s.collector.format = SpanFormat::Zipkin;
    s.propagation = Propagation::B3;
    s.trace_id_64bit = true;
    let mut server = Config::sidecar(&pair.server).build();
    server.telemetry = traced("server", &s);
    pair.control.push_acked("server", &server).await;
    let mut client = pair.config.clone().build();
    client.telemetry = traced("client", &s);
    pair.control.push_acked("client", &client).await;

    let resp = get_with(&pair, &[]).await;
    assert_eq!(resp.status, 200);
    let spans = rx.wait_for(2).await;
    let kind = |k: &str| {
        spans
            .iter()
            .find(|s| s["kind"] == k)
            .unwrap_or_else(|| panic!("no {k} span: {spans:#?}"))
            .clone()
    };
    let (c, srv) = (kind("CLIENT"), kind("SERVER"));
    let trace = c["traceId"].as_str().unwrap().to_string();
    assert_eq!(trace.len(), 16, "a 64-bit trace id: {c}");
    assert_eq!(srv["traceId"], c["traceId"]);
    assert_eq!(
        srv["parentId"], c["id"],
        "the server span is the client span's child"
    );
    assert!(
        c.get("parentId").is_none(),
        "the client span starts the trace: {c}"
    );
    assert_eq!(c["localEndpoint"]["serviceName"], "client.test");
    assert_eq!(srv["localEndpoint"]["serviceName"], "server.test");
    assert_eq!(srv["tags"]["http.status_code"], "200");
    assert!(srv["duration"].as_u64().unwrap() >= 1);
    assert!(
        c["timestamp"].as_u64().unwrap() > 1_600_000_000_000_000,
        "microseconds"
    );
    let seen = app.last();
    assert_eq!(seen.header("x-b3-traceid"), Some(trace.as_str()));
    assert_eq!(seen.header("x-b3-spanid"), srv["id"].as_str());
    assert_eq!(seen.header("x-b3-parentspanid"), c["id"].as_str());
    assert_eq!(seen.header("x-b3-sampled"), Some("1"));
    assert_eq!(
        seen.header("traceparent"),
        None,
        "USE_B3 writes no W3C header"
    );

    // A caller's B3 context is continued.
    get_with(
        &pair,
        &[
            ("x-b3-traceid", "463ac35c9f6413ad48485a3953bb6124"),
            ("x-b3-spanid", "a2fb4a1d1a96d312"),
            ("x-b3-sampled", "1"),
        ],
    )
    .await;
    let spans = rx.wait_for(4).await;
    assert!(spans[2..]
        .iter()
        .all(|s| s["traceId"] == "463ac35c9f6413ad48485a3953bb6124"));
    assert!(spans[2..]
        .iter()
        .any(|s| s["parentId"] == "a2fb4a1d1a96d312"));
}
