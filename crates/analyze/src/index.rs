//! One pass over the resources builds the lookup tables every check uses (hosts,
//! gateways, DestinationRules, workloads by label, principals), so the checks stay
//! linear in the number of resources instead of comparing every pair.

use std::collections::{BTreeMap, HashMap, HashSet};

use weft_api::{Resource, ServiceEntry, Spec, WorkloadEntry};
use weft_model::registry::{fqdn, selects};

/// Lookup tables over one set of resources. Indices point into `res`.
pub(crate) struct Index<'a> {
    pub res: &'a [Resource],
    /// Every namespace some resource lives in.
    pub namespaces: HashSet<&'a str>,
    /// Exact (fully qualified) ServiceEntry host -> (resource, host index).
    se_exact: HashMap<String, Vec<(usize, usize)>>,
    /// Wildcard ServiceEntry host by suffix (`*.example.com` -> `.example.com`).
    se_wild: HashMap<String, Vec<(usize, usize)>>,
    /// Gateways by (namespace, name).
    gateways: HashSet<(&'a str, &'a str)>,
    dr_exact: HashMap<String, Vec<usize>>,
    dr_wild: HashMap<String, Vec<usize>>,
    /// WorkloadEntries.
    pub workloads: Vec<usize>,
    wl_by_label: HashMap<(&'a str, &'a str), Vec<usize>>,
    wl_by_ns: HashMap<&'a str, Vec<usize>>,
    /// (namespace, service account) of every workload and inline endpoint.
    pub principals: HashSet<(&'a str, &'a str)>,
    /// PeerAuthentications by namespace.
    pub peer_authn: HashMap<&'a str, Vec<usize>>,
}

/// Splits a wildcard host into its suffix: `*.example.com` -> `.example.com`.
fn wildcard_suffix(host: &str) -> Option<&str> {
    host.strip_prefix('*')
        .filter(|s| s.is_empty() || s.starts_with('.'))
}

/// Does a namespace list (`exportTo`) make an object in `own_ns` visible in `ns`?
pub(crate) fn exported_to(export_to: &[String], own_ns: &str, ns: &str) -> bool {
    export_to.is_empty()
        || export_to
            .iter()
            .any(|e| e == "*" || e == ns || (e == "." && own_ns == ns))
}

/// Do two `exportTo` lists share at least one namespace?
pub(crate) fn exports_overlap(a: (&[String], &str), b: (&[String], &str)) -> bool {
    let names = |(list, own): (&[String], &str)| -> Option<Vec<String>> {
        if list.is_empty() || list.iter().any(|e| e == "*") {
            return None; // everywhere
        }
        Some(
            list.iter()
                .filter(|e| e.as_str() != "~")
                .map(|e| if e == "." { own.to_owned() } else { e.clone() })
                .collect(),
        )
    };
    match (names(a), names(b)) {
        (None, None) => true,
        (None, Some(s)) | (Some(s), None) => !s.is_empty(),
        (Some(x), Some(y)) => x.iter().any(|n| y.contains(n)),
    }
}

impl<'a> Index<'a> {
    pub fn build(res: &'a [Resource]) -> Index<'a> {
        let mut ix = Index {
            res,
            namespaces: HashSet::new(),
            se_exact: HashMap::new(),
            se_wild: HashMap::new(),
            gateways: HashSet::new(),
            dr_exact: HashMap::new(),
            dr_wild: HashMap::new(),
            workloads: Vec::new(),
            wl_by_label: HashMap::new(),
            wl_by_ns: HashMap::new(),
            principals: HashSet::new(),
            peer_authn: HashMap::new(),
        };
        for (i, r) in res.iter().enumerate() {
            let ns = r.namespace();
            ix.namespaces.insert(ns);
            match &r.spec {
                Spec::ServiceEntry(se) => {
                    for (h, host) in se.hosts.iter().enumerate() {
                        match wildcard_suffix(host) {
                            Some(suffix) => ix.se_wild.entry(suffix.to_owned()),
                            None => ix.se_exact.entry(fqdn(host, ns)),
                        }
                        .or_default()
                        .push((i, h));
                    }
                    for ep in &se.endpoints {
                        let sa = ep.service_account.as_deref().unwrap_or("default");
                        ix.principals.insert((ns, sa));
                    }
                }
                Spec::WorkloadEntry(we) => {
                    ix.workloads.push(i);
                    ix.wl_by_ns.entry(ns).or_default().push(i);
                    for (k, v) in &we.labels {
                        ix.wl_by_label.entry((k, v)).or_default().push(i);
                    }
                    let sa = we.service_account.as_deref().unwrap_or("default");
                    ix.principals.insert((ns, sa));
                }
                Spec::Gateway(_) => {
                    ix.gateways.insert((ns, r.name()));
                }
                Spec::DestinationRule(dr) => match wildcard_suffix(&dr.host) {
                    Some(suffix) => ix.dr_wild.entry(suffix.to_owned()).or_default().push(i),
                    None => ix.dr_exact.entry(fqdn(&dr.host, ns)).or_default().push(i),
                },
                Spec::PeerAuthentication(_) => ix.peer_authn.entry(ns).or_default().push(i),
                _ => {}
            }
        }
        ix
    }

    /// The WorkloadEntry spec of resource `i` (which must be one).
    pub fn we(&self, i: usize) -> &'a WorkloadEntry {
        match &self.res[i].spec {
            Spec::WorkloadEntry(we) => we,
            _ => unreachable!("index {i} is not a WorkloadEntry"),
        }
    }

    /// The ServiceEntry spec of resource `i` (which must be one).
    pub fn se(&self, i: usize) -> &'a ServiceEntry {
        match &self.res[i].spec {
            Spec::ServiceEntry(se) => se,
            _ => unreachable!("index {i} is not a ServiceEntry"),
        }
    }

    /// Does gateway `ns/name` exist?
    pub fn has_gateway(&self, ns: &str, name: &str) -> bool {
        self.gateways.contains(&(ns, name))
    }

    /// All gateways as `ns/name`, sorted (for suggestions).
    pub fn gateway_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .gateways
            .iter()
            .map(|(ns, n)| format!("{ns}/{n}"))
            .collect();
        v.sort();
        v
    }

    /// WorkloadEntries (in `ns`, or anywhere when `None`) selected by `selector`
    /// (an empty selector selects all).
    pub fn select(&self, ns: Option<&str>, selector: &BTreeMap<String, String>) -> Vec<usize> {
        let candidates: &[usize] = match selector
            .iter()
            .map(|(k, v)| {
                self.wl_by_label
                    .get(&(k.as_str(), v.as_str()))
                    .map_or(&[][..], |v| v.as_slice())
            })
            .min_by_key(|c| c.len())
        {
            Some(c) => c,
            None => match ns {
                Some(ns) => self.wl_by_ns.get(ns).map_or(&[][..], |v| v.as_slice()),
                None => &self.workloads,
            },
        };
        candidates
            .iter()
            .copied()
            .filter(|&i| ns.is_none_or(|ns| self.res[i].namespace() == ns))
            .filter(|&i| selects(selector, &self.we(i).labels))
            .collect()
    }

    /// ServiceEntries (resource, host index) whose host covers the fully qualified
    /// `host` and that are exported to `client_ns` (any namespace when `None`).
    pub fn services_for(&self, host: &str, client_ns: Option<&str>) -> Vec<(usize, usize)> {
        let visible = |&&(i, _): &&(usize, usize)| {
            let r = &self.res[i];
            client_ns.is_none_or(|ns| exported_to(&self.se(i).export_to, r.namespace(), ns))
        };
        covering(&self.se_exact, &self.se_wild, host, visible)
    }

    /// All exact ServiceEntry hosts (for suggestions and collision checks).
    pub fn se_hosts(&self) -> impl Iterator<Item = (&String, &Vec<(usize, usize)>)> {
        self.se_exact.iter().chain(self.se_wild.iter())
    }

    /// DestinationRules whose host covers the fully qualified `host`, exported to `client_ns`.
    pub fn drs_for(&self, host: &str, client_ns: &str) -> Vec<usize> {
        let visible = |&&i: &&usize| {
            let r = &self.res[i];
            match &r.spec {
                Spec::DestinationRule(dr) => exported_to(&dr.export_to, r.namespace(), client_ns),
                _ => false,
            }
        };
        covering(&self.dr_exact, &self.dr_wild, host, visible)
    }

    /// Endpoint label sets of a ServiceEntry's service (selected WorkloadEntries plus
    /// inline endpoints), with the WorkloadEntry indices; `None` when the ServiceEntry
    /// has neither a `workloadSelector` nor `endpoints` (its endpoints are unknown here).
    pub fn endpoints_of(&self, se_idx: usize) -> Option<Endpoints<'a>> {
        let se = self.se(se_idx);
        if se.workload_selector.is_none() && se.endpoints.is_empty() {
            return None;
        }
        let workloads = se.workload_selector.as_ref().map_or_else(Vec::new, |sel| {
            self.select(Some(self.res[se_idx].namespace()), &sel.labels)
        });
        let mut labels: Vec<&'a BTreeMap<String, String>> =
            workloads.iter().map(|&w| &self.we(w).labels).collect();
        labels.extend(se.endpoints.iter().map(|e| &e.labels));
        Some(Endpoints { workloads, labels })
    }
}

/// The known endpoints of a service.
pub(crate) struct Endpoints<'a> {
    /// Selected WorkloadEntries (resource indices).
    pub workloads: Vec<usize>,
    /// Labels of every endpoint (WorkloadEntries and inline endpoints).
    pub labels: Vec<&'a BTreeMap<String, String>>,
}

/// `a.b.c` -> `.b.c`, `.c` (and `""`, which a bare `*` host would be stored under).
/// Entries indexed under `host` exactly or under a wildcard suffix that covers it, kept
/// when `visible`.
fn covering<T: Copy>(
    exact: &HashMap<String, Vec<T>>,
    wild: &HashMap<String, Vec<T>>,
    host: &str,
    visible: impl Fn(&&T) -> bool,
) -> Vec<T> {
    let mut out: Vec<T> = exact
        .get(host)
        .into_iter()
        .flatten()
        .filter(&visible)
        .copied()
        .collect();
    for suffix in suffixes(host) {
        if let Some(v) = wild.get(suffix) {
            out.extend(v.iter().filter(&visible).copied());
        }
    }
    out
}

fn suffixes(host: &str) -> impl Iterator<Item = &str> {
    host.match_indices('.')
        .map(move |(i, _)| &host[i..])
        .chain(std::iter::once(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_of_a_host() {
        let v: Vec<&str> = suffixes("a.b.c").collect();
        assert_eq!(v, vec![".b.c", ".c", ""]);
    }

    #[test]
    fn export_overlap() {
        let dot = vec![".".to_owned()];
        let star: Vec<String> = vec![];
        let other = vec!["other".to_owned()];
        assert!(exports_overlap((&dot, "a"), (&star, "b")));
        assert!(!exports_overlap((&dot, "a"), (&dot, "b")));
        assert!(exports_overlap((&dot, "a"), (&dot, "a")));
        assert!(!exports_overlap((&other, "a"), (&dot, "a")));
        assert!(exported_to(&dot, "a", "a") && !exported_to(&dot, "a", "b"));
    }
}
