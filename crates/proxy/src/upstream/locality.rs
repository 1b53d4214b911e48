//! Locality-prioritized load balancing (Istio's locality failover, Envoy's priority
//! levels): each endpoint has a priority the compiler gave it from the client's and the
//! endpoint's localities (0 = same region/zone/subzone, then same zone, same region, the
//! `failover` region, the rest). A priority level takes Envoy's share of the requests:
//! its healthy share of endpoints times the overprovisioning factor 1.4, capped at what
//! the levels before it left; when every level together is less than fully healthy, the
//! shares are normalized. So traffic stays in the client's own locality until outlier
//! detection ejects enough of it there, then spills over, level by level.

/// Envoy's default overprovisioning factor, in percent.
const OVERPROVISIONING: u64 = 140;

/// Each level's share of requests in percent (summing to 100 unless every level is empty),
/// from (healthy, total) endpoints per level, in priority order.
pub fn loads(levels: &[(usize, usize)]) -> Vec<u64> {
    let health: Vec<u64> = levels
        .iter()
        .map(|&(up, all)| match all {
            0 => 0,
            _ => (OVERPROVISIONING * up as u64 / all as u64).min(100),
        })
        .collect();
    let total: u64 = health.iter().sum();
    if total == 0 {
        return health;
    }
    let mut left = 100u64;
    let mut out = Vec::with_capacity(health.len());
    for h in &health {
        // Normalized when the levels together cannot take everything.
        let h = if total < 100 { h * 100 / total } else { *h };
        let take = h.min(left);
        out.push(take);
        left -= take;
    }
    // Rounding in the normalization: what is left goes to the first level that has any.
    if left > 0 {
        if let Some(first) = out.iter_mut().find(|l| **l > 0) {
            *first += left;
        }
    }
    out
}

/// The level a roll in `0..100` falls in, given the levels' loads.
pub fn level(loads: &[u64], roll: u64) -> usize {
    let mut acc = 0;
    for (i, l) in loads.iter().enumerate() {
        acc += l;
        if roll < acc {
            return i;
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_healthy_local_level_takes_everything() {
        assert_eq!(loads(&[(2, 2), (3, 3)]), [100, 0]);
        // 1.4 × 3/4 = 105 % ≥ 100: still everything local.
        assert_eq!(loads(&[(3, 4), (3, 3)]), [100, 0]);
    }

    #[test]
    fn an_unhealthy_local_level_spills_to_the_next_ones() {
        // 1.4 × 1/2 = 70 % local, the rest next.
        assert_eq!(loads(&[(1, 2), (2, 2)]), [70, 30]);
        assert_eq!(loads(&[(0, 1), (0, 1), (1, 1)]), [0, 0, 100]);
        // Every level degraded: 70 + 35 = 105 ≥ 100, not normalized.
        assert_eq!(loads(&[(1, 2), (1, 4)]), [70, 30]);
        // 35 + 35 = 70 < 100: normalized.
        assert_eq!(loads(&[(1, 4), (1, 4)]), [50, 50]);
        assert_eq!(loads(&[(0, 2), (0, 2)]), [0, 0], "nothing healthy: panic");
    }

    #[test]
    fn rolls_fall_in_levels_by_their_loads() {
        let l = [70, 30];
        assert_eq!(level(&l, 0), 0);
        assert_eq!(level(&l, 69), 0);
        assert_eq!(level(&l, 70), 1);
        assert_eq!(level(&l, 99), 1);
        assert_eq!(level(&[0, 0], 5), 0);
    }
}
