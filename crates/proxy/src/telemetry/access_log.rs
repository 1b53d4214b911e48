//! Access logs: Envoy format strings (`%RESPONSE_CODE%`, `%REQ(X-REQUEST-ID)%`, …) compiled
//! once per push into pieces, rendered as a text line or a JSON object per request, and
//! written off the request path: each file has a bounded queue and one writer task; a full
//! queue drops the line and counts it.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

/// Lines waiting per file before new ones are dropped.
pub const QUEUE: usize = 4096;

/// A command operator of Envoy's access log format that weft renders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    StartTime,
    /// `%REQ(A?B)%`: header A, else B (`:method`, `:path`, `:authority` are pseudo-headers).
    Req(String, Option<String>, Option<usize>),
    Resp(String, Option<usize>),
    Protocol,
    ResponseCode,
    ResponseFlags,
    ResponseCodeDetails,
    ConnectionTerminationDetails,
    UpstreamTransportFailureReason,
    BytesReceived,
    BytesSent,
    Duration,
    UpstreamHost,
    UpstreamCluster,
    UpstreamLocalAddress,
    DownstreamLocalAddress,
    DownstreamRemoteAddress,
    DownstreamRemoteAddressWithoutPort,
    RequestedServerName,
    RouteName,
    TraceId,
    /// `%DYNAMIC_METADATA(envoy.common:access_log_hint)%`: `true` for AUDIT-marked requests.
    AccessLogHint,
}

/// A piece of a format: literal text or an operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Lit(String),
    Op(Op),
}

/// What a request offers the format.
pub trait Fields {
    /// The value of an operator; `None` renders as `-` (text) or `null` (JSON).
    fn field(&self, op: &Op) -> Option<String>;
}

fn op(name: &str, arg: Option<&str>, max: Option<usize>) -> Result<Op, String> {
    let simple = [
        ("START_TIME", Op::StartTime),
        ("PROTOCOL", Op::Protocol),
        ("RESPONSE_CODE", Op::ResponseCode),
        ("RESPONSE_FLAGS", Op::ResponseFlags),
        ("RESPONSE_CODE_DETAILS", Op::ResponseCodeDetails),
        (
            "CONNECTION_TERMINATION_DETAILS",
            Op::ConnectionTerminationDetails,
        ),
        (
            "UPSTREAM_TRANSPORT_FAILURE_REASON",
            Op::UpstreamTransportFailureReason,
        ),
        ("BYTES_RECEIVED", Op::BytesReceived),
        ("BYTES_SENT", Op::BytesSent),
        ("DURATION", Op::Duration),
        ("UPSTREAM_HOST", Op::UpstreamHost),
        ("UPSTREAM_CLUSTER", Op::UpstreamCluster),
        ("UPSTREAM_CLUSTER_RAW", Op::UpstreamCluster),
        ("UPSTREAM_LOCAL_ADDRESS", Op::UpstreamLocalAddress),
        ("DOWNSTREAM_LOCAL_ADDRESS", Op::DownstreamLocalAddress),
        ("DOWNSTREAM_REMOTE_ADDRESS", Op::DownstreamRemoteAddress),
        ("DOWNSTREAM_PEER_ADDRESS", Op::DownstreamRemoteAddress),
        (
            "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT",
            Op::DownstreamRemoteAddressWithoutPort,
        ),
        ("REQUESTED_SERVER_NAME", Op::RequestedServerName),
        ("ROUTE_NAME", Op::RouteName),
        ("TRACE_ID", Op::TraceId),
    ];
    if let Some((_, o)) = simple.iter().find(|(n, _)| *n == name) {
        return Ok(o.clone());
    }
    let arg = arg.ok_or_else(|| format!("%{name}% is not an operator weft renders"))?;
    match name {
        "REQ" => {
            let (a, b) = match arg.split_once('?') {
                Some((a, b)) => (a, Some(b.to_ascii_lowercase())),
                None => (arg, None),
            };
            Ok(Op::Req(a.to_ascii_lowercase(), b, max))
        }
        "RESP" => Ok(Op::Resp(arg.to_ascii_lowercase(), max)),
        "DYNAMIC_METADATA" if arg == "envoy.common:access_log_hint" => Ok(Op::AccessLogHint),
        "START_TIME" => Ok(Op::StartTime),
        _ => Err(format!("%{name}({arg})% is not an operator weft renders")),
    }
}

/// Compiles an Envoy format string; unknown operators are an error in words.
pub fn compile(format: &str) -> Result<Vec<Piece>, String> {
    let mut out = Vec::new();
    let mut rest = format;
    while let Some(i) = rest.find('%') {
        if i > 0 {
            out.push(Piece::Lit(rest[..i].to_string()));
        }
        let after = &rest[i + 1..];
        let Some(end) = after.find('%') else {
            return Err(format!("unclosed % in access log format {format:?}"));
        };
        let body = &after[..end];
        if body.is_empty() {
            out.push(Piece::Lit("%".into()));
        } else {
            let (head, max) = match body.rsplit_once("):") {
                Some((h, m)) => (format!("{h})"), m.parse().ok()),
                None => (body.to_string(), None),
            };
            let (name, arg) = match head.split_once('(') {
                Some((n, a)) => (n, a.strip_suffix(')')),
                None => (head.as_str(), None),
            };
            out.push(Piece::Op(op(name, arg, max)?));
        }
        rest = &after[end + 1..];
    }
    if !rest.is_empty() {
        out.push(Piece::Lit(rest.to_string()));
    }
    Ok(out)
}

/// A compiled line format.
#[derive(Debug, Clone)]
pub enum Format {
    Text(Vec<Piece>),
    Json(Vec<(String, Vec<Piece>)>),
}

impl Format {
    pub fn compile(f: &weft_model::telemetry::LogFormat) -> Result<Format, String> {
        use weft_model::telemetry::LogFormat as F;
        Ok(match f {
            F::Text(t) => Format::Text(compile(t)?),
            F::Json(labels) => Format::Json(
                labels
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), compile(v)?)))
                    .collect::<Result<_, String>>()?,
            ),
        })
    }

    /// One line (ending in `\n`).
    pub fn render(&self, f: &dyn Fields) -> String {
        match self {
            Format::Text(pieces) => {
                let mut s = String::with_capacity(256);
                for p in pieces {
                    match p {
                        Piece::Lit(l) => s.push_str(l),
                        Piece::Op(o) => s.push_str(f.field(o).as_deref().unwrap_or("-")),
                    }
                }
                if !s.ends_with('\n') {
                    s.push('\n');
                }
                s
            }
            Format::Json(labels) => {
                let mut m = serde_json::Map::new();
                for (k, pieces) in labels {
                    let v = match pieces.as_slice() {
                        [Piece::Op(o)] => json_value(o, f.field(o)),
                        _ => {
                            let mut s = String::new();
                            for p in pieces {
                                match p {
                                    Piece::Lit(l) => s.push_str(l),
                                    Piece::Op(o) => {
                                        s.push_str(f.field(o).as_deref().unwrap_or("-"))
                                    }
                                }
                            }
                            serde_json::Value::String(s)
                        }
                    };
                    m.insert(k.clone(), v);
                }
                let mut s = serde_json::Value::Object(m).to_string();
                s.push('\n');
                s
            }
        }
    }
}

/// Envoy's JSON formatter: numbers for counts and durations, `null` for absent values.
fn json_value(o: &Op, v: Option<String>) -> serde_json::Value {
    let Some(v) = v else {
        return serde_json::Value::Null;
    };
    let numeric = matches!(
        o,
        Op::ResponseCode | Op::BytesReceived | Op::BytesSent | Op::Duration
    );
    match v.parse::<u64>() {
        Ok(n) if numeric => n.into(),
        _ => v.into(),
    }
}

/// `2024-05-01T12:00:00.123Z` (Envoy's default START_TIME).
pub fn rfc3339_millis(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut s = String::with_capacity(24);
    let _ = write!(
        s,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    );
    s
}

/// Counters of one proxy's access logs.
#[derive(Debug, Default)]
pub struct LogStats {
    pub written: AtomicU64,
    /// Lines dropped because a file's queue was full.
    pub dropped: AtomicU64,
    /// Lines lost to a write error.
    pub failed: AtomicU64,
}

impl LogStats {
    /// OpenMetrics text for the admin port.
    pub fn render(&self, out: &mut String) {
        for (name, help, v) in [
            (
                "weft_access_log_lines_written",
                "Access log lines written",
                &self.written,
            ),
            (
                "weft_access_log_lines_dropped",
                "Access log lines dropped because the writer's queue was full",
                &self.dropped,
            ),
            (
                "weft_access_log_lines_failed",
                "Access log lines lost to write errors",
                &self.failed,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name}_total {}",
                v.load(Ordering::Relaxed)
            );
        }
    }
}

/// One file's queue and writer task.
#[derive(Debug)]
pub struct LogWriter {
    tx: mpsc::Sender<String>,
    stats: Arc<LogStats>,
}

impl LogWriter {
    /// Starts the writer for `path` (`/dev/stdout`: the proxy's standard output). Needs a
    /// runtime; the file is opened (created, appended to) by the task.
    pub fn start(path: &str, stats: Arc<LogStats>) -> LogWriter {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write_lines(path.to_string(), rx, stats.clone()));
        LogWriter { tx, stats }
    }

    pub fn push(&self, line: String) {
        if self.tx.try_send(line).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn open(path: &str) -> std::io::Result<Box<dyn tokio::io::AsyncWrite + Send + Unpin>> {
    if path == "/dev/stdout" {
        return Ok(Box::new(tokio::io::stdout()));
    }
    let f = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await?;
    Ok(Box::new(f))
}

async fn write_lines(path: String, mut rx: mpsc::Receiver<String>, stats: Arc<LogStats>) {
    let mut out = match open(&path).await {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(path = %path, error = %e, "cannot open the access log file; its lines are dropped (check the folder exists and is writable)");
            while rx.recv().await.is_some() {
                stats.failed.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
    };
    while let Some(first) = rx.recv().await {
        let mut buf = first;
        let mut n = 1;
        while let Ok(more) = rx.try_recv() {
            buf.push_str(&more);
            n += 1;
        }
        let res = match out.write_all(buf.as_bytes()).await {
            Ok(()) => out.flush().await,
            Err(e) => Err(e),
        };
        match res {
            Ok(()) => stats.written.fetch_add(n, Ordering::Relaxed),
            Err(e) => {
                tracing::warn!(path = %path, error = %e, lines = n, "writing the access log failed");
                stats.failed.fetch_add(n, Ordering::Relaxed)
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct F;
    impl Fields for F {
        fn field(&self, op: &Op) -> Option<String> {
            match op {
                Op::ResponseCode => Some("503".into()),
                Op::ResponseFlags => Some("UO".into()),
                Op::Req(h, _, _) if h == ":method" => Some("GET".into()),
                Op::Req(h, Some(alt), _) if h == "x-envoy-original-path" => {
                    Some(format!("alt:{alt}"))
                }
                _ => None,
            }
        }
    }

    #[test]
    fn compiles_and_renders_istios_default_formats() {
        let text = Format::compile(&weft_model::telemetry::LogFormat::Text(
            weft_model::telemetry::DEFAULT_TEXT_FORMAT.into(),
        ))
        .unwrap();
        let line = text.render(&F);
        assert!(
            line.starts_with("[-] \"GET alt::path -\" 503 UO - - \"-\" - - - - \"-\""),
            "{line}"
        );
        assert!(line.ends_with(" - -\n"), "{line}");
        let labels = weft_model::telemetry::DEFAULT_JSON_LABELS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let json = Format::compile(&weft_model::telemetry::LogFormat::Json(labels)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&json.render(&F)).unwrap();
        assert_eq!(v["response_code"], 503);
        assert_eq!(v["response_flags"], "UO");
        assert_eq!(v["upstream_host"], serde_json::Value::Null);
        let err = compile("%NOPE% x").unwrap_err();
        assert!(err.contains("%NOPE% is not an operator"), "{err}");
        assert!(compile("100%").unwrap_err().contains("unclosed"));
        assert_eq!(
            compile("%REQ(X-A):10%").unwrap(),
            [Piece::Op(Op::Req("x-a".into(), None, Some(10)))]
        );
    }

    #[test]
    fn start_time_is_rfc3339_utc() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_709_251_199_123);
        assert_eq!(rfc3339_millis(t), "2024-02-29T23:59:59.123Z");
        assert_eq!(
            rfc3339_millis(std::time::UNIX_EPOCH),
            "1970-01-01T00:00:00.000Z"
        );
    }
}
