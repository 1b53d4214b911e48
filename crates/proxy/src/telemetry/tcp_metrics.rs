//! Istio's TCP metrics with Istio's labels (both reporters): `istio_tcp_connections_opened_total`,
//! `istio_tcp_connections_closed_total`, `istio_tcp_received_bytes_total` (from the
//! downstream) and `istio_tcp_sent_bytes_total` (to the downstream). Envoy's stats filter
//! reports a long connection's bytes periodically; here the byte counters grow with every
//! read batch (one atomic add on a counter handle looked up at open), so a scrape always
//! sees what has been carried so far. A connection refused before any byte flowed (no
//! route, overflow, no healthy upstream, connect failure) is counted opened and closed
//! with its Envoy flag.

use super::{PeerLabels, ResponseFlags};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use std::sync::Arc;

/// Istio's TCP labels: who called whom, `request_protocol="tcp"` and the flags.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet, Default)]
pub struct TcpLabels {
    #[prometheus(flatten)]
    pub peers: PeerLabels,
    pub request_protocol: String,
    pub response_flags: String,
}

/// The four TCP families of one proxy.
pub struct TcpMetrics {
    opened: Family<TcpLabels, Counter>,
    closed: Family<TcpLabels, Counter>,
    sent: Family<TcpLabels, Counter>,
    received: Family<TcpLabels, Counter>,
    recording: bool,
}

fn labels(peers: &PeerLabels, flags: ResponseFlags) -> TcpLabels {
    TcpLabels {
        peers: peers.clone(),
        request_protocol: "tcp".into(),
        response_flags: flags.render(),
    }
}

impl TcpMetrics {
    /// Registers the families in the proxy's registry.
    pub fn register(registry: &mut Registry, recording: bool) -> TcpMetrics {
        let m = TcpMetrics {
            opened: Family::default(),
            closed: Family::default(),
            sent: Family::default(),
            received: Family::default(),
            recording,
        };
        registry.register(
            "istio_tcp_connections_opened",
            "TCP connections opened",
            m.opened.clone(),
        );
        registry.register(
            "istio_tcp_connections_closed",
            "TCP connections closed",
            m.closed.clone(),
        );
        registry.register(
            "istio_tcp_sent_bytes",
            "Bytes sent to the downstream on TCP connections",
            m.sent.clone(),
        );
        registry.register(
            "istio_tcp_received_bytes",
            "Bytes received from the downstream on TCP connections",
            m.received.clone(),
        );
        m
    }

    /// A connection that carries bytes: counted opened now, closed when the record drops.
    pub fn open(&self, peers: Arc<PeerLabels>) -> TcpRecord {
        let l = labels(&peers, ResponseFlags::NONE);
        // Without recording the counters are detached: nothing shows, nothing branches.
        let (sent, received) = if self.recording {
            self.opened.get_or_create(&l).inc();
            (
                self.sent.get_or_create(&l).clone(),
                self.received.get_or_create(&l).clone(),
            )
        } else {
            Default::default()
        };
        TcpRecord {
            sent,
            received,
            closed: self.closed.clone(),
            peers,
            flags: ResponseFlags::NONE,
            recording: self.recording,
        }
    }

    /// A connection refused before it carried anything: opened and closed with `flags`.
    pub fn refused(&self, peers: &PeerLabels, flags: ResponseFlags) {
        if !self.recording {
            return;
        }
        let l = labels(peers, flags);
        self.opened.get_or_create(&l).inc();
        self.closed.get_or_create(&l).inc();
    }
}

/// One open connection's counters; counts the close when dropped.
pub struct TcpRecord {
    sent: Counter,
    received: Counter,
    closed: Family<TcpLabels, Counter>,
    peers: Arc<PeerLabels>,
    flags: ResponseFlags,
    recording: bool,
}

impl TcpRecord {
    /// Bytes read from the downstream (and written upstream).
    pub fn received(&self, n: usize) {
        self.received.inc_by(n as u64);
    }

    /// Bytes read from the upstream (and written to the downstream).
    pub fn sent(&self, n: usize) {
        self.sent.inc_by(n as u64);
    }

    /// A flag for the close (e.g. the upstream reset the connection).
    pub fn flag(&mut self, flags: ResponseFlags) {
        self.flags |= flags;
    }
}

impl Drop for TcpRecord {
    fn drop(&mut self) {
        if self.recording {
            self.closed
                .get_or_create(&labels(&self.peers, self.flags))
                .inc();
        }
    }
}
