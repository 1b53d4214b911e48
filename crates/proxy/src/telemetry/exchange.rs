//! One request as tracing and access logs see it. [`Record`] is what the pipeline carries:
//! the metrics record plus, only when the request's side traces or logs, an [`Exchange`]
//! (one `Option` check otherwise). The exchange takes the caller's trace context and
//! writes this proxy's span into the request at the start; phases add what they learn
//! (route, cluster, upstream host, reply details, AUDIT mark); when the response body ends
//! or is abandoned it renders each access log line whose filter holds and queues the span.

use super::access_log::{rfc3339_millis, Fields, Op};
use super::observe::Side;
use super::trace_context::{self as ctx, Parent};
use super::{RequestRecord, ResponseFlags};
use http::{HeaderMap, Method, Version};
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::SpanData;
use std::borrow::Cow;
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::SystemTime;
use tokio::time::Instant;
use weft_model::cel::{Attr, Attributes, Value};

/// The pipeline's record of one request.
pub struct Record {
    metrics: RequestRecord,
    pub exchange: Option<Box<Exchange>>,
}

impl Record {
    pub fn new(metrics: RequestRecord, exchange: Option<Box<Exchange>>) -> Record {
        Record { metrics, exchange }
    }

    pub fn flag(&mut self, f: ResponseFlags) {
        self.metrics.flag(f);
        if let Some(x) = self.exchange.as_mut() {
            x.flags |= f;
        }
    }

    pub fn respond(&mut self, code: u16, headers: &http::HeaderMap) {
        self.metrics.respond(code, headers);
        if let Some(x) = self.exchange.as_mut() {
            x.code = code;
        }
    }

    pub fn complete(&mut self) {
        self.metrics.complete();
        if let Some(x) = self.exchange.as_mut() {
            x.complete = true;
        }
    }

    /// Response body bytes sent to the client.
    pub fn sent(&mut self, n: usize) {
        if let Some(x) = self.exchange.as_mut() {
            x.sent += n as u64;
        }
    }

    /// Envoy's `%RESPONSE_CODE_DETAILS%` for a reply the proxy made.
    pub fn details(&mut self, d: Cow<'static, str>) {
        if let Some(x) = self.exchange.as_mut() {
            x.details = d;
        }
    }
}

impl Drop for Record {
    /// Before the metrics record counts: the values of the side's metric tag expressions,
    /// from what the exchange saw of the request.
    fn drop(&mut self) {
        let (Some(rules), Some(x)) = (self.metrics.rules_with_values(), self.exchange.as_mut())
        else {
            return;
        };
        let rules = rules.clone();
        x.finish();
        let values = rules.values(&**x);
        self.metrics.tag_values(values);
    }
}

impl Deref for Record {
    type Target = RequestRecord;
    fn deref(&self) -> &RequestRecord {
        &self.metrics
    }
}

impl DerefMut for Record {
    fn deref_mut(&mut self) -> &mut RequestRecord {
        &mut self.metrics
    }
}

/// This proxy's span of the request.
#[derive(Debug, Clone, Copy)]
struct Span {
    trace_id: u128,
    span_id: u64,
    parent: u64,
    sampled: bool,
}

/// The downstream connection, as the log shows it.
pub struct Downstream {
    pub remote: SocketAddr,
    pub local: SocketAddr,
    pub sni: Option<Arc<str>>,
    /// Client span (gateway, outbound) or server span (inbound).
    pub client: bool,
}

/// What tracing and access logs know about one request.
pub struct Exchange {
    side: Arc<Side>,
    down: Downstream,
    start: SystemTime,
    started: Instant,
    method: Method,
    path: String,
    version: Version,
    authority: String,
    headers: HeaderMap,
    received: u64,
    sent: u64,
    code: u16,
    flags: ResponseFlags,
    details: Cow<'static, str>,
    complete: bool,
    span: Option<Span>,
    /// The span name: Istio's route decorator (`host:port/path*`).
    pub operation: String,
    pub route_name: Option<String>,
    pub cluster: Option<String>,
    pub upstream_host: Option<String>,
    /// Milliseconds from sending upstream to the response headers.
    pub upstream_ms: Option<u64>,
    /// An AUDIT AuthorizationPolicy matched (Envoy's `access_log_hint`).
    pub audit: bool,
}

impl Exchange {
    /// Starts the exchange of a request whose side traces or logs: decides sampling and
    /// writes this proxy's trace context into `headers` (which go upstream).
    pub fn start(
        side: Arc<Side>,
        down: Downstream,
        method: &Method,
        uri: &http::Uri,
        version: Version,
        headers: &mut HeaderMap,
        operation: String,
    ) -> Exchange {
        let span = side.tracer.as_ref().map(|t| {
            let mut rng = fastrand::Rng::new();
            let parent = ctx::extract_for(headers, t.spec.propagation);
            let sampled = ctx::decide(
                headers,
                parent.as_ref(),
                t.spec.sampling_percent,
                rng.f64() * 100.0,
            );
            let trace_id = parent.as_ref().map_or_else(
                || match t.spec.trace_id_64bit {
                    true => u128::from(ctx::new_span_id(&mut rng)),
                    false => ctx::new_trace_id(&mut rng),
                },
                |p| p.trace_id,
            );
            let span_id = ctx::new_span_id(&mut rng);
            if t.spec.propagate {
                let p = t.spec.propagation;
                ctx::inject_for(headers, trace_id, span_id, sampled, parent.as_ref(), p);
            }
            Span {
                trace_id,
                span_id,
                parent: parent.as_ref().map_or(0, |p: &Parent| p.span_id),
                sampled,
            }
        });
        let authority = uri
            .authority()
            .map(|a| a.to_string())
            .or_else(|| {
                headers
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_string)
            })
            .unwrap_or_default();
        let received = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(0);
        Exchange {
            side,
            down,
            start: SystemTime::now(),
            started: Instant::now(),
            method: method.clone(),
            path: uri
                .path_and_query()
                .map_or_else(|| "/".into(), |p| p.to_string()),
            version,
            authority,
            headers: headers.clone(),
            received,
            sent: 0,
            code: 0,
            flags: ResponseFlags::NONE,
            details: Cow::Borrowed("via_upstream"),
            complete: false,
            span,
            operation,
            route_name: None,
            cluster: None,
            upstream_host: None,
            upstream_ms: None,
            audit: false,
        }
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    fn protocol(&self) -> &'static str {
        match self.version {
            Version::HTTP_2 => "HTTP/2",
            Version::HTTP_10 => "HTTP/1.0",
            Version::HTTP_3 => "HTTP/3",
            _ => "HTTP/1.1",
        }
    }

    fn duration_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn span_data(&self, s: Span, t: &super::observe::Tracer) -> SpanData {
        let max = t.spec.max_tag_length as usize;
        let cut = |v: String| {
            if v.len() > max {
                v.chars().take(max).collect()
            } else {
                v
            }
        };
        let mut attrs = t.fixed.clone();
        let url = format!("http://{}{}", self.authority, self.path);
        attrs.extend([
            KeyValue::new("http.url", cut(url)),
            KeyValue::new("http.method", self.method.to_string()),
            KeyValue::new("http.protocol", self.protocol()),
            KeyValue::new("http.status_code", self.code.to_string()),
            KeyValue::new("response_flags", self.flags.render()),
            KeyValue::new("request_size", self.received.to_string()),
            KeyValue::new("response_size", self.sent.to_string()),
            KeyValue::new("peer.address", self.down.remote.ip().to_string()),
            KeyValue::new("downstream_cluster", "-"),
            KeyValue::new(
                "upstream_cluster",
                self.cluster.clone().unwrap_or_else(|| "-".into()),
            ),
            KeyValue::new(
                "upstream_cluster.name",
                self.cluster.clone().unwrap_or_else(|| "-".into()),
            ),
        ]);
        for (k, v) in [
            ("guid:x-request-id", self.header("x-request-id")),
            ("user_agent", self.header("user-agent")),
            ("upstream_address", self.upstream_host.clone()),
        ] {
            if let Some(v) = v {
                attrs.push(KeyValue::new(k, cut(v)));
            }
        }
        for (tag, h, default) in &t.header_tags {
            if let Some(v) = self.header(h).or_else(|| default.clone()) {
                attrs.push(KeyValue::new(tag.clone(), cut(v)));
            }
        }
        let error = self.code >= 500 || self.code == 0;
        if error {
            attrs.push(KeyValue::new("error", "true"));
        }
        SpanData {
            span_context: SpanContext::new(
                TraceId::from(s.trace_id),
                SpanId::from(s.span_id),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: SpanId::from(s.parent),
            parent_span_is_remote: s.parent != 0,
            span_kind: if self.down.client {
                SpanKind::Client
            } else {
                SpanKind::Server
            },
            name: Cow::Owned(self.operation.clone()),
            start_time: self.start,
            end_time: SystemTime::now(),
            attributes: attrs,
            dropped_attributes_count: 0,
            events: Default::default(),
            links: Default::default(),
            status: if error {
                Status::error("")
            } else {
                Status::Unset
            },
            instrumentation_scope: InstrumentationScope::builder("weft").build(),
        }
    }
}

impl Exchange {
    /// Marks a response that never went out whole (Envoy's `DC`).
    fn finish(&mut self) {
        if !self.complete {
            self.flags |= ResponseFlags::DOWNSTREAM_CONNECTION_TERMINATION;
            if self.code == 0 {
                self.details = Cow::Borrowed("downstream_remote_disconnect");
            }
        }
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        self.finish();
        let side = self.side.clone();
        for sink in &side.sinks {
            if sink.filter.as_ref().is_none_or(|f| f.matches(&*self)) {
                sink.writer.push(sink.format.render(&*self));
            }
        }
        if let (Some(t), Some(s)) = (&side.tracer, self.span) {
            if let (true, Some(q)) = (s.sampled, &t.queue) {
                q.push(self.span_data(s, t));
            }
        }
    }
}

fn addr(a: SocketAddr) -> Option<String> {
    (a.port() != 0).then(|| a.to_string())
}

impl Fields for Exchange {
    fn field(&self, op: &Op) -> Option<String> {
        let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
        match op {
            Op::StartTime => Some(rfc3339_millis(self.start)),
            Op::Req(a, b, max) => {
                let get = |h: &str| match h {
                    ":method" => Some(self.method.to_string()),
                    ":path" => Some(self.path.clone()),
                    ":authority" | "host" => some(&self.authority),
                    ":scheme" => Some("http".into()),
                    h => self.header(h),
                };
                let v = get(a).or_else(|| b.as_deref().and_then(get))?;
                Some(match max {
                    Some(m) => v.chars().take(*m).collect(),
                    None => v,
                })
            }
            Op::Resp(h, _) if h == "x-envoy-upstream-service-time" => {
                self.upstream_ms.map(|m| m.to_string())
            }
            Op::Resp(..) => None,
            Op::Protocol => Some(self.protocol().into()),
            Op::ResponseCode => Some(self.code.to_string()),
            Op::ResponseFlags => Some(self.flags.render()),
            Op::ResponseCodeDetails => some(&self.details),
            Op::ConnectionTerminationDetails | Op::UpstreamTransportFailureReason => None,
            Op::UpstreamLocalAddress => None,
            Op::BytesReceived => Some(self.received.to_string()),
            Op::BytesSent => Some(self.sent.to_string()),
            Op::Duration => Some(self.duration_ms().to_string()),
            Op::UpstreamHost => self.upstream_host.clone(),
            Op::UpstreamCluster => self.cluster.clone(),
            Op::DownstreamLocalAddress => addr(self.down.local),
            Op::DownstreamRemoteAddress => addr(self.down.remote),
            Op::DownstreamRemoteAddressWithoutPort => Some(self.down.remote.ip().to_string()),
            Op::RequestedServerName => self.down.sni.as_deref().map(str::to_string),
            Op::RouteName => self.route_name.clone(),
            Op::TraceId => self.span.map(|s| format!("{:032x}", s.trace_id)),
            Op::AccessLogHint => self.audit.then(|| "true".into()),
        }
    }
}

impl Attributes for Exchange {
    fn get(&self, attr: Attr) -> Option<Value> {
        let s = |o: Option<String>| o.map(Value::Str);
        let int = |n: u64| Some(Value::Int(i64::try_from(n).unwrap_or(i64::MAX)));
        match attr {
            Attr::ResponseCode => int(u64::from(self.code)),
            Attr::ResponseFlags => int(self.flags.envoy_bits()),
            Attr::ResponseCodeDetails => Some(Value::Str(self.details.to_string())),
            Attr::ResponseSize => int(self.sent),
            Attr::RequestSize => int(self.received),
            Attr::RequestPath => Some(Value::Str(self.path.clone())),
            Attr::RequestUrlPath => Some(Value::Str(
                self.path.split('?').next().unwrap_or("").to_string(),
            )),
            Attr::RequestMethod => Some(Value::Str(self.method.to_string())),
            Attr::RequestHost => Some(Value::Str(self.authority.clone())),
            Attr::RequestScheme => Some(Value::Str("http".into())),
            Attr::RequestProtocol => Some(Value::Str(self.protocol().into())),
            Attr::RequestId => s(self.header("x-request-id")),
            Attr::RequestUserAgent => s(self.header("user-agent")),
            Attr::RequestDurationMs => int(self.duration_ms()),
            Attr::SourceAddress => Some(Value::Str(self.down.remote.to_string())),
            Attr::DestinationAddress => Some(Value::Str(self.down.local.to_string())),
            Attr::UpstreamAddress => s(self.upstream_host.clone()),
            Attr::ClusterName => s(self.cluster.clone()),
            Attr::RouteName => s(self.route_name.clone()),
            Attr::RequestHeaders | Attr::ResponseHeaders => None,
        }
    }

    fn header(&self, map: Attr, name: &str) -> Option<String> {
        match map {
            Attr::RequestHeaders => self.header(name),
            _ => None,
        }
    }
}
