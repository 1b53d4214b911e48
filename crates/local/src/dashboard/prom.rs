//! Reading Prometheus text exposition (what each proxy serves on `/stats/prometheus`):
//! samples with their labels, and quantiles from histogram buckets as PromQL's
//! `histogram_quantile` computes them.

use std::collections::BTreeMap;

/// One sample line: metric name, labels, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    /// A label's value, or `""`.
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }
}

/// Every sample of `text` whose metric name starts with `prefix` (comments, and lines that
/// do not parse, are skipped: a scrape is best effort).
pub fn parse(text: &str, prefix: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let split = line.find(['{', ' '])?;
    let (name, mut rest) = line.split_at(split);
    let mut labels = BTreeMap::new();
    if let Some(mut body) = rest.strip_prefix('{') {
        // `key="value"` pairs separated by commas, up to the closing brace.
        loop {
            body = body.trim_start_matches([',', ' ']);
            if let Some(after) = body.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = body.find('=')?;
            let key = body[..eq].trim().to_string();
            let (value, after) = quoted(body[eq + 1..].strip_prefix('"')?)?;
            labels.insert(key, value);
            body = after;
        }
    }
    let value = rest.split_whitespace().next()?;
    Some(Sample {
        name: name.to_string(),
        labels,
        value: parse_value(value)?,
    })
}

/// A label value up to its closing quote (escapes `\\`, `\"`, `\n`), and the text after it.
fn quoted(s: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut it = s.char_indices();
    while let Some((i, c)) = it.next() {
        match c {
            '\\' => match it.next()?.1 {
                'n' => value.push('\n'),
                other => value.push(other),
            },
            '"' => return Some((value, &s[i + 1..])),
            c => value.push(c),
        }
    }
    None
}

fn parse_value(v: &str) -> Option<f64> {
    match v {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        v => v.parse().ok(),
    }
}

/// The `q` quantile of a histogram given as cumulative `(upper bound, count)` buckets sorted
/// by bound (the last one `+Inf`), interpolated linearly inside a bucket as PromQL does;
/// `None` without observations.
pub fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                // PromQL answers the highest finite bound.
                return Some(lower);
            }
            let in_bucket = count - below;
            let frac = if in_bucket > 0.0 {
                (rank - below) / in_bucket
            } else {
                0.0
            };
            return Some(lower + (le - lower) * frac);
        }
        (lower, below) = (le, count);
    }
    Some(lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_labels_with_escapes_and_plain_samples() {
        let text = "# HELP x\n\
            istio_requests_total{reporter=\"source\",source_workload=\"a\\\"b\",response_code=\"200\"} 12\n\
            istio_up 1\n\
            istio_d_bucket{le=\"+Inf\"} 3 1700000000\n";
        let s = parse(text, "istio_");
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].name, "istio_requests_total");
        assert_eq!(s[0].label("source_workload"), "a\"b");
        assert_eq!(s[0].label("response_code"), "200");
        assert_eq!(s[0].value, 12.0);
        assert_eq!(s[1].name, "istio_up");
        assert!(s[1].labels.is_empty());
        assert_eq!(s[2].label("le"), "+Inf");
        assert_eq!(s[2].value, 3.0);
    }

    #[test]
    fn quantiles_interpolate_inside_the_bucket_as_promql() {
        // 10 observations: 4 <= 1, 8 <= 5, 10 <= 10.
        let b = [(1.0, 4.0), (5.0, 8.0), (10.0, 10.0), (f64::INFINITY, 10.0)];
        assert_eq!(quantile(0.5, &b), Some(2.0)); // rank 5: 1 + 4 * (1/4)
        assert_eq!(quantile(0.9, &b), Some(7.5)); // rank 9: 5 + 5 * (1/2)
        assert_eq!(quantile(0.99, &[(f64::INFINITY, 0.0)]), None);
        // All in +Inf: the highest finite bound.
        assert_eq!(
            quantile(0.5, &[(1.0, 0.0), (f64::INFINITY, 2.0)]),
            Some(1.0)
        );
    }
}
