//! One request's telemetry from start to end: the [`RequestRecord`] that rides on the
//! response body, what it counts on the way (header and body bytes, gRPC messages, the
//! gRPC status), and [`CountedBody`], the request-body wrapper that counts what the
//! client sent. Recorded when the record is dropped — also when a request ends abnormally.

use super::metrics::{Metrics, PeerLabels, Sample, NO_GRPC_STATUS};
use super::overrides::SideRules;
use super::ResponseFlags;
use crate::body::{Body, BoxError};
use bytes::Bytes;
use http::HeaderMap;
use hyper::body::{Frame, SizeHint};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::time::Instant;

/// Envoy's `HeaderMap::byteSize`: names and values, no framing. With the body bytes this
/// approximates the downstream wire bytes Istio's `istio_request_bytes` counts (HTTP/1
/// line framing and HTTP/2 frame headers and HPACK are not counted).
pub fn header_bytes(h: &HeaderMap) -> u64 {
    h.iter()
        .map(|(k, v)| (k.as_str().len() + v.len()) as u64)
        .sum()
}

/// Counts length-prefixed gRPC messages (1 flag byte, 4 length bytes, the message) across
/// body frames, without copying: per frame it skips from prefix to prefix.
#[derive(Debug, Default, Clone)]
pub struct GrpcFramer {
    /// Prefix bytes seen of the next message (0-4).
    prefix: [u8; 5],
    have: usize,
    /// Message bytes still to skip.
    skip: u64,
}

impl GrpcFramer {
    /// Feeds one data frame; returns how many messages started in it.
    pub fn feed(&mut self, mut data: &[u8]) -> u64 {
        let mut started = 0;
        while !data.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(data.len() as u64);
                self.skip -= n;
                data = &data[n as usize..];
                continue;
            }
            let n = (5 - self.have).min(data.len());
            self.prefix[self.have..self.have + n].copy_from_slice(&data[..n]);
            self.have += n;
            data = &data[n..];
            if self.have == 5 {
                started += 1;
                let len = u32::from_be_bytes([
                    self.prefix[1],
                    self.prefix[2],
                    self.prefix[3],
                    self.prefix[4],
                ]);
                self.skip = u64::from(len);
                self.have = 0;
            }
        }
        started
    }
}

/// What the request body wrapper counted (shared with the record).
#[derive(Debug, Default)]
pub struct Tally {
    bytes: AtomicU64,
    messages: AtomicU64,
}

/// One request's telemetry, recorded when dropped — when its response body has been sent
/// or abandoned, which is when Istio's proxies count a request and stop its duration clock.
/// A request whose response never finished (the client went away) gets Envoy's `DC` flag,
/// and `response_code="0"` when no response was started.
pub struct RequestRecord {
    metrics: Arc<Metrics>,
    /// Who called whom; phases replace it as they learn more (cluster, endpoint, peer).
    pub peers: Arc<PeerLabels>,
    start: Instant,
    sample: Sample,
    /// Made only for requests with a body (most GETs cost no allocation).
    request: Option<Arc<Tally>>,
    response: GrpcFramer,
    complete: bool,
    /// The Telemetry overrides of the request's side (`None`: Istio's standard metrics).
    rules: Option<Arc<SideRules>>,
    /// Telemetry tag values of this request (only where an override sets labels).
    values: Option<Arc<Vec<String>>>,
}

impl RequestRecord {
    /// Starts the record of one request under its side's Telemetry overrides (`rules`);
    /// it is counted when the record is dropped.
    pub fn start(
        metrics: &Arc<Metrics>,
        peers: Arc<PeerLabels>,
        grpc: bool,
        rules: Option<Arc<SideRules>>,
    ) -> RequestRecord {
        RequestRecord {
            metrics: metrics.clone(),
            peers,
            start: Instant::now(),
            sample: Sample {
                grpc,
                grpc_status: NO_GRPC_STATUS,
                ..Sample::default()
            },
            request: None,
            response: GrpcFramer::default(),
            complete: false,
            rules,
            values: None,
        }
    }

    /// The overrides whose expressions need this request's values, if any.
    pub fn rules_with_values(&self) -> Option<&Arc<SideRules>> {
        self.rules.as_ref().filter(|r| !r.exprs.is_empty())
    }

    /// The values of the side's tag expressions for this request.
    pub fn tag_values(&mut self, values: Vec<String>) {
        self.values = Some(self.metrics.intern_values(values));
    }

    /// The request's headers (their size counts toward `istio_request_bytes`).
    pub fn request_headers(&mut self, h: &HeaderMap) {
        self.sample.request_bytes = header_bytes(h);
    }

    /// Wraps the request body so what the client sends is counted.
    pub fn count_request_body(&mut self, body: Body) -> Body {
        let tally = self.request.get_or_insert_with(Arc::default).clone();
        http_body_util::BodyExt::boxed(CountedBody {
            inner: body,
            tally,
            framer: self.sample.grpc.then(GrpcFramer::default),
        })
    }

    /// The response status and headers.
    pub fn respond(&mut self, code: u16, headers: &HeaderMap) {
        self.sample.code = code;
        self.sample.response_bytes += header_bytes(headers);
        self.grpc_status(headers);
    }

    /// A response data frame went out.
    pub fn response_data(&mut self, data: &[u8]) {
        self.sample.response_bytes += data.len() as u64;
        if self.sample.grpc {
            self.sample.response_messages += self.response.feed(data);
        }
    }

    /// Response trailers went out.
    pub fn response_trailers(&mut self, trailers: &HeaderMap) {
        self.sample.response_bytes += header_bytes(trailers);
        self.grpc_status(trailers);
    }

    fn grpc_status(&mut self, h: &HeaderMap) {
        if !self.sample.grpc {
            return;
        }
        if let Some(s) = h.get("grpc-status").and_then(|v| v.to_str().ok()) {
            self.sample.grpc_status = s.parse().unwrap_or(NO_GRPC_STATUS);
        }
    }

    /// More flags (e.g. an error in the response body).
    pub fn flag(&mut self, flags: ResponseFlags) {
        self.sample.flags |= flags;
    }

    /// The response went out whole.
    /// The response went out whole: its last frame was handed to the connection, which
    /// is where Envoy's duration ends (not when the record is dropped, which a loaded
    /// scheduler can put later).
    pub fn complete(&mut self) {
        if !self.complete {
            self.complete = true;
            self.sample.ms = self.start.elapsed().as_secs_f64() * 1000.0;
        }
    }
}

impl Drop for RequestRecord {
    fn drop(&mut self) {
        if !self.complete {
            self.sample.flags |= ResponseFlags::DOWNSTREAM_CONNECTION_TERMINATION;
            self.sample.ms = self.start.elapsed().as_secs_f64() * 1000.0;
        }
        if let Some(t) = &self.request {
            self.sample.request_bytes += t.bytes.load(Ordering::Relaxed);
            self.sample.request_messages = t.messages.load(Ordering::Relaxed);
        }
        self.metrics.observe(
            &self.peers,
            &self.sample,
            self.rules.as_ref(),
            self.values.as_ref(),
        );
    }
}

/// A request body that counts its bytes (and gRPC messages) as they pass.
pub struct CountedBody {
    inner: Body,
    tally: Arc<Tally>,
    framer: Option<GrpcFramer>,
}

impl hyper::body::Body for CountedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let frame = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &frame {
            let n = match (f.data_ref(), f.trailers_ref()) {
                (Some(d), _) => {
                    if let Some(framer) = self.framer.as_mut() {
                        let m = framer.feed(d);
                        self.tally.messages.fetch_add(m, Ordering::Relaxed);
                    }
                    d.len() as u64
                }
                (None, Some(t)) => header_bytes(t),
                _ => 0,
            };
            self.tally.bytes.fetch_add(n, Ordering::Relaxed);
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grpc_message(len: usize) -> Vec<u8> {
        let mut m = vec![0u8];
        m.extend_from_slice(&(len as u32).to_be_bytes());
        m.extend(std::iter::repeat_n(7u8, len));
        m
    }

    #[test]
    fn grpc_messages_are_counted_across_any_frame_split() {
        let stream: Vec<u8> = [grpc_message(3), grpc_message(0), grpc_message(300)].concat();
        for split in 1..stream.len() {
            let mut f = GrpcFramer::default();
            let n = stream.chunks(split).map(|c| f.feed(c)).sum::<u64>();
            assert_eq!(n, 3, "frames of {split} bytes");
        }
    }

    #[test]
    fn requests_with_the_same_labels_share_one_series() {
        let m = Arc::new(Metrics::new());
        let mut peers = PeerLabels {
            reporter: "source".into(),
            ..Default::default()
        };
        peers.set_service("inventory.game.svc.cluster.local");
        let a = m.intern(peers.clone());
        let b = m.intern(peers);
        assert!(Arc::ptr_eq(&a, &b), "interned once");
        for _ in 0..3 {
            let mut r = RequestRecord::start(&m, a.clone(), false, None);
            r.respond(200, &HeaderMap::new());
            r.complete();
        }
        drop(RequestRecord::start(&m, b.clone(), true, None));
        let text = crate::telemetry::exposition::registry_text(&m);
        assert!(
            text.contains(r#"destination_service_name="inventory",destination_service_namespace="game",destination_cluster="",connection_security_policy="",request_protocol="http",response_code="200",grpc_response_status="",response_flags="-"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(r#"request_protocol="grpc",response_code="0",grpc_response_status="",response_flags="DC""#),
            "abandoned: DC and code 0\n{text}"
        );
    }
}
