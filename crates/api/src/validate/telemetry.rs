//! Telemetry rules, as istio/istio's `ValidateTelemetry`, `validateTelemetryTracing`,
//! `validateTelemetryMetrics` and `validateTelemetryProviders`
//! (`pkg/config/validation/validation.go`) and the CRD's CEL rules: selector/targetRef
//! exclusivity, provider names, tracing sampling and custom tags, metric overrides and
//! access logging.

use super::common::{duration, percent, selector_labels, selector_without_labels};
use super::policy_target::target_refs;
use super::{Errs, WarningKind};
use crate::{CustomTag, ProviderRef, TagOperation, Telemetry};

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
        selector_without_labels(errs, "spec.selector", &sel.match_labels);
    }
    if t.tracing.len() > 1 {
        errs.warn(WarningKind::Istio, "spec.tracing", "multiple tracing is not currently supported: Istio uses the first entry only; merge them");
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
        if tr.providers.len() > 1 {
            errs.warn(
                WarningKind::Istio,
                format!("{at}.providers"),
                "multiple providers is not currently supported: Istio uses the first one only",
            );
        }
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
                Some(tag) => custom_tag(errs, &tat, name, tag),
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
                if tag.is_empty() {
                    errs.warn(
                        WarningKind::Istio,
                        &tat,
                        "tagOverrides name may not be empty: name the metric label to change",
                    );
                }
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

/// At most one of literal/environment/header/formatter (the CRD's oneOf; none is
/// accepted), each with a non-empty value or name.
fn custom_tag(errs: &mut Errs, tat: &str, name: &str, tag: &CustomTag) {
    let n = [
        tag.literal.is_some(),
        tag.environment.is_some(),
        tag.header.is_some(),
        tag.formatter.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if n > 1 {
        errs.at(
            tat,
            format!("custom tag '{name}' must set only one of literal, environment, header or formatter"),
        );
    }
    let empty = [
        (
            "literal value",
            tag.literal
                .as_ref()
                .map(|l| l.value.as_deref().unwrap_or_default()),
        ),
        (
            "environment name",
            tag.environment.as_ref().map(|e| e.name.as_str()),
        ),
        ("header name", tag.header.as_ref().map(|h| h.name.as_str())),
        (
            "formatter value",
            tag.formatter
                .as_ref()
                .map(|f| f.value.as_deref().unwrap_or_default()),
        ),
    ];
    for (what, v) in empty {
        if v == Some("") {
            errs.at(tat, format!("custom tag '{name}': {what} may not be empty"));
        }
    }
    if name.is_empty() {
        errs.key(tat, "custom tag name may not be empty");
    }
}
