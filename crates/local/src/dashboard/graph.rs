//! The service graph from two scrapes of every proxy: nodes are workloads (and the clients
//! outside the mesh), edges are calls with request rate, error rate and p50/p95/p99 over
//! the interval between the scrapes, each edge's mTLS status as the called side saw it,
//! and per destination service the load-balancer state the callers' proxies report
//! (ejected endpoints, a request limit reached).

use super::prom::{quantile, Sample};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// What one proxy served at one scrape.
#[derive(Debug, Clone, Default)]
pub struct ProxyScrape {
    /// `gateway` or `sidecar`.
    pub role: String,
    /// Istio metric samples (`istio_*`).
    pub samples: Vec<Sample>,
    /// The admin `/clusters` answer: cluster name -> endpoints, ejected, overflowing.
    pub clusters: serde_json::Value,
}

/// A workload (or the outside) in the graph.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Node {
    /// `workload.namespace`; `clients` for callers outside the mesh.
    pub id: String,
    pub name: String,
    pub namespace: String,
    /// `gateway`, `workload` or `clients`.
    pub kind: String,
    /// The services (hosts) this workload backs.
    pub services: Vec<String>,
}

/// Request statistics over the interval.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct Stats {
    pub rps: f64,
    /// Share of requests answered 5xx or not at all (code 0), in percent.
    pub error_pct: f64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// Calls from one workload to another (through one service).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Edge {
    pub source: String,
    pub target: String,
    pub service: String,
    #[serde(flatten)]
    pub stats: Stats,
    /// `mutual_tls`, `none` (plaintext), or `unknown` (the called side reported nothing).
    pub mtls: String,
}

/// A destination service: its traffic and its endpoints' health as its callers see it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Service {
    pub host: String,
    #[serde(flatten)]
    pub stats: Stats,
    pub endpoints: Vec<String>,
    /// Endpoints some caller's proxy has ejected (outlier detection), with who ejected them.
    pub ejected: Vec<String>,
    /// Some caller's proxy is at this service's request limit (circuit breaker open).
    pub circuit_open: bool,
}

/// The whole view.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct Graph {
    pub interval_s: f64,
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
    pub services: Vec<Service>,
}

/// Counts over an interval: requests, errors, duration buckets (upper bound -> count).
#[derive(Default)]
struct Tally {
    requests: f64,
    errors: f64,
    buckets: BTreeMap<u64, f64>,
}

impl Tally {
    fn stats(&self, secs: f64) -> Stats {
        let mut b: Vec<(f64, f64)> = self
            .buckets
            .iter()
            .map(|(le, c)| (f64::from_bits(*le), *c))
            .collect();
        b.sort_by(|x, y| x.0.total_cmp(&y.0));
        let round = |v: f64| (v * 100.0).round() / 100.0;
        Stats {
            rps: round(self.requests / secs.max(1e-9)),
            error_pct: if self.requests > 0.0 {
                round(100.0 * self.errors / self.requests)
            } else {
                0.0
            },
            p50_ms: quantile(0.50, &b).map(round),
            p95_ms: quantile(0.95, &b).map(round),
            p99_ms: quantile(0.99, &b).map(round),
        }
    }
}

/// A series' identity: metric name and labels.
fn series(s: &Sample) -> String {
    let mut k = s.name.clone();
    for (n, v) in &s.labels {
        k.push('\u{1}');
        k.push_str(n);
        k.push('=');
        k.push_str(v);
    }
    k
}

/// Increase of each series between two scrapes of one proxy (a series that is new, or
/// went down because the proxy restarted, counts from zero).
fn increases<'a>(prev: &[Sample], now: &'a [Sample]) -> Vec<(&'a Sample, f64)> {
    let before: HashMap<String, f64> = prev.iter().map(|s| (series(s), s.value)).collect();
    now.iter()
        .map(|s| {
            let p = before.get(&series(s)).copied().unwrap_or(0.0);
            (s, if s.value >= p { s.value - p } else { s.value })
        })
        .filter(|(_, d)| *d > 0.0)
        .collect()
}

fn workload_id(name: &str, ns: &str) -> String {
    format!("{name}.{ns}")
}

/// Builds the graph from the previous and the current scrape of each proxy (by proxy
/// name), `secs` apart; `nodes` are the configured workloads.
pub fn build(
    prev: &HashMap<String, ProxyScrape>,
    now: &HashMap<String, ProxyScrape>,
    secs: f64,
    mut nodes: Vec<Node>,
) -> Graph {
    let mut edges: BTreeMap<(String, String, String), Tally> = BTreeMap::new();
    let mut services: BTreeMap<String, Tally> = BTreeMap::new();
    let mut mtls: HashMap<(String, String), String> = HashMap::new();
    let mut entry: BTreeMap<String, Tally> = BTreeMap::new();
    for (proxy, scrape) in now {
        let Some(before) = prev.get(proxy) else {
            continue; // the first scrape of a proxy has nothing to compare with
        };
        for (s, inc) in increases(&before.samples, &scrape.samples) {
            let src = workload_id(
                s.label("source_workload"),
                s.label("source_workload_namespace"),
            );
            let dst = workload_id(
                s.label("destination_workload"),
                s.label("destination_workload_namespace"),
            );
            if s.label("reporter") == "destination" {
                if s.name == "istio_requests_total" {
                    mtls.insert(
                        (src, dst),
                        s.label("connection_security_policy").to_string(),
                    );
                }
                continue;
            }
            let service = s.label("destination_service").to_string();
            if scrape.role == "gateway" {
                // Traffic a gateway serves came from outside the mesh.
                record(s, inc, entry.entry(src.clone()).or_default());
            }
            record(s, inc, services.entry(service.clone()).or_default());
            record(s, inc, edges.entry((src, dst, service)).or_default());
        }
    }
    let mut graph = Graph {
        interval_s: secs,
        ..Graph::default()
    };
    let mut known: BTreeSet<String> = nodes.iter().map(|n| n.id.clone()).collect();
    for ((src, dst, service), t) in &edges {
        for id in [src, dst] {
            if known.insert(id.clone()) {
                let (name, ns) = id.rsplit_once('.').unwrap_or((id, ""));
                nodes.push(Node {
                    id: id.clone(),
                    name: name.into(),
                    namespace: ns.into(),
                    kind: "workload".into(),
                    services: Vec::new(),
                });
            }
        }
        graph.edges.push(Edge {
            source: src.clone(),
            target: dst.clone(),
            service: service.clone(),
            stats: t.stats(secs),
            mtls: mtls
                .get(&(src.clone(), dst.clone()))
                .cloned()
                .unwrap_or_else(|| "unknown".into()),
        });
    }
    if !entry.is_empty() || nodes.iter().any(|n| n.kind == "gateway") {
        nodes.push(Node {
            id: "clients".into(),
            name: "clients".into(),
            namespace: String::new(),
            kind: "clients".into(),
            services: Vec::new(),
        });
    }
    for (gw, t) in &entry {
        graph.edges.push(Edge {
            source: "clients".into(),
            target: gw.clone(),
            service: String::new(),
            stats: t.stats(secs),
            mtls: "none".into(),
        });
    }
    graph.services = health(now, &services, secs, &nodes);
    graph.nodes = nodes;
    graph
}

fn record(s: &Sample, inc: f64, t: &mut Tally) {
    match s.name.as_str() {
        "istio_requests_total" => {
            t.requests += inc;
            let code: u16 = s.label("response_code").parse().unwrap_or(0);
            if code == 0 || code >= 500 {
                t.errors += inc;
            }
        }
        "istio_request_duration_milliseconds_bucket" => {
            let le = match s.label("le") {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap_or(f64::INFINITY),
            };
            *t.buckets.entry(le.to_bits()).or_default() += inc;
        }
        _ => {}
    }
}

/// Per destination service: traffic, and the endpoints' state from every proxy's
/// `/clusters` (cluster names end with the service host: `outbound|port|subset|host`).
fn health(
    now: &HashMap<String, ProxyScrape>,
    traffic: &BTreeMap<String, Tally>,
    secs: f64,
    nodes: &[Node],
) -> Vec<Service> {
    let mut out: BTreeMap<String, Service> = BTreeMap::new();
    let blank = |host: &str| Service {
        host: host.to_string(),
        stats: Stats::default(),
        endpoints: Vec::new(),
        ejected: Vec::new(),
        circuit_open: false,
    };
    for host in nodes.iter().flat_map(|n| &n.services) {
        out.entry(host.clone()).or_insert_with(|| blank(host));
    }
    for (proxy, scrape) in now {
        let Some(clusters) = scrape.clusters.as_object() else {
            continue;
        };
        for (name, c) in clusters {
            let host = name.rsplit('|').next().unwrap_or(name);
            let svc = out.entry(host.to_string()).or_insert_with(|| blank(host));
            for e in c["endpoints"].as_array().into_iter().flatten() {
                if let Some(e) = e.as_str().filter(|e| !svc.endpoints.iter().any(|x| x == e)) {
                    svc.endpoints.push(e.to_string());
                }
            }
            for e in c["ejected"].as_array().into_iter().flatten() {
                if let Some(e) = e.as_str() {
                    svc.ejected.push(format!("{e} (by {proxy})"));
                }
            }
            svc.circuit_open |= c["overflowing"].as_bool().unwrap_or(false);
        }
    }
    for (host, t) in traffic {
        if let Some(svc) = out.get_mut(host) {
            svc.stats = t.stats(secs);
        }
    }
    out.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dashboard::prom::parse;

    fn scrape(role: &str, text: &str) -> ProxyScrape {
        ProxyScrape {
            role: role.into(),
            samples: parse(text, "istio_"),
            clusters: serde_json::json!({
                "outbound|80||b.ns.svc.cluster.local": {
                    "endpoints": ["127.0.0.1:1", "127.0.0.1:2"],
                    "ejected": ["127.0.0.1:2"],
                    "overflowing": false
                }
            }),
        }
    }

    const SRC: &str = r#"reporter="source",source_workload="a",source_workload_namespace="ns",destination_workload="b",destination_workload_namespace="ns",destination_service="b.ns.svc.cluster.local""#;

    fn source_text(ok: u64, failed: u64) -> String {
        format!(
            "istio_requests_total{{{SRC},response_code=\"200\"}} {ok}\n\
             istio_requests_total{{{SRC},response_code=\"503\"}} {failed}\n\
             istio_request_duration_milliseconds_bucket{{{SRC},response_code=\"200\",le=\"1\"}} {}\n\
             istio_request_duration_milliseconds_bucket{{{SRC},response_code=\"200\",le=\"10\"}} {ok}\n\
             istio_request_duration_milliseconds_bucket{{{SRC},response_code=\"200\",le=\"+Inf\"}} {ok}\n",
            ok / 2
        )
    }

    #[test]
    fn an_edge_has_rate_errors_and_quantiles_over_the_interval() {
        let prev = HashMap::from([("a".to_string(), scrape("sidecar", &source_text(100, 0)))]);
        let mut now_text = source_text(300, 50);
        now_text.push_str(
            "istio_requests_total{reporter=\"destination\",source_workload=\"a\",source_workload_namespace=\"ns\",destination_workload=\"b\",destination_workload_namespace=\"ns\",connection_security_policy=\"mutual_tls\",response_code=\"200\"} 5\n",
        );
        let now = HashMap::from([("a".to_string(), scrape("sidecar", &now_text))]);
        let g = build(&prev, &now, 2.0, Vec::new());
        let e = g
            .edges
            .iter()
            .find(|e| e.source == "a.ns" && e.target == "b.ns")
            .expect("the a -> b edge");
        // 200 more OK + 50 failed in 2 s.
        assert_eq!(e.stats.rps, 125.0);
        assert_eq!(e.stats.error_pct, 20.0);
        // 200 new observations: 100 <= 1 ms, 200 <= 10 ms.
        assert_eq!(e.stats.p50_ms, Some(1.0));
        assert_eq!(e.stats.p99_ms, Some(9.82));
        assert_eq!(e.mtls, "mutual_tls");
        let b = g
            .services
            .iter()
            .find(|s| s.host == "b.ns.svc.cluster.local")
            .expect("service b");
        assert_eq!(b.stats.rps, 125.0);
        assert_eq!(b.endpoints.len(), 2);
        assert_eq!(b.ejected, vec!["127.0.0.1:2 (by a)".to_string()]);
    }

    #[test]
    fn a_proxy_seen_once_gives_no_rates_and_a_gateway_has_clients() {
        let now = HashMap::from([("gw".to_string(), scrape("gateway", &source_text(10, 0)))]);
        let g = build(&HashMap::new(), &now, 2.0, Vec::new());
        assert!(g.edges.is_empty(), "nothing to compare with yet");
        let prev = now.clone();
        let now = HashMap::from([("gw".to_string(), scrape("gateway", &source_text(30, 0)))]);
        let g = build(&prev, &now, 2.0, Vec::new());
        let entry = g
            .edges
            .iter()
            .find(|e| e.source == "clients")
            .expect("clients -> gateway workload");
        assert_eq!(entry.target, "a.ns");
        assert_eq!(entry.stats.rps, 10.0);
        assert!(g.nodes.iter().any(|n| n.id == "clients"));
    }
}
