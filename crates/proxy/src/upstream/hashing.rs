//! Consistent-hash tables (DestinationRule `loadBalancer.consistentHash`): a ring of points
//! per endpoint (`ringHash`, at least `minimumRingSize` points in all — Envoy's default
//! 1024 — and at least 128 per endpoint), or Envoy's Maglev lookup table (`maglev`,
//! `tableSize` entries, Envoy's default 65537, a prime). Both are built from the
//! endpoints' addresses with a stable hash, so every proxy maps a key to the same
//! endpoint. A key whose endpoint may not be picked (ejected) goes to the next entry that
//! may: only that endpoint's keys move.

use super::lb::stable_hash;
use weft_model::{Endpoint, HashTable};

/// Fewest ring points per endpoint (spread stays even with many endpoints).
const MIN_POINTS_PER_ENDPOINT: u64 = 128;
/// Envoy's `maximum_ring_size` default.
const MAX_RING: u64 = 8 * 1024 * 1024;

/// A built table.
#[derive(Debug)]
pub enum Table {
    /// (point, endpoint index), sorted by point.
    Ring(Vec<(u64, usize)>),
    /// Entry -> endpoint index.
    Maglev(Vec<u32>),
}

impl Table {
    pub fn build(kind: &HashTable, endpoints: &[Endpoint]) -> Table {
        match kind {
            HashTable::Ring { minimum_size } => Table::Ring(ring(endpoints, *minimum_size)),
            HashTable::Maglev { size } => Table::Maglev(maglev(endpoints, *size)),
        }
    }

    /// The endpoint for `key`: the first in the table's order from the key's entry on
    /// that `ok` accepts.
    pub fn lookup(&self, key: u64, ok: impl Fn(usize) -> bool) -> Option<usize> {
        match self {
            Table::Ring(r) if !r.is_empty() => {
                let start = r.partition_point(|(p, _)| *p < key);
                (0..r.len())
                    .map(|k| r[(start + k) % r.len()].1)
                    .find(|i| ok(*i))
            }
            Table::Maglev(t) if !t.is_empty() => {
                let start = (key % t.len() as u64) as usize;
                (0..t.len())
                    .map(|k| t[(start + k) % t.len()] as usize)
                    .find(|i| ok(*i))
            }
            _ => None,
        }
    }
}

fn ring(endpoints: &[Endpoint], minimum: u64) -> Vec<(u64, usize)> {
    let n = endpoints.len().max(1) as u64;
    let per = minimum
        .min(MAX_RING)
        .div_ceil(n)
        .max(MIN_POINTS_PER_ENDPOINT);
    let mut ring: Vec<(u64, usize)> = endpoints
        .iter()
        .enumerate()
        .flat_map(|(i, e)| {
            (0..per).map(move |k| (stable_hash(format!("{}_{k}", e.address).as_bytes()), i))
        })
        .collect();
    ring.sort_unstable();
    ring
}

/// Maglev's population (Eisenbud et al., as Envoy builds it): each endpoint walks its own
/// permutation of the table (offset and skip from two hashes of its address), taking the
/// next free entry in turn, until every entry is taken.
fn maglev(endpoints: &[Endpoint], size: u64) -> Vec<u32> {
    let m = size.max(1);
    if endpoints.is_empty() {
        return Vec::new();
    }
    let perm: Vec<(u64, u64)> = endpoints
        .iter()
        .map(|e| {
            let offset = stable_hash(format!("{}#offset", e.address).as_bytes()) % m;
            let skip = match m {
                1 => 1,
                _ => stable_hash(format!("{}#skip", e.address).as_bytes()) % (m - 1) + 1,
            };
            (offset, skip)
        })
        .collect();
    let mut next = vec![0u64; endpoints.len()];
    let mut table = vec![u32::MAX; m as usize];
    let mut filled = 0u64;
    'fill: loop {
        for (i, (offset, skip)) in perm.iter().enumerate() {
            let mut c = (offset + next[i] * skip) % m;
            while table[c as usize] != u32::MAX {
                next[i] += 1;
                c = (offset + next[i] * skip) % m;
            }
            table[c as usize] = i as u32;
            next[i] += 1;
            filled += 1;
            if filled == m {
                break 'fill;
            }
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(n: usize) -> Vec<Endpoint> {
        (0..n)
            .map(|i| Endpoint {
                address: format!("10.0.0.{i}:8080"),
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn maglev_fills_the_table_evenly_and_moves_only_an_ejected_endpoints_keys() {
        let eps = endpoints(3);
        let t = Table::build(&HashTable::Maglev { size: 65537 }, &eps);
        let Table::Maglev(entries) = &t else {
            panic!("a maglev table")
        };
        let mut counts = [0usize; 3];
        entries.iter().for_each(|e| counts[*e as usize] += 1);
        for c in counts {
            // Maglev's promise: every endpoint within a few entries of M/N.
            assert!(c.abs_diff(65537 / 3) <= 2, "{counts:?}");
        }
        let keys: Vec<u64> = (0..300u64).map(|k| stable_hash(&k.to_le_bytes())).collect();
        let before: Vec<usize> = keys
            .iter()
            .map(|k| t.lookup(*k, |_| true).unwrap())
            .collect();
        let after: Vec<usize> = keys
            .iter()
            .map(|k| t.lookup(*k, |i| i != 1).unwrap())
            .collect();
        for (b, a) in before.iter().zip(&after) {
            if *b != 1 {
                assert_eq!(a, b, "a key of a healthy endpoint stays");
            } else {
                assert_ne!(*a, 1);
            }
        }
        assert!(before.contains(&1));
    }

    #[test]
    fn the_ring_honours_the_minimum_size() {
        let Table::Ring(r) = Table::build(&HashTable::Ring { minimum_size: 4096 }, &endpoints(2))
        else {
            panic!("a ring")
        };
        assert_eq!(r.len(), 4096);
        let Table::Ring(r) = Table::build(&HashTable::Ring { minimum_size: 1024 }, &endpoints(20))
        else {
            panic!("a ring")
        };
        assert_eq!(r.len(), 20 * 128, "at least 128 points per endpoint");
    }
}
