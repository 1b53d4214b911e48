//! What a Telemetry resource asks for that weft does not build, by field.

use super::BUILTIN_LOG_PROVIDER;
use weft_api::{MeshConfig, Telemetry};

/// What a Telemetry resource says that weft does not build, by field.
pub(crate) fn report(t: &Telemetry, mesh: Option<&MeshConfig>, push: &mut impl FnMut(String)) {
    if t.target_ref.is_some() || !t.target_refs.is_empty() {
        push("targetRef/targetRefs (a Telemetry attached by targetRef is not applied yet)".into());
    }
    if !t.metrics.is_empty() {
        push("metrics (providers, overrides, reportingInterval: not enforced yet)".into());
    }
    let kind = |name: &str| {
        mesh.and_then(|m| {
            m.extension_providers
                .iter()
                .find(|p| p.name.eq_ignore_ascii_case(name))
        })
        .map(|p| p.kind.clone())
    };
    for (i, tr) in t.tracing.iter().enumerate() {
        for (name, tag) in &tr.custom_tags {
            if tag.as_ref().is_some_and(|t| t.formatter.is_some()) {
                push(format!("tracing[{i}].customTags.{name}.formatter"));
            }
        }
        if tr.use_request_id_for_trace_sampling == Some(false) {
            push(format!("tracing[{i}].useRequestIdForTraceSampling (weft decides from the trace headers' sampled flag)"));
        }
        for p in tr.providers.iter().skip(1) {
            push(format!(
                "tracing[{i}].providers {} (one tracing provider per mode: the first is used)",
                p.name
            ));
        }
        if let Some(p) = tr.providers.first() {
            match kind(&p.name).as_deref() {
                Some("opentelemetry") => {}
                Some(k) => push(format!("tracing[{i}].providers {} ({k} tracing is not built; use an opentelemetry provider)", p.name)),
                None => push(format!("tracing[{i}].providers {} (no such MeshConfig extension provider: no spans)", p.name)),
            }
        }
    }
    for (i, a) in t.access_logging.iter().enumerate() {
        for p in &a.providers {
            match kind(&p.name).as_deref() {
                Some("envoyFileAccessLog") => {}
                None if p.name == BUILTIN_LOG_PROVIDER => {}
                Some(k) => push(format!("accessLogging[{i}].providers {} ({k} access logs are not built)", p.name)),
                None => push(format!("accessLogging[{i}].providers {} (no such MeshConfig extension provider: nothing logged)", p.name)),
            }
        }
    }
}
