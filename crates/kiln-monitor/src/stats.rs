//! The drift statistics besides Kolmogorov–Smirnov, each as Evidently 0.7 computes it
//! (`evidently/legacy/calculations/stattests/`), on counts instead of raw rows.
//!
//! Every statistic here reads a table of (reference count, current count) pairs: per distinct
//! value or label, or, for Evidently's numeric binning, per histogram bin. Building that table
//! from summaries is a merge of two sorted lists, so the cost depends on the number of distinct
//! values, never on the number of rows.

use serde::Serialize;
use statrs::distribution::{ChiSquared, ContinuousCDF, Normal};

use crate::error::{MonitorError, Result, Sample};
use crate::summary::{CategoricalCounts, ColumnSummary, NumericCounts, merged_counts};

/// Numeric columns with more than this many distinct reference values are binned with NumPy's
/// Sturges rule for PSI and Jensen–Shannon; the rest are compared value by value. (Evidently
/// passes `n_bins=30` to its binning, which ignores it.)
const MAX_VALUES_COMPARED_ONE_BY_ONE: usize = 20;

/// Counts per cell (value, label or bin) for both samples, cells in ascending order.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct CountTable {
    pub reference: Vec<u64>,
    pub current: Vec<u64>,
    pub reference_total: u64,
    pub current_total: u64,
}

fn require_nonempty(reference_total: u64, current_total: u64) -> Result<()> {
    if reference_total == 0 {
        return Err(MonitorError::EmptySample(Sample::Reference));
    }
    if current_total == 0 {
        return Err(MonitorError::EmptySample(Sample::Current));
    }
    Ok(())
}

/// One cell per distinct finite value of either sample.
fn numeric_value_table(reference: &NumericCounts, current: &NumericCounts) -> CountTable {
    let distinct = reference.distinct().max(current.distinct());
    let mut table = CountTable {
        reference: Vec::with_capacity(distinct),
        current: Vec::with_capacity(distinct),
        reference_total: reference.finite_count(),
        current_total: current.finite_count(),
    };
    for (_, r, c) in merged_counts(reference, current) {
        table.reference.push(r);
        table.current.push(c);
    }
    table
}

/// One cell per label of either sample.
fn categorical_table(reference: &CategoricalCounts, current: &CategoricalCounts) -> CountTable {
    let mut table = CountTable {
        reference: Vec::new(),
        current: Vec::new(),
        reference_total: reference.labelled_count(),
        current_total: current.labelled_count(),
    };
    let mut left = reference.counts().iter().peekable();
    let mut right = current.counts().iter().peekable();
    loop {
        let (r, c) = match (left.peek(), right.peek()) {
            (Some((a, ac)), Some((b, bc))) => match a.cmp(b) {
                std::cmp::Ordering::Less => {
                    let r = **ac;
                    left.next();
                    (r, 0)
                }
                std::cmp::Ordering::Greater => {
                    let c = **bc;
                    right.next();
                    (0, c)
                }
                std::cmp::Ordering::Equal => {
                    let pair = (**ac, **bc);
                    left.next();
                    right.next();
                    pair
                }
            },
            (Some((_, ac)), None) => {
                let r = **ac;
                left.next();
                (r, 0)
            }
            (None, Some((_, bc))) => {
                let c = **bc;
                right.next();
                (0, c)
            }
            (None, None) => break,
        };
        table.reference.push(r);
        table.current.push(c);
    }
    table
}

/// The per-value (or per-label) table of two summaries of the same kind.
pub(crate) fn value_table(
    reference: &ColumnSummary,
    current: &ColumnSummary,
) -> Result<CountTable> {
    let table = match (reference, current) {
        (ColumnSummary::Numeric(r), ColumnSummary::Numeric(c)) => numeric_value_table(r, c),
        (ColumnSummary::Categorical(r), ColumnSummary::Categorical(c)) => categorical_table(r, c),
        _ => {
            return Err(MonitorError::KindMismatch {
                reference: reference.kind(),
                current: current.kind(),
            });
        }
    };
    require_nonempty(table.reference_total, table.current_total)?;
    Ok(table)
}

/// Distinct values (labels) of both samples together, counted without building the table.
pub(crate) fn union_distinct(reference: &ColumnSummary, current: &ColumnSummary) -> Result<usize> {
    match (reference, current) {
        (ColumnSummary::Numeric(r), ColumnSummary::Numeric(c)) => {
            let (a, b) = (r.values(), c.values());
            let (mut i, mut j, mut union) = (0, 0, 0);
            while i < a.len() && j < b.len() {
                if a[i] <= b[j] {
                    j += usize::from(a[i] == b[j]);
                    i += 1;
                } else {
                    j += 1;
                }
                union += 1;
            }
            Ok(union + (a.len() - i) + (b.len() - j))
        }
        (ColumnSummary::Categorical(r), ColumnSummary::Categorical(c)) => {
            let unseen = c
                .counts()
                .keys()
                .filter(|label| !r.counts().contains_key(*label))
                .count();
            Ok(r.distinct() + unseen)
        }
        _ => Err(MonitorError::KindMismatch {
            reference: reference.kind(),
            current: current.kind(),
        }),
    }
}

/// Evidently's `get_binned_data` before it fills empty cells: numeric columns with more than 20
/// distinct reference values get NumPy's Sturges histogram over both samples; everything else
/// is compared value by value (label by label).
///
/// `integer_column` mirrors NumPy's rule for integer arrays: a Sturges bin narrower than 1 is
/// widened to 1. It applies when pandas holds the column as `int64`.
pub(crate) fn binned_table(
    reference: &ColumnSummary,
    current: &ColumnSummary,
    integer_column: Option<bool>,
) -> Result<CountTable> {
    if let (ColumnSummary::Numeric(r), ColumnSummary::Numeric(c)) = (reference, current)
        && r.distinct() > MAX_VALUES_COMPARED_ONE_BY_ONE
    {
        require_nonempty(r.finite_count(), c.finite_count())?;
        let integer = integer_column.unwrap_or_else(|| r.looks_integer() && c.looks_integer());
        return Ok(sturges_table(r, c, integer));
    }
    value_table(reference, current)
}

/// Bin edges as `np.histogram_bin_edges(np.concatenate([reference, current]), bins="sturges")`.
pub(crate) fn sturges_edges(
    reference: &NumericCounts,
    current: &NumericCounts,
    integer: bool,
) -> Vec<f64> {
    let lows = [reference.values().first(), current.values().first()];
    let highs = [reference.values().last(), current.values().last()];
    let mut first = lows.iter().flatten().fold(f64::INFINITY, |a, b| a.min(**b));
    let mut last = highs
        .iter()
        .flatten()
        .fold(f64::NEG_INFINITY, |a, b| a.max(**b));
    let size = reference
        .finite_count()
        .saturating_add(current.finite_count());
    let ptp = last - first;
    if first == last {
        first -= 0.5;
        last += 0.5;
    }
    let mut width = ptp / ((size as f64).log2() + 1.0);
    let bins = if width != 0.0 {
        if integer && width < 1.0 {
            width = 1.0;
        }
        ((last - first) / width).ceil() as usize
    } else {
        1
    };
    linspace(first, last, bins + 1)
}

/// `np.linspace(start, stop, num)` with `endpoint=True`: `i * step + start`, the last point
/// set to `stop` exactly.
fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    if num == 1 {
        return vec![start];
    }
    let div = (num - 1) as f64;
    let delta = stop - start;
    let step = delta / div;
    let mut points: Vec<f64> = if step == 0.0 {
        (0..num).map(|i| (i as f64 / div) * delta + start).collect()
    } else {
        (0..num).map(|i| i as f64 * step + start).collect()
    };
    if let Some(end) = points.last_mut() {
        *end = stop;
    }
    points
}

/// Counts per bin as `np.histogram(sample, edges)` assigns them: bin `i` is `[e_i, e_{i+1})`,
/// the last bin also takes values equal to the last edge.
fn histogram(sample: &NumericCounts, edges: &[f64]) -> Vec<u64> {
    let values = sample.values();
    let mut cumulative = Vec::with_capacity(values.len() + 1);
    cumulative.push(0u64);
    let mut running = 0u64;
    for &c in sample.counts() {
        running += c;
        cumulative.push(running);
    }
    // Rows strictly below each edge; the last edge counts rows at or below it.
    let below: Vec<u64> = edges
        .iter()
        .enumerate()
        .map(|(i, edge)| {
            let position = if i + 1 == edges.len() {
                values.partition_point(|v| v <= edge)
            } else {
                values.partition_point(|v| v < edge)
            };
            cumulative[position]
        })
        .collect();
    below
        .windows(2)
        .map(|w| w[1].saturating_sub(w[0]))
        .collect()
}

fn sturges_table(reference: &NumericCounts, current: &NumericCounts, integer: bool) -> CountTable {
    let edges = sturges_edges(reference, current, integer);
    CountTable {
        reference: histogram(reference, &edges),
        current: histogram(current, &edges),
        reference_total: reference.finite_count(),
        current_total: current.finite_count(),
    }
}

fn shares(counts: &[u64], total: u64) -> Vec<f64> {
    counts.iter().map(|&c| c as f64 / total as f64).collect()
}

/// Evidently's `feel_zeroes`: an empty cell gets a millionth of the smallest non-empty share if
/// that share is at most 0.0001, else 0.0001.
fn fill_zeroes(shares: &mut [f64]) {
    let smallest = shares
        .iter()
        .copied()
        .filter(|s| *s != 0.0)
        .fold(f64::INFINITY, f64::min);
    let fill = if smallest <= 0.0001 {
        smallest / 1e6
    } else {
        0.0001
    };
    for share in shares.iter_mut().filter(|s| **s == 0.0) {
        *share = fill;
    }
}

/// Population stability index over a count table (Evidently's `psi`, natural log).
pub(crate) fn psi_of_table(table: &CountTable) -> f64 {
    let mut reference = shares(&table.reference, table.reference_total);
    let mut current = shares(&table.current, table.current_total);
    fill_zeroes(&mut reference);
    fill_zeroes(&mut current);
    reference
        .iter()
        .zip(&current)
        .map(|(r, c)| (r - c) * (r / c).ln())
        .sum()
}

/// `scipy.spatial.distance.jensenshannon(p, q)` (natural log) of the two shares, which SciPy
/// first normalizes to sum to 1.
pub(crate) fn jensenshannon_of_table(table: &CountTable) -> f64 {
    let p = shares(&table.reference, table.reference_total);
    let q = shares(&table.current, table.current_total);
    let p_sum: f64 = p.iter().sum();
    let q_sum: f64 = q.iter().sum();
    let mut left = 0.0;
    let mut right = 0.0;
    for (pi, qi) in p.iter().zip(&q) {
        let (pi, qi) = (pi / p_sum, qi / q_sum);
        let m = (pi + qi) / 2.0;
        left += relative_entropy(pi, m);
        right += relative_entropy(qi, m);
    }
    ((left + right) / 2.0).sqrt()
}

/// `scipy.special.rel_entr(x, y)` for `y > 0`.
fn relative_entropy(x: f64, y: f64) -> f64 {
    if x > 0.0 { x * (x / y).ln() } else { 0.0 }
}

/// Population stability index as Evidently's `psi` stattest computes it: shares per Sturges bin
/// (numeric, more than 20 distinct reference values) or per value/label, empty cells filled,
/// `sum((r - c) * ln(r / c))`.
pub fn psi(reference: &ColumnSummary, current: &ColumnSummary) -> Result<f64> {
    Ok(psi_of_table(&binned_table(reference, current, None)?))
}

/// Jensen–Shannon distance as Evidently's `jensenshannon` stattest computes it: the same cells
/// as [`psi`] without filling empty ones, natural log.
pub fn jensenshannon(reference: &ColumnSummary, current: &ColumnSummary) -> Result<f64> {
    Ok(jensenshannon_of_table(&binned_table(
        reference, current, None,
    )?))
}

/// `scipy.stats.wasserstein_distance(u, v)`: the area between the two empirical CDFs.
pub fn wasserstein_distance(u: &NumericCounts, v: &NumericCounts) -> Result<f64> {
    require_nonempty(u.finite_count(), v.finite_count())?;
    let n1 = u.finite_count() as f64;
    let n2 = v.finite_count() as f64;
    let (mut cum1, mut cum2) = (0u64, 0u64);
    let mut previous: Option<(f64, f64)> = None;
    let mut area = 0.0;
    for (value, r, c) in merged_counts(u, v) {
        if let Some((x, gap)) = previous {
            area += gap * (value - x);
        }
        cum1 += r;
        cum2 += c;
        previous = Some((value, (cum1 as f64 / n1 - cum2 as f64 / n2).abs()));
    }
    Ok(area)
}

/// Population standard deviation (`ddof=0`) of the finite values, as `np.std` gives it.
pub fn population_std(sample: &NumericCounts) -> Result<f64> {
    let n = sample.finite_count();
    if n == 0 {
        return Err(MonitorError::NoFiniteValues);
    }
    let nf = n as f64;
    let mean = sample
        .values()
        .iter()
        .zip(sample.counts())
        .map(|(v, c)| v * *c as f64)
        .sum::<f64>()
        / nf;
    let squares = sample
        .values()
        .iter()
        .zip(sample.counts())
        .map(|(v, c)| {
            let d = v - mean;
            d * d * *c as f64
        })
        .sum::<f64>();
    Ok((squares / nf).sqrt())
}

/// Evidently's `wasserstein` stattest: the Wasserstein distance divided by the reference's
/// population standard deviation, or by 0.001 if that is smaller (a constant reference).
pub fn wasserstein_distance_norm(
    reference: &NumericCounts,
    current: &NumericCounts,
) -> Result<f64> {
    // Checks both samples for values first, so population_std cannot fail below.
    let distance = wasserstein_distance(reference, current)?;
    let norm = population_std(reference)?.max(0.001);
    Ok(distance / norm)
}

/// Result of Pearson's chi-squared test.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ChiSquareTest {
    /// Pearson's statistic; infinite when the current sample has a value the reference lacks.
    pub statistic: f64,
    /// Degrees of freedom: cells minus one.
    pub degrees_of_freedom: usize,
    /// Upper-tail probability of the statistic.
    pub p_value: f64,
}

/// Pearson's chi-squared over a count table, expected counts being the reference's shares
/// scaled to the current size (Evidently's `chisquare` stattest).
pub(crate) fn chisquare_of_table(table: &CountTable) -> ChiSquareTest {
    let scale = table.current_total as f64 / table.reference_total as f64;
    let mut statistic = 0.0;
    for (&r, &c) in table.reference.iter().zip(&table.current) {
        let expected = r as f64 * scale;
        let observed = c as f64;
        statistic += (observed - expected) * (observed - expected) / expected;
    }
    let degrees_of_freedom = table.reference.len().saturating_sub(1);
    let p_value = if degrees_of_freedom == 0 {
        // SciPy returns NaN with zero degrees of freedom (a single value on both sides) and
        // Evidently then reports no drift. Both samples are the same one value, so 1.
        1.0
    } else if statistic.is_infinite() {
        0.0
    } else {
        // At least one degree of freedom here, which is all the constructor checks.
        ChiSquared::new(degrees_of_freedom as f64)
            .map_or(f64::NAN, |distribution| distribution.sf(statistic))
    };
    ChiSquareTest {
        statistic,
        degrees_of_freedom,
        p_value,
    }
}

/// Evidently's `chisquare` stattest: cells are the values (numeric) or labels of either
/// sample; expected counts are the reference's shares scaled to the current size.
pub fn chisquare(reference: &ColumnSummary, current: &ColumnSummary) -> Result<ChiSquareTest> {
    Ok(chisquare_of_table(&value_table(reference, current)?))
}

/// Result of the two-proportion z-test.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ZTest {
    /// The z statistic (0 when both samples are the same single value).
    pub statistic: f64,
    /// Two-sided p-value, `2 (1 - Φ(|z|))`.
    pub p_value: f64,
}

/// The two-proportion z-test over a count table: the share of rows not in the first cell (the
/// smallest value or label) in each sample.
pub(crate) fn z_test_of_table(table: &CountTable) -> ZTest {
    let single_value = table.reference.len() == 1;
    if single_value {
        return ZTest {
            statistic: 0.0,
            p_value: 1.0,
        };
    }
    let n1 = table.reference_total as f64;
    let n2 = table.current_total as f64;
    let first_reference = table.reference.first().copied().unwrap_or(0);
    let first_current = table.current.first().copied().unwrap_or(0);
    let p1 = (table.reference_total - first_reference) as f64 / n1;
    let p2 = (table.current_total - first_current) as f64 / n2;
    let pooled = (p1 * n1 + p2 * n2) / (n1 + n2);
    let z = (p1 - p2) / (pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)).sqrt();
    let p_value = 2.0 * (1.0 - Normal::standard().cdf(z.abs()));
    ZTest {
        statistic: z,
        p_value,
    }
}

/// Evidently's `z` stattest: compares the share of rows equal to the smallest value (label)
/// of either sample. Two samples of the same single value give p = 1.
pub fn z_test(reference: &ColumnSummary, current: &ColumnSummary) -> Result<ZTest> {
    Ok(z_test_of_table(&value_table(reference, current)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linspace_matches_numpy() {
        // list(np.linspace(-3.3, 7.9, 13)) with numpy 2.4.6.
        let numpy = [
            -3.3,
            -2.3666666666666667,
            -1.4333333333333333,
            -0.5,
            0.4333333333333331,
            1.3666666666666663,
            2.3,
            3.2333333333333325,
            4.166666666666666,
            5.099999999999999,
            6.033333333333332,
            6.966666666666666,
            7.9,
        ];
        assert_eq!(linspace(-3.3, 7.9, 13), numpy);
    }

    #[test]
    fn histogram_puts_the_maximum_in_the_last_bin() {
        let sample = NumericCounts::from_values(&[0.0, 1.0, 1.0, 2.0, 3.0]);
        assert_eq!(histogram(&sample, &[0.0, 1.0, 2.0, 3.0]), vec![1, 2, 2]);
    }

    #[test]
    fn zero_fill_follows_evidently() {
        let mut shares = vec![0.5, 0.0, 0.5];
        fill_zeroes(&mut shares);
        assert_eq!(shares, vec![0.5, 0.0001, 0.5]);
        let mut tiny = vec![0.99995, 0.00005, 0.0];
        fill_zeroes(&mut tiny);
        assert_eq!(tiny[2], 0.00005 / 1e6);
    }
}
