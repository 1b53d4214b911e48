//! The Telemetry API per proxy, with Istio's precedence: root namespace, then namespace,
//! then workload selector; tracing merges field by field, access logging by provider and
//! mode; MeshConfig's defaults and legacy switches.

use weft_model::telemetry::*;
use weft_model::*;

const MESH: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: game}
spec:
  hosts: [api.game.svc.cluster.local]
  ports: [{number: 8080, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: api}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: api-v1, namespace: game}
spec: {address: 127.0.0.1, labels: {app: api}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: db-v1, namespace: game}
spec: {address: 127.0.0.1, labels: {app: db}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: web-v1, namespace: web}
spec: {address: 127.0.0.1, labels: {app: web}}
"#;

const PROVIDERS: &str = r#"
---
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |-
    extensionProviders:
    - name: otel
      opentelemetry: {service: observability/collector, port: 4317}
    - name: otel-http
      opentelemetry:
        service: 127.0.0.1
        port: 4318
        http: {path: /v1/traces, timeout: 2s, headers: [{name: x-token, value: abc}]}
    - name: zipkin
      zipkin: {service: zipkin.istio-system.svc.cluster.local, port: 9411}
    - name: file
      envoyFileAccessLog:
        path: /tmp/access.log
        logFormat: {labels: {code: "%RESPONSE_CODE%", flags: "%RESPONSE_FLAGS%"}}
"#;

fn compile_for(yaml: &str, workload: &str, ns: &str) -> ProxyConfig {
    let text = format!("{MESH}{yaml}");
    let loaded = weft_api::load_str(&text, "mesh.yaml");
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let errors = weft_api::validate_all(&loaded.resources);
    assert!(errors.is_empty(), "{errors:?}");
    let reg = Registry::build(&loaded.resources, &[]);
    compile(
        &loaded.resources,
        &reg,
        "cluster.local",
        &ProxyRef {
            role: Role::Sidecar,
            workload: workload.into(),
            namespace: ns.into(),
        },
    )
    .expect("compiles")
}

fn telemetry(name: &str, ns: &str, body: &str) -> String {
    format!("---\napiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{body}\n")
}

fn sampling(s: &SideTelemetry) -> Option<f64> {
    s.tracing.as_ref().map(|t| t.sampling_percent)
}

#[test]
fn nothing_configured_means_no_tracing_and_no_access_logs() {
    let cfg = compile_for("", "api-v1", "game");
    assert_eq!(
        (&cfg.telemetry.client, &cfg.telemetry.server),
        (&SideTelemetry::default(), &SideTelemetry::default())
    );
    // Providers alone turn nothing on: a Telemetry or defaultProviders must name one.
    let cfg = compile_for(PROVIDERS, "api-v1", "game");
    assert_eq!(
        (&cfg.telemetry.client, &cfg.telemetry.server),
        (&SideTelemetry::default(), &SideTelemetry::default())
    );
}

#[test]
fn tracing_levels_override_field_by_field() {
    let yaml = format!(
        "{PROVIDERS}{}{}{}",
        telemetry(
            "mesh-default",
            "istio-system",
            "  tracing:\n  - providers: [{name: otel}]\n    randomSamplingPercentage: 10\n    customTags:\n      team: {literal: {value: games}}\n"
        ),
        telemetry(
            "ns",
            "game",
            "  tracing:\n  - randomSamplingPercentage: 50\n"
        ),
        telemetry(
            "api-server",
            "game",
            "  selector: {matchLabels: {app: api}}\n  tracing:\n  - match: {mode: SERVER}\n    randomSamplingPercentage: 100\n    customTags:\n      tier: {header: {name: X-Tier, defaultValue: none}}\n      host: {environment: {name: HOSTNAME}}\n"
        ),
    );
    let api = compile_for(&yaml, "api-v1", "game");
    let t = &api.telemetry;
    assert_eq!(sampling(&t.client), Some(50.0), "namespace over root");
    assert_eq!(
        sampling(&t.server),
        Some(100.0),
        "workload SERVER over namespace"
    );
    let client = t.client.tracing.as_ref().unwrap();
    assert_eq!(client.provider, "otel", "the root's provider is inherited");
    assert_eq!(
        client.collector.address,
        "collector.observability.svc.cluster.local:4317"
    );
    assert_eq!(client.collector.http_path, None, "OTLP/gRPC");
    assert_eq!(
        client.custom_tags,
        [CustomTag {
            name: "team".into(),
            source: TagSource::Literal("games".into())
        }],
        "custom tags inherited from the root on the client side"
    );
    let server = t.server.tracing.as_ref().unwrap();
    assert_eq!(
        server.custom_tags.len(),
        2,
        "replaced whole (Istio's shallow merge): {:?}",
        server.custom_tags
    );
    assert!(server.custom_tags.contains(&CustomTag {
        name: "tier".into(),
        source: TagSource::Header {
            name: "x-tier".into(),
            default: Some("none".into())
        }
    }));
    assert!(server.report_spans && server.istio_tags && server.propagate);
    // db in the same namespace: no selector match, the namespace's value on both sides.
    let db = compile_for(&yaml, "db-v1", "game");
    assert_eq!(
        (
            sampling(&db.telemetry.client),
            sampling(&db.telemetry.server)
        ),
        (Some(50.0), Some(50.0))
    );
    // web: only the root's.
    let web = compile_for(&yaml, "web-v1", "web");
    assert_eq!(sampling(&web.telemetry.server), Some(10.0));
    assert!(
        api.not_enforced
            .iter()
            .all(|n| !n.resource.starts_with("Telemetry")),
        "{:?}",
        api.not_enforced
    );
}

#[test]
fn default_providers_and_defaults_of_a_provider_without_a_percentage() {
    let mesh = PROVIDERS.replace(
        "    extensionProviders:",
        "    defaultProviders: {tracing: [otel-http]}\n    extensionProviders:",
    );
    let cfg = compile_for(&mesh, "api-v1", "game");
    let t = cfg
        .telemetry
        .server
        .tracing
        .expect("defaultProviders.tracing switches tracing on");
    assert_eq!(t.sampling_percent, DEFAULT_SAMPLING_PERCENT, "Istio's 1%");
    assert_eq!(t.collector.address, "127.0.0.1:4318");
    assert_eq!(t.collector.http_path.as_deref(), Some("/v1/traces"));
    assert_eq!(t.collector.timeout_ms, 2000);
    // A lower level switches span reporting off; a zipkin provider sends Zipkin JSON to
    // Istio's default path with B3 headers.
    let yaml = format!(
        "{mesh}{}{}",
        telemetry("ns", "game", "  tracing:\n  - disableSpanReporting: true\n"),
        telemetry(
            "web",
            "web",
            "  tracing:\n  - providers: [{name: zipkin}]\n"
        ),
    );
    let api = compile_for(&yaml, "api-v1", "game");
    assert!(!api.telemetry.client.tracing.unwrap().report_spans);
    let web = compile_for(&yaml, "web-v1", "web");
    let z = web.telemetry.client.tracing.expect("a zipkin tracer");
    assert_eq!(z.collector.format, SpanFormat::Zipkin);
    assert_eq!(
        z.collector.address,
        "zipkin.istio-system.svc.cluster.local:9411"
    );
    assert_eq!(z.collector.http_path.as_deref(), Some("/api/v2/spans"));
    assert_eq!(z.propagation, Propagation::B3);
    assert!(!z.trace_id_64bit);
    let reported: Vec<&str> = web.not_enforced.iter().map(|n| n.what.as_str()).collect();
    assert!(
        !reported.iter().any(|w| w.contains("zipkin")),
        "{reported:?}"
    );
}

#[test]
fn the_legacy_mesh_switch_turns_access_logs_on_everywhere() {
    let mesh = "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\ndata:\n  mesh: |-\n    accessLogFile: /dev/stdout\n";
    let cfg = compile_for(mesh, "api-v1", "game");
    let logs = &cfg.telemetry.server.access_logs;
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].path, "/dev/stdout");
    assert_eq!(logs[0].format, LogFormat::Text(DEFAULT_TEXT_FORMAT.into()));
    assert_eq!(cfg.telemetry.client.access_logs, *logs);
    let json = format!("{mesh}    accessLogEncoding: JSON\n");
    let cfg = compile_for(&json, "api-v1", "game");
    let LogFormat::Json(labels) = &cfg.telemetry.client.access_logs[0].format else {
        panic!("JSON encoding")
    };
    assert!(labels.contains(&("response_flags".into(), "%RESPONSE_FLAGS%".into())));
    assert!(cfg.not_enforced.is_empty(), "{:?}", cfg.not_enforced);
}

#[test]
fn access_logging_levels_enable_disable_and_filter_per_mode() {
    let yaml = format!(
        "{PROVIDERS}{}{}{}",
        telemetry("mesh-default", "istio-system", "  accessLogging:\n  - providers: [{name: envoy}]\n"),
        telemetry("ns", "game", "  accessLogging:\n  - disabled: true\n"),
        telemetry(
            "api",
            "game",
            "  selector: {matchLabels: {app: api}}\n  accessLogging:\n  - match: {mode: SERVER}\n    providers: [{name: file}]\n    filter: {expression: 'response.code >= 400'}\n"
        ),
    );
    // web: the root's built-in provider, stdout in MeshConfig's (default) format.
    let web = compile_for(&yaml, "web-v1", "web");
    let logs = &web.telemetry.client.access_logs;
    assert_eq!(
        (logs.len(), logs[0].provider.as_str(), logs[0].path.as_str()),
        (1, "envoy", "/dev/stdout")
    );
    // db: the namespace disables the inherited provider.
    let db = compile_for(&yaml, "db-v1", "game");
    assert!(
        db.telemetry.client.access_logs.is_empty() && db.telemetry.server.access_logs.is_empty()
    );
    // api: SERVER gets the workload's file provider with its filter; CLIENT stays off.
    let api = compile_for(&yaml, "api-v1", "game");
    assert!(
        api.telemetry.client.access_logs.is_empty(),
        "{:?}",
        api.telemetry.client
    );
    let server = &api.telemetry.server.access_logs;
    assert_eq!(server.len(), 1, "{server:?}");
    assert_eq!(server[0].path, "/tmp/access.log");
    assert_eq!(server[0].filter.as_deref(), Some("response.code >= 400"));
    assert_eq!(
        server[0].format,
        LogFormat::Json(vec![
            ("code".into(), "%RESPONSE_CODE%".into()),
            ("flags".into(), "%RESPONSE_FLAGS%".into())
        ])
    );
}

#[test]
fn what_is_not_built_is_reported_by_name() {
    let yaml = format!(
        "{PROVIDERS}{}",
        telemetry(
            "ns",
            "game",
            "  metrics:\n  - overrides:\n    - match: {metric: REQUEST_COUNT}\n      disabled: true\n  tracing:\n  - providers: [{name: otel}]\n    customTags:\n      f: {formatter: {value: '%REQ(x)%'}}\n"
        ),
    );
    let cfg = compile_for(&yaml, "api-v1", "game");
    let reported: Vec<String> = cfg
        .not_enforced
        .iter()
        .filter(|n| n.resource == "Telemetry/game/ns")
        .map(|n| format!("{} {}", n.location, n.what))
        .collect();
    assert_eq!(reported, ["mesh.yaml:46 tracing[0].customTags.f.formatter"]);
    let mesh: Vec<&str> = cfg
        .not_enforced
        .iter()
        .filter(|n| n.resource.starts_with("MeshConfig"))
        .map(|n| n.what.as_str())
        .collect();
    assert_eq!(
        mesh,
        ["MeshConfig extensionProviders[1] otel-http opentelemetry.http.headers (not sent yet)",]
    );
}

#[test]
fn a_filter_outside_the_supported_cel_is_refused_where_it_is_written() {
    let yaml = format!(
        "{MESH}{}",
        telemetry("ns", "game", "  accessLogging:\n  - providers: [{name: envoy}]\n    filter: {expression: 'response.code >= 400 && size(request.path) > 1'}\n")
    );
    let loaded = weft_api::load_str(&yaml, "t.yaml");
    assert!(loaded.errors.is_empty());
    let errors = weft_api::validate_all(&loaded.resources);
    let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(text.len(), 1, "{text:?}");
    assert!(text[0].contains("t.yaml:"), "{}", text[0]);
    assert!(text[0].contains("unknown attribute `size`"), "{}", text[0]);
}

fn metric<'a>(s: &'a SideTelemetry, name: &str) -> Option<&'a metrics::MetricOverride> {
    s.metrics.get(name)
}

fn tags(o: Option<&metrics::MetricOverride>) -> Vec<(String, Option<String>)> {
    o.map(|o| {
        o.tags
            .iter()
            .map(|t| (t.name.clone(), t.value.clone()))
            .collect()
    })
    .unwrap_or_default()
}

#[test]
fn metric_overrides_merge_by_level_mode_metric_and_tag() {
    let yaml = [
        telemetry(
            "mesh-default",
            "istio-system",
            "  metrics:\n  - providers: [{name: prometheus}]\n    overrides:\n    - tagOverrides:\n        request_host: {value: request.host}\n",
        ),
        telemetry(
            "ns",
            "game",
            "  metrics:\n  - overrides:\n    - match: {metric: REQUEST_COUNT, mode: SERVER}\n      tagOverrides:\n        request_host: {operation: REMOVE}\n    - match: {metric: REQUEST_SIZE}\n      disabled: true\n",
        ),
        telemetry(
            "api",
            "game",
            "  selector: {matchLabels: {app: api}}\n  metrics:\n  - overrides:\n    - match: {metric: REQUEST_SIZE, mode: CLIENT}\n      disabled: false\n",
        ),
    ]
    .concat();
    let cfg = compile_for(&yaml, "api-v1", "game");
    let (client, server) = (&cfg.telemetry.client, &cfg.telemetry.server);
    assert!(!client.metrics.disabled && !server.metrics.disabled);
    let host = ("request_host".to_string(), Some("request.host".to_string()));
    assert_eq!(
        tags(metric(client, "REQUEST_COUNT")),
        std::slice::from_ref(&host)
    );
    assert_eq!(
        tags(metric(server, "REQUEST_COUNT")),
        [("request_host".to_string(), None)]
    );
    assert_eq!(
        tags(metric(server, "RESPONSE_SIZE")),
        std::slice::from_ref(&host)
    );
    // The namespace disabled REQUEST_SIZE; the workload's Telemetry enabled it again for
    // its client side only.
    assert_eq!(
        metric(client, "REQUEST_SIZE").map(|o| o.disabled),
        Some(false)
    );
    assert_eq!(
        metric(server, "REQUEST_SIZE").map(|o| o.disabled),
        Some(true)
    );
    // Another workload of the namespace: no workload level.
    let db = compile_for(&yaml, "db-v1", "game");
    assert_eq!(
        metric(&db.telemetry.client, "REQUEST_SIZE").map(|o| o.disabled),
        Some(true)
    );
    // Another namespace: the root level only.
    let web = compile_for(&yaml, "web-v1", "web");
    assert_eq!(tags(metric(&web.telemetry.server, "REQUEST_COUNT")), [host]);
    // ALL_METRICS applies to TCP metrics too, which weft does not override: reported.
    assert!(web
        .not_enforced
        .iter()
        .any(|n| n.resource == "Telemetry/istio-system/mesh-default"
            && n.what.contains("on TCP metrics")));
}

#[test]
fn all_metrics_disabled_switches_a_mode_off_until_a_lower_level_overrides_it() {
    let yaml = [
        telemetry(
            "mesh-default",
            "istio-system",
            "  metrics:\n  - overrides:\n    - disabled: true\n",
        ),
        telemetry(
            "ns",
            "game",
            "  metrics:\n  - overrides:\n    - match: {metric: REQUEST_COUNT, mode: CLIENT}\n      disabled: false\n",
        ),
    ]
    .concat();
    let cfg = compile_for(&yaml, "api-v1", "game");
    assert!(
        !cfg.telemetry.client.metrics.disabled,
        "switched on again for CLIENT"
    );
    assert!(cfg.telemetry.server.metrics.disabled);
    let web = compile_for(&yaml, "web-v1", "web");
    assert!(web.telemetry.client.metrics.disabled && web.telemetry.server.metrics.disabled);
    // A provider other than prometheus in scope: no Istio metrics, and it is reported.
    let other = telemetry(
        "ns",
        "game",
        "  metrics:\n  - providers: [{name: stackdriver}]\n",
    );
    let cfg = compile_for(&other, "api-v1", "game");
    assert!(cfg.telemetry.client.metrics.disabled && cfg.telemetry.server.metrics.disabled);
    assert!(cfg
        .not_enforced
        .iter()
        .any(|n| n.what.starts_with("metrics[0].providers stackdriver")));
}

#[test]
fn a_tag_expression_outside_the_cel_subset_still_overrides_and_is_reported() {
    let yaml = telemetry(
        "ns",
        "game",
        "  metrics:\n  - overrides:\n    - match: {metric: REQUEST_COUNT}\n      tagOverrides:\n        ua: {value: \"size(request.path)\"}\n        m: {value: request.method}\n",
    );
    let cfg = compile_for(&yaml, "api-v1", "game");
    assert_eq!(
        tags(metric(&cfg.telemetry.client, "REQUEST_COUNT")),
        [
            ("m".to_string(), Some("request.method".to_string())),
            ("ua".to_string(), Some("size(request.path)".to_string()))
        ],
        "kept, so it replaces a parent's override of the tag (the proxy gives it `unknown`)"
    );
    assert!(cfg.not_enforced.iter().any(|n| n
        .what
        .starts_with("metrics[0].overrides[0].tagOverrides.ua.value")));
}
