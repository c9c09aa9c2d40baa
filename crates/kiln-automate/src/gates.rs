//! Promotion gates: what a candidate must prove, each with its numbers.
//!
//! All comparisons use the candidate's validation rows (the most recent rows of the data it
//! was trained on, which after a harvest are labelled production rows), on which the champion
//! is scored too, so both are judged on the same holdout.

use kiln_model::artifact::ModelArtifact;
use kiln_model::evaluate::{Evaluation, lower_is_better};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One gate's verdict.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Gate {
    pub gate: String,
    pub passed: bool,
    /// What was measured.
    pub value: Option<f64>,
    /// What it had to reach.
    pub bound: Option<f64>,
    pub detail: String,
}

/// `a` is at least as good as `b` improved by `margin` (a fraction), for `metric`.
fn better(metric: &str, a: f64, b: f64, margin: f64) -> (bool, f64) {
    if lower_is_better(metric) {
        let bound = b * (1.0 - margin);
        (a <= bound, bound)
    } else {
        let bound = b * (1.0 + margin);
        (a >= bound, bound)
    }
}

/// The metric gates: beats the trivial baseline; compares with the champion on the same rows
/// by `margin` (at least that fraction better; negative: at most that much worse), passing
/// when there is no champion.
pub fn metric_gates(e: &Evaluation, champion: Option<&str>, margin: f64) -> Vec<Gate> {
    let metric = e.primary.as_str();
    let value = |who: &str| e.metrics.get(who).and_then(|m| m.get(metric)).copied();
    let mut gates = Vec::new();
    let model = value("model");
    match (model, value("baseline")) {
        (Some(m), Some(b)) => {
            let (passed, bound) = better(metric, m, b, 0.0);
            gates.push(Gate {
                gate: "beats_baseline".into(),
                passed,
                value: Some(m),
                bound: Some(bound),
                detail: format!("{metric} {m:.4} vs the trivial baseline's {b:.4}"),
            });
        }
        _ => gates.push(Gate {
            gate: "beats_baseline".into(),
            passed: false,
            value: model,
            bound: None,
            detail: format!("no {metric} for the candidate or its baseline"),
        }),
    }
    // The candidate on the rows the champion was judged on (all validation rows otherwise).
    let challenger = value("challenger").or(model);
    match (champion, challenger, value("champion")) {
        (None, _, _) => gates.push(Gate {
            gate: "vs_champion".into(),
            passed: true,
            value: model,
            bound: None,
            detail: "no champion yet".into(),
        }),
        (Some(label), Some(m), Some(c)) => {
            let (passed, bound) = better(metric, m, c, margin);
            gates.push(Gate {
                gate: "vs_champion".into(),
                passed,
                value: Some(m),
                bound: Some(bound),
                detail: format!(
                    "{metric} {m:.2} vs {label}'s {c:.2} on the same rows (bound {bound:.2}, margin {:+.0}%)",
                    margin * 100.0
                ),
            });
        }
        (Some(label), _, _) => gates.push(Gate {
            gate: "vs_champion".into(),
            passed: false,
            value: model,
            bound: None,
            detail: format!("{label} could not be scored on the validation rows"),
        }),
    }
    gates
}

/// The latency gate: the median of 25 single-row predictions of `row` (a logged input).
pub fn latency_gate(artifact: &ModelArtifact, row: Option<&str>, max_ms: f64) -> Gate {
    let gate = |passed, value, detail: String| Gate {
        gate: "latency".into(),
        passed,
        value,
        bound: Some(max_ms),
        detail,
    };
    let row: Value = match row.map(serde_json::from_str) {
        Some(Ok(v @ Value::Object(_))) => v,
        // No logged row: every input missing, which every model accepts.
        _ => Value::Object(
            artifact
                .schema
                .columns
                .iter()
                .map(|c| (c.name.clone(), Value::Null))
                .collect(),
        ),
    };
    let batcher = kiln_data::rows::JsonBatcher::new(artifact.schema.clone());
    let mut times = Vec::with_capacity(25);
    for _ in 0..25 {
        let t = std::time::Instant::now();
        let scored = batcher
            .batch(std::slice::from_ref(&row))
            .map_err(|e| format!("{e:?}"))
            .and_then(|b| artifact.score(&b).map_err(|e| e.to_string()));
        if let Err(e) = scored {
            return gate(
                false,
                None,
                format!("a single row could not be scored: {e}"),
            );
        }
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    gate(
        median <= max_ms,
        Some(median),
        format!("single-row predict {median:.3} ms (median of 25), bound {max_ms} ms"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn margins_point_the_right_way_for_each_metric() {
        assert_eq!(better("rmse", 90.0, 100.0, 0.05), (true, 95.0));
        assert!(!better("rmse", 96.0, 100.0, 0.05).0);
        assert!(better("accuracy", 0.85, 0.8, 0.05).0);
        assert!(!better("accuracy", 0.83, 0.8, 0.05).0);
    }

    /// An evaluation with these `(contender, rmse)` validation figures.
    fn evaluation(figures: &[(&str, f64)]) -> Evaluation {
        let metrics: serde_json::Map<String, serde_json::Value> = figures
            .iter()
            .map(|(who, v)| (who.to_string(), serde_json::json!({ "rmse": v })))
            .collect();
        serde_json::from_value(serde_json::json!({
            "primary": "rmse", "metrics": metrics, "calibration": null, "slices": [],
            "importance": [], "cross_validation": null, "limitations": [],
            "data": {"rows": 10, "missing_target": 0, "missing_time": 0, "split": "time",
                     "train_rows": 8, "valid_rows": 2, "train_time": null, "valid_time": null,
                     "target": {"kind": "numeric", "min": 0.0, "max": 1.0, "mean": 0.5,
                                "quantiles": []}}
        }))
        .unwrap()
    }

    fn verdicts(gates: &[Gate]) -> Vec<(&str, bool)> {
        gates.iter().map(|g| (g.gate.as_str(), g.passed)).collect()
    }

    #[test]
    fn each_metric_gate_fails_and_passes_with_its_numbers() {
        // Worse than predicting the mean: the baseline gate fails, and says by how much.
        let worse = evaluation(&[("model", 120.0), ("baseline", 100.0)]);
        let g = metric_gates(&worse, None, -0.05);
        assert_eq!(
            verdicts(&g),
            [("beats_baseline", false), ("vs_champion", true)]
        );
        assert_eq!((g[0].value, g[0].bound), (Some(120.0), Some(100.0)));
        assert!(
            g[0].detail
                .contains("120.0000 vs the trivial baseline's 100.0000")
        );
        // Against a champion scored on the same rows: the margin decides.
        let e = evaluation(&[
            ("model", 50.0),
            ("baseline", 100.0),
            ("challenger", 52.0),
            ("champion", 50.0),
        ]);
        let passing = metric_gates(&e, Some("bikes@3"), -0.05);
        assert_eq!(
            verdicts(&passing),
            [("beats_baseline", true), ("vs_champion", true)]
        );
        assert_eq!(passing[1].bound, Some(52.5));
        let failing = metric_gates(&e, Some("bikes@3"), 0.02);
        assert_eq!(verdicts(&failing)[1], ("vs_champion", false));
        assert!(
            failing[1].detail.contains("bikes@3's 50.00"),
            "{}",
            failing[1].detail
        );
        // A champion that could not be scored fails the comparison rather than passing it.
        let unscored = evaluation(&[("model", 50.0), ("baseline", 100.0)]);
        assert_eq!(
            verdicts(&metric_gates(&unscored, Some("bikes@3"), 0.0))[1],
            ("vs_champion", false)
        );
    }
}
