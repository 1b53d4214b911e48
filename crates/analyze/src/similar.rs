//! "Did you mean …?": the closest candidate by edit distance.

/// Edit distance in chars (optimal string alignment: insertions, deletions,
/// substitutions and adjacent transpositions each cost 1).
pub(crate) fn distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let w = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * w];
    for (i, row) in d.chunks_mut(w).enumerate() {
        row[0] = i;
    }
    for (j, cell) in d.iter_mut().take(w).enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[(i - 1) * w + j] + 1)
                .min(d[i * w + j - 1] + 1)
                .min(d[(i - 1) * w + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[(i - 2) * w + j - 2] + 1);
            }
            d[i * w + j] = v;
        }
    }
    d[a.len() * w + b.len()]
}

/// The candidate closest to `wanted`, if it is close enough to be a plausible typo
/// (distance at most a third of the longer string, and at least 1 edit).
pub(crate) fn closest<'c, I>(wanted: &str, candidates: I) -> Option<&'c str>
where
    I: IntoIterator<Item = &'c str>,
{
    let limit = |c: &str| wanted.chars().count().max(c.chars().count()) / 3;
    candidates
        .into_iter()
        .filter(|c| *c != wanted)
        .map(|c| (distance(wanted, c), c))
        .filter(|(d, c)| *d <= limit(c).max(1))
        .min()
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_and_suggestions() {
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("", "ab"), 2);
        assert_eq!(distance("shpo", "shop"), 1);
        assert_eq!(closest("v3", ["v1", "v2"]), Some("v1"));
        assert_eq!(
            closest("inventry", ["inventory", "player"]),
            Some("inventory")
        );
        assert_eq!(closest("abc", ["xyzzy"]), None);
    }
}
