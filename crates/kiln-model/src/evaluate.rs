//! Evaluation: the numbers a run reports, the registry compares and a model card shows.
//!
//! Computed once, at training, on the validation rows, and stored in the model artifact, so a
//! card rendered a year later shows exactly what was measured. Metric sets are flat maps from
//! a stable name (`rmse`, `f1_macro`, `f1[yes]`) to its value, which keeps comparisons between
//! runs (`kiln runs compare`) and promotion gates generic.

use std::collections::BTreeMap;

use arrow_array::cast::AsArray;
use arrow_array::types::Int32Type;
use arrow_array::{Array, RecordBatch};
use forust_ml::gradientbooster::ImportanceMethod;
use kiln_core::schema::{FeatureType, Schema};
use serde::{Deserialize, Serialize};

use crate::ModelError;
use crate::learner::{Fitted, Predictions, Task};
use crate::metrics::{self, CalibrationCurve};

/// Metric name → value.
pub type MetricSet = BTreeMap<String, f64>;

/// The metric a task is judged by (lower is better for both).
pub fn primary_metric(task: Task) -> &'static str {
    match task {
        Task::Regression => "rmse",
        _ => "log_loss",
    }
}

/// Whether a smaller value of metric `name` is better.
pub fn lower_is_better(name: &str) -> bool {
    matches!(
        name.split('[').next().unwrap_or(name),
        "rmse" | "mae" | "rmsle" | "mape" | "log_loss" | "brier"
    )
}

/// Every metric of the task for targets `y` (class indices for classifiers).
pub fn score(
    task: Task,
    classes: &[String],
    y: &[f64],
    p: &Predictions,
) -> Result<MetricSet, ModelError> {
    let mut m = MetricSet::new();
    match (task, p) {
        (Task::Regression, Predictions::Values(v)) => {
            let r = metrics::regression(y, v)?;
            m.insert("rmse".into(), r.rmse);
            m.insert("mae".into(), r.mae);
            m.insert("r2".into(), r.r2);
            m.insert("mape".into(), r.mape);
            if let Some(x) = r.rmsle {
                m.insert("rmsle".into(), x);
            }
        }
        (
            Task::Binary | Task::Multiclass { .. },
            Predictions::Probabilities { classes: k, data },
        ) => {
            let labels: Vec<usize> = y.iter().map(|v| *v as usize).collect();
            let pred = p.classes().unwrap_or_default();
            m.insert("accuracy".into(), metrics::accuracy(&labels, &pred)?);
            let s = metrics::class_scores(&labels, &pred)?;
            m.insert("precision_macro".into(), s.macro_precision);
            m.insert("recall_macro".into(), s.macro_recall);
            m.insert("f1_macro".into(), s.macro_f1);
            for (i, c) in s.classes.iter().enumerate() {
                let name = classes.get(*c).cloned().unwrap_or_else(|| c.to_string());
                m.insert(format!("f1[{name}]"), s.f1[i]);
            }
            m.insert("log_loss".into(), metrics::log_loss(&labels, data, *k)?);
            if *k == 2 {
                let truth: Vec<bool> = labels.iter().map(|c| *c == 1).collect();
                let p1: Vec<f64> = data.chunks(2).map(|r| r[1]).collect();
                if let Some(a) = metrics::roc_auc(&truth, &p1)? {
                    m.insert("roc_auc".into(), a);
                }
                if let Some(a) = metrics::average_precision(&truth, &p1)? {
                    m.insert("pr_auc".into(), a);
                }
                m.insert("brier".into(), metrics::brier(&truth, &p1)?);
            } else if let Some(a) = metrics::roc_auc_ovr(&labels, data, *k)? {
                m.insert("roc_auc_ovr".into(), a);
            }
        }
        _ => {
            return Err(ModelError::Invalid(
                "predictions do not match the task".into(),
            ));
        }
    }
    Ok(m)
}

/// The primary metric (RMSE or log loss, as the predictions say) on a subset of rows.
fn primary_on(y: &[f64], p: &Predictions, rows: &[usize]) -> Option<f64> {
    let ys: Vec<f64> = rows.iter().map(|i| y[*i]).collect();
    match p {
        Predictions::Values(v) => {
            let ps: Vec<f64> = rows.iter().map(|i| v[*i]).collect();
            metrics::rmse(&ys, &ps).ok()
        }
        Predictions::Probabilities { classes, data } => {
            let labels: Vec<usize> = ys.iter().map(|v| *v as usize).collect();
            let ps: Vec<f64> = rows
                .iter()
                .flat_map(|i| data[i * classes..(i + 1) * classes].iter().copied())
                .collect();
            metrics::log_loss(&labels, &ps, *classes).ok()
        }
    }
}

/// The primary metric of the model and of the baseline on the rows of one category.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Slice {
    pub column: String,
    pub value: String,
    pub rows: u64,
    pub model: f64,
    pub baseline: f64,
}

/// Slices need at least this many validation rows to be reported (fewer would be noise).
pub const MIN_SLICE_ROWS: usize = 30;
/// At most this many values per column, the most frequent first.
pub const MAX_SLICES_PER_COLUMN: usize = 24;

/// Per-category metrics for every categorical or boolean input column of `batch`.
pub fn slices(
    schema: &Schema,
    batch: &RecordBatch,
    y: &[f64],
    model: &Predictions,
    baseline: &Predictions,
    skip: &[String],
) -> Vec<Slice> {
    let mut out = Vec::new();
    for col in &schema.columns {
        if skip.contains(&col.name) {
            continue;
        }
        let Some(array) = batch.column_by_name(&col.name) else {
            continue;
        };
        let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        match col.ftype {
            FeatureType::Categorical => {
                let Some(dict) = array.as_dictionary_opt::<Int32Type>() else {
                    continue;
                };
                let Some(values) = dict.values().as_string_opt::<i32>() else {
                    continue;
                };
                // Rows per dictionary key, then keys merged by value (a dictionary may
                // hold a value twice after batches were concatenated).
                let mut per_key: Vec<Vec<usize>> = vec![Vec::new(); values.len()];
                for (i, k) in dict.keys().iter().enumerate() {
                    if let Some(rows) = k.and_then(|k| per_key.get_mut(k as usize)) {
                        rows.push(i);
                    }
                }
                for (k, rows) in per_key.into_iter().enumerate() {
                    if !rows.is_empty() {
                        groups
                            .entry(values.value(k).to_owned())
                            .or_default()
                            .extend(rows);
                    }
                }
            }
            FeatureType::Boolean => {
                let Some(b) = array.as_boolean_opt() else {
                    continue;
                };
                for i in 0..b.len() {
                    if b.is_valid(i) {
                        groups.entry(b.value(i).to_string()).or_default().push(i);
                    }
                }
            }
            _ => continue,
        }
        let mut ranked: Vec<(String, Vec<usize>)> = groups
            .into_iter()
            .filter(|(_, rows)| rows.len() >= MIN_SLICE_ROWS)
            .collect();
        // Most rows first; equal counts by name, so the order is deterministic.
        ranked.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
        for (value, rows) in ranked.into_iter().take(MAX_SLICES_PER_COLUMN) {
            if let (Some(m), Some(b)) =
                (primary_on(y, model, &rows), primary_on(y, baseline, &rows))
            {
                out.push(Slice {
                    column: col.name.clone(),
                    value,
                    rows: rows.len() as u64,
                    model: m,
                    baseline: b,
                });
            }
        }
    }
    out
}

/// Each feature's share of the model's total importance, largest first: total split gain for
/// trees, the size of the standardized weight for linear models.
pub fn importance(fitted: &Fitted, features: &[String]) -> Vec<(String, f64)> {
    let mut total = vec![0.0f64; features.len()];
    match fitted {
        Fitted::Gbdt { boosters, .. } => {
            for b in boosters {
                for (j, g) in b.calculate_feature_importance(ImportanceMethod::TotalGain, false) {
                    if let Some(t) = total.get_mut(j) {
                        *t += f64::from(g);
                    }
                }
            }
        }
        Fitted::Linear { weights, .. } => {
            for w in weights {
                for (j, v) in w.iter().skip(1).enumerate() {
                    if let Some(t) = total.get_mut(j) {
                        *t += v.abs();
                    }
                }
            }
        }
        Fitted::Baseline { .. } | Fitted::Onnx { .. } => return Vec::new(),
    }
    let sum: f64 = total.iter().sum();
    if sum <= 0.0 || !sum.is_finite() {
        return Vec::new();
    }
    let mut out: Vec<(String, f64)> = features
        .iter()
        .cloned()
        .zip(total.iter().map(|t| t / sum))
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    out
}

/// How the rows were split and what the target looked like.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataSummary {
    /// Rows in the snapshot.
    pub rows: u64,
    /// Rows left out because their target was missing.
    pub missing_target: u64,
    /// Rows left out of a time split because their time was missing.
    pub missing_time: u64,
    /// `time` (with the cutoff) or `random` (with the fraction and seed).
    pub split: String,
    pub train_rows: u64,
    pub valid_rows: u64,
    /// First and last time of each part, for a time split.
    pub train_time: Option<(String, String)>,
    pub valid_time: Option<(String, String)>,
    /// Regression: quantiles (5%, 25%, 50%, 75%, 95%), min, max and mean of the training
    /// target; classification: training rows per class.
    pub target: TargetSummary,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TargetSummary {
    Numeric {
        min: f64,
        max: f64,
        mean: f64,
        quantiles: Vec<(f64, f64)>,
    },
    Classes {
        counts: Vec<(String, u64)>,
    },
}

impl TargetSummary {
    pub fn of(task: Task, classes: &[String], y: &[f64]) -> Self {
        match task {
            Task::Regression => {
                let mut s = y.to_vec();
                s.sort_by(f64::total_cmp);
                let at = |q: f64| -> f64 {
                    if s.is_empty() {
                        return f64::NAN;
                    }
                    let pos = q * (s.len() - 1) as f64;
                    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
                    s[lo] + (s[hi] - s[lo]) * (pos - lo as f64)
                };
                TargetSummary::Numeric {
                    min: s.first().copied().unwrap_or(f64::NAN),
                    max: s.last().copied().unwrap_or(f64::NAN),
                    mean: y.iter().sum::<f64>() / y.len().max(1) as f64,
                    quantiles: [0.05, 0.25, 0.5, 0.75, 0.95]
                        .iter()
                        .map(|q| (*q, at(*q)))
                        .collect(),
                }
            }
            _ => {
                let mut counts = vec![0u64; classes.len()];
                for v in y {
                    if let Some(c) = counts.get_mut(*v as usize) {
                        *c += 1;
                    }
                }
                TargetSummary::Classes {
                    counts: classes.iter().cloned().zip(counts).collect(),
                }
            }
        }
    }
}

/// Cross-validation of the training recipe, when asked for (`split.folds`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrossValidation {
    pub folds: usize,
    pub metric: String,
    pub values: Vec<f64>,
    pub mean: f64,
    pub std: f64,
}

/// Everything measured at training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// The metric models are compared by (lower is better).
    pub primary: String,
    /// Validation metrics by contender: `model`, and the baselines `linear` and `baseline`.
    pub metrics: BTreeMap<String, MetricSet>,
    /// Reliability of the predicted probabilities (binary classifiers), 10 bins.
    pub calibration: Option<CalibrationCurve>,
    pub slices: Vec<Slice>,
    pub importance: Vec<(String, f64)>,
    pub data: DataSummary,
    pub cross_validation: Option<CrossValidation>,
    /// What the validation data did not cover, in words, for the card.
    pub limitations: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_sets_name_every_score_and_slices_need_enough_rows() {
        let y = vec![0.0, 1.0, 1.0, 0.0];
        let p = Predictions::Probabilities {
            classes: 2,
            data: vec![0.8, 0.2, 0.3, 0.7, 0.4, 0.6, 0.6, 0.4],
        };
        let m = score(Task::Binary, &["no".into(), "yes".into()], &y, &p).unwrap();
        assert_eq!(m["accuracy"], 1.0);
        assert_eq!(m["roc_auc"], 1.0);
        assert!(m.contains_key("f1[yes]") && m.contains_key("brier"));
        assert!(lower_is_better("log_loss") && !lower_is_better("f1[yes]"));
        let e = score(Task::Regression, &[], &y, &p).unwrap_err();
        assert!(e.to_string().contains("do not match"));
    }

    #[test]
    fn target_summary_quantiles_interpolate() {
        let t = TargetSummary::of(Task::Regression, &[], &[1.0, 2.0, 3.0, 4.0, 5.0]);
        let TargetSummary::Numeric {
            quantiles, mean, ..
        } = t
        else {
            panic!("numeric")
        };
        assert_eq!(mean, 3.0);
        assert_eq!(quantiles[2], (0.5, 3.0));
        assert!((quantiles[1].1 - 2.0).abs() < 1e-12);
    }
}
