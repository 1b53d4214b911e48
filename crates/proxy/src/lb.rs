//! Load balancing over a cluster's endpoints: ROUND_ROBIN, LEAST_REQUEST (Envoy's
//! power-of-two-choices over active requests; LEAST_CONN is its alias) and RANDOM.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use weft_model::{Cluster, Endpoint, LbPolicy};

/// Per-cluster balancing state: a round-robin cursor and active-request counts.
#[derive(Debug)]
pub struct LbState {
    policy: LbPolicy,
    endpoints: Vec<Endpoint>,
    cursor: AtomicUsize,
    active: Vec<Arc<AtomicU64>>,
}

/// Holds one active request on an endpoint until dropped.
#[derive(Debug)]
pub struct Pick {
    pub endpoint: Endpoint,
    active: Arc<AtomicU64>,
}

impl Drop for Pick {
    fn drop(&mut self) {
        self.active.fetch_sub(1, Ordering::Relaxed);
    }
}

impl LbState {
    pub fn new(c: &Cluster) -> LbState {
        LbState {
            policy: c.lb,
            endpoints: c.endpoints.clone(),
            cursor: AtomicUsize::new(fastrand::usize(..c.endpoints.len().max(1))),
            active: c
                .endpoints
                .iter()
                .map(|_| Arc::new(AtomicU64::new(0)))
                .collect(),
        }
    }

    /// Chooses an endpoint, or `None` when the cluster has none (Envoy's UH).
    pub fn pick(&self) -> Option<Pick> {
        let n = self.endpoints.len();
        if n == 0 {
            return None;
        }
        let i = match self.policy {
            LbPolicy::RoundRobin => self.cursor.fetch_add(1, Ordering::Relaxed) % n,
            LbPolicy::Random => fastrand::usize(..n),
            LbPolicy::LeastRequest if n == 1 => 0,
            LbPolicy::LeastRequest => {
                let a = fastrand::usize(..n);
                let mut b = fastrand::usize(..n - 1);
                if b >= a {
                    b += 1;
                }
                let load = |i: usize| self.active[i].load(Ordering::Relaxed);
                if load(b) < load(a) {
                    b
                } else {
                    a
                }
            }
        };
        self.active[i].fetch_add(1, Ordering::Relaxed);
        Some(Pick {
            endpoint: self.endpoints[i].clone(),
            active: self.active[i].clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(policy: LbPolicy, n: usize) -> Cluster {
        Cluster {
            lb: policy,
            endpoints: (0..n)
                .map(|i| Endpoint {
                    address: format!("127.0.0.1:{}", 1000 + i),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn round_robin_cycles_through_all() {
        let lb = LbState::new(&cluster(LbPolicy::RoundRobin, 3));
        let mut seen: Vec<String> = (0..6)
            .map(|_| lb.pick().unwrap().endpoint.address.clone())
            .collect();
        assert_eq!(seen[0..3], seen[3..6]);
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 3);
    }

    #[test]
    fn least_request_avoids_busy_endpoint() {
        let lb = LbState::new(&cluster(LbPolicy::LeastRequest, 2));
        let held = lb.pick().unwrap();
        // With one of two endpoints busy, P2C always sees both and picks the idle one.
        for _ in 0..50 {
            let p = lb.pick().unwrap();
            assert_ne!(p.endpoint.address, held.endpoint.address);
        }
    }

    #[test]
    fn empty_cluster_has_no_pick() {
        assert!(LbState::new(&cluster(LbPolicy::RoundRobin, 0))
            .pick()
            .is_none());
    }
}
