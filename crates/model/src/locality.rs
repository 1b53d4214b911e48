//! Locality failover as istiod computes it (`pilot/pkg/networking/core/loadbalancer`
//! `applyLocalityFailover`): with outlier detection on a cluster and a client whose
//! WorkloadEntry names its `locality` (`region/zone/subzone`), each endpoint gets a
//! priority — 0 same region, zone and subzone; 1 same region and zone; 2 same region;
//! 3 the region a `failover` entry names for the client's region; 4 the rest — and the
//! priorities are compacted (no gaps). `localityLbSetting.enabled: false` turns it off.
//! `distribute` and `failoverPriority` are reported, not built.

/// A `region/zone/subzone` locality (missing parts are empty).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Locality {
    region: String,
    zone: String,
    subzone: String,
}

impl Locality {
    pub(crate) fn parse(s: &str) -> Locality {
        let mut parts = s.splitn(3, '/').map(str::to_string);
        Locality {
            region: parts.next().unwrap_or_default(),
            zone: parts.next().unwrap_or_default(),
            subzone: parts.next().unwrap_or_default(),
        }
    }
}

/// The priority of an endpoint in `ep` for a client in `client`.
pub(crate) fn priority(
    client: &Locality,
    ep: &Locality,
    failover: &[weft_api::LocalityFailover],
) -> u32 {
    if client.region == ep.region {
        return match (client.zone == ep.zone, client.subzone == ep.subzone) {
            (true, true) => 0,
            (true, false) => 1,
            _ => 2,
        };
    }
    let to = failover
        .iter()
        .find(|f| f.from.as_deref() == Some(client.region.as_str()))
        .and_then(|f| f.to.as_deref());
    if to == Some(ep.region.as_str()) {
        3
    } else {
        4
    }
}

/// Renumbers priorities so they run 0, 1, 2… without gaps (Istio's compaction).
pub(crate) fn compact(priorities: &mut [u32]) {
    let mut used: Vec<u32> = priorities.to_vec();
    used.sort_unstable();
    used.dedup();
    for p in priorities.iter_mut() {
        *p = used.iter().position(|u| u == p).unwrap_or(0) as u32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failover(from: &str, to: &str) -> weft_api::LocalityFailover {
        weft_api::LocalityFailover {
            from: Some(from.into()),
            to: Some(to.into()),
        }
    }

    #[test]
    fn priorities_follow_istios_order() {
        let client = Locality::parse("region1/zone1/sub1");
        let p =
            |ep: &str, f: &[weft_api::LocalityFailover]| priority(&client, &Locality::parse(ep), f);
        assert_eq!(p("region1/zone1/sub1", &[]), 0);
        assert_eq!(p("region1/zone1/sub2", &[]), 1);
        assert_eq!(p("region1/zone2", &[]), 2);
        assert_eq!(p("region2/zone1", &[]), 4);
        let f = [failover("region1", "region3")];
        assert_eq!(p("region3/zone9", &f), 3, "the failover region");
        assert_eq!(p("region2/zone1", &f), 4);
        let mut ps = [4, 0, 4, 2];
        compact(&mut ps);
        assert_eq!(ps, [2, 0, 2, 1]);
    }
}
