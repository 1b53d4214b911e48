//! Trace context in request headers: W3C `traceparent`/`tracestate` and B3 (the
//! `x-b3-*` headers and the single `b3` header) read from the caller, and this proxy's span
//! written for the upstream. Envoy's rules: an upstream sampling decision is honoured,
//! `x-envoy-force-trace` samples, otherwise the percentage decides.

use http::{HeaderMap, HeaderValue};
use weft_model::telemetry::Propagation;

/// Which B3 form the caller used (kept for the upstream as well as `traceparent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum B3 {
    None,
    Multi,
    Single,
}

/// The caller's trace context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parent {
    pub trace_id: u128,
    pub span_id: u64,
    /// `None`: the caller deferred the decision.
    pub sampled: Option<bool>,
    pub tracestate: Option<HeaderValue>,
    pub b3: B3,
}

fn hex_u128(s: &str) -> Option<u128> {
    // B3 allows 64-bit trace ids: left-padded to 128.
    if (s.len() == 32 || s.len() == 16) && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        u128::from_str_radix(s, 16).ok().filter(|v| *v != 0)
    } else {
        None
    }
}

fn hex_u64(s: &str) -> Option<u64> {
    if s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        u64::from_str_radix(s, 16).ok().filter(|v| *v != 0)
    } else {
        None
    }
}

fn get<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

/// W3C `traceparent`: `00-<trace id>-<parent id>-<flags>`.
fn traceparent(h: &HeaderMap) -> Option<Parent> {
    let v = get(h, "traceparent")?;
    let mut it = v.split('-');
    let (version, trace, span, flags) = (it.next()?, it.next()?, it.next()?, it.next()?);
    if version.len() != 2 || version == "ff" || trace.len() != 32 || flags.len() != 2 {
        return None;
    }
    if version == "00" && it.next().is_some() {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some(Parent {
        trace_id: hex_u128(trace)?,
        span_id: hex_u64(span)?,
        sampled: Some(flags & 1 == 1),
        tracestate: h.get("tracestate").cloned(),
        b3: B3::None,
    })
}

fn b3_sampled(v: &str) -> Option<bool> {
    match v {
        "1" | "true" | "d" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

/// B3 multi-header: `x-b3-traceid`, `x-b3-spanid`, `x-b3-sampled`, `x-b3-flags`.
fn b3_multi(h: &HeaderMap) -> Option<Parent> {
    let trace_id = hex_u128(get(h, "x-b3-traceid")?)?;
    let span_id = hex_u64(get(h, "x-b3-spanid")?)?;
    let debug = get(h, "x-b3-flags") == Some("1");
    let sampled = if debug {
        Some(true)
    } else {
        get(h, "x-b3-sampled").and_then(b3_sampled)
    };
    Some(Parent {
        trace_id,
        span_id,
        sampled,
        tracestate: None,
        b3: B3::Multi,
    })
}

/// B3 single header: `{trace id}-{span id}[-{sampling}[-{parent span id}]]`.
fn b3_single(h: &HeaderMap) -> Option<Parent> {
    let v = get(h, "b3")?;
    let mut it = v.split('-');
    let trace_id = hex_u128(it.next()?)?;
    let span_id = hex_u64(it.next()?)?;
    let sampled = it.next().and_then(b3_sampled);
    Some(Parent {
        trace_id,
        span_id,
        sampled,
        tracestate: None,
        b3: B3::Single,
    })
}

/// The caller's context: `traceparent` first, then B3 (single, then multi). B3 headers
/// the caller sent are rewritten for the upstream whichever form was read.
pub fn extract(h: &HeaderMap) -> Option<Parent> {
    let mut p = traceparent(h)
        .or_else(|| b3_single(h))
        .or_else(|| b3_multi(h))?;
    p.b3 = if h.contains_key("b3") {
        B3::Single
    } else if h.contains_key("x-b3-traceid") {
        B3::Multi
    } else {
        B3::None
    };
    Some(p)
}

/// The caller's context as a tracer of `propagation` reads it: Envoy's Zipkin tracer reads
/// B3 (and, with W3C propagation on, `traceparent` when no B3 came); OpenTelemetry reads
/// [`extract`]'s order.
pub fn extract_for(h: &HeaderMap, propagation: Propagation) -> Option<Parent> {
    let b3 = || b3_single(h).or_else(|| b3_multi(h));
    match propagation {
        Propagation::W3c => extract(h),
        Propagation::B3 => b3(),
        Propagation::B3AndW3c => b3().or_else(|| traceparent(h)),
    }
}

/// Envoy's decision: forced, else the caller's, else the percentage (`roll` in 0..100).
pub fn decide(h: &HeaderMap, parent: Option<&Parent>, percent: f64, roll: f64) -> bool {
    if h.contains_key("x-envoy-force-trace") {
        return true;
    }
    match parent.and_then(|p| p.sampled) {
        Some(s) => s,
        None => roll < percent,
    }
}

fn value(s: String) -> HeaderValue {
    HeaderValue::try_from(s).expect("hex digits and dashes are a valid header value")
}

/// Writes this proxy's span as the parent the upstream sees: `traceparent` (and the
/// caller's `tracestate`), and B3 in the form the caller used.
pub fn inject(
    h: &mut HeaderMap,
    trace_id: u128,
    span_id: u64,
    sampled: bool,
    parent: Option<&Parent>,
) {
    inject_for(h, trace_id, span_id, sampled, parent, Propagation::W3c);
}

/// [`inject`] for a tracer of `propagation`: W3C writes `traceparent` and rewrites the
/// caller's B3; the Zipkin forms write B3 (multi-header unless the caller used the single
/// header), with `traceparent` too when W3C propagation is on.
pub fn inject_for(
    h: &mut HeaderMap,
    trace_id: u128,
    span_id: u64,
    sampled: bool,
    parent: Option<&Parent>,
    propagation: Propagation,
) {
    if propagation != Propagation::B3 {
        let flag = if sampled { "01" } else { "00" };
        h.insert(
            "traceparent",
            value(format!("00-{trace_id:032x}-{span_id:016x}-{flag}")),
        );
    }
    let b3 = match (parent.map_or(B3::None, |p| p.b3), propagation) {
        (B3::None, Propagation::B3 | Propagation::B3AndW3c) => B3::Multi,
        (form, _) => form,
    };
    // Zipkin's tracer keeps a 64-bit trace id 64-bit in B3; with W3C it is the 128-bit id
    // `traceparent` carries.
    let tid = if trace_id >> 64 == 0 && propagation != Propagation::W3c {
        format!("{trace_id:016x}")
    } else {
        format!("{trace_id:032x}")
    };
    match b3 {
        B3::None => {}
        B3::Single => {
            let s = if sampled { "1" } else { "0" };
            let p = parent.map_or(0, |p| p.span_id);
            h.insert("b3", value(format!("{tid}-{span_id:016x}-{s}-{p:016x}")));
        }
        B3::Multi => {
            h.insert("x-b3-traceid", value(tid));
            h.insert("x-b3-spanid", value(format!("{span_id:016x}")));
            match parent {
                Some(p) => h.insert("x-b3-parentspanid", value(format!("{:016x}", p.span_id))),
                None => h.remove("x-b3-parentspanid"),
            };
            h.insert(
                "x-b3-sampled",
                HeaderValue::from_static(if sampled { "1" } else { "0" }),
            );
            h.remove("x-b3-flags");
        }
    }
}

/// A fresh non-zero id.
pub fn new_trace_id(rng: &mut fastrand::Rng) -> u128 {
    rng.u128(1..)
}

/// A fresh non-zero span id.
pub fn new_span_id(rng: &mut fastrand::Rng) -> u64 {
    rng.u64(1..)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn reads_w3c_and_both_b3_forms() {
        let w3c = extract(&headers(&[
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
            ("tracestate", "vendor=x"),
        ]))
        .unwrap();
        assert_eq!(w3c.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!((w3c.span_id, w3c.sampled), (0x00f067aa0ba902b7, Some(true)));
        assert_eq!(w3c.tracestate.unwrap(), "vendor=x");
        let multi = extract(&headers(&[
            ("x-b3-traceid", "80f198ee56343ba8"),
            ("x-b3-spanid", "e457b5a2e4d86bd1"),
            ("x-b3-sampled", "0"),
        ]))
        .unwrap();
        assert_eq!(
            (multi.trace_id, multi.sampled, multi.b3),
            (0x80f198ee56343ba8, Some(false), B3::Multi)
        );
        let single = extract(&headers(&[(
            "b3",
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90",
        )]))
        .unwrap();
        assert_eq!(
            (single.span_id, single.sampled, single.b3),
            (0xe457b5a2e4d86bd1, Some(true), B3::Single)
        );
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        ] {
            let mut h = HeaderMap::new();
            h.insert("traceparent", HeaderValue::from_static(bad));
            assert_eq!(extract(&h), None, "{bad}");
        }
    }

    #[test]
    fn decisions_follow_envoy() {
        let none = HeaderMap::new();
        let unsampled = Parent {
            trace_id: 1,
            span_id: 1,
            sampled: Some(false),
            tracestate: None,
            b3: B3::None,
        };
        assert!(
            !decide(&none, Some(&unsampled), 100.0, 0.0),
            "the caller's 'no' wins over 100%"
        );
        let deferred = Parent {
            sampled: None,
            ..unsampled.clone()
        };
        assert!(decide(&none, Some(&deferred), 100.0, 99.9));
        assert!(!decide(&none, None, 0.0, 0.0), "0% samples nothing");
        assert!(decide(
            &headers(&[("x-envoy-force-trace", "1")]),
            Some(&unsampled),
            0.0,
            50.0
        ));
    }

    #[test]
    fn writes_this_span_as_the_upstreams_parent() {
        let mut h = headers(&[("x-b3-flags", "1")]);
        let parent = Parent {
            trace_id: 7,
            span_id: 9,
            sampled: Some(true),
            tracestate: None,
            b3: B3::Multi,
        };
        inject(&mut h, 7, 0xabc, true, Some(&parent));
        assert_eq!(
            h["traceparent"],
            "00-00000000000000000000000000000007-0000000000000abc-01"
        );
        assert_eq!(h["x-b3-spanid"], "0000000000000abc");
        assert_eq!(h["x-b3-parentspanid"], "0000000000000009");
        assert_eq!(h["x-b3-sampled"], "1");
        assert!(!h.contains_key("x-b3-flags"));
        let back = extract(&h).unwrap();
        assert_eq!((back.trace_id, back.span_id), (7, 0xabc));
    }
}
