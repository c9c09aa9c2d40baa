//! Drift statistics for Kiln's monitoring, equal to Evidently's and SciPy's.
//!
//! # Representation
//!
//! Every statistic reads a *column summary*, not raw rows: for a numeric column the sorted
//! distinct finite values with their counts ([`NumericCounts`]), for a categorical column each
//! label's count ([`CategoricalCounts`]), both with the rows that had no value. A summary is
//!
//! * **exact**: a raw sample is a summary whose counts happen to be 1, so every statistic here
//!   (empirical CDFs, histograms, per-value shares, moments) comes out the same as on the rows;
//! * **mergeable**: summaries of two parts of a sample merge into the summary of the whole, so
//!   windows from several server replicas, or days of a month, combine without the rows;
//! * **small**: its size is the number of distinct values. Real columns (hour of day,
//!   temperature to one decimal, weather codes) have tens to thousands of them, so a test over
//!   a million rows a side costs a merge of two short sorted lists.
//!
//! The formulas are the weighted forms of SciPy's: the KS statistic steps both empirical CDFs
//! over the merged distinct values; the Wasserstein distance is SciPy's
//! `wasserstein_distance(u, v, u_weights, v_weights)` with counts as weights; histograms count
//! with a binary search per bin edge.
//!
//! # Agreement with Evidently
//!
//! Each test computes what Evidently 0.7's stattest of the same name computes (see
//! [`DriftMethod`]), including its method choice ([`default_method`]), its binning for PSI and
//! Jensen–Shannon, its zero filling and its comparison with the threshold. Like Evidently,
//! missing values and infinities are dropped before testing. `tests/drift_fixtures.rs` checks
//! every value against Evidently's and SciPy's own output to 1e-6.
//!
//! Where Kiln deliberately differs, each time to avoid a NaN or an error Evidently would give:
//!
//! * chi-squared over a single value (both samples the same one label) has no degrees of
//!   freedom; SciPy returns NaN and Evidently reports no drift. Kiln reports p = 1, no drift.
//! * `chisquare` and `z` may be asked for on a numeric column (cells are its distinct values).
//!   Evidently's default choice runs them on numeric columns with at most five values, but
//!   naming them for a numeric column raises an error there.
//!
//! Two Evidently behaviours to know when reading a report: KS drifts at `p <= threshold` while
//! chi-squared and z drift only at `p < threshold`; and the z-test on more than two values
//! compares the smallest one (smallest label, by code point) against all the others.
//!
//! NumPy bins an `int64` column differently from a `float64` one (a Sturges bin narrower than 1
//! becomes 1 wide), which changes PSI and Jensen–Shannon for integer columns with few more than
//! 20 distinct values and very many rows. Kiln holds numbers as `f64`, so it guesses the pandas
//! type (whole numbers and no missing value mean `int64`, as `read_csv` would type them);
//! [`DriftOptions::integer_column`] overrides the guess.
//!
//! # Performance
//!
//! Besides drift, [`performance`](mod@performance) scores a model on a window: realized metrics
//! with 95% confidence intervals once labels arrive ([`mae`], [`rmse`], [`accuracy`],
//! [`f1_score`], [`roc_auc`]), and, before they do, NannyML's confidence-based performance
//! estimation ([`cbpe`] on probabilities from a [`Calibrator`] fitted on the reference window).

#![warn(missing_docs)]

mod config;
mod drift;
mod error;
mod kolmogorov;
mod ks;
pub mod performance;
mod reference;
mod stats;
mod summary;
mod table;

pub use config::drift_settings;
pub use drift::{
    ColumnDrift, DEFAULT_DRIFT_SHARE, DatasetDrift, DriftMethod, DriftOptions, ScoreKind,
    column_drift, dataset_drift, default_method,
};
pub use error::{MonitorError, Result, Sample};
pub use kolmogorov::kstwo_sf;
pub use ks::{KsMethod, KsTest, ks_2samp};
pub use performance::{
    Calibrator, EstimatedPerformance, RealizedMetric, accuracy, cbpe, estimated_roc_auc, f1_score,
    mae, rmse, roc_auc,
};
pub use reference::{DECISION_THRESHOLD, ModelReference, ReferenceTask, ValidationOutcome};
pub use stats::{
    ChiSquareTest, ZTest, chisquare, jensenshannon, population_std, psi, wasserstein_distance,
    wasserstein_distance_norm, z_test,
};
pub use summary::{CategoricalCounts, ColumnKind, ColumnSummary, NumericCounts};
pub use table::{ColumnReport, DriftReport, DriftSettings, TableSummary, drift_report};
