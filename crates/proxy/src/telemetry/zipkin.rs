//! Span export to a Zipkin collector (MeshConfig `zipkin` providers): each batch becomes one
//! Zipkin JSON v2 array POSTed to the provider's path (`/api/v2/spans`), as Envoy's Zipkin
//! tracer sends it with `HTTP_JSON`. Tags are strings; the span's kind, ids, microsecond
//! timestamp and duration, this proxy's service as the local endpoint (no remote endpoint,
//! as Envoy's). Unlike Envoy's default `shared_span_context`, the server span has its own
//! id, a child of the client span.

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use opentelemetry::trace::SpanKind;
use opentelemetry_sdk::trace::SpanData;
use serde_json::{json, Map, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One Zipkin collector.
#[derive(Debug, Clone)]
pub struct ZipkinExporter {
    /// `host:port`, dialed in plaintext.
    pub address: String,
    pub path: String,
    /// The local endpoint's service name (`<canonical service>.<namespace>`).
    pub service: String,
}

impl ZipkinExporter {
    /// Sends one batch; an error says what failed, in words.
    pub async fn export(&self, batch: Vec<SpanData>) -> Result<(), String> {
        let spans: Vec<Value> = batch.iter().map(|s| span(s, &self.service)).collect();
        let body = serde_json::to_vec(&spans).map_err(|e| e.to_string())?;
        let tcp = tokio::net::TcpStream::connect(&self.address)
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| format!("HTTP handshake failed: {e}"))?;
        tokio::spawn(conn);
        let req = http::Request::post(&self.path)
            .header(http::header::HOST, &self.address)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("bad collector path {:?}: {e}", self.path))?;
        let resp = send
            .send_request(req)
            .await
            .map_err(|e| format!("the request failed: {e}"))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!("the collector answered {}", resp.status()))
        }
    }
}

fn micros(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_micros() as u64
}

/// Zipkin's trace id: 16 hex digits for a 64-bit id, else 32.
fn trace_id(id: u128) -> String {
    if id >> 64 == 0 {
        format!("{id:016x}")
    } else {
        format!("{id:032x}")
    }
}

/// One span as Zipkin JSON v2.
pub fn span(s: &SpanData, service: &str) -> Value {
    let ctx = &s.span_context;
    let mut tags = Map::new();
    for kv in &s.attributes {
        let v = kv.value.as_str().into_owned();
        tags.insert(kv.key.as_str().to_string(), Value::String(v));
    }
    let start = micros(s.start_time);
    let mut out = json!({
        "traceId": trace_id(u128::from_be_bytes(ctx.trace_id().to_bytes())),
        "id": format!("{:016x}", u64::from_be_bytes(ctx.span_id().to_bytes())),
        "name": s.name,
        "kind": match s.span_kind {
            SpanKind::Client => "CLIENT",
            _ => "SERVER",
        },
        "timestamp": start,
        "duration": micros(s.end_time).saturating_sub(start).max(1),
        "localEndpoint": {"serviceName": service},
        "tags": tags,
    });
    let parent = u64::from_be_bytes(s.parent_span_id.to_bytes());
    if parent != 0 {
        out["parentId"] = Value::String(format!("{parent:016x}"));
    }
    out
}
