//! Tracing and access logs in a whole `weft up` mesh, configured the Istio way (MeshConfig
//! `extensionProviders` + Telemetry at mesh, namespace and workload level), with a real
//! OTLP/gRPC receiver (opentelemetry-proto's tonic service) in the test: a request through
//! the gateway, a relay app (Python, propagating trace headers as Istio asks apps to) and
//! matchmaking yields one trace with correctly parented spans from all three proxies; a B3
//! caller's trace continues; a caller's "not sampled" sends nothing, and after a live
//! change of the mesh-level Telemetry to 0 % neither does a new trace; the access log file
//! the provider names gets the lines of the proxies Telemetry leaves logging on. (Its own
//! test binary: it runs beside `e2e.rs`'s meshes.)

mod common;

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A span with its resource's `service.name`.
#[derive(Debug, Clone)]
struct Got {
    service: String,
    span: Span,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Got {
    fn attr(&self, key: &str) -> Option<String> {
        self.span
            .attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                Any::StringValue(s) => Some(s.clone()),
                _ => None,
            })
    }
}

#[derive(Clone, Default)]
struct Store(Arc<Mutex<Vec<Got>>>);

#[tonic::async_trait]
impl TraceService for Store {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut all = self.0.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                    Any::StringValue(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for ss in rs.scope_spans {
                all.extend(ss.spans.into_iter().map(|span| Got {
                    service: service.clone(),
                    span,
                }));
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// The OTLP/gRPC receiver on its own runtime thread; stopped when dropped.
struct Receiver {
    port: u16,
    store: Store,
    _rt: tokio::runtime::Runtime,
}

impl Receiver {
    fn start() -> Receiver {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let store = Store::default();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let svc = TraceServiceServer::new(store.clone());
        rt.spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await;
        });
        Receiver {
            port,
            store,
            _rt: rt,
        }
    }

    /// Spans of `trace` once there are at least `n`.
    fn trace(&self, trace: &str, n: usize) -> Vec<Got> {
        poll_until(
            &format!("{n} spans of trace {trace}"),
            Duration::from_secs(20),
            || {
                let spans: Vec<Got> = self
                    .store
                    .0
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|g| hex(&g.span.trace_id) == trace)
                    .cloned()
                    .collect();
                (spans.len() >= n).then_some(spans)
            },
        )
    }

    fn count(&self) -> usize {
        self.store.0.lock().unwrap().len()
    }
}

/// Forwards each GET to matchmaking through its sidecar's outbound listener, copying the
/// trace headers as Istio asks applications to. (It starts before its sidecar, so it reads
/// the listener's address from the mesh's `mesh.json`, named by argv[1], when called.)
const RELAY_PY: &str = r#"
import http.server, json, os, sys, urllib.request, urllib.error
def outbound():
    with open(sys.argv[1]) as f:
        mesh = json.load(f)
    p = next(p for p in mesh["processes"] if p["name"] == "sidecar-relay.necpgame")
    return p["addresses"]["outbound"]
FWD = ["traceparent", "tracestate", "x-request-id", "b3", "x-b3-traceid", "x-b3-spanid",
       "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags"]
class App(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        req = urllib.request.Request("http://matchmaking.necpgame.svc.cluster.local:8080/api/v1/matchmaking/queue")
        req.set_proxy(outbound(), "http")
        for h in FWD:
            v = self.headers.get(h)
            if v:
                req.add_header(h, v)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                body, code = r.read(), r.status
        except urllib.error.HTTPError as e:
            body, code = e.read(), e.code
        self.send_response(code)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
host, port = os.environ["WEFT_APP_ADDRESS"].rsplit(":", 1)
server = http.server.ThreadingHTTPServer((host, int(port)), App)
print(json.dumps({"event": "ready", "address": "%s:%d" % server.server_address}), flush=True)
server.serve_forever()
"#;

fn telemetry_yaml(collector: u16, log: &str, script: &str, mesh_json: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: ConfigMap
metadata: {{name: istio, namespace: istio-system}}
data:
  mesh: |-
    extensionProviders:
    - name: otel
      opentelemetry: {{service: 127.0.0.1, port: {collector}}}
    - name: file-log
      envoyFileAccessLog: {{path: {log}}}
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {{name: mesh-default, namespace: istio-system}}
spec:
  tracing:
  - providers: [{{name: otel}}]
    randomSamplingPercentage: 100
  accessLogging:
  - providers: [{{name: file-log}}]
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {{name: game-tags, namespace: necpgame}}
spec:
  tracing:
  - customTags:
      team: {{literal: {{value: games}}}}
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {{name: matchmaking-quiet, namespace: necpgame}}
spec:
  selector: {{matchLabels: {{app: matchmaking}}}}
  accessLogging:
  - disabled: true
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: relay-joins-matchmaking, namespace: necpgame}}
spec:
  selector: {{matchLabels: {{app: matchmaking}}}}
  action: ALLOW
  rules:
  - from: [{{source: {{principals: [cluster.local/ns/necpgame/sa/relay]}}}}]
    to: [{{operation: {{paths: [/api/v1/matchmaking/queue]}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: relay, namespace: necpgame}}
spec:
  hosts: [relay.necpgame.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{{number: 8000, name: http, protocol: HTTP}}]
  workloadSelector: {{labels: {{app: relay}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: relay
  namespace: necpgame
  annotations:
    weft.dev/run: command
    weft.dev/command: "exec python3 {script} {mesh_json}"
spec: {{address: 127.0.0.1, serviceAccount: relay, labels: {{app: relay}}}}
"#
    )
}

fn get(mesh: &Mesh, headers: &[&str]) -> String {
    let gw = mesh.gateway();
    let mut args = vec![
        "-sS",
        "-m",
        "20",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-H",
        "host: game.necpgame.local",
    ];
    for h in headers {
        args.extend(["-H", h]);
    }
    let url = format!("http://{gw}/api/v1/relay/join");
    args.push(&url);
    stdout_of(&curl(&args))
}

#[test]
fn one_trace_across_gateway_relay_and_matchmaking_and_the_access_log_they_write() {
    let rx = Receiver::start();
    let mut log = std::path::PathBuf::new();
    let mesh = Mesh::up_with("tracing", |dir| {
        let base = dir.parent().expect("a temp dir");
        log = base.join("access.log");
        let script = base.join("relay.py");
        std::fs::write(&script, RELAY_PY).unwrap();
        let mesh_json = base.join("state").join("mesh.json");
        let yaml = telemetry_yaml(
            rx.port,
            &log.display().to_string(),
            &script.display().to_string(),
            &mesh_json.display().to_string(),
        );
        std::fs::write(dir.join("telemetry.yaml"), yaml).unwrap();
        edit(
            &dir.join("istio-gateway.yaml"),
            "  http:\n  - name: inventory-premium",
            "  http:\n  - name: relay\n    match:\n    - uri: {prefix: /api/v1/relay}\n    route:\n    - destination: {host: relay}\n  - name: inventory-premium",
        );
    });
    let status = mesh.status_json();
    let reported = status.to_string();
    assert!(
        !reported.contains("Telemetry/"),
        "every Telemetry field used is enforced: {reported}"
    );

    // W3C: the caller's trace continues through every proxy, each span the child of the
    // one before it.
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let code = get(
        &mesh,
        &[&format!("traceparent: 00-{trace}-00f067aa0ba902b7-01")],
    );
    assert_eq!(code, "200", "{}", mesh.log("app-relay.necpgame"));
    let spans = rx.trace(trace, 4);
    assert_eq!(spans.len(), 4, "{spans:#?}");
    let find = |service: &str, kind: i32| {
        spans
            .iter()
            .find(|g| g.service == service && g.span.kind == kind)
            .unwrap_or_else(|| panic!("no {service} span of kind {kind}: {spans:#?}"))
    };
    let (client, server) = (3, 2);
    let gw = find("istio-ingressgateway.istio-system", client);
    let relay_in = find("relay.necpgame", server);
    let relay_out = find("relay.necpgame", client);
    let mm = find("matchmaking.necpgame", server);
    assert_eq!(hex(&gw.span.parent_span_id), "00f067aa0ba902b7");
    assert_eq!(relay_in.span.parent_span_id, gw.span.span_id);
    assert_eq!(relay_out.span.parent_span_id, relay_in.span.span_id);
    assert_eq!(mm.span.parent_span_id, relay_out.span.span_id);
    assert_eq!(
        gw.span.name,
        "relay.necpgame.svc.cluster.local:8000/api/v1/relay*"
    );
    assert_eq!(
        relay_out.span.name,
        "matchmaking.necpgame.svc.cluster.local:8080/*"
    );
    // Namespace-level custom tag on necpgame's proxies, not on the gateway's.
    assert_eq!(gw.attr("team"), None);
    assert_eq!(mm.attr("team").as_deref(), Some("games"));
    assert_eq!(
        mm.attr("istio.canonical_service").as_deref(),
        Some("matchmaking")
    );

    // B3: a Zipkin-instrumented caller's trace continues too.
    let b3 = "80f198ee56343ba864fe8b2a57d3eff7";
    let code = get(
        &mesh,
        &[
            &format!("x-b3-traceid: {b3}"),
            "x-b3-spanid: e457b5a2e4d86bd1",
            "x-b3-sampled: 1",
        ],
    );
    assert_eq!(code, "200");
    let spans = rx.trace(b3, 4);
    assert!(
        spans
            .iter()
            .any(|g| hex(&g.span.parent_span_id) == "e457b5a2e4d86bd1"),
        "{spans:#?}"
    );

    // A caller that decided "not sampled" is honoured at 100 %: nothing is sent. The next
    // sampled request's spans arrive after it would have (one queue per proxy), alone.
    let before = rx.count();
    let code = get(
        &mesh,
        &["traceparent: 00-11111111111111111111111111111111-2222222222222222-00"],
    );
    assert_eq!(code, "200");
    let marker = "33333333333333333333333333333333";
    get(
        &mesh,
        &[&format!("traceparent: 00-{marker}-2222222222222222-01")],
    );
    rx.trace(marker, 4);
    assert_eq!(rx.count(), before + 4, "the unsampled request sent no span");

    // A live change at mesh level: 0 %. Once every proxy runs it, a request with no trace
    // headers is sampled by nobody (the next sampled caller's spans arrive alone).
    edit(
        &mesh.config_file("telemetry.yaml"),
        "randomSamplingPercentage: 100",
        "randomSamplingPercentage: 0",
    );
    for proxy in [
        GATEWAY,
        "sidecar-relay.necpgame",
        "sidecar-matchmaking-v1.necpgame",
    ] {
        let admin = mesh.addr(proxy, "admin");
        poll_until(
            &format!("{proxy} to run 0 % sampling"),
            Duration::from_secs(20),
            || {
                let dump = stdout_of(&curl(&["-sS", &format!("http://{admin}/config_dump")]));
                dump.contains("\"sampling_percent\": 0.0").then_some(())
            },
        );
    }
    let before = rx.count();
    assert_eq!(get(&mesh, &[]), "200");
    let marker2 = "55555555555555555555555555555555";
    get(
        &mesh,
        &[&format!("traceparent: 00-{marker2}-2222222222222222-01")],
    );
    rx.trace(marker2, 4);
    assert_eq!(
        rx.count(),
        before + 4,
        "0 % at the mesh level: the headerless request sent no span"
    );

    // The access log the provider names: the gateway's and relay's lines (matchmaking's
    // workload-level Telemetry turned its logging off).
    let lines = poll_until("access log lines", Duration::from_secs(20), || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<String> = text
            .lines()
            .filter(|l| l.contains(marker) || l.contains("/api/v1/"))
            .map(str::to_string)
            .collect();
        (lines.len() >= 3 * 4).then_some(lines)
    });
    assert!(
        lines.iter().all(|l| l.contains("\" 200 - via_upstream ")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"GET /api/v1/relay/join HTTP/1.1\"")
                && l.contains(" outbound|8000||relay.necpgame.svc.cluster.local ")),
        "gateway: {lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"GET /api/v1/matchmaking/queue HTTP/1.1\"")
                && l.contains(" outbound|8080||matchmaking.necpgame.svc.cluster.local ")),
        "relay outbound: {lines:#?}"
    );
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("\"GET /api/v1/matchmaking/queue HTTP/2\"")),
        "matchmaking's inbound logs nothing: {lines:#?}"
    );
}

/// A slow service with room for one request at a time, routes that fail in each way the
/// access log must tell apart, and a second log that a filter keeps to errors.
fn failures_yaml(log: &str, errors: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: ConfigMap
metadata: {{name: istio, namespace: istio-system}}
data:
  mesh: |-
    extensionProviders:
    - name: file-log
      envoyFileAccessLog: {{path: {log}}}
    - name: errors-log
      envoyFileAccessLog: {{path: {errors}}}
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {{name: mesh-default, namespace: istio-system}}
spec:
  accessLogging:
  - providers: [{{name: file-log}}]
  - providers: [{{name: errors-log}}]
    filter: {{expression: "response.code >= 400"}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: slowpoke, namespace: necpgame}}
spec:
  hosts: [slowpoke.necpgame.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{{number: 8080, name: http, protocol: HTTP}}]
  workloadSelector: {{labels: {{app: slowpoke}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: slowpoke
  namespace: necpgame
  annotations:
    weft.dev/run: demo-app
    weft.dev/demo-latency: 3s
spec: {{address: 127.0.0.1, serviceAccount: slowpoke, labels: {{app: slowpoke}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: slowpoke, namespace: necpgame}}
spec:
  host: slowpoke
  trafficPolicy:
    connectionPool: {{http: {{http2MaxRequests: 1}}}}
"#
    )
}

const FAILING_ROUTES: &str = "  http:
  - name: slow
    match:
    - uri: {prefix: /api/v1/slow}
    route:
    - destination: {host: slowpoke}
  - name: hurried
    match:
    - uri: {prefix: /api/v1/hurried}
    route:
    - destination: {host: matchmaking}
    timeout: 1ms
  - name: broken
    match:
    - uri: {prefix: /api/v1/broken}
    fault:
      abort: {httpStatus: 503, percentage: {value: 100}}
    route:
    - destination: {host: matchmaking}
  - name: inventory-premium";

fn curl_gw(mesh: &Mesh, method: &str, path: &str) -> String {
    let gw = mesh.gateway();
    let url = format!("http://{gw}{path}");
    stdout_of(&curl(&[
        "-sS",
        "-m",
        "20",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-X",
        method,
        "-H",
        "host: game.necpgame.local",
        &url,
    ]))
}

#[test]
fn access_log_lines_tell_overflow_timeout_denial_and_fault_apart_and_a_filter_keeps_errors() {
    let (mut log, mut errors) = (std::path::PathBuf::new(), std::path::PathBuf::new());
    let mesh = Mesh::up_with("access-log", |dir| {
        let base = dir.parent().expect("a temp dir");
        log = base.join("access.log");
        errors = base.join("errors.log");
        let yaml = failures_yaml(&log.display().to_string(), &errors.display().to_string());
        std::fs::write(dir.join("telemetry.yaml"), yaml).unwrap();
        edit(
            &dir.join("istio-gateway.yaml"),
            "  http:\n  - name: inventory-premium",
            FAILING_ROUTES,
        );
    });
    assert_eq!(curl_gw(&mesh, "GET", "/api/v1/player/me"), "200");
    // One request holds slowpoke's only slot (the gateway says it is overflowing), the next
    // overflows.
    let gw = mesh.gateway();
    let holder = std::thread::spawn(move || {
        let url = format!("http://{gw}/api/v1/slow");
        stdout_of(&curl(&[
            "-sS",
            "-m",
            "20",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "host: game.necpgame.local",
            &url,
        ]))
    });
    let admin = mesh.gateway_admin();
    poll_until(
        "slowpoke's request limit to be reached",
        Duration::from_secs(10),
        || {
            let out = stdout_of(&curl(&["-sS", &format!("http://{admin}/clusters")]));
            let v: serde_json::Value = serde_json::from_str(&out).ok()?;
            v["outbound|8080||slowpoke.necpgame.svc.cluster.local"]["overflowing"]
                .as_bool()
                .filter(|o| *o)
        },
    );
    assert_eq!(curl_gw(&mesh, "GET", "/api/v1/slow"), "503");
    assert_eq!(holder.join().unwrap(), "200");
    assert_eq!(curl_gw(&mesh, "GET", "/api/v1/hurried"), "504");
    assert_eq!(curl_gw(&mesh, "DELETE", "/api/v1/player/me"), "403");
    assert_eq!(curl_gw(&mesh, "GET", "/api/v1/broken"), "503");
    // The gateway's lines (HTTP/1.1 from curl), in request order per outcome.
    let gateway_line = |path: &str, method: &str, status: &str| {
        let want = format!("\"{method} {path} HTTP/1.1\" {status} ");
        poll_until(
            &format!("the gateway's line for {method} {path} {status}"),
            Duration::from_secs(20),
            || {
                std::fs::read_to_string(&log)
                    .unwrap_or_default()
                    .lines()
                    .find(|l| l.contains(&want))
                    .map(str::to_string)
            },
        )
    };
    let ok = gateway_line("/api/v1/player/me", "GET", "200");
    assert!(ok.contains(" 200 - via_upstream "), "{ok}");
    let uo = gateway_line("/api/v1/slow", "GET", "503");
    assert!(
        uo.contains(" 503 UO upstream_reset_before_response_started{overflow} "),
        "{uo}"
    );
    let ut = gateway_line("/api/v1/hurried", "GET", "504");
    assert!(ut.contains(" 504 UT response_timeout "), "{ut}");
    let fi = gateway_line("/api/v1/broken", "GET", "503");
    assert!(fi.contains(" 503 FI fault_filter_abort "), "{fi}");
    // The denial: the gateway passes player's 403 on; player's sidecar says why.
    gateway_line("/api/v1/player/me", "DELETE", "403");
    let denied = poll_until("player's RBAC denial", Duration::from_secs(20), || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .find(|l| l.contains("\"DELETE /api/v1/player/me HTTP/2\" 403 "))
            .map(str::to_string)
    });
    assert!(
        denied.contains(" 403 - rbac_access_denied_matched_policy[none] "),
        "{denied}"
    );
    // The filtered log holds errors only: every line is 4xx/5xx, and all of them came.
    let errs = poll_until("the filtered log", Duration::from_secs(20), || {
        let t = std::fs::read_to_string(&errors).unwrap_or_default();
        (t.contains("\"DELETE /api/v1/player/me HTTP/2\" 403")
            && t.contains("/api/v1/broken HTTP/1.1\" 503"))
        .then_some(t)
    });
    for l in errs.lines() {
        let code: u16 = l
            .split("\" ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        assert!(code >= 400, "a non-error in the errors log: {l}");
    }
    assert!(
        !errs.contains("\"GET /api/v1/player/me HTTP/1.1\" 200"),
        "{errs}"
    );
}
