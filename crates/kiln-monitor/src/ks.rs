//! The two-sample Kolmogorov–Smirnov test, as `scipy.stats.ks_2samp(a, b)` computes it
//! (two-sided, `method='auto'`).
//!
//! The statistic is the largest gap between the two empirical CDFs, evaluated at every distinct
//! value of either sample: with counts, each CDF is a running sum, so ties and repeated values
//! cost nothing. The p-value is SciPy's: exact lattice-path counts when neither sample exceeds
//! 10,000 values (computed as `1 - p` directly, so small p-values keep their digits),
//! otherwise the one-sample Kolmogorov distribution at the effective size `round(mn/(m+n))`.
//! statrs offers neither, so both are ported here from `scipy/stats/_stats_py.py` and
//! `_stats_pythran.py`.

use serde::Serialize;

use crate::error::{MonitorError, Result, Sample};
use crate::kolmogorov::kstwo_sf;
use crate::summary::{NumericCounts, merged_counts};

/// `ks_2samp` switches from exact to asymptotic p-values above this sample size.
const MAX_EXACT_N: u64 = 10_000;

/// How the p-value was computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KsMethod {
    /// Exact count of lattice paths (both samples at most 10,000 values).
    Exact,
    /// Kolmogorov distribution at the effective sample size.
    Asymptotic,
}

/// Result of the two-sample test.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct KsTest {
    /// Largest absolute gap between the empirical CDFs (in exact mode, SciPy's value rounded to
    /// a multiple of `1/lcm(m, n)`, as SciPy reports it).
    pub statistic: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    /// Which computation gave the p-value.
    pub method: KsMethod,
}

/// The two-sample Kolmogorov–Smirnov test over the finite values of both summaries.
pub fn ks_2samp(reference: &NumericCounts, current: &NumericCounts) -> Result<KsTest> {
    let n1 = reference.finite_count();
    let n2 = current.finite_count();
    if n1 == 0 {
        return Err(MonitorError::EmptySample(Sample::Reference));
    }
    if n2 == 0 {
        return Err(MonitorError::EmptySample(Sample::Current));
    }
    let d = ks_statistic(reference, current);

    if n1.max(n2) <= MAX_EXACT_N {
        let g = gcd(n1, n2);
        let lcm = (n1 / g) * n2;
        let h = (d * lcm as f64).round_ties_even() as u64;
        let d_rounded = h as f64 / lcm as f64;
        if h == 0 {
            return Ok(KsTest {
                statistic: d_rounded,
                p_value: 1.0,
                method: KsMethod::Exact,
            });
        }
        let p = if n1 == n2 {
            prob_outside_square(n1, h)
        } else {
            outer_prob_inside(n1, n2, g, h)
        };
        if (0.0..=1.0).contains(&p) {
            return Ok(KsTest {
                statistic: d_rounded,
                p_value: p,
                method: KsMethod::Exact,
            });
        }
        // SciPy falls back to the asymptotic p-value, keeping the rounded statistic.
        return Ok(asymptotic(d_rounded, n1, n2));
    }
    Ok(asymptotic(d, n1, n2))
}

fn asymptotic(d: f64, n1: u64, n2: u64) -> KsTest {
    let (m, n) = if n1 >= n2 {
        (n1 as f64, n2 as f64)
    } else {
        (n2 as f64, n1 as f64)
    };
    let en = m * n / (m + n);
    let effective = en.round_ties_even() as u64;
    let p = kstwo_sf(d, effective);
    KsTest {
        statistic: d,
        p_value: p.clamp(0.0, 1.0),
        method: KsMethod::Asymptotic,
    }
}

/// SciPy's statistic: `max(cdf1 - cdf2)` against `clip(-min(cdf1 - cdf2), 0, 1)`, the larger
/// one (the positive side on a tie), with each CDF computed as `count / n` like `searchsorted`.
fn ks_statistic(reference: &NumericCounts, current: &NumericCounts) -> f64 {
    let n1 = reference.finite_count() as f64;
    let n2 = current.finite_count() as f64;
    let (mut cum1, mut cum2) = (0u64, 0u64);
    let mut max_diff = f64::NEG_INFINITY;
    let mut min_diff = f64::INFINITY;
    for (_, r, c) in merged_counts(reference, current) {
        cum1 += r;
        cum2 += c;
        let diff = cum1 as f64 / n1 - cum2 as f64 / n2;
        max_diff = max_diff.max(diff);
        min_diff = min_diff.min(diff);
    }
    let min_s = (-min_diff).clamp(0.0, 1.0);
    if min_s > max_diff { min_s } else { max_diff }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// `P(D_{n,n} >= h/n)` for equal sizes (`_compute_prob_outside_square`): the alternating sum
/// of binomial ratios, evaluated Horner-style to avoid cancellation.
fn prob_outside_square(n: u64, h: u64) -> f64 {
    let (n, h) = (n as i64, h as i64);
    let mut p = 0.0;
    let mut k = n / h;
    while k >= 0 {
        let mut p1 = 1.0;
        for j in 0..h {
            p1 = (n - k * h - j) as f64 * p1 / (n + k * h + j + 1) as f64;
        }
        p = p1 * (1.0 - p);
        k -= 1;
    }
    2.0 * p
}

/// The share of lattice paths from (0,0) to (m,n) that leave the band `|x/m - y/n| < h/lcm`
/// (`_compute_outer_prob_inside_method`), computed as `1 - p` directly so small p-values keep
/// their precision. Returns NaN if the window would leave its buffer (SciPy then falls back to
/// the asymptotic p-value).
fn outer_prob_inside(m: u64, n: u64, g: u64, h: u64) -> f64 {
    let (m, n) = if m < n { (n, m) } else { (m, n) };
    let (m, n, g, h) = (m as i64, n as i64, g as i64, h as i64);
    let mg = m / g;
    let ng = n / g;
    let mut minj: i64 = 0;
    let mut maxj: i64 = ((h as f64 / mg as f64).ceil() as i64).min(n + 1);
    let mut curlen = maxj - minj;
    let len_a = (2 * maxj + 2).min(n + 1) as usize;
    let mut a = vec![1.0f64; len_a];
    for slot in a.iter_mut().take(maxj.max(0) as usize) {
        *slot = 0.0;
    }
    for i in 1..=m {
        let (lastminj, lastlen) = (minj, curlen);
        minj = (((ng * i - h) as f64 / mg as f64).floor() as i64 + 1).max(0);
        minj = minj.min(n);
        maxj = (((ng * i + h) as f64 / mg as f64).ceil() as i64).min(n + 1);
        if maxj <= minj {
            return 1.0;
        }
        let mut val = if minj == 0 { 0.0 } else { 1.0 };
        for jj in 0..(maxj - minj) {
            let j = jj + minj;
            let Some(&previous) = usize::try_from(jj + minj - lastminj)
                .ok()
                .and_then(|k| a.get(k))
            else {
                return f64::NAN;
            };
            val = (previous * i as f64 + val * j as f64) / (i + j) as f64;
            let Some(slot) = a.get_mut(jj as usize) else {
                return f64::NAN;
            };
            *slot = val;
        }
        curlen = maxj - minj;
        if lastlen > curlen {
            let start = (maxj - minj) as usize;
            let end = (start + (lastlen - curlen) as usize).min(a.len());
            for slot in &mut a[start.min(end)..end] {
                *slot = 1.0;
            }
        }
    }
    let last = (maxj - minj - 1) as usize;
    a.get(last).copied().unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(values: &[f64]) -> NumericCounts {
        NumericCounts::from_values(values)
    }

    #[test]
    fn identical_samples_have_p_one() {
        let a = counts(&[1.0, 2.0, 3.0]);
        let test = ks_2samp(&a, &a).unwrap();
        assert_eq!(test.statistic, 0.0);
        assert_eq!(test.p_value, 1.0);
    }

    #[test]
    fn disjoint_small_samples() {
        // scipy.stats.ks_2samp([1, 2, 3], [4, 5, 6]) -> statistic 1.0, pvalue 0.1
        let test = ks_2samp(&counts(&[1.0, 2.0, 3.0]), &counts(&[4.0, 5.0, 6.0])).unwrap();
        assert_eq!(test.statistic, 1.0);
        assert!((test.p_value - 0.1).abs() < 1e-12);
    }

    #[test]
    fn empty_sample_is_an_error() {
        let empty = counts(&[f64::NAN]);
        let full = counts(&[1.0]);
        assert_eq!(
            ks_2samp(&empty, &full),
            Err(MonitorError::EmptySample(Sample::Reference))
        );
        assert_eq!(
            ks_2samp(&full, &empty),
            Err(MonitorError::EmptySample(Sample::Current))
        );
    }
}
