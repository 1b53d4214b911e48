//! The measured phases: initial sync, one VirtualService change, endpoint churn at a fixed
//! rate, and 10 % of the proxies reconnecting at once. Each ends at the control plane's
//! next `converged` event that matches what the simulated proxies hold (every proxy
//! connected, each at the version it last received, and something pushed during the
//! phase), or reports that it did not converge within the timeout.

use crate::control::{Control, Event};
use crate::mesh::{self, Mesh};
use crate::sim::{Fleet, Received, Watch};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// The first fake inbound port: proxy `p` announces `127.0.0.1:<INBOUND_BASE + p>`.
pub const INBOUND_BASE: usize = 20_000;
/// Endpoint churn change `k` announces `127.0.0.1:<CHURN_BASE + k>`. All fake ports have
/// five digits, so one address is never a prefix of another in a push.
pub const CHURN_BASE: usize = 40_000;
/// The most proxies and churn changes the address scheme allows.
pub const MAX_PROXIES: usize = CHURN_BASE - INBOUND_BASE;
pub const MAX_CHANGES: usize = 65_535 - CHURN_BASE;

/// How a phase ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Converged this long after the phase started.
    Converged(Duration),
    /// Did not converge: why ("did not converge in 120 s", the control plane exited…).
    Failed(String),
    /// Skipped because an earlier phase failed.
    NotRun,
}

/// What one phase measured.
#[derive(Debug, Clone)]
pub struct Phase {
    pub outcome: Outcome,
    /// One per (change, proxy reached); for initial sync and reconnects, one per proxy.
    pub latencies: Vec<Duration>,
    /// Pushes received and their encoded bytes, from the phase's start to its end.
    pub pushes: usize,
    pub bytes: u64,
    /// Changes made (1 for initial sync and the VirtualService change).
    pub changes: usize,
    /// Control-plane CPU seconds used during the phase.
    pub cpu_secs: Option<f64>,
}

impl Phase {
    pub fn not_run() -> Phase {
        Phase {
            outcome: Outcome::NotRun,
            latencies: Vec::new(),
            pushes: 0,
            bytes: 0,
            changes: 0,
            cpu_secs: None,
        }
    }

    pub fn converged(&self) -> bool {
        matches!(self.outcome, Outcome::Converged(_))
    }
}

/// Proxy `p`'s fake inbound address.
pub fn inbound(p: usize) -> String {
    format!("127.0.0.1:{}", INBOUND_BASE + p)
}

/// The address change `k` of the endpoint churn announces.
pub fn churn_addr(k: usize) -> String {
    format!("127.0.0.1:{}", CHURN_BASE + k)
}

/// A running benchmark: the control plane, the proxies, the mesh on disk.
pub struct Bench<'a> {
    pub control: &'a mut Control,
    pub fleet: Arc<Fleet>,
    pub mesh: &'a Mesh,
    pub timeout: Duration,
}

impl Bench<'_> {
    /// Connects every proxy at once; ends when each has ACKed its first config.
    pub async fn initial_sync(&mut self) -> Phase {
        let (start, cpu) = (Instant::now(), self.control.cpu_seconds());
        for p in 0..self.fleet.len() {
            self.fleet.connect(p, inbound(p)).await;
        }
        let end = self.converged(start).await;
        let firsts = (0..self.fleet.len()).filter_map(|p| self.fleet.first_push(p));
        let latencies = firsts.map(|t| t - start).collect();
        self.finish(start, cpu, end, latencies, 1)
    }

    /// Rewrites one VirtualService's weights; per proxy that gets a push, the time from
    /// the file write to its receipt.
    pub async fn virtual_service_change(&mut self) -> Phase {
        let (start, cpu) = (Instant::now(), self.control.cpu_seconds());
        if let Err(e) = self.mesh.rewrite_virtual_service(0, mesh::CHANGED_WEIGHTS) {
            return self.finish(
                start,
                cpu,
                Err(format!("rewriting the VirtualService: {e}")),
                Vec::new(),
                1,
            );
        }
        let end = self.converged(start).await;
        let mut first = BTreeMap::new();
        for r in self.fleet.pushes_since(start) {
            first.entry(r.proxy).or_insert(r.at - start);
        }
        self.finish(start, cpu, end, first.into_values().collect(), 1)
    }

    /// `count` endpoint changes, `1/rate` s apart: a proxy disconnects and reconnects with a
    /// new inbound address. Per (change, other proxy whose push mentions the new address),
    /// the time from the reconnect to that push.
    pub async fn endpoint_churn(&mut self, rate: f64, count: usize) -> Phase {
        let (start, cpu) = (Instant::now(), self.control.cpu_seconds());
        let changes = match self.churn(rate, count, start).await {
            Ok(changes) => changes,
            Err(e) => return self.finish(start, cpu, Err(e), Vec::new(), count),
        };
        let end = self.converged(start).await;
        let latencies = churn_latencies(&changes, &self.fleet.pushes_since(start));
        self.fleet.set_watches(Vec::new());
        self.finish(start, cpu, end, latencies, count)
    }

    /// Makes the churn's changes; returns (change, proxy, reconnect time) for each.
    async fn churn(
        &mut self,
        rate: f64,
        count: usize,
        start: Instant,
    ) -> Result<Vec<(usize, usize, Instant)>, String> {
        let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        let mut tasks = JoinSet::new();
        for k in 0..count {
            ticks.tick().await;
            let (proxy, addr) = (k % self.fleet.len(), churn_addr(k));
            self.fleet.add_watch(Watch {
                change: k,
                needle: addr.clone(),
            });
            let (fleet, timeout) = (self.fleet.clone(), self.timeout);
            tasks.spawn(async move { (k, proxy, fleet.reconnect(proxy, addr, timeout).await) });
        }
        let deadline = start + self.timeout;
        let mut changes = Vec::new();
        while let Some(done) = tokio::time::timeout_at(deadline, tasks.join_next())
            .await
            .map_err(|_| self.timed_out())?
        {
            match done {
                Ok((k, proxy, Ok(at))) => changes.push((k, proxy, at)),
                Ok((_, _, Err(e))) => return Err(e.to_string()),
                Err(e) => return Err(format!("a churn change failed: {e}")),
            }
        }
        Ok(changes)
    }

    /// Drops the streams of 10 % of the proxies (at least one), spread over the fleet, then
    /// reconnects them all at once; per proxy, the time to its first config.
    pub async fn reconnect_tenth(&mut self) -> Phase {
        let (start, cpu) = (Instant::now(), self.control.cpu_seconds());
        let n = self.fleet.len();
        let k = (n / 10).max(1);
        let chosen: Vec<usize> = (0..k).map(|i| i * n / k).collect();
        if let Err(e) = self.disconnect_all(&chosen, start).await {
            return self.finish(start, cpu, Err(e), Vec::new(), k);
        }
        let reconnect = Instant::now();
        for &p in &chosen {
            self.fleet.connect(p, inbound(p)).await;
        }
        let end = self.converged(start).await;
        let firsts = chosen.iter().filter_map(|p| self.fleet.first_push(*p));
        let latencies = firsts.map(|t| t - reconnect).collect();
        self.finish(start, cpu, end, latencies, k)
    }

    async fn disconnect_all(&mut self, proxies: &[usize], start: Instant) -> Result<(), String> {
        let mut tasks = JoinSet::new();
        for &p in proxies {
            let (fleet, timeout) = (self.fleet.clone(), self.timeout);
            tasks.spawn(async move { fleet.disconnect(p, timeout).await });
        }
        let deadline = start + self.timeout;
        while let Some(done) = tokio::time::timeout_at(deadline, tasks.join_next())
            .await
            .map_err(|_| self.timed_out())?
        {
            done.map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Waits for a `converged` event that matches the fleet, with something pushed since
    /// `start`; returns when it was seen.
    async fn converged(&mut self, start: Instant) -> Result<Instant, String> {
        let deadline = start + self.timeout;
        loop {
            let Some(event) = self.control.next_event(deadline).await else {
                return Err(self.timed_out());
            };
            match event {
                Event::Converged(proxies)
                    if self.fleet.converged(&proxies) && self.fleet.pushed_since(start) =>
                {
                    return Ok(Instant::now());
                }
                Event::ConfigRejected(e) => {
                    return Err(format!(
                        "the control plane rejected the changed config: {e}"
                    ))
                }
                Event::Exited => {
                    return Err(format!(
                        "the control plane exited:\n{}",
                        self.control.log_tail(10)
                    ))
                }
                _ => {}
            }
        }
    }

    fn timed_out(&self) -> String {
        let mut why = format!("did not converge in {} s", self.timeout.as_secs());
        let (failures, first) = self.fleet.failures();
        if failures > 0 {
            why.push_str(&format!(
                " ({failures} proxy session failures, e.g. {})",
                first.join("; ")
            ));
        }
        why
    }

    fn finish(
        &self,
        start: Instant,
        cpu: Option<f64>,
        end: Result<Instant, String>,
        latencies: Vec<Duration>,
        changes: usize,
    ) -> Phase {
        let until = end.as_ref().ok().copied();
        let pushes: Vec<Received> = self
            .fleet
            .pushes_since(start)
            .into_iter()
            .filter(|r| until.is_none_or(|u| r.at <= u))
            .collect();
        let used = self
            .control
            .cpu_seconds()
            .zip(cpu)
            .map(|(after, before)| after - before);
        Phase {
            outcome: match end {
                Ok(at) => Outcome::Converged(at - start),
                Err(why) => Outcome::Failed(why),
            },
            latencies,
            pushes: pushes.len(),
            bytes: pushes.iter().map(|r| r.bytes as u64).sum(),
            changes,
            cpu_secs: used,
        }
    }
}

/// Per (change, proxy other than the one that moved), the time from the reconnect to the
/// first push that mentions the change's new address.
fn churn_latencies(changes: &[(usize, usize, Instant)], pushes: &[Received]) -> Vec<Duration> {
    let by_change: BTreeMap<usize, (usize, Instant)> =
        changes.iter().map(|&(k, p, at)| (k, (p, at))).collect();
    let mut first: BTreeMap<(usize, usize), Duration> = BTreeMap::new();
    for r in pushes {
        for k in &r.mentions {
            let Some(&(mover, at)) = by_change.get(k) else {
                continue;
            };
            if r.proxy != mover && r.at >= at {
                first.entry((*k, r.proxy)).or_insert(r.at - at);
            }
        }
    }
    first.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn churn_latency_is_the_first_push_mentioning_the_address_to_another_proxy() {
        let t = Instant::now();
        let ms = |n: u64| t + Duration::from_millis(n);
        let push = |proxy, at, mentions: &[usize]| Received {
            proxy,
            at,
            bytes: 1,
            mentions: mentions.to_vec(),
        };
        let pushes = [
            push(0, ms(12), &[0]), // the mover itself: not counted
            push(1, ms(15), &[0]),
            push(1, ms(30), &[0]), // a later push to the same proxy: not counted
            push(2, ms(40), &[]),
            push(2, ms(50), &[0, 1]),
        ];
        let changes = [(0, 0, ms(10)), (1, 3, ms(45))];
        let got = churn_latencies(&changes, &pushes);
        let want = [5, 40, 5].map(Duration::from_millis);
        assert_eq!(got, want.to_vec(), "(0,1)=5 ms, (0,2)=40 ms, (1,2)=5 ms");
    }

    #[test]
    fn fake_addresses_have_five_digit_ports() {
        assert_eq!(inbound(0), "127.0.0.1:20000");
        assert_eq!(inbound(MAX_PROXIES - 1), "127.0.0.1:39999");
        assert_eq!(churn_addr(MAX_CHANGES - 1), "127.0.0.1:65534");
    }
}
