//! What can go wrong computing drift, named so a report can say which column and why.

use serde::Serialize;
use thiserror::Error;

use crate::drift::DriftMethod;
use crate::summary::ColumnKind;

/// Which of the two samples a drift test compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Sample {
    /// The data the model was trained or validated on.
    Reference,
    /// The live window compared against it.
    Current,
}

impl std::fmt::Display for Sample {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Sample::Reference => "reference",
            Sample::Current => "current",
        })
    }
}

/// Errors from building summaries and computing drift.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum MonitorError {
    /// A sample has no finite value or label to test (no rows, or all of them missing).
    #[error("the {0} sample has no values to compare: it is empty or every value is missing")]
    EmptySample(Sample),
    /// A rate was asked of a summary with no rows at all.
    #[error("the summary has no rows")]
    NoRows,
    /// A moment was asked of a numeric summary with no finite value.
    #[error("the summary has no finite values")]
    NoFiniteValues,
    /// The method does not apply to this kind of column.
    #[error("drift method {method} does not apply to a {kind} column")]
    MethodNotApplicable {
        /// The method asked for.
        method: DriftMethod,
        /// The column's kind.
        kind: ColumnKind,
    },
    /// The two summaries describe different kinds of column.
    #[error("the reference summary is {reference} but the current one is {current}")]
    KindMismatch {
        /// Kind of the reference summary.
        reference: ColumnKind,
        /// Kind of the current summary.
        current: ColumnKind,
    },
    /// A method name that is not one of Kiln's drift methods.
    #[error(
        "unknown drift method {0:?} (known: ks, chisquare, wasserstein, jensenshannon, psi, z)"
    )]
    UnknownMethod(String),
    /// A bad `[monitor]` section in kiln.toml.
    #[error("{0}")]
    Config(String),
    /// A threshold that is not a finite number.
    #[error("drift threshold {0} is not a finite number")]
    InvalidThreshold(f64),
    /// Parts that do not make a valid summary.
    #[error("invalid numeric summary: {0}")]
    InvalidSummary(String),
    /// Counts too large for 64 bits.
    #[error("a count does not fit in 64 bits")]
    CountOverflow,
    /// A dataset verdict over no columns.
    #[error("a dataset drift verdict needs at least one column")]
    NoColumns,
    /// A performance metric was asked of a window with no rows.
    #[error("{0} needs at least one row, but the window is empty")]
    EmptyWindow(&'static str),
    /// Two row-aligned columns (predictions and targets, scores and probabilities) differ in
    /// length, so rows cannot be paired.
    #[error("{left} has {left_rows} rows but {right} has {right_rows}")]
    LengthMismatch {
        /// The first column's name.
        left: &'static str,
        /// Its number of rows.
        left_rows: usize,
        /// The second column's name.
        right: &'static str,
        /// Its number of rows.
        right_rows: usize,
    },
    /// A NaN or infinity where a performance metric needs a number.
    #[error("{column} has the non-finite value {value} at row {row}")]
    NonFiniteInput {
        /// The column holding it.
        column: &'static str,
        /// Its zero-based row.
        row: usize,
        /// The value itself.
        value: f64,
    },
    /// A probability outside [0, 1].
    #[error("{column} has {value} at row {row}, which is not a probability in [0, 1]")]
    ProbabilityOutOfRange {
        /// The column holding it.
        column: &'static str,
        /// Its zero-based row.
        row: usize,
        /// The value itself.
        value: f64,
    },
    /// ROC AUC compares positives with negatives, so it needs both in the window.
    #[error("ROC AUC needs both classes, but every label in the window is {0}")]
    SingleClass(bool),
    /// A metric whose formula divides by zero on this window.
    #[error("{metric} is undefined on this window: {reason}")]
    UndefinedMetric {
        /// The metric asked for.
        metric: &'static str,
        /// Why it has no value.
        reason: &'static str,
    },
    /// A classification decision threshold that is not a finite number.
    #[error("decision threshold {0} is not a finite number")]
    InvalidDecisionThreshold(f64),
}

/// Results of this crate.
pub type Result<T> = std::result::Result<T, MonitorError>;
