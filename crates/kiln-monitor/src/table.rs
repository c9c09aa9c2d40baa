//! Summaries of whole tables (Kiln's normalized Arrow batches) and the drift report between
//! two of them: what a monitoring window compares with the model's reference.
//!
//! A [`TableSummary`] holds one [`ColumnSummary`] per monitored column, in schema order, and
//! merges like its columns do, so the summary of a window is the merge of the summaries of
//! its batches (or of its replicas). Numeric columns (`Float64`) become numeric summaries;
//! categorical ones (dictionary-encoded strings) and booleans become label counts. Dates and
//! timestamps are not monitored for drift, as Evidently's DataDriftPreset leaves datetime
//! columns out; nor is free text (plain strings), whose distinct values would make the
//! summary as large as the data.

use std::collections::BTreeMap;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use serde::{Deserialize, Serialize};

use crate::drift::{
    ColumnDrift, DEFAULT_DRIFT_SHARE, DatasetDrift, DriftOptions, column_drift, dataset_drift,
};
use crate::error::{MonitorError, Result};
use crate::summary::{CategoricalCounts, ColumnSummary, NumericCounts};

/// Per-column summaries of a table, mergeable.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TableSummary {
    rows: u64,
    columns: Vec<(String, ColumnSummary)>,
}

impl TableSummary {
    /// Summarizes the monitored columns of `batch` (see the module documentation).
    pub fn from_batch(batch: &RecordBatch) -> Result<Self> {
        let schema = batch.schema();
        let mut columns = Vec::new();
        for (field, array) in schema.fields().iter().zip(batch.columns()) {
            let summary = match array.data_type() {
                DataType::Float64 => {
                    let a = array.as_primitive::<Float64Type>();
                    // A null is a missing value, like a NaN.
                    let values: Vec<f64> = a.iter().map(|v| v.unwrap_or(f64::NAN)).collect();
                    ColumnSummary::Numeric(NumericCounts::from_values(&values))
                }
                DataType::Dictionary(k, v) if **k == DataType::Int32 && **v == DataType::Utf8 => {
                    let dict = array.as_dictionary::<Int32Type>();
                    let labels = dict.values().as_string::<i32>();
                    let labels: Vec<&str> = (0..labels.len())
                        .map(|i| {
                            if labels.is_null(i) {
                                ""
                            } else {
                                labels.value(i)
                            }
                        })
                        .collect();
                    ColumnSummary::Categorical(CategoricalCounts::from_codes(
                        dict.keys().iter(),
                        &labels,
                    )?)
                }
                DataType::Boolean => ColumnSummary::Categorical(CategoricalCounts::from_values(
                    array
                        .as_boolean()
                        .iter()
                        .map(|v| v.map(|b| if b { "true" } else { "false" })),
                )),
                _ => continue,
            };
            columns.push((field.name().clone(), summary));
        }
        Ok(Self {
            rows: batch.num_rows() as u64,
            columns,
        })
    }

    /// A table of given column summaries over `rows` rows (a single column's summary tested
    /// on its own, as prediction and target drift are).
    pub fn from_columns(rows: u64, columns: Vec<(String, ColumnSummary)>) -> Self {
        Self { rows, columns }
    }

    /// The summary of both tables' rows together. Both must summarize the same columns.
    pub fn merge(&self, other: &TableSummary) -> Result<TableSummary> {
        if self.columns.is_empty() && self.rows == 0 {
            return Ok(other.clone());
        }
        if other.columns.is_empty() && other.rows == 0 {
            return Ok(self.clone());
        }
        if column_names(self) != column_names(other) {
            return Err(MonitorError::InvalidSummary(format!(
                "cannot merge summaries of different columns: [{}] and [{}]",
                column_names(self).join(", "),
                column_names(other).join(", ")
            )));
        }
        let columns = self
            .columns
            .iter()
            .zip(&other.columns)
            .map(|((name, a), (_, b))| Ok((name.clone(), a.merge(b)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(TableSummary {
            rows: self.rows.saturating_add(other.rows),
            columns,
        })
    }

    /// Rows summarized.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The monitored columns, in schema order.
    pub fn columns(&self) -> &[(String, ColumnSummary)] {
        &self.columns
    }

    /// One column's summary.
    pub fn column(&self, name: &str) -> Option<&ColumnSummary> {
        self.columns.iter().find(|(n, _)| n == name).map(|(_, s)| s)
    }

    /// Keeps only the columns `keep` accepts (a model's inputs out of a whole table).
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.columns.retain(|(name, _)| keep(name));
    }

    /// Removes one column and returns its summary.
    pub fn take_column(&mut self, name: &str) -> Option<ColumnSummary> {
        let at = self.columns.iter().position(|(n, _)| n == name)?;
        Some(self.columns.remove(at).1)
    }
}

/// Share of the current finite values outside the reference's range of finite values.
fn out_of_range_rate(reference: &NumericCounts, current: &NumericCounts) -> Option<f64> {
    let (lo, hi) = (*reference.values().first()?, *reference.values().last()?);
    let total = current.finite_count();
    if total == 0 {
        return None;
    }
    let outside: u64 = current
        .values()
        .iter()
        .zip(current.counts())
        .filter(|(v, _)| **v < lo || **v > hi)
        .map(|(_, c)| *c)
        .sum();
    Some(outside as f64 / total as f64)
}

fn column_names(t: &TableSummary) -> Vec<&str> {
    t.columns.iter().map(|(n, _)| n.as_str()).collect()
}

/// How a drift report tests each column: Evidently's defaults unless configured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DriftSettings {
    /// Options for every column without its own entry.
    pub default: DriftOptions,
    /// Per-column options, by column name.
    pub columns: BTreeMap<String, DriftOptions>,
    /// The share of drifted columns at or above which the dataset drifts.
    pub drift_share: f64,
}

impl Default for DriftSettings {
    fn default() -> Self {
        Self {
            default: DriftOptions::default(),
            columns: BTreeMap::new(),
            drift_share: DEFAULT_DRIFT_SHARE,
        }
    }
}

/// One column of a drift report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ColumnReport {
    /// The column.
    pub name: String,
    /// The test and its verdict; `None` when the column could not be tested.
    pub drift: Option<ColumnDrift>,
    /// Why the column was not tested.
    pub skipped: Option<String>,
    /// Share of the reference's rows with no value.
    pub reference_missing_rate: Option<f64>,
    /// Share of the current rows with no value.
    pub current_missing_rate: Option<f64>,
    /// Categorical columns: share of the current labelled rows whose label the reference
    /// never had.
    pub new_category_rate: Option<f64>,
    /// Numeric columns: share of the current finite values below the reference's smallest or
    /// above its largest.
    pub out_of_range_rate: Option<f64>,
}

/// Every monitored column's drift between a reference and a current table, and the dataset
/// verdict over the tested columns.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DriftReport {
    /// Reference rows.
    pub reference_rows: u64,
    /// Current rows.
    pub current_rows: u64,
    /// One entry per reference column, in its order.
    pub columns: Vec<ColumnReport>,
    /// The verdict over the columns that could be tested; `None` when none could.
    pub dataset: Option<DatasetDrift>,
}

/// Tests every column of `reference` against the same column of `current`. A column that
/// cannot be tested (absent from the current table, or with no values on one side) is
/// reported as skipped with the reason, not as an error: a quiet feature should not hide the
/// verdict on the others. Invalid settings (a method that does not apply, a threshold that is
/// not a number) are errors.
pub fn drift_report(
    reference: &TableSummary,
    current: &TableSummary,
    settings: &DriftSettings,
) -> Result<DriftReport> {
    let mut columns = Vec::with_capacity(reference.columns.len());
    for (name, r) in &reference.columns {
        let options = settings.columns.get(name).unwrap_or(&settings.default);
        let mut report = ColumnReport {
            name: name.clone(),
            drift: None,
            skipped: None,
            reference_missing_rate: r.missing_rate().ok(),
            current_missing_rate: None,
            new_category_rate: None,
            out_of_range_rate: None,
        };
        let Some(c) = current.column(name) else {
            report.skipped = Some("the current table has no such column".into());
            columns.push(report);
            continue;
        };
        report.current_missing_rate = c.missing_rate().ok();
        match (r, c) {
            (ColumnSummary::Categorical(r), ColumnSummary::Categorical(c)) => {
                report.new_category_rate = c.new_category_rate(r).ok();
            }
            (ColumnSummary::Numeric(r), ColumnSummary::Numeric(c)) => {
                report.out_of_range_rate = out_of_range_rate(r, c);
            }
            _ => {}
        }
        match column_drift(r, c, options) {
            Ok(d) => report.drift = Some(d),
            Err(e @ (MonitorError::EmptySample(_) | MonitorError::KindMismatch { .. })) => {
                report.skipped = Some(e.to_string());
            }
            Err(e) => return Err(e),
        }
        columns.push(report);
    }
    let tested: Vec<ColumnDrift> = columns.iter().filter_map(|c| c.drift.clone()).collect();
    let dataset = if tested.is_empty() {
        None
    } else {
        Some(dataset_drift(&tested, settings.drift_share)?)
    };
    Ok(DriftReport {
        reference_rows: reference.rows,
        current_rows: current.rows,
        columns,
        dataset,
    })
}
