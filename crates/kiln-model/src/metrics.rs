//! Model metrics, defined exactly as scikit-learn defines them.
//!
//! People compare Kiln's numbers with the ones their notebooks print, so each function follows
//! scikit-learn's definition to the letter (tie handling in ROC AUC and average precision,
//! probability clipping in log loss, `zero_division = 0` for precision and recall, bin
//! assignment in the calibration curve). `tests/metrics_fixtures.rs` checks every one against
//! scikit-learn's output to 1e-9.
//!
//! Classes are indices `0..k`; binary problems use `true` for the positive class.

use serde::{Deserialize, Serialize};

use crate::ModelError;

type Result<T> = std::result::Result<T, ModelError>;

fn same_len(what: &'static str, a: usize, b: usize) -> Result<()> {
    if a == 0 {
        return Err(ModelError::Empty);
    }
    if a != b {
        return Err(ModelError::LengthMismatch {
            what,
            left: a,
            right: b,
        });
    }
    Ok(())
}

// ----------------------------------------------------------------------------------------------
// Regression

/// The regression metrics Kiln reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegressionMetrics {
    pub rmse: f64,
    pub mae: f64,
    pub r2: f64,
    /// `None` when a value is at most -1 (the logarithm is undefined there).
    pub rmsle: Option<f64>,
    pub mape: f64,
}

/// All regression metrics of predictions `p` for targets `y`.
pub fn regression(y: &[f64], p: &[f64]) -> Result<RegressionMetrics> {
    Ok(RegressionMetrics {
        rmse: rmse(y, p)?,
        mae: mae(y, p)?,
        r2: r2(y, p)?,
        rmsle: rmsle(y, p).ok(),
        mape: mape(y, p)?,
    })
}

/// Root mean squared error.
pub fn rmse(y: &[f64], p: &[f64]) -> Result<f64> {
    same_len("targets vs predictions", y.len(), p.len())?;
    let sse: f64 = y.iter().zip(p).map(|(a, b)| (a - b) * (a - b)).sum();
    Ok((sse / y.len() as f64).sqrt())
}

/// Mean absolute error.
pub fn mae(y: &[f64], p: &[f64]) -> Result<f64> {
    same_len("targets vs predictions", y.len(), p.len())?;
    Ok(y.iter().zip(p).map(|(a, b)| (a - b).abs()).sum::<f64>() / y.len() as f64)
}

/// Coefficient of determination. A constant target gives 1.0 for a perfect fit and 0.0
/// otherwise (scikit-learn's `force_finite`).
pub fn r2(y: &[f64], p: &[f64]) -> Result<f64> {
    same_len("targets vs predictions", y.len(), p.len())?;
    let mean = y.iter().sum::<f64>() / y.len() as f64;
    let ss_res: f64 = y.iter().zip(p).map(|(a, b)| (a - b) * (a - b)).sum();
    let ss_tot: f64 = y.iter().map(|a| (a - mean) * (a - mean)).sum();
    Ok(if ss_tot == 0.0 {
        if ss_res == 0.0 { 1.0 } else { 0.0 }
    } else {
        1.0 - ss_res / ss_tot
    })
}

/// Root mean squared logarithmic error (of `1 + value`).
pub fn rmsle(y: &[f64], p: &[f64]) -> Result<f64> {
    same_len("targets vs predictions", y.len(), p.len())?;
    if y.iter().chain(p).any(|v| *v <= -1.0) {
        return Err(ModelError::Invalid(
            "RMSLE is undefined for values at or below -1".into(),
        ));
    }
    let s: f64 = y
        .iter()
        .zip(p)
        .map(|(a, b)| {
            let d = a.ln_1p() - b.ln_1p();
            d * d
        })
        .sum();
    Ok((s / y.len() as f64).sqrt())
}

/// Mean absolute percentage error, as a fraction (0.1 = 10%); a zero target counts with
/// the machine epsilon as denominator, as in scikit-learn.
pub fn mape(y: &[f64], p: &[f64]) -> Result<f64> {
    same_len("targets vs predictions", y.len(), p.len())?;
    let s: f64 = y
        .iter()
        .zip(p)
        .map(|(a, b)| (a - b).abs() / a.abs().max(f64::EPSILON))
        .sum();
    Ok(s / y.len() as f64)
}

// ----------------------------------------------------------------------------------------------
// Classification from labels

/// Share of predictions equal to the label.
pub fn accuracy(y: &[usize], pred: &[usize]) -> Result<f64> {
    same_len("labels vs predictions", y.len(), pred.len())?;
    let right = y.iter().zip(pred).filter(|(a, b)| a == b).count();
    Ok(right as f64 / y.len() as f64)
}

/// Precision, recall and F1 per class, and their unweighted (macro) means.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassScores {
    /// The classes scored: those present in the labels or the predictions, ascending.
    pub classes: Vec<usize>,
    pub precision: Vec<f64>,
    pub recall: Vec<f64>,
    pub f1: Vec<f64>,
    /// Rows whose label is the class.
    pub support: Vec<u64>,
    pub macro_precision: f64,
    pub macro_recall: f64,
    pub macro_f1: f64,
}

/// Per-class precision, recall and F1; an undefined ratio (0/0) counts as 0.
pub fn class_scores(y: &[usize], pred: &[usize]) -> Result<ClassScores> {
    same_len("labels vs predictions", y.len(), pred.len())?;
    let mut classes: Vec<usize> = y.iter().chain(pred).copied().collect();
    classes.sort_unstable();
    classes.dedup();
    let k = classes.len();
    let (mut tp, mut fp, mut fneg) = (vec![0u64; k], vec![0u64; k], vec![0u64; k]);
    let index = |c: usize| classes.binary_search(&c).unwrap_or(0);
    for (a, b) in y.iter().zip(pred) {
        let (ia, ib) = (index(*a), index(*b));
        if ia == ib {
            tp[ia] += 1;
        } else {
            fp[ib] += 1;
            fneg[ia] += 1;
        }
    }
    let ratio = |n: u64, d: u64| if d == 0 { 0.0 } else { n as f64 / d as f64 };
    let precision: Vec<f64> = (0..k).map(|i| ratio(tp[i], tp[i] + fp[i])).collect();
    let recall: Vec<f64> = (0..k).map(|i| ratio(tp[i], tp[i] + fneg[i])).collect();
    // F1 from counts (2tp / (2tp + fp + fn)), as scikit-learn computes it.
    let f1: Vec<f64> = (0..k)
        .map(|i| ratio(2 * tp[i], 2 * tp[i] + fp[i] + fneg[i]))
        .collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / k as f64;
    Ok(ClassScores {
        macro_precision: mean(&precision),
        macro_recall: mean(&recall),
        macro_f1: mean(&f1),
        support: (0..k).map(|i| tp[i] + fneg[i]).collect(),
        classes,
        precision,
        recall,
        f1,
    })
}

// ----------------------------------------------------------------------------------------------
// Classification from scores and probabilities

/// True and false positive counts at each distinct score, highest score first
/// (scikit-learn's `_binary_clf_curve`).
fn binary_curve(y: &[bool], score: &[f64]) -> Result<Vec<(f64, f64)>> {
    same_len("labels vs scores", y.len(), score.len())?;
    if score.iter().any(|s| s.is_nan()) {
        return Err(ModelError::Invalid("scores contain NaN".into()));
    }
    let mut order: Vec<usize> = (0..y.len()).collect();
    order.sort_by(|&a, &b| score[b].total_cmp(&score[a]));
    let mut points = Vec::new();
    let (mut tp, mut fp) = (0.0, 0.0);
    for (n, &i) in order.iter().enumerate() {
        if y[i] {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        let last_of_tie = order.get(n + 1).is_none_or(|&j| score[j] != score[i]);
        if last_of_tie {
            points.push((tp, fp));
        }
    }
    Ok(points)
}

/// Area under the ROC curve of a binary problem (trapezoids over distinct thresholds, so
/// tied scores count half). `None` when only one class is present.
pub fn roc_auc(y: &[bool], score: &[f64]) -> Result<Option<f64>> {
    let points = binary_curve(y, score)?;
    let (pos, neg) = points.last().copied().unwrap_or((0.0, 0.0));
    if pos == 0.0 || neg == 0.0 {
        return Ok(None);
    }
    let mut area = 0.0;
    let (mut x0, mut y0) = (0.0, 0.0);
    for (tp, fp) in points {
        let (x1, y1) = (fp / neg, tp / pos);
        area += (x1 - x0) * (y1 + y0) / 2.0;
        (x0, y0) = (x1, y1);
    }
    Ok(Some(area))
}

/// Average precision: the precision at each threshold weighted by the recall it adds
/// (scikit-learn's `average_precision_score`, no interpolation). `None` without positives.
pub fn average_precision(y: &[bool], score: &[f64]) -> Result<Option<f64>> {
    let points = binary_curve(y, score)?;
    let pos = points.last().map_or(0.0, |p| p.0);
    if pos == 0.0 {
        return Ok(None);
    }
    let mut ap = 0.0;
    let mut prev_recall = 0.0;
    for (tp, fp) in points {
        let recall = tp / pos;
        ap += (recall - prev_recall) * (tp / (tp + fp));
        prev_recall = recall;
    }
    Ok(Some(ap))
}

/// Checks a row-major `n × k` probability matrix: values in [0, 1], rows summing to 1.
fn check_probabilities(n: usize, k: usize, probs: &[f64]) -> Result<()> {
    same_len("labels × classes vs probabilities", n * k, probs.len())?;
    if probs.iter().any(|p| !(0.0..=1.0).contains(p)) {
        return Err(ModelError::Invalid(
            "probabilities must be between 0 and 1".into(),
        ));
    }
    for (r, row) in probs.chunks(k).enumerate() {
        let s: f64 = row.iter().sum();
        if (s - 1.0).abs() > 1e-6 {
            return Err(ModelError::Invalid(format!(
                "probabilities of row {r} sum to {s}, not 1"
            )));
        }
    }
    Ok(())
}

/// Macro-averaged one-vs-rest ROC AUC over `k` classes from row-major probabilities.
/// `None` when a class has no rows or all rows.
pub fn roc_auc_ovr(y: &[usize], probs: &[f64], k: usize) -> Result<Option<f64>> {
    check_probabilities(y.len(), k, probs)?;
    let mut sum = 0.0;
    for c in 0..k {
        let is_c: Vec<bool> = y.iter().map(|l| *l == c).collect();
        let score: Vec<f64> = probs.chunks(k).map(|row| row[c]).collect();
        match roc_auc(&is_c, &score)? {
            Some(a) => sum += a,
            None => return Ok(None),
        }
    }
    Ok(Some(sum / k as f64))
}

/// Mean negative log-likelihood of the labels under row-major probabilities, each clipped to
/// `[ε, 1 − ε]` (ε = machine epsilon).
pub fn log_loss(y: &[usize], probs: &[f64], k: usize) -> Result<f64> {
    check_probabilities(y.len(), k, probs)?;
    let eps = f64::EPSILON;
    let mut total = 0.0;
    for (label, row) in y.iter().zip(probs.chunks(k)) {
        let p = row
            .get(*label)
            .ok_or_else(|| ModelError::Invalid(format!("label {label} is not below {k}")))?;
        total -= p.clamp(eps, 1.0 - eps).ln();
    }
    Ok(total / y.len() as f64)
}

/// Log loss of a binary problem from the positive class's probability.
pub fn binary_log_loss(y: &[bool], p: &[f64]) -> Result<f64> {
    same_len("labels vs probabilities", y.len(), p.len())?;
    let labels: Vec<usize> = y.iter().map(|b| usize::from(*b)).collect();
    let probs: Vec<f64> = p.iter().flat_map(|q| [1.0 - q, *q]).collect();
    log_loss(&labels, &probs, 2)
}

/// Brier score: mean squared difference between the positive class's probability and the
/// outcome.
pub fn brier(y: &[bool], p: &[f64]) -> Result<f64> {
    same_len("labels vs probabilities", y.len(), p.len())?;
    let s: f64 = y
        .iter()
        .zip(p)
        .map(|(a, b)| {
            let d = b - f64::from(u8::from(*a));
            d * d
        })
        .sum();
    Ok(s / y.len() as f64)
}

/// A reliability diagram: for each non-empty bin of predicted probability, the share of
/// positives and the mean prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationCurve {
    pub prob_true: Vec<f64>,
    pub prob_pred: Vec<f64>,
    pub counts: Vec<u64>,
}

/// `bins` equal-width bins over [0, 1]; a value on an inner edge falls in the lower bin
/// (scikit-learn's `calibration_curve`, uniform strategy).
pub fn calibration_curve(y: &[bool], p: &[f64], bins: usize) -> Result<CalibrationCurve> {
    same_len("labels vs probabilities", y.len(), p.len())?;
    if bins == 0 {
        return Err(ModelError::Invalid("at least one bin is needed".into()));
    }
    if p.iter().any(|q| !(0.0..=1.0).contains(q)) {
        return Err(ModelError::Invalid(
            "probabilities must be between 0 and 1".into(),
        ));
    }
    let inner: Vec<f64> = (1..bins).map(|i| i as f64 / bins as f64).collect();
    let mut sums = vec![0.0; bins];
    let mut trues = vec![0.0; bins];
    let mut counts = vec![0u64; bins];
    for (label, q) in y.iter().zip(p) {
        let b = inner.partition_point(|e| e < q);
        sums[b] += q;
        trues[b] += f64::from(u8::from(*label));
        counts[b] += 1;
    }
    let mut out = CalibrationCurve {
        prob_true: Vec::new(),
        prob_pred: Vec::new(),
        counts: Vec::new(),
    };
    for b in 0..bins {
        if counts[b] > 0 {
            out.prob_true.push(trues[b] / counts[b] as f64);
            out.prob_pred.push(sums[b] / counts[b] as f64);
            out.counts.push(counts[b]);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_cases_by_hand() {
        assert_eq!(rmse(&[1.0, 3.0], &[2.0, 5.0]).unwrap(), (2.5f64).sqrt());
        assert_eq!(r2(&[2.0, 2.0], &[2.0, 2.0]).unwrap(), 1.0);
        assert_eq!(r2(&[2.0, 2.0], &[2.0, 3.0]).unwrap(), 0.0);
        assert!(rmsle(&[-1.0], &[0.0]).is_err());
        // Perfect ranking, reversed ranking, all tied.
        let y = [false, false, true, true];
        assert_eq!(roc_auc(&y, &[0.1, 0.2, 0.3, 0.4]).unwrap(), Some(1.0));
        assert_eq!(roc_auc(&y, &[0.4, 0.3, 0.2, 0.1]).unwrap(), Some(0.0));
        assert_eq!(roc_auc(&y, &[0.5; 4]).unwrap(), Some(0.5));
        assert_eq!(roc_auc(&[true, true], &[0.1, 0.2]).unwrap(), None);
        assert_eq!(
            average_precision(&y, &[0.1, 0.2, 0.3, 0.4]).unwrap(),
            Some(1.0)
        );
        assert!(matches!(
            accuracy(&[1], &[1, 2]),
            Err(ModelError::LengthMismatch { .. })
        ));
        assert_eq!(accuracy(&[], &[]), Err(ModelError::Empty));
        assert!(log_loss(&[0], &[0.5, 0.6], 2).is_err());
    }
}
