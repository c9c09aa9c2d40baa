//! Per-column drift verdicts and the dataset verdict, with Evidently's method choice.

use serde::{Deserialize, Serialize};

use crate::error::{MonitorError, Result, Sample};
use crate::ks::ks_2samp;
use crate::stats::{
    binned_table, chisquare_of_table, jensenshannon_of_table, psi_of_table, union_distinct,
    value_table, wasserstein_distance_norm, z_test_of_table,
};
use crate::summary::{ColumnKind, ColumnSummary};

/// Evidently's default share of drifted columns that makes the dataset drifted.
pub const DEFAULT_DRIFT_SHARE: f64 = 0.5;

/// Evidently's method choice switches at this reference size.
const SMALL_REFERENCE_ROWS: u64 = 1_000;

/// A drift test, by Evidently's stattest name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DriftMethod {
    /// Two-sample Kolmogorov–Smirnov p-value (numeric).
    Ks,
    /// Pearson's chi-squared p-value over values or labels.
    ChiSquare,
    /// Wasserstein distance over the reference's standard deviation (numeric).
    Wasserstein,
    /// Jensen–Shannon distance over bins or labels.
    JensenShannon,
    /// Population stability index over bins or labels.
    Psi,
    /// Two-proportion z-test p-value.
    Z,
}

/// What a method's score is, which decides how it is compared with the threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScoreKind {
    /// A p-value: small means drift.
    PValue,
    /// A distance: large means drift.
    Distance,
}

impl DriftMethod {
    /// Every method, in the order of Evidently's documentation.
    pub const ALL: [DriftMethod; 6] = [
        DriftMethod::Ks,
        DriftMethod::ChiSquare,
        DriftMethod::Wasserstein,
        DriftMethod::JensenShannon,
        DriftMethod::Psi,
        DriftMethod::Z,
    ];

    /// Evidently's stattest name (`"ks"`, `"chisquare"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DriftMethod::Ks => "ks",
            DriftMethod::ChiSquare => "chisquare",
            DriftMethod::Wasserstein => "wasserstein",
            DriftMethod::JensenShannon => "jensenshannon",
            DriftMethod::Psi => "psi",
            DriftMethod::Z => "z",
        }
    }

    /// The method with this stattest name.
    pub fn parse(name: &str) -> Result<DriftMethod> {
        DriftMethod::ALL
            .into_iter()
            .find(|m| m.name() == name)
            .ok_or_else(|| MonitorError::UnknownMethod(name.to_owned()))
    }

    /// Evidently's title for the score (its `display_name`).
    pub fn display_name(self) -> &'static str {
        match self {
            DriftMethod::Ks => "K-S p_value",
            DriftMethod::ChiSquare => "chi-square p_value",
            DriftMethod::Wasserstein => "Wasserstein distance (normed)",
            DriftMethod::JensenShannon => "Jensen-Shannon distance",
            DriftMethod::Psi => "PSI",
            DriftMethod::Z => "Z-test p_value",
        }
    }

    /// Evidently's default threshold: 0.05 for p-values, 0.1 for distances.
    pub fn default_threshold(self) -> f64 {
        match self.score_kind() {
            ScoreKind::PValue => 0.05,
            ScoreKind::Distance => 0.1,
        }
    }

    /// Whether the score is a p-value or a distance.
    pub fn score_kind(self) -> ScoreKind {
        match self {
            DriftMethod::Ks | DriftMethod::ChiSquare | DriftMethod::Z => ScoreKind::PValue,
            DriftMethod::Wasserstein | DriftMethod::JensenShannon | DriftMethod::Psi => {
                ScoreKind::Distance
            }
        }
    }

    /// Evidently's verdict for a score: distances drift at or above the threshold, p-values
    /// below it, except KS, which Evidently also calls drifted when the p-value equals it.
    pub fn is_drift(self, score: f64, threshold: f64) -> bool {
        match self {
            DriftMethod::Ks => score <= threshold,
            DriftMethod::ChiSquare | DriftMethod::Z => score < threshold,
            DriftMethod::Wasserstein | DriftMethod::JensenShannon | DriftMethod::Psi => {
                score >= threshold
            }
        }
    }

    /// Whether the method can compare a column of this kind. KS and Wasserstein need numbers;
    /// the others count cells, which numeric columns have too (Evidently's own default picks
    /// chi-squared and z for numeric columns with few values).
    pub fn applies_to(self, kind: ColumnKind) -> bool {
        match self {
            DriftMethod::Ks | DriftMethod::Wasserstein => kind == ColumnKind::Numeric,
            _ => true,
        }
    }
}

impl std::fmt::Display for DriftMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for DriftMethod {
    type Err = MonitorError;

    fn from_str(s: &str) -> Result<Self> {
        DriftMethod::parse(s)
    }
}

/// Evidently's default method (`_get_default_stattest`), from the reference size (rows with a
/// value) and the number of distinct values in both samples together:
///
/// | reference rows | numeric, ≤ 5 values | numeric, > 5 values | categorical |
/// | --- | --- | --- | --- |
/// | ≤ 1000 | `chisquare` (3–5 values) or `z` (≤ 2) | `ks` | `chisquare` (> 2 labels) or `z` |
/// | > 1000 | `jensenshannon` | `wasserstein` | `jensenshannon` |
pub fn default_method(reference: &ColumnSummary, current: &ColumnSummary) -> Result<DriftMethod> {
    let values = union_distinct(reference, current)?;
    if reference.tested_count() == 0 {
        return Err(MonitorError::EmptySample(Sample::Reference));
    }
    if current.tested_count() == 0 {
        return Err(MonitorError::EmptySample(Sample::Current));
    }
    let small = reference.tested_count() <= SMALL_REFERENCE_ROWS;
    Ok(match (reference.kind(), small) {
        (ColumnKind::Numeric, true) if values <= 5 => {
            if values > 2 {
                DriftMethod::ChiSquare
            } else {
                DriftMethod::Z
            }
        }
        (ColumnKind::Numeric, true) => DriftMethod::Ks,
        (ColumnKind::Categorical, true) => {
            if values > 2 {
                DriftMethod::ChiSquare
            } else {
                DriftMethod::Z
            }
        }
        (ColumnKind::Numeric, false) if values <= 5 => DriftMethod::JensenShannon,
        (ColumnKind::Numeric, false) => DriftMethod::Wasserstein,
        (ColumnKind::Categorical, false) => DriftMethod::JensenShannon,
    })
}

/// Choices for one column's test; the defaults are Evidently's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DriftOptions {
    /// The test to run; `None` picks [`default_method`].
    pub method: Option<DriftMethod>,
    /// The threshold; `None` takes the method's default
    /// ([`DriftMethod::default_threshold`]).
    pub threshold: Option<f64>,
    /// Whether pandas would hold the numeric column as `int64`, which changes NumPy's Sturges
    /// bins for PSI and Jensen–Shannon (a bin narrower than 1 is widened to 1). `None` guesses:
    /// whole numbers with no missing value.
    pub integer_column: Option<bool>,
}

/// One column's drift verdict.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ColumnDrift {
    /// The test that ran.
    pub method: DriftMethod,
    /// What `score` is.
    pub score_kind: ScoreKind,
    /// Evidently's `drift_score`: the p-value or the distance.
    pub score: f64,
    /// The test statistic behind a p-value (KS `D`, chi-squared, z), when it is finite.
    pub statistic: Option<f64>,
    /// The threshold the score was compared with.
    pub threshold: f64,
    /// Whether the column drifted.
    pub drifted: bool,
    /// Reference rows that entered the test (finite values or labels).
    pub reference_rows: u64,
    /// Current rows that entered the test.
    pub current_rows: u64,
}

/// Runs one column's drift test: `options.method` or Evidently's default choice, at
/// `options.threshold` or the method's default.
pub fn column_drift(
    reference: &ColumnSummary,
    current: &ColumnSummary,
    options: &DriftOptions,
) -> Result<ColumnDrift> {
    if reference.kind() != current.kind() {
        return Err(MonitorError::KindMismatch {
            reference: reference.kind(),
            current: current.kind(),
        });
    }
    if reference.tested_count() == 0 {
        return Err(MonitorError::EmptySample(Sample::Reference));
    }
    if current.tested_count() == 0 {
        return Err(MonitorError::EmptySample(Sample::Current));
    }
    let method = match options.method {
        Some(method) => method,
        None => default_method(reference, current)?,
    };
    if !method.applies_to(reference.kind()) {
        return Err(MonitorError::MethodNotApplicable {
            method,
            kind: reference.kind(),
        });
    }
    let threshold = options
        .threshold
        .unwrap_or_else(|| method.default_threshold());
    if !threshold.is_finite() {
        return Err(MonitorError::InvalidThreshold(threshold));
    }

    let (score, statistic) = match (method, reference, current) {
        (DriftMethod::Ks, ColumnSummary::Numeric(r), ColumnSummary::Numeric(c)) => {
            let test = ks_2samp(r, c)?;
            (test.p_value, Some(test.statistic))
        }
        (DriftMethod::Wasserstein, ColumnSummary::Numeric(r), ColumnSummary::Numeric(c)) => {
            (wasserstein_distance_norm(r, c)?, None)
        }
        (DriftMethod::ChiSquare, _, _) => {
            let test = chisquare_of_table(&value_table(reference, current)?);
            (test.p_value, Some(test.statistic))
        }
        (DriftMethod::Z, _, _) => {
            let test = z_test_of_table(&value_table(reference, current)?);
            (test.p_value, Some(test.statistic))
        }
        (DriftMethod::Psi, _, _) => (
            psi_of_table(&binned_table(reference, current, options.integer_column)?),
            None,
        ),
        (DriftMethod::JensenShannon, _, _) => (
            jensenshannon_of_table(&binned_table(reference, current, options.integer_column)?),
            None,
        ),
        (DriftMethod::Ks | DriftMethod::Wasserstein, _, _) => {
            return Err(MonitorError::MethodNotApplicable {
                method,
                kind: reference.kind(),
            });
        }
    };
    Ok(ColumnDrift {
        method,
        score_kind: method.score_kind(),
        score,
        statistic: statistic.filter(|s| s.is_finite()),
        threshold,
        drifted: method.is_drift(score, threshold),
        reference_rows: reference.tested_count(),
        current_rows: current.tested_count(),
    })
}

/// The dataset verdict: how many columns drifted and whether that share reaches the threshold.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct DatasetDrift {
    /// Columns tested.
    pub columns: usize,
    /// Columns that drifted.
    pub drifted_columns: usize,
    /// `drifted_columns / columns`.
    pub share: f64,
    /// The share at or above which the dataset drifts.
    pub threshold: f64,
    /// Whether the dataset drifted.
    pub drifted: bool,
}

/// Evidently's dataset verdict: drifted when the share of drifted columns is at least
/// `share_threshold` ([`DEFAULT_DRIFT_SHARE`] by default).
pub fn dataset_drift(columns: &[ColumnDrift], share_threshold: f64) -> Result<DatasetDrift> {
    if columns.is_empty() {
        return Err(MonitorError::NoColumns);
    }
    if !share_threshold.is_finite() {
        return Err(MonitorError::InvalidThreshold(share_threshold));
    }
    let drifted_columns = columns.iter().filter(|c| c.drifted).count();
    let share = drifted_columns as f64 / columns.len() as f64;
    Ok(DatasetDrift {
        columns: columns.len(),
        drifted_columns,
        share,
        threshold: share_threshold,
        drifted: share >= share_threshold,
    })
}
