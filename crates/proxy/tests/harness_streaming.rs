//! Request bodies stream through the proxies: a gRPC bidi stream interleaves through a
//! gateway and through a sidecar pair, a 200 MiB upload reaches the app while it is being
//! sent without the proxies holding it, and the capped replay copy still lets small bodies
//! be retried and mirrored while a body over the cap is sent once and not retried.

mod support;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::stream::{body_channel, grpc_frame, read, vm_rss, AppBody, Client, GrpcReader};
use support::stream::{ChannelBody, StreamApp};
use support::*;
use tokio::sync::mpsc;

/// The tests of this file run on parallel threads of one process. The memory test holds
/// this exclusively, so its RSS samples see no other test's traffic; the others share it.
static RSS_GATE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// How long one round of a stream may take. Each round needs the proxies to forward a
/// message while the request is still open: a proxy that buffers the request body until
/// it ends never delivers it, and the round fails here instead of hanging.
const ROUND: Duration = Duration::from_secs(10);

async fn round<F: Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(ROUND, f).await {
        Ok(v) => v,
        Err(_) => panic!(
            "{what} did not arrive within {ROUND:?} while the request stream was open: \
             the proxies are not streaming the request body (buffered until it ends?)"
        ),
    }
}

// ---- 1. gRPC bidi streaming ----------------------------------------------------------

/// An h2c gRPC echo app: answers the headers at once, then each message as soon as it has
/// arrived (`echo <message>`), and ends with `grpc-status: 0` once the request stream
/// ends. Every request's head goes to `heads`.
async fn grpc_echo_app(heads: mpsc::UnboundedSender<http::request::Parts>) -> StreamApp {
    StreamApp::start(move |req: Request<Incoming>| {
        let heads = heads.clone();
        async move {
            let (parts, body) = req.into_parts();
            let _ = heads.send(parts);
            let echoes = futures_util::stream::unfold(Some(GrpcReader::new(body)), |r| async {
                let mut r = r?;
                let (frame, next) = match r.next().await {
                    Ok(Some(msg)) => {
                        let echo = [b"echo ".as_slice(), &msg].concat();
                        (Frame::data(grpc_frame(&echo)), Some(r))
                    }
                    Ok(None) => (Frame::trailers(grpc_status("0")), None),
                    Err(_) => (Frame::trailers(grpc_status("13")), None),
                };
                Some((Ok::<_, Infallible>(frame), next))
            });
            Response::builder()
                .header(header::CONTENT_TYPE, "application/grpc")
                .body(StreamBody::new(echoes).boxed())
                .unwrap()
        }
    })
    .await
}

fn grpc_status(code: &'static str) -> HeaderMap {
    let mut t = HeaderMap::new();
    t.insert("grpc-status", HeaderValue::from_static(code));
    t
}

/// Opens a gRPC call to `authority` via `addr` (h2c) and plays 5 rounds: send message i,
/// wait for its echo, then send message i+1 (so each echo must come back while the request
/// stream is open); then ends the request stream and expects `grpc-status: 0`.
async fn bidi_rounds(addr: SocketAddr, authority: &str) {
    let mut client = Client::h2(addr).await;
    let (tx, body) = body_channel(4);
    let req = Request::post(format!("http://{authority}/weft.test.Echo/Chat"))
        .header(header::CONTENT_TYPE, "application/grpc")
        .header(header::TE, "trailers")
        .body(body)
        .unwrap();
    let response = client.send(req);
    tx.data(grpc_frame(b"message 1")).await;
    let resp = round("the response head", response)
        .await
        .expect("the gRPC call is answered");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/grpc");
    let mut echoes = GrpcReader::new(resp.into_body());
    for i in 1..=5 {
        if i > 1 {
            tx.data(grpc_frame(format!("message {i}").as_bytes())).await;
        }
        let echo = round(&format!("the echo of message {i}"), echoes.next())
            .await
            .unwrap_or_else(|e| panic!("response stream failed in round {i}: {e}"))
            .unwrap_or_else(|| panic!("response stream ended in round {i}"));
        assert_eq!(echo, format!("echo message {i}"), "round {i}");
    }
    tx.end();
    let end = round("the end of the response stream", echoes.next())
        .await
        .expect("the response stream ends cleanly");
    assert_eq!(end, None, "no echo beyond the 5 messages");
    let trailers = echoes.trailers.expect("the call ends with trailers");
    assert_eq!(trailers["grpc-status"], "0", "{trailers:?}");
}

/// Server sidecar config with the app spoken to over h2c.
fn h2_app(server: &Proxy) -> weft_model::ProxyConfig {
    let mut cfg = Config::sidecar(server).build();
    cfg.inbound.as_mut().unwrap().app_http2 = true;
    cfg
}

fn assert_grpc_head(head: &http::request::Parts) {
    assert_eq!(head.version, http::Version::HTTP_2, "the app speaks h2c");
    assert_eq!(head.uri.path(), "/weft.test.Echo/Chat");
    assert_eq!(head.headers[header::CONTENT_TYPE], "application/grpc");
    assert_eq!(
        head.headers[header::TE],
        "trailers",
        "te: trailers survives"
    );
}

#[tokio::test]
async fn grpc_bidi_stream_interleaves_through_gateway_to_sidecar_to_h2c_app() {
    let _shared = RSS_GATE.read().await;
    let control = FakeControl::start().await;
    let (heads, mut seen) = mpsc::unbounded_channel();
    let app = grpc_echo_app(heads).await;
    let server = Proxy::sidecar("server").app(app.addr).start(&control).await;
    let mut gw = Proxy::gateway("ingress").start(&control).await;
    control.push_acked("server", &h2_app(&server)).await;
    let host = service_host("server", NAMESPACE);
    let c = cluster(&host, 80, vec![endpoint(&server)]);
    let cfg = Config::gateway()
        .gateway_route(80, "grpc.example.com", route_to(&c.name))
        .cluster(c);
    control.push_acked("ingress", &cfg.build()).await;
    let port80 = gw.listener("gateway_80").await;

    bidi_rounds(port80, "grpc.example.com").await;
    let head = seen.try_recv().expect("the app saw the call");
    assert_grpc_head(&head);
    assert!(
        head.headers["x-forwarded-client-cert"]
            .to_str()
            .unwrap()
            .ends_with("URI=spiffe://cluster.local/ns/test/sa/ingress"),
        "the call came over mTLS from the gateway"
    );
    gw.stop().await;
}

#[tokio::test]
async fn grpc_bidi_stream_interleaves_through_client_and_server_sidecars_to_h2c_app() {
    let _shared = RSS_GATE.read().await;
    let (heads, mut seen) = mpsc::unbounded_channel();
    let app = grpc_echo_app(heads).await;
    let pair = Pair::start_for(app.addr, |r| r).await;
    pair.control
        .push_acked("server", &h2_app(&pair.server))
        .await;

    bidi_rounds(pair.client.outbound(), &pair.host).await;
    let head = seen.try_recv().expect("the app saw the call");
    assert_grpc_head(&head);
    requests_total(
        pair.client.admin,
        &[("request_protocol", "grpc"), ("response_code", "200")],
        1.0,
    )
    .await;
}

// ---- 2. a large upload ---------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mib_upload_streams_to_the_app_while_proxy_memory_stays_bounded() {
    const TOTAL: u64 = 200 << 20;
    const CHUNK: usize = 64 << 10;
    const MAX_GROWTH: u64 = 64 << 20;
    let _alone = RSS_GATE.write().await;

    // The app counts what it receives and notes how much the client had sent when the
    // first bytes arrived.
    let client_sent = Arc::new(AtomicU64::new(0));
    let sent_at_first_byte = Arc::new(AtomicU64::new(u64::MAX));
    let app = {
        let (client_sent, first) = (client_sent.clone(), sent_at_first_byte.clone());
        StreamApp::start(move |req: Request<Incoming>| {
            let (client_sent, first) = (client_sent.clone(), first.clone());
            async move {
                let mut body = req.into_body();
                let mut n = 0u64;
                while let Some(frame) = body.frame().await {
                    let Ok(frame) = frame else {
                        return Response::builder()
                            .status(500)
                            .body(AppBody::default())
                            .unwrap();
                    };
                    if let Some(d) = frame.data_ref() {
                        if n == 0 && !d.is_empty() {
                            first.store(client_sent.load(Ordering::SeqCst), Ordering::SeqCst);
                        }
                        n += d.len() as u64;
                    }
                }
                Response::new(
                    http_body_util::Full::new(Bytes::from(n.to_string()))
                        .map_err(|e| match e {})
                        .boxed(),
                )
            }
        })
        .await
    };
    let pair = Pair::start_for(app.addr, |r| r).await;
    let mut client = Client::h1(pair.client.outbound()).await;
    let (tx, body) = body_channel(2);
    let req = Request::post("/upload")
        .header(header::HOST, pair.host.as_str())
        .header(header::CONTENT_LENGTH, TOTAL)
        .body(body)
        .unwrap();
    let started = std::time::Instant::now();
    let response = client.send(req);

    let chunk = Bytes::from(vec![0x5a; CHUNK]);
    let baseline = vm_rss();
    let mut peak = baseline;
    let (mut sent, mut unsampled) = (0u64, 0u64);
    while sent < TOTAL {
        tx.data(chunk.clone()).await;
        sent += CHUNK as u64;
        client_sent.store(sent, Ordering::SeqCst);
        // A sample per MiB sent.
        unsampled += CHUNK as u64;
        if unsampled >= 1 << 20 {
            unsampled = 0;
            peak = peak.max(vm_rss());
        }
    }
    tx.end();
    let resp = within("the upload's response", response)
        .await
        .expect("the upload is answered");
    let resp = read(resp).await.expect("the response is read");
    peak = peak.max(vm_rss());
    let took = started.elapsed();

    let first = sent_at_first_byte.load(Ordering::SeqCst);
    let growth = peak.saturating_sub(baseline);
    eprintln!(
        "200 MiB in {took:?}; RSS {} MiB -> peak {} MiB (+{} MiB); \
         the app's first bytes came after {} KiB sent",
        baseline >> 20,
        peak >> 20,
        growth >> 20,
        first >> 10
    );
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, TOTAL.to_string(), "the app received every byte");
    assert!(
        growth < MAX_GROWTH,
        "RSS grew by {} MiB during a {} MiB upload (limit {} MiB): a proxy is holding the body",
        growth >> 20,
        TOTAL >> 20,
        MAX_GROWTH >> 20
    );
    assert!(
        first < TOTAL / 2,
        "the app's first bytes arrived when the client had sent {first} of {TOTAL} bytes"
    );
}

/// An HTTP/1.1 app with a fixed 16 KiB buffer per connection (so the test's RSS is the
/// proxies'): for each request it reads the head and `answer_after` body bytes (counted in
/// `received`), answers `200`, and reads on and drops the rest until the connection closes.
async fn counting_raw_app(answer_after: usize, received: Arc<AtomicU64>) -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let received = received.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 << 10];
                let (mut head, mut in_head) = (Vec::new(), true);
                let (mut body, mut answered) = (0usize, false);
                while let Ok(n) = tcp.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    // New body bytes in this read (after the head, the first time).
                    let fresh = if in_head {
                        head.extend_from_slice(&buf[..n]);
                        let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
                            continue;
                        };
                        let fresh = head.len() - (end + 4);
                        (head, in_head) = (Vec::new(), false);
                        fresh
                    } else {
                        n
                    };
                    body += fresh;
                    if !answered {
                        let counted = body.min(answer_after) - (body - fresh).min(answer_after);
                        received.fetch_add(counted as u64, Ordering::SeqCst);
                    }
                    if !answered && body >= answer_after {
                        answered = true;
                        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if tcp.write_all(ok).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

/// An app that answers before it has read the whole request body (full duplex, as an
/// upload endpoint refusing early does) must not leave its connection in the sidecar's
/// pool while that body is still being sent: the next request would queue behind a body
/// that may never end.
#[tokio::test]
async fn an_app_answering_before_the_body_ends_does_not_hold_up_the_next_request() {
    let _shared = RSS_GATE.read().await;
    let app = counting_raw_app(0, Arc::new(AtomicU64::new(0))).await;
    let pair = Pair::start_for(app, |r| r).await;
    let mut uploader = Client::h1(pair.client.outbound()).await;
    let (tx, body) = body_channel(1);
    let req = Request::post("/upload")
        .header(header::HOST, pair.host.as_str())
        .header(header::CONTENT_LENGTH, 1 << 20)
        .body(body)
        .unwrap();
    let response = uploader.send(req);
    tx.data(Bytes::from_static(b"the first bytes")).await;
    let early = within("the early answer", response)
        .await
        .expect("the early answer arrives while the body is still open");
    assert_eq!(early.status(), 200);
    // The upload's body is still open (tx is alive); another request must not wait on it.
    let next = within("a request after the early answer", pair.get("/next")).await;
    assert_eq!(next.status, 200, "{}", next.body);
    drop(tx);
}

/// Envoy-style abuse: 200 clients (as many as one HTTP/2 connection between the proxies
/// carries at once) each declare a 64 MiB body, send 1 MiB of it and then stall, all at
/// once, through a gateway and a sidecar to an app. Before bodies streamed, 800 such
/// clients drove a gateway to 1.25 GB RSS. Now the proxies hold at most their replay
/// budgets plus flow-control windows, so memory stays bounded. The app answers each
/// request once it has read that request's 1 MiB, so every client gets its response and
/// the test ends without waiting on time. (800 clients pass too, at about +100 MiB; under
/// CPU load they once got resets, from listeners with Rust's 128-connection accept queue:
/// see `harness_edge::listeners_queue_somaxconn_pending_connections`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_1_mib_bodies_through_a_gateway_keep_memory_bounded() {
    const CLIENTS: usize = 200;
    const SENT: usize = 1 << 20;
    const DECLARED: usize = 64 << 20;
    // Nothing of a body declared past the replay cap is copied; what is left is bounded per
    // connection (HTTP/1 read buffers of at most 68 KiB: ~14 MiB for 200) and per h2
    // connection (1 MiB windows). Holding the bodies would take over 200 MiB.
    const MAX_GROWTH: u64 = 120 << 20;
    let _alone = RSS_GATE.write().await;

    let received = Arc::new(AtomicU64::new(0));
    let app = counting_raw_app(SENT, received.clone()).await;
    let control = FakeControl::start().await;
    let server = Proxy::sidecar("server").app(app).start(&control).await;
    let mut gw = Proxy::gateway("ingress").start(&control).await;
    let host = service_host("server", NAMESPACE);
    let c = cluster(&host, 80, vec![endpoint(&server)]);
    let cfg = Config::gateway()
        .gateway_route(80, "upload.example.com", route_to(&c.name))
        .cluster(c);
    control.push_acked("ingress", &cfg.build()).await;
    let port80 = gw.listener("gateway_80").await;

    let baseline = vm_rss();
    let chunk = Bytes::from(vec![0x5a; 64 << 10]);
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let chunk = chunk.clone();
        clients.spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut tcp = tokio::net::TcpStream::connect(port80).await.map_err(|e| e.to_string())?;
            let head = format!(
                "POST /upload HTTP/1.1\r\nhost: upload.example.com\r\ncontent-length: {DECLARED}\r\n\r\n"
            );
            tcp.write_all(head.as_bytes()).await.map_err(|e| e.to_string())?;
            for i in 0..SENT / chunk.len() {
                tcp.write_all(&chunk).await.map_err(|e| format!("write {i}: {e}"))?;
            }
            // Stalled: the rest of the declared body never comes. Read the response.
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = tcp.read(&mut buf).await.map_err(|e| format!("read: {e}"))?;
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            Ok::<_, String>(String::from_utf8_lossy(&got).into_owned())
        });
    }
    let mut peak = baseline;
    let mut answered = 0;
    let all = async {
        loop {
            tokio::select! {
                done = clients.join_next() => match done {
                    None => break,
                    Some(r) => {
                        let head = r.expect("a client task");
                        match head {
                            Ok(h) if h.starts_with("HTTP/1.1 200") => answered += 1,
                            Ok(h) => { eprintln!("got {}", h.replace("\r\n", " | ")); }
                            Err(e) => { eprintln!("err {e}"); }
                        }
                    }
                },
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
            // Sampled while the bodies are in flight (a tick, not a synchronization).
            peak = peak.max(vm_rss());
        }
    };
    tokio::time::timeout(Duration::from_secs(120), all)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "within 120 s not every stalled client was answered: {} MiB reached the app",
                received.load(Ordering::SeqCst) >> 20
            )
        });
    let growth = peak.saturating_sub(baseline);
    eprintln!(
        "{CLIENTS} stalled bodies: {} MiB reached the app; RSS {} MiB -> peak {} MiB (+{} MiB)",
        received.load(Ordering::SeqCst) >> 20,
        baseline >> 20,
        peak >> 20,
        growth >> 20
    );
    assert_eq!(answered, CLIENTS);
    assert_eq!(
        received.load(Ordering::SeqCst),
        (CLIENTS * SENT) as u64,
        "the app got each client's 1 MiB"
    );
    assert!(
        growth < MAX_GROWTH,
        "RSS grew by {} MiB with {CLIENTS} stalled 1 MiB bodies (limit {} MiB): a proxy is \
         holding bodies past its replay budget",
        growth >> 20,
        MAX_GROWTH >> 20
    );
    gw.stop().await;
}

// ---- 3. retries replay a body kept whole ---------------------------------------------

/// A pair in front of an app that answers 503 to its first 2 requests, the client's
/// route retrying twice on 5xx.
async fn flaky_pair(app: &App) -> Pair {
    Pair::start(app, |mut r| {
        r.retry = retries(2, &["5xx"], 1);
        r
    })
    .await
}

/// `len` bytes of a pattern that shows reordering and truncation.
fn pattern(len: usize) -> Bytes {
    (0..len).map(|i| (i % 251) as u8).collect::<Vec<_>>().into()
}

fn assert_three_identical_bodies(app: &App, body: &Bytes) -> Vec<Seen> {
    let seen = app.requests();
    assert_eq!(seen.len(), 3, "two 503s and the try that succeeded");
    for (i, s) in seen.iter().enumerate() {
        assert_eq!(s.method, "POST");
        assert_eq!(s.body.len(), body.len(), "try {} body length", i + 1);
        assert!(s.body == body, "try {} got a different body", i + 1);
    }
    seen
}

#[tokio::test]
async fn a_retried_post_with_a_10_kib_body_is_replayed_whole_on_every_try() {
    let _shared = RSS_GATE.read().await;
    let app = App::fail_first("flaky", 2, 503).await;
    let pair = flaky_pair(&app).await;
    let body = pattern(10 << 10);
    let req = Request::post("/upload")
        .header(header::HOST, pair.host.as_str())
        .body(http_body_util::Full::new(body.clone()))
        .unwrap();
    let resp = send(pair.client.outbound(), req).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.header(APP_HEADER), Some("flaky"));
    assert_three_identical_bodies(&app, &body);
}

#[tokio::test]
async fn a_retried_chunked_post_without_content_length_is_replayed_whole() {
    let _shared = RSS_GATE.read().await;
    let app = App::fail_first("flaky", 2, 503).await;
    let pair = flaky_pair(&app).await;
    let body = pattern(10 << 10);
    let mut client = Client::h1(pair.client.outbound()).await;
    let (tx, chunked) = body_channel(1);
    let req = Request::post("/upload")
        .header(header::HOST, pair.host.as_str())
        .body(chunked)
        .unwrap();
    let response = client.send(req);
    for part in body.chunks(1000) {
        tx.data(Bytes::copy_from_slice(part)).await;
    }
    tx.end();
    let resp = read(within("the response", response).await.expect("answered"))
        .await
        .expect("read");
    assert_eq!(resp.status, 200);
    let seen = assert_three_identical_bodies(&app, &body);
    assert_eq!(
        seen[0].header("transfer-encoding"),
        Some("chunked"),
        "the first try streamed the body as it came, length unknown"
    );
    for (i, s) in seen.iter().enumerate().skip(1) {
        assert_eq!(
            s.header("content-length"),
            Some("10240"),
            "replay {i} is sent from the complete copy, so its length is known"
        );
    }
}

#[tokio::test]
async fn a_retried_h2_post_with_trailers_is_replayed_with_its_trailers() {
    let _shared = RSS_GATE.read().await;
    let app = App::fail_first("flaky", 2, 503).await;
    let pair = flaky_pair(&app).await;
    pair.control
        .push_acked("server", &h2_app(&pair.server))
        .await;
    let body = pattern(10 << 10);
    let mut client = Client::h2(pair.client.outbound()).await;
    let (tx, streamed) = body_channel(1);
    let req = Request::post(format!("http://{}/upload", pair.host))
        .body(streamed)
        .unwrap();
    let response = client.send(req);
    for part in body.chunks(4096) {
        tx.data(Bytes::copy_from_slice(part)).await;
    }
    let mut trailers = HeaderMap::new();
    trailers.insert("x-checksum", HeaderValue::from_static("10240-bytes"));
    tx.trailers(trailers).await;
    let resp = read(within("the response", response).await.expect("answered"))
        .await
        .expect("read");
    assert_eq!(resp.status, 200);
    for (i, s) in assert_three_identical_bodies(&app, &body)
        .iter()
        .enumerate()
    {
        let t = s.trailers.as_ref().unwrap_or_else(|| {
            panic!("try {} reached the app without the request trailers", i + 1)
        });
        assert_eq!(t["x-checksum"], "10240-bytes", "try {}", i + 1);
    }
}

// ---- 4. past the replay cap: sent once, not retried ----------------------------------

#[tokio::test]
async fn a_2_mib_post_past_the_replay_cap_is_sent_once_and_the_503_is_returned() {
    let _shared = RSS_GATE.read().await;
    let app = App::fail_first("flaky", 2, 503).await;
    let pair = flaky_pair(&app).await;
    let body = pattern(2 << 20);
    let req = Request::post("/upload")
        .header(header::HOST, pair.host.as_str())
        .body(http_body_util::Full::new(body.clone()))
        .unwrap();
    let resp = send(pair.client.outbound(), req).await;
    assert_eq!(resp.status, 503, "{}", resp.body);
    assert_eq!(
        resp.header(APP_HEADER),
        Some("flaky"),
        "the app's own 503, not a proxy error"
    );
    // The response is out, so the proxy has made its last try.
    assert_eq!(app.count(), 1, "not retried");
    let seen = app.last();
    assert_eq!(
        seen.body.len(),
        body.len(),
        "the whole body reached the app"
    );
    assert!(seen.body == body, "the body arrived intact");
    requests_total(
        pair.client.admin,
        &[("response_code", "503"), ("response_flags", "-")],
        1.0,
    )
    .await;
}

// ---- 5. mirrors ----------------------------------------------------------------------

#[tokio::test]
async fn a_mirrored_chunked_post_reaches_the_mirror_whole_with_a_shadow_authority() {
    let _shared = RSS_GATE.read().await;
    let control = FakeControl::start().await;
    let primary = App::echo("primary").await;
    let shadow = App::echo("shadow").await;
    let server = Proxy::sidecar("server")
        .app(primary.addr)
        .start(&control)
        .await;
    let mirror = Proxy::sidecar("mirror")
        .app(shadow.addr)
        .start(&control)
        .await;
    let client = Proxy::sidecar("client").start(&control).await;
    control
        .push_acked("server", &Config::sidecar(&server).build())
        .await;
    control
        .push_acked("mirror", &Config::sidecar(&mirror).build())
        .await;
    let host = service_host("server", NAMESPACE);
    let c = cluster(&host, 80, vec![endpoint(&server)]);
    let m = cluster(
        &service_host("mirror", NAMESPACE),
        80,
        vec![endpoint(&mirror)],
    );
    let mut route = route_to(&c.name);
    route.mirrors = vec![weft_model::Mirror {
        cluster: m.name.clone(),
        percent: 100.0,
    }];
    let cfg = Config::sidecar(&client)
        .route(&host, route)
        .cluster(c)
        .cluster(m);
    control.push_acked("client", &cfg.build()).await;

    let body = pattern(256 << 10);
    let mut h1 = Client::<ChannelBody>::h1(client.outbound()).await;
    let (tx, chunked) = body_channel(1);
    let req = Request::post("/orders?id=7")
        .header(header::HOST, host.as_str())
        .header("x-trace", "t-1")
        .body(chunked)
        .unwrap();
    let response = h1.send(req);
    for part in body.chunks(16 << 10) {
        tx.data(Bytes::copy_from_slice(part)).await;
    }
    tx.end();
    let resp = read(within("the response", response).await.expect("answered"))
        .await
        .expect("read");
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header(APP_HEADER),
        Some("primary"),
        "the primary answers"
    );

    shadow.wait_for_count(1).await;
    let (p, s) = (primary.last(), shadow.last());
    assert_eq!(primary.count(), 1);
    assert!(p.body == body, "the primary got the whole body");
    assert_eq!(s.body.len(), body.len(), "the mirror's body length");
    assert!(s.body == body, "the mirror got the same body");
    assert_eq!(
        (s.method.as_str(), s.path.as_str()),
        ("POST", "/orders?id=7")
    );
    assert_eq!(s.header("x-trace"), Some("t-1"));
    assert_eq!(p.header("host"), Some(host.as_str()));
    assert_eq!(
        s.header("host"),
        Some(format!("{host}-shadow").as_str()),
        "the mirror sees the shadow authority"
    );
}

/// Envoy sends the shadow whatever happens to the primary. Here the mirror waits for the
/// primary try to read the request body through the shared replay copy; when no try reads
/// it (the primary's endpoint refuses the connection), the mirror never goes out. Paused
/// time: the bound below is virtual, so the test ends at once either way.
#[tokio::test(start_paused = true)]
async fn a_mirrored_post_reaches_the_mirror_even_when_the_primary_is_unreachable() {
    let _shared = RSS_GATE.read().await;
    let control = FakeControl::start().await;
    let shadow = App::echo("shadow").await;
    let mirror = Proxy::sidecar("mirror")
        .app(shadow.addr)
        .start(&control)
        .await;
    let client = Proxy::sidecar("client").start(&control).await;
    control
        .push_acked("mirror", &Config::sidecar(&mirror).build())
        .await;
    // The primary's only endpoint: a loopback port nobody listens on any more.
    let refused = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let host = service_host("server", NAMESPACE);
    let mut gone = endpoint(&mirror);
    gone.address = refused.to_string();
    let c = cluster(&host, 80, vec![gone]);
    let m = cluster(
        &service_host("mirror", NAMESPACE),
        80,
        vec![endpoint(&mirror)],
    );
    let mut route = route_to(&c.name);
    route.mirrors = vec![weft_model::Mirror {
        cluster: m.name.clone(),
        percent: 100.0,
    }];
    let cfg = Config::sidecar(&client)
        .route(&host, route)
        .cluster(c)
        .cluster(m);
    control.push_acked("client", &cfg.build()).await;

    let body = pattern(10 << 10);
    let req = Request::post("/orders")
        .header(header::HOST, host.as_str())
        .body(http_body_util::Full::new(body.clone()))
        .unwrap();
    let resp = send(client.outbound(), req).await;
    assert_eq!(resp.status, 503, "{}", resp.body);
    assert!(
        resp.body.contains("upstream connect error"),
        "{}",
        resp.body
    );

    let bound = Duration::from_secs(5);
    tokio::time::timeout(bound, shadow.wait_for_count(1))
        .await
        .unwrap_or_else(|_| panic!("the POST was not mirrored within {bound:?} (virtual)"));
    let s = shadow.last();
    assert_eq!((s.method.as_str(), s.path.as_str()), ("POST", "/orders"));
    assert!(s.body == body, "the mirror got the whole body");
}
