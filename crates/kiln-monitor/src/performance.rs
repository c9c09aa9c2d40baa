//! Model performance on a window of predictions: realized metrics when labels have arrived, and
//! confidence-based performance estimation (CBPE, as NannyML does it) while they have not.
//!
//! # Realized metrics
//!
//! Each metric comes as a [`RealizedMetric`]: its value, a 95% confidence interval and the rows
//! it was computed on, so a dashboard can tell a real drop from the noise of a small window.
//!
//! * [`mae`]: normal approximation on the per-row absolute errors (mean ± 1.96 standard errors);
//! * [`rmse`]: delta method on the per-row squared errors: the standard error of the mean
//!   squared error, divided by `2 · RMSE` (the derivative of the square root);
//! * [`accuracy`]: Wilson score interval, which stays inside [0, 1] and behaves on windows
//!   where nearly every prediction is right;
//! * [`f1_score`]: delta method for a ratio of row sums (`F1 = Σ 2·TP / Σ (2·TP + FP + FN)`);
//! * [`roc_auc`]: the Mann–Whitney U fraction (ties count ½), with the Hanley–McNeil (1982)
//!   standard error.
//!
//! Intervals are clipped to the metric's range (0 and above for errors, [0, 1] for rates). With
//! a single row the regression intervals are `[0, ∞)`: one error says nothing about the spread.
//!
//! # Estimated metrics (CBPE)
//!
//! With a calibrated probability `p` for each row, the label is positive with probability `p`,
//! so every cell of the confusion matrix has an expected count: a predicted positive is a true
//! positive with probability `p` and a false positive with probability `1 − p`, a predicted
//! negative a false negative with probability `p`. [`cbpe`] sums those expectations into
//! accuracy and F1, and estimates ROC AUC the way NannyML does. The estimate is right as long
//! as the probabilities stay calibrated on the new window, which covariate shift (the inputs
//! move, `P(label | inputs)` does not) preserves; concept drift does not.
//!
//! The probabilities come from a [`Calibrator`] fitted on the reference (validation) window.
//! NannyML fits one only when the reference scores are not already well calibrated; Kiln always
//! fits one, since isotonic regression on a calibrated model is close to the identity and one
//! code path is easier to reason about than a calibration test with its own threshold.

use serde::{Deserialize, Serialize};

use crate::error::{MonitorError, Result};

/// The 0.975 quantile of the standard normal distribution, for two-sided 95% intervals.
const Z_95: f64 = 1.959_963_984_540_054;

/// A realized metric on a window of labelled predictions, with its 95% confidence interval.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RealizedMetric {
    /// The metric's name: `mae`, `rmse`, `accuracy`, `f1` or `roc_auc`.
    pub name: &'static str,
    /// Its value on the window.
    pub value: f64,
    /// Lower end of the 95% confidence interval.
    pub lower: f64,
    /// Upper end of the 95% confidence interval.
    pub upper: f64,
    /// Rows the metric was computed on.
    pub rows: u64,
}

impl RealizedMetric {
    /// A symmetric normal interval `value ± 1.96 · standard_error`, clipped to `[min, max]`.
    fn normal(
        name: &'static str,
        value: f64,
        standard_error: f64,
        rows: usize,
        (min, max): (f64, f64),
    ) -> Self {
        Self {
            name,
            value,
            lower: (value - Z_95 * standard_error).max(min),
            upper: (value + Z_95 * standard_error).min(max),
            rows: rows as u64,
        }
    }
}

/// Performance metrics CBPE expects on a window whose labels are not known yet.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EstimatedPerformance {
    /// Expected accuracy.
    pub accuracy: f64,
    /// F1 of the positive class from the expected true positive, false positive and false
    /// negative counts.
    pub f1: f64,
    /// ROC AUC as NannyML estimates it.
    pub roc_auc: f64,
    /// Rows in the window.
    pub rows: u64,
}

fn require_same_length(
    left: &'static str,
    left_rows: usize,
    right: &'static str,
    right_rows: usize,
) -> Result<()> {
    if left_rows != right_rows {
        return Err(MonitorError::LengthMismatch {
            left,
            left_rows,
            right,
            right_rows,
        });
    }
    Ok(())
}

fn require_finite(column: &'static str, values: &[f64]) -> Result<()> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(row) => Err(MonitorError::NonFiniteInput {
            column,
            row,
            value: values[row],
        }),
        None => Ok(()),
    }
}

fn require_probabilities(column: &'static str, values: &[f64]) -> Result<()> {
    require_finite(column, values)?;
    match values.iter().position(|v| !(0.0..=1.0).contains(v)) {
        Some(row) => Err(MonitorError::ProbabilityOutOfRange {
            column,
            row,
            value: values[row],
        }),
        None => Ok(()),
    }
}

fn require_threshold(threshold: f64) -> Result<()> {
    if threshold.is_finite() {
        Ok(())
    } else {
        Err(MonitorError::InvalidDecisionThreshold(threshold))
    }
}

/// Checks a regression window and returns its per-row errors `predicted − actual`.
fn regression_errors(metric: &'static str, predicted: &[f64], actual: &[f64]) -> Result<Vec<f64>> {
    require_same_length("predictions", predicted.len(), "targets", actual.len())?;
    if predicted.is_empty() {
        return Err(MonitorError::EmptyWindow(metric));
    }
    require_finite("predictions", predicted)?;
    require_finite("targets", actual)?;
    Ok(predicted.iter().zip(actual).map(|(p, a)| p - a).collect())
}

/// Mean and standard error of the mean (sample standard deviation over `√n`). With one row the
/// spread is unknown, so the standard error is infinite and the interval covers the whole range.
fn mean_and_standard_error(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (mean, f64::INFINITY);
    }
    let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, (variance / n).sqrt())
}

/// Mean absolute error, with a normal-approximation 95% interval on the per-row absolute errors.
pub fn mae(predicted: &[f64], actual: &[f64]) -> Result<RealizedMetric> {
    let errors = regression_errors("mae", predicted, actual)?;
    let absolute: Vec<f64> = errors.iter().map(|e| e.abs()).collect();
    let (value, standard_error) = mean_and_standard_error(&absolute);
    Ok(RealizedMetric::normal(
        "mae",
        value,
        standard_error,
        absolute.len(),
        (0.0, f64::INFINITY),
    ))
}

/// Root mean squared error, with a 95% interval by the delta method: the standard error of the
/// mean squared error (normal approximation on the per-row squared errors) times the derivative
/// of the square root, `1 / (2 · RMSE)`. No bootstrap, so the interval is deterministic and
/// costs one pass.
pub fn rmse(predicted: &[f64], actual: &[f64]) -> Result<RealizedMetric> {
    let errors = regression_errors("rmse", predicted, actual)?;
    let squared: Vec<f64> = errors.iter().map(|e| e * e).collect();
    let (mse, mse_standard_error) = mean_and_standard_error(&squared);
    let value = mse.sqrt();
    // A perfect fit on two or more rows has no spread at all; the derivative is infinite there
    // but the interval is the point itself.
    let standard_error = if value > 0.0 {
        mse_standard_error / (2.0 * value)
    } else if squared.len() < 2 {
        f64::INFINITY
    } else {
        0.0
    };
    Ok(RealizedMetric::normal(
        "rmse",
        value,
        standard_error,
        squared.len(),
        (0.0, f64::INFINITY),
    ))
}

/// Checks a classification window: aligned, not empty, finite scores, finite threshold.
fn check_classification(
    metric: &'static str,
    scores: &[f64],
    labels: &[bool],
    threshold: Option<f64>,
) -> Result<()> {
    require_same_length("scores", scores.len(), "labels", labels.len())?;
    if scores.is_empty() {
        return Err(MonitorError::EmptyWindow(metric));
    }
    if let Some(threshold) = threshold {
        require_threshold(threshold)?;
    }
    require_finite("scores", scores)
}

/// Accuracy of the decisions `score >= threshold` against the labels, with a Wilson score 95%
/// interval.
pub fn accuracy(scores: &[f64], labels: &[bool], threshold: f64) -> Result<RealizedMetric> {
    check_classification("accuracy", scores, labels, Some(threshold))?;
    let rows = scores.len();
    let correct = scores
        .iter()
        .zip(labels)
        .filter(|&(&score, &label)| (score >= threshold) == label)
        .count();
    let n = rows as f64;
    let value = correct as f64 / n;
    let z2 = Z_95 * Z_95;
    let denominator = 1.0 + z2 / n;
    let center = (value + z2 / (2.0 * n)) / denominator;
    let half_width = Z_95 / denominator * (value * (1.0 - value) / n + z2 / (4.0 * n * n)).sqrt();
    Ok(RealizedMetric {
        name: "accuracy",
        value,
        lower: (center - half_width).max(0.0),
        upper: (center + half_width).min(1.0),
        rows: rows as u64,
    })
}

/// F1 of the positive class for the decisions `score >= threshold`, with a 95% interval by the
/// delta method for a ratio of row sums: F1 is `Σ uᵢ / Σ vᵢ` with `uᵢ = 2` for a true positive
/// and `vᵢ` = 2 for a true positive, 1 for a false positive or negative, so its variance is
/// about `Σ (uᵢ − F1 · vᵢ)² / (Σ vᵢ)²`.
///
/// Undefined (an error, where scikit-learn returns 0 with a warning) when the window has no
/// positive label and no positive decision.
pub fn f1_score(scores: &[f64], labels: &[bool], threshold: f64) -> Result<RealizedMetric> {
    check_classification("f1", scores, labels, Some(threshold))?;
    let (mut true_positives, mut false_positives, mut false_negatives) = (0u64, 0u64, 0u64);
    for (&score, &label) in scores.iter().zip(labels) {
        match (score >= threshold, label) {
            (true, true) => true_positives += 1,
            (true, false) => false_positives += 1,
            (false, true) => false_negatives += 1,
            (false, false) => {}
        }
    }
    let (tp, fp, fn_) = (
        true_positives as f64,
        false_positives as f64,
        false_negatives as f64,
    );
    let denominator = 2.0 * tp + fp + fn_;
    if denominator == 0.0 {
        return Err(MonitorError::UndefinedMetric {
            metric: "f1",
            reason: "no positive label and no positive prediction",
        });
    }
    let value = 2.0 * tp / denominator;
    // Residuals uᵢ − F1·vᵢ: 2 − 2·F1 for a true positive, −F1 for a false positive or negative,
    // 0 for a true negative.
    let residual_squares = tp * (2.0 - 2.0 * value).powi(2) + (fp + fn_) * value * value;
    let standard_error = residual_squares.sqrt() / denominator;
    Ok(RealizedMetric::normal(
        "f1",
        value,
        standard_error,
        scores.len(),
        (0.0, 1.0),
    ))
}

/// ROC AUC: the fraction of (positive, negative) pairs the score orders correctly, ties counting
/// ½ (the Mann–Whitney U statistic over `positives · negatives`), computed from mid-ranks in
/// `O(n log n)`. The 95% interval uses the Hanley–McNeil standard error
/// `√((A(1−A) + (n₊−1)(Q₁−A²) + (n₋−1)(Q₂−A²)) / (n₊·n₋))`, `Q₁ = A/(2−A)`, `Q₂ = 2A²/(1+A)`.
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> Result<RealizedMetric> {
    check_classification("roc_auc", scores, labels, None)?;
    let positives = labels.iter().filter(|&&label| label).count();
    let negatives = labels.len() - positives;
    if positives == 0 || negatives == 0 {
        return Err(MonitorError::SingleClass(positives > 0));
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Sum of the 1-based mid-ranks of the positives: each run of equal scores shares the mean
    // of the ranks it spans.
    let mut positive_rank_sum = 0.0;
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && scores[order[end]] == scores[order[start]] {
            end += 1;
        }
        let mid_rank = (start + 1 + end) as f64 / 2.0;
        let positives_in_run = order[start..end].iter().filter(|&&i| labels[i]).count();
        positive_rank_sum += mid_rank * positives_in_run as f64;
        start = end;
    }
    let (n_pos, n_neg) = (positives as f64, negatives as f64);
    let u = positive_rank_sum - n_pos * (n_pos + 1.0) / 2.0;
    let value = u / (n_pos * n_neg);
    let q1 = value / (2.0 - value);
    let q2 = 2.0 * value * value / (1.0 + value);
    let variance = (value * (1.0 - value)
        + (n_pos - 1.0) * (q1 - value * value)
        + (n_neg - 1.0) * (q2 - value * value))
        / (n_pos * n_neg);
    Ok(RealizedMetric::normal(
        "roc_auc",
        value,
        variance.max(0.0).sqrt(),
        scores.len(),
        (0.0, 1.0),
    ))
}

/// Isotonic (non-decreasing) least-squares fit of `values` with `weights`, by
/// pool-adjacent-violators: merge neighbouring blocks while a block's mean is above the next
/// one's. Returns one fitted value per input.
pub(crate) fn isotonic_regression(values: &[f64], weights: &[f64]) -> Vec<f64> {
    // Each block: (weighted mean, total weight, number of inputs pooled).
    let mut blocks: Vec<(f64, f64, usize)> = Vec::with_capacity(values.len());
    for (&value, &weight) in values.iter().zip(weights) {
        let mut block = (value, weight, 1);
        while let Some(&(mean, total, count)) = blocks.last() {
            if mean <= block.0 {
                break;
            }
            blocks.pop();
            let merged_weight = total + block.1;
            block = (
                (mean * total + block.0 * block.1) / merged_weight,
                merged_weight,
                count + block.2,
            );
        }
        blocks.push(block);
    }
    blocks
        .into_iter()
        .flat_map(|(mean, _, count)| std::iter::repeat_n(mean, count))
        .collect()
}

/// Maps a model's scores to calibrated probabilities of the positive class: isotonic regression
/// of the reference labels on the reference scores, as scikit-learn's
/// `IsotonicRegression(out_of_bounds="clip")` (what NannyML calibrates with) fits and predicts:
/// linear interpolation between the fitted points, and the end values beyond them.
///
/// Stored compactly: only the first and last score of each constant stretch, which interpolate
/// to the same function. Serialize it with the model it calibrates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Calibrator {
    /// Ascending reference scores at which the calibrated value is known.
    scores: Vec<f64>,
    /// Calibrated probability at each of those scores (non-decreasing).
    probabilities: Vec<f64>,
}

impl Calibrator {
    /// Fits the calibration on reference scores (usually the predicted probabilities on the
    /// validation set) and their true labels.
    pub fn fit(scores: &[f64], labels: &[bool]) -> Result<Self> {
        check_classification("calibration", scores, labels, None)?;
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
        // Equal scores must get one calibrated value, so pool them first into their positive
        // rate weighted by their count, as scikit-learn does.
        let mut distinct_scores = Vec::new();
        let mut rates = Vec::new();
        let mut weights = Vec::new();
        let mut start = 0;
        while start < order.len() {
            let mut end = start + 1;
            while end < order.len() && scores[order[end]] == scores[order[start]] {
                end += 1;
            }
            let positives = order[start..end].iter().filter(|&&i| labels[i]).count();
            distinct_scores.push(scores[order[start]]);
            rates.push(positives as f64 / (end - start) as f64);
            weights.push((end - start) as f64);
            start = end;
        }
        let fitted = isotonic_regression(&rates, &weights);
        // Keep a point only where the fitted value changes on either side of it.
        let mut kept_scores = Vec::new();
        let mut kept_probabilities = Vec::new();
        for i in 0..fitted.len() {
            let same_as_previous = i > 0 && fitted[i - 1] == fitted[i];
            let same_as_next = i + 1 < fitted.len() && fitted[i + 1] == fitted[i];
            if !(same_as_previous && same_as_next) {
                kept_scores.push(distinct_scores[i]);
                kept_probabilities.push(fitted[i]);
            }
        }
        Ok(Self {
            scores: kept_scores,
            probabilities: kept_probabilities,
        })
    }

    /// The calibrated probability for one score. A NaN score gives NaN.
    pub fn calibrate(&self, score: f64) -> f64 {
        let (xs, ys) = (&self.scores, &self.probabilities);
        let (Some(&first_x), Some(&last_x)) = (xs.first(), xs.last()) else {
            return f64::NAN;
        };
        if score.is_nan() || ys.len() != xs.len() {
            return f64::NAN;
        }
        if score <= first_x {
            return ys[0];
        }
        if score >= last_x {
            return ys[ys.len() - 1];
        }
        // First point strictly above the score; it exists and is not the first point.
        let upper = xs.partition_point(|&x| x <= score).clamp(1, xs.len() - 1);
        let (x0, x1, y0, y1) = (xs[upper - 1], xs[upper], ys[upper - 1], ys[upper]);
        if x1 <= x0 {
            return y0;
        }
        y0 + (y1 - y0) * (score - x0) / (x1 - x0)
    }

    /// Calibrated probabilities for a window of scores; an error on a NaN or infinite score.
    pub fn calibrate_all(&self, scores: &[f64]) -> Result<Vec<f64>> {
        require_finite("scores", scores)?;
        Ok(scores.iter().map(|&s| self.calibrate(s)).collect())
    }

    /// Calibrates a window's scores and runs [`cbpe`] on them.
    pub fn estimate_performance(
        &self,
        scores: &[f64],
        threshold: f64,
    ) -> Result<EstimatedPerformance> {
        let calibrated = self.calibrate_all(scores)?;
        cbpe(scores, &calibrated, threshold)
    }
}

/// Confidence-based performance estimation for a binary classifier on an unlabelled window.
///
/// `scores` are the model's raw outputs, which decide the predicted class (`score >= threshold`
/// is positive, as in production); `calibrated_probabilities` are the same rows through a
/// [`Calibrator`], which give the expectations:
///
/// * accuracy: the mean over rows of `p` for a predicted positive, `1 − p` for a negative;
/// * F1: `TP / (TP + (FP + FN) / 2)` with `TP = Σ p` and `FP = Σ (1 − p)` over predicted
///   positives and `FN = Σ p` over predicted negatives;
/// * ROC AUC: NannyML's estimate from the calibrated probabilities alone (see
///   [`estimated_roc_auc`]).
pub fn cbpe(
    scores: &[f64],
    calibrated_probabilities: &[f64],
    threshold: f64,
) -> Result<EstimatedPerformance> {
    require_same_length(
        "scores",
        scores.len(),
        "calibrated probabilities",
        calibrated_probabilities.len(),
    )?;
    if scores.is_empty() {
        return Err(MonitorError::EmptyWindow("cbpe"));
    }
    require_threshold(threshold)?;
    require_finite("scores", scores)?;
    require_probabilities("calibrated probabilities", calibrated_probabilities)?;

    let (mut tp, mut fp, mut fn_, mut tn) = (0.0, 0.0, 0.0, 0.0);
    for (&score, &p) in scores.iter().zip(calibrated_probabilities) {
        if score >= threshold {
            tp += p;
            fp += 1.0 - p;
        } else {
            fn_ += p;
            tn += 1.0 - p;
        }
    }
    let rows = scores.len();
    let f1_denominator = tp + 0.5 * (fp + fn_);
    if f1_denominator <= 0.0 {
        return Err(MonitorError::UndefinedMetric {
            metric: "estimated f1",
            reason: "no expected positive label and no positive prediction",
        });
    }
    Ok(EstimatedPerformance {
        accuracy: (tp + tn) / rows as f64,
        f1: tp / f1_denominator,
        roc_auc: estimated_roc_auc(calibrated_probabilities)?,
        rows: rows as u64,
    })
}

/// ROC AUC expected from calibrated probabilities, computed as NannyML's `estimate_roc_auc` in
/// `nannyml/performance_estimation/confidence_based/metrics.py` does it.
///
/// Every distinct probability `t` (plus a final threshold of 1) is a decision threshold; the
/// rows at or above it contribute expected true positives `Σ p` and false positives
/// `Σ (1 − p)`, the rows below it expected false negatives `Σ p` and true negatives
/// `Σ (1 − p)`. NannyML's threshold of 1 is appended to the probabilities themselves, so it adds
/// one phantom expected positive to every true-positive sum; that is kept for equality (its
/// effect is `1/n`). The area under the resulting (FPR, TPR) points is the trapezoidal rule,
/// as scikit-learn's `auc`.
pub fn estimated_roc_auc(calibrated_probabilities: &[f64]) -> Result<f64> {
    if calibrated_probabilities.is_empty() {
        return Err(MonitorError::EmptyWindow("estimated roc_auc"));
    }
    require_probabilities("calibrated probabilities", calibrated_probabilities)?;
    let mut thresholds = calibrated_probabilities.to_vec();
    thresholds.sort_by(f64::total_cmp);
    thresholds.push(1.0);

    let positive_total: f64 = thresholds.iter().sum();
    let negative_total: f64 = thresholds.iter().map(|t| 1.0 - t).sum();
    // Running sums over the thresholds below the current one.
    let (mut positive_below, mut negative_below) = (0.0, 0.0);
    let mut curve: Vec<(f64, f64)> = Vec::new();
    for (i, &t) in thresholds.iter().enumerate() {
        if i == 0 || t != thresholds[i - 1] {
            let true_positives = positive_total - positive_below;
            let false_positives = negative_total - negative_below;
            let true_positive_rate = true_positives / (true_positives + positive_below);
            let false_positive_rate = false_positives / (false_positives + negative_below);
            curve.push((false_positive_rate, true_positive_rate));
        }
        positive_below += t;
        negative_below += 1.0 - t;
    }
    // Thresholds ascend, so the false positive rate descends: integrate right to left.
    let area: f64 = curve
        .windows(2)
        .map(|pair| (pair[0].0 - pair[1].0) * (pair[0].1 + pair[1].1) / 2.0)
        .sum();
    if curve.len() < 2 || !area.is_finite() {
        return Err(MonitorError::UndefinedMetric {
            metric: "estimated roc_auc",
            reason: "every calibrated probability is 1, so no row is expected to be negative",
        });
    }
    Ok(area)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pav_pools_violators_on_a_textbook_sequence() {
        let fitted = isotonic_regression(&[1.0, 3.0, 2.0, 4.0, 3.5, 5.0], &[1.0; 6]);
        assert_eq!(fitted, vec![1.0, 2.5, 2.5, 3.75, 3.75, 5.0]);
        // A violation that reaches back over several blocks: 3, 0 pool to 1.5, which is below
        // 2, so 2, 3, 0 pool to 5/3, which is above 1, so the first value stays.
        let fitted = isotonic_regression(&[1.0, 2.0, 3.0, 0.0], &[1.0; 4]);
        let expected = [1.0, 5.0 / 3.0, 5.0 / 3.0, 5.0 / 3.0];
        assert!(
            fitted
                .iter()
                .zip(expected)
                .all(|(f, e)| (f - e).abs() < 1e-12)
        );
        // Weights pull the pooled mean.
        let fitted = isotonic_regression(&[2.0, 1.0], &[3.0, 1.0]);
        assert_eq!(fitted, vec![1.75, 1.75]);
    }

    #[test]
    fn calibrator_interpolates_and_clips() {
        let calibrator = Calibrator::fit(&[0.2, 0.4, 0.6, 0.8], &[false, false, true, true])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(calibrator.calibrate(0.0), 0.0);
        assert_eq!(calibrator.calibrate(0.3), 0.0);
        assert!((calibrator.calibrate(0.5) - 0.5).abs() < 1e-12);
        assert_eq!(calibrator.calibrate(0.9), 1.0);
        assert!(calibrator.calibrate(f64::NAN).is_nan());
    }

    #[test]
    fn estimated_auc_with_one_distinct_probability_matches_a_hand_computation() {
        // All rows 0.5: thresholds 0.5 and the appended 1. Points: (1, 1) and
        // (0, 1 / (1 + n/2)); area = (1 + 1/(1 + n/2)) / 2.
        let n = 4.0;
        let area = estimated_roc_auc(&[0.5; 4]).unwrap_or_else(|e| panic!("{e}"));
        assert!((area - (1.0 + 1.0 / (1.0 + n / 2.0)) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn estimated_auc_refuses_all_ones() {
        assert!(matches!(
            estimated_roc_auc(&[1.0, 1.0]),
            Err(MonitorError::UndefinedMetric { .. })
        ));
    }
}
