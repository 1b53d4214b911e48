//! Load balancing over a cluster's endpoints — ROUND_ROBIN, LEAST_REQUEST (Envoy's
//! power-of-two-choices over active requests; LEAST_CONN is its alias) and RANDOM — plus
//! what decides which endpoints may be picked at all: outlier detection (consecutive 5xx /
//! gateway errors eject an endpoint for base × ejections, at most max_ejection_percent of
//! them, panic mode below min_health_percent), locality failover among the healthy ones
//! (`super::locality`), and the cluster's request limit (circuit breaker).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
// tokio's clock, so tests can run ejection windows on paused time.
use tokio::time::Instant;
use weft_model::{Cluster, Endpoint, LbPolicy, Outlier};

/// Envoy's `max_ejection_time` default.
const MAX_EJECTION: Duration = Duration::from_secs(300);

#[derive(Debug, Default, Clone)]
struct Health {
    consecutive_5xx: u32,
    consecutive_gateway: u32,
    /// Split local-origin errors: connect failures, resets and timeouts in a row.
    consecutive_local: u32,
    ejected_until: Option<Instant>,
    ejections: u32,
    /// Since when the ejection count has been decaying (end of the last ejection).
    healthy_since: Option<Instant>,
}

impl Health {
    /// Envoy lowers the ejection-time multiplier by one for every interval the endpoint
    /// stays healthy (applied lazily here).
    fn decay(&mut self, now: Instant, interval: Duration) {
        let Some(until) = self.ejected_until.filter(|t| *t <= now) else {
            return;
        };
        let since = self.healthy_since.unwrap_or(until).max(until);
        let steps = (now.duration_since(since).as_millis() / interval.as_millis().max(1)) as u32;
        if steps > 0 {
            self.ejections = self.ejections.saturating_sub(steps);
            self.healthy_since = Some(since + interval * steps);
        }
    }
}

/// Per-cluster balancing state.
#[derive(Debug)]
pub struct LbState {
    policy: LbPolicy,
    endpoints: Vec<Arc<Endpoint>>,
    cursor: AtomicUsize,
    active: Vec<Arc<AtomicU64>>,
    outlier: Option<Outlier>,
    max_requests: Option<u32>,
    /// The cluster's other circuit breakers (connections, pending requests, retries).
    pub limits: super::limits::ClusterLimits,
    health: Mutex<Vec<Health>>,
    /// The consistent-hash table, when the cluster hashes (`super::hashing`).
    table: Option<super::hashing::Table>,
    /// Locality priority levels (1 + the highest endpoint priority).
    levels: usize,
}

/// A stable hash (FNV-1a, then MurmurHash3's 64-bit finalizer for avalanche), so a key
/// maps to the same endpoint in every proxy and every run.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h = bytes.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    });
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51afd7ed558ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ceb9fe1a85ec53);
    h ^ (h >> 33)
}

/// Holds one active request on an endpoint until dropped.
#[derive(Debug)]
pub struct Pick {
    pub endpoint: Arc<Endpoint>,
    pub index: usize,
    active: Arc<AtomicU64>,
    /// The cluster connection slot the request holds (HTTP/1.1 semantics), given back
    /// with the pick when the response has ended.
    pub slot: super::limits::ConnSlot,
}

impl Drop for Pick {
    fn drop(&mut self) {
        self.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What outlier detection did about a try's outcome (Envoy's ejection counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ejection {
    None,
    /// The endpoint was ejected.
    Enforced,
    /// It would have been, but max_ejection_percent was reached.
    Overflow,
}

/// What happened to a try, for outlier detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The endpoint answered with this status.
    Status(u16),
    /// Connect failure, reset or timeout (counts as a 5xx and a gateway error, as in Envoy
    /// without split local-origin errors).
    LocalFailure,
}

impl LbState {
    pub fn new(c: &Cluster) -> LbState {
        LbState {
            policy: c.lb,
            endpoints: c.endpoints.iter().cloned().map(Arc::new).collect(),
            cursor: AtomicUsize::new(fastrand::usize(..c.endpoints.len().max(1))),
            active: c
                .endpoints
                .iter()
                .map(|_| Arc::new(AtomicU64::new(0)))
                .collect(),
            outlier: c.outlier.clone(),
            max_requests: c.max_requests,
            limits: super::limits::ClusterLimits::new(&c.limits),
            health: Mutex::new(vec![Health::default(); c.endpoints.len()]),
            table: c
                .hash
                .as_ref()
                .map(|_| super::hashing::Table::build(&c.hash_table, &c.endpoints)),
            levels: c
                .endpoints
                .iter()
                .map(|e| e.priority as usize + 1)
                .max()
                .unwrap_or(0),
        }
    }

    /// The state for `c` when only its endpoints changed since `old` was built (an endpoint
    /// joined, left or moved): as Envoy keeps a host's state across EDS updates, each
    /// endpoint still there (same address and identity) keeps its outlier state (ejection,
    /// error counts, ejection multiplier) and its active-request count, and the cluster its
    /// circuit-breaker counters and round-robin cursor. Any other change to the cluster is
    /// a new cluster with fresh state ([`LbState::new`]).
    pub fn carried(c: &Cluster, old: &LbState) -> LbState {
        let mut new = LbState::new(c);
        new.limits = old.limits.clone();
        new.cursor = AtomicUsize::new(old.cursor.load(Ordering::Relaxed));
        let key = |e: &Endpoint| (e.address.clone(), e.tls_identity().to_string());
        let before: std::collections::HashMap<_, usize> = old
            .endpoints
            .iter()
            .enumerate()
            .map(|(i, e)| (key(e), i))
            .collect();
        let old_health = old.health.lock().expect("health poisoned");
        let health = new.health.get_mut().expect("health poisoned");
        for (i, e) in new.endpoints.iter().enumerate() {
            if let Some(&j) = before.get(&key(e)) {
                health[i] = old_health[j].clone();
                new.active[i] = old.active[j].clone();
            }
        }
        drop(old_health);
        new
    }

    /// Whether picks need a hash key (consistent hashing).
    pub fn hashed(&self) -> bool {
        self.table.is_some()
    }

    /// True when the cluster's request limit is reached (Envoy's `UO` overflow).
    pub fn overflowing(&self) -> bool {
        let Some(max) = self.max_requests else {
            return false;
        };
        let active: u64 = self.active.iter().map(|a| a.load(Ordering::Relaxed)).sum();
        active >= u64::from(max)
    }

    /// Picks held now on all endpoints (for a TCP cluster: its open connections).
    pub fn active_total(&self) -> u64 {
        self.active.iter().map(|a| a.load(Ordering::Relaxed)).sum()
    }

    /// Indices that may be picked now.
    fn available(&self) -> Vec<usize> {
        let n = self.endpoints.len();
        let Some(o) = &self.outlier else {
            return (0..n).collect();
        };
        let now = Instant::now();
        let health = self.health.lock().expect("health poisoned");
        let up: Vec<usize> = (0..n)
            .filter(|i| health[*i].ejected_until.is_none_or(|t| t <= now))
            .collect();
        drop(health);
        // Panic mode: too few healthy endpoints, so ejections are ignored.
        if (up.len() as u64) * 100 < (n as u64) * u64::from(o.min_health_percent) {
            return (0..n).collect();
        }
        self.by_locality(up)
    }

    /// Locality failover: the healthy endpoints of one priority level, the level chosen by
    /// Envoy's priority loads (`super::locality`). Without levels, all of them.
    fn by_locality(&self, up: Vec<usize>) -> Vec<usize> {
        let levels = self.levels;
        if levels <= 1 {
            return up;
        }
        let counts: Vec<(usize, usize)> = (0..levels)
            .map(|p| {
                let at = |i: &usize| self.endpoints[*i].priority as usize == p;
                let all = (0..self.endpoints.len()).filter(at).count();
                (up.iter().filter(|i| at(i)).count(), all)
            })
            .collect();
        let loads = super::locality::loads(&counts);
        let p = super::locality::level(&loads, fastrand::u64(..100));
        let chosen: Vec<usize> = up
            .iter()
            .copied()
            .filter(|i| self.endpoints[*i].priority as usize == p)
            .collect();
        // Nothing healthy anywhere (loads all 0): Envoy's panic in the first level.
        if chosen.is_empty() {
            return up;
        }
        chosen
    }

    /// Chooses an endpoint, or `None` when none may be picked (Envoy's UH). With consistent
    /// hashing and a key, the table's entry for the key (or the next whose endpoint is
    /// available, `super::hashing`); without a key, a random available endpoint.
    pub fn pick_for(&self, key: Option<u64>) -> Option<Pick> {
        let (Some(key), Some(table)) = (key, &self.table) else {
            return self.pick();
        };
        let candidates = self.available();
        let i = table.lookup(key, |i| candidates.contains(&i))?;
        Some(self.take(i))
    }

    /// Chooses an endpoint, or `None` when none may be picked (Envoy's UH).
    pub fn pick(&self) -> Option<Pick> {
        let candidates = self.available();
        let n = candidates.len();
        if n == 0 {
            return None;
        }
        if self.table.is_some() {
            // Consistent hashing without a key: Envoy picks at random.
            let i = candidates[fastrand::usize(..n)];
            return Some(self.take(i));
        }
        let load = |i: usize| self.active[candidates[i]].load(Ordering::Relaxed);
        let k = match self.policy {
            LbPolicy::RoundRobin => self.cursor.fetch_add(1, Ordering::Relaxed) % n,
            LbPolicy::Random => fastrand::usize(..n),
            LbPolicy::LeastRequest if n == 1 => 0,
            LbPolicy::LeastRequest => {
                let a = fastrand::usize(..n);
                let mut b = fastrand::usize(..n - 1);
                if b >= a {
                    b += 1;
                }
                if load(b) < load(a) {
                    b
                } else {
                    a
                }
            }
        };
        let i = candidates[k];
        Some(self.take(i))
    }

    /// Counts one more active request on endpoint `i` (until the pick is dropped).
    fn take(&self, i: usize) -> Pick {
        self.active[i].fetch_add(1, Ordering::Relaxed);
        Pick {
            endpoint: Arc::clone(&self.endpoints[i]),
            index: i,
            active: self.active[i].clone(),
            slot: Default::default(),
        }
    }

    /// Records the outcome of a try on `pick`'s endpoint; may eject it.
    pub fn report(&self, pick: &Pick, outcome: Outcome) -> Ejection {
        let Some(o) = &self.outlier else {
            return Ejection::None;
        };
        let mut health = self.health.lock().expect("health poisoned");
        let h = &mut health[pick.index];
        let local = matches!(outcome, Outcome::LocalFailure);
        // Envoy's `split_external_local_origin_errors`: a local failure counts on its own
        // counter only (and any answer from the endpoint resets that counter).
        if o.split_local_origin {
            h.consecutive_local = if local { h.consecutive_local + 1 } else { 0 };
        }
        let (is_5xx, is_gateway) = match outcome {
            Outcome::Status(s) => (s >= 500, matches!(s, 502..=504)),
            Outcome::LocalFailure => (true, true),
        };
        if !(local && o.split_local_origin) {
            h.consecutive_5xx = if is_5xx { h.consecutive_5xx + 1 } else { 0 };
            h.consecutive_gateway = if is_gateway {
                h.consecutive_gateway + 1
            } else {
                0
            };
        }
        let tripped = (o.consecutive_5xx > 0 && h.consecutive_5xx >= o.consecutive_5xx)
            || (o.consecutive_gateway > 0 && h.consecutive_gateway >= o.consecutive_gateway)
            || (o.split_local_origin
                && o.consecutive_local_origin > 0
                && h.consecutive_local >= o.consecutive_local_origin);
        let now = Instant::now();
        if !tripped || h.ejected_until.is_some_and(|t| t > now) {
            return Ejection::None;
        }
        let n = health.len();
        let ejected = health
            .iter()
            .filter(|h| h.ejected_until.is_some_and(|t| t > now))
            .count();
        // Envoy ejects at least one endpoint whatever max_ejection_percent says.
        let allowed = ((n as u64 * u64::from(o.max_ejection_percent)) / 100).max(1) as usize;
        if ejected >= allowed {
            return Ejection::Overflow;
        }
        let h = &mut health[pick.index];
        h.decay(now, Duration::from_millis(o.interval_ms));
        h.ejections += 1;
        h.healthy_since = None;
        let time = Duration::from_millis(o.base_ejection_ms)
            .saturating_mul(h.ejections)
            .min(MAX_EJECTION);
        h.ejected_until = Some(now + time);
        h.consecutive_5xx = 0;
        h.consecutive_gateway = 0;
        h.consecutive_local = 0;
        tracing::warn!(endpoint = %self.endpoints[pick.index].address, ejection = h.ejections, ?time, "outlier detection ejected an endpoint");
        Ejection::Enforced
    }

    /// Now: (endpoints, endpoints not ejected, requests in flight).
    pub fn snapshot(&self) -> (u64, u64, u64) {
        let total = self.endpoints.len() as u64;
        let now = Instant::now();
        let health = self.health.lock().expect("health poisoned");
        let ejected = health
            .iter()
            .filter(|h| h.ejected_until.is_some_and(|t| t > now))
            .count() as u64;
        let active = self.active.iter().map(|a| a.load(Ordering::Relaxed)).sum();
        (total, total - ejected, active)
    }

    /// Addresses currently ejected (admin and tests).
    pub fn ejected(&self) -> Vec<String> {
        let now = Instant::now();
        let health = self.health.lock().expect("health poisoned");
        health
            .iter()
            .enumerate()
            .filter(|(_, h)| h.ejected_until.is_some_and(|t| t > now))
            .map(|(i, _)| self.endpoints[i].address.clone())
            .collect()
    }
}

#[cfg(test)]
#[path = "lb_tests.rs"]
mod tests;
