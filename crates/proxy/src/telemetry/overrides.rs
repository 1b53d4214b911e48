//! Telemetry metric overrides of one side, compiled when a push is applied: whether Istio's
//! HTTP metrics are on, which of them are disabled, and per metric the labels removed and
//! the labels a CEL expression sets (`tagOverrides`: an existing label replaced, a new one
//! appended). The expressions are evaluated once when a request ends (its values ride on
//! its metrics record); a series' label set is built once per distinct values, as for
//! every series. A side without overrides compiles to nothing and records as before.
//! Istio's TCP metrics take `disabled` and label removal; labels a TCP connection would
//! set from an expression are not built (the control plane reports them).

use super::metrics::{PeerLabels, RequestLabels};
use super::tcp_metrics::TcpLabels;
use prometheus_client::encoding::{EncodeLabelSet, LabelSetEncoder};
use weft_model::cel::{Attributes, Expr};
use weft_model::telemetry::metrics::MetricsSpec;

/// Istio's names of the HTTP families, in [`super::metrics`]' family order.
pub const FAMILIES: [&str; 6] = [
    "REQUEST_COUNT",
    "REQUEST_DURATION",
    "REQUEST_SIZE",
    "RESPONSE_SIZE",
    "GRPC_REQUEST_MESSAGES",
    "GRPC_RESPONSE_MESSAGES",
];

/// Istio's names of the TCP families, in [`super::tcp_metrics`]' order.
pub const TCP_FAMILIES: [&str; 4] = [
    "TCP_OPENED_CONNECTIONS",
    "TCP_CLOSED_CONNECTIONS",
    "TCP_SENT_BYTES",
    "TCP_RECEIVED_BYTES",
];

/// A value Istio's stats give a tag whose expression fails.
pub const UNKNOWN: &str = "unknown";

/// One series' labels: Istio's standard set `L`, or the set an override made.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub enum SeriesLabels<L = RequestLabels> {
    Standard(L),
    Custom(Vec<(String, String)>),
}

impl<L: Default> Default for SeriesLabels<L> {
    fn default() -> Self {
        SeriesLabels::Standard(L::default())
    }
}

impl<L: EncodeLabelSet> EncodeLabelSet for SeriesLabels<L> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        match self {
            SeriesLabels::Standard(l) => l.encode(encoder),
            SeriesLabels::Custom(v) => v.encode(encoder),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tag {
    Remove,
    /// An expression the proxy cannot evaluate (outside weft's CEL subset).
    Unknown,
    /// The value of `exprs[i]`.
    Value(usize),
}

#[derive(Debug, Clone, Default, PartialEq)]
enum Rule {
    #[default]
    Standard,
    Disabled,
    Custom(Vec<(String, Tag)>),
}

/// One side's compiled overrides.
#[derive(Debug, Default, PartialEq)]
pub struct SideRules {
    /// Istio's HTTP metrics are off on this side.
    pub off: bool,
    families: [Rule; 6],
    tcp: [Rule; 4],
    /// The expressions a request's values come from, in order.
    pub exprs: Vec<Expr>,
}

impl SideRules {
    /// `None` when the side records Istio's standard metrics. Expressions were checked by
    /// the control plane; one that does not parse is left out.
    pub fn compile(spec: &MetricsSpec) -> Option<SideRules> {
        if !spec.disabled && spec.overrides.is_empty() {
            return None;
        }
        let mut rules = SideRules {
            off: spec.disabled,
            ..SideRules::default()
        };
        for (i, name) in FAMILIES.iter().enumerate() {
            let Some(o) = spec.get(name) else { continue };
            if o.disabled {
                rules.families[i] = Rule::Disabled;
                continue;
            }
            let mut tags = Vec::new();
            for t in &o.tags {
                let tag = match t.value.as_deref().map(weft_model::cel::parse) {
                    None => Tag::Remove,
                    Some(Ok(e)) => {
                        rules.exprs.push(e);
                        Tag::Value(rules.exprs.len() - 1)
                    }
                    Some(Err(_)) => Tag::Unknown,
                };
                tags.push((t.name.clone(), tag));
            }
            if !tags.is_empty() {
                rules.families[i] = Rule::Custom(tags);
            }
        }
        for (i, name) in TCP_FAMILIES.iter().enumerate() {
            let Some(o) = spec.get(name) else { continue };
            let removed: Vec<(String, Tag)> = o
                .tags
                .iter()
                .filter(|t| t.value.is_none())
                .map(|t| (t.name.clone(), Tag::Remove))
                .collect();
            rules.tcp[i] = match (o.disabled, removed.is_empty()) {
                (true, _) => Rule::Disabled,
                (false, true) => Rule::Standard,
                (false, false) => Rule::Custom(removed),
            };
        }
        Some(rules)
    }

    /// The labels of TCP family `i` for a connection, `None` when the family is off.
    pub fn tcp_labels(&self, i: usize, base: TcpLabels) -> Option<SeriesLabels<TcpLabels>> {
        if self.off {
            return None;
        }
        match &self.tcp[i] {
            Rule::Standard => Some(SeriesLabels::Standard(base)),
            Rule::Disabled => None,
            Rule::Custom(tags) => {
                let mut pairs = peer_pairs(base.peers);
                pairs.push(("request_protocol".into(), base.request_protocol));
                pairs.push(("response_flags".into(), base.response_flags));
                Some(SeriesLabels::Custom(apply(pairs, tags, &[])))
            }
        }
    }

    /// This request's tag values (`unknown` where an expression fails).
    pub fn values(&self, a: &dyn Attributes) -> Vec<String> {
        self.exprs
            .iter()
            .map(|e| e.label_value(a).unwrap_or_else(|| UNKNOWN.into()))
            .collect()
    }

    /// The labels of family `i` for a request, `None` when the family is off.
    pub fn labels(&self, i: usize, base: RequestLabels, values: &[String]) -> Option<SeriesLabels> {
        if self.off {
            return None;
        }
        let tags = match &self.families[i] {
            Rule::Standard => return Some(SeriesLabels::Standard(base)),
            Rule::Disabled => return None,
            Rule::Custom(tags) => tags,
        };
        Some(SeriesLabels::Custom(apply(pairs(base), tags, values)))
    }
}

/// The tags applied to standard pairs: removed, replaced, appended.
fn apply(
    mut pairs: Vec<(String, String)>,
    tags: &[(String, Tag)],
    values: &[String],
) -> Vec<(String, String)> {
    for (name, tag) in tags {
        let at = pairs.iter().position(|(k, _)| k == name);
        match (tag, at) {
            (Tag::Remove, Some(at)) => {
                pairs.remove(at);
            }
            (Tag::Remove, None) => {}
            (tag, at) => {
                let value = match tag {
                    Tag::Value(v) => values.get(*v).cloned(),
                    _ => None,
                }
                .unwrap_or_else(|| UNKNOWN.into());
                match at {
                    Some(at) => pairs[at].1 = value,
                    None => pairs.push((name.clone(), value)),
                }
            }
        }
    }
    pairs
}

/// Istio's request labels as name/value pairs, in the order they are exported.
fn pairs(l: RequestLabels) -> Vec<(String, String)> {
    let mut pairs = peer_pairs(l.peers);
    for (k, v) in [
        ("request_protocol", l.request_protocol),
        ("response_code", l.response_code),
        ("grpc_response_status", l.grpc_response_status),
        ("response_flags", l.response_flags),
    ] {
        pairs.push((k.to_string(), v));
    }
    pairs
}

/// Who-called-whom labels as name/value pairs, in the order they are exported.
fn peer_pairs(p: PeerLabels) -> Vec<(String, String)> {
    [
        ("reporter", p.reporter),
        ("source_workload", p.source_workload),
        ("source_canonical_service", p.source_canonical_service),
        ("source_canonical_revision", p.source_canonical_revision),
        ("source_workload_namespace", p.source_workload_namespace),
        ("source_principal", p.source_principal),
        ("source_app", p.source_app),
        ("source_version", p.source_version),
        ("source_cluster", p.source_cluster),
        ("destination_workload", p.destination_workload),
        (
            "destination_workload_namespace",
            p.destination_workload_namespace,
        ),
        ("destination_principal", p.destination_principal),
        ("destination_app", p.destination_app),
        ("destination_version", p.destination_version),
        ("destination_service", p.destination_service),
        (
            "destination_canonical_service",
            p.destination_canonical_service,
        ),
        (
            "destination_canonical_revision",
            p.destination_canonical_revision,
        ),
        ("destination_service_name", p.destination_service_name),
        (
            "destination_service_namespace",
            p.destination_service_namespace,
        ),
        ("destination_cluster", p.destination_cluster),
        ("connection_security_policy", p.connection_security_policy),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_model::telemetry::metrics::{MetricOverride, TagOverride};

    #[test]
    fn the_pairs_are_the_standard_labels_in_order() {
        // Every label the derived encoding exports, in its order: a new label in
        // RequestLabels must be added to `pairs` too.
        let l = RequestLabels::default();
        let mut text = String::new();
        let mut reg = prometheus_client::registry::Registry::default();
        let fam = prometheus_client::metrics::family::Family::<
            RequestLabels,
            prometheus_client::metrics::counter::Counter,
        >::default();
        fam.get_or_create(&l).inc();
        reg.register("x", "x", fam);
        prometheus_client::encoding::text::encode(&mut text, &reg).expect("encodes");
        let line = text
            .lines()
            .find(|l| l.starts_with("x_total{"))
            .expect("a series");
        let names: Vec<&str> = line["x_total{".len()..]
            .split(',')
            .map(|kv| kv.split('=').next().unwrap_or(""))
            .collect();
        let ours: Vec<String> = pairs(l).into_iter().map(|(k, _)| k).collect();
        assert_eq!(names, ours);
    }

    #[test]
    fn removes_replaces_and_appends_labels_and_disables_families() {
        let spec = MetricsSpec {
            disabled: false,
            overrides: vec![
                MetricOverride {
                    metric: "REQUEST_COUNT".into(),
                    disabled: false,
                    tags: vec![
                        TagOverride {
                            name: "request_host".into(),
                            value: Some("request.host".into()),
                        },
                        TagOverride {
                            name: "response_code".into(),
                            value: Some("'x'".into()),
                        },
                        TagOverride {
                            name: "source_principal".into(),
                            value: None,
                        },
                    ],
                },
                MetricOverride {
                    metric: "REQUEST_SIZE".into(),
                    disabled: true,
                    tags: vec![],
                },
            ],
        };
        let rules = SideRules::compile(&spec).expect("overrides");
        let values = vec!["a.example".to_string(), "x".to_string()];
        let base = RequestLabels::default();
        let Some(SeriesLabels::Custom(p)) = rules.labels(0, base.clone(), &values) else {
            panic!("custom labels")
        };
        assert!(p.iter().all(|(k, _)| k != "source_principal"));
        assert!(p.contains(&("response_code".into(), "x".into())));
        assert_eq!(p.last(), Some(&("request_host".into(), "a.example".into())));
        assert_eq!(
            rules.labels(1, base.clone(), &values),
            Some(SeriesLabels::Standard(base.clone()))
        );
        assert_eq!(rules.labels(2, base.clone(), &values), None);
        let off = SideRules::compile(&MetricsSpec {
            disabled: true,
            overrides: vec![],
        })
        .expect("off");
        assert_eq!(off.labels(0, base, &values), None);
        assert!(SideRules::compile(&MetricsSpec::default()).is_none());
    }
}
