//! Realized metrics against hand-checked values and their defining formulas, isotonic
//! calibration against pool-adjacent-violators by hand, and CBPE against the realized metrics on
//! synthetic windows under covariate shift.

use kiln_monitor::{
    Calibrator, MonitorError, RealizedMetric, accuracy, cbpe, estimated_roc_auc, f1_score, mae,
    rmse, roc_auc,
};

const Z_95: f64 = 1.959_963_984_540_054;

fn ok<T>(result: Result<T, MonitorError>) -> T {
    result.unwrap_or_else(|e| panic!("unexpected error: {e}"))
}

fn close(actual: f64, expected: f64, tolerance: f64) {
    assert!(
        (actual - expected).abs() <= tolerance,
        "{actual} differs from {expected} by more than {tolerance}"
    );
}

// ---------------------------------------------------------------- realized regression metrics

#[test]
fn mae_and_rmse_on_a_small_window() {
    let predicted = [1.0, 2.0, 3.0, 4.0];
    let actual = [1.0, 3.0, 5.0, 8.0];
    // Absolute errors 0, 1, 2, 4: mean 1.75, sample variance 8.75 / 3.
    let m = ok(mae(&predicted, &actual));
    let se = (8.75 / 3.0 / 4.0_f64).sqrt();
    assert_eq!(m.name, "mae");
    assert_eq!(m.rows, 4);
    close(m.value, 1.75, 1e-12);
    close(m.lower, 1.75 - Z_95 * se, 1e-12);
    close(m.upper, 1.75 + Z_95 * se, 1e-12);

    // Squared errors 0, 1, 4, 16: mean 5.25, sample variance 162.75 / 3 (deviations
    // −5.25, −4.25, −1.25, 10.75). Delta method: se(RMSE) = se(MSE) / (2·RMSE).
    let r = ok(rmse(&predicted, &actual));
    let value = 5.25_f64.sqrt();
    let se = (162.75 / 3.0 / 4.0_f64).sqrt() / (2.0 * value);
    assert_eq!(r.name, "rmse");
    close(r.value, value, 1e-12);
    close(r.lower, (value - Z_95 * se).max(0.0), 1e-12);
    close(r.upper, value + Z_95 * se, 1e-12);
}

#[test]
fn a_perfect_regression_has_a_point_interval() {
    let r = ok(rmse(&[1.0, 2.0], &[1.0, 2.0]));
    assert_eq!((r.value, r.lower, r.upper), (0.0, 0.0, 0.0));
    let m = ok(mae(&[1.0, 2.0], &[1.0, 2.0]));
    assert_eq!((m.value, m.lower, m.upper), (0.0, 0.0, 0.0));
}

#[test]
fn regression_errors_are_reported_not_panicked() {
    assert_eq!(mae(&[], &[]), Err(MonitorError::EmptyWindow("mae")));
    assert!(matches!(
        rmse(&[1.0], &[1.0, 2.0]),
        Err(MonitorError::LengthMismatch { .. })
    ));
    assert!(matches!(
        mae(&[1.0, f64::NAN], &[1.0, 2.0]),
        Err(MonitorError::NonFiniteInput {
            column: "predictions",
            row: 1,
            ..
        })
    ));
    assert!(matches!(
        rmse(&[1.0, 2.0], &[f64::INFINITY, 2.0]),
        Err(MonitorError::NonFiniteInput {
            column: "targets",
            row: 0,
            ..
        })
    ));
}

// ------------------------------------------------------------ realized classification metrics

#[test]
fn accuracy_has_the_wilson_interval() {
    // 8 of 10 right: the textbook Wilson interval is (0.4902, 0.9433).
    let scores = [0.9, 0.8, 0.7, 0.6, 0.4, 0.3, 0.2, 0.1, 0.55, 0.45];
    let labels = [
        true, true, true, true, false, false, false, false, false, true,
    ];
    let a = ok(accuracy(&scores, &labels, 0.5));
    assert_eq!(a.name, "accuracy");
    assert_eq!(a.rows, 10);
    close(a.value, 0.8, 1e-12);
    close(a.lower, 0.4902, 1e-4);
    close(a.upper, 0.9433, 1e-4);
}

#[test]
fn f1_counts_the_positive_class() {
    // Decisions at 0.5: TP = 2 (0.9, 0.7), FP = 1 (0.6), FN = 1 (0.2), TN = 1 (0.1).
    let scores = [0.9, 0.7, 0.6, 0.2, 0.1];
    let labels = [true, true, false, true, false];
    let f = ok(f1_score(&scores, &labels, 0.5));
    close(f.value, 4.0 / 6.0, 1e-12);
    // Delta method by hand: residuals 2 − 2F for TP, −F for FP and FN, over Σv = 6.
    let v = 4.0 / 6.0;
    let se = (2.0_f64 * (2.0 - 2.0 * v) * (2.0 - 2.0 * v) + 2.0 * v * v).sqrt() / 6.0;
    close(f.lower, (v - Z_95 * se).max(0.0), 1e-12);
    close(f.upper, (v + Z_95 * se).min(1.0), 1e-12);
    assert!(matches!(
        f1_score(&[0.1, 0.2], &[false, false], 0.5),
        Err(MonitorError::UndefinedMetric { metric: "f1", .. })
    ));
}

/// The Mann–Whitney fraction by its definition: every (positive, negative) pair, ties ½.
fn pairwise_auc(scores: &[f64], labels: &[bool]) -> f64 {
    let (mut wins, mut pairs) = (0.0, 0.0);
    for (i, &si) in scores.iter().enumerate() {
        for (j, &sj) in scores.iter().enumerate() {
            if labels[i] && !labels[j] {
                pairs += 1.0;
                wins += if si > sj {
                    1.0
                } else if si == sj {
                    0.5
                } else {
                    0.0
                };
            }
        }
    }
    wins / pairs
}

fn hanley_mcneil(auc: f64, positives: f64, negatives: f64) -> f64 {
    let q1 = auc / (2.0 - auc);
    let q2 = 2.0 * auc * auc / (1.0 + auc);
    ((auc * (1.0 - auc)
        + (positives - 1.0) * (q1 - auc * auc)
        + (negatives - 1.0) * (q2 - auc * auc))
        / (positives * negatives))
        .sqrt()
}

#[test]
fn roc_auc_is_the_mann_whitney_fraction_with_ties_as_half() {
    // By hand: positives 0.8, 0.5, 0.5; negatives 0.5, 0.3. Pairs: 0.8 beats both (2),
    // each 0.5 ties 0.5 (½) and beats 0.3 (1): 2 + 1.5 + 1.5 = 5 of 6.
    let scores = [0.8, 0.5, 0.5, 0.5, 0.3];
    let labels = [true, true, true, false, false];
    let auc = ok(roc_auc(&scores, &labels));
    close(auc.value, 5.0 / 6.0, 1e-12);
    let se = hanley_mcneil(5.0 / 6.0, 3.0, 2.0);
    close(auc.lower, (5.0 / 6.0 - Z_95 * se).max(0.0), 1e-12);
    close(auc.upper, (5.0 / 6.0 + Z_95 * se).min(1.0), 1e-12);

    // A larger window with many ties: scores on a coarse grid.
    let mut rng = SplitMix64(7);
    let scores: Vec<f64> = (0..300)
        .map(|_| (rng.uniform() * 10.0).floor() / 10.0)
        .collect();
    let labels: Vec<bool> = scores.iter().map(|&s| rng.uniform() < s).collect();
    let auc = ok(roc_auc(&scores, &labels));
    close(auc.value, pairwise_auc(&scores, &labels), 1e-12);
    assert_eq!(auc.rows, 300);
}

#[test]
fn classification_errors_are_reported_not_panicked() {
    assert_eq!(
        roc_auc(&[0.1, 0.2], &[true, true]),
        Err(MonitorError::SingleClass(true))
    );
    assert_eq!(
        roc_auc(&[0.1, 0.2], &[false, false]),
        Err(MonitorError::SingleClass(false))
    );
    assert_eq!(
        accuracy(&[], &[], 0.5),
        Err(MonitorError::EmptyWindow("accuracy"))
    );
    assert!(matches!(
        roc_auc(&[0.1, f64::NAN], &[true, false]),
        Err(MonitorError::NonFiniteInput { row: 1, .. })
    ));
    assert!(matches!(
        accuracy(&[0.1], &[true], f64::NAN),
        Err(MonitorError::InvalidDecisionThreshold(_))
    ));
    assert!(matches!(
        f1_score(&[0.1, 0.2], &[true], 0.5),
        Err(MonitorError::LengthMismatch { .. })
    ));
    assert!(matches!(
        cbpe(&[0.1, 0.2], &[0.1, 1.5], 0.5),
        Err(MonitorError::ProbabilityOutOfRange { row: 1, .. })
    ));
    assert!(matches!(
        cbpe(&[0.1, 0.2], &[0.1, f64::NAN], 0.5),
        Err(MonitorError::NonFiniteInput { row: 1, .. })
    ));
    assert_eq!(cbpe(&[], &[], 0.5), Err(MonitorError::EmptyWindow("cbpe")));
    assert!(Calibrator::fit(&[], &[]).is_err());
}

#[test]
fn realized_metrics_serialize_with_their_interval() {
    let metric = RealizedMetric {
        name: "accuracy",
        value: 0.5,
        lower: 0.25,
        upper: 0.75,
        rows: 4,
    };
    let json =
        ok(serde_json::to_value(&metric).map_err(|e| MonitorError::InvalidSummary(e.to_string())));
    assert_eq!(
        json,
        serde_json::json!({"name": "accuracy", "value": 0.5, "lower": 0.25, "upper": 0.75, "rows": 4})
    );
}

// ----------------------------------------------------------------------- isotonic calibration

#[test]
fn calibration_is_the_pav_solution_on_a_textbook_example() {
    // Labels in score order 0, 1, 0, 1, 1, 0: PAV pools (1, 0) to ½ and then (1, 1, 0) to ⅔.
    let scores = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6];
    let labels = [false, true, false, true, true, false];
    let calibrator = ok(Calibrator::fit(&scores, &labels));
    let expected = [0.0, 0.5, 0.5, 2.0 / 3.0, 2.0 / 3.0, 2.0 / 3.0];
    for (&score, &value) in scores.iter().zip(&expected) {
        close(calibrator.calibrate(score), value, 1e-12);
    }
    // Between fitted points it interpolates linearly; beyond them it clips.
    close(calibrator.calibrate(0.15), 0.25, 1e-12);
    close(calibrator.calibrate(0.0), 0.0, 1e-12);
    close(calibrator.calibrate(1.0), 2.0 / 3.0, 1e-12);

    // Stored with the model and read back, it calibrates the same.
    let json =
        ok(serde_json::to_string(&calibrator)
            .map_err(|e| MonitorError::InvalidSummary(e.to_string())));
    let restored: Calibrator =
        ok(serde_json::from_str(&json).map_err(|e| MonitorError::InvalidSummary(e.to_string())));
    assert_eq!(restored, calibrator);
}

#[test]
fn calibration_is_monotone_and_pools_equal_scores() {
    let mut rng = SplitMix64(11);
    let scores: Vec<f64> = (0..2_000)
        .map(|_| (rng.uniform() * 50.0).round() / 50.0)
        .collect();
    let labels: Vec<bool> = scores.iter().map(|&s| rng.uniform() < s * s).collect();
    let calibrator = ok(Calibrator::fit(&scores, &labels));
    let grid: Vec<f64> = (0..=1_000).map(|i| i as f64 / 1_000.0).collect();
    let calibrated = ok(calibrator.calibrate_all(&grid));
    assert!(calibrated.windows(2).all(|w| w[0] <= w[1]));
    assert!(calibrated.iter().all(|p| (0.0..=1.0).contains(p)));
}

// ------------------------------------------------------------------------------------- CBPE

/// A fixed-seed generator (SplitMix64), so the synthetic windows are the same on every run.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform on [0, 1) from the top 53 bits.
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal by Box–Muller.
    fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform(); // in (0, 1], so the logarithm is finite
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// A window of `rows` inputs x ~ N(mu, spread²) with labels y ~ Bernoulli(sigmoid(2x)): the
/// inputs shift, the relation between input and label does not (covariate shift).
fn window(rng: &mut SplitMix64, mu: f64, spread: f64, rows: usize) -> (Vec<f64>, Vec<bool>) {
    let inputs: Vec<f64> = (0..rows).map(|_| mu + spread * rng.normal()).collect();
    let labels = inputs
        .iter()
        .map(|&x| rng.uniform() < sigmoid(2.0 * x))
        .collect();
    (inputs, labels)
}

const THRESHOLD: f64 = 0.5;
/// Windows whose mean moves. These move accuracy and F1 a lot but ROC AUC hardly at all (about
/// 0.01: ranking quality depends on how spread out the inputs are around the decision boundary,
/// not on where they sit), so AUC tracking is also checked on windows whose spread changes.
const MEAN_SHIFTS: [(f64, f64); 4] = [(-1.0, 1.0), (0.0, 1.0), (0.5, 1.0), (1.5, 1.0)];
/// Windows whose spread changes, which moves ROC AUC.
const SPREAD_SHIFTS: [(f64, f64); 3] = [(0.0, 0.4), (0.0, 1.0), (0.5, 2.0)];
const ROWS: usize = 5_000;

/// Runs CBPE on each shifted window and checks it against the realized metrics; returns the
/// realized (accuracy, F1, AUC) per window.
fn check_cbpe_tracks_realized(
    rng: &mut SplitMix64,
    model: impl Fn(f64) -> f64,
    calibrator: &Calibrator,
    shifts: &[(f64, f64)],
) -> Vec<(f64, f64, f64)> {
    let mut realized_per_window = Vec::new();
    for &(mu, spread) in shifts {
        let (inputs, labels) = window(rng, mu, spread, ROWS);
        let scores: Vec<f64> = inputs.iter().map(|&x| model(x)).collect();
        let estimated = ok(calibrator.estimate_performance(&scores, THRESHOLD));
        let realized_accuracy = ok(accuracy(&scores, &labels, THRESHOLD)).value;
        let realized_f1 = ok(f1_score(&scores, &labels, THRESHOLD)).value;
        let realized_auc = ok(roc_auc(&scores, &labels)).value;
        assert_eq!(estimated.rows, ROWS as u64);
        assert!(
            (estimated.accuracy - realized_accuracy).abs() < 0.02,
            "mu {mu} spread {spread}: estimated accuracy {} realized {realized_accuracy}",
            estimated.accuracy
        );
        assert!(
            (estimated.f1 - realized_f1).abs() < 0.03,
            "mu {mu} spread {spread}: estimated F1 {} realized {realized_f1}",
            estimated.f1
        );
        assert!(
            (estimated.roc_auc - realized_auc).abs() < 0.03,
            "mu {mu} spread {spread}: estimated AUC {} realized {realized_auc}",
            estimated.roc_auc
        );
        realized_per_window.push((realized_accuracy, realized_f1, realized_auc));
    }
    realized_per_window
}

/// Largest minus smallest of one realized metric across windows.
fn range(realized: &[(f64, f64, f64)], metric: fn(&(f64, f64, f64)) -> f64) -> f64 {
    let values: Vec<f64> = realized.iter().map(metric).collect();
    let max = values.iter().cloned().fold(f64::MIN, f64::max);
    let min = values.iter().cloned().fold(f64::MAX, f64::min);
    max - min
}

/// The realized metrics must move by much more than the tolerance across windows, or the test
/// could not tell a tracking estimate from a constant one.
fn check_cbpe_on_shifted_windows(rng: &mut SplitMix64, model: impl Fn(f64) -> f64 + Copy) {
    let (reference_inputs, reference_labels) = window(rng, 0.0, 1.0, 20_000);
    let reference_scores: Vec<f64> = reference_inputs.iter().map(|&x| model(x)).collect();
    let calibrator = ok(Calibrator::fit(&reference_scores, &reference_labels));

    let realized = check_cbpe_tracks_realized(rng, model, &calibrator, &MEAN_SHIFTS);
    let accuracy_range = range(&realized, |r| r.0);
    let f1_range = range(&realized, |r| r.1);
    assert!(
        accuracy_range > 0.08,
        "accuracy moved only {accuracy_range}"
    );
    assert!(f1_range > 0.2, "F1 moved only {f1_range}");

    let realized = check_cbpe_tracks_realized(rng, model, &calibrator, &SPREAD_SHIFTS);
    let auc_range = range(&realized, |r| r.2);
    assert!(auc_range > 0.1, "AUC moved only {auc_range}");
}

#[test]
fn cbpe_tracks_realized_metrics_under_covariate_shift_for_a_calibrated_model() {
    let mut rng = SplitMix64(2024);
    check_cbpe_on_shifted_windows(&mut rng, |x: f64| sigmoid(2.0 * x));
}

#[test]
fn cbpe_tracks_realized_metrics_under_covariate_shift_after_calibration() {
    let mut rng = SplitMix64(99);
    // Overconfident: sigmoid(3x) where the truth is sigmoid(2x). Without calibration the
    // expectations would be too optimistic; the isotonic fit on the reference window corrects
    // them, and since the shift leaves P(label | input) alone, the correction carries over.
    let model = |x: f64| sigmoid(3.0 * x);
    check_cbpe_on_shifted_windows(&mut rng, model);

    // Uncalibrated expectations miss: the test above would fail without the calibrator.
    let (inputs, labels) = window(&mut rng, 0.0, 1.0, ROWS);
    let scores: Vec<f64> = inputs.iter().map(|&x| model(x)).collect();
    let uncalibrated = ok(cbpe(&scores, &scores, THRESHOLD));
    let realized_accuracy = ok(accuracy(&scores, &labels, THRESHOLD)).value;
    assert!((uncalibrated.accuracy - realized_accuracy).abs() > 0.03);
}

#[test]
fn estimated_auc_of_calibrated_probabilities_matches_the_expected_auc() {
    // Labels drawn from the probabilities themselves: the realized AUC's expectation is what
    // the estimate computes, up to NannyML's 1/n phantom positive.
    let mut rng = SplitMix64(5);
    let probabilities: Vec<f64> = (0..20_000).map(|_| rng.uniform()).collect();
    let labels: Vec<bool> = probabilities.iter().map(|&p| rng.uniform() < p).collect();
    let estimated = ok(estimated_roc_auc(&probabilities));
    let realized = ok(roc_auc(&probabilities, &labels)).value;
    // For p ~ U(0, 1) the expected AUC is 5/6 in the limit.
    close(estimated, 5.0 / 6.0, 0.01);
    close(estimated, realized, 0.01);
}
