//! Names and values every part of the compiler shares: Envoy's cluster names and Istio's
//! durations.

/// Envoy's cluster naming: `outbound|<port>|<subset>|<host>`.
pub fn cluster_name(port: u32, subset: Option<&str>, host: &str) -> String {
    format!("outbound|{port}|{}|{host}", subset.unwrap_or(""))
}

pub(crate) fn parse_cluster_name(name: &str) -> Option<(u32, Option<String>, String)> {
    let mut it = name.splitn(4, '|');
    let _ = it.next()?;
    let port = it.next()?.parse().ok()?;
    let subset = it.next()?;
    let host = it.next()?;
    Some((
        port,
        (!subset.is_empty()).then(|| subset.to_string()),
        host.to_string(),
    ))
}

/// Parses an Istio duration (`1h`, `5m`, `2s`, `0.5s`, `250ms`) to whole milliseconds.
pub fn parse_duration_ms(s: &str) -> Option<u64> {
    weft_api::duration_ms(s.trim())
        .filter(|ms| *ms >= 0.0)
        .map(|ms| ms.round() as u64)
}
