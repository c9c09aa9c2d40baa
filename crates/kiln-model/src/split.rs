//! Splitting rows into training and validation sets.
//!
//! * [`time_split`]: train on the past, validate on the most recent part. Rows that share a
//!   timestamp always land on the same side, so no training row is later than any validation
//!   row: the future never leaks into training.
//! * [`stratified_split`]: a seeded random split that keeps each class's share.
//! * [`kfold`]: k folds, optionally stratified, each row validated exactly once.
//!
//! Randomness comes from [`SplitMix64`] seeded with the run's recorded seed. It is written
//! here rather than taken from `rand` because a recorded seed must select the same rows in
//! every future Kiln release, and `rand` documents that its standard generator may change.

use crate::ModelError;

/// Indices of the rows in each part of a split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub train: Vec<usize>,
    pub valid: Vec<usize>,
    /// Rows in neither part (no timestamp, for a time split).
    pub excluded: Vec<usize>,
}

/// A small, fast generator with a fixed, documented sequence (Steele, Lea and Flood, 2014).
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0), without modulo bias.
    pub fn below(&mut self, n: u64) -> u64 {
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let v = self.next_u64();
            if v < zone {
                return v % n;
            }
        }
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

fn check_fraction(f: f64) -> Result<(), ModelError> {
    if f > 0.0 && f < 1.0 {
        Ok(())
    } else {
        Err(ModelError::Invalid(format!(
            "validation fraction must be between 0 and 1 (exclusive), got {f}"
        )))
    }
}

/// Validates on rows at or after `cutoff`, trains on rows before it.
pub fn time_split_at(times: &[Option<i64>], cutoff: i64) -> Split {
    let mut s = Split {
        train: Vec::new(),
        valid: Vec::new(),
        excluded: Vec::new(),
    };
    for (i, t) in times.iter().enumerate() {
        match t {
            Some(t) if *t < cutoff => s.train.push(i),
            Some(_) => s.valid.push(i),
            None => s.excluded.push(i),
        }
    }
    s
}

/// Validates on the most recent `valid_fraction` of rows (by time), trains on the rest.
/// The cut falls between two distinct times, so equal times stay together; the validation
/// part is the smallest that holds at least the requested share, unless that would leave
/// nothing to train on, in which case training gets the earliest time and validation the rest.
pub fn time_split(times: &[Option<i64>], valid_fraction: f64) -> Result<Split, ModelError> {
    check_fraction(valid_fraction)?;
    let mut known: Vec<i64> = times.iter().flatten().copied().collect();
    if known.len() < 2 {
        return Err(ModelError::Invalid(
            "a time split needs at least two rows with a time".into(),
        ));
    }
    known.sort_unstable();
    let want_valid = ((known.len() as f64) * valid_fraction).ceil() as usize;
    let mut cutoff = known[known.len() - want_valid.clamp(1, known.len() - 1)];
    if cutoff == known[0] {
        cutoff = match known.iter().find(|t| **t > known[0]) {
            Some(t) => *t,
            None => {
                return Err(ModelError::Invalid(
                    "every row has the same time: a time split has no past to train on".into(),
                ));
            }
        };
    }
    Ok(time_split_at(times, cutoff))
}

/// Groups row indices by stratum (`None`: one group of all rows), in first-seen order.
fn strata(n: usize, labels: Option<&[usize]>) -> Vec<Vec<usize>> {
    match labels {
        None => vec![(0..n).collect()],
        Some(l) => {
            let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
            for (i, c) in l.iter().enumerate() {
                match groups.iter_mut().find(|(k, _)| k == c) {
                    Some((_, g)) => g.push(i),
                    None => groups.push((*c, vec![i])),
                }
            }
            groups.sort_by_key(|(k, _)| *k);
            groups.into_iter().map(|(_, g)| g).collect()
        }
    }
}

/// A seeded random split; with `labels`, each class keeps its share in both parts.
pub fn stratified_split(
    n: usize,
    labels: Option<&[usize]>,
    valid_fraction: f64,
    seed: u64,
) -> Result<Split, ModelError> {
    check_fraction(valid_fraction)?;
    if let Some(l) = labels
        && l.len() != n
    {
        return Err(ModelError::LengthMismatch {
            what: "rows vs labels",
            left: n,
            right: l.len(),
        });
    }
    let mut rng = SplitMix64::new(seed);
    let mut s = Split {
        train: Vec::new(),
        valid: Vec::new(),
        excluded: Vec::new(),
    };
    for mut group in strata(n, labels) {
        rng.shuffle(&mut group);
        let k = ((group.len() as f64) * valid_fraction).round() as usize;
        s.valid.extend_from_slice(&group[..k]);
        s.train.extend_from_slice(&group[k..]);
    }
    s.train.sort_unstable();
    s.valid.sort_unstable();
    if s.train.is_empty() || s.valid.is_empty() {
        return Err(ModelError::Invalid(format!(
            "{n} rows are too few to split {:.0}% / {:.0}%",
            (1.0 - valid_fraction) * 100.0,
            valid_fraction * 100.0
        )));
    }
    Ok(s)
}

/// `k` folds; fold `i` validates on its rows and trains on all others. With `labels`, each
/// class is dealt across the folds in turn, so every fold keeps the class shares.
pub fn kfold(
    n: usize,
    labels: Option<&[usize]>,
    k: usize,
    seed: u64,
) -> Result<Vec<Split>, ModelError> {
    if k < 2 || k > n {
        return Err(ModelError::Invalid(format!(
            "k-fold needs 2 <= k <= rows, got k = {k} for {n} rows"
        )));
    }
    let mut rng = SplitMix64::new(seed);
    let mut fold_of = vec![0usize; n];
    // Continue dealing where the previous class stopped, so fold sizes differ by at most one.
    let mut next = 0usize;
    for mut group in strata(n, labels) {
        rng.shuffle(&mut group);
        for i in group {
            fold_of[i] = next % k;
            next += 1;
        }
    }
    Ok((0..k)
        .map(|f| Split {
            train: (0..n).filter(|i| fold_of[*i] != f).collect(),
            valid: (0..n).filter(|i| fold_of[*i] == f).collect(),
            excluded: Vec::new(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_sequence_is_fixed() {
        // Reference values of SplitMix64 seeded with 0 (the published test vector).
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn time_split_never_trains_on_the_future() {
        let mut rng = SplitMix64::new(7);
        for round in 0..200 {
            let n = 2 + rng.below(300) as usize;
            // Few distinct times, so ties are everywhere; some rows have no time.
            let distinct = 1 + rng.below(20) as i64;
            let times: Vec<Option<i64>> = (0..n)
                .map(|_| (rng.below(10) > 0).then(|| rng.below(distinct as u64) as i64 * 3600))
                .collect();
            let frac = 0.05 + (rng.below(80) as f64) / 100.0;
            match time_split(&times, frac) {
                Ok(s) => {
                    let last_train = s.train.iter().filter_map(|i| times[*i]).max().unwrap();
                    let first_valid = s.valid.iter().filter_map(|i| times[*i]).min().unwrap();
                    assert!(last_train < first_valid, "round {round}: leak");
                    assert_eq!(s.train.len() + s.valid.len() + s.excluded.len(), n);
                    assert!(s.excluded.iter().all(|i| times[*i].is_none()));
                    let known = n - s.excluded.len();
                    let earliest = s.train.iter().filter_map(|i| times[*i]).min().unwrap();
                    let share_met = s.valid.len() >= (known as f64 * frac).ceil() as usize;
                    let only_earliest = s.train.iter().all(|i| times[*i] == Some(earliest));
                    assert!(
                        share_met || only_earliest,
                        "round {round}: validation too small"
                    );
                }
                Err(e) => {
                    // Only when there is no past: a single distinct time or under two rows.
                    let mut ts: Vec<i64> = times.iter().flatten().copied().collect();
                    ts.sort_unstable();
                    ts.dedup();
                    assert!(ts.len() < 2, "round {round}: {e}");
                }
            }
        }
    }

    #[test]
    fn stratified_split_keeps_class_shares_and_is_seeded() {
        let labels: Vec<usize> = (0..1000).map(|i| usize::from(i % 10 == 0)).collect();
        let s = stratified_split(1000, Some(&labels), 0.2, 42).unwrap();
        let pos_valid = s.valid.iter().filter(|i| labels[**i] == 1).count();
        assert_eq!(pos_valid, 20);
        assert_eq!(s.valid.len(), 200);
        assert_eq!(s, stratified_split(1000, Some(&labels), 0.2, 42).unwrap());
        assert_ne!(s, stratified_split(1000, Some(&labels), 0.2, 43).unwrap());
        let mut all: Vec<usize> = s.train.iter().chain(&s.valid).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
        assert!(stratified_split(1, None, 0.2, 1).is_err());
        assert!(stratified_split(10, None, 1.0, 1).is_err());
    }

    #[test]
    fn kfold_validates_every_row_once_with_balanced_folds() {
        let labels: Vec<usize> = (0..103).map(|i| i % 3).collect();
        let folds = kfold(103, Some(&labels), 5, 9).unwrap();
        let mut seen = vec![0; 103];
        for f in &folds {
            for i in &f.valid {
                seen[*i] += 1;
            }
            assert_eq!(f.train.len() + f.valid.len(), 103);
            assert!(f.valid.len() == 20 || f.valid.len() == 21);
            for c in 0..3 {
                let share = f.valid.iter().filter(|i| labels[**i] == c).count();
                assert!((6..=8).contains(&share), "class {c}: {share}");
            }
        }
        assert!(seen.iter().all(|s| *s == 1));
        assert!(kfold(3, None, 4, 0).is_err());
    }
}
