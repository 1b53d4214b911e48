//! Tracing and access logging as a push configures them, compiled when a config is applied
//! ([`Observe::compile`]): per side (client: gateway and outbound; server: inbound) the
//! tracer — sampling, tags, the collector's span queue —, the access log sinks, each a
//! compiled format, its filter and its file's writer, and the metric overrides. Queues and writers live in the
//! proxy-wide [`Observe`] and are reused by every push that names the same collector or file.

use super::access_log::{Format, LogStats, LogWriter};
use super::export::{SpanQueue, TraceStats};
use super::overrides::SideRules;
use opentelemetry::KeyValue;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use weft_model::telemetry::{SideTelemetry, TagSource, TelemetryConfig, TracingSpec, WorkloadTags};

/// The proxy-wide export queues, log writers and their counters.
#[derive(Debug, Default)]
pub struct Observe {
    queues: Mutex<HashMap<String, Arc<SpanQueue>>>,
    writers: Mutex<HashMap<String, Arc<LogWriter>>>,
    pub traces: Arc<TraceStats>,
    pub logs: Arc<LogStats>,
}

/// The tracer of one side.
#[derive(Debug)]
pub struct Tracer {
    pub spec: TracingSpec,
    /// `None` when span reporting is disabled (decide and propagate only).
    pub queue: Option<Arc<SpanQueue>>,
    /// Tags every span of this proxy carries (Istio's, `node_id`, `component`, literal and
    /// environment custom tags).
    pub fixed: Vec<KeyValue>,
    /// Custom tags read from request headers: (tag, header, default).
    pub header_tags: Vec<(String, String, Option<String>)>,
}

/// One access log sink.
#[derive(Debug)]
pub struct Sink {
    pub format: Format,
    pub filter: Option<weft_model::cel::Expr>,
    pub writer: Arc<LogWriter>,
}

/// What one side does.
#[derive(Debug, Default)]
pub struct Side {
    pub tracer: Option<Tracer>,
    pub sinks: Vec<Sink>,
    /// Telemetry metric overrides (`None`: Istio's standard metrics).
    pub metric_rules: Option<Arc<SideRules>>,
}

impl Side {
    /// Nothing to trace, log or evaluate for metric labels: requests on this side pay
    /// nothing.
    pub fn is_off(&self) -> bool {
        self.tracer.is_none()
            && self.sinks.is_empty()
            && self
                .metric_rules
                .as_ref()
                .is_none_or(|r| r.exprs.is_empty())
    }
}

/// Both sides, as the active config holds them.
#[derive(Debug, Default, Clone)]
pub struct Compiled {
    pub client: Arc<Side>,
    pub server: Arc<Side>,
}

impl Observe {
    /// Compiles a push's telemetry; an unknown format operator or a bad filter is an error
    /// in words (the push is refused). Needs a runtime (queues and writers start tasks).
    pub fn compile(&self, t: &TelemetryConfig, node_id: &str) -> Result<Compiled, String> {
        Ok(Compiled {
            client: Arc::new(self.side(&t.client, &t.workload, node_id)?),
            server: Arc::new(self.side(&t.server, &t.workload, node_id)?),
        })
    }

    fn side(&self, s: &SideTelemetry, w: &WorkloadTags, node_id: &str) -> Result<Side, String> {
        let tracer = match &s.tracing {
            Some(spec) => Some(self.tracer(spec, w, node_id)?),
            None => None,
        };
        let mut sinks = Vec::new();
        for l in &s.access_logs {
            let format = Format::compile(&l.format)
                .map_err(|e| format!("access log provider {}: {e}", l.provider))?;
            let filter = match &l.filter {
                Some(f) => Some(weft_model::cel::parse(f).map_err(|e| {
                    format!("access log provider {} filter {f:?}: {e}", l.provider)
                })?),
                None => None,
            };
            let writer = {
                let mut w = self.writers.lock().unwrap_or_else(|p| p.into_inner());
                w.entry(l.path.clone())
                    .or_insert_with(|| Arc::new(LogWriter::start(&l.path, self.logs.clone())))
                    .clone()
            };
            sinks.push(Sink {
                format,
                filter,
                writer,
            });
        }
        let metric_rules = SideRules::compile(&s.metrics).map(Arc::new);
        Ok(Side {
            tracer,
            sinks,
            metric_rules,
        })
    }

    fn tracer(
        &self,
        spec: &TracingSpec,
        w: &WorkloadTags,
        node_id: &str,
    ) -> Result<Tracer, String> {
        let queue = if spec.report_spans {
            let c = &spec.collector;
            let key = format!(
                "{}|{:?}|{}|{}.{}",
                c.address, c.http_path, c.timeout_ms, w.canonical_service, w.namespace
            );
            let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
            let q = match queues.get(&key) {
                Some(q) => q.clone(),
                None => {
                    let resource = opentelemetry_sdk::Resource::builder_empty()
                        .with_service_name(format!("{}.{}", w.canonical_service, w.namespace))
                        .build();
                    let q = Arc::new(SpanQueue::start(c, resource, self.traces.clone())?);
                    queues.insert(key, q.clone());
                    q
                }
            };
            Some(q)
        } else {
            None
        };
        let mut fixed = vec![
            KeyValue::new("component", "proxy"),
            KeyValue::new("node_id", node_id.to_string()),
        ];
        if spec.istio_tags {
            fixed.extend([
                KeyValue::new("istio.canonical_service", w.canonical_service.clone()),
                KeyValue::new("istio.canonical_revision", w.canonical_revision.clone()),
                KeyValue::new("istio.mesh_id", w.mesh_id.clone()),
                KeyValue::new("istio.namespace", w.namespace.clone()),
            ]);
        }
        let mut header_tags = Vec::new();
        for t in &spec.custom_tags {
            match &t.source {
                TagSource::Literal(v) => fixed.push(KeyValue::new(t.name.clone(), v.clone())),
                TagSource::Environment { name, default } => {
                    if let Some(v) = std::env::var(name).ok().or_else(|| default.clone()) {
                        fixed.push(KeyValue::new(t.name.clone(), v));
                    }
                }
                TagSource::Header { name, default } => {
                    header_tags.push((t.name.clone(), name.clone(), default.clone()))
                }
            }
        }
        Ok(Tracer {
            spec: spec.clone(),
            queue,
            fixed,
            header_tags,
        })
    }

    /// The counters, as OpenMetrics text lines.
    pub fn render(&self, out: &mut String) {
        self.traces.render(out);
        self.logs.render(out);
    }
}
