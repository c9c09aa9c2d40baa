//! Every metric equals scikit-learn's value on the same inputs, to 1e-9.
//!
//! `fixtures/metrics.json` is written by `fixtures/make_metric_fixtures.py` (scikit-learn
//! 1.9.1); this test needs no Python.

use kiln_model::metrics::*;
use serde_json::Value;

const TOL: f64 = 1e-9;

fn fixtures() -> Value {
    let text = include_str!("fixtures/metrics.json");
    serde_json::from_str(text).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn ints(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

fn close(name: &str, what: &str, got: f64, want: &Value) {
    let want = want
        .as_f64()
        .unwrap_or_else(|| panic!("{name}/{what}: no value"));
    assert!(
        (got - want).abs() <= TOL * want.abs().max(1.0),
        "{name}: {what} = {got}, scikit-learn {want}"
    );
}

fn close_all(name: &str, what: &str, got: &[f64], want: &Value) {
    let want = floats(want);
    assert_eq!(got.len(), want.len(), "{name}: {what} length");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(
            (g - w).abs() <= TOL,
            "{name}: {what}[{i}] = {g}, scikit-learn {w}"
        );
    }
}

#[test]
fn regression_metrics_match_scikit_learn() {
    let f = fixtures();
    for case in f["regression"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let (y, p) = (floats(&case["y"]), floats(&case["p"]));
        let m = regression(&y, &p).unwrap();
        close(name, "rmse", m.rmse, &case["rmse"]);
        close(name, "mae", m.mae, &case["mae"]);
        close(name, "r2", m.r2, &case["r2"]);
        close(name, "mape", m.mape, &case["mape"]);
        match (m.rmsle, case["rmsle"].as_f64()) {
            (Some(g), Some(_)) => close(name, "rmsle", g, &case["rmsle"]),
            (None, None) => {}
            (g, w) => panic!("{name}: rmsle {g:?} vs scikit-learn {w:?}"),
        }
    }
}

#[test]
fn binary_metrics_match_scikit_learn() {
    let f = fixtures();
    for case in f["binary"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let y: Vec<bool> = ints(&case["y"]).iter().map(|v| *v == 1).collect();
        let labels = ints(&case["y"]);
        let score = floats(&case["score"]);
        let pred = ints(&case["pred"]);
        close(
            name,
            "accuracy",
            accuracy(&labels, &pred).unwrap(),
            &case["accuracy"],
        );
        let s = class_scores(&labels, &pred).unwrap();
        close_all(name, "precision", &s.precision, &case["precision"]);
        close_all(name, "recall", &s.recall, &case["recall"]);
        close_all(name, "f1", &s.f1, &case["f1"]);
        let support: Vec<f64> = s.support.iter().map(|v| *v as f64).collect();
        close_all(name, "support", &support, &case["support"]);
        close(name, "macro f1", s.macro_f1, &case["macro_f1"]);
        close(
            name,
            "roc auc",
            roc_auc(&y, &score).unwrap().unwrap(),
            &case["roc_auc"],
        );
        close(
            name,
            "average precision",
            average_precision(&y, &score).unwrap().unwrap(),
            &case["average_precision"],
        );
        close(
            name,
            "log loss",
            binary_log_loss(&y, &score).unwrap(),
            &case["log_loss"],
        );
        close(name, "brier", brier(&y, &score).unwrap(), &case["brier"]);
        let cal = calibration_curve(&y, &score, 10).unwrap();
        close_all(
            name,
            "calibration true",
            &cal.prob_true,
            &case["calibration_true"],
        );
        close_all(
            name,
            "calibration pred",
            &cal.prob_pred,
            &case["calibration_pred"],
        );
    }
}

#[test]
fn multiclass_metrics_match_scikit_learn() {
    let f = fixtures();
    for case in f["multiclass"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let k = case["k"].as_u64().unwrap() as usize;
        let y = ints(&case["y"]);
        let probs = floats(&case["probs"]);
        let pred = ints(&case["pred"]);
        close(
            name,
            "accuracy",
            accuracy(&y, &pred).unwrap(),
            &case["accuracy"],
        );
        let s = class_scores(&y, &pred).unwrap();
        close_all(name, "precision", &s.precision, &case["precision"]);
        close_all(name, "recall", &s.recall, &case["recall"]);
        close_all(name, "f1", &s.f1, &case["f1"]);
        close(
            name,
            "macro precision",
            s.macro_precision,
            &case["macro_precision"],
        );
        close(name, "macro recall", s.macro_recall, &case["macro_recall"]);
        close(name, "macro f1", s.macro_f1, &case["macro_f1"]);
        close(
            name,
            "roc auc ovr",
            roc_auc_ovr(&y, &probs, k).unwrap().unwrap(),
            &case["roc_auc_ovr"],
        );
        close(
            name,
            "log loss",
            log_loss(&y, &probs, k).unwrap(),
            &case["log_loss"],
        );
    }
}
