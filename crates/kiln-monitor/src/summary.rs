//! Exact, mergeable summaries of one column: distinct values with their counts.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::error::{MonitorError, Result};

/// Beyond this many distinct values [`NumericCounts::from_values`] stops hashing and sorts: a
/// hash table that large misses the cache on most lookups, and sorting is then faster.
const HASH_DISTINCT_LIMIT: usize = 1 << 16;

/// Hashes a float's bits for the value counter with the SplitMix64 finalizer. FxHash only
/// multiplies, which keeps the many trailing zero bits of round numbers (0.5, 12.0, 21.3 to a
/// few digits) at the bottom and gives such keys nearly the same hash; a drift window of round
/// numbers then took five times longer to count.
#[derive(Default)]
struct FloatBitsHasher(u64);

impl Hasher for FloatBitsHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(self.0 ^ u64::from(byte));
        }
    }

    fn write_u64(&mut self, bits: u64) {
        let mut z = bits ^ (bits >> 30);
        z = z.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z ^= z >> 27;
        z = z.wrapping_mul(0x94d0_49bb_1331_11eb);
        self.0 = z ^ (z >> 31);
    }
}

type FloatCounter = HashMap<u64, u64, BuildHasherDefault<FloatBitsHasher>>;

/// The kind of a column, as the drift tests see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnKind {
    /// Numbers compared by value (Evidently's `num`).
    Numeric,
    /// Labels compared by identity (Evidently's `cat`).
    Categorical,
}

impl std::fmt::Display for ColumnKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ColumnKind::Numeric => "numeric",
            ColumnKind::Categorical => "categorical",
        })
    }
}

/// A numeric column as its sorted distinct finite values and how often each occurs, plus the
/// rows that hold no finite value.
///
/// Invariants (checked by every constructor, including deserialization): `values` is strictly
/// increasing and finite, `-0.0` is stored as `0.0` (pandas counts them as one value), every
/// count is at least 1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "NumericCountsParts")]
pub struct NumericCounts {
    values: Vec<f64>,
    counts: Vec<u64>,
    /// Rows without a value (NaN, null).
    missing: u64,
    /// Rows holding +inf or -inf. Evidently drops them before testing, as it does NaN.
    infinite: u64,
    #[serde(skip)]
    finite: u64,
}

/// The serialized form of [`NumericCounts`], validated on the way in.
#[derive(Deserialize)]
struct NumericCountsParts {
    values: Vec<f64>,
    counts: Vec<u64>,
    #[serde(default)]
    missing: u64,
    #[serde(default)]
    infinite: u64,
}

impl TryFrom<NumericCountsParts> for NumericCounts {
    type Error = MonitorError;

    fn try_from(parts: NumericCountsParts) -> Result<Self> {
        NumericCounts::from_counts(&parts.values, &parts.counts, parts.missing, parts.infinite)
    }
}

/// `-0.0` and `0.0` are one value to pandas; keep one representation so they count together.
#[inline]
fn canonical(value: f64) -> f64 {
    if value == 0.0 { 0.0 } else { value }
}

/// An unsigned key whose order is the numeric order of finite floats (sign bit flipped for
/// positives, all bits flipped for negatives), so integers sort them.
#[inline]
fn order_key(value: f64) -> u64 {
    let bits = value.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

#[inline]
fn from_order_key(key: u64) -> f64 {
    if key >> 63 == 1 {
        f64::from_bits(key & !(1 << 63))
    } else {
        f64::from_bits(!key)
    }
}

fn checked_sum(counts: &[u64]) -> Result<u64> {
    counts
        .iter()
        .try_fold(0u64, |acc, &c| acc.checked_add(c))
        .ok_or(MonitorError::CountOverflow)
}

/// The distinct finite values of two numeric summaries in ascending order, each with its
/// count in either (0 where absent): the one walk that KS, Wasserstein and the value tables
/// make over two sorted lists.
pub(crate) fn merged_counts<'a>(
    a: &'a NumericCounts,
    b: &'a NumericCounts,
) -> impl Iterator<Item = (f64, u64, u64)> + 'a {
    let (v1, c1) = (a.values(), a.counts());
    let (v2, c2) = (b.values(), b.counts());
    let (mut i, mut j) = (0, 0);
    std::iter::from_fn(move || {
        let value = match (v1.get(i), v2.get(j)) {
            (Some(x), Some(y)) => x.min(*y),
            (Some(x), None) => *x,
            (None, Some(y)) => *y,
            (None, None) => return None,
        };
        let mut counts = (0, 0);
        if v1.get(i) == Some(&value) {
            counts.0 = c1[i];
            i += 1;
        }
        if v2.get(j) == Some(&value) {
            counts.1 = c2[j];
            j += 1;
        }
        Some((value, counts.0, counts.1))
    })
}

impl NumericCounts {
    /// Summarizes raw values. NaN counts as missing, ±inf as infinite; neither enters a test.
    pub fn from_values(values: &[f64]) -> Self {
        let mut missing = 0u64;
        let mut infinite = 0u64;
        let mut counter = FloatCounter::default();
        for &value in values {
            if value.is_nan() {
                missing += 1;
            } else if value.is_infinite() {
                infinite += 1;
            } else {
                *counter.entry(canonical(value).to_bits()).or_insert(0) += 1;
                if counter.len() > HASH_DISTINCT_LIMIT {
                    return Self::from_values_by_sorting(values);
                }
            }
        }
        let mut pairs: Vec<(f64, u64)> = counter
            .into_iter()
            .map(|(bits, count)| (f64::from_bits(bits), count))
            .collect();
        pairs.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
        let (values, counts): (Vec<f64>, Vec<u64>) = pairs.into_iter().unzip();
        let finite = counts.iter().sum();
        NumericCounts {
            values,
            counts,
            missing,
            infinite,
            finite,
        }
    }

    /// The path for many distinct values: sort order keys, then count runs.
    fn from_values_by_sorting(values: &[f64]) -> Self {
        let mut missing = 0u64;
        let mut infinite = 0u64;
        let mut keys = Vec::with_capacity(values.len());
        for &value in values {
            if value.is_nan() {
                missing += 1;
            } else if value.is_infinite() {
                infinite += 1;
            } else {
                keys.push(order_key(canonical(value)));
            }
        }
        keys.sort_unstable();
        let mut distinct = Vec::new();
        let mut counts = Vec::new();
        let mut iter = keys.iter().copied().peekable();
        while let Some(key) = iter.next() {
            let mut count = 1u64;
            while iter.peek() == Some(&key) {
                iter.next();
                count += 1;
            }
            distinct.push(from_order_key(key));
            counts.push(count);
        }
        NumericCounts {
            values: distinct,
            counts,
            missing,
            infinite,
            finite: keys.len() as u64,
        }
    }

    /// Builds a summary from distinct values and their counts, in any order. Repeated values
    /// are added together and zero counts dropped; values must be finite (rows without one are
    /// given as `missing` or `infinite`).
    pub fn from_counts(
        values: &[f64],
        counts: &[u64],
        missing: u64,
        infinite: u64,
    ) -> Result<Self> {
        if values.len() != counts.len() {
            return Err(MonitorError::InvalidSummary(format!(
                "{} values but {} counts",
                values.len(),
                counts.len()
            )));
        }
        if let Some(bad) = values.iter().find(|v| !v.is_finite()) {
            return Err(MonitorError::InvalidSummary(format!(
                "value {bad} is not finite; count such rows as missing or infinite"
            )));
        }
        let mut pairs: Vec<(f64, u64)> = values
            .iter()
            .zip(counts)
            .filter(|(_, c)| **c > 0)
            .map(|(v, c)| (canonical(*v), *c))
            .collect();
        pairs.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
        let mut out_values: Vec<f64> = Vec::with_capacity(pairs.len());
        let mut out_counts: Vec<u64> = Vec::with_capacity(pairs.len());
        for (value, count) in pairs {
            match (out_values.last(), out_counts.last_mut()) {
                (Some(last), Some(last_count)) if *last == value => {
                    *last_count = last_count
                        .checked_add(count)
                        .ok_or(MonitorError::CountOverflow)?;
                }
                _ => {
                    out_values.push(value);
                    out_counts.push(count);
                }
            }
        }
        let finite = checked_sum(&out_counts)?;
        Ok(NumericCounts {
            values: out_values,
            counts: out_counts,
            missing,
            infinite,
            finite,
        })
    }

    /// The summary of both parts together: equal to the summary of the concatenated values.
    pub fn merge(&self, other: &NumericCounts) -> Result<NumericCounts> {
        let mut values = Vec::with_capacity(self.values.len().max(other.values.len()));
        let mut counts = Vec::with_capacity(values.capacity());
        let (mut i, mut j) = (0, 0);
        while i < self.values.len() || j < other.values.len() {
            let take_left = j >= other.values.len()
                || (i < self.values.len() && self.values[i] <= other.values[j]);
            let take_right = i >= self.values.len()
                || (j < other.values.len() && other.values[j] <= self.values[i]);
            let mut count = 0u64;
            let value = if take_left {
                self.values[i]
            } else {
                other.values[j]
            };
            if take_left {
                count += self.counts[i];
                i += 1;
            }
            if take_right {
                count = count
                    .checked_add(other.counts[j])
                    .ok_or(MonitorError::CountOverflow)?;
                j += 1;
            }
            values.push(value);
            counts.push(count);
        }
        Ok(NumericCounts {
            values,
            counts,
            missing: self
                .missing
                .checked_add(other.missing)
                .ok_or(MonitorError::CountOverflow)?,
            infinite: self
                .infinite
                .checked_add(other.infinite)
                .ok_or(MonitorError::CountOverflow)?,
            finite: self
                .finite
                .checked_add(other.finite)
                .ok_or(MonitorError::CountOverflow)?,
        })
    }

    /// Distinct finite values, strictly increasing.
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// How often each of [`values`](Self::values) occurs.
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// Rows without a value (NaN or null).
    pub fn missing(&self) -> u64 {
        self.missing
    }

    /// Rows holding +inf or -inf.
    pub fn infinite(&self) -> u64 {
        self.infinite
    }

    /// Rows with a finite value: the sample size every drift test sees.
    pub fn finite_count(&self) -> u64 {
        self.finite
    }

    /// All rows: finite, missing and infinite.
    pub fn rows(&self) -> u64 {
        self.finite
            .saturating_add(self.missing)
            .saturating_add(self.infinite)
    }

    /// Number of distinct finite values.
    pub fn distinct(&self) -> usize {
        self.values.len()
    }

    /// Share of rows Evidently's missing-values metric counts as missing: NaN and ±inf.
    pub fn missing_rate(&self) -> Result<f64> {
        let rows = self.rows();
        if rows == 0 {
            return Err(MonitorError::NoRows);
        }
        Ok((self.missing.saturating_add(self.infinite)) as f64 / rows as f64)
    }

    /// Whether pandas would hold this column as integers: every row has a value and every
    /// value is a whole number (a NaN or an infinity forces pandas to `float64`).
    pub fn looks_integer(&self) -> bool {
        self.missing == 0
            && self.infinite == 0
            && self
                .values
                .iter()
                .all(|v| v.fract() == 0.0 && v.abs() < 9.007_199_254_740_992e15)
    }
}

/// A categorical column as each label's count plus the rows without a label.
///
/// Labels are ordered as Rust orders strings (by Unicode code point), which is also Python's
/// order for `str`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "CategoricalCountsParts")]
pub struct CategoricalCounts {
    counts: BTreeMap<String, u64>,
    /// Rows without a label (null).
    missing: u64,
}

/// The serialized form of [`CategoricalCounts`]; zero counts are dropped on the way in, as a
/// label with no rows on either side would be an empty cell in every test.
#[derive(Deserialize)]
struct CategoricalCountsParts {
    counts: BTreeMap<String, u64>,
    #[serde(default)]
    missing: u64,
}

impl From<CategoricalCountsParts> for CategoricalCounts {
    fn from(parts: CategoricalCountsParts) -> Self {
        CategoricalCounts::from_counts(parts.counts, parts.missing)
    }
}

impl CategoricalCounts {
    /// Summarizes raw labels; `None` counts as missing. The empty string is a label to the drift
    /// tests (pandas keeps it) but missing to [`missing_rate`](Self::missing_rate).
    pub fn from_values<'a, I>(labels: I) -> Self
    where
        I: IntoIterator<Item = Option<&'a str>>,
    {
        let mut missing = 0u64;
        let mut counter: FxHashMap<&'a str, u64> = FxHashMap::default();
        for label in labels {
            match label {
                Some(label) => *counter.entry(label).or_insert(0) += 1,
                None => missing += 1,
            }
        }
        let counts = counter
            .into_iter()
            .map(|(label, count)| (label.to_owned(), count))
            .collect();
        CategoricalCounts { counts, missing }
    }

    /// Summarizes dictionary-encoded labels (Kiln's Arrow form of a categorical column): each
    /// row is an index into `dictionary`, `None` for a missing row. Counting indices is several
    /// times faster than hashing the strings. A dictionary may repeat a label; its counts add.
    pub fn from_codes<I, S>(codes: I, dictionary: &[S]) -> Result<Self>
    where
        I: IntoIterator<Item = Option<i32>>,
        S: AsRef<str>,
    {
        let mut per_code = vec![0u64; dictionary.len()];
        let mut missing = 0u64;
        for code in codes {
            match code {
                Some(code) => {
                    let slot = usize::try_from(code)
                        .ok()
                        .and_then(|i| per_code.get_mut(i))
                        .ok_or_else(|| {
                            MonitorError::InvalidSummary(format!(
                                "code {code} is outside the dictionary of {} labels",
                                dictionary.len()
                            ))
                        })?;
                    *slot += 1;
                }
                None => missing += 1,
            }
        }
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for (label, count) in dictionary.iter().zip(per_code) {
            if count > 0 {
                let slot = counts.entry(label.as_ref().to_owned()).or_insert(0);
                *slot = slot.checked_add(count).ok_or(MonitorError::CountOverflow)?;
            }
        }
        Ok(CategoricalCounts { counts, missing })
    }

    /// Builds a summary from label counts; zero counts are dropped.
    pub fn from_counts(counts: BTreeMap<String, u64>, missing: u64) -> Self {
        let counts = counts.into_iter().filter(|(_, c)| *c > 0).collect();
        CategoricalCounts { counts, missing }
    }

    /// The summary of both parts together.
    pub fn merge(&self, other: &CategoricalCounts) -> Result<CategoricalCounts> {
        let mut counts = self.counts.clone();
        for (label, count) in &other.counts {
            let slot = counts.entry(label.clone()).or_insert(0);
            *slot = slot
                .checked_add(*count)
                .ok_or(MonitorError::CountOverflow)?;
        }
        Ok(CategoricalCounts {
            counts,
            missing: self
                .missing
                .checked_add(other.missing)
                .ok_or(MonitorError::CountOverflow)?,
        })
    }

    /// Each label's count, ordered by label.
    pub fn counts(&self) -> &BTreeMap<String, u64> {
        &self.counts
    }

    /// Rows without a label.
    pub fn missing(&self) -> u64 {
        self.missing
    }

    /// Rows with a label: the sample size every drift test sees.
    pub fn labelled_count(&self) -> u64 {
        self.counts
            .values()
            .fold(0u64, |acc, c| acc.saturating_add(*c))
    }

    /// All rows.
    pub fn rows(&self) -> u64 {
        self.labelled_count().saturating_add(self.missing)
    }

    /// Number of distinct labels.
    pub fn distinct(&self) -> usize {
        self.counts.len()
    }

    /// Share of rows Evidently's missing-values metric counts as missing: null and `""`.
    pub fn missing_rate(&self) -> Result<f64> {
        let rows = self.rows();
        if rows == 0 {
            return Err(MonitorError::NoRows);
        }
        let empty = self.counts.get("").copied().unwrap_or(0);
        Ok(self.missing.saturating_add(empty) as f64 / rows as f64)
    }

    /// Share of this sample's labelled rows whose label never occurs in `reference`.
    pub fn new_category_rate(&self, reference: &CategoricalCounts) -> Result<f64> {
        let labelled = self.labelled_count();
        if labelled == 0 {
            return Err(MonitorError::EmptySample(crate::Sample::Current));
        }
        let unseen = self
            .counts
            .iter()
            .filter(|(label, _)| !reference.counts.contains_key(*label))
            .fold(0u64, |acc, (_, c)| acc.saturating_add(*c));
        Ok(unseen as f64 / labelled as f64)
    }

    /// Labels of this sample that never occur in `reference`, in label order.
    pub fn new_categories<'a>(
        &'a self,
        reference: &'a CategoricalCounts,
    ) -> impl Iterator<Item = &'a str> + 'a {
        self.counts
            .keys()
            .filter(|label| !reference.counts.contains_key(*label))
            .map(String::as_str)
    }
}

/// One column's summary, numeric or categorical.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ColumnSummary {
    /// A numeric column.
    Numeric(NumericCounts),
    /// A categorical column.
    Categorical(CategoricalCounts),
}

impl ColumnSummary {
    /// Whether the column is numeric or categorical.
    pub fn kind(&self) -> ColumnKind {
        match self {
            ColumnSummary::Numeric(_) => ColumnKind::Numeric,
            ColumnSummary::Categorical(_) => ColumnKind::Categorical,
        }
    }

    /// Rows that enter the drift tests (finite values or labels).
    pub fn tested_count(&self) -> u64 {
        match self {
            ColumnSummary::Numeric(n) => n.finite_count(),
            ColumnSummary::Categorical(c) => c.labelled_count(),
        }
    }

    /// Distinct values or labels.
    pub fn distinct(&self) -> usize {
        match self {
            ColumnSummary::Numeric(n) => n.distinct(),
            ColumnSummary::Categorical(c) => c.distinct(),
        }
    }

    /// All rows, including missing ones.
    pub fn rows(&self) -> u64 {
        match self {
            ColumnSummary::Numeric(n) => n.rows(),
            ColumnSummary::Categorical(c) => c.rows(),
        }
    }

    /// Share of rows Evidently counts as missing (see the per-kind methods).
    pub fn missing_rate(&self) -> Result<f64> {
        match self {
            ColumnSummary::Numeric(n) => n.missing_rate(),
            ColumnSummary::Categorical(c) => c.missing_rate(),
        }
    }

    /// The summary of both parts together; both must be of the same kind.
    pub fn merge(&self, other: &ColumnSummary) -> Result<ColumnSummary> {
        match (self, other) {
            (ColumnSummary::Numeric(a), ColumnSummary::Numeric(b)) => {
                Ok(ColumnSummary::Numeric(a.merge(b)?))
            }
            (ColumnSummary::Categorical(a), ColumnSummary::Categorical(b)) => {
                Ok(ColumnSummary::Categorical(a.merge(b)?))
            }
            _ => Err(MonitorError::KindMismatch {
                reference: self.kind(),
                current: other.kind(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_keys_sort_like_numbers() {
        let mut values = vec![3.5, -1.0, 0.0, -1e300, 1e-300, -2.5e-310, 7.0];
        let mut keys: Vec<u64> = values.iter().map(|v| order_key(*v)).collect();
        keys.sort_unstable();
        values.sort_by(|a, b| a.total_cmp(b));
        let back: Vec<f64> = keys.into_iter().map(from_order_key).collect();
        assert_eq!(back, values);
    }

    #[test]
    fn hashing_and_sorting_paths_agree() {
        let values: Vec<f64> = (0..5000)
            .map(|i| ((i * 7919) % 1013) as f64 / 7.0 - 50.0)
            .collect();
        let mut with_gaps = values.clone();
        with_gaps.extend([f64::NAN, f64::INFINITY, -0.0, 0.0, f64::NEG_INFINITY]);
        let hashed = NumericCounts::from_values(&with_gaps);
        let sorted = NumericCounts::from_values_by_sorting(&with_gaps);
        assert_eq!(hashed, sorted);
        assert_eq!(hashed.missing(), 1);
        assert_eq!(hashed.infinite(), 2);
        assert_eq!(hashed.finite_count(), 5002);
    }
}
