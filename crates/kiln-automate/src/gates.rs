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
}
