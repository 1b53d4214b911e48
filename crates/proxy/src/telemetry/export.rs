//! Span export off the request path: each collector has a bounded queue that requests push
//! finished spans into without waiting (a full queue drops the span and counts it), and
//! one task that batches the queue (up to [`MAX_BATCH`] spans or [`BATCH_DELAY`]) and sends
//! each batch with `opentelemetry-otlp` over OTLP/gRPC or OTLP/HTTP, or as Zipkin JSON
//! ([`super::zipkin`]), bounded by the provider's timeout. A dead or slow collector costs dropped spans, never request time.

use super::zipkin::ZipkinExporter;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{SpanData, SpanExporter as _};
use opentelemetry_sdk::Resource;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use weft_model::telemetry::{Collector, SpanFormat};

/// How one collector's batches are sent.
enum Exporter {
    Otlp(Box<opentelemetry_otlp::SpanExporter>),
    Zipkin(ZipkinExporter),
}

impl Exporter {
    async fn export(&self, batch: Vec<SpanData>) -> Result<(), String> {
        match self {
            Exporter::Otlp(e) => e.export(batch).await.map_err(|e| e.to_string()),
            Exporter::Zipkin(z) => z.export(batch).await,
        }
    }
}

/// Spans waiting for export per collector before new ones are dropped.
pub const QUEUE: usize = 2048;
/// Most spans in one export request.
pub const MAX_BATCH: usize = 512;
/// How long a batch waits to fill.
pub const BATCH_DELAY: Duration = Duration::from_millis(200);

/// Counters of one proxy's span export (served on the admin port).
#[derive(Debug, Default)]
pub struct TraceStats {
    pub exported: AtomicU64,
    /// Spans dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Spans in batches the collector did not take (unreachable, refused, timed out).
    pub failed: AtomicU64,
}

/// One collector's queue.
#[derive(Debug)]
pub struct SpanQueue {
    tx: mpsc::Sender<SpanData>,
    stats: Arc<TraceStats>,
}

impl SpanQueue {
    /// Starts the export task for `collector`; spans carry `resource`. Needs a runtime.
    pub fn start(
        collector: &Collector,
        resource: Resource,
        stats: Arc<TraceStats>,
    ) -> Result<SpanQueue, String> {
        let timeout = Duration::from_millis(collector.timeout_ms.max(1));
        let (tx, rx) = mpsc::channel(QUEUE);
        let address = collector.address.clone();
        if collector.format == SpanFormat::Zipkin {
            let service = resource
                .get(&opentelemetry::Key::new("service.name"))
                .map(|v| v.as_str().into_owned())
                .unwrap_or_default();
            let z = ZipkinExporter {
                address: collector.address.clone(),
                path: collector
                    .http_path
                    .clone()
                    .unwrap_or_else(|| "/api/v2/spans".into()),
                service,
            };
            tokio::spawn(run(
                rx,
                Exporter::Zipkin(z),
                timeout,
                stats.clone(),
                address,
            ));
            return Ok(SpanQueue { tx, stats });
        }
        let mut exporter = match &collector.http_path {
            None => opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(format!("http://{}", collector.address))
                .with_timeout(timeout)
                .build(),
            Some(path) => opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(format!("http://{}{path}", collector.address))
                .with_timeout(timeout)
                .with_headers(Default::default())
                .build(),
        }
        .map_err(|e| {
            format!(
                "the OTLP exporter for collector {} could not be built: {e}",
                collector.address
            )
        })?;
        exporter.set_resource(&resource);
        tokio::spawn(run(
            rx,
            Exporter::Otlp(Box::new(exporter)),
            timeout,
            stats.clone(),
            address,
        ));
        Ok(SpanQueue { tx, stats })
    }

    /// Queues a finished span; drops (and counts) it when the queue is full.
    pub fn push(&self, span: SpanData) {
        if self.tx.try_send(span).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn run(
    mut rx: mpsc::Receiver<SpanData>,
    exporter: Exporter,
    timeout: Duration,
    stats: Arc<TraceStats>,
    address: String,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let until = tokio::time::Instant::now() + BATCH_DELAY;
        while batch.len() < MAX_BATCH {
            match tokio::time::timeout_at(until, rx.recv()).await {
                Ok(Some(s)) => batch.push(s),
                Ok(None) | Err(_) => break,
            }
        }
        let n = batch.len() as u64;
        match tokio::time::timeout(timeout, exporter.export(batch)).await {
            Ok(Ok(())) => {
                stats.exported.fetch_add(n, Ordering::Relaxed);
            }
            Ok(Err(e)) => {
                stats.failed.fetch_add(n, Ordering::Relaxed);
                tracing::warn!(collector = %address, spans = n, error = %e, "span export failed; the spans are lost");
            }
            Err(_) => {
                stats.failed.fetch_add(n, Ordering::Relaxed);
                tracing::warn!(collector = %address, spans = n, "span export timed out; the spans are lost");
            }
        }
    }
}

impl TraceStats {
    /// OpenMetrics text for the admin port.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        for (name, help, v) in [
            (
                "weft_tracing_spans_exported",
                "Spans the collector accepted",
                &self.exported,
            ),
            (
                "weft_tracing_spans_dropped",
                "Spans dropped because the export queue was full",
                &self.dropped,
            ),
            (
                "weft_tracing_spans_failed",
                "Spans in batches the collector did not take",
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
