//! The monitoring report of a range of the prediction log: what `kiln monitor report` writes
//! as JSON or as a self-contained HTML page ([`crate::html`]).

use kiln_monitor::{ColumnSummary, TableSummary};
use serde::Serialize;

use crate::rules::Severity;
use crate::window::WindowReport;

/// The monitoring report of one model version over a range.
#[derive(Clone, Debug, Serialize)]
pub struct MonitorReport {
    pub model: String,
    pub version: i64,
    /// `regression`, `binary` or `multiclass`.
    pub task: String,
    /// The metric the default alert rules and the summary table follow.
    pub primary_metric: &'static str,
    /// The range asked for, event time in microseconds since the epoch (`None`: open).
    pub from: Option<i64>,
    pub to: Option<i64>,
    /// Wall clock when the report was made, microseconds since the epoch.
    pub generated_at: i64,
    /// How the range was cut into windows, in words.
    pub windowing: String,
    /// Training rows behind the reference inputs, and validation rows behind the reference
    /// predictions and metrics.
    pub reference_rows: u64,
    pub validation_rows: u64,
    /// One entry per window with predictions, in time order.
    pub windows: Vec<WindowReport>,
    /// The whole range as one window.
    pub overall: WindowReport,
    /// Per input, then the prediction: reference and current (whole range) distributions.
    pub distributions: Vec<Distribution>,
    /// Alert rules' transitions over the windows, in order.
    pub alerts: Vec<AlertEvent>,
    /// Logged predictions in the range made by other versions of the model (not in this
    /// report).
    pub other_version_rows: u64,
    pub notes: Vec<String>,
}

/// Reference and current shares of one column over the same bins.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Distribution {
    pub name: String,
    /// `numeric` or `categorical`.
    pub kind: &'static str,
    /// Bin labels: `[lo, hi)` ranges or categories.
    pub bins: Vec<String>,
    /// Numeric: the bin edges (one more than the bins).
    pub edges: Option<Vec<f64>>,
    /// Share of the reference's (current's) values in each bin; each sums to 1 unless empty.
    pub reference: Vec<f64>,
    pub current: Vec<f64>,
}

/// An alert rule starting or stopping to fire at a window.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AlertEvent {
    pub rule: String,
    pub severity: Severity,
    /// `firing` or `resolved`.
    pub state: &'static str,
    pub window_start: i64,
    pub window_end: i64,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    pub message: String,
}

/// Bins of a numeric distribution.
const NUMERIC_BINS: usize = 20;
/// Categories shown; the rest are pooled as `(other)`.
const TOP_CATEGORIES: usize = 15;

/// Shares of `counts` over `total` (all zeros when empty).
fn shares(counts: &[u64]) -> Vec<f64> {
    let total: u64 = counts.iter().sum();
    counts
        .iter()
        .map(|c| {
            if total == 0 {
                0.0
            } else {
                *c as f64 / total as f64
            }
        })
        .collect()
}

/// Reference and current distributions of one column, over shared bins.
pub fn distribution(
    name: &str,
    reference: &ColumnSummary,
    current: &ColumnSummary,
) -> Option<Distribution> {
    match (reference, current) {
        (ColumnSummary::Numeric(r), ColumnSummary::Numeric(c)) => {
            let ends =
                |s: &kiln_monitor::NumericCounts| Some((*s.values().first()?, *s.values().last()?));
            let (lo, hi) = match (ends(r), ends(c)) {
                (Some(a), Some(b)) => (a.0.min(b.0), a.1.max(b.1)),
                (Some(a), None) | (None, Some(a)) => a,
                (None, None) => return None,
            };
            let bins = if hi > lo { NUMERIC_BINS } else { 1 };
            let width = if hi > lo {
                (hi - lo) / bins as f64
            } else {
                1.0
            };
            let edges: Vec<f64> = (0..=bins).map(|i| lo + width * i as f64).collect();
            let count = |s: &kiln_monitor::NumericCounts| {
                let mut out = vec![0u64; bins];
                for (v, k) in s.values().iter().zip(s.counts()) {
                    let b = (((v - lo) / width) as usize).min(bins - 1);
                    out[b] += k;
                }
                out
            };
            let labels = edges
                .windows(2)
                .map(|e| format!("[{}, {})", short(e[0]), short(e[1])))
                .collect();
            Some(Distribution {
                name: name.to_owned(),
                kind: "numeric",
                bins: labels,
                reference: shares(&count(r)),
                current: shares(&count(c)),
                edges: Some(edges),
            })
        }
        (ColumnSummary::Categorical(r), ColumnSummary::Categorical(c)) => {
            // The most frequent categories of both sides together.
            let mut all: Vec<(&String, u64)> = r.counts().iter().map(|(k, v)| (k, *v)).collect();
            for (k, v) in c.counts() {
                match all.iter_mut().find(|(x, _)| *x == k) {
                    Some(e) => e.1 += v,
                    None => all.push((k, *v)),
                }
            }
            all.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            let shown: Vec<&String> = all.iter().take(TOP_CATEGORIES).map(|(k, _)| *k).collect();
            let pooled = all.len() > shown.len();
            let count = |s: &kiln_monitor::CategoricalCounts| {
                let mut out: Vec<u64> = shown
                    .iter()
                    .map(|k| s.counts().get(*k).copied().unwrap_or(0))
                    .collect();
                if pooled {
                    let rest: u64 = s
                        .counts()
                        .iter()
                        .filter(|(k, _)| !shown.contains(k))
                        .map(|(_, v)| v)
                        .sum();
                    out.push(rest);
                }
                out
            };
            let mut bins: Vec<String> = shown.iter().map(|k| (*k).clone()).collect();
            if pooled {
                bins.push("(other)".into());
            }
            Some(Distribution {
                name: name.to_owned(),
                kind: "categorical",
                bins,
                edges: None,
                reference: shares(&count(r)),
                current: shares(&count(c)),
            })
        }
        _ => None,
    }
}

/// Every input's distribution present on both sides, in the reference's order.
pub fn distributions(reference: &TableSummary, current: &TableSummary) -> Vec<Distribution> {
    reference
        .columns()
        .iter()
        .filter_map(|(name, r)| distribution(name, r, current.column(name)?))
        .collect()
}

/// A number in few characters, for bin labels.
fn short(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e9 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_monitor::{CategoricalCounts, NumericCounts};

    #[test]
    fn numeric_bins_cover_both_sides_and_shares_sum_to_one() {
        let r = ColumnSummary::Numeric(NumericCounts::from_values(&[0.0, 1.0, 2.0, 3.0]));
        let c = ColumnSummary::Numeric(NumericCounts::from_values(&[2.0, 4.0, 4.0]));
        let d = distribution("x", &r, &c).unwrap();
        assert_eq!(d.bins.len(), 20);
        assert_eq!(d.edges.as_ref().unwrap()[20], 4.0);
        assert!((d.reference.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        // Two of three current values are the maximum: the last bin.
        assert!((d.current[19] - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(d.reference[19], 0.0);
    }

    #[test]
    fn categories_pool_beyond_the_top() {
        let labels: Vec<String> = (0..20).map(|i| format!("c{i:02}")).collect();
        let r = ColumnSummary::Categorical(CategoricalCounts::from_values(
            labels.iter().map(|s| Some(s.as_str())),
        ));
        let c = ColumnSummary::Categorical(CategoricalCounts::from_values([Some("new")]));
        let d = distribution("x", &r, &c).unwrap();
        assert_eq!(d.bins.len(), TOP_CATEGORIES + 1);
        assert_eq!(d.bins.last().unwrap(), "(other)");
        assert_eq!(d.current.iter().sum::<f64>(), 1.0);
        assert!((d.reference.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }
}
