//! What a model's live traffic is compared with: its reference, computed once at training and
//! stored inside the model artifact.
//!
//! As in NannyML, the reference is where the model's behaviour is known:
//!
//! * the **inputs** of the training rows (exact, mergeable [`TableSummary`]), for data drift;
//! * the **target** of the training rows, for target drift once labels come back;
//! * the model's **predictions on the validation rows** (values for regressors, the predicted
//!   class for classifiers), for prediction drift;
//! * the model's **metrics on the validation rows**, computed with this crate's own metric
//!   functions, so a realized or estimated metric on a window is comparable with it;
//! * for binary classifiers, a [`Calibrator`] fitted on the validation scores and labels, which
//!   CBPE needs to estimate performance before labels arrive.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::performance::{Calibrator, accuracy, f1_score, mae, rmse, roc_auc};
use crate::summary::{CategoricalCounts, ColumnSummary, NumericCounts};
use crate::table::TableSummary;

/// The probability at or above which a binary classifier predicts the positive class.
pub const DECISION_THRESHOLD: f64 = 0.5;

/// What kind of model a reference belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReferenceTask {
    /// Predicts a number.
    Regression,
    /// Predicts one of two classes; `positive` is the second class label, whose probability
    /// is the score.
    Binary {
        /// The positive class label.
        positive: String,
    },
    /// Predicts one of several classes.
    Multiclass,
}

/// The model's reference for monitoring (see the module documentation).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelReference {
    /// The task, and the positive class of a binary classifier.
    pub task: ReferenceTask,
    /// The model's inputs on the training rows.
    pub features: TableSummary,
    /// The target on the training rows.
    pub target: ColumnSummary,
    /// The model's predictions on the validation rows.
    pub prediction: ColumnSummary,
    /// Metrics on the validation rows, by name (`mae`, `rmse`; `accuracy`, `f1`, `roc_auc`).
    pub performance: BTreeMap<String, f64>,
    /// Binary classifiers: calibrated probability of the positive class given the score.
    pub calibrator: Option<Calibrator>,
    /// Validation rows the predictions and metrics come from.
    pub validation_rows: u64,
}

/// The validation predictions of a model and the truth, as [`ModelReference::build`] reads
/// them.
#[derive(Clone, Copy, Debug)]
pub enum ValidationOutcome<'a> {
    /// Regression: predicted and actual values.
    Regression {
        /// Predicted values.
        predicted: &'a [f64],
        /// Actual values.
        actual: &'a [f64],
    },
    /// Classification: predicted and actual class labels, and for binary classifiers the
    /// probability of the positive class.
    Classes {
        /// Predicted labels.
        predicted: &'a [&'a str],
        /// Actual labels.
        actual: &'a [&'a str],
        /// Binary: positive label and the score of each row.
        binary: Option<(&'a str, &'a [f64])>,
    },
}

impl ModelReference {
    /// Builds the reference from the training inputs and target and the validation outcome.
    pub fn build(
        features: TableSummary,
        target: ColumnSummary,
        validation: ValidationOutcome<'_>,
    ) -> Result<Self> {
        let mut performance = BTreeMap::new();
        let (task, prediction, calibrator, rows) = match validation {
            ValidationOutcome::Regression { predicted, actual } => {
                performance.insert("mae".to_owned(), mae(predicted, actual)?.value);
                performance.insert("rmse".to_owned(), rmse(predicted, actual)?.value);
                (
                    ReferenceTask::Regression,
                    ColumnSummary::Numeric(NumericCounts::from_values(predicted)),
                    None,
                    predicted.len(),
                )
            }
            ValidationOutcome::Classes {
                predicted,
                actual,
                binary,
            } => {
                let prediction = ColumnSummary::Categorical(CategoricalCounts::from_values(
                    predicted.iter().map(|p| Some(*p)),
                ));
                match binary {
                    Some((positive, scores)) => {
                        let labels: Vec<bool> = actual.iter().map(|a| *a == positive).collect();
                        let t = DECISION_THRESHOLD;
                        performance
                            .insert("accuracy".to_owned(), accuracy(scores, &labels, t)?.value);
                        performance.insert("f1".to_owned(), f1_score(scores, &labels, t)?.value);
                        // A validation set of one class has no ROC AUC; the others still hold.
                        if let Ok(auc) = roc_auc(scores, &labels) {
                            performance.insert("roc_auc".to_owned(), auc.value);
                        }
                        (
                            ReferenceTask::Binary {
                                positive: positive.to_owned(),
                            },
                            prediction,
                            Some(Calibrator::fit(scores, &labels)?),
                            scores.len(),
                        )
                    }
                    None => {
                        let right = predicted.iter().zip(actual).filter(|(p, a)| p == a).count();
                        if !predicted.is_empty() {
                            performance.insert(
                                "accuracy".to_owned(),
                                right as f64 / predicted.len() as f64,
                            );
                        }
                        (ReferenceTask::Multiclass, prediction, None, predicted.len())
                    }
                }
            }
        };
        Ok(Self {
            task,
            features,
            target,
            prediction,
            performance,
            calibrator,
            validation_rows: rows as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regression_reference_holds_validation_metrics() {
        let r = ModelReference::build(
            TableSummary::default(),
            ColumnSummary::Numeric(NumericCounts::from_values(&[1.0, 2.0])),
            ValidationOutcome::Regression {
                predicted: &[1.0, 2.0, 4.0],
                actual: &[1.0, 3.0, 1.0],
            },
        )
        .unwrap();
        assert_eq!(r.task, ReferenceTask::Regression);
        assert!((r.performance["mae"] - 4.0 / 3.0).abs() < 1e-12);
        assert!((r.performance["rmse"] - (10.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(r.prediction.rows(), 3);
        assert!(r.calibrator.is_none());
    }

    #[test]
    fn binary_reference_fits_a_calibrator_on_validation() {
        let predicted = ["no", "yes", "yes", "no"];
        let actual = ["no", "yes", "no", "no"];
        let scores = [0.1, 0.9, 0.7, 0.2];
        let r = ModelReference::build(
            TableSummary::default(),
            ColumnSummary::Categorical(CategoricalCounts::from_values(
                actual.iter().map(|a| Some(*a)),
            )),
            ValidationOutcome::Classes {
                predicted: &predicted,
                actual: &actual,
                binary: Some(("yes", &scores)),
            },
        )
        .unwrap();
        assert_eq!(r.performance["accuracy"], 0.75);
        assert_eq!(r.performance["roc_auc"], 1.0);
        let c = r.calibrator.as_ref().unwrap();
        // Isotonic: the two highest scores share one positive of two.
        assert!(c.calibrate(0.1) < c.calibrate(0.9));
        let back: ModelReference =
            serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }
}
