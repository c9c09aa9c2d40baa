//! Profiles: bounded, mergeable summaries of a dataset's columns.
//!
//! A profile is written for every data snapshot and for a model's training data, and monitoring
//! later compares live windows against it. Two properties make that work:
//!
//! * **Mergeable.** Profiles of two parts of a dataset merge into exactly the profile of the
//!   whole (counts add, moments combine with Chan's formula, histograms add bucket by bucket).
//!   Appends, parallel ingest and windows from several server replicas all rely on it.
//! * **Bounded.** A numeric column's distribution is a histogram over buckets whose edges are
//!   fixed for every profile Kiln ever writes: bucket `k` holds values in `(γ^(k-1), γ^k]` with
//!   `γ = (1 + α)/(1 − α)`, `α = 1%` (the DDSketch mapping), mirrored for negative values, plus
//!   one bucket for zero. Any quantile read from it is within 1% of the true value, and its size
//!   depends on the range of the data (about 115 buckets per factor of 10), not on the row count.
//!   Categorical columns keep exact counts for up to [`CATEGORY_CAP`] values and count the rest
//!   as `other`.
//!
//! The bucket histogram is written by hand rather than taken from a sketch crate because the
//! profile is a stored format: its bucket edges must never change under a dependency upgrade.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Float64Type, Int32Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};

use crate::schema::{Column, FeatureType, Schema};

/// Relative accuracy of numeric buckets.
pub const ALPHA: f64 = 0.01;
/// Values whose magnitude is below this fall into the zero bucket.
pub const MIN_MAGNITUDE: f64 = 1e-9;
/// Distinct values a categorical profile counts exactly.
pub const CATEGORY_CAP: usize = 1_000;
/// The quantiles shown by `kiln data show` and compared by `kiln data diff`.
pub const SHOWN_QUANTILES: [f64; 7] = [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99];

fn gamma() -> f64 {
    (1.0 + ALPHA) / (1.0 - ALPHA)
}

/// Bucket key of a finite value: 0 for zero; `±(1 + offset + ceil(log_γ |x|))` otherwise.
#[inline]
fn bucket_key(x: f64, inv_ln_gamma: f64) -> i32 {
    let a = x.abs();
    if a < MIN_MAGNITUDE {
        return 0;
    }
    // Offset keeps keys of tiny magnitudes (down to 1e-9) strictly positive.
    let k = (a.ln() * inv_ln_gamma).ceil() as i32 + KEY_OFFSET;
    if x > 0.0 { k } else { -k }
}

/// `ceil(log_γ 1e-9)` is about -1036; this offset makes every nonzero key at least 1.
const KEY_OFFSET: i32 = 1_100;

/// The value a bucket stands for: the point with relative error at most α to all its values.
fn bucket_value(key: i32) -> f64 {
    if key == 0 {
        return 0.0;
    }
    let g = gamma();
    let k = key.abs() - KEY_OFFSET;
    let v = 2.0 * g.powi(k) / (g + 1.0);
    if key > 0 { v } else { -v }
}

/// The fixed-edge bucket histogram of a numeric column (see the module docs).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Buckets {
    /// (bucket key, count), sorted by key, counts nonzero.
    pub counts: Vec<(i32, u64)>,
}

/// Builds [`Buckets`] fast: a dense window of counters that grows to the keys it sees.
#[derive(Clone, Debug, Default)]
struct BucketCounter {
    lo: i32,
    counts: Vec<u64>,
}

impl BucketCounter {
    #[inline]
    fn add(&mut self, key: i32, n: u64) {
        if self.counts.is_empty() {
            self.lo = key;
            self.counts.push(0);
        }
        if key < self.lo {
            let grow = (self.lo - key) as usize;
            let mut v = vec![0; grow];
            v.extend_from_slice(&self.counts);
            self.counts = v;
            self.lo = key;
        }
        let i = (key - self.lo) as usize;
        if i >= self.counts.len() {
            self.counts.resize(i + 1, 0);
        }
        self.counts[i] += n;
    }

    fn finish(&self) -> Buckets {
        Buckets {
            counts: self
                .counts
                .iter()
                .enumerate()
                .filter(|(_, c)| **c > 0)
                .map(|(i, c)| (self.lo + i as i32, *c))
                .collect(),
        }
    }
}

impl Buckets {
    fn merge(&mut self, other: &Buckets) {
        let mut map: BTreeMap<i32, u64> = self.counts.iter().copied().collect();
        for (k, c) in &other.counts {
            *map.entry(*k).or_insert(0) += c;
        }
        self.counts = map.into_iter().collect();
    }

    fn total(&self) -> u64 {
        self.counts.iter().map(|(_, c)| c).sum()
    }
}

/// Summary of a numeric column (or of text lengths).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NumericProfile {
    /// Finite values seen.
    pub count: u64,
    /// +inf/-inf values seen (kept out of every other statistic).
    pub infinite: u64,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub mean: f64,
    /// Sum of squared deviations from the mean (Welford/Chan), for the variance.
    pub m2: f64,
    /// Every value was a whole number (quantiles are then rounded to whole numbers too).
    #[serde(default)]
    pub integral: bool,
    pub buckets: Buckets,
}

impl NumericProfile {
    /// Sample standard deviation (n − 1 in the denominator, as pandas' `describe`).
    pub fn std(&self) -> Option<f64> {
        (self.count > 1).then(|| (self.m2 / (self.count - 1) as f64).sqrt())
    }

    /// The `q` quantile (0..=1), within 1% relative error, clamped to the exact min and max.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let (min, max) = (self.min?, self.max?);
        let total = self.buckets.total();
        if total == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * (total - 1) as f64).floor() as u64;
        let mut seen = 0u64;
        for (k, c) in &self.buckets.counts {
            seen += c;
            if seen > rank {
                let v = bucket_value(*k).clamp(min, max);
                return Some(if self.integral { v.round() } else { v });
            }
        }
        Some(max)
    }

    /// Counts per bin for `edges` (ascending): bin `i` holds `[edges[i], edges[i+1])`, the last bin
    /// also its right edge. Each bucket is placed by its representative value, so a count can be
    /// off only for values within 1% of an edge.
    pub fn histogram(&self, edges: &[f64]) -> Vec<u64> {
        let bins = edges.len().saturating_sub(1);
        let mut out = vec![0u64; bins];
        if bins == 0 {
            return out;
        }
        let (min, max) = match (self.min, self.max) {
            (Some(a), Some(b)) => (a, b),
            _ => return out,
        };
        for (k, c) in &self.buckets.counts {
            let v = bucket_value(*k).clamp(min, max);
            let i = match edges.partition_point(|e| *e <= v) {
                0 => 0,
                p => (p - 1).min(bins - 1),
            };
            out[i] += c;
        }
        out
    }

    pub fn merge(&mut self, other: &NumericProfile) {
        if other.count > 0 {
            if self.count == 0 {
                self.mean = other.mean;
                self.m2 = other.m2;
            } else {
                let n1 = self.count as f64;
                let n2 = other.count as f64;
                let delta = other.mean - self.mean;
                let n = n1 + n2;
                self.mean += delta * n2 / n;
                self.m2 += other.m2 + delta * delta * n1 * n2 / n;
            }
            self.integral = if self.count == 0 {
                other.integral
            } else {
                self.integral && other.integral
            };
            self.count += other.count;
            self.min = min_opt(self.min, other.min);
            self.max = max_opt(self.max, other.max);
            self.buckets.merge(&other.buckets);
        }
        self.infinite += other.infinite;
    }
}

fn min_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

fn max_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// Accumulates a [`NumericProfile`] value by value.
#[derive(Clone, Debug)]
pub struct NumericBuilder {
    count: u64,
    infinite: u64,
    min: f64,
    max: f64,
    mean: f64,
    m2: f64,
    fractional: bool,
    buckets: BucketCounter,
    inv_ln_gamma: f64,
    /// Direct-mapped cache of (value bits, bucket key): most numeric columns hold few distinct
    /// values, and a cache hit is several times cheaper than the logarithm.
    cache: Box<[(u64, i32); CACHE_SLOTS]>,
}

const CACHE_SLOTS: usize = 256;

impl Default for NumericBuilder {
    fn default() -> Self {
        Self {
            count: 0,
            infinite: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            mean: 0.0,
            m2: 0.0,
            fractional: false,
            buckets: BucketCounter::default(),
            inv_ln_gamma: 1.0 / gamma().ln(),
            // No finite value has these bits (a NaN payload), so the empty cache never hits.
            cache: Box::new([(u64::MAX, 0); CACHE_SLOTS]),
        }
    }
}

impl NumericBuilder {
    /// Adds one value; NaN must be filtered out by the caller (it is a null).
    #[inline]
    pub fn push(&mut self, x: f64) {
        if !x.is_finite() {
            self.infinite += 1;
            return;
        }
        self.count += 1;
        let delta = x - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (x - self.mean);
        self.min = self.min.min(x);
        self.max = self.max.max(x);
        let bits = x.to_bits();
        let slot = (bits.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as usize % CACHE_SLOTS;
        let key = if self.cache[slot].0 == bits {
            self.cache[slot].1
        } else {
            self.fractional |= x.fract() != 0.0;
            let k = bucket_key(x, self.inv_ln_gamma);
            self.cache[slot] = (bits, k);
            k
        };
        self.buckets.add(key, 1);
    }

    pub fn finish(&self) -> NumericProfile {
        let seen = self.count > 0;
        NumericProfile {
            count: self.count,
            infinite: self.infinite,
            min: seen.then_some(self.min),
            max: seen.then_some(self.max),
            mean: self.mean,
            m2: self.m2,
            integral: seen && !self.fractional,
            buckets: self.buckets.finish(),
        }
    }
}

/// Counts of a categorical column's values.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CategoryProfile {
    /// Exact counts of up to [`CATEGORY_CAP`] values.
    pub counts: BTreeMap<String, u64>,
    /// Values not counted individually because the cap was reached.
    pub other: u64,
}

impl CategoryProfile {
    pub fn total(&self) -> u64 {
        self.counts.values().sum::<u64>() + self.other
    }

    /// Values by descending count (ties by value).
    pub fn top(&self, n: usize) -> Vec<(&str, u64)> {
        let mut v: Vec<(&str, u64)> = self.counts.iter().map(|(k, c)| (k.as_str(), *c)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        v.truncate(n);
        v
    }

    pub fn merge(&mut self, other: &CategoryProfile) {
        for (k, c) in &other.counts {
            *self.counts.entry(k.clone()).or_insert(0) += c;
        }
        self.other += other.other;
        self.enforce_cap();
    }

    /// Keeps the most frequent values (ties by value, so the result is deterministic).
    fn enforce_cap(&mut self) {
        if self.counts.len() <= CATEGORY_CAP {
            return;
        }
        let keep: Vec<(String, u64)> = self
            .top(CATEGORY_CAP)
            .into_iter()
            .map(|(k, c)| (k.to_owned(), c))
            .collect();
        let kept: u64 = keep.iter().map(|(_, c)| c).sum();
        let all: u64 = self.counts.values().sum();
        self.other += all - kept;
        self.counts = keep.into_iter().collect();
    }
}

/// Accumulates a [`CategoryProfile`].
#[derive(Clone, Debug, Default)]
pub struct CategoryBuilder {
    counts: HashMap<String, u64>,
    other: u64,
}

impl CategoryBuilder {
    #[inline]
    pub fn push_n(&mut self, v: &str, n: u64) {
        if let Some(c) = self.counts.get_mut(v) {
            *c += n;
        } else if self.counts.len() < CATEGORY_CAP {
            self.counts.insert(v.to_owned(), n);
        } else {
            self.other += n;
        }
    }

    pub fn finish(&self) -> CategoryProfile {
        CategoryProfile {
            counts: self.counts.iter().map(|(k, c)| (k.clone(), *c)).collect(),
            other: self.other,
        }
    }
}

/// Per-type statistics of a column.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ColumnStats {
    Numeric(NumericProfile),
    Categorical(CategoryProfile),
    Boolean {
        trues: u64,
        falses: u64,
    },
    /// Dates (days since the epoch) and timestamps (microseconds since the epoch).
    Temporal {
        min: Option<i64>,
        max: Option<i64>,
    },
    /// Text: the distribution of lengths in characters.
    Text {
        lengths: NumericProfile,
    },
}

/// The profile of one column.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ColumnProfile {
    pub name: String,
    #[serde(rename = "type")]
    pub ftype: FeatureType,
    /// Rows, nulls included.
    pub rows: u64,
    pub nulls: u64,
    pub stats: ColumnStats,
}

impl ColumnProfile {
    pub fn null_fraction(&self) -> f64 {
        if self.rows == 0 {
            0.0
        } else {
            self.nulls as f64 / self.rows as f64
        }
    }

    pub fn empty(name: &str, ftype: FeatureType) -> Self {
        let stats = match ftype {
            FeatureType::Numeric => ColumnStats::Numeric(NumericProfile::default()),
            FeatureType::Categorical => ColumnStats::Categorical(CategoryProfile::default()),
            FeatureType::Boolean => ColumnStats::Boolean {
                trues: 0,
                falses: 0,
            },
            FeatureType::Timestamp | FeatureType::Date => ColumnStats::Temporal {
                min: None,
                max: None,
            },
            FeatureType::Text => ColumnStats::Text {
                lengths: NumericProfile::default(),
            },
        };
        Self {
            name: name.to_owned(),
            ftype,
            rows: 0,
            nulls: 0,
            stats,
        }
    }

    /// Merges `other` (a profile of the same column) into `self`.
    pub fn merge(&mut self, other: &ColumnProfile) -> Result<(), ProfileMismatch> {
        if self.ftype != other.ftype {
            return Err(ProfileMismatch {
                column: self.name.clone(),
                left: self.ftype,
                right: other.ftype,
            });
        }
        self.rows += other.rows;
        self.nulls += other.nulls;
        match (&mut self.stats, &other.stats) {
            (ColumnStats::Numeric(a), ColumnStats::Numeric(b)) => a.merge(b),
            (ColumnStats::Categorical(a), ColumnStats::Categorical(b)) => a.merge(b),
            (
                ColumnStats::Boolean { trues, falses },
                ColumnStats::Boolean {
                    trues: t2,
                    falses: f2,
                },
            ) => {
                *trues += t2;
                *falses += f2;
            }
            (ColumnStats::Temporal { min, max }, ColumnStats::Temporal { min: m2, max: x2 }) => {
                *min = [*min, *m2].into_iter().flatten().min();
                *max = [*max, *x2].into_iter().flatten().max();
            }
            (ColumnStats::Text { lengths: a }, ColumnStats::Text { lengths: b }) => a.merge(b),
            _ => {
                return Err(ProfileMismatch {
                    column: self.name.clone(),
                    left: self.ftype,
                    right: other.ftype,
                });
            }
        }
        Ok(())
    }
}

/// Two profiles of a column disagree on its type.
#[derive(Debug, thiserror::Error)]
#[error("cannot merge profiles of column `{column}`: {left} vs {right}")]
pub struct ProfileMismatch {
    pub column: String,
    pub left: FeatureType,
    pub right: FeatureType,
}

/// The profile of a whole dataset (or of a window of traffic).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DatasetProfile {
    pub rows: u64,
    pub columns: Vec<ColumnProfile>,
}

impl DatasetProfile {
    pub fn column(&self, name: &str) -> Option<&ColumnProfile> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Merges `other` in; columns only `other` has are appended.
    pub fn merge(&mut self, other: &DatasetProfile) -> Result<(), ProfileMismatch> {
        self.rows += other.rows;
        for c in &other.columns {
            match self.columns.iter_mut().find(|m| m.name == c.name) {
                Some(mine) => mine.merge(c)?,
                None => self.columns.push(c.clone()),
            }
        }
        Ok(())
    }
}

/// Accumulates the profile of normalized batches (see [`crate::table`]): ingest profiles
/// every snapshot with it, training profiles its split and predictions, monitoring its windows.
pub struct Profiler {
    columns: Vec<(Column, ProfileAcc)>,
    null_counts: Vec<u64>,
    rows: u64,
}

enum ProfileAcc {
    Numeric(NumericBuilder),
    Categorical(CategoryBuilder),
    Boolean { trues: u64, falses: u64 },
    Temporal { min: Option<i64>, max: Option<i64> },
    Text(NumericBuilder),
}

impl Profiler {
    pub fn new(schema: &Schema) -> Self {
        Self {
            rows: 0,
            null_counts: vec![0; schema.columns.len()],
            columns: schema
                .columns
                .iter()
                .map(|c| {
                    let acc = match c.ftype {
                        FeatureType::Numeric => ProfileAcc::Numeric(NumericBuilder::default()),
                        FeatureType::Categorical => {
                            ProfileAcc::Categorical(CategoryBuilder::default())
                        }
                        FeatureType::Boolean => ProfileAcc::Boolean {
                            trues: 0,
                            falses: 0,
                        },
                        FeatureType::Timestamp | FeatureType::Date => ProfileAcc::Temporal {
                            min: None,
                            max: None,
                        },
                        FeatureType::Text => ProfileAcc::Text(NumericBuilder::default()),
                    };
                    (c.clone(), acc)
                })
                .collect(),
        }
    }

    pub fn push(&mut self, batch: &RecordBatch) {
        self.rows += batch.num_rows() as u64;
        for (i, (_, acc)) in self.columns.iter_mut().enumerate() {
            let array = batch.column(i);
            match acc {
                ProfileAcc::Numeric(b) => {
                    let a = array.as_primitive::<Float64Type>();
                    if a.null_count() == 0 {
                        for v in a.values().iter() {
                            b.push(*v);
                        }
                    } else {
                        for v in a.iter().flatten() {
                            b.push(v);
                        }
                    }
                }
                ProfileAcc::Categorical(b) => {
                    let dict = array.as_dictionary::<Int32Type>();
                    let values = dict.values().as_string::<i32>();
                    let mut counts = vec![0u64; values.len()];
                    for k in dict.keys().iter().flatten() {
                        counts[k as usize] += 1;
                    }
                    for (k, n) in counts.iter().enumerate() {
                        if *n > 0 {
                            b.push_n(values.value(k), *n);
                        }
                    }
                }
                ProfileAcc::Boolean { trues, falses } => {
                    let a = array.as_boolean();
                    let t = a.true_count() as u64;
                    *trues += t;
                    *falses += (a.len() - a.null_count()) as u64 - t;
                }
                ProfileAcc::Temporal { min, max } => {
                    let (lo, hi) =
                        if let Some(a) = array.as_primitive_opt::<TimestampMicrosecondType>() {
                            (a.iter().flatten().min(), a.iter().flatten().max())
                        } else {
                            let a = array.as_primitive::<Date32Type>();
                            (
                                a.iter().flatten().map(i64::from).min(),
                                a.iter().flatten().map(i64::from).max(),
                            )
                        };
                    *min = [*min, lo].into_iter().flatten().min();
                    *max = [*max, hi].into_iter().flatten().max();
                }
                ProfileAcc::Text(b) => {
                    let a = array.as_string::<i32>();
                    for v in a.iter().flatten() {
                        b.push(v.chars().count() as f64);
                    }
                }
            }
        }
        for (i, n) in self.null_counts.iter_mut().enumerate() {
            *n += batch.column(i).null_count() as u64;
        }
    }

    pub fn finish(&self) -> DatasetProfile {
        let columns = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, (col, acc))| {
                let mut p = ColumnProfile::empty(&col.name, col.ftype);
                p.rows = self.rows;
                p.nulls = self.null_counts.get(i).copied().unwrap_or(0);
                p.stats = match acc {
                    ProfileAcc::Numeric(b) => ColumnStats::Numeric(b.finish()),
                    ProfileAcc::Categorical(b) => ColumnStats::Categorical(b.finish()),
                    ProfileAcc::Boolean { trues, falses } => ColumnStats::Boolean {
                        trues: *trues,
                        falses: *falses,
                    },
                    ProfileAcc::Temporal { min, max } => ColumnStats::Temporal {
                        min: *min,
                        max: *max,
                    },
                    ProfileAcc::Text(b) => ColumnStats::Text {
                        lengths: b.finish(),
                    },
                };
                p
            })
            .collect();
        DatasetProfile {
            rows: self.rows,
            columns,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(values: &[f64]) -> NumericProfile {
        let mut b = NumericBuilder::default();
        for v in values {
            b.push(*v);
        }
        b.finish()
    }

    #[test]
    fn moments_and_quantiles_match_exact_values() {
        let values: Vec<f64> = (1..=1000).map(|i| i as f64).collect();
        let p = numeric(&values);
        assert_eq!(p.count, 1000);
        assert_eq!(p.min, Some(1.0));
        assert_eq!(p.max, Some(1000.0));
        assert!((p.mean - 500.5).abs() < 1e-9);
        // numpy: np.std(range(1, 1001), ddof=1) = 288.8194360957494
        assert!((p.std().unwrap() - 288.819_436_095_749_4).abs() < 1e-9);
        for q in [0.01, 0.25, 0.5, 0.9, 0.99] {
            let exact = 1.0 + (q * 999.0_f64).floor();
            let got = p.quantile(q).unwrap();
            assert!(
                (got - exact).abs() <= exact * ALPHA + 1e-9,
                "q={q} got={got} exact={exact}"
            );
        }
    }

    #[test]
    fn negative_zero_and_infinite_values_are_placed() {
        let p = numeric(&[-5.0, 0.0, 5.0, f64::INFINITY]);
        assert_eq!(p.count, 3);
        assert_eq!(p.infinite, 1);
        assert_eq!(p.quantile(0.0), Some(-5.0));
        assert!(p.quantile(0.5).unwrap().abs() < 1e-12);
        assert_eq!(p.quantile(1.0), Some(5.0));
        assert_eq!(p.histogram(&[-10.0, 0.0, 10.0]), vec![1, 2]);
    }

    #[test]
    fn merged_parts_equal_the_profile_of_the_whole() {
        let all: Vec<f64> = (0..500).map(|i| ((i * 37) % 101) as f64 - 20.5).collect();
        let mut left = numeric(&all[..123]);
        left.merge(&numeric(&all[123..]));
        let whole = numeric(&all);
        assert_eq!(left.count, whole.count);
        assert_eq!(left.buckets, whole.buckets);
        assert_eq!((left.min, left.max), (whole.min, whole.max));
        assert!((left.mean - whole.mean).abs() < 1e-9);
        assert!((left.m2 - whole.m2).abs() < 1e-6);
    }

    #[test]
    fn categories_are_capped_deterministically() {
        let mut a = CategoryBuilder::default();
        for i in 0..(CATEGORY_CAP + 10) {
            a.push_n(&format!("v{i:05}"), 1);
        }
        let p = a.finish();
        assert_eq!(p.counts.len(), CATEGORY_CAP);
        assert_eq!(p.other, 10);
        assert_eq!(p.total(), (CATEGORY_CAP + 10) as u64);
        let mut merged = p.clone();
        let mut extra = CategoryProfile::default();
        extra.counts.insert("zzz".into(), 5);
        merged.merge(&extra);
        assert_eq!(merged.counts.len(), CATEGORY_CAP);
        assert_eq!(merged.counts.get("zzz"), Some(&5));
        assert_eq!(merged.total(), p.total() + 5);
    }

    #[test]
    fn profiles_survive_json() {
        let mut profile = DatasetProfile::default();
        let mut col = ColumnProfile::empty("x", FeatureType::Numeric);
        col.stats = ColumnStats::Numeric(numeric(&[1.0, 2.0, 3.0]));
        col.rows = 4;
        col.nulls = 1;
        profile.columns.push(col);
        profile.rows = 4;
        let json = serde_json::to_string(&profile).unwrap();
        let back: DatasetProfile = serde_json::from_str(&json).unwrap();
        assert_eq!(back, profile);
        assert!((back.columns[0].null_fraction() - 0.25).abs() < 1e-12);
    }
}
