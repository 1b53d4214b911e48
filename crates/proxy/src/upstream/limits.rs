//! Envoy's per-cluster circuit breakers (its resource manager) for the thresholds a
//! DestinationRule's `connectionPool` sets: connections, pending requests and concurrent
//! retries (requests, `http2MaxRequests`, are counted by the LB state's active picks).
//! Connector-neutral: any upstream connector (the mesh pool, an external one) asks here
//! before it connects or queues, and holds what it got for as long as Envoy would.
//!
//! With HTTP/1.1 semantics (Istio's default: the client's HTTP/1.1 stays HTTP/1.1) every
//! request in flight holds one connection slot until its response has ended, as an
//! HTTP/1.1 connection carries one request at a time; a request waiting for a slot, or
//! for its connection to be made, is pending.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use weft_model::PoolLimits;

/// One cluster's circuit breakers. A clone shares the counters (an endpoint update keeps
/// the cluster's open connections and pending requests counted).
#[derive(Debug, Default, Clone)]
pub struct ClusterLimits {
    /// `maxConnections` slots; none = unlimited.
    connections: Option<Arc<Semaphore>>,
    max_pending: Option<u64>,
    pending: Arc<AtomicU64>,
    max_retries: Option<u64>,
    retries: Arc<AtomicU64>,
    /// `http2MaxRequests` where no LB state counts requests (the inbound cluster).
    max_requests: Option<u64>,
    requests: Arc<AtomicU64>,
}

/// A connection slot of the cluster, held until the response has ended (empty when the
/// cluster has no connection limit or the request is multiplexed).
#[derive(Debug, Default)]
pub struct ConnSlot {
    _permit: Option<OwnedSemaphorePermit>,
}

/// A counted resource (a pending request or a scheduled retry), given back on drop.
#[derive(Debug)]
pub struct Held(Arc<AtomicU64>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Which breaker is open right now (Envoy's `circuit_breakers.default.*_open` gauges).
#[derive(Debug, Default, Clone, Copy)]
pub struct Open {
    pub cx: bool,
    pub pending: bool,
    pub retry: bool,
}

/// Takes one of `counter` unless it is at `max`.
fn take(counter: &Arc<AtomicU64>, max: Option<u64>) -> Option<Held> {
    let max = max.unwrap_or(u64::MAX);
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .ok()
        .map(|_| Held(counter.clone()))
}

impl ClusterLimits {
    pub fn new(l: &PoolLimits) -> ClusterLimits {
        let permits = |m: u32| usize::try_from(m).unwrap_or(Semaphore::MAX_PERMITS);
        ClusterLimits {
            connections: l
                .max_connections
                .map(|m| Arc::new(Semaphore::new(permits(m).min(Semaphore::MAX_PERMITS)))),
            max_pending: l.max_pending.map(u64::from),
            pending: Arc::default(),
            max_retries: l.max_retries.map(u64::from),
            retries: Arc::default(),
            max_requests: None,
            requests: Arc::default(),
        }
    }

    /// With a request limit of its own (`http2MaxRequests`), for a cluster without LB state.
    pub fn with_max_requests(mut self, max: Option<u32>) -> ClusterLimits {
        self.max_requests = max.map(u64::from);
        self
    }

    /// A request place (`None`: the request limit is reached).
    pub fn request(&self) -> Option<Held> {
        take(&self.requests, self.max_requests)
    }

    /// A connection slot if one is free now (`None`: `maxConnections` is reached, Envoy's
    /// `upstream_cx_overflow`).
    pub fn try_slot(&self) -> Option<ConnSlot> {
        match &self.connections {
            None => Some(ConnSlot { _permit: None }),
            Some(s) => s
                .clone()
                .try_acquire_owned()
                .ok()
                .map(|p| ConnSlot { _permit: Some(p) }),
        }
    }

    /// Waits for a connection slot (the caller holds a pending place meanwhile).
    pub async fn slot(&self) -> ConnSlot {
        match &self.connections {
            None => ConnSlot { _permit: None },
            // The semaphore is never closed.
            Some(s) => ConnSlot {
                _permit: s.clone().acquire_owned().await.ok(),
            },
        }
    }

    /// A pending place (`None`: `http1MaxPendingRequests` is reached; the request
    /// overflows).
    pub fn pending(&self) -> Option<Held> {
        take(&self.pending, self.max_pending)
    }

    /// A retry place (`None`: `maxRetries` retries are scheduled already).
    pub fn retry(&self) -> Option<Held> {
        take(&self.retries, self.max_retries)
    }

    /// Which breakers are open now.
    pub fn open(&self) -> Open {
        let at =
            |c: &AtomicU64, max: Option<u64>| max.is_some_and(|m| c.load(Ordering::Relaxed) >= m);
        Open {
            cx: self
                .connections
                .as_ref()
                .is_some_and(|s| s.available_permits() == 0),
            pending: at(&self.pending, self.max_pending),
            retry: at(&self.retries, self.max_retries),
        }
    }
}

/// A response body that holds what its request took (a connection slot, a request place)
/// until it ends or is dropped.
pub struct Holding<T> {
    inner: crate::body::Body,
    held: Option<T>,
}

impl<T> Holding<T> {
    pub fn new(inner: crate::body::Body, held: T) -> Holding<T> {
        Holding {
            inner,
            held: Some(held),
        }
    }
}

impl<T: Unpin> hyper::body::Body for Holding<T> {
    type Data = bytes::Bytes;
    type Error = crate::body::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, std::task::Poll::Ready(None)) || self.inner.is_end_stream() {
            self.held = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(cx: u32, pending: u32, retries: u32) -> ClusterLimits {
        ClusterLimits::new(&PoolLimits {
            max_connections: Some(cx),
            max_pending: Some(pending),
            max_retries: Some(retries),
            ..Default::default()
        })
    }

    #[test]
    fn slots_pending_places_and_retries_are_bounded_and_given_back() {
        let l = limits(1, 1, 0);
        let a = l.try_slot().expect("first slot");
        assert!(l.try_slot().is_none() && l.open().cx);
        let p = l.pending().expect("one pending place");
        assert!(l.pending().is_none() && l.open().pending);
        assert!(l.retry().is_none() && l.open().retry);
        drop((a, p));
        assert!(l.try_slot().is_some() && l.pending().is_some());
        assert!(!l.open().cx && !l.open().pending);
    }

    #[test]
    fn no_thresholds_mean_unlimited() {
        let l = ClusterLimits::new(&PoolLimits::default());
        let held: Vec<_> = (0..1000)
            .map(|_| (l.try_slot(), l.pending(), l.retry()))
            .collect();
        assert!(held
            .iter()
            .all(|(s, p, r)| s.is_some() && p.is_some() && r.is_some()));
        let o = l.open();
        assert!(!o.cx && !o.pending && !o.retry);
    }

    #[tokio::test]
    async fn a_waiting_request_gets_the_slot_given_back() {
        let l = Arc::new(limits(1, 1, 1));
        let first = l.try_slot().unwrap();
        let waiter = {
            let l = l.clone();
            tokio::spawn(async move { l.slot().await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(first);
        let slot = waiter.await.unwrap();
        assert!(l.try_slot().is_none(), "the waiter holds the slot");
        drop(slot);
        assert!(l.try_slot().is_some());
    }
}
