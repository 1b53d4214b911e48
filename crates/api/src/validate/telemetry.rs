//! Telemetry rules: selector/targetRef exclusivity, provider names, tracing
//! sampling and custom tags, metric overrides and access logging.

use super::common::{duration, percent, selector_labels};
use super::policy_target::target_refs;
use super::Errs;
use crate::{ProviderRef, TagOperation, Telemetry};

fn providers(errs: &mut Errs, at: &str, list: &[ProviderRef]) {
    for (i, p) in list.iter().enumerate() {
        if p.name.is_empty() {
            errs.at(format!("{at}.providers[{i}].name"), "provider name in body should be at least 1 chars long: name a MeshConfig extensionProviders entry");
        }
    }
}

pub(super) fn validate(t: &Telemetry, errs: &mut Errs) {
    if let Some(sel) = &t.selector {
        selector_labels(errs, "spec.selector.matchLabels", &sel.match_labels);
    }
    target_refs(
        errs,
        t.selector.is_some(),
        t.target_ref.as_ref(),
        &t.target_refs,
    );
    for (i, tr) in t.tracing.iter().enumerate() {
        let at = format!("spec.tracing[{i}]");
        providers(errs, &at, &tr.providers);
        if let Some(v) = tr.random_sampling_percentage {
            percent(
                errs,
                &format!("{at}.randomSamplingPercentage"),
                "tracing randomSamplingPercentage",
                v,
            );
        }
        for (name, tag) in &tr.custom_tags {
            let tat = format!("{at}.customTags.{name}");
            match tag {
                None => errs.at(&tat, format!("custom tag '{name}' may not have a nil value: set literal, environment, header or formatter")),
                Some(tag) => {
                    let n = [tag.literal.is_some(), tag.environment.is_some(), tag.header.is_some(), tag.formatter.is_some()]
                        .iter()
                        .filter(|b| **b)
                        .count();
                    if n != 1 {
                        errs.at(&tat, format!("custom tag '{name}' must set exactly one of literal, environment, header or formatter"));
                    }
                }
            }
        }
    }
    for (i, m) in t.metrics.iter().enumerate() {
        let at = format!("spec.metrics[{i}]");
        providers(errs, &at, &m.providers);
        if let Some(d) = &m.reporting_interval {
            duration(errs, &format!("{at}.reportingInterval"), d, false);
        }
        for (j, o) in m.overrides.iter().enumerate() {
            let oat = format!("{at}.overrides[{j}]");
            if let Some(sel) = &o.r#match {
                if sel.custom_metric.as_deref() == Some("") {
                    errs.at(format!("{oat}.match.customMetric"), "customMetric in body should be at least 1 chars long: name the metric or use `metric`");
                }
                if sel.custom_metric.is_some() && sel.metric.is_some() {
                    errs.key(
                        format!("{oat}.match"),
                        "only one of metric or customMetric may be set",
                    );
                }
            }
            for (tag, ov) in &o.tag_overrides {
                let tat = format!("{oat}.tagOverrides.{tag}");
                match ov.operation.unwrap_or(TagOperation::Upsert) {
                    TagOperation::Upsert if ov.value.as_deref().is_none_or(str::is_empty) => {
                        errs.at(&tat, format!("tag override '{tag}' with operation UPSERT needs a value (a CEL expression)"));
                    }
                    TagOperation::Remove if ov.value.is_some() => {
                        errs.at(
                            &tat,
                            format!(
                                "tag override '{tag}' with operation REMOVE must not have a value"
                            ),
                        );
                    }
                    _ => {}
                }
            }
        }
    }
    for (i, a) in t.access_logging.iter().enumerate() {
        providers(errs, &format!("spec.accessLogging[{i}]"), &a.providers);
        if let Some(expr) = a.filter.as_ref().and_then(|f| f.expression.as_deref()) {
            if let Err(e) = crate::cel::parse(expr) {
                errs.at(
                    format!("spec.accessLogging[{i}].filter.expression"),
                    format!("access log filter {expr:?}: {e}"),
                );
            }
        }
    }
}
