//! What a Telemetry resource asks for that weft does not build, by field.

use super::BUILTIN_LOG_PROVIDER;
use weft_api::{MeshConfig, Telemetry};

/// What a Telemetry resource says that weft does not build, by field.
pub(crate) fn report(t: &Telemetry, mesh: Option<&MeshConfig>, push: &mut impl FnMut(String)) {
    if t.target_ref.is_some() || !t.target_refs.is_empty() {
        push("targetRef/targetRefs (a Telemetry attached by targetRef is not applied yet)".into());
    }
    for (i, m) in t.metrics.iter().enumerate() {
        metrics(i, m, push);
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
                Some("opentelemetry" | "zipkin") => {}
                Some(k) => push(format!("tracing[{i}].providers {} ({k} tracing is not built; use an opentelemetry or zipkin provider)", p.name)),
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

/// What a `metrics` entry asks for that weft does not build.
fn metrics(i: usize, m: &weft_api::Metrics, push: &mut impl FnMut(String)) {
    use weft_api::{IstioMetric, TagOperation};
    for p in &m.providers {
        if p.name != super::metrics::PROMETHEUS {
            push(format!("metrics[{i}].providers {} (weft's one metrics provider is Istio's built-in prometheus; this one gets nothing, and where prometheus is not in scope Istio's HTTP metrics are off; TCP metrics stay on)", p.name));
        }
    }
    if m.reporting_interval.is_some() {
        push(format!(
            "metrics[{i}].reportingInterval (weft records a TCP connection or stream when it ends)"
        ));
    }
    for (j, o) in m.overrides.iter().enumerate() {
        let at = format!("metrics[{i}].overrides[{j}]");
        let sel = o.r#match.as_ref();
        if let Some(c) = sel.and_then(|s| s.custom_metric.as_deref()) {
            push(format!(
                "{at}.match.customMetric {c} (weft has no custom metrics)"
            ));
        }
        let metric = sel.and_then(|s| s.metric).unwrap_or_default();
        let tcp = matches!(
            metric,
            IstioMetric::TcpOpenedConnections
                | IstioMetric::TcpClosedConnections
                | IstioMetric::TcpSentBytes
                | IstioMetric::TcpReceivedBytes
        );
        let all =
            metric == IstioMetric::AllMetrics && sel.is_none_or(|s| s.custom_metric.is_none());
        let upserts = o
            .tag_overrides
            .iter()
            .filter(|(_, t)| t.operation.unwrap_or_default() == TagOperation::Upsert)
            .map(|(name, _)| name.as_str())
            .collect::<Vec<_>>();
        if (tcp || all) && !upserts.is_empty() {
            push(format!("{at}.tagOverrides {} on TCP metrics (not built for istio_tcp_*, which keep their other labels; removal and disabling apply)", upserts.join(", ")));
        }
        for (name, t) in &o.tag_overrides {
            if t.operation.unwrap_or_default() == TagOperation::Upsert {
                let v = t.value.as_deref().unwrap_or_default();
                if let Err(e) = weft_api::cel::parse(v) {
                    push(format!("{at}.tagOverrides.{name}.value {v:?} (outside weft's CEL subset: {e}; the label's value is `unknown`)"));
                }
            }
        }
    }
}
