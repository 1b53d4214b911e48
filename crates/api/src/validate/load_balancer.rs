//! DestinationRule load balancer rules, as istio/istio's `validateLoadBalancer`
//! (`pkg/config/validation/validation.go`) and `ValidateLocalityLbSetting` /
//! `ValidateZoneAwareLbSetting` (`agent/validation.go`): consistent-hash settings (cookie,
//! ring hash / maglev, primes), locality distribute/failover, warmup.

use std::collections::BTreeSet;

use super::common::duration;
use super::{Errs, WarningKind};
use crate::{ConsistentHashLb, LoadBalancerSettings, LocalityFailover, LocalityLbSetting};

/// `outlier`: whether the same traffic policy sets outlierDetection (failover needs it).
pub(super) fn load_balancer(errs: &mut Errs, at: &str, lb: &LoadBalancerSettings, outlier: bool) {
    if lb.simple.is_some() && lb.consistent_hash.is_some() {
        errs.key(
            format!("{at}.consistentHash"),
            "only one of simple or consistentHash may be set",
        );
    }
    if let Some(ch) = &lb.consistent_hash {
        consistent_hash(errs, &format!("{at}.consistentHash"), ch);
    }
    if let Some(l) = &lb.locality_lb_setting {
        locality(errs, &format!("{at}.localityLbSetting"), l, outlier);
    }
    if let Some(z) = &lb.zone_aware_lb_setting {
        let zat = format!("{at}.zoneAwareLbSetting");
        for (i, p) in z.failover_priority.iter().enumerate() {
            if is_topology_label(p) {
                errs.at(format!("{zat}.failoverPriority[{i}]"), format!("failoverPriority for zone aware lb must not use topology label {p:?}; region- and zone-level routing are handled automatically"));
            }
        }
        failover(errs, &zat, &z.failover);
        if (!z.failover.is_empty() || !z.failover_priority.is_empty()) && !outlier {
            errs.warn(WarningKind::Istio, &zat, "outlier detection policy must be provided for failover: without outlierDetection no endpoint is ever marked unhealthy, so failover never happens");
        }
    }
    if lb.locality_lb_setting.is_some() && lb.zone_aware_lb_setting.is_some() {
        errs.key(
            format!("{at}.zoneAwareLbSetting"),
            "only one of localityLbSetting or zoneAwareLbSetting may be set",
        );
    }
    if let Some(w) = &lb.warmup {
        let wat = format!("{at}.warmup");
        if w.duration.is_empty() {
            errs.key(
                format!("{wat}.duration"),
                format!("{wat}.duration: Required value: set a warmup duration such as \"60s\""),
            );
        } else {
            duration(errs, &format!("{wat}.duration"), &w.duration, false);
        }
        if let Some(p) = w.minimum_percent {
            if !(0.0..=100.0).contains(&p) {
                errs.at(
                    format!("{wat}.minimumPercent"),
                    format!("{wat}.minimumPercent: Invalid value {p}: must be within [0, 100]"),
                );
            }
        }
        if let Some(a) = w.aggression {
            if a <= 0.0 {
                errs.at(format!("{wat}.aggression"), format!("{wat}.aggression: Invalid value {a}: aggression should be greater than 0 (1 = linear ramp-up)"));
            }
        }
    }
    if let Some(d) = &lb.warmup_duration_secs {
        duration(errs, &format!("{at}.warmupDurationSecs"), d, false);
    }
}

fn consistent_hash(errs: &mut Errs, cat: &str, ch: &ConsistentHashLb) {
    let keys = [
        ch.http_header_name.is_some(),
        ch.http_cookie.is_some(),
        ch.use_source_ip.is_some(),
        ch.http_query_parameter_name.is_some(),
    ];
    if keys.iter().filter(|b| **b).count() > 1 {
        errs.key(cat, "consistentHash: only one of httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName may be set");
    }
    if ch.ring_hash.is_some() && ch.maglev.is_some() {
        errs.key(
            cat,
            "consistentHash: only one of ringHash or maglev may be set",
        );
    }
    if ch.minimum_ring_size.is_some_and(|n| n != 0)
        && (ch.ring_hash.is_some() || ch.maglev.is_some())
    {
        errs.key(
            format!("{cat}.minimumRingSize"),
            "only one of the deprecated minimumRingSize or ringHash/maglev may be set: move the value to ringHash.minimumRingSize",
        );
    }
    if let Some(m) = &ch.maglev {
        maglev_table_size(errs, &format!("{cat}.maglev"), m.table_size);
    }
    if let Some(c) = &ch.http_cookie {
        if c.name.is_empty() {
            errs.key(
                format!("{cat}.httpCookie.name"),
                "httpCookie.name is required",
            );
        }
        if let Some(ttl) = &c.ttl {
            duration(errs, &format!("{cat}.httpCookie.ttl"), ttl, true);
        }
        let mut names = BTreeSet::new();
        for (i, a) in c.attributes.iter().enumerate() {
            let aat = format!("{cat}.httpCookie.attributes[{i}].name");
            if a.name.is_empty() {
                errs.key(aat, "cookie attribute name cannot be empty");
            } else if !names.insert(a.name.as_str()) {
                errs.at(
                    aat,
                    format!(
                        "duplicate cookie attribute name {:?}: list each attribute once",
                        a.name
                    ),
                );
            }
        }
    }
}

fn is_topology_label(l: &str) -> bool {
    matches!(
        l,
        "topology.kubernetes.io/region"
            | "topology.kubernetes.io/zone"
            | "topology.istio.io/subzone"
    )
}

fn locality(errs: &mut Errs, lat: &str, l: &LocalityLbSetting, outlier: bool) {
    if !l.distribute.is_empty() && !l.failover.is_empty() {
        errs.key(
            lat,
            "localityLbSetting: can not simultaneously specify 'distribute' and 'failover'",
        );
        return;
    }
    if !l.failover.is_empty() {
        if let Some(p) = l.failover_priority.iter().find(|p| is_topology_label(p)) {
            errs.key(format!("{lat}.failoverPriority"), format!("can not simultaneously set 'failover' and topology label {p:?} in 'failoverPriority'"));
            return;
        }
    }
    let mut sources = Vec::new();
    for (i, d) in l.distribute.iter().enumerate() {
        let dat = format!("{lat}.distribute[{i}]");
        sources.push(d.from.clone().unwrap_or_default());
        if let Some((loc, w)) = d.to.iter().find(|(_, w)| !(1..=100).contains(*w)) {
            errs.at(
                format!("{dat}.to.{loc}"),
                format!("locality weight {w} must be in range [1, 100]"),
            );
            return;
        }
        let sum: u64 = d.to.values().map(|v| u64::from(*v)).sum();
        if sum != 100 {
            errs.at(
                format!("{dat}.to"),
                format!("locality weights must total 100 (they total {sum})"),
            );
            return;
        }
        let dests: Vec<String> = d.to.keys().cloned().collect();
        localities(errs, &format!("{dat}.to"), &dests);
    }
    localities(errs, &format!("{lat}.distribute"), &sources);
    if (!l.failover.is_empty() || !l.failover_priority.is_empty()) && !outlier {
        errs.warn(WarningKind::Istio, lat, "outlier detection policy must be provided for failover: without outlierDetection no endpoint is ever marked unhealthy, so failover never happens");
    }
    failover(errs, lat, &l.failover);
}

fn failover(errs: &mut Errs, at: &str, list: &[LocalityFailover]) {
    for (i, f) in list.iter().enumerate() {
        let fat = format!("{at}.failover[{i}]");
        let (from, to) = (
            f.from.as_deref().unwrap_or_default(),
            f.to.as_deref().unwrap_or_default(),
        );
        if from == to {
            errs.at(
                &fat,
                format!("failover from {from:?} to itself: failover settings must name different regions"),
            );
        }
        if from.contains('/') || to.contains('/') {
            errs.at(
                &fat,
                format!(
                    "failover names regions only ({from:?} -> {to:?}): drop the zone/subzone part"
                ),
            );
        }
        if from.contains('*') || to.contains('*') {
            errs.at(
                &fat,
                "failover regions must not contain the '*' wildcard: name the regions",
            );
        }
    }
}

/// Istio's `validateLocalities`: `region[/zone[/subzone]]`, at most one `*` and only at
/// the end, no empty part, no locality covering an earlier one.
fn localities(errs: &mut Errs, at: &str, list: &[String]) {
    let mut seen: Vec<Vec<&str>> = Vec::new();
    for loc in list {
        let stars = loc.matches('*').count();
        if stars > 1 || (stars == 1 && !loc.ends_with('*')) {
            errs.at(
                at,
                format!("locality {loc:?}: at most one wildcard '*', and only at the end"),
            );
            return;
        }
        let parts: Vec<&str> = loc.splitn(3, '/').collect();
        if parts.iter().any(|p| p.is_empty()) {
            errs.at(
                at,
                format!("locality {loc:?} must not contain empty region/zone/subzone info"),
            );
            return;
        }
        let covers = |a: &[&str], b: &[&str]| {
            a.iter()
                .zip(b)
                .all(|(earlier, this)| earlier == this || *earlier == "*")
        };
        if seen.iter().any(|s| covers(s, &parts)) {
            errs.at(
                at,
                format!("locality {loc:?} overlaps with one listed before it"),
            );
            return;
        }
        seen.push(parts);
    }
}

/// Maglev `tableSize`: required, below 5000011 and prime (Envoy's primality
/// test, as Istio copies it).
fn maglev_table_size(errs: &mut Errs, at: &str, size: Option<u64>) {
    match size.unwrap_or(0) {
        0 => errs.key(
            at,
            "maglev.tableSize must be set: give a prime below 5000011 (65537 is the usual choice)",
        ),
        n if n >= 5_000_011 => errs.at(
            format!("{at}.tableSize"),
            format!(
                "maglev.tableSize {n} must be less than 5000011: use a smaller prime such as 65537"
            ),
        ),
        n if !is_prime(n) => errs.at(
            format!("{at}.tableSize"),
            format!("maglev.tableSize {n} must be a prime number (e.g. 65537 or 131071)"),
        ),
        _ => {}
    }
}

/// Envoy's `Primes::isPrime` (1, 2 and 3 count as prime).
fn is_prime(x: u64) -> bool {
    if x != 0 && x < 4 {
        return true;
    }
    // `rem` rather than `%`/`is_multiple_of` keeps clippy and the 1.85 MSRV happy.
    let divides = |f: u64| x.checked_rem(f) == Some(0);
    !divides(2)
        && (3..)
            .step_by(2)
            .take_while(|f| f * f <= x)
            .all(|f| !divides(f))
}
