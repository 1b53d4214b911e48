//! The size and range limits of Istio's CRDs (`maxItems`, `maxLength`, `maxProperties`, their
//! `min*` forms, bounded numbers), which the Kubernetes API server enforces before Istio's
//! own validation sees a resource: an object past one is never stored, so Istio never runs
//! it. weft checks the same limits at load, generically, from the table in
//! `crd_limits_table.rs` (generated from istio/api's
//! `kubernetes/customresourcedefinitions.gen.yaml`, commit `b8f8791d`, storage versions).
//! Number limits that are only a field's type (`uint32`) are left to deserialization.

use super::Errs;
use crate::Resource;
use serde_json::Value;

/// One CRD rule, on the value at a path.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Rule {
    MaxItems(usize),
    MinItems(usize),
    MaxLength(usize),
    MinLength(usize),
    MaxProperties(usize),
    MinProperties(usize),
    Max(i64),
    Min(i64),
}

use Rule::*;

/// `(kind, path, rule)`: the path in the CRD's schema, `[]` for every list item and `{}` for
/// every map value (`spec.endpoints[].labels{}`).
type Row = (&'static str, &'static str, Rule);

include!("crd_limits_table.rs");

/// Checks every CRD limit of `r`'s kind; a path that already has a problem (weft's own,
/// more specific, message) gets no second one.
pub(crate) fn check(r: &Resource, errs: &mut Errs) {
    let rows = TABLE.iter().filter(|(k, _, _)| *k == r.kind.as_str());
    let mut spec = None;
    for (_, path, rule) in rows {
        let spec = spec.get_or_insert_with(|| serde_json::to_value(&r.spec).unwrap_or_default());
        let segments: Vec<&str> = path.split('.').skip(1).collect();
        let mut found = Vec::new();
        visit(spec, &segments, "spec".to_string(), &mut found);
        for (at, value) in found {
            // Serialization writes defaults (`""`, `[]`) for fields the user left out; a
            // minimum applies only to what was written.
            let written = || r.positions.get(&at).is_some() || r.positions.get_key(&at).is_some();
            if is_minimum(*rule) && !written() {
                continue;
            }
            if let Some(message) = broken(value, *rule) {
                if !errs.has_problem_at(&at) {
                    errs.at(
                        &at,
                        format!("{at} {message} (the CRD's limit: the Kubernetes API server refuses the resource, so Istio never sees it)"),
                    );
                }
            }
        }
    }
}

/// Collects the values at `segments` below `value` with their concrete paths
/// (`spec.endpoints[3].labels.app`).
fn visit<'a>(value: &'a Value, segments: &[&str], at: String, out: &mut Vec<(String, &'a Value)>) {
    let Some((first, rest)) = segments.split_first() else {
        out.push((at, value));
        return;
    };
    let (name, each) = match first.find(['[', '{']) {
        Some(i) => (&first[..i], &first[i..]),
        None => (*first, ""),
    };
    let Some(child) = value.get(name) else {
        return;
    };
    let mut at = format!("{at}.{name}");
    // `a[]{}`-style segments: one step per marker.
    let markers: Vec<&str> = each.split_inclusive([']', '}']).collect();
    descend(child, &markers, rest, &mut at, out);
}

/// Steps through `[]` (each item) and `{}` (each map value) markers, then the rest.
fn descend<'a>(
    value: &'a Value,
    markers: &[&str],
    rest: &[&str],
    at: &mut String,
    out: &mut Vec<(String, &'a Value)>,
) {
    let Some((marker, more)) = markers.split_first() else {
        return visit(value, rest, at.clone(), out);
    };
    match (*marker, value) {
        ("[]", Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                descend(item, more, rest, &mut format!("{at}[{i}]"), out);
            }
        }
        ("{}", Value::Object(map)) => {
            for (k, v) in map {
                descend(v, more, rest, &mut format!("{at}.{k}"), out);
            }
        }
        _ => {}
    }
}

fn is_minimum(rule: Rule) -> bool {
    matches!(rule, MinItems(_) | MinLength(_) | MinProperties(_) | Min(_))
}

/// What is wrong with `value` under `rule`, in words; `None` when it holds (or when the
/// value has another type, which deserialization already answered).
fn broken(value: &Value, rule: Rule) -> Option<String> {
    let (len, unit) = match (rule, value) {
        (MaxItems(_) | MinItems(_), Value::Array(a)) => (a.len(), "entries"),
        (MaxProperties(_) | MinProperties(_), Value::Object(m)) => (m.len(), "entries"),
        (MaxLength(_) | MinLength(_), Value::String(s)) => (s.chars().count(), "characters"),
        (Max(max), Value::Number(n)) => {
            let v = n.as_f64()?;
            return (v > max as f64).then(|| format!("is {n}, at most {max} allowed"));
        }
        (Min(min), Value::Number(n)) => {
            let v = n.as_f64()?;
            return (v < min as f64).then(|| format!("is {n}, at least {min} allowed"));
        }
        _ => return None,
    };
    match rule {
        MaxItems(max) | MaxProperties(max) | MaxLength(max) if len > max => {
            Some(format!("has {len} {unit}, at most {max} allowed"))
        }
        MinItems(min) | MinProperties(min) | MinLength(min) if len < min => {
            Some(format!("has {len} {unit}, at least {min} needed"))
        }
        _ => None,
    }
}
