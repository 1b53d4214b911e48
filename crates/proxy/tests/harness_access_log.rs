//! Access logs from in-process sidecars, read back from the files the config names:
//! Istio's default text line for a success (both sides), Envoy's flags and details for an
//! overflow (UO), a route timeout (UT), a fault abort (FI) and an RBAC denial, JSON
//! encoding, a filter that keeps only errors, and the AUDIT mark.

mod support;

use std::path::PathBuf;
use std::time::Duration;
use support::*;
use weft_model::telemetry::{
    AccessLog, LogFormat, SideTelemetry, TelemetryConfig, DEFAULT_TEXT_FORMAT,
};
use weft_model::{
    Authz, AuthzAction, AuthzAttr, AuthzField, AuthzPolicy, AuthzRule, Fault, RouteMatch,
    StringMatcher,
};

/// A log file in the temp folder, removed when dropped.
struct LogFile(PathBuf);

impl LogFile {
    fn new(tag: &str) -> LogFile {
        let p = std::env::temp_dir().join(format!(
            "weft-access-{tag}-{}-{}.log",
            std::process::id(),
            fastrand::u64(..)
        ));
        LogFile(p)
    }

    fn path(&self) -> String {
        self.0.display().to_string()
    }

    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.0)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Waits until the file holds `n` lines (lines of one file are written in order).
    async fn wait_for(&self, n: usize) -> Vec<String> {
        within(&format!("{n} lines in {}", self.0.display()), async {
            loop {
                let l = self.lines();
                if l.len() >= n {
                    return l;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
    }
}

impl Drop for LogFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn logging(file: &LogFile, format: LogFormat, filter: Option<&str>) -> TelemetryConfig {
    let side = SideTelemetry {
        metrics: Default::default(),
        tracing: None,
        access_logs: vec![AccessLog {
            provider: "file".into(),
            path: file.path(),
            format,
            filter: filter.map(str::to_string),
        }],
    };
    TelemetryConfig {
        client: side.clone(),
        server: side,
        workload: Default::default(),
    }
}

fn text() -> LogFormat {
    LogFormat::Text(DEFAULT_TEXT_FORMAT.into())
}

fn prefixed(prefix: &str, mut r: weft_model::Route) -> weft_model::Route {
    r.name = format!("route{prefix}");
    r.matches = vec![RouteMatch {
        uri: Some(StringMatcher::Prefix(prefix.into())),
        ..Default::default()
    }];
    r
}

async fn log_both(
    pair: &Pair,
    client_cfg: weft_model::ProxyConfig,
    client: &LogFile,
    server: &LogFile,
    server_authz: Authz,
) {
    let mut s = Config::sidecar(&pair.server).build();
    s.telemetry = logging(server, text(), None);
    s.authz = server_authz;
    pair.control.push_acked("server", &s).await;
    let mut c = client_cfg;
    c.telemetry = logging(client, text(), None);
    pair.control.push_acked("client", &c).await;
}

#[tokio::test]
async fn a_success_is_logged_in_istios_text_line_on_both_sides() {
    let app = App::echo("server").await;
    let pair = Pair::start(&app, |r| r).await;
    let (client, server) = (LogFile::new("client"), LogFile::new("server"));
    log_both(
        &pair,
        pair.config.clone().build(),
        &client,
        &server,
        Authz::default(),
    )
    .await;
    let req = http::Request::get("/items?x=1")
        .header(http::header::HOST, &pair.host)
        .header("user-agent", "harness/1")
        .header("x-request-id", "rid-7")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = send(pair.client.outbound(), req).await;
    assert_eq!(resp.status, 200);
    let line = &client.wait_for(1).await[0];
    assert!(
        line.starts_with("[20")
            && line.contains("Z] \"GET /items?x=1 HTTP/1.1\" 200 - via_upstream - \"-\" 0 "),
        "{line}"
    );
    let tail = format!(
        "\"-\" \"harness/1\" \"rid-7\" \"{}\" \"{}\" outbound|80||{} - ",
        pair.host,
        pair.server.inbound(),
        pair.host
    );
    assert!(line.contains(&tail), "{line}\nwanted {tail}");
    assert!(
        line.contains(&format!(" {} ", pair.client.outbound())),
        "downstream local address: {line}"
    );
    assert!(
        line.ends_with(&format!(" - to/outbound|80||{}", pair.host)),
        "route name last: {line}"
    );
    let fields: Vec<&str> = line.split(' ').collect();
    let sent: usize = fields[10].parse().unwrap();
    assert_eq!(
        sent,
        resp.body.len(),
        "BYTES_SENT is the response body: {line}"
    );
    let line = &server.wait_for(1).await[0];
    assert!(
        line.contains("\"GET /items?x=1 HTTP/2\" 200 - via_upstream"),
        "{line}"
    );
    assert!(
        line.contains(&format!("\"{}\" inbound|{}||", app.addr, app.addr.port())),
        "{line}"
    );
}

#[tokio::test]
async fn overflow_timeout_fault_and_denial_carry_envoys_flags_and_details() {
    let app = App::start("server", |_, seen| {
        if seen.path.starts_with("/slow") {
            Reply::echo(seen).delay(Duration::from_secs(3600))
        } else {
            Reply::echo(seen)
        }
    })
    .await;
    let pair = Pair::start(&app, |r| r).await;
    let mut full = cluster(&pair.host, 81, vec![endpoint(&pair.server)]);
    full.max_requests = Some(0);
    let mut slow = prefixed("/slow", route_to(&format!("outbound|80||{}", pair.host)));
    slow.timeout_ms = Some(100);
    let mut abort = prefixed("/abort", route_to(&format!("outbound|80||{}", pair.host)));
    abort.fault = Some(Fault {
        abort_status: Some(418),
        abort_percent: 100.0,
        ..Default::default()
    });
    let cfg = Config::sidecar(&pair.client)
        .route(&pair.host, prefixed("/full", route_to(&full.name)))
        .route(&pair.host, slow)
        .route(&pair.host, abort)
        .route(&pair.host, route_to(&format!("outbound|80||{}", pair.host)))
        .cluster(cluster(&pair.host, 80, vec![endpoint(&pair.server)]))
        .cluster(full)
        .build();
    let deny = AuthzPolicy {
        name: "test.deny-denied".into(),
        action: AuthzAction::Deny,
        dry_run: false,
        rules: vec![AuthzRule {
            from: vec![],
            to: vec![vec![AuthzField {
                attr: AuthzAttr::Path,
                values: vec!["/denied".into()],
                not_values: vec![],
            }]],
            when: vec![],
        }],
        provider: None,
    };
    let (client, server) = (LogFile::new("client"), LogFile::new("server"));
    log_both(
        &pair,
        cfg,
        &client,
        &server,
        Authz {
            policies: vec![deny],
            providers: vec![],
        },
    )
    .await;
    for (path, status) in [
        ("/full", 503),
        ("/slow", 504),
        ("/abort", 418),
        ("/denied", 403),
    ] {
        assert_eq!(pair.get(path).await.status, status, "{path}");
    }
    let lines = client.wait_for(4).await;
    let expect = [
        (
            "/full",
            " 503 UO upstream_reset_before_response_started{overflow} ",
        ),
        ("/slow", " 504 UT response_timeout "),
        ("/abort", " 418 FI fault_filter_abort "),
        ("/denied", " 403 - via_upstream "),
    ];
    for ((path, part), line) in expect.iter().zip(&lines) {
        assert!(
            line.contains(&format!("\"GET {path} HTTP/1.1\"")) && line.contains(part),
            "{path}: {line}"
        );
    }
    assert!(
        lines[0].contains("\"-\" outbound|81||"),
        "no upstream host for an overflow: {}",
        lines[0]
    );
    // The server saw /slow (the client gave up: DC) and /denied (refused there).
    let lines = server.wait_for(2).await;
    let denied = lines
        .iter()
        .find(|l| l.contains("/denied"))
        .expect("the denial is logged by the server");
    assert!(
        denied.contains(" 403 - rbac_access_denied_matched_policy[none] "),
        "{denied}"
    );
}

#[tokio::test]
async fn json_encoding_and_a_filter_that_keeps_only_errors() {
    let app = App::start("server", |_, seen| {
        if seen.path == "/bad" {
            Reply::status(500)
        } else {
            Reply::echo(seen)
        }
    })
    .await;
    let pair = Pair::start(&app, |r| r).await;
    let file = LogFile::new("errors");
    let labels = weft_model::telemetry::DEFAULT_JSON_LABELS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut c = pair.config.clone().build();
    c.telemetry = logging(
        &file,
        LogFormat::Json(labels),
        Some("response.code >= 400 || request.headers['x-log'] == 'yes'"),
    );
    pair.control.push_acked("client", &c).await;
    for _ in 0..3 {
        assert_eq!(pair.get("/fine").await.status, 200);
    }
    let req = http::Request::get("/forced")
        .header(http::header::HOST, &pair.host)
        .header("x-log", "yes")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    assert_eq!(send(pair.client.outbound(), req).await.status, 200);
    assert_eq!(pair.get("/bad").await.status, 500);
    let lines = file.wait_for(2).await;
    assert_eq!(lines.len(), 2, "only /forced and the error: {lines:#?}");
    let v: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(v["response_code"], 500);
    assert_eq!(v["path"], "/bad");
    assert_eq!(v["response_flags"], "-");
    assert_eq!(v["upstream_cluster"], format!("outbound|80||{}", pair.host));
    assert_eq!(
        v["upstream_transport_failure_reason"],
        serde_json::Value::Null
    );
    let first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(first["path"], "/forced");
}

#[tokio::test]
async fn an_audit_policy_marks_the_requests_it_matches() {
    let app = App::echo("server").await;
    let pair = Pair::start(&app, |r| r).await;
    let file = LogFile::new("audit");
    let mut s = Config::sidecar(&pair.server).build();
    let side = SideTelemetry {
        metrics: Default::default(),
        tracing: None,
        access_logs: vec![AccessLog {
            provider: "audit".into(),
            path: file.path(),
            format: LogFormat::Text(
                "%DYNAMIC_METADATA(envoy.common:access_log_hint)% %REQ(:PATH)% %RESPONSE_CODE%\n"
                    .into(),
            ),
            filter: None,
        }],
    };
    s.telemetry.server = side;
    s.authz = Authz {
        policies: vec![AuthzPolicy {
            name: "test.audit-admin".into(),
            action: AuthzAction::Audit,
            dry_run: false,
            rules: vec![AuthzRule {
                from: vec![],
                to: vec![vec![AuthzField {
                    attr: AuthzAttr::Path,
                    values: vec!["/admin/*".into()],
                    not_values: vec![],
                }]],
                when: vec![],
            }],
            provider: None,
        }],
        providers: vec![],
    };
    pair.control.push_acked("server", &s).await;
    assert_eq!(
        pair.get("/admin/users").await.status,
        200,
        "AUDIT does not decide"
    );
    assert_eq!(pair.get("/home").await.status, 200);
    assert_eq!(
        file.wait_for(2).await,
        ["true /admin/users 200", "- /home 200"]
    );
}
