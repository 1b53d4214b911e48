//! Istio's TCP metrics with Istio's labels (both reporters): `istio_tcp_connections_opened_total`,
//! `istio_tcp_connections_closed_total`, `istio_tcp_received_bytes_total` (from the
//! downstream) and `istio_tcp_sent_bytes_total` (to the downstream). Envoy's stats filter
//! reports a long connection's bytes periodically; here the byte counters grow with every
//! read batch (one atomic add on a counter handle looked up at open), so a scrape always
//! sees what has been carried so far. A connection refused before any byte flowed (no
//! route, overflow, no healthy upstream, connect failure) is counted opened and closed
//! with its Envoy flag.

use super::overrides::{SeriesLabels, SideRules};
use super::{PeerLabels, ResponseFlags};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use std::sync::{Arc, RwLock};

/// Istio's TCP labels: who called whom, `request_protocol="tcp"` and the flags.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet, Default)]
pub struct TcpLabels {
    #[prometheus(flatten)]
    pub peers: PeerLabels,
    pub request_protocol: String,
    pub response_flags: String,
}

type Series = Family<SeriesLabels<TcpLabels>, Counter>;

/// The four TCP families of one proxy.
pub struct TcpMetrics {
    opened: Series,
    closed: Series,
    sent: Series,
    received: Series,
    recording: bool,
    /// Telemetry overrides of the client and server side (`None`: standard).
    rules: RwLock<[Option<Arc<SideRules>>; 2]>,
}

/// Family `i`'s labels under `rules` (`None`: that family is off); `base` is Istio's
/// standard set, built once per connection.
fn series(
    rules: Option<&SideRules>,
    i: usize,
    base: &TcpLabels,
) -> Option<SeriesLabels<TcpLabels>> {
    match rules {
        None => Some(SeriesLabels::Standard(base.clone())),
        Some(r) => r.tcp_labels(i, base.clone()),
    }
}

/// `family`'s counter for these labels, detached (counting nowhere) when it is off.
fn counter(family: &Series, labels: Option<SeriesLabels<TcpLabels>>) -> Counter {
    labels.map_or_else(Counter::default, |l| family.get_or_create(&l).clone())
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
            rules: RwLock::default(),
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

    /// Sets the Telemetry overrides of each side (for connections opened from now on).
    pub fn set_rules(&self, client: Option<Arc<SideRules>>, server: Option<Arc<SideRules>>) {
        *self.rules.write().unwrap_or_else(|p| p.into_inner()) = [client, server];
    }

    fn rules_for(&self, peers: &PeerLabels) -> Option<Arc<SideRules>> {
        let side = usize::from(peers.reporter == "destination");
        self.rules.read().unwrap_or_else(|p| p.into_inner())[side].clone()
    }

    /// A connection that carries bytes: counted opened now, closed when the record drops.
    pub fn open(&self, peers: Arc<PeerLabels>) -> TcpRecord {
        let rules = self.rules_for(&peers);
        let none = ResponseFlags::NONE;
        // Without recording the counters are detached: nothing shows, nothing branches.
        let (sent, received) = if self.recording {
            let r = rules.as_deref();
            let base = labels(&peers, none);
            counter(&self.opened, series(r, 0, &base)).inc();
            (
                counter(&self.sent, series(r, 2, &base)),
                counter(&self.received, series(r, 3, &base)),
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
            rules,
        }
    }

    /// A connection refused before it carried anything: opened and closed with `flags`.
    pub fn refused(&self, peers: &PeerLabels, flags: ResponseFlags) {
        if !self.recording {
            return;
        }
        let rules = self.rules_for(peers);
        let r = rules.as_deref();
        let base = labels(peers, flags);
        counter(&self.opened, series(r, 0, &base)).inc();
        counter(&self.closed, series(r, 1, &base)).inc();
    }
}

/// One open connection's counters; counts the close when dropped.
pub struct TcpRecord {
    sent: Counter,
    received: Counter,
    closed: Series,
    peers: Arc<PeerLabels>,
    flags: ResponseFlags,
    recording: bool,
    rules: Option<Arc<SideRules>>,
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
            let base = labels(&self.peers, self.flags);
            let l = series(self.rules.as_deref(), 1, &base);
            counter(&self.closed, l).inc();
        }
    }
}
